//! Authorization of actions in one project: the token scope, the tenant role, then the
//! project role, which can only narrow what the tenant role allows.

use tasklane_auth::policy::{is_allowed_in_project_by_name, ProjectAction};
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
    let project_role =
        project_roles::role_of(&state.pool, caller.tenant_id, project_id, caller.user_id).await?;
    if is_allowed_in_project_by_name(&caller.role, project_role.as_deref(), action) {
        return Ok(());
    }
    let described = match project_role {
        Some(role) => format!("your role {role} in this project"),
        None => format!("your role {} in this tenant", caller.role),
    };
    Err(ApiError::Forbidden(format!("{described} may not do that")))
}
