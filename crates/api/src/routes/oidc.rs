//! OpenID Connect login with the providers that each tenant configures: the admin API for
//! providers, the login start and callback, and confirming a link to an existing account.
//!
//! A provider signs people in to its own tenant only. An identity (provider, `sub`) that is
//! not linked yet gets a new password-less account when no account has its verified e-mail
//! address. When an account has that address, the login is refused with a single-use link
//! token instead, and the identity is linked only after that account, signed in by its own
//! means, presents the token to `POST /auth/oidc/link`. So no provider can take over an
//! account by asserting its e-mail address.
//!
//! The callback returns JSON: the token pair on success, or problem+json.
//!
//! NOTE: a browser that follows the provider's redirect displays that JSON. A web front end
//! must call the callback itself, with the state cookie, until a cookie-based finish exists.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use tasklane_auth::oidc::{self, OidcError, ProviderConfig, VerifiedIdentity};
use tasklane_auth::policy::Action;
use tasklane_auth::{generate_oidc_link_token, hash_opaque_token};
use tasklane_domain::EventType;
use tasklane_store::oidc::{self as store, LinkRequest, LoginState, NewProvider, Provider};
use tasklane_store::{accounts, auth_events};
use uuid::Uuid;

use super::required_text;
use super::sessions::start_session;
use crate::extract::{Caller, Json, Path, Query};
use crate::{ApiError, AppState};

/// Path of the callback, relative to the host, as providers must have it registered.
const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

/// Cookie that binds a login to the browser that started it, so a callback URL with
/// someone else's code and state cannot sign a victim in to the attacker's account.
const STATE_COOKIE: &str = "tasklane_oidc_state";

/// How long a started login and a link token stay usable.
const LOGIN_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// Maximum length of a `redirect` path, in characters.
const MAX_REDIRECT_CHARS: usize = 2000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oidc/providers", post(create_provider).get(list_providers))
        .route("/oidc/providers/{provider_id}", delete(delete_provider))
        .route("/auth/oidc/{provider_id}/start", get(start))
        .route("/auth/oidc/callback", get(callback))
        .route("/auth/oidc/link", post(confirm_link))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProvider {
    display_name: String,
    issuer_url: String,
    client_id: String,
    client_secret: String,
    /// Scopes besides `openid`; defaults to `email` and `profile`.
    scopes: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// Adds an OpenID provider to the caller's tenant. Owners and admins may do it.
async fn create_provider(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateProvider>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.authorize(Action::ManageLoginProviders)?;
    let display_name = required_text("display_name", &request.display_name, 100)?;
    let issuer_url = required_text("issuer_url", &request.issuer_url, 2000)?;
    oidc::parse_issuer_url(&issuer_url, &state.settings.oidc.allowed_issuer_hosts)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let client_id = required_text("client_id", &request.client_id, 500)?;
    let client_secret = required_text("client_secret", &request.client_secret, 500)?;
    let scopes = parse_scopes(request.scopes)?;

    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let provider = NewProvider {
        display_name: &display_name,
        issuer_url: &issuer_url,
        client_id: &client_id,
        client_secret: &client_secret,
        scopes: &scopes,
        enabled: request.enabled.unwrap_or(true),
    };
    let created = store::create_provider(&mut tx, caller.tenant_id, provider).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((StatusCode::CREATED, Json(serde_json::json!(created))))
}

/// Checks requested scopes: at most 20 tokens of visible ASCII without `"` or `\`, as
/// RFC 6749 section 3.3 allows.
fn parse_scopes(scopes: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let Some(scopes) = scopes else {
        return Ok(vec!["email".to_owned(), "profile".to_owned()]);
    };
    if scopes.len() > 20 {
        return Err(ApiError::Unprocessable(
            "scopes must have at most 20 entries".into(),
        ));
    }
    for scope in &scopes {
        let valid = !scope.is_empty()
            && scope.len() <= 100
            && scope
                .bytes()
                .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'\\');
        if !valid {
            return Err(ApiError::Unprocessable(format!(
                "{scope:?} is not a valid scope: use 1 to 100 visible ASCII characters without quotes or backslashes"
            )));
        }
    }
    Ok(scopes)
}

