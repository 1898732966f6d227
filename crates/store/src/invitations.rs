//! Invitations to join a tenant: creation and single-use acceptance.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use tasklane_domain::{new_id, Handle};
use uuid::Uuid;

use crate::{accounts, StoreError, Tx};

/// An invitation as returned to its inviter. The token itself is never stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: String,
    pub expires_at: DateTime<Utc>,
}

/// The fields of a new invitation, already validated and authorized.
pub struct NewInvitation<'a> {
    pub tenant_id: Uuid,
    pub email: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub invited_by: Uuid,
    pub ttl: Duration,
}

pub async fn create(tx: &mut Tx<'_>, new: NewInvitation<'_>) -> Result<Invitation, StoreError> {
    let invitation = sqlx::query_as::<_, Invitation>(
        "insert into invitations (id, tenant_id, email, role, token_hash, invited_by, expires_at)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         returning id, tenant_id, email, role, expires_at",
    )
    .bind(new_id())
    .bind(new.tenant_id)
    .bind(new.email)
    .bind(new.role)
    .bind(new.token_hash)
    .bind(new.invited_by)
    .bind(new.ttl.as_secs_f64())
    .fetch_one(&mut **tx)
    .await?;
    Ok(invitation)
}

/// The membership an accepted invitation created.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub invitation_id: Uuid,
    pub tenant_id: Uuid,
    pub role: String,
    pub handle: String,
}

/// Accepts the invitation whose token hash is `token_hash` for `user_id`, whose e-mail
/// address must be the invited one, and adds the membership.
///
/// The update that marks the invitation accepted matches only an open, unexpired invitation
/// for that address, so a token works once and only for its addressee. Unknown, used,
/// expired and misaddressed tokens all return `NotFound`, revealing nothing about which.
pub async fn accept(
    tx: &mut Tx<'_>,
    token_hash: &[u8],
    user_id: Uuid,
) -> Result<Accepted, StoreError> {
    let accepted: Option<(Uuid, Uuid, String, String)> = sqlx::query_as(
        "update invitations i set accepted_at = now(), accepted_by = $2
         from users u
         where i.token_hash = $1 and u.id = $2
           and i.accepted_at is null and i.expires_at > now()
           and lower(i.email) = lower(u.email)
         returning i.id, i.tenant_id, i.role, u.email",
    )
    .bind(token_hash)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((invitation_id, tenant_id, role, email)) = accepted else {
        return Err(StoreError::NotFound("invitation"));
    };

    let already_member: bool = sqlx::query_scalar(
        "select exists (select 1 from memberships where tenant_id = $1 and user_id = $2)",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    if already_member {
        return Err(StoreError::Conflict(
            "you are already a member of this tenant".into(),
        ));
    }
    let local_part = email.split('@').next().unwrap_or(&email);
    let handle = accounts::add_membership(
        tx,
        tenant_id,
        user_id,
        &role,
        Handle::derive_from(local_part),
    )
    .await?;
    Ok(Accepted {
        invitation_id,
        tenant_id,
        role,
        handle,
    })
}
