//! What every handler shares.

use std::sync::Arc;

use tasklane_auth::TokenIssuer;
use tasklane_cache::Cache;
use tasklane_config::Settings;
use tasklane_store::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: TokenIssuer,
    pub cache: Cache,
    pub settings: Arc<Settings>,
}
