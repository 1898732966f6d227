//! Delivers events to the hub. The relay is the hub's only publisher: it numbers each
//! group's messages, records them in `hub_messages` in the transaction that advances its
//! cursor, and after the commit appends them to each group's Redis log and publishes them
//! on the Redis backplane to every hub node.
//!
//! The transaction also sends a PostgreSQL notification, so hub nodes that cannot reach
//! Redis still learn of new messages and read them from `hub_messages`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tasklane_cache::backplane::HubLogEntry;
use tasklane_cache::Cache;
use tasklane_domain::groups::{job_group, task_group, user_group};
use tasklane_domain::EventEnvelope;
use tasklane_hub::HubMessage;
use tasklane_store::outbox::OutboxRow;
use tasklane_store::{PgPool, Tx};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::Destination;

/// How long `hub_messages` keeps a message. A client that resumes from an older one
/// fetches the current state again.
pub const HUB_MESSAGE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Minimum time between two pruning steps of `hub_messages`.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Maximum number of rows one pruning step deletes.
const PRUNE_LIMIT: i64 = 5_000;

/// The payload published on the backplane and stored in a group's Redis log: the hub
/// message and its global position in `hub_messages`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishedMessage {
    pub position: i64,
    #[serde(flatten)]
    pub message: HubMessage,
}

pub struct HubDestination {
    cache: Cache,
    pool: PgPool,
    /// Messages recorded by the current batch, published once its transaction commits.
    pending: Mutex<Vec<PublishedMessage>>,
    /// When the relay last pruned `hub_messages`, `None` before the first time.
    last_prune: Mutex<Option<Instant>>,
}

impl HubDestination {
    pub fn new(cache: Cache, pool: PgPool) -> Self {
        Self {
            cache,
            pool,
            pending: Mutex::new(Vec::new()),
            last_prune: Mutex::new(None),
        }
    }

    /// Deletes up to [`PRUNE_LIMIT`] messages older than [`HUB_MESSAGE_RETENTION`], unless
    /// this destination already tried within the last [`PRUNE_INTERVAL`].
    async fn prune_if_due(&self) {
        let mut last_prune = self.last_prune.lock().await;
        if last_prune.is_some_and(|at| at.elapsed() < PRUNE_INTERVAL) {
            return;
        }
        *last_prune = Some(Instant::now());
        match tasklane_store::hub::prune(&self.pool, HUB_MESSAGE_RETENTION, PRUNE_LIMIT).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "pruned old hub messages"),
            Err(error) => tracing::warn!(?error, "pruning old hub messages failed"),
        }
    }
}

/// The group and client method an event is pushed to, if any.
///
/// A task change goes to the task's group only; a notification to its recipient.
pub fn route(event: &EventEnvelope) -> Option<(String, &'static str)> {
    let kind = event.event_type.as_str();
    if kind.starts_with("task.") {
        return Some((task_group(event.subject_id), "taskUpdated"));
    }
    if kind.starts_with("job.") {
        return Some((job_group(event.subject_id), "jobProgress"));
    }
    if kind == "notification.created" {
        let user_id = event.data.get("user_id")?.as_str()?.parse::<Uuid>().ok()?;
        return Some((user_group(user_id), "notification"));
    }
    None
}

#[async_trait::async_trait]
impl Destination for HubDestination {
    fn name(&self) -> &'static str {
        "hub"
    }

    async fn deliver(&self, tx: &mut Tx<'_>, rows: &[OutboxRow]) -> anyhow::Result<()> {
        let mut pending = self.pending.lock().await;
        pending.clear();
        for row in rows {
            let event = &row.envelope.0;
            let Some((group, method)) = route(event) else {
                continue;
            };
            let message = tasklane_store::hub::append(
                tx,
                &group,
                event.tenant_id,
                event.event_id,
                method,
                |seq| {
                    serde_json::json!({
                        "event_id": event.event_id,
                        "group": group,
                        "seq": seq,
                        "type": event.event_type,
                        "data": event.data,
                    })
                },
            )
            .await?;
            pending.push(PublishedMessage {
                position: message.position,
                message: HubMessage {
                    group: message.group_name,
                    seq: message.seq,
                    event_id: message.event_id,
                    event_type: event.event_type.clone(),
                    method: method.to_owned(),
                    data: event.data.clone(),
                },
            });
        }
        if !pending.is_empty() {
            tasklane_store::hub::notify_appended(tx).await?;
        }
        Ok(())
    }

    async fn after_commit(&self) {
        let messages = std::mem::take(&mut *self.pending.lock().await);
        let mut entries = Vec::with_capacity(messages.len());
        for published in messages {
            let Ok(payload) = serde_json::to_string(&published) else {
                continue;
            };
            entries.push(HubLogEntry {
                group: published.message.group,
                seq: published.message.seq,
                payload,
            });
        }
        // A batch that Redis misses is still in `hub_messages`: hub nodes find it there on
        // their next PostgreSQL read, and resuming clients read it from there.
        self.cache.publish_hub_messages(&entries).await;
        self.prune_if_due().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> PublishedMessage {
        PublishedMessage {
            position: 42,
            message: HubMessage {
                group: "task:x".to_owned(),
                seq: 7,
                event_id: Uuid::nil(),
                event_type: "task.updated".to_owned(),
                method: "taskUpdated".to_owned(),
                data: serde_json::json!({ "title": "t" }),
            },
        }
    }

    #[test]
    fn published_message_is_flat_json() {
        let value = serde_json::to_value(published()).unwrap();

        assert_eq!(value["position"], 42);
        assert_eq!(value["group"], "task:x");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["data"]["title"], "t");
    }

    // A hub node that predates positions reads the payload as a plain hub message.
    #[test]
    fn published_message_parses_as_hub_message() {
        let payload = serde_json::to_string(&published()).unwrap();

        let message: HubMessage = serde_json::from_str(&payload).unwrap();

        assert_eq!(message.group, "task:x");
        assert_eq!(message.seq, 7);
    }
}
