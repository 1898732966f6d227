//! Closes live hub connections whose access ended: the user was disabled, lost the
//! membership of the connection's tenant, or had their sessions revoked (logout from
//! every device, a password change), or the browser session whose cookie opened the
//! connection ended. Driven by the access cache's PostgreSQL notifications, so every node
//! acts on a change as soon as it commits.

use sqlx::PgPool;
use tasklane_hub::{CloseReason, Hub, Principal};
use tasklane_store::access_cache::{AccessCache, AccessChange, UserAccess};
use tasklane_store::browser_sessions;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rechecks the connections of every user whose access changes until `shutdown` is
/// cancelled.
pub async fn enforce_access_changes(
    hub: Hub,
    access: AccessCache,
    pool: PgPool,
    shutdown: CancellationToken,
) {
    let mut changes = access.subscribe();
    loop {
        let change = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(AccessChange::User(user_id)) => recheck_user(&hub, &access, user_id).await,
            Ok(AccessChange::All) => recheck_everyone(&hub, &access, &pool).await,
            Ok(AccessChange::BrowserSessionRevoked(session_id)) => {
                close_browser_session(&hub, session_id);
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "access changes were missed, rechecking every hub user"
                );
                recheck_everyone(&hub, &access, &pool).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Rechecks every connected user, and every browser session behind a connection, because
/// notifications may have been lost.
async fn recheck_everyone(hub: &Hub, access: &AccessCache, pool: &PgPool) {
    for user_id in hub.connected_users() {
        recheck_user(hub, access, user_id).await;
    }
    recheck_browser_sessions(hub, pool).await;
}

/// Closes the connections opened with the cookie of a browser session that ended.
fn close_browser_session(hub: &Hub, session_id: Uuid) {
    let closed = hub.close_where(CloseReason::AccessRevoked, |principal| {
        principal.browser_session_id == Some(session_id)
    });
    if closed > 0 {
        tracing::info!(%session_id, closed, "closed hub connections of a revoked browser session");
    }
}

/// Closes the connections of browser sessions that PostgreSQL no longer has as active.
async fn recheck_browser_sessions(hub: &Hub, pool: &PgPool) {
    let connected = hub.connected_browser_sessions();
    if connected.is_empty() {
        return;
    }
    let active = match browser_sessions::active_among(pool, &connected).await {
        Ok(active) => active,
        Err(error) => {
            // NOTE: the connections stay open until their session's next notification or
            // its absolute expiry.
            tracing::error!(%error, sessions = connected.len(), "reading browser sessions failed, hub connections not rechecked");
            return;
        }
    };
    for session_id in connected {
        if !active.contains(&session_id) {
            close_browser_session(hub, session_id);
        }
    }
}

/// Closes the user's connections in this process that their current access no longer
/// allows, with `allowReconnect: false`.
async fn recheck_user(hub: &Hub, access: &AccessCache, user_id: Uuid) {
    let current = match access.get(user_id).await {
        Ok(current) => current,
        Err(error) => {
            // NOTE: the connections stay open until the next change of this user or the
            // expiry of their access tokens.
            tracing::error!(%error, %user_id, "reading access failed, hub connections not rechecked");
            return;
        }
    };
    let closed = match current {
        None => hub.close_user(user_id, CloseReason::AccessRevoked),
        Some(current) => hub.close_user_where(user_id, CloseReason::AccessRevoked, |principal| {
            !still_allowed(&current, principal)
        }),
    };
    if closed > 0 {
        tracing::info!(%user_id, closed, "closed hub connections after an access change");
    }
}

/// Returns whether a connection of `principal` may stay open under the user's `current`
/// access: the user is enabled, still a member of the connection's tenant, and the
/// credential's revocation version is not older than the current one.
fn still_allowed(current: &UserAccess, principal: &Principal) -> bool {
    principal.revocation_version >= current.revocation_version
        && current.role_in(principal.tenant_id).is_some()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn access(revocation_version: i64, disabled: bool, tenant_id: Uuid) -> UserAccess {
        UserAccess {
            revocation_version,
            disabled,
            roles: HashMap::from([(tenant_id, "member".to_owned())]),
        }
    }

    fn principal(tenant_id: Uuid, revocation_version: i64) -> Principal {
        Principal {
            revocation_version,
            ..Principal::new(Uuid::nil(), tenant_id)
        }
    }

    #[test]
    fn same_version_member_stays() {
        let tenant_id = Uuid::from_u128(1);

        assert!(still_allowed(
            &access(3, false, tenant_id),
            &principal(tenant_id, 3)
        ));
    }

    #[test]
    fn raised_version_closes() {
        let tenant_id = Uuid::from_u128(1);

        assert!(!still_allowed(
            &access(4, false, tenant_id),
            &principal(tenant_id, 3)
        ));
    }

    #[test]
    fn disabled_user_closes() {
        let tenant_id = Uuid::from_u128(1);

        assert!(!still_allowed(
            &access(3, true, tenant_id),
            &principal(tenant_id, 3)
        ));
    }

    #[test]
    fn removed_membership_closes() {
        let tenant_id = Uuid::from_u128(1);
        let other_tenant = Uuid::from_u128(2);

        assert!(!still_allowed(
            &access(3, false, other_tenant),
            &principal(tenant_id, 3)
        ));
    }
}
