//! The [`Hub`] handle and the state its HTTP handlers and connection tasks share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::backend::{HubBackend, HubMessage, Principal};
use crate::cluster::{ClusterState, HubCluster};
use crate::connection::{Connection, ConnectionKey, OutboundEvent};
use crate::groups::GroupRegistry;
use crate::negotiate::Negotiations;
use crate::presence::{self, Presence, PresenceStore, PresenceUser};
use crate::protocol::CloseMessage;
use crate::settings::HubSettings;

/// Maximum time [`Hub::shutdown`] waits for the presence store to apply the removals of
/// the closed connections.
const PRESENCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A SignalR hub server: HTTP routes for negotiate and the WebSocket transport, plus
/// fan-out of relay messages to connected clients. Cloning is cheap and shares the state.
#[derive(Clone)]
pub struct Hub {
    pub(crate) shared: Arc<HubShared>,
}

pub(crate) struct HubShared {
    pub backend: Arc<dyn HubBackend>,
    pub settings: HubSettings,
    pub negotiations: Negotiations,
    pub groups: GroupRegistry,
    connections: RwLock<HashMap<ConnectionKey, Arc<Connection>>>,
    next_key: AtomicU64,
    /// Cancelled when [`Hub::shutdown`] starts.
    pub shutdown: CancellationToken,
    /// Connection tasks, so [`Hub::shutdown`] can wait for them.
    pub tasks: TaskTracker,
    /// The store of viewers and online users and its update queue, set by
    /// [`Hub::set_presence`].
    pub presence: OnceLock<Presence>,
    /// Set when other hub nodes may receive this node's connections' requests.
    pub cluster: Option<ClusterState>,
}

impl Hub {
    /// Creates a hub that serves no connections until its [`Hub::router`] is served.
    ///
    /// # Panics
    ///
    /// Panics if [`HubSettings::validate`] rejects `settings`.
    pub fn new(backend: Arc<dyn HubBackend>, settings: HubSettings) -> Self {
        Self::with_cluster(backend, settings, None)
    }

