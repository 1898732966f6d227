//! The hub backplane: the relay publishes each sequenced hub message on one Redis channel,
//! and every hub node subscribed to it delivers the message to its local connections.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Channel name, under the namespace prefix, that carries hub messages.
pub const HUB_CHANNEL: &str = "hub:messages";

/// Delay before subscribing again after the subscription broke.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Calls `deliver` with every payload published on the hub channel until `cancel` fires,
/// subscribing again whenever the connection breaks.
///
/// NOTE: messages published while the subscription is down are not replayed here; clients
/// recover them from `hub_messages` in PostgreSQL when they resume.
pub async fn subscribe(
    url: String,
    channel: String,
    cancel: CancellationToken,
    deliver: impl Fn(String) + Send,
) {
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = run_subscription(&url, &channel, &deliver) => outcome,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, channel, "hub backplane subscription lost, retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}

async fn run_subscription(
    url: &str,
    channel: &str,
    deliver: &impl Fn(String),
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    tracing::info!(channel, "hub backplane subscribed");
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        match message.get_payload::<String>() {
            Ok(payload) => deliver(payload),
            Err(error) => tracing::warn!(%error, "hub backplane message is not text, dropped"),
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::IoError,
        "subscription stream ended",
    )))
}
