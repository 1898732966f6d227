//! Registration and login.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::{hash_password, verify_password, PasswordError};
use tasklane_store::accounts::{self, NewAccount};
use uuid::Uuid;

use super::required_text;
use crate::extract::Json;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/auth/register", post(register)).route("/auth/login", post(login))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    password: String,
    name: String,
    tenant: String,
}

async fn register(
    State(state): State<AppState>,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let email = parse_email(&request.email)?;
    let name = required_text("name", &request.name, 200)?;
    let tenant_name = required_text("tenant", &request.tenant, 200)?;
    let password = request.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|error| match error {
            PasswordError::Hashing => ApiError::Internal(anyhow::anyhow!("password hashing failed")),
            other => ApiError::Unprocessable(other.to_string()),
        })?;

    let mut tx = state.pool.begin().await.map_err(|e| ApiError::Internal(e.into()))?;
    let account = NewAccount { email: &email, password_hash: &password_hash, name: &name, tenant_name: &tenant_name };
    let registered = accounts::register(&mut tx, account).await?;
    tx.commit().await.map_err(|e| ApiError::Internal(e.into()))?;

    let access_token = issue(&state, registered.user_id, registered.tenant_id)?;
    let body = serde_json::json!({
        "user_id": registered.user_id,
        "tenant_id": registered.tenant_id,
        "project_id": registered.project_id,
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.tokens.ttl().as_secs(),
    });
    Ok((StatusCode::CREATED, Json(body)))
}

fn parse_email(value: &str) -> Result<String, ApiError> {
    let email = value.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email.to_owned())
    } else {
        Err(ApiError::Unprocessable(format!("{value:?} is not a valid e-mail address")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
    /// Tenant id or name to act in; the first joined tenant when absent.
    tenant: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let invalid = || ApiError::Unauthorized;
    let credentials = accounts::find_credentials(&state.pool, request.email.trim()).await?;
    let stored_hash = credentials.as_ref().and_then(|c| c.password_hash.clone());
    let password = request.password;
    // Unknown accounts are verified against a dummy hash, so both take the same time.
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, stored_hash.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let credentials = credentials.filter(|c| verified && !c.disabled).ok_or_else(invalid)?;

    let memberships = accounts::memberships_of(&state.pool, credentials.user_id).await?;
    let active = match &request.tenant {
        None => memberships.first(),
        Some(wanted) => memberships
            .iter()
            .find(|m| m.tenant_id.to_string() == *wanted || m.tenant_name.eq_ignore_ascii_case(wanted)),
    }
    .ok_or_else(|| ApiError::Forbidden("you are not a member of that tenant".into()))?;

    let access_token = issue(&state, credentials.user_id, active.tenant_id)?;
    Ok(Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.tokens.ttl().as_secs(),
        "user_id": credentials.user_id,
        "tenant_id": active.tenant_id,
        "tenants": memberships,
    })))
}

fn issue(state: &AppState, user_id: Uuid, tenant_id: Uuid) -> Result<String, ApiError> {
    state
        .tokens
        .issue(user_id, tenant_id, 0)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
}
