//! Members' roles in single projects: list, assign and remove.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::Router;
use serde::Deserialize;
use tasklane_auth::policy::{ProjectAction, ProjectRole};
use tasklane_store::project_roles::{self, ProjectRoleAssignment};
use tasklane_store::projects;
use uuid::Uuid;

use crate::extract::{Caller, Json, Path};
use crate::project_access::authorize_in_project;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects/{id}/roles", get(list))
        .route("/projects/{id}/roles/{user_id}", delete(remove).put(assign))
}

/// Finds the project in the caller's tenant, so another tenant's id is a plain 404.
async fn find_project(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    projects::find(&state.pool, caller.tenant_id, id)
        .await?
        .map(|_| ())
        .ok_or(ApiError::NotFound("project"))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<Uuid>,
) -> Result<Json<Vec<ProjectRoleAssignment>>, ApiError> {
    find_project(&state, &caller, project_id).await?;
    authorize_in_project(&state, &caller, project_id, ProjectAction::Read).await?;
    let assignments = project_roles::list(&state.pool, caller.tenant_id, project_id).await?;
    Ok(Json(assignments))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRole {
    role: String,
}

async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, user_id)): Path<(Uuid, Uuid)>,
    Json(request): Json<AssignRole>,
) -> Result<Json<ProjectRoleAssignment>, ApiError> {
    find_project(&state, &caller, project_id).await?;
    authorize_in_project(&state, &caller, project_id, ProjectAction::AssignRoles).await?;
    let role = request
        .role
        .parse::<ProjectRole>()
        .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
    let stored = project_roles::set(
        &state.pool,
        caller.tenant_id,
        project_id,
        user_id,
        role.as_str(),
    )
    .await?;
    if !stored {
        return Err(ApiError::NotFound("member"));
    }
    Ok(Json(ProjectRoleAssignment {
        user_id,
        role: role.as_str().to_owned(),
    }))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    find_project(&state, &caller, project_id).await?;
    authorize_in_project(&state, &caller, project_id, ProjectAction::AssignRoles).await?;
    if project_roles::remove(&state.pool, caller.tenant_id, project_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("project role"))
    }
}
