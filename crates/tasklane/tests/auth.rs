//! Authentication against the running application: access-token signing and validation.
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

/// The application's current signing key, read from the development key table.
async fn signing_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, pem): (String, String) =
        sqlx::query_as("select kid, private_key_pem from signing_keys order by created_at desc limit 1")
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
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
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

    let response = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();

    let kid = jwt_header(&account.token)["kid"].clone();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("signing key listed");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "the private key must not be published: {key}");
    app.stop().await;
}

// ASVS 9.1.3: every process of a deployment without a configured key shares the stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_signing_key_is_shared() {
    let app = TestApp::spawn().await;
    let settings = tasklane_config::Settings::with_overrides(json!({})).unwrap();

    let first = tasklane::token_keys::load(&settings.auth, &app.pool).await.unwrap();
    let second = tasklane::token_keys::load(&settings.auth, &app.pool).await.unwrap();
    let (stored_kid, _) = signing_key(&app).await;

    assert_eq!(first.signing_kid(), stored_kid);
    assert_eq!(second.signing_kid(), stored_kid);
    let count: i64 = sqlx::query_scalar("select count(*) from signing_keys").fetch_one(&app.pool).await.unwrap();
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
    assert_eq!(status_with_token(&app, &sign(&claims)).await, 200, "the baseline token must pass");

    let with = |name: &str, value: Value| {
        let mut changed = claims.clone();
        changed[name] = value;
        changed
    };
    let mut without_exp = claims.clone();
    without_exp.as_object_mut().unwrap().remove("exp");
    let cases = [
        ("expired", sign(&with("exp", json!(now - 60)))),
        ("string exp", sign(&with("exp", json!((now + 300).to_string())))),
        ("missing exp", sign(&without_exp)),
        ("not yet valid", sign(&with("nbf", json!(now + 120)))),
        ("other audience", sign(&with("aud", json!("another-service")))),
        ("other issuer", sign(&with("iss", json!("someone-else")))),
    ];
    for (case, token) in &cases {
        assert_eq!(status_with_token(&app, token).await, 401, "{case} token was accepted");
    }

    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let unsigned_header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": kid }).to_string());
    let unsigned = format!("{unsigned_header}.{payload}.");
    assert_eq!(status_with_token(&app, &unsigned).await, 401, "alg none was accepted");

    // HMAC keyed with the published public key: the classic algorithm-confusion forgery.
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let public_x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some(kid.clone());
    let confused = encode(&hmac_header, &claims, &EncodingKey::from_secret(&public_x)).unwrap();
    assert_eq!(status_with_token(&app, &confused).await, 401, "HS256 keyed with the public key was accepted");

    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.kid = Some("not-a-key".into());
    let unknown = encode(&unknown_kid, &claims, &key).unwrap();
    assert_eq!(status_with_token(&app, &unknown).await, 401, "an unknown kid was accepted");
    app.stop().await;
}
