//! Authorization of actions in one project: the token scope, the tenant role, then the
//! project role, which can only narrow what the tenant role allows.

use tasklane_auth::policy::{is_allowed_in_project, ProjectAction, ProjectRole, Role};
use tasklane_auth::{Action, TokenScope};
use tasklane_store::project_roles;
use uuid::Uuid;

use crate::extract::Caller;
use crate::{ApiError, AppState};

/// Rejects the caller unless they may do `action` in `project_id`, which the caller has
/// already found in their tenant.
pub(crate) async fn authorize_in_project(
    state: &AppState,
    caller: &Caller,
    project_id: Uuid,
    action: ProjectAction,
) -> Result<(), ApiError> {
    let scope_allows = match (caller.token_scope, action) {
        (None, _) => true,
        (Some(scope), ProjectAction::Read) => scope.permits(Action::ReadContent),
        (Some(scope), ProjectAction::Write) => scope.permits(Action::WriteContent),
        (Some(scope), ProjectAction::AssignRoles) => scope == TokenScope::Admin,
    };
    if !scope_allows {
        return Err(ApiError::Forbidden(
            "your API token's scope does not allow that in this project".into(),
        ));
    }
    let Ok(tenant_role) = caller.role.parse::<Role>() else {
        return Err(ApiError::Forbidden(format!(
            "your role {:?} in this tenant may not do that",
            caller.role
        )));
    };
    let project_role =
        project_roles::role_of(&state.pool, caller.tenant_id, project_id, caller.user_id)
            .await?
            // The table's check constraint admits only known roles. Were one unknown, the
            // narrowest role applies.
            .map(|role| role.parse::<ProjectRole>().unwrap_or(ProjectRole::Viewer));
    if is_allowed_in_project(tenant_role, project_role, action) {
        return Ok(());
    }
    let described = match project_role {
        Some(role) => format!("your role {} in this project", role.as_str()),
        None => format!("your role {} in this tenant", tenant_role.as_str()),
    };
    Err(ApiError::Forbidden(format!("{described} may not do that")))
}
