//! Tenants, people and memberships.

use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, EventEnvelope, EventType, Handle};
use uuid::Uuid;

use crate::{outbox, projects, StoreError, Tx};

/// Ids of what registration creates: a person, their tenant, and its default project.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
}

/// The fields of a new account, already validated.
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub name: &'a str,
    pub tenant_name: &'a str,
}

/// Creates a user, a new tenant owned by them, and the tenant's default project. Returns
/// `None` and changes nothing when an account already has the e-mail address, also when a
/// parallel registration took it a moment before.
pub async fn register(
    tx: &mut Tx<'_>,
    account: NewAccount<'_>,
) -> Result<Option<Registered>, StoreError> {
    let user_id = new_id();
    let inserted = sqlx::query(
        "insert into users (id, email, name, password_hash) values ($1, $2, $3, $4)
         on conflict (lower(email)) where email is not null do nothing",
    )
    .bind(user_id)
    .bind(account.email)
    .bind(account.name)
    .bind(account.password_hash)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }

    let tenant_id = new_id();
    sqlx::query("insert into tenants (id, name) values ($1, $2)")
        .bind(tenant_id)
        .bind(account.tenant_name)
        .execute(&mut **tx)
        .await?;

    let local_part = account.email.split('@').next().unwrap_or(account.email);
    add_membership(
        tx,
        tenant_id,
        user_id,
        "owner",
        Handle::derive_from(local_part),
    )
    .await?;

    let project_key = projects::derive_key(account.tenant_name);
    let project = projects::create(
        tx,
        tenant_id,
        Some(user_id),
        &project_key,
        account.tenant_name,
    )
    .await?;

    let event = EventEnvelope::new(
        EventType::UserRegistered,
        tenant_id,
        Some(user_id),
        user_id,
        None,
        serde_json::json!({ "user_id": user_id, "tenant_id": tenant_id }),
    );
    outbox::append(tx, &event).await?;
    Ok(Some(Registered {
        user_id,
        tenant_id,
        project_id: project.id,
    }))
}