    /// Creates a hub that, with `cluster`, forwards the requests of connections that other
    /// nodes own to those nodes. It also records its own connections for the other nodes.
    /// See [`crate::HubCluster`].
    ///
    /// # Panics
    ///
    /// Panics if [`HubSettings::validate`] rejects `settings`.
    pub fn with_cluster(
        backend: Arc<dyn HubBackend>,
        settings: HubSettings,
        cluster: Option<HubCluster>,
    ) -> Self {
        if let Err(error) = settings.validate() {
            panic!("{error}");
        }
        let shared = HubShared {
            backend,
            settings,
            negotiations: Negotiations::default(),
            groups: GroupRegistry::default(),
            connections: RwLock::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            presence: OnceLock::new(),
            cluster: cluster.map(ClusterState::new),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Routes `{path}/negotiate` (POST) and `{path}` (WebSocket GET), with `path` from
    /// [`HubSettings::path`]. The router has no state left to provide, so it can be merged
    /// into the application router.
    pub fn router(&self) -> axum::Router {
        crate::http::router(Arc::clone(&self.shared))
    }

    /// Delivers `message` to every connection of this process in `message.group`.
    ///
    /// Does not wait for any client, because each connection gets the message through its
    /// bounded queue and a connection whose queue is full is closed. It only takes short
    /// in-memory locks. Connections that are joining the group
    /// hold it back until their join completes; see the crate documentation.
    pub fn dispatch(&self, message: &HubMessage) {
        let mut event: Option<OutboundEvent> = None;
        let mut recipients = 0usize;

        self.shared
            .groups
            .for_each_member(&message.group, |connection| {
                let event = event.get_or_insert_with(|| OutboundEvent::new(message.clone()));
                connection.deliver(&message.group, event);
                recipients += 1;
            });

        tracing::trace!(
            group = %message.group,
            seq = message.seq,
            event_id = %message.event_id,
            recipients,
            "dispatched hub message"
        );
    }

    /// Keeps viewers and online users in `store`, which the hub nodes share, and starts the
    /// task that applies updates to it, so it must be called inside a tokio runtime. Only
    /// the first call has an effect. Connections that registered before it are added to
    /// `store` by the next heartbeat of [`Hub::run_presence_heartbeat`].
    pub fn set_presence(&self, store: Arc<dyn PresenceStore>) {
        self.shared.presence.get_or_init(|| Presence::start(store));
    }

    /// Refreshes the presence entries of this process's connections every `interval` until
    /// `shutdown` is cancelled. The store expires entries that a dead node stops
    /// refreshing, so `interval` must be well below the store's expiry. Returns at once
    /// when no store was set.
    pub async fn run_presence_heartbeat(&self, interval: Duration, shutdown: CancellationToken) {
        let Some(presence) = self.shared.presence.get() else {
            return;
        };
        let connections = || -> Vec<Arc<Connection>> {
            self.shared.connections.read().values().cloned().collect()
        };
        presence::run_heartbeat(presence, connections, interval, shutdown).await;
    }

    /// Names of the groups with a presence set (task and tenant groups) that have members
    /// in this process.
    pub fn presence_groups(&self) -> Vec<String> {
        let mut groups = self.shared.groups.names();
        groups.retain(|group| presence::client_method(group).is_some());
        groups
    }

    /// Sends the current users of the presence set of `group` to this process's
    /// connections that have joined `group`: `viewers` for a task group, `onlineUsers`
    /// for a tenant group. Ignores other groups.
    ///
    /// These messages have no sequence number, so `Resume` does not replay them.
    pub fn dispatch_presence(&self, group: &str, users: &[PresenceUser]) {
        let Some(method) = presence::client_method(group) else {
            tracing::debug!(%group, "presence update for a group without presence, dropped");
            return;
        };
        let argument = presence::users_argument(group, users);
        self.shared.groups.for_each_member(group, |connection| {
            connection.send_if_joined(group, |protocol| {
                protocol.client_invocation(method, &argument)
            });
        });
    }

    /// Closes every connection of `user_id` in this process whose principal matches
    /// `should_close`, with the `Close` message of `reason`. Returns how many it closed.
    pub fn close_user_where(
        &self,
        user_id: Uuid,
        reason: CloseReason,
        should_close: impl Fn(&Principal) -> bool,
    ) -> usize {
        self.close_where(reason, |principal| {
            principal.user_id == user_id && should_close(principal)
        })
    }

    /// Closes every connection in this process whose principal matches `should_close`,
    /// with the `Close` message of `reason`. Returns how many it closed.
    pub fn close_where(
        &self,
        reason: CloseReason,
        should_close: impl Fn(&Principal) -> bool,
    ) -> usize {
        let connections: Vec<_> = self
            .shared
            .connections
            .read()
            .values()
            .filter(|connection| should_close(&connection.principal))
            .cloned()
            .collect();
        for connection in &connections {
            tracing::info!(
                connection_id = %connection.connection_id,
                user_id = %connection.principal.user_id,
                reason = reason.description(),
                "closing hub connection"
            );
            connection.close(Some(reason.close_message()));
        }
        connections.len()
    }

    /// Closes every connection of `user_id` in this process with the `Close` message of
    /// `reason`. Returns how many it closed.
    pub fn close_user(&self, user_id: Uuid, reason: CloseReason) -> usize {
        self.close_user_where(user_id, reason, |_| true)
    }

    /// Distinct browser sessions that authenticated an open connection in this process.
    pub fn connected_browser_sessions(&self) -> Vec<Uuid> {
        let mut sessions: Vec<Uuid> = self
            .shared
            .connections
            .read()
            .values()
            .filter_map(|connection| connection.principal.browser_session_id)
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions
    }

    /// Distinct users with at least one open connection in this process.
    pub fn connected_users(&self) -> Vec<Uuid> {
        let mut users: Vec<Uuid> = self
            .shared
            .connections
            .read()
            .values()
            .map(|connection| connection.principal.user_id)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Number of connections that completed the handshake and have not closed yet.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.read().len()
    }

    /// Sends `Close` with `allowReconnect: true` to every connection, rejects new ones
    /// with 503, and waits until every connection task has ended.
    ///
    /// Each connection gets at most [`crate::session::CLOSE_TIMEOUT`] to write its
    /// remaining frames, and the presence store gets 2 s more to remove their entries, so
    /// this returns within about that time.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();

        let connections: Vec<_> = self.shared.connections.read().values().cloned().collect();
        tracing::info!(
            connections = connections.len(),
            "hub shutting down, closing connections"
        );
        for connection in connections {
            connection.close(Some(CloseMessage::reconnectable(None)));
        }

        self.shared.tasks.close();
        self.shared.tasks.wait().await;

        // The other nodes' clients then see this node's viewers leave at once rather than
        // when their entries expire.
        if let Some(presence) = self.shared.presence.get() {
            let flushed = tokio::time::timeout(PRESENCE_FLUSH_TIMEOUT, presence.flush()).await;
            if flushed.is_err() {
                tracing::warn!(
                    timeout = ?PRESENCE_FLUSH_TIMEOUT,
                    "presence removals not applied before shutdown, they will expire"
                );
            }
        }
        tracing::info!("hub shut down");
    }
}

impl HubShared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    pub fn next_connection_key(&self) -> ConnectionKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes a connection that completed its handshake reachable by [`Hub::dispatch`] and
    /// adds it to its user and tenant groups.
    pub fn register(&self, connection: &Arc<Connection>) {
        let groups = [
            connection.principal.user_group(),
            connection.principal.tenant_group(),
        ];
        for group in &groups {
            connection.add_joined(group);
            self.groups.add(group, connection);
        }
        self.connections
            .write()
            .insert(connection.key, Arc::clone(connection));
        if let Some(updates) = self.presence.get() {
            let groups = [connection.principal.tenant_group()];
            updates.enqueue_member(&groups, &presence::member_of(connection), true);
        }

        // A shutdown that started before the insert above did not see this connection.
        if self.is_shutting_down() {
            connection.close(Some(CloseMessage::reconnectable(None)));
        }
    }

