//! Redis access. Redis only stores copies of rows in PostgreSQL, so every call here
//! degrades to a logged warning when Redis is unreachable instead of failing the caller.

pub mod backplane;
mod hub_owners;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tasklane_config::NamespaceSettings;
use uuid::Uuid;

/// How long job status and progress stay in Redis.
pub const JOB_STATUS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a connection attempt, or a command's response, may take before it fails.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Returns the settings of every long-lived Redis connection of the service.
///
/// A [`ConnectionManager`] makes each command wait for its reconnection after a lost
/// connection. With the defaults of redis 0.32.7, that reconnection retries six times with
/// delays of 1 s, then 60 s (plus jitter). While Redis is down a command then waits for
/// minutes, and once Redis is back the manager may not try again for a minute. Here a
/// reconnection is one attempt of at most [`REDIS_TIMEOUT`], so a command fails within
/// about twice that. Each failed command starts the next attempt, so the first command
/// after Redis returns fails and reconnects, and the commands after it succeed.
pub fn connection_manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT)
}

/// A Redis connection that may be absent; callers never see Redis errors.
#[derive(Clone)]
pub struct Cache {
    connection: Option<ConnectionManager>,
    namespace: NamespaceSettings,
    healthy: Arc<AtomicBool>,
}

impl Cache {
    /// Connects, or returns a cache that does nothing when Redis cannot be reached now.
    pub async fn connect(url: &str, namespace: NamespaceSettings) -> Self {
        let connection = match redis::Client::open(url) {
            Ok(client) => {
                let connect =
                    ConnectionManager::new_with_config(client, connection_manager_config());
                match tokio::time::timeout(Duration::from_secs(3), connect).await {
                    Ok(Ok(connection)) => Some(connection),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "redis unreachable, running without the cache");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("redis connection timed out, running without the cache");
                        None
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "invalid redis url, running without the cache");
                None
            }
        };
        let healthy = Arc::new(AtomicBool::new(connection.is_some()));
        Self {
            connection,
            namespace,
            healthy,
        }
    }

    pub fn key(&self, name: &str) -> String {
        self.namespace.redis_key(name)
    }

    /// Returns true when the last Redis call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn record<T>(&self, operation: &str, result: redis::RedisResult<T>) -> Option<T> {
        match result {
            Ok(value) => {
                self.healthy.store(true, Ordering::Relaxed);
                Some(value)
            }
            Err(error) => {
                // Only the transition is logged, so an outage does not flood the log.
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, operation, "redis call failed, continuing without it");
                }
                None
            }
        }
    }

    /// Sends a PING and returns true on a reply, for readiness reporting.
    pub async fn ping(&self) -> bool {
        let Some(mut connection) = self.connection.clone() else {
            return false;
        };
        let result: redis::RedisResult<String> =
            redis::cmd("PING").query_async(&mut connection).await;
        self.record("ping", result).is_some()
    }

    /// Stores `job:{id}:status` and `job:{id}:progress` with the 24-hour TTL.
    pub async fn set_job_status(&self, job_id: Uuid, status: &str, progress: i32) {
        let Some(mut connection) = self.connection.clone() else {
            return;
        };
        let ttl = JOB_STATUS_TTL.as_secs();
        let result: redis::RedisResult<()> = redis::pipe()
            .set_ex(self.key(&format!("job:{job_id}:status")), status, ttl)
            .set_ex(self.key(&format!("job:{job_id}:progress")), progress, ttl)
            .query_async(&mut connection)
            .await;
        self.record("set job status", result);
    }

    /// Reads a job's status and progress, when Redis has them.
    pub async fn job_status(&self, job_id: Uuid) -> Option<(String, i32)> {
        let mut connection = self.connection.clone()?;
        let status_key = self.key(&format!("job:{job_id}:status"));
        let progress_key = self.key(&format!("job:{job_id}:progress"));
        let result: redis::RedisResult<(Option<String>, Option<i32>)> =
            connection.get(&[status_key, progress_key]).await;
        match self.record("get job status", result)? {
            (Some(status), Some(progress)) => Some((status, progress)),
            _ => None,
        }
    }

    /// Reads the cached browser session `session:{hash}` and restarts its TTL, so the entry
    /// expires `ttl` after the last use.
    pub async fn get_session(&self, hash_hex: &str, ttl: Duration) -> Option<String> {
        let mut connection = self.connection.clone()?;
        let result: redis::RedisResult<Option<String>> = connection
            .get_ex(
                self.key(&format!("session:{hash_hex}")),
                redis::Expiry::EX(ttl.as_secs().max(1)),
            )
            .await;
        self.record("get session", result)?
    }

    /// Stores a browser session as `session:{hash}` with `ttl`.
    pub async fn set_session(&self, hash_hex: &str, value: &str, ttl: Duration) {
        let Some(mut connection) = self.connection.clone() else {
            return;
        };
        let result: redis::RedisResult<()> = connection
            .set_ex(
                self.key(&format!("session:{hash_hex}")),
                value,
                ttl.as_secs().max(1),
            )
            .await;
        self.record("set session", result);
    }

    /// Deletes cached browser sessions. Returns false when Redis could not be reached, in
    /// which case a stale copy may remain until it is next checked against PostgreSQL.
    pub async fn delete_sessions(&self, hashes_hex: &[String]) -> bool {
        if hashes_hex.is_empty() {
            return true;
        }
        let Some(mut connection) = self.connection.clone() else {
            return false;
        };
        let keys: Vec<String> = hashes_hex
            .iter()
            .map(|hash| self.key(&format!("session:{hash}")))
            .collect();
        let result: redis::RedisResult<i64> = connection.del(keys).await;
        self.record("delete sessions", result).is_some()
    }

    /// Publishes a message on a pub/sub channel under the prefix.
    pub async fn publish(&self, channel: &str, payload: &str) -> bool {
        let Some(mut connection) = self.connection.clone() else {
            return false;
        };
        let result: redis::RedisResult<i64> = connection.publish(self.key(channel), payload).await;
        self.record("publish", result).is_some()
    }
}
