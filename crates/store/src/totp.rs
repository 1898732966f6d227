//! Each user's optional TOTP second factor: the secret, whether it is confirmed, and the
//! time step of the last accepted code.

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::{StoreError, Tx};

/// A user's TOTP enrolment.
#[derive(Debug, Clone, FromRow)]
pub struct StoredTotp {
    pub secret: Vec<u8>,
    pub confirmed: bool,
    pub last_used_step: Option<i64>,
}

/// Reads the user's enrolment, confirmed or not.
pub async fn find(pool: &PgPool, user_id: Uuid) -> Result<Option<StoredTotp>, StoreError> {
    let stored = sqlx::query_as::<_, StoredTotp>(
        "select secret, confirmed_at is not null as confirmed, last_used_step
         from user_totp where user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(stored)
}

/// Stores a new unconfirmed secret, replacing an earlier unconfirmed one. Returns false,
/// changing nothing, when the user already has a confirmed second factor.
pub async fn begin_enrolment(
    pool: &PgPool,
    user_id: Uuid,
    secret: &[u8],
) -> Result<bool, StoreError> {
    let stored = sqlx::query(
        "insert into user_totp (user_id, secret) values ($1, $2)
         on conflict (user_id) do update
             set secret = excluded.secret, last_used_step = null, created_at = now()
             where user_totp.confirmed_at is null",
    )
    .bind(user_id)
    .bind(secret)
    .execute(pool)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// Records that a code of time step `step` was accepted, if no code of this or a later step
/// was accepted before. Returns false otherwise, so two requests racing with the same code
/// cannot both pass. With `confirm`, it also marks the enrolment confirmed.
pub async fn use_step(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    step: i64,
    confirm: bool,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "update user_totp
         set last_used_step = $2,
             confirmed_at = case when $3 then coalesce(confirmed_at, now()) else confirmed_at end
         where user_id = $1
           and (last_used_step is null or last_used_step < $2)
           and (confirmed_at is not null or $3)",
    )
    .bind(user_id)
    .bind(step)
    .bind(confirm)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Removes the user's second factor.
pub async fn remove(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("delete from user_totp where user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
