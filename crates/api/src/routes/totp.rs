//! The optional TOTP second factor: enrolment, confirmation, removal, and the code check
//! that login runs for enrolled accounts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::totp::{accept_code, generate_secret, provisioning_uri, secret_base32};
use tasklane_domain::EventType;
use tasklane_store::{accounts, auth_events, login_attempts, totp, Tx};
use uuid::Uuid;

use crate::extract::{Caller, Json};
use crate::{ApiError, AppState};

/// Issuer shown by authenticator apps next to the account name.
const TOTP_ISSUER: &str = "Tasklane";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/totp", post(begin_enrolment))
        .route("/auth/totp/confirm", post(confirm))
        .route("/auth/totp/disable", post(disable))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    code: String,
}

/// Personal API tokens must not change how their owner logs in.
fn require_interactive(caller: &Caller) -> Result<(), ApiError> {
    match caller.token_scope {
        Some(_) => Err(ApiError::Forbidden(
            "an API token cannot manage the second factor; log in with your password".into(),
        )),
        None => Ok(()),
    }
}

/// Creates a new secret and returns it once, as base32 text and as an otpauth URI. It takes
/// effect only after `/auth/totp/confirm` with a code from it.
async fn begin_enrolment(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    require_interactive(&caller)?;
    let secret = generate_secret();
    if !totp::begin_enrolment(&state.pool, caller.user_id, &secret).await? {
        return Err(ApiError::Conflict(
            "a second factor is already enabled; disable it first".into(),
        ));
    }
    let (email, _) = accounts::password_of(&state.pool, caller.user_id).await?;
    let account_name = email.unwrap_or_else(|| caller.user_id.to_string());
    let uri = provisioning_uri(&secret, TOTP_ISSUER, &account_name)
        .map_err(|error| ApiError::Internal(error.into()))?;
    let body = serde_json::json!({ "secret": secret_base32(&secret), "otpauth_uri": uri });
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// Confirms the enrolment with a first code, which turns the second factor on.
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    require_interactive(&caller)?;
    let stored = totp::find(&state.pool, caller.user_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("start the enrolment with POST /auth/totp".into()))?;
    if stored.confirmed {
        return Err(ApiError::Conflict(
            "the second factor is already enabled".into(),
        ));
    }
    use_code(
        &state,
        caller.user_id,
        &stored,
        &request.code,
        EventType::TotpEnabled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns the second factor off; a current code proves that the caller still has it.
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    require_interactive(&caller)?;
    let stored = totp::find(&state.pool, caller.user_id)
        .await?
        .filter(|stored| stored.confirmed)
        .ok_or(ApiError::NotFound("second factor"))?;
    use_code(
        &state,
        caller.user_id,
        &stored,
        &request.code,
        EventType::TotpDisabled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts `code` once under the per-account attempt limit, then records `event`. A
/// disabling event also removes the enrolment.
async fn use_code(
    state: &AppState,
    user_id: Uuid,
    stored: &totp::StoredTotp,
    code: &str,
    event: EventType,
) -> Result<(), ApiError> {
    let attempts_key = format!("totp:{user_id}");
    let limits = &state.settings.auth.login_limits;
    let attempts = login_attempts::record(&state.pool, &attempts_key, limits.window).await?;
    if attempts.attempts > limits.max_attempts_per_account {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: attempts.retry_after_secs.max(1) as u64,
        });
    }
    let confirming = event == EventType::TotpEnabled;
    let mut tx = record_code(state, user_id, stored, code, confirming)
        .await?
        .ok_or_else(invalid_code)?;
    if event == EventType::TotpDisabled {
        totp::remove(&mut tx, user_id).await?;
    }
    let data = serde_json::json!({ "user_id": user_id });
    auth_events::append(&mut tx, event, None, Some(user_id), user_id, data).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    login_attempts::clear(&state.pool, &attempts_key).await?;
    Ok(())
}

fn invalid_code() -> ApiError {
    ApiError::Unprocessable("the one-time code is invalid, expired or already used".into())
}

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default()
}

/// Checks the login's one-time code when the account has a confirmed second factor.
///
/// Runs after the password was verified and before the attempt counters are cleared, so
/// guessing codes uses up the same per-account and per-address limits as guessing
/// passwords. Returns [`ApiError::SecondFactorRequired`] when the code is missing.
pub(super) async fn check_login_code(
    state: &AppState,
    user_id: Uuid,
    code: Option<&str>,
) -> Result<(), ApiError> {
    let Some(stored) = totp::find(&state.pool, user_id)
        .await?
        .filter(|stored| stored.confirmed)
    else {
        return Ok(());
    };
    let code = code.ok_or(ApiError::SecondFactorRequired)?;
    let tx = record_code(state, user_id, &stored, code, false)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    tx.commit().await.map_err(|e| ApiError::Internal(e.into()))
}

/// Accepts `code` when it is valid and newer than the last accepted one, and records its
/// time step in a transaction that the caller commits. Returns `None` for an invalid,
/// expired or already used code. With `confirm`, the enrolment is also marked confirmed.
async fn record_code(
    state: &AppState,
    user_id: Uuid,
    stored: &totp::StoredTotp,
    code: &str,
    confirm: bool,
) -> Result<Option<Tx<'static>>, ApiError> {
    let Some(step) = accept_code(&stored.secret, code, unix_now(), stored.last_used_step) else {
        return Ok(None);
    };
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if totp::use_step(&mut tx, user_id, step, confirm).await? {
        Ok(Some(tx))
    } else {
        Ok(None)
    }
}