/// Lists the providers of the caller's tenant, without their client secrets.
async fn list_providers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.authorize(Action::ManageLoginProviders)?;
    let providers = store::list_providers(&state.pool, caller.tenant_id).await?;
    Ok(Json(serde_json::json!({ "items": providers })))
}

/// Deletes a provider of the caller's tenant with its linked identities. Accounts it
/// created stay, but without a password they can log in again only after a password reset.
async fn delete_provider(
    State(state): State<AppState>,
    caller: Caller,
    Path(provider_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.authorize(Action::ManageLoginProviders)?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if !store::delete_provider(&mut tx, caller.tenant_id, provider_id).await? {
        return Err(ApiError::NotFound("provider"));
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartParams {
    /// Path on this site that the client shows after the login; returned by the callback.
    redirect: Option<String>,
}

/// Starts a login: stores the state, nonce and PKCE verifier for 10 minutes and redirects
/// to the provider's authorization endpoint.
async fn start(
    State(state): State<AppState>,
    Path(provider_id): Path<Uuid>,
    Query(params): Query<StartParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let return_path = params.redirect.map(parse_return_path).transpose()?;
    let provider = store::find_provider(&state.pool, provider_id)
        .await?
        .filter(|provider| provider.enabled)
        .ok_or(ApiError::NotFound("provider"))?;
    let redirect_uri = callback_url(&state, &headers)?;

    let request = oidc::authorization_request(
        &provider_config(&provider),
        &redirect_uri,
        &state.settings.oidc.allowed_issuer_hosts,
    )
    .await
    .map_err(|e| provider_error(provider.id, e))?;

    let login = LoginState {
        provider_id: provider.id,
        pkce_verifier: request.pkce_verifier,
        nonce: request.nonce,
        redirect_uri: redirect_uri.clone(),
        return_path,
    };
    let expires_at = Utc::now() + LOGIN_TTL;
    // NOTE: anyone may start logins, and each one stores a row until it expires. No rate
    // limit caps how many rows one client creates within 10 minutes.
    store::insert_login_state(
        &state.pool,
        &hash_opaque_token(&request.state),
        &login,
        expires_at,
    )
    .await?;

    let mut response = StatusCode::FOUND.into_response();
    let location = HeaderValue::try_from(request.url).map_err(|e| {
        ApiError::Internal(
            anyhow::Error::new(e).context("the authorization URL is not a valid header value"),
        )
    })?;
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(
        header::SET_COOKIE,
        state_cookie(&request.state, redirect_uri.starts_with("https:")),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Accepts only an absolute path on this site, so the value cannot send the browser to
/// another origin (`//host` and `/\host` are rejected because browsers treat them as hosts).
fn parse_return_path(value: String) -> Result<String, ApiError> {
    let valid = value.starts_with('/')
        && !value.starts_with("//")
        && !value.starts_with("/\\")
        && value.chars().count() <= MAX_REDIRECT_CHARS
        && !value.chars().any(|c| c.is_control() || c == '\\');
    if valid {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(format!(
            "redirect {value:?} is invalid: use a path on this site that starts with a single /"
        )))
    }
}

/// The redirect URI registered at the providers: the configured callback URL, or `http://`,
/// the request's `Host` and [`CALLBACK_PATH`].
fn callback_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &state.settings.oidc.callback_url {
        return Ok(url.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .ok_or_else(|| ApiError::BadRequest("a valid Host header is required".into()))?;
    Ok(format!("http://{host}{CALLBACK_PATH}"))
}

fn state_cookie(state: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = LOGIN_TTL.num_seconds();
    HeaderValue::try_from(format!(
        "{STATE_COOKIE}={state}; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("the state is URL-safe base64, valid in a header")
}

fn clear_state_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "tasklane_oidc_state=; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
    )
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn provider_config(provider: &Provider) -> ProviderConfig<'_> {
    ProviderConfig {
        issuer_url: &provider.issuer_url,
        client_id: &provider.client_id,
        client_secret: &provider.client_secret,
        scopes: &provider.scopes,
    }
}

/// Maps a failure to reach or use the provider's configuration. The details go to the log
/// only, because they may contain the provider's responses.
fn provider_error(provider_id: Uuid, error: OidcError) -> ApiError {
    match error {
        OidcError::InvalidRedirectUri(_) => ApiError::BadRequest(error.to_string()),
        other => {
            tracing::warn!(%provider_id, error = %other, "OpenID provider request failed");
            ApiError::Internal(anyhow::anyhow!(
                "the OpenID provider {provider_id} could not be used"
            ))
        }
    }
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// The issuer that sent the response (RFC 9207), which defends against mix-up attacks.
    iss: Option<String>,
}

/// Finishes a login: consumes the state, exchanges the code with the PKCE verifier, verifies
/// the ID token and signs the person in to the provider's tenant, creates their account, or
/// returns 409 with a link token when an account has their e-mail address.
async fn callback(
    State(state): State<AppState>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut response = finish_login(&state, params, &headers).await.into_response();
    // The state cookie is single-use like the state, whatever the outcome.
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_state_cookie());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn finish_login(
    state: &AppState,
    params: CallbackParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(error) = params.error {
        let description = params.error_description.unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "the provider rejected the login: {error} {description}"
        )));
    }
    let login_state = params
        .state
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the state parameter is missing".into()))?;
    let code = params
        .code
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the code parameter is missing".into()))?;
    if cookie_value(headers, STATE_COOKIE) != Some(login_state.as_str()) {
        return Err(ApiError::BadRequest(
            "the login state does not match this browser's login: start the login again".into(),
        ));
    }
    let login = store::take_login_state(&state.pool, &hash_opaque_token(&login_state))
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(
                "the login state is unknown, already used or expired: start the login again".into(),
            )
        })?;
    let provider = store::find_provider(&state.pool, login.provider_id)
        .await?
        .filter(|provider| provider.enabled)
        .ok_or_else(|| ApiError::BadRequest("the provider of this login is disabled".into()))?;

    // A provider that names itself must name the provider this login was started with.
    if let Some(iss) = params.iss.as_deref() {
        if iss.trim_end_matches('/') != provider.issuer_url.trim_end_matches('/') {
            tracing::warn!(provider_id = %provider.id, iss, "OpenID callback from another issuer");
            record_failure(state, &provider, "issuer_mismatch").await?;
            return Err(ApiError::BadRequest(format!(
                "the response comes from the issuer {iss:?}, not from this login's provider"
            )));
        }
    }

    let verified = oidc::verify_callback(
        &provider_config(&provider),
        &login.redirect_uri,
        &code,
        &login.pkce_verifier,
        &login.nonce,
        &state.settings.oidc.allowed_issuer_hosts,
    )
    .await;
    let identity = match verified {
        Ok(identity) => identity,
        Err(error @ OidcError::Discovery(_)) => return Err(provider_error(provider.id, error)),
        Err(error) => {
            tracing::warn!(provider_id = %provider.id, error = %error, "OpenID login failed");
            record_failure(state, &provider, "invalid_provider_response").await?;
            return Err(ApiError::BadRequest(
                "the provider's response could not be verified: start the login again".into(),
            ));
        }
    };
    sign_in(state, &provider, &identity, login.return_path).await
}

