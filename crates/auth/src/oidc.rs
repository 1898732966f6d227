//! OpenID Connect relying party: the authorization code flow with PKCE (S256), state and
//! nonce, with ID token verification by the `openidconnect` crate.
//!
//! Each provider's discovery document and keys are cached in process for
//! [`METADATA_TTL`], keyed by issuer URL.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    reqwest, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use parking_lot::Mutex;

/// How long a discovered configuration, including the provider's signing keys, is reused.
/// A provider that rotates its keys is rediscovered after this time, or at once after an ID
/// token fails verification.
pub const METADATA_TTL: Duration = Duration::from_secs(600);

/// Timeout of each request to a provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum length of an issuer URL, in bytes.
const MAX_ISSUER_URL_LEN: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid issuer URL {url:?}: {reason}")]
    InvalidIssuerUrl { url: String, reason: String },
    #[error("the issuer host {0:?} is not one of the allowed issuer hosts")]
    IssuerHostNotAllowed(String),
    #[error("invalid redirect URI {0:?}")]
    InvalidRedirectUri(String),
    #[error("fetching the provider's OpenID configuration failed: {0}")]
    Discovery(String),
    #[error("the provider's configuration has no token endpoint")]
    NoTokenEndpoint,
    #[error("exchanging the authorization code failed: {0}")]
    CodeExchange(String),
    #[error("the provider returned no ID token")]
    MissingIdToken,
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(String),
    #[error("fetching the UserInfo claims failed: {0}")]
    UserInfo(String),
}

/// The settings of a tenant's provider that a login uses.
pub struct ProviderConfig<'a> {
    pub issuer_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    /// Scopes besides `openid`, which every request includes.
    pub scopes: &'a [String],
}

/// A started login: where to send the browser and the secrets the callback needs.
pub struct AuthorizationRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The person an ID token identifies, after its signature, issuer, audience, expiry and
/// nonce were verified.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    /// The `sub` claim, unique and stable at the issuer.
    pub subject: String,
    pub email: Option<String>,
    /// The `email_verified` claim, false when the provider omits it.
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Parses an issuer URL and checks it against `allowed_hosts` (every host when empty).
/// An issuer must use https, except on a loopback host (`localhost`, `127.0.0.1`, `::1`),
/// and has no query or fragment, as OpenID Connect Discovery 1.0 requires.
pub fn parse_issuer_url(value: &str, allowed_hosts: &[String]) -> Result<IssuerUrl, OidcError> {
    let invalid = |reason: &str| OidcError::InvalidIssuerUrl {
        url: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.len() > MAX_ISSUER_URL_LEN {
        return Err(invalid("it is longer than 2000 bytes"));
    }
    let issuer = IssuerUrl::new(value.to_owned()).map_err(|e| invalid(&e.to_string()))?;
    let url = issuer.url();
    let host = url.host_str().ok_or_else(|| invalid("it has no host"))?;
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(invalid("it must use https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain credentials"));
    }
    if !allowed_hosts.is_empty()
        && !allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    {
        return Err(OidcError::IssuerHostNotAllowed(host.to_owned()));
    }
    Ok(issuer)
}

/// Discovers the provider and builds the URL of its authorization endpoint, with a random
/// state, a random nonce and a PKCE S256 challenge.
pub async fn authorization_request(
    config: &ProviderConfig<'_>,
    redirect_uri: &str,
    allowed_hosts: &[String],
) -> Result<AuthorizationRequest, OidcError> {
    let metadata = provider_metadata(config.issuer_url, allowed_hosts).await?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.to_owned()),
        Some(ClientSecret::new(config.client_secret.to_owned())),
    )
    .set_redirect_uri(parse_redirect_uri(redirect_uri)?);

    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in config.scopes.iter().filter(|scope| *scope != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.set_pkce_challenge(pkce_challenge).url();
    Ok(AuthorizationRequest {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: pkce_verifier.secret().clone(),
    })
}

