//! HTTP side of the hub, following `TransportProtocols.md` in the SignalR specifications:
//! `POST {path}/negotiate`, and at `{path}` the WebSocket upgrade, the server-sent events
//! and long polling requests (`GET`), client messages (`POST`) and `DELETE`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::Either;
use serde::{Deserialize, Serialize};

use crate::backend::{CookieRejected, Principal};
use crate::cluster::{register_owner, route_to_owner};
use crate::http_transport::{self, HttpTransportKind};
use crate::hub::HubShared;
use crate::negotiate::{new_connection_id, ClaimError, WebSocketClaim};
use crate::session;

/// Highest negotiate protocol version this server speaks.
const MAX_NEGOTIATE_VERSION: u32 = 1;

/// Bytes that each WebSocket reads from its socket at a time. tungstenite 0.29 keeps this
/// much allocated and zero-filled per connection for as long as it lives, and its 128 KiB
/// default made an idle connection cost about 143 KiB of resident memory
/// (scripts/bench-hub). Client messages are mostly invocations of a hundred-odd bytes, and
/// larger ones still arrive whole: the buffer grows to hold them.
const WEBSOCKET_READ_BUFFER_SIZE: usize = 512;

pub(crate) fn router(shared: Arc<HubShared>) -> Router {
    let base = shared.settings.path.trim_end_matches('/').to_owned();
    let connect_path = if base.is_empty() { "/" } else { base.as_str() };

    Router::new()
        .route(&format!("{base}/negotiate"), post(negotiate))
        .route(
            connect_path,
            get(connect)
                .post(send)
                .delete(delete)
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&shared),
                    route_to_owner,
                )),
        )
        .with_state(shared)
}

#[derive(Deserialize)]
struct NegotiateQuery {
    #[serde(rename = "negotiateVersion")]
    negotiate_version: Option<String>,
    access_token: Option<String>,
    #[serde(rename = "useStatefulReconnect")]
    use_stateful_reconnect: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateResponse {
    connection_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_token: Option<String>,
    negotiate_version: u32,
    available_transports: [AvailableTransport; 3],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    use_stateful_reconnect: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AvailableTransport {
    transport: &'static str,
    transfer_formats: &'static [&'static str],
}

/// The transports in the client's order of preference. Server-sent events carry only text,
/// so a MessagePack client cannot use them.
const AVAILABLE_TRANSPORTS: [AvailableTransport; 3] = [
    AvailableTransport {
        transport: "WebSockets",
        transfer_formats: &["Text", "Binary"],
    },
    AvailableTransport {
        transport: "ServerSentEvents",
        transfer_formats: &["Text"],
    },
    AvailableTransport {
        transport: "LongPolling",
        transfer_formats: &["Text", "Binary"],
    },
];

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

    // Stateful reconnect needs the connection token of negotiate version 1.
    let version = requested_version.min(MAX_NEGOTIATE_VERSION);
    let stateful = version >= 1 && query.use_stateful_reconnect.as_deref() == Some("true");
    let ids = shared.negotiations.create(principal.clone(), stateful);
    schedule_negotiation_expiry(&shared, ids.connection_token.clone());
    register_owner(&shared, &ids.connection_token).await;
    tracing::debug!(
        connection_id = %ids.connection_id,
        user_id = %principal.user_id,
        requested_version,
        "negotiated hub connection"
    );

