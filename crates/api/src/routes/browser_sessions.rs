//! Browser sessions in the `__Host-` cookie, and the list of every session of the caller
//! with revocation of one of them.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use tasklane_auth::hash_opaque_token;
use tasklane_auth::opaque::generate_session_token;
use tasklane_domain::EventType;
use tasklane_store::browser_sessions::{self, NewBrowserSession, RevokeReason};
use tasklane_store::{accounts, auth_events, Tx};
use uuid::Uuid;

use super::auth::check_credentials;
use super::sessions::find_membership;
use crate::browser_session::{self, token_hash_hex};
use crate::extract::{check_origin, Caller, ClientIp, Json, Path};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/auth/session",
            post(create_session)
                .get(current_session)
                .delete(end_session),
        )
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(revoke_session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionLoginRequest {
    email: String,
    password: String,
    /// Tenant id or name to act in; the first joined tenant when absent.
    tenant: Option<String>,
    /// The current code of the account's authenticator app, required when the account
    /// has a second factor.
    totp_code: Option<String>,
}

/// Logs in by password and starts a browser session in the session cookie. The response
/// carries the CSRF token that cookie-authenticated writes must send in `X-CSRF-Token`.
///
/// The origin is checked like on other cookie writes, so a page on another site cannot
/// log the browser into an account of its choosing.
async fn create_session(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Json(request): Json<SessionLoginRequest>,
) -> Result<Response, ApiError> {
    check_origin(&headers, &state.settings.server.allowed_origins)?;
    let credentials = check_credentials(
        &state,
        client_ip,
        &request.email,
        request.password,
        request.totp_code.as_deref(),
    )
    .await?;
    let memberships = accounts::memberships_of(&state.pool, credentials.user_id).await?;
    let active = match &request.tenant {
        None => memberships.first(),
        Some(requested) => find_membership(&memberships, requested.trim()),
    }
    .ok_or_else(|| ApiError::Forbidden("you are not a member of that tenant".into()))?;

    let auth = &state.settings.auth;
    let token = generate_session_token();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let revocation_version = accounts::revocation_version(&mut *tx, credentials.user_id).await?;
    let session = browser_sessions::create(
        &mut tx,
        NewBrowserSession {
            token_hash: &token.hash,
            user_id: credentials.user_id,
            tenant_id: active.tenant_id,
            revocation_version,
            idle_ttl: auth.browser_session_idle_ttl,
            max_lifetime: auth.browser_session_max_lifetime,
            user_agent,
            ip: client_ip.map(|ip| ip.to_string()),
        },
    )
    .await?;
    // A new login replaces the session the browser already had, so a session id planted
    // before the login is never promoted.
    let replaced = browser_session::session_cookie(&headers).map(hash_opaque_token);
    if let Some(hash) = &replaced {
        browser_sessions::revoke_by_token_hash(&mut tx, hash, RevokeReason::Logout).await?;
    }
    let data = serde_json::json!({
        "user_id": credentials.user_id,
        "client_ip": client_ip,
        "session_id": session.id,
    });
    auth_events::append(
        &mut tx,
        EventType::LoginSucceeded,
        Some(active.tenant_id),
        Some(credentials.user_id),
        credentials.user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(hash) = replaced {
        state.session_authenticator().forget(&[hash]).await;
    }

    let body = serde_json::json!({
        "session_id": session.id,
        "user_id": credentials.user_id,
        "tenant_id": active.tenant_id,
        "role": active.role,
        "tenants": memberships,
        "csrf_token": browser_session::csrf_token(&token.token),
        "idle_expires_at": session.idle_expires_at,
        "expires_at": session.expires_at,
    });
    let cookie = browser_session::set_cookie(&token.token, auth.browser_session_max_lifetime);
    Ok(with_cookie(Json(body), cookie))
}

/// Returns the caller's browser session and its CSRF token, for a page loaded with the
/// cookie already set.
async fn current_session(caller: Caller, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = caller
        .browser_session
        .as_ref()
        .ok_or(ApiError::NotFound("browser session"))?;
    let cookie =
        browser_session::session_cookie(&headers).ok_or(ApiError::NotFound("browser session"))?;
    let body = serde_json::json!({
        "session_id": session.id,
        "user_id": caller.user_id,
        "tenant_id": caller.tenant_id,
        "role": caller.role,
        "csrf_token": browser_session::csrf_token(cookie),
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Logs the browser session out and deletes the cookie.
async fn end_session(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let session = caller
        .browser_session
        .as_ref()
        .ok_or(ApiError::NotFound("browser session"))?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    browser_sessions::revoke(&mut tx, caller.user_id, session.id, RevokeReason::Logout).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state
        .session_authenticator()
        .forget_hex(std::slice::from_ref(&session.token_hash_hex))
        .await;
    Ok(with_cookie(
        StatusCode::NO_CONTENT,
        browser_session::clear_cookie(),
    ))
}

/// Lists the caller's browser sessions and refresh-token families, marking the one the
/// request was authenticated with.
async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let current = caller.browser_session.as_ref().map(|session| session.id);
    let sessions = browser_sessions::list_of_user(&state.pool, caller.user_id).await?;
    // NOTE: access tokens do not name their refresh-token family, so for a bearer-token
    // request no entry is marked current.
    let items: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|session| {
            let is_current = Some(session.id) == current;
            let mut item = serde_json::to_value(session).unwrap_or_default();
            item["current"] = serde_json::json!(is_current);
            item
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": null }),
    ))
}

/// Revokes one of the caller's sessions of either kind. An id that is not an active
/// session of the caller is 404, also when another user owns it.
///
/// NOTE: revoking a refresh-token family stops its refreshes at once, but access tokens
/// already issued from it keep working until they expire (`auth.access_token_ttl`).
async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let browser_hash =
        browser_sessions::revoke(&mut tx, caller.user_id, id, RevokeReason::Revoked).await?;
    let revoked = match &browser_hash {
        Some(_) => true,
        None => browser_sessions::revoke_refresh_family(&mut tx, caller.user_id, id).await?,
    };
    if !revoked {
        return Err(ApiError::NotFound("session"));
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(hash) = browser_hash {
        state.session_authenticator().forget(&[hash]).await;
    }
    let is_current = caller
        .browser_session
        .as_ref()
        .is_some_and(|session| session.id == id);
    if is_current {
        return Ok(with_cookie(
            StatusCode::NO_CONTENT,
            browser_session::clear_cookie(),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes every browser session of the caller except the one the request came with, and
/// moves that one to the user's current revocation version so it survives the bump that
/// ends the others. Returns the hex hashes whose Redis entries the caller must drop after
/// the commit, the kept session's among them because its cached version is now stale.
pub(crate) async fn end_other_browser_sessions(
    tx: &mut Tx<'_>,
    caller: &Caller,
) -> Result<Vec<String>, ApiError> {
    let keep = caller.browser_session.as_ref().map(|session| session.id);
    let hashes =
        browser_sessions::revoke_all_of_user(tx, caller.user_id, keep, RevokeReason::AccountChange)
            .await?;
    let mut ended: Vec<String> = hashes.iter().map(|hash| token_hash_hex(hash)).collect();
    if let Some(session) = &caller.browser_session {
        let version = accounts::revocation_version(&mut **tx, caller.user_id).await?;
        browser_sessions::set_revocation_version(tx, session.id, version).await?;
        ended.push(session.token_hash_hex.clone());
    }
    Ok(ended)
}

/// Revokes every browser session of the user, returning the hex hashes whose Redis entries
/// the caller must drop after the commit.
pub(crate) async fn end_all_browser_sessions(
    tx: &mut Tx<'_>,
    user_id: Uuid,
) -> Result<Vec<String>, ApiError> {
    let hashes =
        browser_sessions::revoke_all_of_user(tx, user_id, None, RevokeReason::LogoutAll).await?;
    Ok(hashes.iter().map(|hash| token_hash_hex(hash)).collect())
}

fn with_cookie(response: impl IntoResponse, cookie: HeaderValue) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
