//! Personal API tokens: created and listed with a session's access token, scoped to the
//! active tenant, shown once, revocable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use tasklane_auth::generate_api_token;
use tasklane_auth::policy::{Action, TokenScope, UnknownScope};
use tasklane_store::api_tokens::{self, NewApiToken};
use uuid::Uuid;

use super::required_text;
use crate::extract::{Caller, Json, Path};
use crate::{ApiError, AppState};

/// Maximum token lifetime, in days.
const MAX_LIFETIME_DAYS: i64 = 366;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api-tokens", post(create).get(list))
        .route("/api-tokens/{id}", delete(revoke))
}

/// Rejects requests made with an API token, so a leaked token cannot mint or list others.
fn require_session(caller: &Caller) -> Result<(), ApiError> {
    match caller.token_scope {
        None => Ok(()),
        Some(_) => Err(ApiError::Forbidden(
            "API tokens are managed with a session's access token".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApiToken {
    name: String,
    scope: String,
    /// Days until the token expires, 1 to 366; it never expires when absent.
    expires_in_days: Option<i64>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateApiToken>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_session(&caller)?;
    let name = required_text("name", &request.name, 100)?;
    let scope: TokenScope = request
        .scope
        .parse()
        .map_err(|e: UnknownScope| ApiError::Unprocessable(e.to_string()))?;
    // A token may not be given a scope its owner's role could not use.
    if scope == TokenScope::Admin {
        caller.authorize(Action::InviteMembers)?;
    } else if scope == TokenScope::Write {
        caller.authorize(Action::WriteContent)?;
    }
    let expires_at = match request.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_LIFETIME_DAYS).contains(&days) => {
            Some(Utc::now() + chrono::Duration::days(days))
        }
        Some(days) => {
            return Err(ApiError::Unprocessable(format!(
                "expires_in_days {days} is out of range 1 to {MAX_LIFETIME_DAYS}"
            )))
        }
    };

    let token = generate_api_token();
    let new = NewApiToken {
        user_id: caller.user_id,
        tenant_id: caller.tenant_id,
        name: &name,
        scope: scope.as_str(),
        token_hash: &token.hash,
        expires_at,
    };
    let created = api_tokens::create(&state.pool, new).await?;
    // The token is returned only here; the database keeps its hash.
    let mut body = serde_json::json!(created);
    body["token"] = serde_json::json!(token.token);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_session(&caller)?;
    let tokens = api_tokens::list(&state.pool, caller.user_id, caller.tenant_id).await?;
    Ok(Json(serde_json::json!({ "items": tokens })))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require_session(&caller)?;
    api_tokens::revoke(&state.pool, caller.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
