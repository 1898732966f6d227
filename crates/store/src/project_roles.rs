//! Members' roles in single projects, which narrow their tenant role there.

use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ProjectRoleAssignment {
    pub user_id: Uuid,
    pub role: String,
}

/// Reads the user's role in the project, `None` when they have none.
pub async fn role_of(
    pool: &PgPool,
    tenant_id: Uuid,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let role = sqlx::query_scalar(
        "select role from project_roles
         where tenant_id = $1 and project_id = $2 and user_id = $3",
    )
    .bind(tenant_id)
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(role)
}

/// Sets the user's role in the project. Returns false, changing nothing, when the user is
/// not a member of the tenant.
pub async fn set(
    pool: &PgPool,
    tenant_id: Uuid,
    project_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> Result<bool, StoreError> {
    let stored = sqlx::query(
        "insert into project_roles (tenant_id, project_id, user_id, role)
         select $1, $2, $3, $4
         where exists (select 1 from memberships where tenant_id = $1 and user_id = $3)
         on conflict (project_id, user_id) do update set role = excluded.role",
    )
    .bind(tenant_id)
    .bind(project_id)
    .bind(user_id)
    .bind(role)
    .execute(pool)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// Removes the user's role in the project. Returns whether there was one.
pub async fn remove(
    pool: &PgPool,
    tenant_id: Uuid,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<bool, StoreError> {
    let removed = sqlx::query(
        "delete from project_roles where tenant_id = $1 and project_id = $2 and user_id = $3",
    )
    .bind(tenant_id)
    .bind(project_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(removed.rows_affected() == 1)
}

/// Lists the project's role assignments, ordered by user id.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    project_id: Uuid,
) -> Result<Vec<ProjectRoleAssignment>, StoreError> {
    let rows = sqlx::query_as::<_, ProjectRoleAssignment>(
        "select user_id, role from project_roles
         where tenant_id = $1 and project_id = $2 order by user_id",
    )
    .bind(tenant_id)
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
