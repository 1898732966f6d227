//! Delivers every event to the RabbitMQ exchange `task.events`, routed by event type.

use tasklane_bus::rabbit::{self, RabbitPublisher};
use tasklane_bus::Topology;
use tasklane_store::outbox::OutboxRow;
use tasklane_store::Tx;
use tokio::sync::Mutex;

use super::Destination;

pub struct RabbitDestination {
    url: String,
    topology: Topology,
    /// Opened on first use and again after a failure, so the relay starts while RabbitMQ is down.
    publisher: Mutex<Option<(lapin::Connection, RabbitPublisher)>>,
}

impl RabbitDestination {
    pub fn new(url: String, topology: Topology) -> Self {
        Self { url, topology, publisher: Mutex::new(None) }
    }
}

#[async_trait::async_trait]
impl Destination for RabbitDestination {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn deliver(&self, _tx: &mut Tx<'_>, rows: &[OutboxRow]) -> anyhow::Result<()> {
        let mut guard = self.publisher.lock().await;
        if guard.as_ref().is_none_or(|(_, publisher)| !publisher.is_connected()) {
            let connection = rabbit::connect(&self.url).await?;
            let publisher = RabbitPublisher::new(&connection, &self.topology).await?;
            *guard = Some((connection, publisher));
        }
        let (_, publisher) = guard.as_ref().expect("publisher was just opened");
        let outcome = async {
            for row in rows {
                let event = &row.envelope.0;
                let payload = serde_json::to_vec(event)?;
                publisher.publish(&event.event_type, &event.event_id.to_string(), &payload).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if outcome.is_err() {
            *guard = None;
        }
        outcome
    }
}
