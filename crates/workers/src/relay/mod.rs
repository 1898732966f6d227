//! The outbox relay: reads committed events in order and delivers them to each destination
//! (RabbitMQ, Kafka, the hub), keeping one cursor per destination so a destination that is
//! down holds back only its own stream.
//!
//! Delivery is at least once: a crash between publishing and committing the cursor
//! publishes the batch again, and consumers drop repeats by `event_id`.

mod hub;
mod kafka;
mod rabbit;

pub use hub::{HubDestination, PublishedMessage, HUB_MESSAGE_RETENTION};
pub use kafka::KafkaDestination;
pub use rabbit::RabbitDestination;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tasklane_config::RelaySettings;
use tasklane_store::outbox::{self, OutboxRow};
use tasklane_store::{PgPool, Tx};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A place the relay delivers events to.
#[async_trait::async_trait]
pub trait Destination: Send + Sync + 'static {
    /// Cursor name, unique per destination.
    fn name(&self) -> &'static str;

    /// Delivers a batch. Runs inside the transaction that will advance the cursor, so work
    /// written through `tx` commits together with the cursor.
    async fn deliver(&self, tx: &mut Tx<'_>, rows: &[OutboxRow]) -> anyhow::Result<()>;

    /// Runs after the cursor committed, for effects that must not precede the commit.
    async fn after_commit(&self) {}
}

/// Runs every destination until `cancel` fires.
pub async fn run(
    pool: PgPool,
    destinations: Vec<Arc<dyn Destination>>,
    settings: RelaySettings,
    cancel: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen_for_outbox(
        pool.clone(),
        wake.clone(),
        cancel.clone(),
    ));
    let mut loops = Vec::new();
    for destination in destinations {
        loops.push(tokio::spawn(run_destination(
            pool.clone(),
            destination,
            wake.clone(),
            settings.clone(),
            cancel.clone(),
        )));
    }
    for handle in loops {
        let _ = handle.await;
    }
    listener.abort();
}

/// Wakes the destinations whenever a transaction that wrote to the outbox commits.
async fn listen_for_outbox(pool: PgPool, wake: Arc<Notify>, cancel: CancellationToken) {
    loop {
        let outcome: Result<(), sqlx::Error> = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen("outbox").await?;
            loop {
                listener.recv().await?;
                wake.notify_waiters();
            }
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "outbox listener failed, polling until it reconnects");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn run_destination(
    pool: PgPool,
    destination: Arc<dyn Destination>,
    wake: Arc<Notify>,
    settings: RelaySettings,
    cancel: CancellationToken,
) {
    let name = destination.name();
    while let Err(error) = outbox::ensure_cursor(&pool, name).await {
        tracing::warn!(destination = name, %error, "could not create the relay cursor, retrying");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(settings.retry_delay) => {}
        }
    }
    tracing::info!(destination = name, "relay destination started");
    let metrics = tasklane_telemetry::metrics();
    let mut failing = false;
    let mut consecutive_failures: u64 = 0;
    loop {
        // Registered before reading, so a NOTIFY that arrives during the read is not lost.
        let notified = wake.notified();
        let delay = match deliver_batch(&pool, destination.as_ref(), settings.batch_size).await {
            Ok(0) => settings.poll_interval,
            Ok(count) => {
                if failing {
                    tracing::info!(destination = name, "relay destination recovered");
                    failing = false;
                    consecutive_failures = 0;
                }
                metrics
                    .relay_published
                    .with_label_values(&[name])
                    .inc_by(count as u64);
                continue;
            }
            Err(error) => {
                metrics.relay_failures.with_label_values(&[name]).inc();
                consecutive_failures += 1;
                let error = format!("{error:#}");
                if !failing {
                    tracing::warn!(destination = name, error, "relay delivery failed, retrying");
                    failing = true;
                } else if consecutive_failures.is_multiple_of(30) {
                    // Still failing: someone must look, since this stream is held back.
                    tracing::error!(
                        destination = name,
                        error,
                        consecutive_failures,
                        "relay delivery keeps failing"
                    );
                }
                settings.retry_delay
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = notified, if !failing => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(destination = name, "relay destination stopped");
}

/// Delivers the next batch and advances the cursor; returns how many events it delivered.
async fn deliver_batch(
    pool: &PgPool,
    destination: &dyn Destination,
    limit: i64,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    // The destination stays locked until commit, so two relays never deliver the same batch
    // to one destination at the same time.
    let cursor = outbox::lock_cursor(&mut tx, destination.name()).await?;
    let rows = outbox::read_after(&mut tx, cursor, limit).await?;
    let Some(last) = rows.last() else {
        tx.commit().await?;
        return Ok(0);
    };
    destination.deliver(&mut tx, &rows).await?;
    outbox::advance_cursor(&mut tx, destination.name(), last).await?;
    tx.commit().await?;
    destination.after_commit().await;
    Ok(rows.len())
}
