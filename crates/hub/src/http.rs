//! HTTP side of the hub: `POST {path}/negotiate` and the WebSocket upgrade at `{path}`,
//! following `TransportProtocols.md` in the SignalR specifications.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::backend::Principal;
use crate::hub::HubShared;
use crate::negotiate::{new_connection_id, ClaimError};
use crate::session;

/// Highest negotiate protocol version this server speaks.
const MAX_NEGOTIATE_VERSION: u32 = 1;

pub(crate) fn router(shared: Arc<HubShared>) -> Router {
    let base = shared.settings.path.trim_end_matches('/').to_owned();
    let connect_path = if base.is_empty() { "/" } else { base.as_str() };

    Router::new()
        .route(&format!("{base}/negotiate"), post(negotiate))
        .route(connect_path, get(connect))
        .with_state(shared)
}

#[derive(Deserialize)]
struct NegotiateQuery {
    #[serde(rename = "negotiateVersion")]
    negotiate_version: Option<String>,
    access_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateResponse {
    connection_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_token: Option<String>,
    negotiate_version: u32,
    available_transports: [AvailableTransport; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AvailableTransport {
    transport: &'static str,
    transfer_formats: [&'static str; 1],
}

/// WebSockets with text frames is the only transport, because the server speaks only the
/// JSON hub protocol.
const WEBSOCKETS_TEXT: AvailableTransport = AvailableTransport {
    transport: "WebSockets",
    transfer_formats: ["Text"],
};

async fn negotiate(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<NegotiateQuery>,
    headers: HeaderMap,
) -> Response {
    if shared.is_shutting_down() {
        return shutting_down();
    }

    let requested_version = match query.negotiate_version.as_deref() {
        None => 0,
        Some(text) => match text.parse::<u32>() {
            Ok(version) => version,
            Err(_) => {
                let message = format!("invalid negotiateVersion {text:?}: expected an integer");
                return (StatusCode::BAD_REQUEST, message).into_response();
            }
        },
    };

    let principal = match authenticate(&shared, &headers, query.access_token.as_deref()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };

    let ids = shared.negotiations.create(principal.clone());
    schedule_negotiation_expiry(&shared, ids.connection_token.clone());
    tracing::debug!(
        connection_id = %ids.connection_id,
        user_id = %principal.user_id,
        requested_version,
        "negotiated hub connection"
    );

    // Version 0 has no separate token: the client sends `connectionId` as `id`, so that
    // field carries the secret token.
    let version = requested_version.min(MAX_NEGOTIATE_VERSION);
    let response = if version >= 1 {
        NegotiateResponse {
            connection_id: ids.connection_id,
            connection_token: Some(ids.connection_token),
            negotiate_version: version,
            available_transports: [WEBSOCKETS_TEXT],
        }
    } else {
        NegotiateResponse {
            connection_id: ids.connection_token,
            connection_token: None,
            negotiate_version: 0,
            available_transports: [WEBSOCKETS_TEXT],
        }
    };
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(response),
    )
        .into_response()
}

/// Forgets a negotiated token that no WebSocket claimed within the negotiate timeout.
///
/// [`crate::Hub::shutdown`] does not wait for this timer, because it is not tracked by
/// [`HubShared::tasks`]. It holds only a weak reference, so it does not keep the hub alive.
fn schedule_negotiation_expiry(shared: &Arc<HubShared>, token: String) {
    let shared_for_expiry = Arc::downgrade(shared);
    let timeout = shared.settings.negotiate_timeout;
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let Some(shared) = shared_for_expiry.upgrade() else {
            return;
        };
        if shared.negotiations.remove_unclaimed(&token) {
            tracing::debug!("negotiated hub connection expired before its WebSocket connected");
        }
    });
}

#[derive(Deserialize)]
struct ConnectQuery {
    id: Option<String>,
    access_token: Option<String>,
}

async fn connect(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if shared.is_shutting_down() {
        return shutting_down();
    }

    let principal = match authenticate(&shared, &headers, query.access_token.as_deref()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };

    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            tracing::debug!(%rejection, "rejected hub request that is not a WebSocket upgrade");
            let message = "this hub supports only the WebSockets transport: \
                           send a WebSocket upgrade request";
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };

    // Without `id` the client skipped negotiate, which the WebSockets transport allows.
    let connection_id = match query.id.as_deref() {
        None => new_connection_id(),
        Some(token) => match shared.negotiations.claim(token, &principal) {
            Ok(connection_id) => connection_id,
            Err(error) => return claim_rejected(error, &principal),
        },
    };

    // Size limits for tungstenite are twice the hub limit, so that a message slightly
    // over the hub limit still arrives whole and gets a `Close` message naming the limit.
    let transport_limit = shared.settings.max_message_size.saturating_mul(2);
    let failed_token = query.id.clone();
    let failed_shared = Arc::clone(&shared);
    let tasks = shared.tasks.clone();

    upgrade
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_failed_upgrade(move |error| {
            tracing::debug!(%error, "hub WebSocket upgrade failed");
            if let Some(token) = failed_token {
                failed_shared.negotiations.remove(&token);
            }
        })
        .on_upgrade(move |socket| {
            tasks.track_future(session::run(
                shared,
                socket,
                principal,
                connection_id,
                query.id,
            ))
        })
}

fn claim_rejected(error: ClaimError, principal: &Principal) -> Response {
    match error {
        ClaimError::NotFound => (
            StatusCode::NOT_FOUND,
            "no connection with this id: negotiate again",
        )
            .into_response(),
        ClaimError::OtherPrincipal => {
            tracing::warn!(
                user_id = %principal.user_id,
                "hub connect with a connection token negotiated by another user"
            );
            (
                StatusCode::FORBIDDEN,
                "this connection was negotiated by another user",
            )
                .into_response()
        }
        ClaimError::AlreadyConnected => (
            StatusCode::CONFLICT,
            "this connection already has a WebSocket",
        )
            .into_response(),
    }
}

/// Reads the bearer token from the `Authorization` header or, because browsers cannot set
/// headers on WebSocket requests, from the `access_token` query parameter.
fn bearer_token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });

    from_header
        .or(query_token)
        .filter(|token| !token.is_empty())
}

async fn authenticate(
    shared: &HubShared,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Principal, Response> {
    let Some(token) = bearer_token(headers, query_token) else {
        return Err(unauthorized(
            "missing bearer token: send an Authorization header or an access_token parameter",
        ));
    };

    shared
        .backend
        .authenticate(token)
        .await
        .map_err(|rejected| {
            tracing::debug!(reason = %rejected.reason, "hub request with a rejected bearer token");
            unauthorized("invalid bearer token")
        })
}

fn unauthorized(message: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        message,
    )
        .into_response()
}

fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the hub is shutting down: reconnect later",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn bearer_token_from_header() {
        assert_eq!(bearer_token(&headers("Bearer abc"), None), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc "), None), Some("abc"));
    }

    #[test]
    fn bearer_token_header_wins_over_query() {
        assert_eq!(
            bearer_token(&headers("Bearer abc"), Some("query")),
            Some("abc")
        );
    }

    #[test]
    fn bearer_token_from_query() {
        assert_eq!(bearer_token(&HeaderMap::new(), Some("q")), Some("q"));
        assert_eq!(bearer_token(&headers("Basic xyz"), Some("q")), Some("q"));
    }

    #[test]
    fn bearer_token_missing_or_empty() {
        assert_eq!(bearer_token(&HeaderMap::new(), None), None);
        assert_eq!(bearer_token(&HeaderMap::new(), Some("")), None);
        assert_eq!(bearer_token(&headers("Bearer "), None), None);
    }
}