    // Version 0 has no separate token: the client sends `connectionId` as `id`, so that
    // field carries the secret token.
    let response = if version >= 1 {
        NegotiateResponse {
            connection_id: ids.connection_id,
            connection_token: Some(ids.connection_token),
            negotiate_version: version,
            available_transports: AVAILABLE_TRANSPORTS,
            use_stateful_reconnect: stateful,
        }
    } else {
        NegotiateResponse {
            connection_id: ids.connection_token,
            connection_token: None,
            negotiate_version: 0,
            available_transports: AVAILABLE_TRANSPORTS,
            use_stateful_reconnect: false,
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

/// `GET {path}`: a WebSocket upgrade, an event stream (`Accept: text/event-stream`), or
/// else a long polling request.
async fn connect(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let principal = match authenticate(&shared, &headers, query.access_token.as_deref()).await {
        Ok(principal) => principal,
        Err(response) => {
            let long_polling = match (&upgrade, query.id.as_deref()) {
                (Err(_), Some(token)) if !accepts_event_stream(&headers) => {
                    shared.negotiations.long_polling_connection(token)
                }
                _ => None,
            };
            return match long_polling {
                // Revoking access closes the connection and also rejects the token, so
                // without this the `Close` message would never reach the client.
                Some(http) => http_transport::poll_final_frame(&shared, http, response).await,
                None => response,
            };
        }
    };

    if let Ok(upgrade) = upgrade {
        return connect_websocket(shared, query.id, principal, upgrade);
    }
    let Some(token) = query.id else {
        let message = "missing id parameter: only WebSockets may connect without negotiate, \
                       server-sent events and long polling need the connectionToken from \
                       negotiate as id";
        return (StatusCode::BAD_REQUEST, message).into_response();
    };

    if accepts_event_stream(&headers) {
        open_event_stream(&shared, &token, &principal).await
    } else {
        long_poll(&shared, &token, &principal).await
    }
}

fn connect_websocket(
    shared: Arc<HubShared>,
    token: Option<String>,
    principal: Principal,
    upgrade: WebSocketUpgrade,
) -> Response {
    if shared.is_shutting_down() {
        return shutting_down();
    }

    // Without `id` the client skipped negotiate, which the WebSockets transport allows.
    let claim = match token.as_deref() {
        None => WebSocketClaim::New {
            connection_id: new_connection_id(),
            reconnects: None,
        },
        Some(token) => match shared.negotiations.claim(token, &principal) {
            Ok(claim) => claim,
            Err(error) => return claim_rejected(error, &principal),
        },
    };

    // Size limits for tungstenite are twice the hub limit, so that a message slightly
    // over the hub limit still arrives whole and gets a `Close` message naming the limit.
    let transport_limit = shared.settings.max_message_size.saturating_mul(2);
    let failed_token = token.clone();
    let is_reconnect = matches!(claim, WebSocketClaim::Reconnect(_));
    let failed_shared = Arc::clone(&shared);
    let tasks = shared.tasks.clone();

    upgrade
        .read_buffer_size(WEBSOCKET_READ_BUFFER_SIZE)
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_failed_upgrade(move |error| {
            tracing::debug!(%error, "hub WebSocket upgrade failed");
            if let (Some(token), false) = (failed_token, is_reconnect) {
                failed_shared.negotiations.remove(&token);
            }
        })
        .on_upgrade(move |socket| {
            // The socket is handed over before any future is built, so the task that lives
            // as long as the connection does not reserve room for it. The handover of a
            // reconnecting socket is short-lived and boxed.
            let connection = match claim {
                WebSocketClaim::New {
                    connection_id,
                    reconnects,
                } => {
                    let session = session::WebSocketSession {
                        principal,
                        connection_id,
                        token,
                        reconnects,
                    };
                    Either::Left(session::run_websocket(shared, socket, session))
                }
                WebSocketClaim::Reconnect(sessions) => Either::Right(Box::pin(async move {
                    if sessions.send(socket).await.is_err() {
                        tracing::debug!("hub connection ended before its WebSocket reconnected");
                    }
                })),
            };
            tasks.track_future(connection)
        })
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

async fn open_event_stream(
    shared: &Arc<HubShared>,
    token: &str,
    principal: &Principal,
) -> Response {
    if shared.is_shutting_down() {
        return shutting_down();
    }
    let kind = HttpTransportKind::ServerSentEvents;
    match http_transport::claim(shared, token, principal, kind) {
        Ok((http, true)) => http_transport::event_stream(http).await,
        Ok((_, false)) => claim_rejected(ClaimError::AlreadyConnected, principal),
        Err(error) => claim_rejected(error, principal),
    }
}

async fn long_poll(shared: &Arc<HubShared>, token: &str, principal: &Principal) -> Response {
    let kind = HttpTransportKind::LongPolling;
    // Polls of a running connection continue during shutdown, to fetch its `Close` message.
    if shared.is_shutting_down()
        && shared
            .negotiations
            .http_connection(token, principal)
            .is_err()
    {
        return shutting_down();
    }
    match http_transport::claim(shared, token, principal, kind) {
        Ok((http, first_poll)) => http_transport::poll(shared, http, first_poll).await,
        Err(error) => claim_rejected(error, principal),
    }
}

#[derive(Deserialize)]
struct HttpTransportQuery {
    id: Option<String>,
    access_token: Option<String>,
}

/// `POST {path}?id=...`: messages from a server-sent events or long polling client.
async fn send(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<HttpTransportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let http = match find_http_connection(&shared, &query, &headers).await {
        Ok(http) => http,
        Err(response) => return response,
    };
    // Twice the hub limit, like the WebSocket limit, so the session can close the
    // connection with a `Close` message that names the hub limit.
    let max_len = shared.settings.max_message_size.saturating_mul(2);
    http_transport::receive(&http, body, max_len).await
}

/// `DELETE {path}?id=...`: ends a server-sent events or long polling connection.
async fn delete(
    State(shared): State<Arc<HubShared>>,
    Query(query): Query<HttpTransportQuery>,
    headers: HeaderMap,
) -> Response {
    match find_http_connection(&shared, &query, &headers).await {
        Ok(http) => http_transport::delete(&http),
        Err(response) => response,
    }
}

async fn find_http_connection(
    shared: &HubShared,
    query: &HttpTransportQuery,
    headers: &HeaderMap,
) -> Result<Arc<http_transport::HttpConnection>, Response> {
    let principal = authenticate(shared, headers, query.access_token.as_deref()).await?;
    let Some(token) = query.id.as_deref() else {
        let message = "missing id parameter: send the connectionToken from negotiate as id";
        return Err((StatusCode::BAD_REQUEST, message).into_response());
    };
    shared
        .negotiations
        .http_connection(token, &principal)
        .map_err(|error| claim_rejected(error, &principal))
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
            "this connection already has a WebSocket or an event stream",
        )
            .into_response(),
        ClaimError::OtherTransport => (
            StatusCode::BAD_REQUEST,
            "this connection uses another transport: a connection cannot change transports",
        )
            .into_response(),
        ClaimError::NotStarted => (
            StatusCode::BAD_REQUEST,
            "this connection has no transport yet: open the event stream or poll first",
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
        return authenticate_cookie(shared, headers).await;
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

/// Authenticates a request without a bearer token by its browser session cookie, which the
/// backend accepts only from an allowed `Origin` (403 otherwise).
async fn authenticate_cookie(
    shared: &HubShared,
    headers: &HeaderMap,
) -> Result<Principal, Response> {
    if !headers.contains_key(header::COOKIE) {
        return Err(unauthorized(
            "missing bearer token: send an Authorization header or an access_token parameter",
        ));
    }
    shared
        .backend
        .authenticate_cookie(headers)
        .await
        .map_err(|rejected| match rejected {
            CookieRejected::Origin(reason) => {
                tracing::debug!(
                    reason,
                    "hub request with a session cookie from a rejected origin"
                );
                (
                    StatusCode::FORBIDDEN,
                    "the Origin header is missing or not allowed to use the session cookie",
                )
                    .into_response()
            }
            CookieRejected::Session(reason) => {
                tracing::debug!(reason, "hub request with a rejected session cookie");
                unauthorized("invalid session cookie")
            }
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
