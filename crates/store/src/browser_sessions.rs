//! Browser sessions (the cookie login) and the list of every session of a user: browser
//! sessions together with refresh-token families.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::new_id;
use uuid::Uuid;

use crate::{StoreError, Tx};

/// The reason a browser session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The session itself logged out.
    Logout,
    /// The user revoked it from the session list.
    Revoked,
    LogoutAll,
    AccountChange,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Revoked => "revoked",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::AccountChange => "account_change",
        }
    }
}

/// A new browser session, before it is stored.
#[derive(Debug, Clone)]
pub struct NewBrowserSession<'a> {
    /// SHA-256 of the cookie value.
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub revocation_version: i64,
    pub idle_ttl: Duration,
    pub max_lifetime: Duration,
    pub user_agent: Option<&'a str>,
    pub ip: Option<String>,
}

/// An active browser session.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct BrowserSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub revocation_version: i64,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Maximum length of a stored user agent, in characters. Longer ones are truncated.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// Stores a new browser session and returns it.
pub async fn create(
    tx: &mut Tx<'_>,
    session: NewBrowserSession<'_>,
) -> Result<BrowserSession, StoreError> {
    let user_agent = session
        .user_agent
        .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect::<String>());
    let row = sqlx::query_as::<_, BrowserSession>(
        "insert into browser_sessions
             (id, token_hash, user_id, tenant_id, revocation_version, idle_expires_at,
              expires_at, user_agent, ip)
         values ($1, $2, $3, $4, $5,
                 now() + make_interval(secs => least($6, $7)),
                 now() + make_interval(secs => $7), $8, $9)
         returning id, user_id, tenant_id, revocation_version, idle_expires_at, expires_at",
    )
    .bind(new_id())
    .bind(session.token_hash)
    .bind(session.user_id)
    .bind(session.tenant_id)
    .bind(session.revocation_version)
    .bind(session.idle_ttl.as_secs_f64())
    .bind(session.max_lifetime.as_secs_f64())
    .bind(user_agent)
    .bind(session.ip)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

/// Finds the unrevoked, unexpired session whose cookie value hashes to `token_hash`.
pub async fn find_active(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<BrowserSession>, StoreError> {
    let row = sqlx::query_as::<_, BrowserSession>(
        "select id, user_id, tenant_id, revocation_version, idle_expires_at, expires_at
         from browser_sessions
         where token_hash = $1 and revoked_at is null
           and idle_expires_at > now() and expires_at > now()",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Returns which of `ids` name sessions that are neither revoked nor past their absolute
/// expiry. The idle timeout is left out: a hub connection does not touch its session, so
/// the hub keeps such connections open until the absolute expiry, with or without a
/// recheck.
pub async fn active_among(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    let active = sqlx::query_scalar::<_, Uuid>(
        "select id from browser_sessions
         where id = any($1) and revoked_at is null and expires_at > now()",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(active)
}

/// Records use of an active session and moves its idle timeout `idle_ttl` ahead, never
/// past the absolute lifetime. Returns the updated session, or `None` when it was revoked
/// or has expired meanwhile.
pub async fn touch(
    pool: &PgPool,
    id: Uuid,
    idle_ttl: Duration,
) -> Result<Option<BrowserSession>, StoreError> {
    let row = sqlx::query_as::<_, BrowserSession>(
        "update browser_sessions
         set last_seen_at = now(),
             idle_expires_at = least(expires_at, now() + make_interval(secs => $2))
         where id = $1 and revoked_at is null
           and idle_expires_at > now() and expires_at > now()
         returning id, user_id, tenant_id, revocation_version, idle_expires_at, expires_at",
    )
    .bind(id)
    .bind(idle_ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Sets the revocation version a session is checked against, so the session that changed
/// the password survives the version bump that ends every other one.
pub async fn set_revocation_version(
    tx: &mut Tx<'_>,
    id: Uuid,
    revocation_version: i64,
) -> Result<(), StoreError> {
    sqlx::query("update browser_sessions set revocation_version = $2 where id = $1")
        .bind(id)
        .bind(revocation_version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Revokes one session of `user_id` and returns its token hash, or `None` when the user has
/// no active session with that id.
pub async fn revoke(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    id: Uuid,
    reason: RevokeReason,
) -> Result<Option<Vec<u8>>, StoreError> {
    let hash = sqlx::query_scalar::<_, Vec<u8>>(
        "update browser_sessions set revoked_at = now(), revoked_reason = $3
         where id = $1 and user_id = $2 and revoked_at is null
         returning token_hash",
    )
    .bind(id)
    .bind(user_id)
    .bind(reason.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(hash)
}

/// Revokes the session whose cookie value hashes to `token_hash`, of any user. Returns
/// whether an active session was revoked.
pub async fn revoke_by_token_hash(
    tx: &mut Tx<'_>,
    token_hash: &[u8],
    reason: RevokeReason,
) -> Result<bool, StoreError> {
    let revoked = sqlx::query(
        "update browser_sessions set revoked_at = now(), revoked_reason = $2
         where token_hash = $1 and revoked_at is null",
    )
    .bind(token_hash)
    .bind(reason.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(revoked.rows_affected() > 0)
}

/// Revokes every session of `user_id` except `keep`, returning their token hashes so the
/// caller can drop their cached copies.
pub async fn revoke_all_of_user(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let hashes = sqlx::query_scalar::<_, Vec<u8>>(
        "update browser_sessions set revoked_at = now(), revoked_reason = $3
         where user_id = $1 and revoked_at is null and id is distinct from $2
         returning token_hash",
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason.as_str())
    .fetch_all(&mut **tx)
    .await?;
    Ok(hashes)
}

/// One entry of a user's session list.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct SessionSummary {
    pub id: Uuid,
    /// `browser` for a cookie session, `refresh_token` for a refresh-token family.
    pub kind: String,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Recorded for browser sessions only.
    pub user_agent: Option<String>,
    /// Recorded for browser sessions only.
    pub ip: Option<String>,
}

/// Lists the user's usable sessions of both kinds, newest first. Browser sessions older than
/// the user's revocation version are left out because they no longer authenticate. A
/// refresh-token family's last use is when its newest token was issued.
pub async fn list_of_user(pool: &PgPool, user_id: Uuid) -> Result<Vec<SessionSummary>, StoreError> {
    let rows = sqlx::query_as::<_, SessionSummary>(
        "select id, 'browser' as kind, tenant_id, created_at, last_seen_at as last_used_at,
                least(idle_expires_at, expires_at) as expires_at, user_agent, ip
         from browser_sessions
         where user_id = $1 and revoked_at is null
           and idle_expires_at > now() and expires_at > now()
           and revocation_version >= (select revocation_version from users where id = $1)
         union all
         select f.id, 'refresh_token', f.tenant_id, f.created_at, newest.created_at,
                least(newest.expires_at, f.expires_at), null, null
         from refresh_token_families f
         cross join lateral (
             select t.created_at, t.expires_at from refresh_tokens t
             where t.family_id = f.id order by t.created_at desc limit 1
         ) newest
         where f.user_id = $1 and f.revoked_at is null and f.expires_at > now()
           and newest.expires_at > now()
         order by created_at desc, id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Revokes the refresh-token family `family_id` when it belongs to `user_id` and is still
/// active; returns whether it did. The family's access tokens stay valid until they expire.
pub async fn revoke_refresh_family(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<bool, StoreError> {
    let revoked = sqlx::query(
        "update refresh_token_families set revoked_at = now(), revoked_reason = 'logout'
         where id = $1 and user_id = $2 and revoked_at is null",
    )
    .bind(family_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(revoked.rows_affected() > 0)
}
