//! Invitations: owners and admins invite by e-mail with a role, and the invited person
//! accepts while logged in.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tasklane_auth::policy::{self, Action, Role};
use tasklane_auth::{generate_invitation_token, hash_opaque_token};
use tasklane_domain::EventType;
use tasklane_store::auth_events;
use tasklane_store::invitations::{self, NewInvitation};

use super::auth::parse_email;
use crate::extract::{Caller, Json, Path};
use crate::{ApiError, AppState};

/// How long an invitation can be accepted.
// NOTE: fixed rather than configurable; the token is returned to the inviter to pass on,
// because no e-mail is sent yet.
const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invitations", post(create))
        .route("/invitations/{token}/accept", post(accept))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInvitation {
    email: String,
    role: String,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateInvitation>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let inviter_role = caller.authorize(Action::InviteMembers)?;
    require_verified_email(&state, &caller, "inviting others").await?;
    let email = parse_email(&request.email)?;
    let role: Role = request
        .role
        .parse()
        .map_err(|e: policy::UnknownRole| ApiError::Unprocessable(e.to_string()))?;
    if !policy::may_grant(inviter_role, role) {
        return Err(ApiError::Forbidden(format!(
            "your role may not grant the role {}",
            role.as_str()
        )));
    }

    let token = generate_invitation_token();
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let new = NewInvitation {
        tenant_id: caller.tenant_id,
        email: &email,
        role: role.as_str(),
        token_hash: &token.hash,
        invited_by: caller.user_id,
        ttl: INVITATION_TTL,
    };
    let invitation = invitations::create(&mut tx, new).await?;
    let data = serde_json::json!({ "invitation_id": invitation.id, "role": invitation.role });
    auth_events::append(
        &mut tx,
        EventType::MemberInvited,
        Some(caller.tenant_id),
        Some(caller.user_id),
        invitation.id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    // The token is returned only here; the database keeps its hash.
    let mut body = serde_json::json!(invitation);
    body["token"] = serde_json::json!(token.token);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Acceptance matches the invited address against the account's, which proves nothing
    // until the account's owner has shown they receive mail there.
    require_verified_email(&state, &caller, "accepting an invitation").await?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let accepted = invitations::accept(&mut tx, &hash_opaque_token(&token), caller.user_id).await?;
    let data =
        serde_json::json!({ "invitation_id": accepted.invitation_id, "role": accepted.role });
    let (tenant, user) = (Some(accepted.tenant_id), Some(caller.user_id));
    auth_events::append(
        &mut tx,
        EventType::MemberJoined,
        tenant,
        user,
        caller.user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(serde_json::json!(accepted)))
}

/// Rejects the request with 403 unless the caller has verified their e-mail address.
async fn require_verified_email(
    state: &AppState,
    caller: &Caller,
    action: &str,
) -> Result<(), ApiError> {
    if tasklane_store::accounts::is_email_verified(&state.pool, caller.user_id).await? {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "the e-mail address must be verified before {action}: follow the link in the \
         verification mail, or request a new one with POST /api/v1/auth/verify-email/resend"
    )))
}
