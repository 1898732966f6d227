//! Personal API tokens: creation, lookup by hash, listing and revocation.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::new_id;
use uuid::Uuid;

use crate::StoreError;

/// A token as its owner lists it; the token itself is never stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The fields of a new token, already validated.
pub struct NewApiToken<'a> {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub scope: &'a str,
    pub token_hash: &'a [u8],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create(pool: &PgPool, new: NewApiToken<'_>) -> Result<ApiToken, StoreError> {
    let token = sqlx::query_as::<_, ApiToken>(
        "insert into api_tokens (id, user_id, tenant_id, name, scope, token_hash, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, name, scope, created_at, expires_at, last_used_at, revoked_at",
    )
    .bind(new_id())
    .bind(new.user_id)
    .bind(new.tenant_id)
    .bind(new.name)
    .bind(new.scope)
    .bind(new.token_hash)
    .bind(new.expires_at)
    .fetch_one(pool)
    .await?;
    Ok(token)
}

/// The user, tenant and scope a presented token acts for.
#[derive(Debug, Clone, FromRow)]
pub struct TokenOwner {
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub scope: String,
}

/// Finds the unrevoked, unexpired token whose hash is `token_hash`, and records its use.
pub async fn authenticate(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<TokenOwner>, StoreError> {
    let owner = sqlx::query_as::<_, TokenOwner>(
        "update api_tokens set last_used_at = now()
         where token_hash = $1 and revoked_at is null and (expires_at is null or expires_at > now())
         returning id as token_id, user_id, tenant_id, scope",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(owner)
}

/// Lists a user's tokens in a tenant, newest first.
pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<Vec<ApiToken>, StoreError> {
    let tokens = sqlx::query_as::<_, ApiToken>(
        "select id, name, scope, created_at, expires_at, last_used_at, revoked_at
         from api_tokens where user_id = $1 and tenant_id = $2
         order by created_at desc",
    )
    .bind(user_id)
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    Ok(tokens)
}

/// Revokes one of a user's tokens; `NotFound` when the user has no such token.
pub async fn revoke(pool: &PgPool, user_id: Uuid, token_id: Uuid) -> Result<(), StoreError> {
    let revoked = sqlx::query(
        "update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = $1 and user_id = $2",
    )
    .bind(token_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    if revoked.rows_affected() == 0 {
        return Err(StoreError::NotFound("API token"));
    }
    Ok(())
}
