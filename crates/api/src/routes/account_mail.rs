//! Account flows that go through e-mail: address verification and password reset.
//!
//! Each mail carries a single-use token that is stored only as its SHA-256 hash. The mail is
//! written to `outgoing_mail` in the transaction that makes the change, and the email worker
//! sends it after the relay delivers the `mail.queued` event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::{
    check_new_password, generate_password_reset_token, generate_verification_token,
    hash_opaque_token, hash_password,
};
use tasklane_domain::EventType;
use tasklane_store::account_tokens::{self, Purpose};
use tasklane_store::accounts::{self, MailRecipient};
use tasklane_store::mail::{self, NewMail};
use tasklane_store::refresh_tokens::{self, RevokeReason};
use tasklane_store::{auth_events, login_attempts, Tx};
use uuid::Uuid;

use super::auth::{parse_email, password_error, ThrottleKeys};
use crate::extract::{Caller, ClientIp, Json};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/verify-email", post(verify_email))
        .route("/auth/verify-email/resend", post(resend_verification))
        .route("/auth/password-reset", post(request_password_reset))
        .route("/auth/password-reset/confirm", post(confirm_password_reset))
}

/// Creates a verification token for a new account and queues the mail that carries it.
pub(super) async fn queue_verification_mail(
    state: &AppState,
    tx: &mut Tx<'_>,
    recipient: &MailRecipient,
) -> Result<(), ApiError> {
    let token = generate_verification_token();
    let ttl = state.settings.mail.verification_ttl;
    account_tokens::create(
        tx,
        recipient.user_id,
        Purpose::VerifyEmail,
        &token.hash,
        ttl,
    )
    .await?;
    let link = format!(
        "{}/#verify-email={}",
        state.settings.mail.public_url.trim_end_matches('/'),
        token.token
    );
    let body = format!(
        "Hello {name},\n\n\
         Please confirm that this is your e-mail address by opening this link:\n\n\
         {link}\n\n\
         or by sending this token to POST /api/v1/auth/verify-email:\n\n\
         {token}\n\n\
         The link works once and expires in {hours} hours. If you did not register at \
         Tasklane, ignore this mail.\n",
        name = recipient.name,
        token = token.token,
        hours = ttl.as_secs() / 3600,
    );
    let mail = NewMail {
        user_id: Some(recipient.user_id),
        recipient: &recipient.email,
        subject: "Verify your e-mail address for Tasklane",
        body: &body,
    };
    mail::queue(tx, mail).await?;
    Ok(())
}

/// Queues a mail that warns an account's owner that someone tried to register with their
/// address. Nothing else changes, and the mail has no token.
pub(super) async fn queue_already_registered_mail(
    state: &AppState,
    tx: &mut Tx<'_>,
    recipient: &MailRecipient,
) -> Result<(), ApiError> {
    let public_url = state.settings.mail.public_url.trim_end_matches('/');
    let body = format!(
        "Hello {name},\n\n\
         Someone tried to register a new Tasklane account with this e-mail address, which \
         already has an account. Nothing was changed.\n\n\
         If it was you, log in at {public_url}/ instead. If you forgot your password, \
         request a reset link there. If it was not you, you can ignore this mail.\n",
        name = recipient.name,
    );
    let mail = NewMail {
        user_id: Some(recipient.user_id),
        recipient: &recipient.email,
        subject: "Someone tried to register with your e-mail address",
        body: &body,
    };
    mail::queue(tx, mail).await?;
    Ok(())
}

