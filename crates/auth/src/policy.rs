//! The tenant role policy: the one place that maps tenant roles to allowed actions.
//!
//! Every action is denied unless a rule below allows it, and a role name that does not
//! parse allows nothing.

use std::str::FromStr;

/// A person's role in one tenant, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected owner, admin, member or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Something a caller may try to do in their active tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the tenant's projects, tasks, comments and jobs.
    ReadContent,
    /// Create or change projects, tasks and comments, and start imports.
    WriteContent,
    /// Invite people to the tenant.
    InviteMembers,
    /// Change members' roles.
    ManageMembers,
    /// Configure the tenant's OpenID Connect login providers.
    ManageLoginProviders,
}

/// What a personal API token may do, on top of what its owner's role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    Read,
    Write,
    Admin,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
            TokenScope::Admin => "admin",
        }
    }

    /// Returns whether the scope covers `action`; the owner's role must allow it too.
    pub fn permits(self, action: Action) -> bool {
        match self {
            TokenScope::Read => action == Action::ReadContent,
            TokenScope::Write => matches!(action, Action::ReadContent | Action::WriteContent),
            TokenScope::Admin => true,
        }
    }
}

impl FromStr for TokenScope {
    type Err = UnknownScope;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "read" => Ok(TokenScope::Read),
            "write" => Ok(TokenScope::Write),
            "admin" => Ok(TokenScope::Admin),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}: expected read, write or admin")]
pub struct UnknownScope(pub String);

/// Returns whether `role` may perform `action`.
pub fn is_allowed(role: Role, action: Action) -> bool {
    // Each pattern allows; any pair not listed is denied.
    matches!(
        (role, action),
        (_, Action::ReadContent)
            | (
                Role::Owner | Role::Admin | Role::Member,
                Action::WriteContent
            )
            | (
                Role::Owner | Role::Admin,
                Action::InviteMembers | Action::ManageMembers | Action::ManageLoginProviders
            )
    )
}

/// Returns whether `granter` may give someone `granted`: owners may grant every role,
/// admins every role but owner, others none.
/// A person's role in one project. It narrows what their tenant role allows in that
/// project and never widens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectRole {
    /// Reads and writes the project's content and assigns project roles in it.
    Lead,
    /// Reads and writes the project's content.
    Member,
    /// Reads the project's content.
    Viewer,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Lead => "lead",
            ProjectRole::Member => "member",
            ProjectRole::Viewer => "viewer",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown project role {0:?}: expected lead, member or viewer")]
pub struct UnknownProjectRole(pub String);

impl FromStr for ProjectRole {
    type Err = UnknownProjectRole;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "lead" => Ok(ProjectRole::Lead),
            "member" => Ok(ProjectRole::Member),
            "viewer" => Ok(ProjectRole::Viewer),
            other => Err(UnknownProjectRole(other.to_owned())),
        }
    }
}

/// Something a caller may try to do in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectAction {
    /// Read the project's tasks, comments and jobs.
    Read,
    /// Create or change the project's tasks and comments, and import into it.
    Write,
    /// Assign and remove project roles.
    AssignRoles,
}

/// Decides a project action from the tenant role and the project role, if any.
///
/// The tenant role must allow the action first. A project role can then only take
/// permissions away, so a tenant viewer who leads a project still cannot write there.
/// Assigning project roles needs a tenant owner or admin, or a project lead whose tenant
/// role may write.
pub fn is_allowed_in_project(
    tenant_role: Role,
    project_role: Option<ProjectRole>,
    action: ProjectAction,
) -> bool {
    let tenant_action = match action {
        ProjectAction::Read => Action::ReadContent,
        ProjectAction::Write => Action::WriteContent,
        ProjectAction::AssignRoles => {
            return is_allowed(tenant_role, Action::ManageMembers)
                || (project_role == Some(ProjectRole::Lead)
                    && is_allowed(tenant_role, Action::WriteContent));
        }
    };
    if !is_allowed(tenant_role, tenant_action) {
        return false;
    }
    match (project_role, action) {
        (None, _) => true,
        (Some(_), ProjectAction::Read) => true,
        (Some(ProjectRole::Lead | ProjectRole::Member), ProjectAction::Write) => true,
        (Some(ProjectRole::Viewer), ProjectAction::Write) => false,
        (Some(_), ProjectAction::AssignRoles) => false,
    }
}

