//! An HTTP/1.1 reverse proxy for one request: the hub forwards the transport requests of a
//! connection that another node owns, and tests use it as a load balancer.
//!
//! Response bodies stream, so a server-sent events response reaches the client event by
//! event, and a `101 Switching Protocols` response (a WebSocket upgrade) turns into a byte
//! tunnel between the client and the target until either side closes.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use futures::TryStreamExt as _;
use hyper_util::rt::TokioIo;

/// How long forwarding waits for a TCP connection to the target before it counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers that describe one hop, so a proxy must not pass them on (RFC 9110, section
/// 7.6.1). `connection` and `upgrade` are passed on for upgrade requests only.
const HOP_BY_HOP_HEADERS: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Forwarding failed before the target sent a response.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection to the target, or it closed before responding. The target is most
    /// likely down.
    #[error("{target} is unreachable: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request could not be built, for example because `target` is not a valid URL.
    #[error("invalid request to {target}: {source}")]
    InvalidRequest {
        target: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Builds the HTTP client for [`forward_request`]: HTTP/1.1 only, because upgrades need
/// it, without redirects or an environment proxy, and with no overall timeout, because long
/// polls and event streams stay open for minutes.
pub fn forwarding_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("building an HTTP client with static settings")
}

/// Sends `request` to `target` (a base URL such as `http://10.0.0.5:8080`, to which the
/// request's path and query are appended) and returns the target's response, with the
/// body streaming.
///
/// An upgrade response is returned to the client as is, and a background task then copies
/// bytes both ways between the two upgraded connections.
pub async fn forward_request(
    client: &reqwest::Client,
    target: &str,
    mut request: Request,
) -> Result<Response, ForwardError> {
    let is_upgrade = request.headers().contains_key(header::UPGRADE);
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut request));

    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let url = format!("{}{path_and_query}", target.trim_end_matches('/'));
    let method = request.method().clone();
    let headers = forwarded_headers(request.headers(), is_upgrade);
    // A request without `Content-Length` or `Transfer-Encoding` has no body (RFC 9112,
    // section 6.3), and sending a streamed one would add `Transfer-Encoding: chunked` to a
    // `GET`. A streamed body with `Content-Length` keeps that length on the wire.
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut outgoing = client.request(method, &url).headers(headers);
    if has_body {
        let body = reqwest::Body::wrap_stream(request.into_body().into_data_stream());
        outgoing = outgoing.body(body);
    }
    let outgoing = outgoing
        .build()
        .map_err(|source| ForwardError::InvalidRequest {
            target: target.to_owned(),
            source,
        })?;
    let response = client
        .execute(outgoing)
        .await
        .map_err(|source| ForwardError::Unreachable {
            target: target.to_owned(),
            source,
        })?;

    let status = response.status();
    let mut builder = Response::builder().status(status);
    if let Some(headers) = builder.headers_mut() {
        *headers = forwarded_headers(
            response.headers(),
            status == StatusCode::SWITCHING_PROTOCOLS,
        );
    }

    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(tunnel(client_upgrade, response));
            return Ok(builder
                .body(Body::empty())
                .expect("valid forwarded response"));
        }
    }
    let body = Body::from_stream(response.bytes_stream().map_err(|error| {
        tracing::debug!(%error, "forwarded response body ended with an error");
        error
    }));
    Ok(builder.body(body).expect("valid forwarded response"))
}

/// Copies bytes both ways between the client's upgraded connection and the target's.
async fn tunnel(client_upgrade: hyper::upgrade::OnUpgrade, response: reqwest::Response) {
    let (client_side, target_side) = tokio::join!(client_upgrade, response.upgrade());
    let (client_side, mut target_side) = match (client_side, target_side) {
        (Ok(client_side), Ok(target_side)) => (client_side, target_side),
        (Err(error), _) => {
            tracing::debug!(%error, "client connection upgrade failed while forwarding");
            return;
        }
        (_, Err(error)) => {
            tracing::debug!(%error, "target connection upgrade failed while forwarding");
            return;
        }
    };
    let mut client_side = TokioIo::new(client_side);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client_side, &mut target_side).await {
        tracing::debug!(%error, "forwarded upgraded connection ended with an error");
    }
}

/// Copies `headers` without hop-by-hop headers and `Host`, which the client sets for the
/// target. `Connection` and `Upgrade` stay when `keep_upgrade` is set.
fn forwarded_headers(headers: &HeaderMap, keep_upgrade: bool) -> HeaderMap {
    let mut forwarded = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let hop_by_hop = HOP_BY_HOP_HEADERS.contains(name) || name == header::UPGRADE;
        let upgrade_header = name == header::CONNECTION || name == header::UPGRADE;
        if name == header::HOST || (hop_by_hop && !(keep_upgrade && upgrade_header)) {
            continue;
        }
        forwarded.append(name.clone(), value.clone());
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("balancer:80"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers
    }

    #[test]
    fn forwarded_headers_drop_hop_by_hop() {
        let forwarded = forwarded_headers(&request_headers(), false);

        assert!(forwarded.get(header::HOST).is_none());
        assert!(forwarded.get(header::CONNECTION).is_none());
        assert!(forwarded.get(header::UPGRADE).is_none());
        assert!(forwarded.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(forwarded[header::AUTHORIZATION], "Bearer x");
    }

    #[test]
    fn forwarded_headers_keep_upgrade() {
        let forwarded = forwarded_headers(&request_headers(), true);

        assert_eq!(forwarded[header::CONNECTION], "Upgrade");
        assert_eq!(forwarded[header::UPGRADE], "websocket");
        assert!(forwarded.get(header::TRANSFER_ENCODING).is_none());
    }
}
