//! Liveness, readiness and metrics, outside `/api/v1`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// Ready when PostgreSQL answers; Redis being down only marks the service degraded.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database = sqlx_ping(&state).await;
    let redis = state.cache.ping().await;
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if !database { "unavailable" } else if redis { "ok" } else { "degraded" },
        "checks": {
            "postgres": if database { "ok" } else { "down" },
            "redis": if redis { "ok" } else { "down" },
        }
    });
    (status, axum::Json(body))
}

async fn sqlx_ping(state: &AppState) -> bool {
    let ping = tasklane_store::accounts::ping(&state.pool);
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
        Ok(Ok(()))
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        tasklane_telemetry::metrics().render(),
    )
}
