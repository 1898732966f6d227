//! The [`Hub`] handle and the state its HTTP handlers and connection tasks share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{HubBackend, HubMessage};
use crate::cluster::{ClusterState, HubCluster};
use crate::connection::{Connection, ConnectionKey, OutboundEvent};
use crate::groups::GroupRegistry;
use crate::negotiate::Negotiations;
use crate::protocol::CloseMessage;
use crate::settings::HubSettings;

/// A SignalR hub server: HTTP routes for negotiate and the WebSocket transport, plus
/// fan-out of relay messages to connected clients. Cloning is cheap and shares the state.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<HubShared>,
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
    /// nodes own to them and records its own connections for them; see
    /// [`crate::HubCluster`].
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

    /// Number of connections that completed the handshake and have not closed yet.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.read().len()
    }

    /// Sends `Close` with `allowReconnect: true` to every connection, rejects new ones
    /// with 503, and waits until every connection task has ended.
    ///
    /// Each connection gets at most [`crate::session::CLOSE_TIMEOUT`] to write its
    /// remaining frames, so this returns within about that time.
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

        // A shutdown that started before the insert above did not see this connection.
        if self.is_shutting_down() {
            connection.close(Some(CloseMessage::reconnectable(None)));
        }
    }

    /// Removes a connection from every group and from the connection table.
    pub fn unregister(&self, connection: &Connection) {
        for group in connection.group_names() {
            self.groups.remove(&group, connection.key);
        }
        self.connections.write().remove(&connection.key);
    }
}
