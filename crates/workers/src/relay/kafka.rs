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

pub struct KafkaDestination {
    producer: KafkaProducer,
    topology: Topology,
}

impl KafkaDestination {
    pub fn new(producer: KafkaProducer, topology: Topology) -> Self {
        Self { producer, topology }
    }

    /// The (topic, key) pairs an event goes to.
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
            let payload = serde_json::to_vec(event)?;
            let message_id = event.event_id.to_string();
            for (topic, key) in self.routes(event) {
                records.push((topic, key, payload.clone(), event.event_type.clone(), event.schema_version, message_id.clone()));
            }
        }
        // Sent concurrently, but the cursor moves only when every record is stored.
        try_join_all(records.iter().map(|(topic, key, payload, event_type, schema_version, message_id)| {
            self.producer.send(OutgoingRecord {
                topic,
                key,
                payload,
                event_type,
                schema_version: *schema_version,
                message_id,
            })
        }))
        .await?;
        Ok(())
    }
}
