//! Comments on a task.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::policy::ProjectAction;
use tasklane_store::comments::{self, Comment};
use tasklane_store::{tasks, Page};
use uuid::Uuid;

use super::required_text;
use crate::extract::{Caller, Json, PageParams, Path, Query};
use crate::project_access::authorize_in_project;
use crate::{ApiError, AppState};

const MAX_BODY_CHARS: usize = 65_536;

pub fn routes() -> Router<AppState> {
    Router::new().route("/tasks/{id}/comments", get(list).post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateComment {
    body: String,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<Uuid>,
    Json(request): Json<CreateComment>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    caller.require_writer()?;
    let task = tasks::get(&state.pool, caller.tenant_id, task_id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    authorize_in_project(&state, &caller, task.project_id, ProjectAction::Write).await?;
    let body = required_text("body", &request.body, MAX_BODY_CHARS)?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let comment =
        comments::create(&mut tx, caller.tenant_id, caller.user_id, task_id, &body).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((StatusCode::CREATED, Json(comment)))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Comment>>, ApiError> {
    if !tasks::exists(&state.pool, caller.tenant_id, task_id).await? {
        return Err(ApiError::NotFound("task"));
    }
    let page = comments::list(
        &state.pool,
        caller.tenant_id,
        task_id,
        params.uuid_cursor()?,
        params.limit()?,
    )
    .await?;
    Ok(Json(page))
}
