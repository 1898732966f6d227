//! The hub's connection owner registry: `hub:conn:{key}` stores the base URL of the hub node
//! that owns the connection, with a TTL that the owner refreshes while the connection
//! lives.
//!
//! Unlike the rest of [`Cache`], these calls return Redis errors, because a hub node must
//! tell "no owner recorded" apart from "the registry is unreachable".

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;

use crate::Cache;

impl Cache {
    /// Stores `owner_url` as the owner of hub connection `key` for `ttl` (at least 1 s).
    pub async fn set_hub_owner(
        &self,
        key: &str,
        owner_url: &str,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let mut connection = self.connection_or_error()?;
        let result = connection
            .set_ex(self.hub_owner_key(key), owner_url, ttl.as_secs().max(1))
            .await;
        self.track_health("set hub owner", result)
    }

    /// Reads the owner URL of hub connection `key`, if one is recorded.
    pub async fn hub_owner(&self, key: &str) -> redis::RedisResult<Option<String>> {
        let mut connection = self.connection_or_error()?;
        let result = connection.get(self.hub_owner_key(key)).await;
        self.track_health("get hub owner", result)
    }

    /// Deletes the owner record of hub connection `key`.
    pub async fn remove_hub_owner(&self, key: &str) -> redis::RedisResult<()> {
        let mut connection = self.connection_or_error()?;
        let result: redis::RedisResult<i64> = connection.del(self.hub_owner_key(key)).await;
        self.track_health("delete hub owner", result).map(drop)
    }

    fn hub_owner_key(&self, key: &str) -> String {
        self.key(&format!("hub:conn:{key}"))
    }

    fn connection_or_error(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        self.connection.clone().ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::IoError,
                "redis was unreachable when the process started",
            ))
        })
    }

    /// Records the outcome in the health flag and logs the first failure of an outage,
    /// like [`Cache::record`], and returns the result unchanged.
    fn track_health<T>(
        &self,
        operation: &str,
        result: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        match &result {
            Ok(_) => self.healthy.store(true, Ordering::Relaxed),
            Err(error) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, operation, "redis call failed");
                }
            }
        }
        result
    }
}
