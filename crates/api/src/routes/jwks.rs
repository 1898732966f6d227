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
    // Verifiers may cache the set briefly; a rotation publishes the next key's public half
    // here alongside the current one, so a short cache never misses a signing key.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.tokens.keys().jwks().clone()),
    )
}
