//! Single-use tokens sent by e-mail: address verification and password reset.

use std::time::Duration;

use uuid::Uuid;

use crate::{StoreError, Tx};

/// The use an account token is for, as stored in `account_tokens.purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

/// Stores a new token's hash for `user_id`. Unused tokens of the same purpose are deleted
/// first, so only the newest mail works.
pub async fn create(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    purpose: Purpose,
    token_hash: &[u8],
    ttl: Duration,
) -> Result<(), StoreError> {
    sqlx::query(
        "delete from account_tokens where user_id = $1 and purpose = $2 and used_at is null",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "insert into account_tokens (token_hash, user_id, purpose, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(ttl.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the token used and returns its user. One statement matches only an unused,
/// unexpired token of `purpose`, so of two parallel requests with one token only one gets
/// the user. Unknown, used, expired and other-purpose tokens all return `None`.
pub async fn consume(
    tx: &mut Tx<'_>,
    token_hash: &[u8],
    purpose: Purpose,
) -> Result<Option<Uuid>, StoreError> {
    let user_id = sqlx::query_scalar(
        "update account_tokens set used_at = now()
         where token_hash = $1 and purpose = $2 and used_at is null and expires_at > now()
         returning user_id",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(user_id)
}

/// Returns the user of an unused, unexpired token of `purpose` without using it up, so a
/// request can be validated before `consume` runs in the transaction that applies it.
pub async fn find_open(
    pool: &sqlx::PgPool,
    token_hash: &[u8],
    purpose: Purpose,
) -> Result<Option<Uuid>, StoreError> {
    let user_id = sqlx::query_scalar(
        "select user_id from account_tokens
         where token_hash = $1 and purpose = $2 and used_at is null and expires_at > now()",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(user_id)
}
