//! Sessions after login: refresh-token rotation, logout and switching the active tenant.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::{generate_refresh_token, hash_opaque_token};
use tasklane_domain::EventType;
use tasklane_store::accounts::{self, Membership};
use tasklane_store::refresh_tokens::{self, Lifetimes, RevokeReason, Rotation, Session};
use tasklane_store::{auth_events, Tx};
use uuid::Uuid;

use super::browser_sessions::end_all_browser_sessions;
use crate::browser_session;
use crate::extract::{Caller, Json};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
        .route("/auth/switch-tenant", post(switch_tenant))
}

/// An access token and the refresh token that renews it.
pub(crate) struct TokenPair {
    access_token: String,
    refresh_token: String,
}

impl TokenPair {
    /// Renders the OAuth-style token fields of a response.
    pub(crate) fn into_json(self, state: &AppState) -> serde_json::Value {
        serde_json::json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": state.tokens.ttl().as_secs(),
            "refresh_token": self.refresh_token,
            "refresh_expires_in": state.settings.auth.refresh_token_idle_ttl.as_secs(),
        })
    }
}

pub(crate) fn lifetimes(state: &AppState) -> Lifetimes {
    let auth = &state.settings.auth;
    Lifetimes {
        idle: auth.refresh_token_idle_ttl,
        absolute: auth.session_max_lifetime,
        reuse_grace: auth.refresh_reuse_grace,
    }
}

/// Starts a refresh-token family for a fresh login and issues its first tokens.
pub(crate) async fn start_session(
    state: &AppState,
    tx: &mut Tx<'_>,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<TokenPair, ApiError> {
    let refresh = generate_refresh_token();
    refresh_tokens::start_family(tx, user_id, tenant_id, &refresh.hash, lifetimes(state)).await?;
    let version = accounts::revocation_version(&mut **tx, user_id).await?;
    let access_token = issue_access_token(state, user_id, tenant_id, version)?;
    Ok(TokenPair {
        access_token,
        refresh_token: refresh.token,
    })
}

pub(crate) fn issue_access_token(
    state: &AppState,
    user_id: Uuid,
    tenant_id: Uuid,
    revocation_version: i64,
) -> Result<String, ApiError> {
    state
        .tokens
        .issue(user_id, tenant_id, revocation_version)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
}

/// Finds a membership by tenant id or, ignoring case, by tenant name.
pub(crate) fn find_membership<'a>(
    memberships: &'a [Membership],
    requested: &str,
) -> Option<&'a Membership> {
    memberships.iter().find(|m| {
        m.tenant_id.to_string() == requested || m.tenant_name.eq_ignore_ascii_case(requested)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let presented = hash_opaque_token(&request.refresh_token);
    let replacement = generate_refresh_token();
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let rotation =
        refresh_tokens::rotate(&mut tx, &presented, &replacement.hash, lifetimes(&state)).await?;
    let session = match rotation {
        Rotation::Rotated(session) => session,
        Rotation::Reused(session) => {
            record_reuse(&mut tx, session).await?;
            tx.commit()
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
            return Err(ApiError::Unauthorized);
        }
        Rotation::Rejected => return Err(ApiError::Unauthorized),
    };

    // A family outlives neither the membership nor the account it was issued for. The
    // cache may not have seen a removal yet, and new tokens must not outlive it.
    let access = state.access.get_uncached(session.user_id).await?;
    let Some(access) = access.filter(|access| access.role_in(session.tenant_id).is_some()) else {
        refresh_tokens::revoke_family(&mut tx, session.family_id, RevokeReason::AccountChange)
            .await?;
        tx.commit()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        return Err(ApiError::Unauthorized);
    };
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let access_token = issue_access_token(
        &state,
        session.user_id,
        session.tenant_id,
        access.revocation_version,
    )?;
    let mut body = TokenPair {
        access_token,
        refresh_token: replacement.token,
    }
    .into_json(&state);
    body["user_id"] = serde_json::json!(session.user_id);
    body["tenant_id"] = serde_json::json!(session.tenant_id);
    Ok(Json(body))
}

async fn record_reuse(tx: &mut Tx<'_>, session: Session) -> Result<(), ApiError> {
    tracing::warn!(
        user_id = %session.user_id,
        family_id = %session.family_id,
        "a rotated refresh token was presented again, revoking its family"
    );
    let data = serde_json::json!({ "user_id": session.user_id, "family_id": session.family_id });
    auth_events::append(
        tx,
        EventType::RefreshTokenReused,
        Some(session.tenant_id),
        None,
        session.user_id,
        data,
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    refresh_token: String,
}

/// Revokes the refresh-token family of the presented token. Returns 204 whether or not the
/// token was known, so the endpoint reveals nothing about tokens.
async fn logout(
    State(state): State<AppState>,
    Json(request): Json<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let presented = hash_opaque_token(&request.refresh_token);
    refresh_tokens::revoke_by_token(&state.pool, &presented).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller: all refresh-token families and browser sessions are
/// revoked and the revocation version is bumped, so access tokens already issued stop
/// working at once. A cookie-authenticated request also gets its cookie deleted.
async fn logout_all(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    refresh_tokens::revoke_all_of_user(&mut tx, caller.user_id, RevokeReason::LogoutAll).await?;
    let ended = end_all_browser_sessions(&mut tx, caller.user_id).await?;
    accounts::bump_revocation_version(&mut tx, caller.user_id).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state.session_authenticator().forget_hex(&ended).await;

    let mut response = StatusCode::NO_CONTENT.into_response();
    if caller.browser_session.is_some() {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, browser_session::clear_cookie());
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchTenantRequest {
    /// Tenant id or name.
    tenant: String,
}

/// Issues tokens for another tenant of the caller, in a new refresh-token family.
async fn switch_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<SwitchTenantRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let memberships = accounts::memberships_of(&state.pool, caller.user_id).await?;
    let target = find_membership(&memberships, request.tenant.trim())
        .ok_or_else(|| ApiError::Forbidden("you are not a member of that tenant".into()))?;

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let tokens = start_session(&state, &mut tx, caller.user_id, target.tenant_id).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let mut body = tokens.into_json(&state);
    body["user_id"] = serde_json::json!(caller.user_id);
    body["tenant_id"] = serde_json::json!(target.tenant_id);
    body["role"] = serde_json::json!(target.role);
    Ok(Json(body))
}
