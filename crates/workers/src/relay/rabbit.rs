//! Delivers every event to the RabbitMQ exchange `task.events`, routed by event type.

use std::time::Duration;

use tasklane_bus::rabbit::{self, RabbitPublisher};
use tasklane_bus::Topology;
use tasklane_store::outbox::OutboxRow;
use tasklane_store::Tx;
use tokio::sync::Mutex;
use tokio::time::timeout;

/// Longest wait for RabbitMQ to connect or to confirm a message; a broker that accepts
/// connections but stops responding must fail the batch rather than hang the relay.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

use super::Destination;

pub struct RabbitDestination {
    url: String,
    topology: Topology,
    /// Opened on first use and again after a failure, so the relay starts while RabbitMQ is down.
    publisher: Mutex<Option<(lapin::Connection, RabbitPublisher)>>,
}

impl RabbitDestination {
    pub fn new(url: String, topology: Topology) -> Self {
        Self {
            url,
            topology,
            publisher: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Destination for RabbitDestination {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn deliver(&self, _tx: &mut Tx<'_>, rows: &[OutboxRow]) -> anyhow::Result<()> {
        let mut guard = self.publisher.lock().await;
        if guard
            .as_ref()
            .is_none_or(|(_, publisher)| !publisher.is_connected())
        {
            let opened = timeout(BROKER_TIMEOUT, async {
                let connection = rabbit::connect(&self.url).await?;
                let publisher = RabbitPublisher::new(&connection, &self.topology).await?;
                anyhow::Ok((connection, publisher))
            })
            .await
            .map_err(|_| {
                anyhow::anyhow!("connecting to rabbitmq timed out after {BROKER_TIMEOUT:?}")
            })??;
            *guard = Some(opened);
        }
        let (_, publisher) = guard.as_ref().expect("publisher was just opened");
        let outcome = async {
            for row in rows {
                let event = &row.envelope.0;
                let payload = serde_json::to_vec(event)?;
                let message_id = event.event_id.to_string();
                let publish = publisher.publish(&event.event_type, &message_id, &payload);
                timeout(BROKER_TIMEOUT, publish).await.map_err(|_| {
                    anyhow::anyhow!("rabbitmq did not confirm within {BROKER_TIMEOUT:?}")
                })??;
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
