//! `GET /.well-known/jwks.json`: the public keys that verify access tokens.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    // NOTE: a verifier that cached the set before a rotation does not know the new key for
    // up to five minutes. Nothing here publishes the next key ahead of its first use.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.tokens.keys().jwks().clone()),
    )
}