/// Queues a mail that informs the owner that their password was changed, so a change they
/// did not make does not go unnoticed.
pub(super) async fn queue_password_changed_mail(
    state: &AppState,
    tx: &mut Tx<'_>,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let (email, _) = accounts::password_of(&mut **tx, user_id).await?;
    let Some(email) = email else {
        return Ok(());
    };
    let Some(recipient) = accounts::find_by_email(&mut **tx, &email).await? else {
        return Ok(());
    };
    let public_url = state.settings.mail.public_url.trim_end_matches('/');
    let body = format!(
        "Hello {name},\n\n\
         The password of your Tasklane account was just changed, and every session was \
         logged out.\n\n\
         If you did not do this, reset your password at {public_url}/ at once.\n",
        name = recipient.name,
    );
    let mail = NewMail {
        user_id: Some(recipient.user_id),
        recipient: &recipient.email,
        subject: "Your Tasklane password was changed",
        body: &body,
    };
    mail::queue(tx, mail).await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyEmailRequest {
    token: String,
}

/// Marks the token's account as verified. The token works once.
async fn verify_email(
    State(state): State<AppState>,
    Json(request): Json<VerifyEmailRequest>,
) -> Result<StatusCode, ApiError> {
    let token_hash = hash_opaque_token(request.token.trim());
    let mut tx = begin(&state).await?;
    let Some(user_id) = account_tokens::consume(&mut tx, &token_hash, Purpose::VerifyEmail).await?
    else {
        return Err(invalid_token("verification"));
    };
    accounts::mark_email_verified(&mut tx, user_id).await?;
    let data = serde_json::json!({ "user_id": user_id });
    auth_events::append(
        &mut tx,
        EventType::EmailVerified,
        None,
        Some(user_id),
        user_id,
        data,
    )
    .await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a new verification mail for the caller, and earlier links stop working. Returns
/// 409 when the address is verified already.
async fn resend_verification(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    if accounts::is_email_verified(&state.pool, caller.user_id).await? {
        return Err(ApiError::Conflict(
            "the e-mail address is already verified".into(),
        ));
    }
    // Counted like logins per account, so a stolen access token cannot flood the inbox.
    let limits = &state.settings.auth.login_limits;
    let key = format!("verify-resend:{}", caller.user_id);
    let attempts = login_attempts::record(&state.pool, &key, limits.window).await?;
    if attempts.attempts > limits.max_attempts_per_account {
        tracing::warn!(user_id = %caller.user_id, "verification mail requests over the limit");
        return Err(ApiError::TooManyRequests {
            retry_after_secs: attempts.retry_after_secs.max(1) as u64,
        });
    }
    let (email, _) = accounts::password_of(&state.pool, caller.user_id).await?;
    let recipient = match email {
        Some(email) => accounts::find_by_email(&state.pool, &email).await?,
        None => None,
    }
    .ok_or(ApiError::NotFound("user"))?;
    let mut tx = begin(&state).await?;
    queue_verification_mail(&state, &mut tx, &recipient).await?;
    commit(tx).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordResetRequest {
    email: String,
}

/// Starts a password reset. The response is the same `202` whether or not an account has
/// the address, and it is sent before the account is looked up, so its timing does not
/// depend on that either. A known address gets a mail with a reset link.
async fn request_password_reset(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    Json(request): Json<PasswordResetRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let email = parse_email(&request.email)?;
    check_reset_limits(&state, &email, client_ip).await?;

    let background_state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = start_password_reset(&background_state, &email, client_ip).await {
            tracing::error!(error = ?error, client_ip = ?client_ip, "queueing a password reset mail failed");
        }
    });

    let body = serde_json::json!({
        "status": "accepted",
        "message": "If an account has this address, a password reset link was sent to it.",
    });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

async fn start_password_reset(
    state: &AppState,
    email: &str,
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let Some(recipient) = accounts::find_by_email(&state.pool, email).await? else {
        return Ok(());
    };
    let token = generate_password_reset_token();
    let ttl = state.settings.mail.password_reset_ttl;
    let link = format!(
        "{}/#reset-password={}",
        state.settings.mail.public_url.trim_end_matches('/'),
        token.token
    );
    let body = format!(
        "Hello {name},\n\n\
         Someone asked to reset the password of your Tasklane account. To choose a new \
         password, open this link:\n\n\
         {link}\n\n\
         or send this token with the new password to POST /api/v1/auth/password-reset/confirm:\n\n\
         {token}\n\n\
         The link works once and expires in {minutes} minutes. Resetting the password logs \
         you out everywhere. If you did not ask for this, ignore this mail and your password \
         stays as it is.\n",
        name = recipient.name,
        token = token.token,
        minutes = ttl.as_secs() / 60,
    );

    let mut tx = begin(state).await?;
    account_tokens::create(
        &mut tx,
        recipient.user_id,
        Purpose::PasswordReset,
        &token.hash,
        ttl,
    )
    .await?;
    let mail = NewMail {
        user_id: Some(recipient.user_id),
        recipient: &recipient.email,
        subject: "Reset your Tasklane password",
        body: &body,
    };
    mail::queue(&mut tx, mail).await?;
    let data = serde_json::json!({ "user_id": recipient.user_id, "client_ip": client_ip });
    auth_events::append(
        &mut tx,
        EventType::PasswordResetRequested,
        None,
        None,
        recipient.user_id,
        data,
    )
    .await?;
    commit(tx).await
}

/// Counts a reset request against the address and the client address, with the login
/// limits but separate counters, and rejects it with 429 when either is over its limit.
async fn check_reset_limits(
    state: &AppState,
    email: &str,
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let limits = &state.settings.auth.login_limits;
    let account_key = format!("reset-account:{}", email.to_lowercase());
    let account = login_attempts::record(&state.pool, &account_key, limits.window).await?;
    let mut retry_after_secs = None;
    if account.attempts > limits.max_attempts_per_account {
        retry_after_secs = Some(account.retry_after_secs);
    }
    if let Some(ip) = client_ip {
        let address =
            login_attempts::record(&state.pool, &format!("reset-ip:{ip}"), limits.window).await?;
        if address.attempts > limits.max_attempts_per_ip {
            retry_after_secs = retry_after_secs.max(Some(address.retry_after_secs));
        }
    }
    match retry_after_secs {
        Some(secs) => {
            tracing::warn!(client_ip = ?client_ip, "password reset requests over the limit");
            Err(ApiError::TooManyRequests {
                retry_after_secs: secs.max(1) as u64,
            })
        }
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmPasswordResetRequest {
    token: String,
    new_password: String,
}

/// Sets a new password with a reset token, then ends every session of the account: all
/// refresh-token families are revoked, and the password change bumps the revocation
/// version, which rejects every access token issued before. The token works once, and a
/// reset also verifies the address, since the token arrived there.
async fn confirm_password_reset(
    State(state): State<AppState>,
    Json(request): Json<ConfirmPasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    let token_hash = hash_opaque_token(request.token.trim());
    // The token is checked, not used up, before the password, so a rejected password
    // leaves the link working for another try.
    let Some(user_id) =
        account_tokens::find_open(&state.pool, &token_hash, Purpose::PasswordReset).await?
    else {
        return Err(invalid_token("password reset"));
    };
    let (email, _) = accounts::password_of(&state.pool, user_id).await?;
    let email = email.unwrap_or_default();
    let new_password = request.new_password;
    let new_hash = tokio::task::spawn_blocking(move || {
        check_new_password(&new_password, &[&email])?;
        hash_password(&new_password)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(password_error)?;

    let mut tx = begin(&state).await?;
    let consumed = account_tokens::consume(&mut tx, &token_hash, Purpose::PasswordReset).await?;
    if consumed != Some(user_id) {
        return Err(invalid_token("password reset"));
    }
    accounts::set_password_hash(&mut tx, user_id, &new_hash).await?;
    accounts::mark_email_verified(&mut tx, user_id).await?;
    refresh_tokens::revoke_all_of_user(&mut tx, user_id, RevokeReason::AccountChange).await?;
    queue_password_changed_mail(&state, &mut tx, user_id).await?;
    let data = serde_json::json!({ "user_id": user_id });
    auth_events::append(
        &mut tx,
        EventType::PasswordReset,
        None,
        Some(user_id),
        user_id,
        data,
    )
    .await?;
    commit(tx).await?;
    clear_login_lockout(&state, user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets the owner log in right after a reset even if guessing had locked the account.
async fn clear_login_lockout(state: &AppState, user_id: Uuid) {
    let outcome = async {
        let (email, _) = accounts::password_of(&state.pool, user_id).await?;
        if let Some(email) = email {
            let keys = ThrottleKeys::new(&email, None);
            login_attempts::clear(&state.pool, &keys.account).await?;
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = outcome {
        tracing::warn!(%user_id, error = ?error, "clearing the login lockout after a password reset failed");
    }
}

fn invalid_token(kind: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "the {kind} token is invalid, expired or already used: request a new mail"
    ))
}

async fn begin(state: &AppState) -> Result<Tx<'static>, ApiError> {
    state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}

async fn commit(tx: Tx<'_>) -> Result<(), ApiError> {
    tx.commit().await.map_err(|e| ApiError::Internal(e.into()))
}
