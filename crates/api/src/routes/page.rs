//! The first page: sign in, list a project's tasks, watch them change live.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/",
        get(|| async { Html(include_str!("../../static/index.html")) }),
    )
}
