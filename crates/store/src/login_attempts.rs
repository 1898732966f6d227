//! Login attempt counters in fixed windows, for account lockout and per-address limits.

use std::time::Duration;

use sqlx::{FromRow, PgPool};

use crate::StoreError;

/// A key's count after recording an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct AttemptCount {
    /// Attempts in the current window, this one included.
    pub attempts: i32,
    /// Whole seconds until the window ends, at least 1.
    pub retry_after_secs: i64,
}

/// Records an attempt for `key` and returns the window's count.
///
/// One upsert both counts and starts a new window when the old one has ended, and the
/// row lock it takes makes concurrent attempts count one after the other.
pub async fn record(
    pool: &PgPool,
    key: &str,
    window: Duration,
) -> Result<AttemptCount, StoreError> {
    let count = sqlx::query_as::<_, AttemptCount>(
        "insert into login_attempts as a (key, window_started_at, attempts) values ($1, now(), 1)
         on conflict (key) do update set
             attempts = case when a.window_started_at <= now() - make_interval(secs => $2)
                             then 1 else a.attempts + 1 end,
             window_started_at = case when a.window_started_at <= now() - make_interval(secs => $2)
                                      then now() else a.window_started_at end
         returning attempts,
             greatest(1, ceil(extract(epoch from
                 window_started_at + make_interval(secs => $2) - now())))::bigint as retry_after_secs",
    )
    .bind(key)
    .bind(window.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(count)
}

/// Forgets `key`'s attempts, after a successful login.
pub async fn clear(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query("delete from login_attempts where key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Takes back one attempt of `key`, so successful logins do not use up an address's limit.
pub async fn forgive_one(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query("update login_attempts set attempts = greatest(attempts - 1, 0) where key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
