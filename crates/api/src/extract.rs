//! Extractors that turn bad input into problem+json errors, and the authenticated caller.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use tasklane_auth::policy::{self, Action, Role, TokenScope};
use tasklane_auth::{hash_opaque_token, API_TOKEN_PREFIX};
use uuid::Uuid;

use crate::browser_session::{self, SessionError};
use crate::{ApiError, AppState};

/// `axum::Json` whose rejections are problem+json.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejections are problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The person making the request, acting in their token's tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: String,
    /// The scope when the caller authenticated with a personal API token, `None` for an
    /// access token.
    pub token_scope: Option<TokenScope>,
    /// The session when the caller authenticated with the session cookie.
    pub browser_session: Option<BrowserSessionRef>,
}

/// The browser session a request was authenticated with.
#[derive(Debug, Clone)]
pub struct BrowserSessionRef {
    pub id: Uuid,
    /// Hex SHA-256 of the cookie value, the name of the session's Redis entry.
    pub token_hash_hex: String,
}

impl Caller {
    /// Rejects callers whose role the policy does not allow `action`; a role name that does
    /// not parse allows nothing.
    pub fn authorize(&self, action: Action) -> Result<Role, ApiError> {
        if let Some(scope) = self.token_scope.filter(|scope| !scope.permits(action)) {
            return Err(ApiError::Forbidden(format!(
                "an API token with scope {} may not do that",
                scope.as_str()
            )));
        }
        let role = self
            .role
            .parse::<Role>()
            .ok()
            .filter(|role| policy::is_allowed(*role, action));
        role.ok_or_else(|| {
            ApiError::Forbidden(format!(
                "your role {:?} in this tenant may not do that",
                self.role
            ))
        })
    }

    /// Rejects callers whose tenant role or token scope may only read.
    pub fn require_writer(&self) -> Result<(), ApiError> {
        self.authorize(Action::WriteContent).map(|_| ())
    }
}

/// The address of the peer that sent the request, when the server records it.
///
/// NOTE: behind a reverse proxy this is the proxy's address, because forwarded headers are
/// not trusted; per-address limits then apply to all clients of that proxy together.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientIp(peer.map(|info| info.0.ip())))
    }
}

/// Reads the bearer token of a request, if it has one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    parse_bearer(value)
}

/// Reads the token of an `Authorization: Bearer` value, with the scheme in any case.
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(parts) else {
            return caller_from_session_cookie(parts, state).await;
        };
        if token.starts_with(API_TOKEN_PREFIX) {
            return caller_from_api_token(state, token).await;
        }
        let claims = state
            .tokens
            .verify(token)
            .map_err(|_| ApiError::Unauthorized)?;
        // The version and membership are checked on every request, against a cache that
        // PostgreSQL invalidates, so a logout-all, a disabled account or a removed member
        // loses access at once rather than when the token expires.
        let access = state
            .access
            .get(claims.sub)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if claims.ver < access.revocation_version {
            return Err(ApiError::Unauthorized);
        }
        let role = access
            .role_in(claims.tid)
            .ok_or(ApiError::Unauthorized)?
            .to_owned();
        Ok(Caller {
            user_id: claims.sub,
            tenant_id: claims.tid,
            role,
            token_scope: None,
            browser_session: None,
        })
    }
}

/// Authenticates a personal API token: unrevoked and unexpired, and its owner still an
/// enabled member of the token's tenant.
async fn caller_from_api_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let owner = tasklane_store::api_tokens::authenticate(&state.pool, &hash_opaque_token(token))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let scope = owner
        .scope
        .parse::<TokenScope>()
        .map_err(|_| ApiError::Unauthorized)?;
    let access = state
        .access
        .get(owner.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let role = access
        .role_in(owner.tenant_id)
        .ok_or(ApiError::Unauthorized)?
        .to_owned();
    Ok(Caller {
        user_id: owner.user_id,
        tenant_id: owner.tenant_id,
        role,
        token_scope: Some(scope),
        browser_session: None,
    })
}

