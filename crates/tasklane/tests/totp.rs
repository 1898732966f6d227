//! The optional TOTP second factor against the running application: enrolment, login with
//! and without a code, single use of each code, and turning it off.
//!
//! Each test names the OWASP ASVS 5.0 requirement it covers; docs/asvs-coverage.md lists
//! them all.

mod common;

use common::{Account, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use tasklane_auth::totp::{generate_code, parse_secret_base32};

const STEP_SECONDS: u64 = 30;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Starts an enrolment and returns the secret the response carried.
async fn enrol(app: &TestApp, account: &Account) -> Vec<u8> {
    let response = app
        .post_json(&account.token, "/api/v1/auth/totp", json!({}))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Tasklane:"), "{uri}");
    parse_secret_base32(body["secret"].as_str().unwrap()).expect("a base32 secret")
}

async fn login(app: &TestApp, email: &str, code: Option<&str>) -> reqwest::Response {
    let mut body = json!({ "email": email, "password": TEST_PASSWORD });
    if let Some(code) = code {
        body["totp_code"] = json!(code);
    }
    app.client
        .post(app.url("/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Enrols and confirms with the current step's code; returns the secret and that step.
async fn enable(app: &TestApp, account: &Account) -> (Vec<u8>, u64) {
    let secret = enrol(app, account).await;
    let now = unix_now();
    let code = generate_code(&secret, now).unwrap();
    let response = app
        .post_json(
            &account.token,
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    (secret, now / STEP_SECONDS)
}

/// V6.3.3: with a second factor enabled, the password alone no longer logs in.
#[tokio::test]
async fn totp_login_requires_the_code() {
    let app = TestApp::spawn().await;
    let account = app.register("Second factor").await;
    let email = app.email_of(account.user_id).await;
    let (secret, confirmed_step) = enable(&app, &account).await;

    let without_code = login(&app, &email, None).await;
    assert_eq!(without_code.status(), 401);
    let problem: Value = without_code.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("one-time code"),
        "{problem}"
    );

    let wrong_code = if generate_code(&secret, unix_now()).unwrap() == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(login(&app, &email, Some(wrong_code)).await.status(), 401);

    // The confirmation used the current step, so the next step's code (accepted within one
    // step of clock skew) is the only fresh one.
    let next_code = generate_code(&secret, (confirmed_step + 1) * STEP_SECONDS).unwrap();
    let response = login(&app, &email, Some(&next_code)).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    app.stop().await;
}

/// V6.5.1: a TOTP code is accepted only once, for the confirmation and for logins alike.
#[tokio::test]
async fn totp_code_is_usable_once() {
    let app = TestApp::spawn().await;
    let account = app.register("Single use").await;
    let email = app.email_of(account.user_id).await;
    let (secret, confirmed_step) = enable(&app, &account).await;

    let confirmed_code = generate_code(&secret, confirmed_step * STEP_SECONDS).unwrap();
    assert_eq!(
        login(&app, &email, Some(&confirmed_code)).await.status(),
        401,
        "the confirmation's code was accepted again"
    );

    let next_code = generate_code(&secret, (confirmed_step + 1) * STEP_SECONDS).unwrap();
    assert_eq!(login(&app, &email, Some(&next_code)).await.status(), 200);
    assert_eq!(
        login(&app, &email, Some(&next_code)).await.status(),
        401,
        "a login code was accepted twice"
    );
    app.stop().await;
}

/// V6.5.6: the owner can turn the factor off with a fresh code, and then the password alone
/// logs in again. A stale code does not turn it off.
#[tokio::test]
async fn totp_can_be_disabled_with_a_fresh_code() {
    let app = TestApp::spawn().await;
    let account = app.register("Disable").await;
    let email = app.email_of(account.user_id).await;
    let (secret, confirmed_step) = enable(&app, &account).await;

    let stale_code = generate_code(&secret, confirmed_step * STEP_SECONDS).unwrap();
    let response = app
        .post_json(
            &account.token,
            "/api/v1/auth/totp/disable",
            json!({ "code": stale_code }),
        )
        .await;
    assert_eq!(response.status(), 422);

    let fresh_code = generate_code(&secret, (confirmed_step + 1) * STEP_SECONDS).unwrap();
    let response = app
        .post_json(
            &account.token,
            "/api/v1/auth/totp/disable",
            json!({ "code": fresh_code }),
        )
        .await;
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    assert_eq!(login(&app, &email, None).await.status(), 200);
    app.stop().await;
}

/// V6.5.3: each enrolment gets a new random secret, and an enabled factor cannot be
/// replaced by enrolling again.
#[tokio::test]
async fn totp_enrolment_rules() {
    let app = TestApp::spawn().await;
    let account = app.register("Enrolment").await;

    let first = enrol(&app, &account).await;
    let second = enrol(&app, &account).await;
    assert_eq!(first.len(), 20);
    assert_ne!(first, second, "a new enrolment reused the secret");

    let wrong = app
        .post_json(
            &account.token,
            "/api/v1/auth/totp/confirm",
            json!({ "code": "12345" }),
        )
        .await;
    assert_eq!(wrong.status(), 422);

    let code = generate_code(&second, unix_now()).unwrap();
    let response = app
        .post_json(
            &account.token,
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(response.status(), 204);
    let again = app
        .post_json(&account.token, "/api/v1/auth/totp", json!({}))
        .await;
    assert_eq!(again.status(), 409);
    app.stop().await;
}

/// V6.3.4: the browser session login enforces the second factor like the token login.
#[tokio::test]
async fn cookie_login_requires_the_code() {
    let app = TestApp::spawn().await;
    let account = app.register("Cookie factor").await;
    let email = app.email_of(account.user_id).await;
    let (secret, confirmed_step) = enable(&app, &account).await;

    let cookie_login = |code: Option<String>| {
        let mut body = json!({ "email": email, "password": TEST_PASSWORD });
        if let Some(code) = code {
            body["totp_code"] = json!(code);
        }
        app.client
            .post(app.url("/api/v1/auth/session"))
            .header(reqwest::header::ORIGIN, "http://localhost:8080")
            .json(&body)
            .send()
    };
    let without_code = cookie_login(None).await.unwrap();
    assert_eq!(without_code.status(), 401);
    assert!(without_code.headers().get("set-cookie").is_none());

    let next_code = generate_code(&secret, (confirmed_step + 1) * STEP_SECONDS).unwrap();
    let with_code = cookie_login(Some(next_code)).await.unwrap();
    assert_eq!(with_code.status(), 200);
    assert!(with_code.headers().get("set-cookie").is_some());
    app.stop().await;
}
