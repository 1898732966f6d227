//! Delivers events to Kafka: job requests to `bulk-operations` (keyed by tenant), task
//! changes to `task-changes` (keyed by task) and every event with an actor to
//! `user-activity-stream` (keyed by user).

use futures::future::try_join_all;
use tasklane_bus::kafka::{KafkaProducer, OutgoingRecord};
use tasklane_bus::Topology;
use tasklane_domain::EventEnvelope;
use tasklane_store::outbox::OutboxRow;
use tasklane_store::Tx;

use super::Destination;

/// Largest record the relay sends; librdkafka's default `message.max.bytes` is 1,000,000.
/// A larger event goes out with its `data` replaced by a note, and consumers read the
/// subject from the API instead.
const MAX_RECORD_BYTES: usize = 900_000;

pub struct KafkaDestination {
    producer: KafkaProducer,
    topology: Topology,
}

impl KafkaDestination {
    pub fn new(producer: KafkaProducer, topology: Topology) -> Self {
        Self { producer, topology }
    }

    /// Lists the (topic, key) pairs an event goes to.
    fn routes(&self, event: &EventEnvelope) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        let tenant = event.tenant_id.map(|t| t.to_string()).unwrap_or_default();
        if event.event_type == "job.requested" {
            routes.push((self.topology.bulk_operations(), tenant));
        }
        if event.event_type.starts_with("task.") {
            routes.push((self.topology.task_changes(), event.subject_id.to_string()));
        }
        if let Some(actor) = event.actor_id {
            routes.push((self.topology.user_activity(), actor.to_string()));
        }
        routes
    }
}

#[async_trait::async_trait]
impl Destination for KafkaDestination {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn deliver(&self, _tx: &mut Tx<'_>, rows: &[OutboxRow]) -> anyhow::Result<()> {
        let mut records = Vec::new();
        for row in rows {
            let event = &row.envelope.0;
            let payload = fit_record(event)?;
            let message_id = event.event_id.to_string();
            for (topic, key) in self.routes(event) {
                records.push((
                    topic,
                    key,
                    payload.clone(),
                    event.event_type.clone(),
                    event.schema_version,
                    message_id.clone(),
                ));
            }
        }
        // Sent concurrently, but the cursor moves only when every record is stored.
        try_join_all(records.iter().map(
            |(topic, key, payload, event_type, schema_version, message_id)| {
                self.producer.send(OutgoingRecord {
                    topic,
                    key,
                    payload,
                    event_type,
                    schema_version: *schema_version,
                    message_id,
                })
            },
        ))
        .await?;
        Ok(())
    }
}

/// Serializes an event, dropping its `data` when the record would exceed the size limit,
/// so one huge event can never stall the stream behind it.
fn fit_record(event: &EventEnvelope) -> anyhow::Result<Vec<u8>> {
    let payload = serde_json::to_vec(event)?;
    if payload.len() <= MAX_RECORD_BYTES {
        return Ok(payload);
    }
    tracing::warn!(event_id = %event.event_id, bytes = payload.len(), "event too large for kafka, sending it without data");
    let mut trimmed = event.clone();
    trimmed.data = serde_json::json!({ "omitted": "too large", "bytes": payload.len() });
    Ok(serde_json::to_vec(&trimmed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_event_loses_only_its_data() {
        let subject = uuid::Uuid::now_v7();
        let big = serde_json::json!({ "description": "x".repeat(MAX_RECORD_BYTES) });
        let event = EventEnvelope::new(
            tasklane_domain::EventType::TaskUpdated,
            subject,
            None,
            subject,
            Some(2),
            big,
        );

        let record = fit_record(&event).unwrap();

        assert!(record.len() < MAX_RECORD_BYTES);
        let parsed: EventEnvelope = serde_json::from_slice(&record).unwrap();
        assert_eq!(parsed.event_id, event.event_id);
        assert_eq!(parsed.subject_version, Some(2));
        assert_eq!(parsed.data["omitted"], "too large");
    }
}