/// Signs in the person the verified identity belongs to, creating or proposing a link to
/// an account when the identity is new.
async fn sign_in(
    state: &AppState,
    provider: &Provider,
    identity: &VerifiedIdentity,
    return_path: Option<String>,
) -> Result<Response, ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let linked = store::find_identity(&mut *tx, provider.id, &identity.subject).await?;
    let (user_id, created) = match linked {
        Some(user_id) => (user_id, false),
        None => {
            let Some(email) = identity
                .email
                .as_deref()
                .filter(|_| identity.email_verified)
            else {
                drop(tx);
                tracing::warn!(
                    provider_id = %provider.id,
                    subject = %identity.subject,
                    "OpenID login without a verified e-mail address for a new identity"
                );
                record_failure(state, provider, "no_verified_email").await?;
                return Err(ApiError::Forbidden(
                    "the provider did not assert a verified e-mail address, which a new account needs".into(),
                ));
            };
            if let Some(owner) = accounts::find_by_email(&mut *tx, email).await? {
                return propose_link(tx, provider, identity, owner.user_id).await;
            }
            let name = identity
                .name
                .clone()
                .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
            let name: String = name.chars().take(200).collect();
            let Some(user_id) =
                store::create_passwordless_user(&mut tx, provider.tenant_id, email, &name).await?
            else {
                return Err(ApiError::Conflict(
                    "an account already uses this e-mail address".into(),
                ));
            };
            store::link_identity(&mut tx, provider.id, &identity.subject, user_id).await?;
            (user_id, true)
        }
    };

    // The login grants the provider's tenant only, and only while the person is a member.
    let is_member =
        created || store::is_active_member(&mut *tx, user_id, provider.tenant_id).await?;
    if !is_member {
        drop(tx);
        tracing::warn!(
            provider_id = %provider.id,
            %user_id,
            "OpenID login of an account that is not a member of the provider's tenant"
        );
        record_failure(state, provider, "not_a_member").await?;
        return Err(ApiError::Forbidden(
            "your account is not an active member of this provider's tenant".into(),
        ));
    }
    let data = serde_json::json!({
        "user_id": user_id,
        "method": "oidc",
        "provider_id": provider.id,
        "new_account": created,
    });
    auth_events::append(
        &mut tx,
        EventType::LoginSucceeded,
        Some(provider.tenant_id),
        Some(user_id),
        user_id,
        data,
    )
    .await?;
    let tokens = start_session(state, &mut tx, user_id, provider.tenant_id).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let mut body = tokens.into_json(state);
    body["user_id"] = serde_json::json!(user_id);
    body["tenant_id"] = serde_json::json!(provider.tenant_id);
    body["new_account"] = serde_json::json!(created);
    body["redirect"] = serde_json::json!(return_path);
    Ok(Json(body).into_response())
}

