//! Authentication against the running application: access-token signing and validation,
//! refresh-token rotation, logout, revocation that takes effect at once, login limits,
//! invitations, the role policy and personal API tokens.
//!
//! Each test names the OWASP ASVS 5.0 requirement it covers; docs/asvs-coverage.md lists
//! them all.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::TestApp;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

/// Reads the JSON header of a JWT without verifying it.
fn jwt_header(token: &str) -> Value {
    let encoded = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
}

/// Reads the application's current signing key from the development key table.
async fn signing_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, pem): (String, String) = sqlx::query_as(
        "select kid, private_key_pem from signing_keys order by created_at desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (kid, EncodingKey::from_ed_pem(pem.as_bytes()).unwrap())
}

/// Claims that the application accepts for `user` in `tenant`.
fn valid_claims(user: Uuid, tenant: Uuid) -> Value {
    let now = chrono_now();
    json!({
        "sub": user, "tid": tenant, "ver": 0, "jti": Uuid::new_v4(),
        "iss": "tasklane", "aud": "tasklane-api", "iat": now, "nbf": now, "exp": now + 300,
    })
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Registers a person with their own tenant, logs them in and returns the login response
/// with the e-mail address and the default project's id added.
async fn register(app: &TestApp, tenant: &str) -> Value {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let body =
        json!({ "email": email, "password": PASSWORD, "name": "Auth Tester", "tenant": tenant });
    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    app.mark_email_verified(&email).await;
    let mut registered = login(app, &json!(email)).await;
    let tenant_id = id(&registered["tenant_id"]);
    let project_id: Uuid =
        sqlx::query_scalar("select id from projects where tenant_id = $1 order by created_at")
            .bind(tenant_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    registered["email"] = json!(email);
    registered["project_id"] = json!(project_id);
    registered
}

const PASSWORD: &str = "correct horse battery";

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &Value) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn login(app: &TestApp, email: &Value) -> Value {
    let response = post(
        app,
        "/api/v1/auth/login",
        json!({ "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls until `token` gets `expected` from the API, for changes that reach this process by
/// PostgreSQL notification; fails after two seconds.
async fn wait_for_status(app: &TestApp, token: &str, expected: u16) {
    for _ in 0..40 {
        if status_with_token(app, token).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the API did not answer {expected} within 2 s");
}

async fn hub_negotiate_status(app: &TestApp, token: &str) -> u16 {
    let url = app.url("/hubs/tasks/negotiate?negotiateVersion=1");
    app.client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn id(value: &Value) -> Uuid {
    value.as_str().unwrap().parse().unwrap()
}

async fn status_with_token(app: &TestApp, token: &str) -> u16 {
    app.get(token, "/api/v1/projects").await.status().as_u16()
}

// ASVS 9.1.1, 9.1.2: tokens are signed with the one allowed algorithm and name their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_is_eddsa_with_kid() {
    let app = TestApp::spawn().await;
    let account = app.register("Signing").await;

    let header = jwt_header(&account.token);
    let (kid, _) = signing_key(&app).await;

    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(status_with_token(&app, &account.token).await, 200);
    app.stop().await;
}

// ASVS 9.1.3: verifiers get the public keys from the issuer's own published key set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_publishes_signing_key() {
    let app = TestApp::spawn().await;
    let account = app.register("Jwks").await;

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();

    let kid = jwt_header(&account.token)["kid"].clone();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("signing key listed");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(
        key.get("d").is_none(),
        "the private key must not be published: {key}"
    );
    app.stop().await;
}

// ASVS 9.1.3: every process of a deployment without a configured key shares the stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_signing_key_is_shared() {
    let app = TestApp::spawn().await;
    let settings = tasklane_config::Settings::with_overrides(json!({})).unwrap();

    let first = tasklane::token_keys::load(&settings.auth, &app.pool)
        .await
        .unwrap();
    let second = tasklane::token_keys::load(&settings.auth, &app.pool)
        .await
        .unwrap();
    let (stored_kid, _) = signing_key(&app).await;

    assert_eq!(first.signing_kid(), stored_kid);
    assert_eq!(second.signing_kid(), stored_kid);
    let count: i64 = sqlx::query_scalar("select count(*) from signing_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.stop().await;
}

// ASVS 9.1.2, 9.2.1, 9.2.3: forged, expired and misdirected tokens are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_access_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let account = app.register("Forgery").await;
    let (kid, key) = signing_key(&app).await;
    let sign = |claims: &Value| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        encode(&header, claims, &key).unwrap()
    };
    let now = chrono_now();
    let claims = valid_claims(account.user_id, account.tenant_id);
    assert_eq!(
        status_with_token(&app, &sign(&claims)).await,
        200,
        "the baseline token must pass"
    );

    let with = |name: &str, value: Value| {
        let mut changed = claims.clone();
        changed[name] = value;
        changed
    };
    let mut without_exp = claims.clone();
    without_exp.as_object_mut().unwrap().remove("exp");
    let cases = [
        ("expired", sign(&with("exp", json!(now - 60)))),
        (
            "string exp",
            sign(&with("exp", json!((now + 300).to_string()))),
        ),
        ("missing exp", sign(&without_exp)),
        ("not yet valid", sign(&with("nbf", json!(now + 120)))),
        (
            "other audience",
            sign(&with("aud", json!("another-service"))),
        ),
        ("other issuer", sign(&with("iss", json!("someone-else")))),
    ];
    for (case, token) in &cases {
        assert_eq!(
            status_with_token(&app, token).await,
            401,
            "{case} token was accepted"
        );
    }

    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let unsigned_header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": kid }).to_string());
    let unsigned = format!("{unsigned_header}.{payload}.");
    assert_eq!(
        status_with_token(&app, &unsigned).await,
        401,
        "alg none was accepted"
    );

    // HMAC keyed with the published public key: the classic algorithm-confusion forgery.
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some(kid.clone());
    let confused = encode(&hmac_header, &claims, &EncodingKey::from_secret(&public_x)).unwrap();
    assert_eq!(
        status_with_token(&app, &confused).await,
        401,
        "HS256 keyed with the public key was accepted"
    );

    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.kid = Some("not-a-key".into());
    let unknown = encode(&unknown_kid, &claims, &key).unwrap();
    assert_eq!(
        status_with_token(&app, &unknown).await,
        401,
        "an unknown kid was accepted"
    );
    app.stop().await;
}

// ASVS 10.4.5, 7.2.3: refresh tokens are random, stored hashed and replaced on every use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_token() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Rotation").await;
    let first = registered["refresh_token"].clone();

    let response = refresh(&app, &first).await;
    assert_eq!(response.status(), 200);
    let renewed: Value = response.json().await.unwrap();

    assert_ne!(renewed["refresh_token"], first);
    assert_eq!(renewed["user_id"], registered["user_id"]);
    assert_eq!(renewed["tenant_id"], registered["tenant_id"]);
    assert_eq!(
        status_with_token(&app, renewed["access_token"].as_str().unwrap()).await,
        200
    );
    let plaintext_rows: i64 = sqlx::query_scalar(
        "select count(*) from refresh_tokens where encode(token_hash, 'escape') like '%' || $1 || '%'",
    )
    .bind(first.as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(plaintext_rows, 0, "a refresh token is stored in plain text");
    let hashed_rows: i64 = sqlx::query_scalar(
        "select count(*) from refresh_tokens where token_hash = sha256($1::bytea)",
    )
    .bind(first.as_str().unwrap().as_bytes())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(hashed_rows, 1);
    app.stop().await;
}

// ASVS 10.4.5: presenting a rotated token again revokes every token of its family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_revokes_family() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Reuse").await;
    let first = registered["refresh_token"].clone();
    let second: Value = refresh(&app, &first).await.json().await.unwrap();
    let third: Value = refresh(&app, &second["refresh_token"])
        .await
        .json()
        .await
        .unwrap();

    // The first token's successor has itself been rotated, so this is reuse, grace or not.
    let replayed = refresh(&app, &first).await;
    assert_eq!(replayed.status(), 401);

    let current = refresh(&app, &third["refresh_token"]).await;
    assert_eq!(
        current.status(),
        401,
        "the family must be revoked after reuse"
    );
    let reason: Option<String> =
        sqlx::query_scalar("select revoked_reason from refresh_token_families")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("reuse"));
    let events: i64 = sqlx::query_scalar(
        "select count(*) from outbox where event_type = 'auth.refresh_token_reused'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1);
    app.stop().await;
}

// ASVS 10.4.5: outside the grace period even the immediately previous token counts as reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_token_after_grace_is_reuse() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Grace").await;
    let first = registered["refresh_token"].clone();
    let second: Value = refresh(&app, &first).await.json().await.unwrap();
    sqlx::query("update refresh_tokens set rotated_at = now() - interval '1 minute' where rotated_at is not null")
        .execute(&app.pool)
        .await
        .unwrap();

    let replayed = refresh(&app, &first).await;
    let current = refresh(&app, &second["refresh_token"]).await;

    assert_eq!(replayed.status(), 401);
    assert_eq!(
        current.status(),
        401,
        "the family must be revoked after reuse"
    );
    app.stop().await;
}

// ASVS 10.4.5: two tabs refreshing the same token at once both keep a working session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_within_grace() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Tabs").await;
    let first = registered["refresh_token"].clone();

    let (left, right) = tokio::join!(refresh(&app, &first), refresh(&app, &first));
    assert_eq!(left.status(), 200);
    assert_eq!(right.status(), 200);
    let left: Value = left.json().await.unwrap();
    let right: Value = right.json().await.unwrap();
    assert_ne!(left["refresh_token"], right["refresh_token"]);

    assert_eq!(refresh(&app, &left["refresh_token"]).await.status(), 200);
    assert_eq!(refresh(&app, &right["refresh_token"]).await.status(), 200);
    app.stop().await;
}

