//! Jobs: status, counts and the rows a job could not process.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use tasklane_store::jobs::{self, Job, JobError};
use tasklane_store::Page;
use uuid::Uuid;

use crate::extract::{Caller, Json, PageParams, Path, Query};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}", get(read))
        .route("/jobs/{id}/errors", get(errors))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Job>, ApiError> {
    let job = jobs::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    Ok(Json(job))
}

async fn errors(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<JobError>>, ApiError> {
    if jobs::get(&state.pool, caller.tenant_id, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("job"));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid cursor {c:?}")))
        })
        .transpose()?;
    let page = jobs::list_errors(&state.pool, caller.tenant_id, id, after, params.limit()?).await?;
    Ok(Json(page))
}