/// Authenticates the session cookie of a request without a bearer token. Writes must also
/// pass [`check_csrf`], because browsers attach the cookie to requests that other sites
/// start.
async fn caller_from_session_cookie(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let cookie = browser_session::session_cookie(&parts.headers).ok_or(ApiError::Unauthorized)?;
    let session = state
        .session_authenticator()
        .authenticate(cookie)
        .await
        .map_err(|error| match error {
            SessionError::Rejected(reason) => {
                tracing::debug!(reason, "request with a rejected session cookie");
                ApiError::Unauthorized
            }
            SessionError::Store(error) => error.into(),
        })?;
    if !parts.method.is_safe() {
        check_csrf(
            &parts.headers,
            &state.settings.server.allowed_origins,
            cookie,
        )?;
    }
    Ok(Caller {
        user_id: session.user_id,
        tenant_id: session.tenant_id,
        role: session.role,
        token_scope: None,
        browser_session: Some(BrowserSessionRef {
            id: session.session_id,
            token_hash_hex: session.token_hash_hex,
        }),
    })
}

/// Rejects a cookie-authenticated write that does not come from an allowed origin.
///
/// The origin is the `Origin` header, which browsers send on every cross-origin request
/// and on same-origin writes. Without it, `Sec-Fetch-Site: same-origin` is accepted.
pub(crate) fn check_origin(
    headers: &HeaderMap,
    allowed_origins: &[String],
) -> Result<(), ApiError> {
    let origin = headers
        .get(header::ORIGIN)
        .map(|value| value.to_str().unwrap_or_default());
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|value| value.to_str().unwrap_or_default());
    match (origin, fetch_site) {
        (Some(origin), _) if browser_session::is_allowed_origin(allowed_origins, origin) => Ok(()),
        (Some(origin), _) => Err(ApiError::Forbidden(format!(
            "the Origin {origin:?} is not allowed to use the session cookie"
        ))),
        (None, Some("same-origin")) => Ok(()),
        (None, Some(site)) => Err(ApiError::Forbidden(format!(
            "a request with Sec-Fetch-Site {site:?} may not use the session cookie"
        ))),
        (None, None) => Err(ApiError::Forbidden(
            "missing Origin header: cookie-authenticated writes must come from an allowed origin"
                .into(),
        )),
    }
}

/// Rejects a cookie-authenticated write unless it comes from an allowed origin and carries
/// the session's CSRF token in `X-CSRF-Token`.
pub(crate) fn check_csrf(
    headers: &HeaderMap,
    allowed_origins: &[String],
    cookie: &str,
) -> Result<(), ApiError> {
    check_origin(headers, allowed_origins)?;
    let presented = headers
        .get(browser_session::CSRF_HEADER)
        .map(|value| value.to_str().unwrap_or_default())
        .ok_or_else(|| {
            ApiError::Forbidden(
                "missing X-CSRF-Token header: send the csrf_token from GET /api/v1/auth/session"
                    .into(),
            )
        })?;
    if !browser_session::csrf_token_matches(cookie, presented) {
        return Err(ApiError::Forbidden(
            "the X-CSRF-Token header does not match the session".into(),
        ));
    }
    Ok(())
}

/// Pagination parameters shared by every list endpoint.
#[derive(Debug, serde::Deserialize)]
pub struct PageParams {
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            Some(limit) => Err(ApiError::BadRequest(format!(
                "limit {limit} is out of range 1 to {MAX_LIMIT}"
            ))),
        }
    }

    pub fn uuid_cursor(&self) -> Result<Option<Uuid>, ApiError> {
        self.cursor
            .as_deref()
            .map(|cursor| {
                Uuid::parse_str(cursor)
                    .map_err(|_| ApiError::BadRequest(format!("invalid cursor {cursor:?}")))
            })
            .transpose()
    }
}
