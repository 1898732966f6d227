//! State shared by every handler.

use std::sync::Arc;

use tasklane_auth::TokenIssuer;
use tasklane_cache::Cache;
use tasklane_config::Settings;
use tasklane_store::access_cache::AccessCache;
use tasklane_store::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: TokenIssuer,
    /// Each user's revocation version and roles, checked on every authenticated request.
    pub access: AccessCache,
    pub cache: Cache,
    pub settings: Arc<Settings>,
    /// Dependencies besides PostgreSQL and Redis that `/readyz` reports, such as the brokers.
    pub probes: Arc<Vec<Arc<dyn DependencyProbe>>>,
}

/// A check of one dependency that the service can run without, for `/readyz`.
#[async_trait::async_trait]
pub trait DependencyProbe: Send + Sync {
    /// Name in the `checks` object of `/readyz`.
    fn name(&self) -> &'static str;

    /// Returns true when the dependency responds now.
    async fn is_up(&self) -> bool;
}