    /// Removes a connection from every group and from the connection table.
    pub fn unregister(&self, connection: &Connection) {
        let groups = connection.group_names();
        for group in &groups {
            self.groups.remove(group, connection.key);
        }
        let registered = self.connections.write().remove(&connection.key).is_some();
        if let (true, Some(updates)) = (registered, self.presence.get()) {
            updates.enqueue_member(&groups, &presence::member_of(connection), false);
        }
    }
}

/// Why the server closes a user's connections, which decides whether the client may
/// reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The user was disabled, removed from the tenant, or had their sessions revoked.
    /// The client gets `allowReconnect: false`, because reconnecting with the same
    /// credential would fail.
    AccessRevoked,
    /// The access token expired. The client gets `allowReconnect: true` and negotiates
    /// again with a fresh token.
    TokenExpired,
}

impl CloseReason {
    /// Returns the text that the `Close` message carries as its error and the log records.
    pub fn description(self) -> &'static str {
        match self {
            CloseReason::AccessRevoked => "access revoked: sign in again",
            CloseReason::TokenExpired => "access token expired: reconnect with a fresh token",
        }
    }

    pub(crate) fn close_message(self) -> CloseMessage {
        let error = self.description().to_owned();
        match self {
            CloseReason::AccessRevoked => CloseMessage::error(error),
            CloseReason::TokenExpired => CloseMessage::reconnectable(Some(error)),
        }
    }
}
