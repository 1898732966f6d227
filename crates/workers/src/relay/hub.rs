//! Delivers events to the hub. The relay is the hub's only publisher: it numbers each
//! group's messages, records them in `hub_messages` in the transaction that advances its
//! cursor, and after the commit publishes them on the Redis backplane to every hub node.

use tasklane_cache::backplane::HUB_CHANNEL;
use tasklane_cache::Cache;
use tasklane_domain::groups::{job_group, task_group, user_group};
use tasklane_domain::EventEnvelope;
use tasklane_hub::HubMessage;
use tasklane_store::outbox::OutboxRow;
use tasklane_store::Tx;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::Destination;

pub struct HubDestination {
    cache: Cache,
    /// Messages recorded by the current batch, published once its transaction commits.
    pending: Mutex<Vec<HubMessage>>,
}

impl HubDestination {
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            pending: Mutex::new(Vec::new()),
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
            pending.push(HubMessage {
                group: message.group_name,
                seq: message.seq,
                event_id: message.event_id,
                event_type: event.event_type.clone(),
                method: method.to_owned(),
                data: event.data.clone(),
            });
        }
        Ok(())
    }

    async fn after_commit(&self) {
        let messages = std::mem::take(&mut *self.pending.lock().await);
        for message in messages {
            let Ok(payload) = serde_json::to_string(&message) else {
                continue;
            };
            // NOTE: a message the backplane misses is still in `hub_messages`, and a live
            // client gets it only when it reconnects and calls the hub's `Resume`.
            self.cache.publish(HUB_CHANNEL, &payload).await;
        }
    }
}
