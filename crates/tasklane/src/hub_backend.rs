//! The hub's view of the database: who a token belongs to, and what they may join.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use tasklane_api::browser_session::{self, SessionAuthenticator, SessionError};
use tasklane_auth::TokenIssuer;
use tasklane_cache::Cache;
use tasklane_hub::{
    AuthRejected, CatchUp, CookieRejected, HubBackend, JoinError, JoinGrant, JoinTarget, Principal,
};
use tasklane_store::access_cache::AccessCache;
use tasklane_store::{hub, jobs, tasks, PgPool};

use crate::hub_history;

/// Maximum number of missed messages replayed per group on resume. A client that missed
/// more fetches the current state again.
const MAX_CATCH_UP_MESSAGES: i64 = 500;

pub struct StoreHubBackend {
    pub pool: PgPool,
    pub tokens: TokenIssuer,
    pub access: AccessCache,
    /// Redis, for the groups' recent message logs.
    pub cache: Cache,
    /// Checks browser session cookies the way the API does.
    pub sessions: SessionAuthenticator,
    /// Page origins allowed to connect with the session cookie.
    pub allowed_origins: Vec<String>,
}

fn internal(error: tasklane_store::StoreError) -> JoinError {
    JoinError::Internal(error.to_string())
}

#[async_trait::async_trait]
impl HubBackend for StoreHubBackend {
    async fn authenticate(&self, bearer_token: &str) -> Result<Principal, AuthRejected> {
        let claims = self
            .tokens
            .verify(bearer_token)
            .map_err(|e| AuthRejected::new(e.to_string()))?;
        let access = self
            .access
            .get(claims.sub)
            .await
            .map_err(|_| AuthRejected::new("could not check the membership"))?
            .ok_or_else(|| AuthRejected::new("the token's user does not exist"))?;
        // The verifier tolerates a few seconds of clock skew past `exp`. A hub connection
        // is closed at `exp`, so accepting such a token would let the client reconnect and
        // be closed again in a loop until the skew allowance runs out.
        if claims.exp <= unix_now() {
            return Err(AuthRejected::new("the token expired"));
        }
        if claims.ver < access.revocation_version {
            return Err(AuthRejected::new("the token was revoked"));
        }
        match access.role_in(claims.tid) {
            Some(_) => Ok(Principal {
                user_id: claims.sub,
                tenant_id: claims.tid,
                expires_at: u64::try_from(claims.exp)
                    .ok()
                    .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds)),
                revocation_version: claims.ver,
                browser_session_id: None,
            }),
            None => Err(AuthRejected::new("not a member of the token's tenant")),
        }
    }

    /// Accepts the session cookie only from an allowed `Origin`, because browsers attach
    /// cookies to WebSocket and fetch requests that pages of other sites start. The
    /// principal names the session, so revoking it closes the connections it opened.
    async fn authenticate_cookie(&self, headers: &HeaderMap) -> Result<Principal, CookieRejected> {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| CookieRejected::Origin("missing Origin header".into()))?;
        if !browser_session::is_allowed_origin(&self.allowed_origins, origin) {
            return Err(CookieRejected::Origin(format!(
                "origin {origin:?} is not allowed"
            )));
        }
        let cookie = browser_session::session_cookie(headers)
            .ok_or_else(|| CookieRejected::Session("no session cookie".into()))?;
        let session = self
            .sessions
            .authenticate(cookie)
            .await
            .map_err(|error| match error {
                SessionError::Rejected(reason) => CookieRejected::Session(reason.into()),
                SessionError::Store(error) => {
                    tracing::warn!(%error, "could not check a browser session for the hub");
                    CookieRejected::Session("could not check the session".into())
                }
            })?;
        Ok(Principal {
            user_id: session.user_id,
            tenant_id: session.tenant_id,
            expires_at: u64::try_from(session.expires_at)
                .ok()
                .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds)),
            revocation_version: session.revocation_version,
            browser_session_id: Some(session.session_id),
        })
    }

    /// Grants a join to a task or job of the caller's tenant.
    ///
    /// The group's sequence number is read before the snapshot: every message numbered at
    /// or below it describes a change the snapshot already contains, and every later one
    /// reaches the client live.
    async fn join(
        &self,
        principal: &Principal,
        target: JoinTarget,
    ) -> Result<JoinGrant, JoinError> {
        let group = target.group();
        let seq = hub::last_seq(&self.pool, &group).await.map_err(internal)?;
        let snapshot = match target {
            JoinTarget::Task(id) => tasks::get(&self.pool, principal.tenant_id, id)
                .await
                .map_err(internal)?
                .map(|task| serde_json::to_value(task).unwrap_or_default()),
            JoinTarget::Job(id) => jobs::get(&self.pool, principal.tenant_id, id)
                .await
                .map_err(internal)?
                .map(|job| serde_json::to_value(job).unwrap_or_default()),
        };
        let snapshot = snapshot.ok_or(JoinError::NotFound)?;
        Ok(JoinGrant {
            group,
            seq,
            snapshot,
        })
    }

    /// Reads the group's missed messages from its Redis log or, when the log lacks some,
    /// from `hub_messages`, and returns `Resync` when neither contains all of them.
    async fn catch_up(
        &self,
        _principal: &Principal,
        group: &str,
        after_seq: i64,
    ) -> Result<CatchUp, JoinError> {
        hub_history::read_missed(
            &self.pool,
            &self.cache,
            group,
            after_seq,
            MAX_CATCH_UP_MESSAGES,
        )
        .await
        .map_err(internal)
    }
}

fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}
