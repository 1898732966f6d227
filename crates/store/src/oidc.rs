//! OpenID Connect providers of a tenant, logins in progress, linked identities and pending
//! account links.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, Handle};
use uuid::Uuid;

use crate::{accounts, StoreError, Tx};

/// A tenant's OpenID provider, as the admin API lists it: without the client secret.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ProviderSummary {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A provider with the client secret, as a login needs it.
#[derive(Debug, Clone, FromRow)]
pub struct Provider {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub enabled: bool,
}

/// The fields of a new provider, already validated.
pub struct NewProvider<'a> {
    pub display_name: &'a str,
    pub issuer_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub scopes: &'a [String],
    pub enabled: bool,
}

pub async fn create_provider(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    provider: NewProvider<'_>,
) -> Result<ProviderSummary, StoreError> {
    let row = sqlx::query_as::<_, ProviderSummary>(
        "insert into oidc_providers
             (id, tenant_id, display_name, issuer_url, client_id, client_secret, scopes, enabled)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning id, tenant_id, display_name, issuer_url, client_id, scopes, enabled, created_at",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(provider.display_name)
    .bind(provider.issuer_url)
    .bind(provider.client_id)
    .bind(provider.client_secret)
    .bind(provider.scopes)
    .bind(provider.enabled)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

pub async fn list_providers(
    pool: &PgPool,
    tenant_id: Uuid,
) -> Result<Vec<ProviderSummary>, StoreError> {
    let rows = sqlx::query_as::<_, ProviderSummary>(
        "select id, tenant_id, display_name, issuer_url, client_id, scopes, enabled, created_at
         from oidc_providers where tenant_id = $1 order by created_at, id",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Deletes a provider of the tenant with its identities, logins in progress and pending
/// links. Returns false when the tenant has no such provider.
pub async fn delete_provider(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    provider_id: Uuid,
) -> Result<bool, StoreError> {
    let deleted = sqlx::query("delete from oidc_providers where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(provider_id)
        .execute(&mut **tx)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Finds a provider by id, in any tenant, for a login.
pub async fn find_provider(
    executor: impl sqlx::PgExecutor<'_>,
    provider_id: Uuid,
) -> Result<Option<Provider>, StoreError> {
    let row = sqlx::query_as::<_, Provider>(
        "select id, tenant_id, issuer_url, client_id, client_secret, scopes, enabled
         from oidc_providers where id = $1",
    )
    .bind(provider_id)
    .fetch_optional(executor)
    .await?;
    Ok(row)
}

/// The stored part of a login that a start request began, which the callback needs.
#[derive(Debug, Clone, FromRow)]
pub struct LoginState {
    pub provider_id: Uuid,
    pub pkce_verifier: String,
    pub nonce: String,
    pub redirect_uri: String,
    pub return_path: Option<String>,
}

pub async fn insert_login_state(
    pool: &PgPool,
    state_hash: &[u8],
    login: &LoginState,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Expired rows of abandoned logins are removed here, so the table does not grow.
    sqlx::query("delete from oidc_login_states where expires_at < now()")
        .execute(pool)
        .await?;
    sqlx::query(
        "insert into oidc_login_states
             (state_hash, provider_id, pkce_verifier, nonce, redirect_uri, return_path, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(state_hash)
    .bind(login.provider_id)
    .bind(&login.pkce_verifier)
    .bind(&login.nonce)
    .bind(&login.redirect_uri)
    .bind(&login.return_path)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes and returns the login with this state hash, so a state works once. Returns
/// `None` for an unknown, already used or expired state.
pub async fn take_login_state(
    pool: &PgPool,
    state_hash: &[u8],
) -> Result<Option<LoginState>, StoreError> {
    let row = sqlx::query_as::<_, TakenLogin>(
        "delete from oidc_login_states where state_hash = $1
         returning provider_id, pkce_verifier, nonce, redirect_uri, return_path,
                   expires_at > now() as live",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.filter(|taken| taken.live).map(|taken| taken.row))
}

/// Returns the account linked to the identity `subject` at the provider.
pub async fn find_identity(
    executor: impl sqlx::PgExecutor<'_>,
    provider_id: Uuid,
    subject: &str,
) -> Result<Option<Uuid>, StoreError> {
    let user_id = sqlx::query_scalar(
        "select user_id from oidc_identities where provider_id = $1 and subject = $2",
    )
    .bind(provider_id)
    .bind(subject)
    .fetch_optional(executor)
    .await?;
    Ok(user_id)
}

/// Links the identity to an account. Fails with a conflict when the identity is already
/// linked, also to the same account.
pub async fn link_identity(
    tx: &mut Tx<'_>,
    provider_id: Uuid,
    subject: &str,
    user_id: Uuid,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "insert into oidc_identities (provider_id, subject, user_id) values ($1, $2, $3)
         on conflict do nothing",
    )
    .bind(provider_id)
    .bind(subject)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(
            "this provider identity is already linked to an account".into(),
        ));
    }
    Ok(())
}

/// Reports whether the account is enabled and a member of the tenant, read from the
/// database rather than the access cache, because a login must see a removal at once.
pub async fn is_active_member(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<bool, StoreError> {
    let member = sqlx::query_scalar(
        "select exists (
             select 1 from memberships m join users u on u.id = m.user_id
             where m.user_id = $1 and m.tenant_id = $2 and u.disabled_at is null
         )",
    )
    .bind(user_id)
    .bind(tenant_id)
    .fetch_one(executor)
    .await?;
    Ok(member)
}

/// Creates a person without a password, whose address the provider has verified, as a
/// `member` of the tenant. Returns `None` and changes nothing when an account already has
/// the address, also when a parallel request took it a moment before.
pub async fn create_passwordless_user(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    email: &str,
    name: &str,
) -> Result<Option<Uuid>, StoreError> {
    let user_id = new_id();
    let inserted = sqlx::query(
        "insert into users (id, email, name, email_verified_at) values ($1, $2, $3, now())
         on conflict (lower(email)) where email is not null do nothing",
    )
    .bind(user_id)
    .bind(email)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    let local_part = email.split('@').next().unwrap_or(email);
    accounts::add_membership(
        tx,
        tenant_id,
        user_id,
        "member",
        Handle::derive_from(local_part),
    )
    .await?;
    Ok(Some(user_id))
}

/// A provider identity waiting for the account with its e-mail address to confirm the link.
#[derive(Debug, Clone, FromRow)]
pub struct LinkRequest {
    pub provider_id: Uuid,
    pub subject: String,
    pub user_id: Uuid,
}

pub async fn insert_link_request(
    tx: &mut Tx<'_>,
    token_hash: &[u8],
    request: &LinkRequest,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("delete from oidc_link_requests where expires_at < now()")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "insert into oidc_link_requests (token_hash, provider_id, subject, user_id, expires_at)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(request.provider_id)
    .bind(&request.subject)
    .bind(request.user_id)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes and returns the link request with this token hash for the account `user_id`, so
/// a token works once. Returns `None` for an unknown, already used or expired token, and
/// for a token of another account, which stays usable.
pub async fn take_link_request(
    tx: &mut Tx<'_>,
    token_hash: &[u8],
    user_id: Uuid,
) -> Result<Option<LinkRequest>, StoreError> {
    let row = sqlx::query_as::<_, TakenLink>(
        "delete from oidc_link_requests where token_hash = $1 and user_id = $2
         returning provider_id, subject, user_id, expires_at > now() as live",
    )
    .bind(token_hash)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.filter(|taken| taken.live).map(|taken| taken.row))
}

/// A deleted login state and whether it had not expired yet.
#[derive(FromRow)]
struct TakenLogin {
    #[sqlx(flatten)]
    row: LoginState,
    live: bool,
}

/// A deleted link request and whether it had not expired yet.
#[derive(FromRow)]
struct TakenLink {
    #[sqlx(flatten)]
    row: LinkRequest,
    live: bool,
}