/// Exchanges the authorization code with the PKCE verifier at the token endpoint and
/// verifies the returned ID token: signature with the provider's JWKS, issuer, audience,
/// expiry and nonce. Reads the e-mail address from the UserInfo endpoint when the ID token
/// has none.
pub async fn verify_callback(
    config: &ProviderConfig<'_>,
    redirect_uri: &str,
    code: &str,
    pkce_verifier: &str,
    nonce: &str,
    allowed_hosts: &[String],
) -> Result<VerifiedIdentity, OidcError> {
    let metadata = provider_metadata(config.issuer_url, allowed_hosts).await?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.to_owned()),
        Some(ClientSecret::new(config.client_secret.to_owned())),
    )
    .set_redirect_uri(parse_redirect_uri(redirect_uri)?);

    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| OidcError::NoTokenEndpoint)?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(http_client())
        .await
        .map_err(|e| OidcError::CodeExchange(error_chain(&e)))?;
    let id_token = response.id_token().ok_or(OidcError::MissingIdToken)?;
    let verifier = client.id_token_verifier();
    let claims = match id_token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
        Ok(claims) => claims,
        Err(error) => {
            // The provider may have rotated its keys since discovery.
            METADATA_CACHE.lock().remove(config.issuer_url);
            return Err(OidcError::InvalidIdToken(error_chain(&error)));
        }
    };
    let mut identity = VerifiedIdentity {
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|email| email.as_str().to_owned()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_owned()),
    };
    if identity.email.is_some() {
        return Ok(identity);
    }

    // In the code flow a provider may return scope claims such as `email` only from its
    // UserInfo endpoint (OpenID Connect Core 1.0, section 5.4), as oidc-provider does. The
    // crate rejects a response whose `sub` differs from the ID token's.
    let Ok(request) = client.user_info(
        response.access_token().to_owned(),
        Some(claims.subject().clone()),
    ) else {
        return Ok(identity);
    };
    let user_info: CoreUserInfoClaims = request
        .request_async(http_client())
        .await
        .map_err(|e| OidcError::UserInfo(error_chain(&e)))?;
    identity.email = user_info.email().map(|email| email.as_str().to_owned());
    identity.email_verified = user_info.email_verified().unwrap_or(false);
    if identity.name.is_none() {
        identity.name = user_info
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_owned());
    }
    Ok(identity)
}

fn parse_redirect_uri(value: &str) -> Result<RedirectUrl, OidcError> {
    RedirectUrl::new(value.to_owned()).map_err(|_| OidcError::InvalidRedirectUri(value.to_owned()))
}

type MetadataCache = Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>;

static METADATA_CACHE: LazyLock<MetadataCache> = LazyLock::new(Default::default);

/// Returns the provider's discovery document with its keys, from the cache when it is
/// younger than [`METADATA_TTL`]. The crate checks that the document's `issuer` equals the
/// issuer URL.
async fn provider_metadata(
    issuer_url: &str,
    allowed_hosts: &[String],
) -> Result<CoreProviderMetadata, OidcError> {
    let issuer = parse_issuer_url(issuer_url, allowed_hosts)?;
    if let Some((fetched_at, metadata)) = METADATA_CACHE.lock().get(issuer_url) {
        if fetched_at.elapsed() < METADATA_TTL {
            return Ok(metadata.clone());
        }
    }
    let metadata = CoreProviderMetadata::discover_async(issuer, http_client())
        .await
        .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
    METADATA_CACHE
        .lock()
        .insert(issuer_url.to_owned(), (Instant::now(), metadata.clone()));
    Ok(metadata)
}

/// Returns the shared HTTP client for provider requests. It follows no redirects, because a redirect
/// could lead a request to a host that the issuer URL check never saw.
fn http_client() -> &'static reqwest::Client {
    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("building the OpenID Connect HTTP client")
    });
    &CLIENT
}

/// Renders an error with its sources, because the crate's top-level messages omit the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_url_requires_https_off_loopback() {
        assert!(parse_issuer_url("http://login.example.com", &[]).is_err());
        assert!(parse_issuer_url("https://login.example.com", &[]).is_ok());
        assert!(parse_issuer_url("http://127.0.0.1:4000", &[]).is_ok());
        assert!(parse_issuer_url("http://localhost:4000/oidc", &[]).is_ok());
    }

    #[test]
    fn issuer_url_rejects_query_and_credentials() {
        assert!(parse_issuer_url("https://login.example.com/?a=b", &[]).is_err());
        assert!(parse_issuer_url("https://user:pw@login.example.com", &[]).is_err());
        assert!(parse_issuer_url("ftp://login.example.com", &[]).is_err());
        assert!(parse_issuer_url("not a url", &[]).is_err());
    }

    #[test]
    fn issuer_host_must_be_allowed() {
        let allowed = vec!["Login.Example.com".to_owned()];
        assert!(parse_issuer_url("https://login.example.com", &allowed).is_ok());
        let error = parse_issuer_url("https://169.254.169.254", &allowed).unwrap_err();
        assert!(
            matches!(error, OidcError::IssuerHostNotAllowed(host) if host == "169.254.169.254")
        );
    }
}
