//! What every handler shares.

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
}
