//! The hub's durable message log: one sequence per group, every message kept in
//! `hub_messages` so a client can catch up from PostgreSQL.

use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// A message for one hub group, numbered within the group.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct SequencedMessage {
    pub group_name: String,
    pub seq: i64,
    pub event_id: Uuid,
    pub method: String,
    pub envelope: serde_json::Value,
}

/// Takes the group's next sequence number and records the message under it.
///
/// Runs in the relay's transaction, which also advances its hub cursor, so a message gets
/// exactly one number however often the relay retries.
pub async fn append(
    conn: &mut PgConnection,
    group_name: &str,
    tenant_id: Option<Uuid>,
    event_id: Uuid,
    method: &str,
    build_envelope: impl FnOnce(i64) -> serde_json::Value,
) -> Result<SequencedMessage, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "insert into hub_groups (group_name, tenant_id, last_seq) values ($1, $2, 1)
         on conflict (group_name) do update set last_seq = hub_groups.last_seq + 1
         returning last_seq",
    )
    .bind(group_name)
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?;
    let envelope = build_envelope(seq);
    sqlx::query(
        "insert into hub_messages (group_name, seq, event_id, method, envelope) values ($1, $2, $3, $4, $5)",
    )
    .bind(group_name)
    .bind(seq)
    .bind(event_id)
    .bind(method)
    .bind(&envelope)
    .execute(&mut *conn)
    .await?;
    Ok(SequencedMessage {
        group_name: group_name.to_owned(),
        seq,
        event_id,
        method: method.to_owned(),
        envelope,
    })
}

/// Returns the last sequence number a group has used, 0 when it has none.
pub async fn last_seq(pool: &PgPool, group_name: &str) -> Result<i64, StoreError> {
    let seq: Option<i64> =
        sqlx::query_scalar("select last_seq from hub_groups where group_name = $1")
            .bind(group_name)
            .fetch_optional(pool)
            .await?;
    Ok(seq.unwrap_or(0))
}

/// Reads the messages of a group with a sequence number greater than `after_seq`, in
/// order. Returns `None` when the stored history cannot replay them: `after_seq` is beyond
/// the group's last sequence number, a message in between is missing, or there are more
/// than `max_messages`.
///
/// The relay numbers each group's messages without gaps, so a complete history contains
/// exactly `last_seq - after_seq` of them.
pub async fn messages_after(
    pool: &PgPool,
    group_name: &str,
    after_seq: i64,
    max_messages: i64,
) -> Result<Option<Vec<SequencedMessage>>, StoreError> {
    // The last sequence number is read first. Every message up to it was committed in the
    // same transaction as its number, so the read below finds them all unless some were
    // deleted.
    let last_seq = last_seq(pool, group_name).await?;
    let expected = last_seq.saturating_sub(after_seq);
    if expected < 0 || expected > max_messages {
        return Ok(None);
    }

    let messages: Vec<SequencedMessage> = sqlx::query_as(
        "select group_name, seq, event_id, method, envelope from hub_messages
         where group_name = $1 and seq > $2 and seq <= $3
         order by seq",
    )
    .bind(group_name)
    .bind(after_seq)
    .bind(last_seq)
    .fetch_all(pool)
    .await?;
    if messages.len() as i64 != expected {
        return Ok(None);
    }
    Ok(Some(messages))
}
