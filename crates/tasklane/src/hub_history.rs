//! The messages a resuming hub client missed: from the group's Redis log when it contains
//! all of them, otherwise from `hub_messages` in PostgreSQL.
//!
//! The guarantee: a client that resumes with `after_seq` receives every message of the
//! group numbered after it, in order and once each, the live ones that arrive meanwhile
//! included. That holds while the group's Redis log or `hub_messages` still contains all
//! of the missed ones and there are at most the caller's maximum. Otherwise it gets `resync`
//! and fetches the current state again. Redis keeps the newest
//! [`tasklane_cache::backplane::HUB_LOG_LENGTH`] messages of a group for [`tasklane_cache::backplane::HUB_LOG_TTL`]
//! after its last message. PostgreSQL keeps every message for
//! [`tasklane_workers::relay::HUB_MESSAGE_RETENTION`].

use tasklane_cache::Cache;
use tasklane_hub::{CatchUp, HubMessage};
use tasklane_store::{hub, PgPool, StoreError};
use tasklane_workers::relay::PublishedMessage;

/// Reads the messages of `group` numbered after `after_seq`, or returns `Resync` when
/// neither Redis nor PostgreSQL contains all of them or there are more than `max_messages`.
///
/// The group's last sequence number is read from PostgreSQL first, after the hub started
/// holding back the group's live messages. Every message at or below it must come from
/// here, and every later one reaches the client live.
pub async fn read_missed(
    pool: &PgPool,
    cache: &Cache,
    group: &str,
    after_seq: i64,
    max_messages: i64,
) -> Result<CatchUp, StoreError> {
    if after_seq < 0 {
        return Ok(CatchUp::Resync);
    }
    let last_seq = hub::last_seq(pool, group).await?;
    let missed = last_seq - after_seq;
    if missed < 0 || missed > max_messages {
        return Ok(CatchUp::Resync);
    }
    if missed == 0 {
        return Ok(CatchUp::Messages(Vec::new()));
    }

    if let Some(messages) = read_redis_log(cache, group, after_seq, last_seq).await {
        tracing::debug!(group, after_seq, last_seq, "hub catch-up served from redis");
        return Ok(CatchUp::Messages(messages));
    }
    let stored = hub::messages_after(pool, group, after_seq, max_messages).await?;
    let Some(stored) = stored else {
        return Ok(CatchUp::Resync);
    };
    tracing::debug!(
        group,
        after_seq,
        last_seq,
        "hub catch-up served from postgresql"
    );
    Ok(CatchUp::Messages(
        stored.into_iter().map(to_hub_message).collect(),
    ))
}

/// Reads messages `after_seq + 1..=last_seq` from the group's Redis log. Returns `None`
/// unless the log contains every one of them, for example after it was trimmed, expired,
/// lost with a Redis restart, or missed a publication while Redis was down.
async fn read_redis_log(
    cache: &Cache,
    group: &str,
    after_seq: i64,
    last_seq: i64,
) -> Option<Vec<HubMessage>> {
    let entries = cache.hub_log_range(group, after_seq + 1, last_seq).await?;
    let mut messages = Vec::with_capacity(entries.len());
    for (expected_seq, (seq, payload)) in (after_seq + 1..).zip(entries) {
        if seq != expected_seq {
            return None;
        }
        let published: PublishedMessage = match serde_json::from_str(&payload) {
            Ok(published) => published,
            Err(error) => {
                tracing::warn!(%error, group, seq, "hub log entry is not a hub message");
                return None;
            }
        };
        messages.push(published.message);
    }
    let complete = messages.len() as i64 == last_seq - after_seq;
    complete.then_some(messages)
}

/// Rebuilds the message the relay published from its stored envelope.
pub fn to_hub_message(stored: hub::SequencedMessage) -> HubMessage {
    let event_type = stored
        .envelope
        .get("type")
        .and_then(|value| value.as_str())
        .unwrap_or_default()
        .to_owned();
    let data = stored.envelope.get("data").cloned().unwrap_or_default();
    HubMessage {
        group: stored.group_name,
        seq: stored.seq,
        event_id: stored.event_id,
        event_type,
        method: stored.method,
        data,
    }
}