/// Stores a single-use link request for the account that has the identity's e-mail
/// address and returns 409 with its token. Nothing is linked and no one is signed in.
async fn propose_link(
    mut tx: tasklane_store::Tx<'_>,
    provider: &Provider,
    identity: &VerifiedIdentity,
    user_id: Uuid,
) -> Result<Response, ApiError> {
    let token = generate_oidc_link_token();
    let request = LinkRequest {
        provider_id: provider.id,
        subject: identity.subject.clone(),
        user_id,
    };
    store::insert_link_request(&mut tx, &token.hash, &request, Utc::now() + LOGIN_TTL).await?;
    let data = serde_json::json!({ "user_id": user_id, "provider_id": provider.id });
    auth_events::append(
        &mut tx,
        EventType::OidcLinkRequested,
        Some(provider.tenant_id),
        None,
        user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;

    let status = StatusCode::CONFLICT;
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": "an account already uses this e-mail address: log in to it and confirm the link with POST /api/v1/auth/oidc/link within 10 minutes",
        "link_token": token.token,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Ok(response)
}

async fn record_failure(
    state: &AppState,
    provider: &Provider,
    reason: &str,
) -> Result<(), ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let data =
        serde_json::json!({ "method": "oidc", "provider_id": provider.id, "reason": reason });
    auth_events::append(
        &mut tx,
        EventType::LoginFailed,
        Some(provider.tenant_id),
        None,
        provider.id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmLink {
    link_token: String,
}

/// Links the provider identity of a link token to the caller's account. The caller must
/// be the account that has the identity's e-mail address, authenticated by its own means.
async fn confirm_link(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<ConfirmLink>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if caller.token_scope.is_some() {
        return Err(ApiError::Forbidden(
            "confirm a link with an access token or session cookie, not an API token".into(),
        ));
    }
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let link = store::take_link_request(
        &mut tx,
        &hash_opaque_token(&request.link_token),
        caller.user_id,
    )
    .await?
    .ok_or_else(|| {
        ApiError::BadRequest(
            "the link token is unknown, already used, expired or not yours: sign in with the provider again"
                .into(),
        )
    })?;
    let provider = store::find_provider(&mut *tx, link.provider_id)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    store::link_identity(&mut tx, link.provider_id, &link.subject, caller.user_id).await?;
    let data = serde_json::json!({ "user_id": caller.user_id, "provider_id": link.provider_id });
    auth_events::append(
        &mut tx,
        EventType::OidcLinked,
        Some(provider.tenant_id),
        Some(caller.user_id),
        caller.user_id,
        data,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(serde_json::json!({
        "provider_id": link.provider_id,
        "tenant_id": provider.tenant_id,
        "user_id": caller.user_id,
    })))
}
