//! Registration and login.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::{
    check_new_password, hash_password, needs_rehash, verify_password, PasswordError,
};
use tasklane_domain::EventType;
use tasklane_store::accounts::{self, MailRecipient, NewAccount};
use tasklane_store::refresh_tokens::{self, RevokeReason};
use tasklane_store::{auth_events, login_attempts};

use super::account_mail::{
    queue_already_registered_mail, queue_password_changed_mail, queue_verification_mail,
};
use super::browser_sessions::end_other_browser_sessions;
use super::required_text;
use super::sessions::{start_session, TokenPair};
use super::totp::check_login_code;
use crate::extract::{Caller, ClientIp, Json};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/password", post(change_password))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    password: String,
    name: String,
    tenant: String,
}

/// Registers a person with a new tenant. The response is the same `202 Accepted` whether or
/// not the e-mail address is taken, and both cases hash the password first, so neither the
/// body nor the time reveals which addresses have accounts. No tokens are returned:
/// the person logs in afterwards.
async fn register(
    State(state): State<AppState>,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let email = parse_email(&request.email)?;
    let name = required_text("name", &request.name, 200)?;
    let tenant_name = required_text("tenant", &request.tenant, 200)?;
    let password = request.password;
    let user_inputs = [email.clone(), name.clone()];
    let password_hash = tokio::task::spawn_blocking(move || {
        check_new_password(&password, &[&user_inputs[0], &user_inputs[1]])?;
        hash_password(&password)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(password_error)?;

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let account = NewAccount {
        email: &email,
        password_hash: &password_hash,
        name: &name,
        tenant_name: &tenant_name,
    };
    // NOTE: a new account costs a few more inserts than a taken address. The password hash
    // that both cases compute is far slower, so the difference is small but not zero.
    match accounts::register(&mut tx, account).await? {
        Some(registered) => {
            let recipient = MailRecipient {
                user_id: registered.user_id,
                email: email.clone(),
                name: name.clone(),
            };
            queue_verification_mail(&state, &mut tx, &recipient).await?;
        }
        None => {
            if let Some(owner) = accounts::find_by_email(&mut *tx, &email).await? {
                queue_already_registered_mail(&state, &mut tx, &owner).await?;
            }
        }
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let body = serde_json::json!({
        "status": "accepted",
        "message": "A message was sent to the address. Follow it to verify the address, then log in.",
    });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// Maps a rejected new password to 422 and a hashing failure to 500.
pub(super) fn password_error(error: PasswordError) -> ApiError {
    match error {
        PasswordError::Hashing => ApiError::Internal(anyhow::anyhow!("password hashing failed")),
        other => ApiError::Unprocessable(other.to_string()),
    }
}

pub(super) fn parse_email(value: &str) -> Result<String, ApiError> {
    let email = value.trim();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email.to_owned())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{value:?} is not a valid e-mail address"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
    /// Tenant id or name to act in; the first joined tenant when absent.
    tenant: Option<String>,
    /// The current code of the account's authenticator app, required when the account
    /// has a second factor.
    totp_code: Option<String>,
}

/// Checks an e-mail address, password and, for accounts with a second factor, the
/// one-time code, under the per-account and per-address attempt limits, for both the
/// token and the cookie login.
pub(super) async fn check_credentials(
    state: &AppState,
    client_ip: Option<std::net::IpAddr>,
    email: &str,
    password: String,
    totp_code: Option<&str>,
) -> Result<accounts::Credentials, ApiError> {
    let credentials = accounts::find_credentials(&state.pool, email.trim()).await?;
    let known_user = credentials.as_ref().map(|c| c.user_id);
    let keys = ThrottleKeys::new(email, client_ip);
    check_login_limits(state, &keys, known_user, client_ip).await?;
    let stored_hash = credentials.as_ref().and_then(|c| c.password_hash.clone());
    // Unknown accounts are verified against a dummy hash, so both take the same time. A
    // hash made with older parameters is replaced after a successful login.
    let (verified, upgraded_hash) = tokio::task::spawn_blocking(move || {
        let verified = verify_password(&password, stored_hash.as_deref());
        let upgraded = match stored_hash {
            Some(stored) if verified && needs_rehash(&stored) => {
                hash_password(&password).ok().map(|new| (stored, new))
            }
            _ => None,
        };
        (verified, upgraded)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(credentials) = credentials.filter(|c| verified && !c.disabled) else {
        record_failure(state, known_user, client_ip).await?;
        return Err(ApiError::Unauthorized);
    };
    // Checked before the counters are cleared, so code guesses use up the same limits.
    if let Err(error) = check_login_code(state, credentials.user_id, totp_code).await {
        record_failure(state, known_user, client_ip).await?;
        return Err(error);
    }

    if let Some((stale, upgraded)) = upgraded_hash {
        accounts::upgrade_password_hash(&state.pool, credentials.user_id, &stale, &upgraded)
            .await?;
    }

    login_attempts::clear(&state.pool, &keys.account).await?;
    if let Some(ip_key) = &keys.ip {
        login_attempts::forgive_one(&state.pool, ip_key).await?;
    }
    Ok(credentials)
}

async fn login(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    Json(request): Json<LoginRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
        Some(wanted) => super::sessions::find_membership(&memberships, wanted),
    }
    .ok_or_else(|| ApiError::Forbidden("you are not a member of that tenant".into()))?;

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let tokens: TokenPair =
        start_session(&state, &mut tx, credentials.user_id, active.tenant_id).await?;
    let data = serde_json::json!({ "user_id": credentials.user_id, "client_ip": client_ip });
    let user = Some(credentials.user_id);
    auth_events::append(
        &mut tx,
        EventType::LoginSucceeded,
        Some(active.tenant_id),
        user,
        credentials.user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let mut body = tokens.into_json(&state);
    body["user_id"] = serde_json::json!(credentials.user_id);
    body["tenant_id"] = serde_json::json!(active.tenant_id);
    body["tenants"] = serde_json::json!(memberships);
    Ok(Json(body))
}

/// Writes a failed-login event. The subject is the account when it exists, otherwise the
/// nil id, and the e-mail address is left out so the event log collects no guessed names.
async fn record_failure(
    state: &AppState,
    user_id: Option<uuid::Uuid>,
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let data = serde_json::json!({ "user_id": user_id, "client_ip": client_ip });
    let subject = user_id.unwrap_or(uuid::Uuid::nil());
    auth_events::append(&mut tx, EventType::LoginFailed, None, None, subject, data).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password after checking the current one, then ends every other
/// session: all refresh-token families and other browser sessions are revoked and the
/// revocation version is bumped. The device that made the change stays logged in: a token
/// caller gets new tokens in the response, and a browser session stays valid.
async fn change_password(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    caller: Caller,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (email, stored_hash) = accounts::password_of(&state.pool, caller.user_id).await?;
    // A stolen access token must not allow guessing the password faster than a login would.
    let keys = ThrottleKeys::new(email.as_deref().unwrap_or_default(), client_ip);
    check_login_limits(&state, &keys, Some(caller.user_id), client_ip).await?;
    let current = request.current_password;
    let verified =
        tokio::task::spawn_blocking(move || verify_password(&current, stored_hash.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    if !verified {
        return Err(ApiError::Forbidden(
            "the current password is not correct".into(),
        ));
    }
    login_attempts::clear(&state.pool, &keys.account).await?;

    let new_password = request.new_password;
    let email = email.unwrap_or_default();
    let new_hash = tokio::task::spawn_blocking(move || {
        check_new_password(&new_password, &[&email])?;
        hash_password(&new_password)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(password_error)?;

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    accounts::set_password_hash(&mut tx, caller.user_id, &new_hash).await?;
    refresh_tokens::revoke_all_of_user(&mut tx, caller.user_id, RevokeReason::AccountChange)
        .await?;
    queue_password_changed_mail(&state, &mut tx, caller.user_id).await?;
    let ended = end_other_browser_sessions(&mut tx, &caller).await?;
    // A browser session stays logged in through its cookie, so it gets no tokens that page
    // scripts could read.
    let tokens = match caller.browser_session {
        Some(_) => None,
        None => Some(start_session(&state, &mut tx, caller.user_id, caller.tenant_id).await?),
    };
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state.session_authenticator().forget_hex(&ended).await;

    let mut body = match tokens {
        Some(tokens) => tokens.into_json(&state),
        None => serde_json::json!({}),
    };
    body["user_id"] = serde_json::json!(caller.user_id);
    body["tenant_id"] = serde_json::json!(caller.tenant_id);
    Ok(Json(body))
}

/// The login-attempt counters a request is charged to.
pub(super) struct ThrottleKeys {
    pub(super) account: String,
    ip: Option<String>,
}

impl ThrottleKeys {
    pub(super) fn new(email: &str, client_ip: Option<std::net::IpAddr>) -> Self {
        Self {
            account: format!("account:{}", email.trim().to_lowercase()),
            ip: client_ip.map(|ip| format!("ip:{ip}")),
        }
    }
}

/// Counts the attempt against the account and the client address, and rejects it with 429
/// when either is over its limit. The account key is the e-mail address whether or not an
/// account has it, so unknown and existing accounts get the same answers after the same work.
async fn check_login_limits(
    state: &AppState,
    keys: &ThrottleKeys,
    known_user: Option<uuid::Uuid>,
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let limits = &state.settings.auth.login_limits;
    let mut retry_after_secs = None;

    let account = login_attempts::record(&state.pool, &keys.account, limits.window).await?;
    if account.attempts > limits.max_attempts_per_account {
        if account.attempts == limits.max_attempts_per_account + 1 {
            record_lockout(state, known_user, client_ip, "account").await?;
        }
        retry_after_secs = Some(account.retry_after_secs);
    }
    if let Some(ip_key) = &keys.ip {
        let address = login_attempts::record(&state.pool, ip_key, limits.window).await?;
        if address.attempts > limits.max_attempts_per_ip {
            if address.attempts == limits.max_attempts_per_ip + 1 {
                record_lockout(state, None, client_ip, "ip").await?;
            }
            retry_after_secs = retry_after_secs.max(Some(address.retry_after_secs));
        }
    }

    match retry_after_secs {
        Some(secs) => Err(ApiError::TooManyRequests {
            retry_after_secs: secs.max(1) as u64,
        }),
        None => Ok(()),
    }
}

/// Writes a lockout event when a key first goes over its limit in a window.
async fn record_lockout(
    state: &AppState,
    user_id: Option<uuid::Uuid>,
    client_ip: Option<std::net::IpAddr>,
    limited_by: &str,
) -> Result<(), ApiError> {
    tracing::warn!(user_id = ?user_id, client_ip = ?client_ip, limited_by, "login attempts over the limit, locking out");
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let data =
        serde_json::json!({ "user_id": user_id, "client_ip": client_ip, "limited_by": limited_by });
    let subject = user_id.unwrap_or(uuid::Uuid::nil());
    auth_events::append(
        &mut tx,
        EventType::LoginLockedOut,
        None,
        None,
        subject,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}