/// Decides a project action from stored role names. A tenant role that does not parse
/// allows nothing, and a project role that does not parse counts as the narrowest, viewer.
pub fn is_allowed_in_project_by_name(
    tenant_role: &str,
    project_role: Option<&str>,
    action: ProjectAction,
) -> bool {
    let Ok(tenant_role) = tenant_role.parse::<Role>() else {
        return false;
    };
    let project_role = project_role.map(|role| role.parse().unwrap_or(ProjectRole::Viewer));
    is_allowed_in_project(tenant_role, project_role, action)
}

pub fn may_grant(granter: Role, granted: Role) -> bool {
    match granter {
        Role::Owner => true,
        Role::Admin => granted != Role::Owner,
        Role::Member | Role::Viewer => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    #[test]
    fn project_roles_only_narrow() {
        use ProjectAction::{AssignRoles, Read, Write};
        use ProjectRole::{Lead, Member as ProjectMember, Viewer as ProjectViewer};
        let cases = [
            (Role::Member, None, Write, true),
            (Role::Member, Some(ProjectViewer), Write, false),
            (Role::Member, Some(ProjectViewer), Read, true),
            (Role::Member, Some(ProjectMember), Write, true),
            (Role::Viewer, Some(Lead), Write, false),
            (Role::Viewer, Some(Lead), AssignRoles, false),
            (Role::Viewer, None, Read, true),
            (Role::Member, Some(Lead), AssignRoles, true),
            (Role::Member, Some(ProjectMember), AssignRoles, false),
            (Role::Member, None, AssignRoles, false),
            (Role::Admin, Some(ProjectViewer), AssignRoles, true),
            (Role::Admin, Some(ProjectViewer), Write, false),
            (Role::Owner, None, Write, true),
        ];
        for (tenant_role, project_role, action, expected) in cases {
            assert_eq!(
                is_allowed_in_project(tenant_role, project_role, action),
                expected,
                "{tenant_role:?} with {project_role:?} doing {action:?}"
            );
        }
    }

    #[test]
    fn unknown_role_names_allow_little() {
        assert!(!is_allowed_in_project_by_name(
            "root",
            None,
            ProjectAction::Read
        ));
        assert!(is_allowed_in_project_by_name(
            "member",
            Some("boss"),
            ProjectAction::Read
        ));
        assert!(!is_allowed_in_project_by_name(
            "member",
            Some("boss"),
            ProjectAction::Write
        ));
        assert!(is_allowed_in_project_by_name(
            "member",
            Some("lead"),
            ProjectAction::Write
        ));
    }

    #[test]
    fn project_role_names_round_trip() {
        for role in [ProjectRole::Lead, ProjectRole::Member, ProjectRole::Viewer] {
            assert_eq!(role.as_str().parse::<ProjectRole>().unwrap(), role);
        }
        assert!("owner".parse::<ProjectRole>().is_err());
    }

    #[test]
    fn role_names_round_trip() {
        for role in ROLES {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("Owner".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn allowed_actions_per_role() {
        let expected = [
            (Role::Owner, [true, true, true, true, true]),
            (Role::Admin, [true, true, true, true, true]),
            (Role::Member, [true, true, false, false, false]),
            (Role::Viewer, [true, false, false, false, false]),
        ];
        let actions = [
            Action::ReadContent,
            Action::WriteContent,
            Action::InviteMembers,
            Action::ManageMembers,
            Action::ManageLoginProviders,
        ];
        for (role, allowed) in expected {
            for (action, allow) in actions.iter().zip(allowed) {
                assert_eq!(is_allowed(role, *action), allow, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn token_scopes_narrow_actions() {
        assert!(TokenScope::Read.permits(Action::ReadContent));
        assert!(!TokenScope::Read.permits(Action::WriteContent));
        assert!(TokenScope::Write.permits(Action::WriteContent));
        assert!(!TokenScope::Write.permits(Action::InviteMembers));
        assert!(TokenScope::Admin.permits(Action::InviteMembers));
        assert!("root".parse::<TokenScope>().is_err());
    }

    #[test]
    fn grants_never_exceed_the_granter() {
        assert!(may_grant(Role::Owner, Role::Owner));
        assert!(may_grant(Role::Admin, Role::Admin));
        assert!(!may_grant(Role::Admin, Role::Owner));
        for granted in ROLES {
            assert!(!may_grant(Role::Member, granted));
            assert!(!may_grant(Role::Viewer, granted));
        }
    }
}
