//! The caller's notifications, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use tasklane_store::notifications::{self, Notification};
use tasklane_store::Page;

use crate::extract::{Caller, Json, PageParams, Query};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/notifications", get(list))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Notification>>, ApiError> {
    let page = notifications::list(
        &state.pool,
        caller.tenant_id,
        caller.user_id,
        params.uuid_cursor()?,
        params.limit()?,
    )
    .await?;
    Ok(Json(page))
}
