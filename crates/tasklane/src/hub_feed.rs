//! Feeds the local hub with every message the relay records in `hub_messages`, once each
//! and in the relay's commit order, from the Redis backplane while it works and from
//! PostgreSQL while it does not.
//!
//! Every message carries its position in `hub_messages`, which increases in the relay's
//! commit order. The feed dispatches a message only when its position is above the last
//! one dispatched, and it fills any hole in the positions from PostgreSQL before going
//! on. A message that arrives both from Redis and from PostgreSQL is therefore
//! dispatched once, and each group's messages are dispatched in sequence order.
//!
//! With Redis down, the feed listens on the relay's PostgreSQL notification, polls
//! `hub_messages` as well in case a notification is lost, and tries to subscribe again
//! every few seconds. A switch in either direction first reads PostgreSQL past the last
//! position dispatched, so nothing published in between is lost.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tasklane_cache::backplane;
use tasklane_hub::{Hub, HubMessage};
use tasklane_store::hub::{self, PgListener};
use tasklane_store::PgPool;
use tasklane_workers::relay::PublishedMessage;
use tokio::time::{interval_at, sleep, Instant};
use tokio_util::sync::CancellationToken;

use crate::hub_history::to_hub_message;

/// How often PostgreSQL is polled while Redis is down, in case a notification is lost.
const POSTGRES_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often PostgreSQL is read while Redis works, to deliver a message whose publication
/// on Redis failed when no later message reveals the hole.
const REDIS_AUDIT_INTERVAL: Duration = Duration::from_secs(5);

/// Time between two attempts to subscribe to Redis while it is down.
const RESUBSCRIBE_INTERVAL: Duration = Duration::from_secs(2);

/// Maximum number of messages read from PostgreSQL per query.
const READ_LIMIT: i64 = 500;

/// The state of one hub node's feed.
pub struct HubFeed {
    pool: PgPool,
    hub: Hub,
    redis_url: String,
    channel: String,
    /// Position of the last message dispatched to the hub.
    last_position: i64,
    /// Whether the last read of `hub_messages` failed, so that an outage is logged once.
    postgres_failing: bool,
}

impl HubFeed {
    pub fn new(pool: PgPool, hub: Hub, redis_url: String, channel: String) -> Self {
        Self {
            pool,
            hub,
            redis_url,
            channel,
            last_position: 0,
            postgres_failing: false,
        }
    }

