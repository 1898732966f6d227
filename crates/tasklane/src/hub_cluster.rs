//! Wiring of the hub's connection owner registry to Redis, so hub nodes need no sticky
//! sessions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tasklane_cache::Cache;
use tasklane_config::HubNodeSettings;
use tasklane_hub::{ConnectionOwners, HubCluster, OwnersUnavailable};

/// [`ConnectionOwners`] in Redis, as `<prefix>:hub:conn:{key}` with a TTL.
///
/// NOTE: while Redis is unreachable, nodes cannot find each other's connections, so every
/// negotiated connection (server-sent events, long polling, and WebSockets after negotiate)
/// works only with sticky sessions until Redis is back.
pub struct RedisConnectionOwners {
    pub cache: Cache,
}

#[async_trait::async_trait]
impl ConnectionOwners for RedisConnectionOwners {
    async fn register(
        &self,
        key: &str,
        owner_url: &str,
        ttl: Duration,
    ) -> Result<(), OwnersUnavailable> {
        self.cache
            .set_hub_owner(key, owner_url, ttl)
            .await
            .map_err(unavailable)
    }

    async fn owner(&self, key: &str) -> Result<Option<String>, OwnersUnavailable> {
        self.cache.hub_owner(key).await.map_err(unavailable)
    }

    async fn remove(&self, key: &str) -> Result<(), OwnersUnavailable> {
        self.cache.remove_hub_owner(key).await.map_err(unavailable)
    }
}

fn unavailable(error: impl std::fmt::Display) -> OwnersUnavailable {
    OwnersUnavailable(error.to_string())
}

/// Builds the cluster settings of a hub node whose HTTP server listens on `bound`.
pub fn hub_cluster(settings: &HubNodeSettings, cache: Cache, bound: SocketAddr) -> HubCluster {
    let advertise_url = match &settings.advertise_url {
        Some(url) => url.clone(),
        None => default_advertise_url(bound),
    };
    tracing::info!(%advertise_url, "hub node advertises its address for forwarded requests");
    HubCluster::new(Arc::new(RedisConnectionOwners { cache }), advertise_url)
}

/// Returns `http://` and the bound address, with a loopback address in place of an
/// unspecified one (`0.0.0.0` or `::`), which no other node could connect to.
fn default_advertise_url(bound: SocketAddr) -> String {
    let mut address = bound;
    if address.ip().is_unspecified() {
        tracing::warn!(
            %bound,
            "hub.advertise_url is not set and the server binds an unspecified address, so \
             other hub nodes can reach this one only on the same machine: set \
             TASKLANE_HUB__ADVERTISE_URL"
        );
        let loopback = match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        address.set_ip(loopback);
    }
    format!("http://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_advertise_url_uses_bound_address() {
        let bound: SocketAddr = "10.1.2.3:8080".parse().unwrap();

        assert_eq!(default_advertise_url(bound), "http://10.1.2.3:8080");
    }

    #[test]
    fn default_advertise_url_replaces_unspecified() {
        let v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let v6: SocketAddr = "[::]:8080".parse().unwrap();

        assert_eq!(default_advertise_url(v4), "http://127.0.0.1:8080");
        assert_eq!(default_advertise_url(v6), "http://[::1]:8080");
    }
}
