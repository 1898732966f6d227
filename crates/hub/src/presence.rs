//! Presence: the users viewing each task and the users online in each tenant.
//!
//! Every connection is a member of its tenant's presence set, and of a task's presence
//! set while it has joined the task's group. The sets live in a [`PresenceStore`] that
//! every hub node shares. Each node refreshes its connections' entries every heartbeat
//! interval, and the store drops entries that were not refreshed within its expiry, so
//! the entries of a node that dies without a clean shutdown age out.
//!
//! When a set changes, the store publishes its users to every node. Each node sends them
//! with [`crate::Hub::dispatch_presence`] to its own connections in the group, as
//! `viewers` for a `task:{id}` group and `onlineUsers` for a `tenant:{id}` group. The one
//! argument is `{"group", "users": [{"user_id", "name", "handle"}]}`, where the
//! application may leave out `name` and `handle`. These messages carry no sequence number,
//! so `Resume` never replays them: a client that reconnects receives the current set with
//! the next change, or reads it with the `OnlineUsers` hub method.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::connection::Connection;

/// One connection's entry in a presence set. A user with two connections has two
/// entries, so closing one of them keeps the user present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceMember {
    pub user_id: Uuid,
    /// The connection's public id from negotiate, unique across nodes.
    pub connection_id: String,
}

/// A user in a presence set, with the display name and tenant handle when the
/// application found them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceUser {
    pub user_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

impl PresenceUser {
    /// Creates an entry with the user id alone.
    pub fn new(user_id: Uuid) -> Self {
        Self {
            user_id,
            name: None,
            handle: None,
        }
    }
}

/// Failure of the presence store, logged by the hub.
#[derive(Debug, Clone, thiserror::Error)]
#[error("presence store failed: {0}")]
pub struct PresenceError(pub String);

/// Storage of presence sets shared by every hub node, keyed by group name.
#[async_trait::async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds `members` to the set of `group`, or refreshes their heartbeat, and drops the
    /// set's expired entries. When that changed the set's users, publishes them to every
    /// node.
    async fn refresh(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError>;

    /// Removes `members` from the set of `group` and drops its expired entries. When that
    /// changed the set's users, publishes them to every node.
    async fn remove(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError>;

    /// Returns the distinct users of the set of `group` whose entries have not expired.
    async fn users(&self, group: &str) -> Result<Vec<PresenceUser>, PresenceError>;
}

/// Returns whether `group` has a presence set: task groups for viewers and tenant groups
/// for online users.
pub(crate) fn is_presence_group(group: &str) -> bool {
    group.starts_with("task:") || group.starts_with("tenant:")
}

/// Returns the client method that receives the users of a presence set, or `None` for a
/// group without one.
pub(crate) fn client_method(group: &str) -> Option<&'static str> {
    if group.starts_with("task:") {
        Some("viewers")
    } else if group.starts_with("tenant:") {
        Some("onlineUsers")
    } else {
        None
    }
}

/// Builds the argument of a `viewers` or `onlineUsers` invocation.
pub(crate) fn users_argument(group: &str, users: &[PresenceUser]) -> Value {
    json!({ "group": group, "users": users })
}

pub(crate) fn member_of(connection: &Connection) -> PresenceMember {
    PresenceMember {
        user_id: connection.principal.user_id,
        connection_id: connection.connection_id.clone(),
    }
}

/// Capacity of the presence update queue. When the store falls this far behind, new
/// updates are dropped: a dropped refresh is repeated by the next heartbeat, and an entry
/// whose removal was dropped expires.
const QUEUE_CAPACITY: usize = 10_000;

/// A presence store and the queue that applies updates to it one at a time, in the order
/// the hub queued them, so a connection's removal never overtakes its addition.
pub(crate) struct Presence {
    pub store: Arc<dyn PresenceStore>,
    updates: mpsc::Sender<QueueItem>,
}

enum QueueItem {
    Update {
        group: String,
        members: Vec<PresenceMember>,
        present: bool,
    },
    /// Completed once every item queued before it has been applied.
    Flush(oneshot::Sender<()>),
}

