//! The hub's durable message log: one sequence per group, every message kept in
//! `hub_messages` so a client can catch up from PostgreSQL, and one global position per
//! message so a hub node can follow the log when the Redis backplane is down.
//!
//! Retention: the relay deletes messages older than its retention period with [`prune`].
//! A client that resumes from before that gets `resync`.

use std::time::Duration;

pub use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// A message for one hub group, numbered within the group.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct SequencedMessage {
    pub group_name: String,
    pub seq: i64,
    /// Global delivery order across groups: increases in the relay's commit order, with
    /// gaps where a relay transaction rolled back.
    pub position: i64,
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
    let position: i64 = sqlx::query_scalar(
        "insert into hub_messages (group_name, seq, event_id, method, envelope)
         values ($1, $2, $3, $4, $5)
         returning position",
    )
    .bind(group_name)
    .bind(seq)
    .bind(event_id)
    .bind(method)
    .bind(&envelope)
    .fetch_one(&mut *conn)
    .await?;
    Ok(SequencedMessage {
        group_name: group_name.to_owned(),
        seq,
        position,
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
        "select group_name, seq, position, event_id, method, envelope from hub_messages
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

/// PostgreSQL notification channel on which the relay announces new hub messages.
pub const NOTIFY_CHANNEL: &str = "hub_messages";

/// Sends a notification on [`NOTIFY_CHANNEL`]. PostgreSQL delivers it when the caller's
/// transaction commits, and drops it when the transaction rolls back.
pub async fn notify_appended(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("select pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Opens a connection that listens on [`NOTIFY_CHANNEL`].
pub async fn listen(pool: &PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

/// Returns the highest position in `hub_messages`, 0 when the table is empty.
pub async fn last_position(pool: &PgPool) -> Result<i64, StoreError> {
    let position: Option<i64> = sqlx::query_scalar("select max(position) from hub_messages")
        .fetch_one(pool)
        .await?;
    Ok(position.unwrap_or(0))
}

/// Reads up to `limit` messages of every group with a position greater than `after`, in
/// position order.
///
/// Reading by position never skips a message. Only the relay inserts, under its hub lock,
/// so a transaction that commits later always takes higher positions than every
/// committed one.
pub async fn messages_after_position(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<SequencedMessage>, StoreError> {
    let messages = sqlx::query_as(
        "select group_name, seq, position, event_id, method, envelope from hub_messages
         where position > $1
         order by position
         limit $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(messages)
}

/// Deletes up to `limit` of the oldest messages recorded more than `retention` ago, and
/// returns how many it deleted.
///
/// Only the `limit` lowest positions are examined. `created_at` is the relay
/// transaction's start time, so it follows position order except for the time a
/// transaction waited for the hub lock. A row among them that is not old enough yet only
/// holds back the rows after it until a later call.
pub async fn prune(pool: &PgPool, retention: Duration, limit: i64) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "delete from hub_messages
         where position in (select position from hub_messages order by position limit $2)
           and created_at < now() - make_interval(secs => $1)",
    )
    .bind(retention.as_secs_f64())
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
