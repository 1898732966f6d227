//! Hub nodes without sticky sessions: the node that negotiates a connection owns it, and
//! any other node forwards that connection's transport requests to the owner.
//!
//! At negotiate the owner records `hash(connectionToken) -> its advertised URL` in
//! [`ConnectionOwners`] and refreshes the record every third of
//! [`HubCluster::registration_ttl`] while the connection lives. A node that receives a
//! `GET`, `POST` or `DELETE` at `{path}?id=<token>` for a token it does not hold looks up
//! the owner and forwards the request there with [`crate::forward_request`]. The owner
//! authenticates the request as usual. When no owner is recorded, the owner is this node,
//! or the registry cannot be read, the request is handled locally, which returns 404 for
//! an unknown token, so the official client negotiates again and can `Resume`. The client
//! also gets 404 when the owner cannot be reached: it refuses the TCP connection, does not
//! accept it within 2 s, or closes it before the response starts.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::forward::{forward_request, forwarding_client, ForwardError};
use crate::hub::HubShared;

/// Marks a request that a hub node forwarded, so the receiving node never forwards it on.
/// Its value is the advertised URL of the forwarding node.
const FORWARDED_BY_HEADER: &str = "x-tasklane-hub-forwarded-by";

/// How long a registry call may take before the hub treats the registry as unavailable, so
/// a Redis that hangs delays negotiate and forwarding by at most this much.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a registry call with [`REGISTRY_TIMEOUT`].
async fn with_timeout<T>(
    call: impl std::future::Future<Output = Result<T, OwnersUnavailable>>,
) -> Result<T, OwnersUnavailable> {
    match tokio::time::timeout(REGISTRY_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(OwnersUnavailable(format!(
            "no response within {REGISTRY_TIMEOUT:?}"
        ))),
    }
}

/// The shared record of which hub node owns which connection, such as keys in Redis.
/// Keys are [`owner_key`] hashes, never the secret connection tokens themselves.
#[async_trait::async_trait]
pub trait ConnectionOwners: Send + Sync + 'static {
    /// Records `owner_url` as the owner of `key` for `ttl`, replacing an older record.
    async fn register(
        &self,
        key: &str,
        owner_url: &str,
        ttl: Duration,
    ) -> Result<(), OwnersUnavailable>;

    /// Returns the owner URL recorded for `key`, if any.
    async fn owner(&self, key: &str) -> Result<Option<String>, OwnersUnavailable>;

    /// Deletes the record of `key`.
    async fn remove(&self, key: &str) -> Result<(), OwnersUnavailable>;
}

/// The owner registry could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
#[error("connection owner registry unavailable: {0}")]
pub struct OwnersUnavailable(pub String);

/// What a hub node needs to share its connections with other nodes.
#[derive(Clone)]
pub struct HubCluster {
    pub owners: Arc<dyn ConnectionOwners>,
    /// Base URL at which other nodes reach this node, such as `http://10.0.0.5:8080`.
    pub advertise_url: String,
    /// How long an owner record lives without a refresh, so the records of a node that
    /// crashed expire.
    pub registration_ttl: Duration,
}

impl HubCluster {
    /// Uses the default registration TTL of 30 s.
    pub fn new(owners: Arc<dyn ConnectionOwners>, advertise_url: String) -> Self {
        Self {
            owners,
            advertise_url: advertise_url.trim_end_matches('/').to_owned(),
            registration_ttl: Duration::from_secs(30),
        }
    }
}

/// The cluster state of a running hub.
pub(crate) struct ClusterState {
    pub cluster: HubCluster,
    client: reqwest::Client,
}

impl ClusterState {
    pub fn new(cluster: HubCluster) -> Self {
        Self {
            cluster,
            client: forwarding_client(),
        }
    }
}

/// Returns the registry key of a connection token: its SHA-256 in hex, so that the
/// registry never stores a token that would let its reader take over the connection.
pub fn owner_key(connection_token: &str) -> String {
    let digest = Sha256::digest(connection_token.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Records this node as the owner of a freshly negotiated token, then refreshes the record
/// until the token is gone from this node, and deletes it then.
///
/// The first registration completes before negotiate responds, so the client's next
/// request finds the owner whichever node it reaches. When the registry is down the
/// connection still works, but only on this node.
pub(crate) async fn register_owner(shared: &Arc<HubShared>, token: &str) {
    let Some(state) = &shared.cluster else {
        return;
    };
    let cluster = &state.cluster;
    let key = owner_key(token);
    let registration =
        cluster
            .owners
            .register(&key, &cluster.advertise_url, cluster.registration_ttl);
    if let Err(error) = with_timeout(registration).await {
        tracing::warn!(%error, "could not record the owner of a hub connection, so only this node serves it");
    }
    tokio::spawn(refresh_owner(Arc::downgrade(shared), token.to_owned(), key));
}

async fn refresh_owner(shared: Weak<HubShared>, token: String, key: String) {
    loop {
        let Some((owners, advertise_url, ttl)) = shared.upgrade().and_then(|shared| {
            let cluster = &shared.cluster.as_ref()?.cluster;
            Some((
                Arc::clone(&cluster.owners),
                cluster.advertise_url.clone(),
                cluster.registration_ttl,
            ))
        }) else {
            return;
        };
        tokio::time::sleep(ttl / 3).await;

        let alive = shared.upgrade().is_some_and(|shared| {
            !shared.is_shutting_down() && shared.negotiations.contains(&token)
        });
        let result = if alive {
            with_timeout(owners.register(&key, &advertise_url, ttl)).await
        } else {
            with_timeout(owners.remove(&key)).await
        };
        if let Err(error) = result {
            tracing::debug!(%error, "could not refresh the owner of a hub connection");
        }
        if !alive {
            return;
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ConnectionIdQuery {
    id: Option<String>,
}

/// Middleware on `{path}`: forwards the request to the node that owns its connection
/// token when that is another node, and otherwise lets this node handle it.
pub(crate) async fn route_to_owner(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<ConnectionIdQuery>,
    request: Request,
    next: Next,
) -> Response {
    let (Some(state), Some(token)) = (&shared.cluster, query.id.as_deref()) else {
        return next.run(request).await;
    };
    if request.headers().contains_key(FORWARDED_BY_HEADER) || shared.negotiations.contains(token) {
        return next.run(request).await;
    }

    let cluster = &state.cluster;
    let owner = match with_timeout(cluster.owners.owner(&owner_key(token))).await {
        Ok(Some(owner)) if owner != cluster.advertise_url => owner,
        Ok(_) => return next.run(request).await,
        Err(error) => {
            tracing::debug!(%error, "could not look up the owner of a hub connection");
            return next.run(request).await;
        }
    };

    let mut request = request;
    if let Ok(value) = HeaderValue::from_str(&cluster.advertise_url) {
        request.headers_mut().insert(FORWARDED_BY_HEADER, value);
    }
    match forward_request(&state.client, &owner, request).await {
        Ok(response) => response,
        Err(error @ ForwardError::Unreachable { .. }) => {
            tracing::info!(%error, "the hub node that owns a connection is unreachable");
            let message = "the hub node that owns this connection is unreachable: negotiate again";
            (StatusCode::NOT_FOUND, message).into_response()
        }
        Err(error @ ForwardError::InvalidRequest { .. }) => {
            tracing::error!(%error, "could not forward a hub request to the owner of its connection");
            let message =
                "the hub node that owns this connection has an invalid address: negotiate again";
            (StatusCode::NOT_FOUND, message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_key_is_hex_sha256() {
        let key = owner_key("abc");

        assert_eq!(
            key,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