impl Presence {
    /// Starts the task that applies queued updates, which ends when `self` is dropped.
    /// Must be called inside a tokio runtime.
    pub fn start(store: Arc<dyn PresenceStore>) -> Self {
        let (updates, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(apply_updates(Arc::clone(&store), receiver));
        Self { store, updates }
    }

    /// Queues adding (`present`) or removing `member` in each presence group of `groups`.
    pub fn enqueue_member(&self, groups: &[String], member: &PresenceMember, present: bool) {
        for group in groups.iter().filter(|group| is_presence_group(group)) {
            self.enqueue(group.clone(), vec![member.clone()], present);
        }
    }

    /// Queues an update of `members` in `group`.
    pub fn enqueue(&self, group: String, members: Vec<PresenceMember>, present: bool) {
        let update = QueueItem::Update {
            group: group.clone(),
            members,
            present,
        };
        if let Err(TrySendError::Full(_)) = self.updates.try_send(update) {
            tracing::warn!(
                %group,
                present,
                capacity = QUEUE_CAPACITY,
                "presence update queue full, update dropped"
            );
        }
    }

    /// Waits until every update queued before this call has been applied.
    pub async fn flush(&self) {
        let (done, applied) = oneshot::channel();
        if self.updates.send(QueueItem::Flush(done)).await.is_ok() {
            let _ = applied.await;
        }
    }
}

async fn apply_updates(store: Arc<dyn PresenceStore>, mut items: mpsc::Receiver<QueueItem>) {
    while let Some(item) = items.recv().await {
        let (group, members, present) = match item {
            QueueItem::Update {
                group,
                members,
                present,
            } => (group, members, present),
            QueueItem::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let result = if present {
            store.refresh(&group, &members).await
        } else {
            store.remove(&group, &members).await
        };
        if let Err(error) = result {
            tracing::warn!(
                %error,
                %group,
                members = members.len(),
                present,
                "presence update failed"
            );
        }
    }
}

/// Queues a refresh of the entries of `connections` every `interval` until `shutdown` is
/// cancelled, one update per presence group.
///
/// NOTE: a connection that closes between the snapshot of `connections` and the queueing
/// of its refresh is added back, and its entry stays until it expires.
pub(crate) async fn run_heartbeat(
    presence: &Presence,
    connections: impl Fn() -> Vec<Arc<Connection>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut by_group: HashMap<String, Vec<PresenceMember>> = HashMap::new();
        for connection in connections() {
            if connection.is_closing() {
                continue;
            }
            for group in connection.joined_group_names() {
                if is_presence_group(&group) {
                    by_group
                        .entry(group)
                        .or_default()
                        .push(member_of(&connection));
                }
            }
        }
        for (group, members) in by_group {
            presence.enqueue(group, members, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_groups_are_tasks_and_tenants() {
        assert!(is_presence_group("task:1"));
        assert!(is_presence_group("tenant:1"));
        assert!(!is_presence_group("job:1"));
        assert!(!is_presence_group("user:1"));
    }

    #[test]
    fn client_method_follows_group_kind() {
        assert_eq!(client_method("task:1"), Some("viewers"));
        assert_eq!(client_method("tenant:1"), Some("onlineUsers"));
        assert_eq!(client_method("job:1"), None);
    }

    #[test]
    fn users_argument_lists_users() {
        let named = PresenceUser {
            user_id: Uuid::from_u128(1),
            name: Some("Ana".to_owned()),
            handle: Some("ana".to_owned()),
        };
        let unnamed = PresenceUser::new(Uuid::from_u128(2));

        let argument = users_argument("task:1", &[named.clone(), unnamed.clone()]);

        let expected_users = json!([
            { "user_id": named.user_id, "name": "Ana", "handle": "ana" },
            { "user_id": unnamed.user_id },
        ]);
        assert_eq!(
            argument,
            json!({ "group": "task:1", "users": expected_users })
        );
    }
}
