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

/// Maximum wait for any one check.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when PostgreSQL responds. Redis or a broker being down only marks the service
/// degraded, since requests are still served and events wait in the outbox.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let probes = state.probes.iter().map(|probe| async move {
        let up = tokio::time::timeout(CHECK_TIMEOUT, probe.is_up())
            .await
            .unwrap_or(false);
        (probe.name(), up)
    });
    let (database, redis, others) = tokio::join!(
        sqlx_ping(&state),
        state.cache.ping(),
        futures::future::join_all(probes)
    );

    let mut checks = serde_json::Map::new();
    checks.insert("postgres".into(), check_value(database));
    checks.insert("redis".into(), check_value(redis));
    for (name, up) in &others {
        checks.insert((*name).into(), check_value(*up));
    }
    let all_up = redis && others.iter().all(|(_, up)| *up);
    let (status, summary) = match (database, all_up) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "ok"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    (
        status,
        axum::Json(serde_json::json!({ "status": summary, "checks": checks })),
    )
}

fn check_value(up: bool) -> serde_json::Value {
    serde_json::Value::from(if up { "ok" } else { "down" })
}

async fn sqlx_ping(state: &AppState) -> bool {
    let ping = tasklane_store::accounts::ping(&state.pool);
    matches!(tokio::time::timeout(CHECK_TIMEOUT, ping).await, Ok(Ok(())))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        tasklane_telemetry::metrics().render(),
    )
}
