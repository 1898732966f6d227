//! The contract between the hub and the application: who a bearer token belongs to, which
//! groups a user may join, and the shape of the messages the relay publishes.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The authenticated user behind a connection.
///
/// Two principals are equal when they name the same user in the same tenant, whatever
/// the expiry and revocation version of the credentials they came from.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    /// When the credential expires. The hub closes the connection at that instant with
    /// `allowReconnect: true`, so the client negotiates again with a fresh token. `None`
    /// for a credential that does not expire.
    pub expires_at: Option<SystemTime>,
    /// The user's revocation version when the credential was issued, for the application
    /// to compare with the current one in [`crate::Hub::close_user_where`]. Zero when the
    /// backend has no such version.
    pub revocation_version: i64,
    /// The browser session whose cookie authenticated the connection, so the application
    /// can close it with [`crate::Hub::close_where`] when that one session ends. `None`
    /// for bearer tokens.
    pub browser_session_id: Option<Uuid>,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id && self.tenant_id == other.tenant_id
    }
}

impl Eq for Principal {}

impl Principal {
    /// Creates a principal whose credential never expires and has revocation version 0.
    pub fn new(user_id: Uuid, tenant_id: Uuid) -> Self {
        Self {
            user_id,
            tenant_id,
            expires_at: None,
            revocation_version: 0,
            browser_session_id: None,
        }
    }

    /// Name of the group that every connection of this user joins on connect.
    pub fn user_group(&self) -> String {
        format!("user:{}", self.user_id)
    }

    /// Name of the group that every connection of this tenant joins on connect.
    pub fn tenant_group(&self) -> String {
        format!("tenant:{}", self.tenant_id)
    }
}

/// The entity a client asks to follow with the `JoinTask` or `JoinJob` hub method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinTarget {
    Task(Uuid),
    Job(Uuid),
}

impl JoinTarget {
    /// Name of the group that carries this entity's messages: `task:{id}` or `job:{id}`.
    ///
    /// The hub registers the connection under this name before it calls
    /// [`HubBackend::join`], so the backend must return the same name in
    /// [`JoinGrant::group`]. A different name fails the join.
    pub fn group(&self) -> String {
        match self {
            JoinTarget::Task(id) => format!("task:{id}"),
            JoinTarget::Job(id) => format!("job:{id}"),
        }
    }

    /// Lowercase entity kind, as used in error messages sent to the client.
    pub fn kind(&self) -> &'static str {
        match self {
            JoinTarget::Task(_) => "task",
            JoinTarget::Job(_) => "job",
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            JoinTarget::Task(id) | JoinTarget::Job(id) => *id,
        }
    }
}

/// A successful join: the group's current sequence number and the entity's state at it.
#[derive(Clone, Debug)]
pub struct JoinGrant {
    /// Must equal [`JoinTarget::group`] of the requested target.
    pub group: String,
    /// Sequence number of the last message already reflected in `snapshot`. The client
    /// receives exactly the group's messages with a greater sequence number afterwards.
    pub seq: i64,
    pub snapshot: serde_json::Value,
}

/// Reason a join failed.
///
/// `NotFound` and `Forbidden` reach the client as the same "not found" error, so a client
/// cannot probe which ids exist in other tenants.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// Logged by the hub. The client receives only a generic internal error.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Rejection of a bearer token by the backend, which the hub turns into a 401 response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("authentication rejected: {reason}")]
pub struct AuthRejected {
    /// Logged by the hub and never sent to the client.
    pub reason: String,
}

impl AuthRejected {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Rejection of a browser session cookie by the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CookieRejected {
    /// The `Origin` header is missing or not allowed, so the hub responds with 403.
    #[error("origin rejected: {0}")]
    Origin(String),
    /// The session is unknown, expired or revoked, so the hub responds with 401.
    #[error("session rejected: {0}")]
    Session(String),
}

/// Application callbacks that the hub needs: token validation and join authorization.
#[async_trait::async_trait]
pub trait HubBackend: Send + Sync + 'static {
    /// Validates a bearer token, at negotiate and again at WebSocket connect.
    async fn authenticate(&self, bearer_token: &str) -> Result<Principal, AuthRejected>;

    /// Validates the browser session cookie among `headers`, and the `Origin` header
    /// against the allowed origins, for a request that has no bearer token. Browsers send
    /// the cookie and `Origin` on WebSocket upgrades too.
    ///
    /// The default accepts no cookies.
    async fn authenticate_cookie(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Principal, CookieRejected> {
        let _ = headers;
        Err(CookieRejected::Session(
            "browser sessions are not supported".into(),
        ))
    }

    /// Checks that `principal` may follow `target` and reads the group's sequence number
    /// and the entity's snapshot, both from the same consistent state.
    async fn join(&self, principal: &Principal, target: JoinTarget)
        -> Result<JoinGrant, JoinError>;

    /// Reads the messages of `group` with a sequence number greater than `after_seq`, for a
    /// client that resumes after a disconnect. The hub has already checked that
    /// `principal` may follow `group`.
    ///
    /// The default keeps no history, so it always returns [`CatchUp::Resync`].
    async fn catch_up(
        &self,
        principal: &Principal,
        group: &str,
        after_seq: i64,
    ) -> Result<CatchUp, JoinError> {
        let _ = (principal, group, after_seq);
        Ok(CatchUp::Resync)
    }
}

/// The messages of a group that a resuming client missed.
#[derive(Clone, Debug)]
pub enum CatchUp {
    /// Every message of the group after the requested sequence number, in order.
    Messages(Vec<HubMessage>),
    /// The stored history no longer reaches back to the requested sequence number, so the
    /// client must fetch the current state again.
    Resync,
}

/// A message published by the relay, already sequenced per group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubMessage {
    pub group: String,
    /// Increases by one or more per message within `group`.
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// Client method to invoke: `taskUpdated`, `notification` or `jobProgress`.
    pub method: String,
    pub data: serde_json::Value,
}