// ASVS 7.3.1, 10.4.8: idle and absolute lifetimes end a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_refresh_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let idle = register(&app, "Idle").await;
    let absolute = register(&app, "Absolute").await;
    let idle_hash = Sha256Hash::of(idle["refresh_token"].as_str().unwrap());
    sqlx::query(
        "update refresh_tokens set expires_at = now() - interval '1 second' where token_hash = $1",
    )
    .bind(&idle_hash.0)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("update refresh_token_families set expires_at = now() - interval '1 second' where user_id = $1")
        .bind(id(&absolute["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(
        refresh(&app, &idle["refresh_token"]).await.status(),
        401,
        "idle timeout ignored"
    );
    assert_eq!(
        refresh(&app, &absolute["refresh_token"]).await.status(),
        401,
        "absolute lifetime ignored"
    );
    app.stop().await;
}

// ASVS 7.4.1: logout ends the refresh-token family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_refresh_family() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Logout").await;
    let renewed: Value = refresh(&app, &registered["refresh_token"])
        .await
        .json()
        .await
        .unwrap();

    let logout = post(
        &app,
        "/api/v1/auth/logout",
        json!({ "refresh_token": renewed["refresh_token"] }),
    )
    .await;
    assert_eq!(logout.status(), 204);
    let unknown = post(
        &app,
        "/api/v1/auth/logout",
        json!({ "refresh_token": "tlr_unknown" }),
    )
    .await;
    assert_eq!(unknown.status(), 204);

    assert_eq!(refresh(&app, &renewed["refresh_token"]).await.status(), 401);
    app.stop().await;
}

