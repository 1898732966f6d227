//! The hub's view of the database: who a token belongs to, and what they may join.

use tasklane_auth::TokenIssuer;
use tasklane_hub::{AuthRejected, HubBackend, JoinError, JoinGrant, JoinTarget, Principal};
use tasklane_store::access_cache::AccessCache;
use tasklane_store::{hub, jobs, tasks, PgPool};

pub struct StoreHubBackend {
    pub pool: PgPool,
    pub tokens: TokenIssuer,
    pub access: AccessCache,
}

fn internal(error: tasklane_store::StoreError) -> JoinError {
    JoinError::Internal(error.to_string())
}

#[async_trait::async_trait]
impl HubBackend for StoreHubBackend {
    async fn authenticate(&self, bearer_token: &str) -> Result<Principal, AuthRejected> {
        let claims = self.tokens.verify(bearer_token).map_err(|e| AuthRejected::new(e.to_string()))?;
        let access = self
            .access
            .get(claims.sub)
            .await
            .map_err(|_| AuthRejected::new("could not check the membership"))?
            .ok_or_else(|| AuthRejected::new("the token's user does not exist"))?;
        if claims.ver < access.revocation_version {
            return Err(AuthRejected::new("the token was revoked"));
        }
        // NOTE: this runs only when a connection starts, so a connection opened before a
        // revocation stays open until the client disconnects.
        match access.role_in(claims.tid) {
            Some(_) => Ok(Principal { user_id: claims.sub, tenant_id: claims.tid }),
            None => Err(AuthRejected::new("not a member of the token's tenant")),
        }
    }

    /// Grants a join to a task or job of the caller's tenant.
    ///
    /// The group's sequence number is read before the snapshot: every message numbered at
    /// or below it describes a change the snapshot already contains, and every later one
    /// reaches the client live.
    async fn join(&self, principal: &Principal, target: JoinTarget) -> Result<JoinGrant, JoinError> {
        let group = target.group();
        let seq = hub::last_seq(&self.pool, &group).await.map_err(internal)?;
        let snapshot = match target {
            JoinTarget::Task(id) => tasks::get(&self.pool, principal.tenant_id, id)
                .await
                .map_err(internal)?
                .map(|task| serde_json::to_value(task).unwrap_or_default()),
            JoinTarget::Job(id) => jobs::get(&self.pool, principal.tenant_id, id)
                .await
                .map_err(internal)?
                .map(|job| serde_json::to_value(job).unwrap_or_default()),
        };
        let snapshot = snapshot.ok_or(JoinError::NotFound)?;
        Ok(JoinGrant { group, seq, snapshot })
    }
}
