//! `Idempotency-Key` on POST: the first response for a key is stored and replayed for
//! every retry with the same key and the same request.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tasklane_store::idempotency::{self, KeyState};

use crate::{ApiError, AppState};

const HEADER: &str = "idempotency-key";
const MAX_KEY_BYTES: usize = 255;
/// Largest response kept for replay; a created task echoes a description of up to 512 KiB.
const MAX_STORED_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

pub async fn idempotency_layer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let key = match request.headers().get(HEADER) {
        Some(value) if request.method() == Method::POST => value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible characters"
                ))
            })?
            .to_owned(),
        _ => return Ok(next.run(request).await),
    };
    // Keys belong to the authenticated caller. Without a valid token or session cookie, the
    // handler rejects the request.
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::extract::parse_bearer);
    let identity = match token {
        Some(token) => state
            .tokens
            .verify(token)
            .ok()
            .map(|claims| (claims.sub, claims.tid)),
        None => session_identity(&state, request.headers()).await,
    };
    let Some((user_id, tenant_id)) = identity else {
        return Ok(next.run(request).await);
    };
    let scoped_key = format!("{tenant_id}:{key}");

    let (request, request_hash) =
        hash_request(request, state.settings.server.max_json_bytes).await?;
    match idempotency::reserve(&state.pool, user_id, &scoped_key, &request_hash).await? {
        KeyState::Reserved => {}
        KeyState::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still running".into(),
            ))
        }
        KeyState::Mismatch => {
            return Err(ApiError::Unprocessable(
                "this Idempotency-Key was used for a different request".into(),
            ))
        }
        KeyState::Completed { status, response } => return Ok(replay(status, response)),
    }

    let response = next.run(request).await;
    let status = response.status();
    // Only successes are kept: a failure (a broken upload, a validation error) may succeed
    // when retried, so the key is freed for that retry.
    if !status.is_success() {
        idempotency::release(&state.pool, user_id, &scoped_key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_STORED_RESPONSE_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // The body is gone, but the change was made: keep the key reserved so a retry
            // gets 409 rather than repeating the change.
            return Err(ApiError::Internal(anyhow::anyhow!(
                "reading the response to store for an idempotency key: {error}"
            )));
        }
    };
    let stored: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    idempotency::complete(&state.pool, user_id, &scoped_key, status.as_u16(), &stored).await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Returns the user and tenant of a request's browser session when the request would pass
/// the CSRF checks, so a forged request neither reserves a key nor gets a stored response.
async fn session_identity(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Option<(uuid::Uuid, uuid::Uuid)> {
    let cookie = crate::browser_session::session_cookie(headers)?;
    let allowed_origins = &state.settings.server.allowed_origins;
    crate::extract::check_csrf(headers, allowed_origins, cookie).ok()?;
    let session = state
        .session_authenticator()
        .authenticate(cookie)
        .await
        .ok()?;
    Some((session.user_id, session.tenant_id))
}

/// Hashes method, path and body; a multipart upload is identified by its key alone, since
/// buffering it would defeat streaming it.
async fn hash_request(request: Request, max_body: usize) -> Result<(Request, String), ApiError> {
    let mut hasher = Sha256::new();
    hasher.update(request.method().as_str());
    hasher.update(request.uri().path());
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    if is_multipart {
        return Ok((request, hex(&hasher.finalize())));
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, max_body).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!("the request body is larger than {max_body} bytes"))
    })?;
    hasher.update(&bytes);
    Ok((
        Request::from_parts(parts, Body::from(bytes)),
        hex(&hasher.finalize()),
    ))
}

/// Rebuilds a stored response.
///
/// NOTE: only the status and JSON body are stored, so a replay lacks the original
/// `ETag` and `Location` headers.
fn replay(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