// ASVS 7.2.4, 8.4.1: switching tenants issues new tokens for a tenant the user belongs to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_tenant_issues_scoped_tokens() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Home").await;
    let other = register(&app, "Elsewhere").await;
    let stranger = register(&app, "Stranger").await;
    sqlx::query("insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, 'viewer', 'guest')")
        .bind(id(&other["tenant_id"]))
        .bind(id(&person["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    let token = person["access_token"].as_str().unwrap();

    let switched = app
        .post_json(
            token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": other["tenant_id"] }),
        )
        .await;
    assert_eq!(switched.status(), 200);
    let switched: Value = switched.json().await.unwrap();
    assert_eq!(switched["tenant_id"], other["tenant_id"]);
    assert_eq!(switched["role"], "viewer");
    let projects: Value = app
        .get(
            switched["access_token"].as_str().unwrap(),
            "/api/v1/projects",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(projects["items"][0]["id"], other["project_id"]);
    let renewed: Value = refresh(&app, &switched["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renewed["tenant_id"], other["tenant_id"]);

    let rejected = app
        .post_json(
            token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": stranger["tenant_id"] }),
        )
        .await;
    assert_eq!(rejected.status(), 403);
    app.stop().await;
}

// ASVS 8.3.2: a refresh token stops working once its membership is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_after_membership_removal_fails() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Owner").await;
    let guest = register(&app, "GuestHome").await;
    sqlx::query("insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, 'member', 'guest')")
        .bind(id(&owner["tenant_id"]))
        .bind(id(&guest["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    let guest_token = guest["access_token"].as_str().unwrap();
    let switched: Value = app
        .post_json(
            guest_token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner["tenant_id"] }),
        )
        .await
        .json()
        .await
        .unwrap();

    sqlx::query("delete from memberships where tenant_id = $1 and user_id = $2")
        .bind(id(&owner["tenant_id"]))
        .bind(id(&guest["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(
        refresh(&app, &switched["refresh_token"]).await.status(),
        401
    );
    app.stop().await;
}

/// SHA-256 of a token, as the refresh-token table stores it.
struct Sha256Hash(Vec<u8>);

impl Sha256Hash {
    fn of(token: &str) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(token.as_bytes()).to_vec())
    }
}

// ASVS 7.4.1, 7.5.2: logging out everywhere ends every session and access token at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_revokes_every_session() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Everywhere").await;
    let other_device = login(&app, &registered["email"]).await;
    let first_token = registered["access_token"].as_str().unwrap();
    let second_token = other_device["access_token"].as_str().unwrap();
    assert_eq!(status_with_token(&app, second_token).await, 200);

    let response = app
        .post_json(first_token, "/api/v1/auth/logout-all", json!({}))
        .await;
    assert_eq!(response.status(), 204);

    wait_for_status(&app, first_token, 401).await;
    wait_for_status(&app, second_token, 401).await;
    assert_eq!(hub_negotiate_status(&app, second_token).await, 401);
    assert_eq!(
        refresh(&app, &registered["refresh_token"]).await.status(),
        401
    );
    assert_eq!(
        refresh(&app, &other_device["refresh_token"]).await.status(),
        401
    );
    let fresh = login(&app, &registered["email"]).await;
    assert_eq!(
        status_with_token(&app, fresh["access_token"].as_str().unwrap()).await,
        200
    );
    app.stop().await;
}

// ASVS 7.4.2: disabling an account ends its sessions at once, in the API and the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_account_loses_access() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Disabled").await;
    let token = registered["access_token"].as_str().unwrap();
    assert_eq!(
        status_with_token(&app, token).await,
        200,
        "warms the access cache"
    );
    assert_eq!(hub_negotiate_status(&app, token).await, 200);

    sqlx::query("update users set disabled_at = now() where id = $1")
        .bind(id(&registered["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();

    wait_for_status(&app, token, 401).await;
    assert_eq!(hub_negotiate_status(&app, token).await, 401);
    assert_eq!(
        refresh(&app, &registered["refresh_token"]).await.status(),
        401
    );
    let login = post(
        &app,
        "/api/v1/auth/login",
        json!({ "email": registered["email"], "password": PASSWORD }),
    )
    .await;
    assert_eq!(login.status(), 401);
    app.stop().await;
}

// ASVS 7.4.3: a password change rejects the access tokens issued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_revokes_tokens() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Password").await;
    let token = registered["access_token"].as_str().unwrap();
    assert_eq!(
        status_with_token(&app, token).await,
        200,
        "warms the access cache"
    );

    sqlx::query("update users set password_hash = password_hash || '' where id = $1")
        .bind(id(&registered["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    let unchanged: i64 = sqlx::query_scalar("select revocation_version from users where id = $1")
        .bind(id(&registered["user_id"]))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        unchanged, 0,
        "an update that keeps the hash must not revoke"
    );
    sqlx::query("update users set password_hash = 'replaced' where id = $1")
        .bind(id(&registered["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();

    wait_for_status(&app, token, 401).await;
    app.stop().await;
}

// ASVS 8.3.2: removing a member or lowering their role applies to the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_apply_at_once() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Team").await;
    let guest = register(&app, "GuestTeam").await;
    sqlx::query("insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, 'member', 'guest')")
        .bind(id(&owner["tenant_id"]))
        .bind(id(&guest["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    let switched: Value = app
        .post_json(
            guest["access_token"].as_str().unwrap(),
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner["tenant_id"] }),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = switched["access_token"].as_str().unwrap();
    let new_task = json!({ "project_id": owner["project_id"], "title": "Allowed" });
    assert_eq!(
        app.post_json(token, "/api/v1/tasks", new_task)
            .await
            .status(),
        201
    );

    sqlx::query("update memberships set role = 'viewer' where tenant_id = $1 and user_id = $2")
        .bind(id(&owner["tenant_id"]))
        .bind(id(&guest["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    let mut status = 0;
    for _ in 0..40 {
        let attempt = json!({ "project_id": owner["project_id"], "title": "Denied" });
        status = app
            .post_json(token, "/api/v1/tasks", attempt)
            .await
            .status()
            .as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 403, "the viewer role did not apply");

    sqlx::query("delete from memberships where tenant_id = $1 and user_id = $2")
        .bind(id(&owner["tenant_id"]))
        .bind(id(&guest["user_id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    wait_for_status(&app, token, 401).await;
    let home_token = guest["access_token"].as_str().unwrap();
    assert_eq!(
        status_with_token(&app, home_token).await,
        401,
        "removal bumps the user's version everywhere"
    );
    app.stop().await;
}

// ASVS 8.3.2: the access cache listens for changes and drops a changed user's entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_cache_follows_notifications() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Cache").await;
    let user_id = id(&registered["user_id"]);
    let cache = tasklane_store::access_cache::AccessCache::new(app.pool.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::spawn(cache.clone().listen(async move {
        let _ = stopped.await;
    }));
    for _ in 0..40 {
        if cache.is_listening() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        cache.is_listening(),
        "the listener did not connect within 2 s"
    );
    assert_eq!(
        cache
            .get(user_id)
            .await
            .unwrap()
            .unwrap()
            .revocation_version,
        0
    );

    sqlx::query("update users set revocation_version = 7 where id = $1")
        .bind(user_id)
        .execute(&app.pool)
        .await
        .unwrap();

    let mut version = 0;
    for _ in 0..40 {
        version = cache
            .get(user_id)
            .await
            .unwrap()
            .unwrap()
            .revocation_version;
        if version == 7 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(version, 7, "the cached entry was not invalidated");
    assert!(cache.get(Uuid::now_v7()).await.unwrap().is_none());
    stop.send(()).unwrap();
    listener.await.unwrap();
    assert!(!cache.is_listening());
    app.stop().await;
}

async fn attempt_login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}

// ASVS 6.3.1: parallel wrong passwords are counted exactly, and the account locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_lockout_counts_parallel_attempts() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Lockout").await;
    let email = registered["email"].as_str().unwrap().to_owned();

    let attempts = (0..20).map(|_| attempt_login(&app, &email, "wrong password"));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized, 5, "{statuses:?}");
    assert_eq!(limited, 15, "{statuses:?}");
    let correct = attempt_login(&app, &email, PASSWORD).await;
    assert_eq!(
        correct.status(),
        429,
        "a locked account must not log in even with the password"
    );
    let retry_after: u64 = correct.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let lockouts: i64 = sqlx::query_scalar(
        "select count(*) from outbox where event_type = 'auth.login_locked_out'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(lockouts, 1);
    let failures: i64 =
        sqlx::query_scalar("select count(*) from outbox where event_type = 'auth.login_failed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(failures, 5);
    app.stop().await;
}

// ASVS 6.3.8: unknown and existing accounts get the same responses, lockout included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_answers_like_known() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Enumeration").await;
    let known = registered["email"].as_str().unwrap().to_owned();
    let unknown = format!("{}@example.com", Uuid::new_v4().simple());

    let mut answers = Vec::new();
    for email in [&known, &unknown] {
        let mut sequence = Vec::new();
        for _ in 0..7 {
            let response = attempt_login(&app, email, "wrong password").await;
            let status = response.status().as_u16();
            let has_retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap();
            // The wait in seconds may tick between the two accounts' attempts, so the
            // message is compared with its digits removed.
            let detail: String = body["detail"]
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            sequence.push((status, has_retry_after, detail));
        }
        answers.push(sequence);
    }

    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][4].0, 401);
    assert_eq!(answers[0][5].0, 429);
    app.stop().await;
}

// ASVS 6.3.1: a successful login resets the account's counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_login_resets_counter() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Reset").await;
    let email = registered["email"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        assert_eq!(
            attempt_login(&app, &email, "wrong password").await.status(),
            401
        );
    }

    assert_eq!(attempt_login(&app, &email, PASSWORD).await.status(), 200);

    for attempt in 1..=5 {
        let status = attempt_login(&app, &email, "wrong password").await.status();
        assert_eq!(status, 401, "attempt {attempt} after the reset");
    }
    assert_eq!(attempt_login(&app, &email, PASSWORD).await.status(), 429);
    app.stop().await;
}

// ASVS 6.3.1: one address trying many accounts is limited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_limit_spans_accounts() {
    let app = TestApp::spawn().await;

    let mut statuses = Vec::new();
    for _ in 0..51 {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        statuses.push(
            attempt_login(&app, &email, "wrong password")
                .await
                .status()
                .as_u16(),
        );
    }

    assert!(statuses[..50].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[50], 429);
    app.stop().await;
}

async fn invite(app: &TestApp, inviter: &Value, email: &Value, role: &str) -> reqwest::Response {
    let token = inviter["access_token"].as_str().unwrap();
    app.post_json(
        token,
        "/api/v1/invitations",
        json!({ "email": email, "role": role }),
    )
    .await
}

async fn accept(app: &TestApp, person: &Value, invitation_token: &Value) -> reqwest::Response {
    let path = format!(
        "/api/v1/invitations/{}/accept",
        invitation_token.as_str().unwrap()
    );
    app.post_json(person["access_token"].as_str().unwrap(), &path, json!({}))
        .await
}

// ASVS 8.2.1, 8.4.1: an invited person joins the tenant with the granted role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_joins_tenant_with_role() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Inviting").await;
    let invitee = register(&app, "InviteeHome").await;

    let created = invite(&app, &owner, &invitee["email"], "viewer").await;
    assert_eq!(created.status(), 201);
    let invitation: Value = created.json().await.unwrap();
    let accepted = accept(&app, &invitee, &invitation["token"]).await;
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.unwrap();

    assert_eq!(accepted["tenant_id"], owner["tenant_id"]);
    assert_eq!(accepted["role"], "viewer");
    let invitee_token = invitee["access_token"].as_str().unwrap();
    let switched = app
        .post_json(
            invitee_token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner["tenant_id"] }),
        )
        .await;
    assert_eq!(switched.status(), 200);
    let switched: Value = switched.json().await.unwrap();
    let viewer_token = switched["access_token"].as_str().unwrap();
    assert_eq!(
        status_with_token(&app, viewer_token).await,
        200,
        "a viewer may read"
    );
    let write = app
        .post_json(
            viewer_token,
            "/api/v1/tasks",
            json!({ "project_id": owner["project_id"], "title": "No" }),
        )
        .await;
    assert_eq!(write.status(), 403, "a viewer may not write");
    let stored: i64 =
        sqlx::query_scalar("select count(*) from invitations where token_hash = sha256($1::bytea)")
            .bind(invitation["token"].as_str().unwrap().as_bytes())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 1, "the invitation must be stored by its hash");
    let events: Vec<String> = sqlx::query_scalar(
        "select event_type from outbox where event_type in ('member.invited', 'member.joined') order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, vec!["member.invited", "member.joined"]);
    app.stop().await;
}

// ASVS 8.2.1: only owners and admins invite, and no one grants a role above their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_follow_role_policy() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Policy").await;
    let admin = register(&app, "AdminHome").await;
    let member = register(&app, "MemberHome").await;
    let outsider_email = json!(format!("{}@example.com", Uuid::new_v4().simple()));
    let mut scoped = Vec::new();
    for (person, role) in [(&admin, "admin"), (&member, "member")] {
        let invitation: Value = invite(&app, &owner, &person["email"], role)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            accept(&app, person, &invitation["token"]).await.status(),
            200
        );
        let token = person["access_token"].as_str().unwrap();
        let switched: Value = app
            .post_json(
                token,
                "/api/v1/auth/switch-tenant",
                json!({ "tenant": owner["tenant_id"] }),
            )
            .await
            .json()
            .await
            .unwrap();
        scoped.push(switched);
    }
    let (admin_session, member_session) = (&scoped[0], &scoped[1]);

    assert_eq!(
        invite(&app, admin_session, &outsider_email, "member")
            .await
            .status(),
        201
    );
    assert_eq!(
        invite(&app, admin_session, &outsider_email, "admin")
            .await
            .status(),
        201
    );
    assert_eq!(
        invite(&app, admin_session, &outsider_email, "owner")
            .await
            .status(),
        403
    );
    assert_eq!(
        invite(&app, member_session, &outsider_email, "viewer")
            .await
            .status(),
        403
    );
    assert_eq!(
        invite(&app, &owner, &outsider_email, "owner")
            .await
            .status(),
        201
    );
    assert_eq!(
        invite(&app, &owner, &outsider_email, "superuser")
            .await
            .status(),
        422
    );
    app.stop().await;
}

// ASVS 6.4.1, 8.2.2: an invitation works once, only for its addressee, and expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_is_single_use_and_addressed() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "SingleUse").await;
    let invitee = register(&app, "InviteeTwo").await;
    let intruder = register(&app, "Intruder").await;
    let late = register(&app, "Late").await;
    let invitation: Value = invite(&app, &owner, &invitee["email"], "member")
        .await
        .json()
        .await
        .unwrap();
    let expiring: Value = invite(&app, &owner, &late["email"], "member")
        .await
        .json()
        .await
        .unwrap();
    sqlx::query("update invitations set expires_at = now() - interval '1 second' where id = $1")
        .bind(id(&expiring["id"]))
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(
        accept(&app, &intruder, &invitation["token"]).await.status(),
        404,
        "accepted by someone else"
    );
    assert_eq!(
        accept(&app, &invitee, &invitation["token"]).await.status(),
        200
    );
    assert_eq!(
        accept(&app, &invitee, &invitation["token"]).await.status(),
        404,
        "accepted twice"
    );
    assert_eq!(
        accept(&app, &late, &expiring["token"]).await.status(),
        404,
        "accepted after expiry"
    );
    let unknown = json!("tli_unknown");
    assert_eq!(accept(&app, &invitee, &unknown).await.status(), 404);
    app.stop().await;
}

// ASVS 6.2.2, 6.2.3, 7.4.3: a password change needs the current password and ends the
// other sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Change").await;
    let other_device = login(&app, &registered["email"]).await;
    let token = registered["access_token"].as_str().unwrap();
    let new_password = "a brand new passphrase";

    let wrong = json!({ "current_password": "not it", "new_password": new_password });
    assert_eq!(
        app.post_json(token, "/api/v1/auth/password", wrong)
            .await
            .status(),
        403
    );
    let short = json!({ "current_password": PASSWORD, "new_password": "short" });
    assert_eq!(
        app.post_json(token, "/api/v1/auth/password", short)
            .await
            .status(),
        422
    );
    let change = json!({ "current_password": PASSWORD, "new_password": new_password });
    let changed = app.post_json(token, "/api/v1/auth/password", change).await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();

    assert_eq!(
        status_with_token(&app, changed["access_token"].as_str().unwrap()).await,
        200
    );
    wait_for_status(&app, token, 401).await;
    wait_for_status(&app, other_device["access_token"].as_str().unwrap(), 401).await;
    assert_eq!(
        refresh(&app, &other_device["refresh_token"]).await.status(),
        401
    );
    assert_eq!(refresh(&app, &changed["refresh_token"]).await.status(), 200);
    let email = registered["email"].as_str().unwrap();
    assert_eq!(attempt_login(&app, email, PASSWORD).await.status(), 401);
    assert_eq!(attempt_login(&app, email, new_password).await.status(), 200);
    app.stop().await;
}

async fn create_api_token(app: &TestApp, session_token: &str, scope: &str) -> reqwest::Response {
    let body = json!({ "name": format!("{scope} script"), "scope": scope, "expires_in_days": 30 });
    app.post_json(session_token, "/api/v1/api-tokens", body)
        .await
}

// ASVS 8.2.1, 10.3.2: a personal API token can do only what its scope and its owner's role
// allow, and stops working once revoked or expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_scope_limits_access() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Scripts").await;
    let session = owner["access_token"].as_str().unwrap();
    let read: Value = create_api_token(&app, session, "read")
        .await
        .json()
        .await
        .unwrap();
    let write: Value = create_api_token(&app, session, "write")
        .await
        .json()
        .await
        .unwrap();
    let read_token = read["token"].as_str().unwrap();
    let write_token = write["token"].as_str().unwrap();
    let new_task = json!({ "project_id": owner["project_id"], "title": "From a script" });

    assert_eq!(status_with_token(&app, read_token).await, 200);
    assert_eq!(
        app.post_json(read_token, "/api/v1/tasks", new_task.clone())
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_json(write_token, "/api/v1/tasks", new_task.clone())
            .await
            .status(),
        201
    );
    let invitation = json!({ "email": "someone@example.com", "role": "member" });
    assert_eq!(
        app.post_json(write_token, "/api/v1/invitations", invitation)
            .await
            .status(),
        403
    );
    assert_eq!(
        create_api_token(&app, write_token, "read").await.status(),
        403,
        "a token minted a token"
    );

    let listed: Value = app
        .get(session, "/api/v1/api-tokens")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(
        listed["items"][0].get("token").is_none(),
        "a listing must not show tokens"
    );
    let stored: i64 =
        sqlx::query_scalar("select count(*) from api_tokens where token_hash = sha256($1::bytea)")
            .bind(read_token.as_bytes())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);

    let revoked = app
        .client
        .delete(app.url(&format!(
            "/api/v1/api-tokens/{}",
            read["id"].as_str().unwrap()
        )))
        .bearer_auth(session)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        status_with_token(&app, read_token).await,
        401,
        "a revoked token still works"
    );
    sqlx::query("update api_tokens set expires_at = now() - interval '1 second' where id = $1")
        .bind(id(&write["id"]))
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        status_with_token(&app, write_token).await,
        401,
        "an expired token still works"
    );
    app.stop().await;
}

// ASVS 8.2.1: a token cannot be given a scope beyond its owner's role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_scope_within_role() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Scoped").await;
    let viewer = register(&app, "ViewerHome").await;
    let invitation: Value = invite(&app, &owner, &viewer["email"], "viewer")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        accept(&app, &viewer, &invitation["token"]).await.status(),
        200
    );
    let switched: Value = app
        .post_json(
            viewer["access_token"].as_str().unwrap(),
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner["tenant_id"] }),
        )
        .await
        .json()
        .await
        .unwrap();
    let session = switched["access_token"].as_str().unwrap();

    assert_eq!(create_api_token(&app, session, "read").await.status(), 201);
    assert_eq!(create_api_token(&app, session, "write").await.status(), 403);
    assert_eq!(create_api_token(&app, session, "admin").await.status(), 403);
    assert_eq!(create_api_token(&app, session, "root").await.status(), 422);
    app.stop().await;
}

