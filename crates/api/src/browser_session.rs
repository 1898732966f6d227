//! Browser sessions: the `__Host-` session cookie, its CSRF token, the allowed origins, and
//! authentication of a cookie against Redis with PostgreSQL as the record.
//!
//! The hub uses [`SessionAuthenticator`] too, so both check a cookie the same way.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tasklane_auth::hash_opaque_token;
use tasklane_cache::Cache;
use tasklane_store::access_cache::AccessCache;
use tasklane_store::browser_sessions::{self, BrowserSession};
use tasklane_store::{PgPool, StoreError};
use uuid::Uuid;

/// Name of the session cookie. The `__Host-` prefix makes browsers accept it only with
/// `Secure`, `Path=/` and no `Domain`, so no subdomain can set or overwrite it.
pub const COOKIE_NAME: &str = "__Host-tasklane_session";

/// Request header that carries the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session may go without a PostgreSQL update of its last use and idle
/// timeout. Requests within this interval are served from Redis alone.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Reads the session cookie from the request's `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Builds the `Set-Cookie` value that stores `token` for `max_age`.
pub fn set_cookie(token: &str, max_age: Duration) -> HeaderValue {
    let value = format!(
        "{COOKIE_NAME}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&value).expect("an opaque token is a valid header value")
}

/// Builds the `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-tasklane_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// Derives the CSRF token of a session from its cookie value. The token is bound to the
/// session and cannot be computed without the cookie, which scripts on other origins
/// cannot read, so nothing extra is stored.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tasklane csrf token\0");
    hasher.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Compares a presented CSRF token with the session's in time independent of where they
/// differ.
pub fn csrf_token_matches(session_token: &str, presented: &str) -> bool {
    let expected = csrf_token(session_token);
    if expected.len() != presented.len() {
        return false;
    }
    expected
        .bytes()
        .zip(presented.bytes())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// Returns whether `origin` is one of `allowed`, ignoring a trailing slash and the case of
/// the scheme and host.
pub fn is_allowed_origin(allowed: &[String], origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|candidate| candidate.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Hex SHA-256 of a cookie value, the name of its Redis entry.
pub fn token_hash_hex(hash: &[u8]) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl crate::AppState {
    /// Builds the session authenticator from the shared state.
    pub fn session_authenticator(&self) -> SessionAuthenticator {
        SessionAuthenticator {
            pool: self.pool.clone(),
            cache: self.cache.clone(),
            access: self.access.clone(),
            idle_ttl: self.settings.auth.browser_session_idle_ttl,
        }
    }
}

/// A browser session whose cookie was accepted.
#[derive(Debug, Clone)]
pub struct AuthenticatedSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: String,
    /// The user's revocation version the session was checked against.
    pub revocation_version: i64,
    /// Absolute expiry, Unix seconds.
    pub expires_at: i64,
    /// Hex SHA-256 of the cookie value, to drop the Redis entry when the session changes.
    pub token_hash_hex: String,
}

/// Reason a session cookie was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An unknown, expired or revoked session, or a user who lost access. The reason is
    /// logged and never sent to the client.
    #[error("session rejected: {0}")]
    Rejected(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Redis copy of a session row.
#[derive(Debug, Serialize, Deserialize)]
struct CachedSession {
    id: Uuid,
    user_id: Uuid,
    tenant_id: Uuid,
    revocation_version: i64,
    /// Absolute expiry, Unix seconds.
    expires_at: i64,
    /// When PostgreSQL last recorded a use, Unix seconds.
    touched_at: i64,
}

impl CachedSession {
    fn from_row(row: &BrowserSession) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            tenant_id: row.tenant_id,
            revocation_version: row.revocation_version,
            expires_at: row.expires_at.timestamp(),
            touched_at: chrono::Utc::now().timestamp(),
        }
    }
}

/// Checks session cookies: Redis first, PostgreSQL on a miss or when Redis is down, and
/// the user's revocation version and membership from the access cache every time.
#[derive(Clone)]
pub struct SessionAuthenticator {
    pub pool: PgPool,
    pub cache: Cache,
    pub access: AccessCache,
    /// Idle timeout, which is also the TTL of the Redis entry.
    pub idle_ttl: Duration,
}

impl SessionAuthenticator {
    /// Authenticates the cookie value `token`.
    pub async fn authenticate(&self, token: &str) -> Result<AuthenticatedSession, SessionError> {
        let hash_hex = token_hash_hex(&hash_opaque_token(token));
        let session = match self.cached(&hash_hex).await? {
            Some(session) => session,
            None => self.load(token, &hash_hex).await?,
        };

        // The version and membership come from the access cache, which PostgreSQL
        // invalidates, so a password change, a disabled account, a removed membership or a
        // logout-all ends the session on the next request even while Redis still has it.
        let access = self
            .access
            .get(session.user_id)
            .await?
            .ok_or(SessionError::Rejected("the session's user does not exist"))?;
        if session.revocation_version < access.revocation_version {
            return Err(SessionError::Rejected("the session was revoked"));
        }
        let role = access
            .role_in(session.tenant_id)
            .ok_or(SessionError::Rejected(
                "not a member of the session's tenant",
            ))?
            .to_owned();
        Ok(AuthenticatedSession {
            session_id: session.id,
            user_id: session.user_id,
            tenant_id: session.tenant_id,
            role,
            revocation_version: session.revocation_version,
            expires_at: session.expires_at,
            token_hash_hex: hash_hex,
        })
    }

    /// Reads the Redis entry and, once per [`TOUCH_INTERVAL`], records the use in
    /// PostgreSQL, which also finds sessions revoked while Redis missed the deletion.
    async fn cached(&self, hash_hex: &str) -> Result<Option<CachedSession>, SessionError> {
        let Some(value) = self.cache.get_session(hash_hex, self.idle_ttl).await else {
            return Ok(None);
        };
        let Ok(mut session) = serde_json::from_str::<CachedSession>(&value) else {
            tracing::warn!("cached browser session is not valid JSON, reading PostgreSQL");
            return Ok(None);
        };
        let now = chrono::Utc::now().timestamp();
        if session.expires_at <= now {
            self.cache.delete_sessions(&[hash_hex.to_owned()]).await;
            return Err(SessionError::Rejected("the session expired"));
        }
        if now - session.touched_at >= TOUCH_INTERVAL.as_secs() as i64 {
            let Some(row) = browser_sessions::touch(&self.pool, session.id, self.idle_ttl).await?
            else {
                self.cache.delete_sessions(&[hash_hex.to_owned()]).await;
                return Err(SessionError::Rejected("the session was revoked or expired"));
            };
            session = CachedSession::from_row(&row);
            self.store(hash_hex, &session).await;
        }
        Ok(Some(session))
    }

    /// Reads the session from PostgreSQL, records the use and caches it.
    async fn load(&self, token: &str, hash_hex: &str) -> Result<CachedSession, SessionError> {
        let row = browser_sessions::find_active(&self.pool, &hash_opaque_token(token))
            .await?
            .ok_or(SessionError::Rejected(
                "unknown, expired or revoked session",
            ))?;
        let row = browser_sessions::touch(&self.pool, row.id, self.idle_ttl)
            .await?
            .ok_or(SessionError::Rejected("the session was revoked or expired"))?;
        let session = CachedSession::from_row(&row);
        self.store(hash_hex, &session).await;
        Ok(session)
    }

    async fn store(&self, hash_hex: &str, session: &CachedSession) {
        let value = serde_json::to_string(session).expect("a cached session serializes");
        self.cache
            .set_session(hash_hex, &value, self.idle_ttl)
            .await;
    }

    /// Drops the Redis entries of sessions that were just revoked in PostgreSQL.
    pub async fn forget(&self, token_hashes: &[Vec<u8>]) {
        let hashes: Vec<String> = token_hashes
            .iter()
            .map(|hash| token_hash_hex(hash))
            .collect();
        self.forget_hex(&hashes).await;
    }

    /// Drops Redis entries named by their hex hashes.
    pub async fn forget_hex(&self, hashes_hex: &[String]) {
        if !self.cache.delete_sessions(hashes_hex).await {
            // NOTE: an entry that Redis keeps through an outage is found revoked at its next
            // PostgreSQL touch, so it may still authenticate for up to TOUCH_INTERVAL.
            tracing::warn!(
                sessions = hashes_hex.len(),
                "could not delete revoked browser sessions from redis"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-tasklane_session=tls_abc ; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("tls_abc"));
    }

    #[test]
    fn session_cookie_missing_or_empty() {
        let mut headers = HeaderMap::new();
        assert_eq!(session_cookie(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-tasklane_session="),
        );
        assert_eq!(session_cookie(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("tasklane_session=x"),
        );
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn csrf_token_bound_to_session() {
        let token = csrf_token("tls_one");
        assert!(csrf_token_matches("tls_one", &token));
        assert!(!csrf_token_matches("tls_two", &token));
        assert!(!csrf_token_matches("tls_one", ""));
    }

    #[test]
    fn origin_match_ignores_case_and_slash() {
        let allowed = vec!["http://localhost:8080".to_owned()];
        assert!(is_allowed_origin(&allowed, "http://LOCALHOST:8080/"));
        assert!(!is_allowed_origin(&allowed, "http://localhost:8081"));
        assert!(!is_allowed_origin(&allowed, "null"));
    }
}