/// Adds a membership, suffixing the handle with a number when the tenant already uses it.
pub async fn add_membership(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    role: &str,
    handle: Handle,
) -> Result<String, StoreError> {
    let handle = free_handle(tx, tenant_id, handle.as_str()).await?;
    sqlx::query(
        "insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, $3, $4)",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(role)
    .bind(&handle)
    .execute(&mut **tx)
    .await?;
    Ok(handle)
}

/// Returns `wanted` or the first `wanted-N` that no member of the tenant uses.
pub(crate) async fn free_handle(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    wanted: &str,
) -> Result<String, StoreError> {
    let base: String = wanted.chars().take(58).collect();
    for attempt in 1..1000 {
        let candidate = if attempt == 1 {
            wanted.to_owned()
        } else {
            format!("{base}-{attempt}")
        };
        let taken: bool = sqlx::query_scalar(
            "select exists (select 1 from memberships where tenant_id = $1 and lower(handle) = lower($2))",
        )
        .bind(tenant_id)
        .bind(&candidate)
        .fetch_one(&mut **tx)
        .await?;
        if !taken {
            return Ok(candidate);
        }
    }
    Err(StoreError::Conflict(format!(
        "no free handle near {wanted:?}"
    )))
}

/// A person with credentials, as login needs them.
#[derive(Debug, Clone, FromRow)]
pub struct Credentials {
    pub user_id: Uuid,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

pub async fn find_credentials(
    pool: &PgPool,
    email: &str,
) -> Result<Option<Credentials>, StoreError> {
    let row = sqlx::query_as::<_, Credentials>(
        "select id as user_id, password_hash, disabled_at is not null as disabled
         from users where lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// One of a person's tenants.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub role: String,
    pub handle: String,
}

pub async fn memberships_of(pool: &PgPool, user_id: Uuid) -> Result<Vec<Membership>, StoreError> {
    let rows = sqlx::query_as::<_, Membership>(
        "select m.tenant_id, t.name as tenant_name, m.role, m.handle
         from memberships m join tenants t on t.id = m.tenant_id
         where m.user_id = $1 order by m.created_at",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Returns the person's role in a tenant, if they are an active member of it.
pub async fn role_in(
    pool: &PgPool,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let role = sqlx::query_scalar(
        "select m.role from memberships m join users u on u.id = m.user_id
         where m.user_id = $1 and m.tenant_id = $2 and u.disabled_at is null",
    )
    .bind(user_id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(role)
}

/// Locks a tenant's memberships and returns each member's id and role, so concurrent role
/// changes run one after the other and cannot both demote one of the last two owners.
pub async fn lock_roles(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    let roles =
        sqlx::query_as("select user_id, role from memberships where tenant_id = $1 for update")
            .bind(tenant_id)
            .fetch_all(&mut **tx)
            .await?;
    Ok(roles)
}

/// Sets a member's role.
pub async fn set_role(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> Result<(), StoreError> {
    sqlx::query("update memberships set role = $3 where tenant_id = $1 and user_id = $2")
        .bind(tenant_id)
        .bind(user_id)
        .bind(role)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads a user's e-mail address and password hash, for re-authentication.
pub async fn password_of(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let row = sqlx::query_as("select email, password_hash from users where id = $1")
        .bind(user_id)
        .fetch_optional(executor)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    Ok(row)
}

/// Replaces a user's password hash. A trigger bumps the revocation version, so every access
/// token issued before stops working.
pub async fn set_password_hash(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    password_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("update users set password_hash = $2 where id = $1")
        .bind(user_id)
        .bind(password_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Replaces a user's password hash with a new hash of the same password, made with the
/// current parameters, without ending their sessions. `stale_hash` must be the hash the
/// login verified, so a password change in between wins.
pub async fn upgrade_password_hash(
    pool: &PgPool,
    user_id: Uuid,
    stale_hash: &str,
    new_hash: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("select set_config('tasklane.same_password', 'on', true)")
        .execute(&mut *tx)
        .await?;
    let updated =
        sqlx::query("update users set password_hash = $3 where id = $1 and password_hash = $2")
            .bind(user_id)
            .bind(stale_hash)
            .bind(new_hash)
            .execute(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(updated.rows_affected() == 1)
}

/// Reads a user's revocation version, which every new access token carries.
pub async fn revocation_version(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
) -> Result<i64, StoreError> {
    let version = sqlx::query_scalar("select revocation_version from users where id = $1")
        .bind(user_id)
        .fetch_optional(executor)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    Ok(version)
}

/// Increments a user's revocation version, which rejects every access token issued before.
pub async fn bump_revocation_version(tx: &mut Tx<'_>, user_id: Uuid) -> Result<i64, StoreError> {
    let version = sqlx::query_scalar(
        "update users set revocation_version = revocation_version + 1 where id = $1 returning revocation_version",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("user"))?;
    Ok(version)
}

/// Resolves @handles to the ids of the tenant's members who hold them.
pub async fn resolve_handles(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    handles: &[String],
) -> Result<Vec<Uuid>, StoreError> {
    if handles.is_empty() {
        return Ok(Vec::new());
    }
    let lowered: Vec<String> = handles.iter().map(|h| h.to_lowercase()).collect();
    let ids = sqlx::query_scalar(
        "select user_id from memberships where tenant_id = $1 and lower(handle) = any($2)",
    )
    .bind(tenant_id)
    .bind(lowered)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids)
}

/// Runs a trivial query, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

/// A person as account mail needs them.
#[derive(Debug, Clone, FromRow)]
pub struct MailRecipient {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// Finds the account with this e-mail address, compared case-insensitively.
pub async fn find_by_email(
    executor: impl sqlx::PgExecutor<'_>,
    email: &str,
) -> Result<Option<MailRecipient>, StoreError> {
    let row = sqlx::query_as::<_, MailRecipient>(
        "select id as user_id, email, name from users
         where lower(email) = lower($1) and disabled_at is null",
    )
    .bind(email)
    .fetch_optional(executor)
    .await?;
    Ok(row)
}

/// Records that the person receives mail at their address, unless that was recorded before.
pub async fn mark_email_verified(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "update users set email_verified_at = now() where id = $1 and email_verified_at is null",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reports whether the person has verified their e-mail address.
pub async fn is_email_verified(pool: &PgPool, user_id: Uuid) -> Result<bool, StoreError> {
    let verified =
        sqlx::query_scalar("select email_verified_at is not null from users where id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
    Ok(verified)
}