async fn change_role(
    app: &TestApp,
    session: &Value,
    user: &Value,
    role: &str,
) -> reqwest::Response {
    let token = session["access_token"].as_str().unwrap();
    let path = format!("/api/v1/members/{}", user["user_id"].as_str().unwrap());
    app.client
        .patch(app.url(&path))
        .bearer_auth(token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap()
}

/// Invites `person` into `owner`'s tenant with `role` and returns their session there.
async fn join_as(app: &TestApp, owner: &Value, person: &Value, role: &str) -> Value {
    let invitation: Value = invite(app, owner, &person["email"], role)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        accept(app, person, &invitation["token"]).await.status(),
        200
    );
    let token = person["access_token"].as_str().unwrap();
    let switched = app
        .post_json(
            token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner["tenant_id"] }),
        )
        .await;
    switched.json().await.unwrap()
}

// ASVS 8.2.1, 8.3.2: role changes follow the policy, keep an owner, apply at once and are
// written to the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_follow_policy() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "Roles").await;
    let admin = join_as(&app, &owner, &register(&app, "AdminRoles").await, "admin").await;
    let member = join_as(&app, &owner, &register(&app, "MemberRoles").await, "member").await;
    let member_token = member["access_token"].as_str().unwrap();
    let new_task = json!({ "project_id": owner["project_id"], "title": "Before the change" });
    assert_eq!(
        app.post_json(member_token, "/api/v1/tasks", new_task.clone())
            .await
            .status(),
        201
    );

    assert_eq!(
        change_role(&app, &member, &admin, "viewer").await.status(),
        403,
        "a member changed a role"
    );
    assert_eq!(
        change_role(&app, &admin, &member, "owner").await.status(),
        403,
        "an admin granted owner"
    );
    assert_eq!(
        change_role(&app, &admin, &owner, "member").await.status(),
        403,
        "an admin demoted an owner"
    );
    assert_eq!(
        change_role(&app, &owner, &owner, "admin").await.status(),
        409,
        "the last owner was demoted"
    );
    assert_eq!(
        change_role(&app, &admin, &member, "superuser")
            .await
            .status(),
        422
    );
    let stranger = json!({ "user_id": Uuid::now_v7() });
    assert_eq!(
        change_role(&app, &owner, &stranger, "viewer")
            .await
            .status(),
        404
    );
    let changed = change_role(&app, &admin, &member, "viewer").await;
    assert_eq!(changed.status(), 200);

    let mut status = 0;
    for _ in 0..40 {
        status = app
            .post_json(member_token, "/api/v1/tasks", new_task.clone())
            .await
            .status()
            .as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 403, "the viewer role did not apply");
    let roles: Vec<String> =
        sqlx::query_scalar("select role from memberships where tenant_id = $1 and role = 'owner'")
            .bind(id(&owner["tenant_id"]))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(roles.len(), 1);
    let events: i64 =
        sqlx::query_scalar("select count(*) from outbox where event_type = 'member.role_changed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 1);
    app.stop().await;
}

/// V11.4.2: a password hash made with weaker argon2 parameters is replaced at the next
/// successful login with one made with the current parameters (argon2id, 19 MiB, 2
/// iterations, 1 lane), without ending the user's sessions.
#[tokio::test]
async fn login_upgrades_weaker_password_hash() {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{PasswordHasher, SaltString};

    let app = TestApp::spawn().await;
    let registered = register(&app, "Rehash").await;
    let user = id(&registered["user_id"]);
    let weak_params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap();
    let weak_hash = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        weak_params,
    )
    .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
    .unwrap()
    .to_string();
    sqlx::query("update users set password_hash = $2 where id = $1")
        .bind(user)
        .bind(&weak_hash)
        .execute(&app.pool)
        .await
        .unwrap();
    let version_before: i64 =
        sqlx::query_scalar("select revocation_version from users where id = $1")
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .unwrap();

    login(&app, &registered["email"]).await;

    let (stored, version_after): (String, i64) =
        sqlx::query_as("select password_hash, revocation_version from users where id = $1")
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(version_after, version_before, "the rehash ended sessions");
    login(&app, &registered["email"]).await;
    app.stop().await;
}
