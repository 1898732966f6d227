//! The notify consumer: turns each comment's @mentions into notification rows, whose
//! outbox events the relay pushes to the mentioned people's `user:{id}` groups.

use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use tasklane_bus::rabbit;
use tasklane_domain::EventEnvelope;
use tasklane_store::{idempotency, notifications, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Name under which this consumer records the messages it applied.
const CONSUMER: &str = "notify";
/// Unacknowledged messages in flight per consumer.
const PREFETCH: u16 = 32;

pub struct NotifyConsumer {
    pub pool: PgPool,
    pub rabbit_url: String,
    pub topology: tasklane_bus::Topology,
    pub retry_delay: Duration,
}

impl NotifyConsumer {
    /// Consumes `task.notifications` until `cancel` fires, reconnecting after failures.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!("notify consumer started");
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => break,
                outcome = self.consume() => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "notify consumer lost rabbitmq, reconnecting"
                );
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.retry_delay) => {}
            }
        }
        tracing::info!("notify consumer stopped");
    }

    async fn consume(&self) -> anyhow::Result<()> {
        let connection = rabbit::connect(&self.rabbit_url).await?;
        let setup = connection.create_channel().await?;
        rabbit::declare_topology(&setup, &self.topology).await?;
        let queue = self.topology.notifications_queue();
        let (_channel, mut consumer) =
            rabbit::consume(&connection, &queue, CONSUMER, PREFETCH).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            self.handle(&delivery).await?;
        }
        anyhow::bail!("the rabbitmq consumer stream ended")
    }

    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        let event: EventEnvelope = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "notification message is not an event envelope, dead-lettered");
                rabbit::dead_letter(delivery).await?;
                return Ok(());
            }
        };
        match self.apply(&event).await {
            Ok(()) => rabbit::ack(delivery).await?,
            Err(error) => {
                tracing::warn!(event_id = %event.event_id, error = format!("{error:#}"), "notification failed, requeued");
                tokio::time::sleep(self.retry_delay).await;
                rabbit::requeue(delivery).await?;
            }
        }
        Ok(())
    }

    /// Creates one notification per mentioned person, once per event however often it arrives.
    async fn apply(&self, event: &EventEnvelope) -> anyhow::Result<()> {
        if event.event_type != "comment.created" {
            return Ok(());
        }
        let Some(tenant_id) = event.tenant_id else {
            return Ok(());
        };
        let comment: CommentData = serde_json::from_value(event.data.clone())?;
        let mut tx = self.pool.begin().await?;
        if !idempotency::mark_processed(&mut tx, CONSUMER, event.event_id).await? {
            return Ok(());
        }
        for user_id in comment
            .mentions
            .iter()
            .filter(|id| Some(**id) != comment.author_id)
        {
            let data = serde_json::json!({
                "task_id": comment.task_id,
                "comment_id": comment.id,
                "author_id": comment.author_id,
                "excerpt": comment.body.chars().take(200).collect::<String>(),
            });
            notifications::create_mention(
                &mut tx,
                tenant_id,
                *user_id,
                comment.task_id,
                comment.id,
                data,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct CommentData {
    id: Uuid,
    task_id: Uuid,
    author_id: Option<Uuid>,
    body: String,
    mentions: Vec<Uuid>,
}
