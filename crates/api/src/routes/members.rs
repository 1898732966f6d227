//! Tenant members: changing a member's role.

use axum::extract::State;
use axum::routing::patch;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::policy::{self, Action, Role, UnknownRole};
use tasklane_domain::EventType;
use tasklane_store::{accounts, auth_events};
use uuid::Uuid;

use crate::extract::{Caller, Json, Path};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/members/{user_id}", patch(change_role))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRole {
    role: String,
}

/// Changes a member's role. Owners and admins may do it, an admin never to or from owner,
/// and the last owner cannot be demoted. The new role applies to the member's next request.
async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
    Json(request): Json<ChangeRole>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller_role = caller.authorize(Action::ManageMembers)?;
    let role: Role = request
        .role
        .parse()
        .map_err(|e: UnknownRole| ApiError::Unprocessable(e.to_string()))?;
    if !policy::may_grant(caller_role, role) {
        return Err(ApiError::Forbidden(format!(
            "your role may not grant the role {}",
            role.as_str()
        )));
    }

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let roles = accounts::lock_roles(&mut tx, caller.tenant_id).await?;
    let previous = roles
        .iter()
        .find(|(member, _)| *member == user_id)
        .map(|(_, role)| role.clone())
        .ok_or(ApiError::NotFound("member"))?;
    let previous_role = previous.parse::<Role>().ok();
    if !previous_role.is_some_and(|previous| policy::may_grant(caller_role, previous)) {
        return Err(ApiError::Forbidden(format!(
            "your role may not change the role of an {previous}"
        )));
    }
    let owners = roles.iter().filter(|(_, role)| role == "owner").count();
    if previous_role == Some(Role::Owner) && role != Role::Owner && owners <= 1 {
        return Err(ApiError::Conflict(
            "a tenant must keep at least one owner".into(),
        ));
    }
    accounts::set_role(&mut tx, caller.tenant_id, user_id, role.as_str()).await?;
    let data =
        serde_json::json!({ "user_id": user_id, "previous_role": previous, "role": role.as_str() });
    let (tenant, actor) = (Some(caller.tenant_id), Some(caller.user_id));
    auth_events::append(
        &mut tx,
        EventType::MemberRoleChanged,
        tenant,
        actor,
        user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(
        serde_json::json!({ "user_id": user_id, "tenant_id": caller.tenant_id, "role": role.as_str() }),
    ))
}