    /// Dispatches messages to the hub until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        if !self.read_start_position(&cancel).await {
            return;
        }
        let mut listener: Option<PgListener> = None;
        let mut on_redis = true;
        loop {
            match backplane::subscribe(&self.redis_url, &self.channel).await {
                Ok(payloads) => {
                    listener = None;
                    if on_redis {
                        tracing::info!(channel = self.channel, "hub backplane subscribed");
                    } else {
                        tracing::info!(
                            channel = self.channel,
                            "hub backplane subscribed again, delivering from Redis"
                        );
                    }
                    self.follow_redis(payloads, &cancel).await;
                    if cancel.is_cancelled() {
                        return;
                    }
                    tracing::warn!(
                        channel = self.channel,
                        "hub backplane subscription lost, delivering from PostgreSQL until \
                         Redis is back"
                    );
                    on_redis = false;
                }
                Err(error) => {
                    if on_redis {
                        tracing::warn!(
                            %error,
                            channel = self.channel,
                            "hub backplane unreachable, delivering from PostgreSQL until Redis \
                             is back"
                        );
                        on_redis = false;
                    }
                }
            }
            if !self.follow_postgres(&mut listener, &cancel).await {
                return;
            }
        }
    }

    /// Reads the position of the last message recorded so far and starts after it, since
    /// the hub has no connection yet that could miss an earlier one. Returns false when
    /// cancelled first.
    async fn read_start_position(&mut self, cancel: &CancellationToken) -> bool {
        loop {
            match hub::last_position(&self.pool).await {
                Ok(position) => {
                    self.last_position = position;
                    return true;
                }
                Err(error) => {
                    if !self.postgres_failing {
                        tracing::warn!(
                            ?error,
                            "reading the last hub message position failed, retrying"
                        );
                        self.postgres_failing = true;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = sleep(POSTGRES_POLL_INTERVAL) => {}
            }
        }
    }

    /// Dispatches the messages published on Redis until the subscription ends or `cancel`
    /// fires.
    async fn follow_redis(
        &mut self,
        mut payloads: impl Stream<Item = String> + Unpin,
        cancel: &CancellationToken,
    ) {
        // The subscription is active, so every message committed after this read also
        // arrives on it.
        self.read_postgres().await;
        let mut audit = interval_at(Instant::now() + REDIS_AUDIT_INTERVAL, REDIS_AUDIT_INTERVAL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                payload = payloads.next() => match payload {
                    Some(payload) => self.receive(&payload).await,
                    None => return,
                },
                _ = audit.tick() => self.read_postgres().await,
            }
        }
    }

    /// Dispatches from PostgreSQL until it is time to try Redis again. Returns false when
    /// `cancel` fired.
    async fn follow_postgres(
        &mut self,
        listener: &mut Option<PgListener>,
        cancel: &CancellationToken,
    ) -> bool {
        if listener.is_none() {
            match hub::listen(&self.pool).await {
                Ok(opened) => *listener = Some(opened),
                Err(error) => tracing::debug!(?error, "listening for hub messages failed, polling"),
            }
        }
        self.read_postgres().await;
        let retry = sleep(RESUBSCRIBE_INTERVAL);
        tokio::pin!(retry);
        let mut poll = interval_at(
            Instant::now() + POSTGRES_POLL_INTERVAL,
            POSTGRES_POLL_INTERVAL,
        );
        loop {
            let notified = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = &mut retry => return true,
                _ = poll.tick() => self.read_postgres().await,
                outcome = notified => match outcome {
                    Ok(()) => self.read_postgres().await,
                    Err(error) => {
                        tracing::debug!(%error, "hub message listener failed, polling");
                        *listener = None;
                    }
                },
            }
        }
    }

    /// Dispatches a message received from Redis, after the messages before it.
    async fn receive(&mut self, payload: &str) {
        let published: PublishedMessage = match serde_json::from_str(payload) {
            Ok(published) => published,
            Err(error) => {
                tracing::warn!(%error, "backplane message is not a hub message, dropped");
                return;
            }
        };
        if published.position <= self.last_position {
            return;
        }
        if published.position > self.last_position + 1 {
            // A hole: a rolled-back relay transaction skipped positions, or Redis missed
            // messages, or a second relay process published its batch late. PostgreSQL
            // has every message before this one, since they all committed before it.
            self.read_postgres().await;
            if published.position <= self.last_position {
                return;
            }
            // NOTE: reaching here means PostgreSQL failed, so the messages in the hole,
            // if any, are skipped; their clients get them only by calling `Resume`.
        }
        self.dispatch(&published.message, published.position);
    }

    /// Dispatches every message in `hub_messages` after the last position dispatched.
    async fn read_postgres(&mut self) {
        loop {
            let messages = match hub::messages_after_position(
                &self.pool,
                self.last_position,
                READ_LIMIT,
            )
            .await
            {
                Ok(messages) => messages,
                Err(error) => {
                    if !self.postgres_failing {
                        tracing::warn!(?error, "reading hub_messages failed, retrying");
                        self.postgres_failing = true;
                    }
                    return;
                }
            };
            if self.postgres_failing {
                tracing::info!("reading hub_messages works again");
                self.postgres_failing = false;
            }
            let count = messages.len() as i64;
            for stored in messages {
                let position = stored.position;
                self.dispatch(&to_hub_message(stored), position);
            }
            if count < READ_LIMIT {
                return;
            }
        }
    }

    fn dispatch(&mut self, message: &HubMessage, position: i64) {
        self.hub.dispatch(message);
        self.last_position = position;
    }
}
