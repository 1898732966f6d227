//! Refresh-token families: creation, rotation with reuse detection, and revocation.

use std::time::Duration;

use sqlx::{FromRow, PgPool};
use tasklane_domain::new_id;
use uuid::Uuid;

use crate::{StoreError, Tx};

/// How long tokens and their families live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// A token unused for this long is rejected.
    pub idle: Duration,
    /// No token of a family is accepted this long after the login that started it.
    pub absolute: Duration,
    /// How long after a rotation the immediately previous token still rotates, so two
    /// tabs refreshing at once do not trip reuse detection.
    pub reuse_grace: Duration,
}

/// The reason a family was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    Reuse,
    LogoutAll,
    AccountChange,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Reuse => "reuse",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::AccountChange => "account_change",
        }
    }
}

/// The session a refresh token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Session {
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current (or the previous one within the grace period) and the new
    /// token hash is now stored in its place.
    Rotated(Session),
    /// The token had already been rotated: the whole family is now revoked.
    Reused(Session),
    /// Unknown, expired or revoked.
    Rejected,
}

/// Starts a family for a new login and stores its first token.
pub async fn start_family(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    tenant_id: Uuid,
    token_hash: &[u8],
    lifetimes: Lifetimes,
) -> Result<Session, StoreError> {
    let family_id = new_id();
    sqlx::query(
        "insert into refresh_token_families (id, user_id, tenant_id, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(family_id)
    .bind(user_id)
    .bind(tenant_id)
    .bind(lifetimes.absolute.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    insert_token(tx, family_id, None, token_hash, lifetimes.idle).await?;
    Ok(Session {
        family_id,
        user_id,
        tenant_id,
    })
}

async fn insert_token(
    tx: &mut Tx<'_>,
    family_id: Uuid,
    parent_id: Option<Uuid>,
    token_hash: &[u8],
    idle: Duration,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into refresh_tokens (id, family_id, token_hash, parent_id, expires_at)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(new_id())
    .bind(family_id)
    .bind(token_hash)
    .bind(parent_id)
    .bind(idle.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct PresentedToken {
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    tenant_id: Uuid,
    usable: bool,
    rotated: bool,
    within_grace: bool,
}

/// Rotates the token whose hash is `presented`, storing `replacement` in its place.
///
/// The family row is locked first, so concurrent rotations within one family run one after
/// the other. A token that was already rotated is accepted once more only within the
/// grace period and only while its replacement has not itself been rotated. Any other
/// reuse revokes the family.
pub async fn rotate(
    tx: &mut Tx<'_>,
    presented: &[u8],
    replacement: &[u8],
    lifetimes: Lifetimes,
) -> Result<Rotation, StoreError> {
    let token = sqlx::query_as::<_, PresentedToken>(
        "select t.id, t.family_id, f.user_id, f.tenant_id,
                (f.revoked_at is null and f.expires_at > now() and t.expires_at > now()) as usable,
                t.rotated_at is not null as rotated,
                coalesce(t.rotated_at > now() - make_interval(secs => $2), false) as within_grace
         from refresh_tokens t join refresh_token_families f on f.id = t.family_id
         where t.token_hash = $1
         for update of f",
    )
    .bind(presented)
    .bind(lifetimes.reuse_grace.as_secs_f64())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(token) = token else {
        return Ok(Rotation::Rejected);
    };
    let session = Session {
        family_id: token.family_id,
        user_id: token.user_id,
        tenant_id: token.tenant_id,
    };
    if !token.usable {
        return Ok(Rotation::Rejected);
    }
    if token.rotated {
        let successor_rotated: bool = sqlx::query_scalar(
            "select exists (select 1 from refresh_tokens where parent_id = $1 and rotated_at is not null)",
        )
        .bind(token.id)
        .fetch_one(&mut **tx)
        .await?;
        if !token.within_grace || successor_rotated {
            revoke_family(tx, token.family_id, RevokeReason::Reuse).await?;
            return Ok(Rotation::Reused(session));
        }
    } else {
        sqlx::query("update refresh_tokens set rotated_at = now() where id = $1")
            .bind(token.id)
            .execute(&mut **tx)
            .await?;
    }
    insert_token(
        tx,
        token.family_id,
        Some(token.id),
        replacement,
        lifetimes.idle,
    )
    .await?;
    Ok(Rotation::Rotated(session))
}

/// Revokes one family.
pub async fn revoke_family(
    tx: &mut Tx<'_>,
    family_id: Uuid,
    reason: RevokeReason,
) -> Result<(), StoreError> {
    sqlx::query(
        "update refresh_token_families set revoked_at = now(), revoked_reason = $2
         where id = $1 and revoked_at is null",
    )
    .bind(family_id)
    .bind(reason.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Revokes the family of the token whose hash is `presented`, returning its session when
/// the token was known.
pub async fn revoke_by_token(
    pool: &PgPool,
    presented: &[u8],
) -> Result<Option<Session>, StoreError> {
    let session = sqlx::query_as::<_, Session>(
        "update refresh_token_families f
         set revoked_at = coalesce(f.revoked_at, now()), revoked_reason = coalesce(f.revoked_reason, 'logout')
         from refresh_tokens t
         where t.family_id = f.id and t.token_hash = $1
         returning f.id as family_id, f.user_id, f.tenant_id",
    )
    .bind(presented)
    .fetch_optional(pool)
    .await?;
    Ok(session)
}

/// Revokes every family of a user.
pub async fn revoke_all_of_user(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    reason: RevokeReason,
) -> Result<u64, StoreError> {
    let revoked = sqlx::query(
        "update refresh_token_families set revoked_at = now(), revoked_reason = $2
         where user_id = $1 and revoked_at is null",
    )
    .bind(user_id)
    .bind(reason.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(revoked.rows_affected())
}
