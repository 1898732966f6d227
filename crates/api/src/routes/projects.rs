//! Projects.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tasklane_domain::ProjectKey;
use tasklane_store::{projects, Page};

use super::required_text;
use crate::extract::{Caller, Json, PageParams, Query};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/projects", get(list).post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    key: String,
    name: String,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateProject>,
) -> Result<(StatusCode, Json<projects::Project>), ApiError> {
    caller.require_writer()?;
    let key =
        ProjectKey::parse(&request.key).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let name = required_text("name", &request.name, 200)?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let project = projects::create(
        &mut tx,
        caller.tenant_id,
        Some(caller.user_id),
        key.as_str(),
        &name,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((StatusCode::CREATED, Json(project)))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<projects::Project>>, ApiError> {
    let page = projects::list(
        &state.pool,
        caller.tenant_id,
        params.uuid_cursor()?,
        params.limit()?,
    )
    .await?;
    Ok(Json(page))
}
