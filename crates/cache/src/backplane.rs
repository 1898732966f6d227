//! The hub backplane: the relay publishes each sequenced hub message on one Redis channel,
//! and every hub node subscribed to it delivers the message to its local connections.
//! Next to the channel, Redis keeps each group's recent messages in `hub:{group}:log`, a
//! sorted set scored by sequence number, so a resuming client is served without a
//! PostgreSQL range read.

use std::time::Duration;

use futures::{Stream, StreamExt};
use redis::AsyncCommands;

use crate::Cache;

/// Channel name, under the namespace prefix, that carries hub messages.
pub const HUB_CHANNEL: &str = "hub:messages";

/// Number of recent messages kept per group in `hub:{group}:log`.
pub const HUB_LOG_LENGTH: isize = 500;

/// How long a group's log stays in Redis after its last message.
pub const HUB_LOG_TTL: Duration = Duration::from_secs(60 * 60);

/// How long a subscription attempt may take before it counts as failed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a hub log call may take. While Redis is down, the connection manager makes
/// calls wait for its reconnection attempts, which would hold back the relay and
/// resuming clients that PostgreSQL can serve.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Returns the key, before the namespace prefix, of a group's recent message log.
pub fn hub_log_key(group: &str) -> String {
    format!("hub:{group}:log")
}

/// One message for [`Cache::publish_hub_messages`]: the JSON payload that hub nodes
/// receive, and where it goes in its group's log.
pub struct HubLogEntry {
    pub group: String,
    pub seq: i64,
    pub payload: String,
}

impl Cache {
    /// Appends each message to its group's log, trims the log to [`HUB_LOG_LENGTH`],
    /// renews its TTL and publishes the message on [`HUB_CHANNEL`], all in one MULTI
    /// transaction, so a hub node never receives a message that the log lacks. Returns
    /// false when Redis failed, timed out or is not connected. After a timeout, Redis may
    /// still have applied the transaction.
    ///
    /// NOTE: Redis Cluster rejects a MULTI whose keys hash to different slots, so a batch
    /// that spans groups fails there. Running on a cluster needs one MULTI per group.
    pub async fn publish_hub_messages(&self, entries: &[HubLogEntry]) -> bool {
        if entries.is_empty() {
            return true;
        }
        let Some(mut connection) = self.connection.clone() else {
            return false;
        };
        let channel = self.key(HUB_CHANNEL);
        let ttl = HUB_LOG_TTL.as_secs() as i64;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in entries {
            let key = self.key(&hub_log_key(&entry.group));
            pipe.zadd(&key, &entry.payload, entry.seq).ignore();
            // Rank -(length + 1) and below are the entries beyond the newest length.
            pipe.zremrangebyrank(&key, 0, -(HUB_LOG_LENGTH + 1))
                .ignore();
            pipe.expire(&key, ttl).ignore();
            pipe.publish(&channel, &entry.payload).ignore();
        }
        let result: redis::RedisResult<()> =
            tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut connection))
                .await
                .unwrap_or_else(|_| Err(timed_out("publishing hub messages")));
        self.record("publish hub messages", result).is_some()
    }

    /// Reads the payloads in a group's log with a sequence number in `first_seq..=last_seq`,
    /// in order, with their sequence numbers. Returns `None` when Redis failed or is not
    /// connected. The log may lack any of them, so callers check what they got.
    pub async fn hub_log_range(
        &self,
        group: &str,
        first_seq: i64,
        last_seq: i64,
    ) -> Option<Vec<(i64, String)>> {
        let mut connection = self.connection.clone()?;
        let key = self.key(&hub_log_key(group));
        let read = connection.zrangebyscore_withscores(key, first_seq, last_seq);
        let result: redis::RedisResult<Vec<(String, i64)>> =
            tokio::time::timeout(CALL_TIMEOUT, read)
                .await
                .unwrap_or_else(|_| Err(timed_out("reading a hub log")));
        let entries = self.record("read hub log", result)?;
        Some(
            entries
                .into_iter()
                .map(|(payload, seq)| (seq, payload))
                .collect(),
        )
    }
}

/// Subscribes to `channel` and returns the stream of its text payloads. The stream ends
/// when the connection to Redis breaks.
pub async fn subscribe(
    url: &str,
    channel: &str,
) -> redis::RedisResult<impl Stream<Item = String> + Send + Unpin + 'static> {
    let client = redis::Client::open(url)?;
    let mut pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out("connecting for the hub backplane subscription"))??;
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| timed_out("subscribing to the hub backplane"))??;
    let payloads = pubsub.into_on_message().filter_map(|message| async move {
        match message.get_payload::<String>() {
            Ok(payload) => Some(payload),
            Err(error) => {
                tracing::warn!(%error, "hub backplane message is not text, dropped");
                None
            }
        }
    });
    Ok(Box::pin(payloads))
}

fn timed_out(operation: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, "timed out", operation.to_owned()))
}
