//! An in-process cache of each user's access: revocation version, disabled flag and role
//! per tenant, so authenticating a request costs no query once the user is cached.
//!
//! Entries are dropped when the `tasklane_access` channel names the user (the triggers of
//! migration 0004 send it on every relevant change). While the listener is not connected,
//! the cache is bypassed and every lookup reads PostgreSQL, so a lost notification can never
//! leave a stale entry in use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::StoreError;

/// The channel the access triggers notify, with the user id as payload.
pub const CHANNEL: &str = "tasklane_access";

/// Prefix of the channel's payload for a revoked browser session, followed by its id.
const SESSION_PAYLOAD_PREFIX: &str = "session:";

/// Entries kept before the cache is emptied and refilled; bounds memory, not correctness.
const MAX_ENTRIES: usize = 100_000;

/// Changes buffered per subscriber of [`AccessCache::subscribe`]. A subscriber that falls
/// further behind gets `RecvError::Lagged` and must recheck every user.
const CHANGE_CAPACITY: usize = 1024;

/// Delay before reconnecting a listener whose connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A user's current access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    pub revocation_version: i64,
    pub disabled: bool,
    /// Role per tenant the user belongs to.
    pub roles: HashMap<Uuid, String>,
}

impl UserAccess {
    /// Returns the user's role in `tenant_id` when the user is enabled and a member.
    pub fn role_in(&self, tenant_id: Uuid) -> Option<&str> {
        if self.disabled {
            return None;
        }
        self.roles.get(&tenant_id).map(String::as_str)
    }
}

/// A change of access announced to [`AccessCache::subscribe`] receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// The user's revocation version, disabled flag or memberships may have changed.
    User(Uuid),
    /// Any user's access may have changed, for example while the listener was
    /// reconnecting.
    All,
    /// The browser session with this id was revoked. The user's other sessions and their
    /// cached access are unchanged.
    BrowserSessionRevoked(Uuid),
}

#[derive(Clone)]
pub struct AccessCache {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    entries: RwLock<HashMap<Uuid, Arc<UserAccess>>>,
    /// Incremented on every invalidation, so a lookup that raced one does not store its
    /// possibly older result.
    generation: AtomicU64,
    listening: AtomicBool,
    changes: broadcast::Sender<AccessChange>,
}

impl AccessCache {
    /// Creates a cache that stays bypassed until [`AccessCache::listen`] is connected.
    pub fn new(pool: PgPool) -> Self {
        let inner = Inner {
            pool,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            changes: broadcast::channel(CHANGE_CAPACITY).0,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Reads the user's access from PostgreSQL, bypassing the cache, for decisions that
    /// must not act on a change whose notification has not arrived yet, such as issuing new
    /// tokens. Returns `None` for an unknown user.
    pub async fn get_uncached(&self, user_id: Uuid) -> Result<Option<Arc<UserAccess>>, StoreError> {
        Ok(load(&self.inner.pool, user_id).await?.map(Arc::new))
    }

    /// Returns the user's access, or `None` for an unknown user.
    pub async fn get(&self, user_id: Uuid) -> Result<Option<Arc<UserAccess>>, StoreError> {
        if let Some(access) = self.read_entries().get(&user_id) {
            return Ok(Some(access.clone()));
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let Some(access) = load(&self.inner.pool, user_id).await? else {
            return Ok(None);
        };
        let access = Arc::new(access);
        // The generation is compared under the write lock that invalidation also takes, so
        // an invalidation either comes first and stops the insert, or comes later and
        // removes the entry.
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let unchanged = self.inner.generation.load(Ordering::SeqCst) == generation;
        if unchanged && self.inner.listening.load(Ordering::SeqCst) {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(user_id, access.clone());
        }
        Ok(Some(access))
    }

    /// Returns a receiver of every access change that the listener receives from now on.
    /// Each change is sent after its cache entry is dropped, so a lookup on receipt reads
    /// the new state.
    pub fn subscribe(&self) -> broadcast::Receiver<AccessChange> {
        self.inner.changes.subscribe()
    }

    /// Returns whether the listener is connected, so lookups are cached.
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::SeqCst)
    }

    /// Listens for access changes until `shutdown` completes, reconnecting after failures.
    pub async fn listen(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                () = self.listen_once() => {}
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
        self.stop_caching();
    }

    /// Runs one listener connection until it fails.
    async fn listen_once(&self) {
        let mut listener = match PgListener::connect_with(&self.inner.pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "access cache could not connect its listener, bypassing the cache");
                return;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, channel = CHANNEL, "access cache could not listen, bypassing the cache");
            return;
        }
        // Changes made before LISTEN took effect were not notified, so start empty.
        self.invalidate_all();
        self.inner.listening.store(true, Ordering::SeqCst);
        tracing::debug!(channel = CHANNEL, "access cache listening");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => self.apply(notification.payload()),
                Ok(None) => {
                    tracing::warn!("access cache listener lost its connection, reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "access cache listener failed, reconnecting");
                    break;
                }
            }
        }
        self.stop_caching();
    }

    /// Acts on one notification: a user id, or `session:{id}` for a revoked browser
    /// session.
    fn apply(&self, payload: &str) {
        if let Some(session_id) = payload.strip_prefix(SESSION_PAYLOAD_PREFIX) {
            match session_id.parse::<Uuid>() {
                Ok(session_id) => {
                    let _ = self
                        .inner
                        .changes
                        .send(AccessChange::BrowserSessionRevoked(session_id));
                }
                Err(_) => tracing::warn!(payload, "access notification has an invalid session id"),
            }
            return;
        }
        match payload.parse::<Uuid>() {
            Ok(user_id) => self.invalidate(user_id),
            Err(_) => {
                tracing::warn!(payload, "access notification is not a user id");
                self.invalidate_all();
            }
        }
    }

    fn stop_caching(&self) {
        self.inner.listening.store(false, Ordering::SeqCst);
        self.invalidate_all();
    }

    fn invalidate(&self, user_id: Uuid) {
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(&user_id);
        drop(entries);
        // A tokio broadcast send fails only when there is no receiver, and then no one
        // needs the change.
        let _ = self.inner.changes.send(AccessChange::User(user_id));
    }

    fn invalidate_all(&self) {
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
        drop(entries);
        let _ = self.inner.changes.send(AccessChange::All);
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Arc<UserAccess>>> {
        self.inner.entries.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(sqlx::FromRow)]
struct AccessRow {
    revocation_version: i64,
    disabled: bool,
    tenant_id: Option<Uuid>,
    role: Option<String>,
}

/// Reads a user's access from PostgreSQL in one query.
async fn load(pool: &PgPool, user_id: Uuid) -> Result<Option<UserAccess>, StoreError> {
    let rows = sqlx::query_as::<_, AccessRow>(
        "select u.revocation_version, u.disabled_at is not null as disabled, m.tenant_id, m.role
         from users u left join memberships m on m.user_id = u.id
         where u.id = $1",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut access = UserAccess {
        revocation_version: first.revocation_version,
        disabled: first.disabled,
        roles: HashMap::new(),
    };
    for row in rows {
        if let (Some(tenant_id), Some(role)) = (row.tenant_id, row.role) {
            access.roles.insert(tenant_id, role);
        }
    }
    Ok(Some(access))
}
