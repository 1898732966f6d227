//! Idempotency: stored responses for `Idempotency-Key` requests, and the record of which
//! broker messages each consumer has already applied.

use uuid::Uuid;

use sqlx::PgPool;

use crate::{StoreError, Tx};

/// State of an idempotency key.
#[derive(Debug)]
pub enum KeyState {
    /// The key is new and now reserved for this request.
    Reserved,
    /// A request with the key is still running.
    InProgress,
    /// A request with the key finished; replay its response.
    Completed {
        status: u16,
        response: serde_json::Value,
    },
    /// The key was used for a different request.
    Mismatch,
}

/// Reserves `key` for a request, or reports what it already holds.
pub async fn reserve(
    pool: &PgPool,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
) -> Result<KeyState, StoreError> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (user_id, key, request_hash) values ($1, $2, $3)
         on conflict do nothing",
    )
    .bind(user_id)
    .bind(key)
    .bind(request_hash)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(KeyState::Reserved);
    }
    let (stored_hash, status, response): (String, Option<i32>, Option<serde_json::Value>) = sqlx::query_as(
        "select request_hash, status, response from idempotency_keys where user_id = $1 and key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_one(pool)
    .await?;
    Ok(match (stored_hash == request_hash, status, response) {
        (false, _, _) => KeyState::Mismatch,
        (true, Some(status), Some(response)) => KeyState::Completed {
            status: status as u16,
            response,
        },
        (true, _, _) => KeyState::InProgress,
    })
}

/// Stores the response of a request that reserved `key`.
pub async fn complete(
    pool: &PgPool,
    user_id: Uuid,
    key: &str,
    status: u16,
    response: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "update idempotency_keys set status = $3, response = $4 where user_id = $1 and key = $2",
    )
    .bind(user_id)
    .bind(key)
    .bind(status as i32)
    .bind(response)
    .execute(pool)
    .await?;
    Ok(())
}

/// Frees a key whose request failed, so the client may retry with it.
pub async fn release(pool: &PgPool, user_id: Uuid, key: &str) -> Result<(), StoreError> {
    sqlx::query("delete from idempotency_keys where user_id = $1 and key = $2 and status is null")
        .bind(user_id)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks a consumed message as applied; returns false when it already was.
pub async fn mark_processed(
    tx: &mut Tx<'_>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "insert into processed_messages (consumer, event_id) values ($1, $2) on conflict do nothing",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}
