//! The HTTP API: REST under `/api/v1`, `/healthz`, `/readyz`, `/metrics` and the first page.
//!
//! [`router`] builds the whole router from an [`AppState`], so tests can serve it on port 0
//! or call it without a socket.

pub mod browser_session;
mod error;
mod extract;
mod idempotency;
mod project_access;
mod routes;
mod state;

pub use error::ApiError;
pub use extract::Caller;
pub use state::{AppState, DependencyProbe};

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::trace::TraceLayer;

/// Builds the router for every API route.
pub fn router(state: AppState) -> Router {
    let max_json = state.settings.server.max_json_bytes;
    let api = routes::api_routes(state.clone())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency_layer,
        ))
        .layer(DefaultBodyLimit::max(max_json));
    Router::new()
        .nest("/api/v1", api)
        .merge(routes::health::routes())
        .merge(routes::jwks::routes())
        .merge(routes::page::routes())
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http())
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Only standard methods become label values, so clients cannot grow the series set.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let metrics = tasklane_telemetry::metrics();
    metrics
        .http_requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}
