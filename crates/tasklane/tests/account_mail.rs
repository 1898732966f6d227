//! Registration, e-mail verification, password reset and the password policy, end to end:
//! the API queues mail through the outbox, the relay routes it over RabbitMQ, and the email
//! worker sends it to the SMTP capture server of `tests/js/smtp-capture.mjs`.
//!
//! Each test names the OWASP ASVS 5.0 requirements it checks; `docs/asvs-coverage.md`
//! lists them.

mod common;

use common::{TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use uuid::Uuid;

const VERIFY_SUBJECT: &str = "Verify your e-mail address";
const TAKEN_SUBJECT: &str = "Someone tried to register";
const RESET_SUBJECT: &str = "Reset your Tasklane password";
const CHANGED_SUBJECT: &str = "Your Tasklane password was changed";

fn new_email() -> String {
    format!("{}@example.com", Uuid::new_v4().simple())
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn register(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let body =
        json!({ "email": email, "password": password, "name": "Mail Tester", "tenant": "Mail" });
    post(app, "/api/v1/auth/register", body).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn login_body(app: &TestApp, email: &str, password: &str) -> Value {
    let response = login(app, email, password).await;
    assert_eq!(response.status(), 200, "login of {email} failed");
    response.json().await.unwrap()
}

/// Reads the token with `prefix` (such as `tlv_`) out of a captured mail's text.
fn token_in(mail: &Value, prefix: &str) -> String {
    let text = mail["text"].as_str().expect("the mail has a text body");
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} token in the mail: {text}"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

async fn verify_email(app: &TestApp, token: &str) -> reqwest::Response {
    post(app, "/api/v1/auth/verify-email", json!({ "token": token })).await
}

async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/password-reset",
        json!({ "email": email }),
    )
    .await
}

async fn confirm_reset(app: &TestApp, token: &str, new_password: &str) -> reqwest::Response {
    let body = json!({ "token": token, "new_password": new_password });
    post(app, "/api/v1/auth/password-reset/confirm", body).await
}

/// Returns the status and the problem+json body of an error response.
async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    (status, response.json().await.unwrap())
}

async fn is_verified(app: &TestApp, email: &str) -> bool {
    sqlx::query_scalar(
        "select email_verified_at is not null from users where lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// ASVS 6.3.8: registration returns the same status and body for a new and a taken
/// address, and a taken address changes nothing but gets a warning mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_alike_for_taken_email() {
    let app = TestApp::spawn().await;
    let email = new_email();

    let first = register(&app, &email, TEST_PASSWORD).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = register(&app, &email.to_uppercase(), "another fine passphrase").await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert!(first.get("access_token").is_none());

    let verification = app.wait_for_mail(&email, VERIFY_SUBJECT).await;
    assert!(token_in(&verification, "tlv_").len() > 40);
    let warning = app.wait_for_mail(&email, TAKEN_SUBJECT).await;
    assert!(!warning["text"].as_str().unwrap().contains("tlv_"));

    let users: i64 =
        sqlx::query_scalar("select count(*) from users where lower(email) = lower($1)")
            .bind(&email)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(users, 1);
    assert_eq!(login(&app, &email, TEST_PASSWORD).await.status(), 200);
    assert_eq!(
        login(&app, &email, "another fine passphrase")
            .await
            .status(),
        401
    );
    app.stop().await;
}

/// ASVS 6.4.1: the verification token from the mail verifies the address once;
/// reuse, an unknown token and an expired token are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_token_works_once() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    assert!(!is_verified(&app, &email).await);
    let token = token_in(&app.wait_for_mail(&email, VERIFY_SUBJECT).await, "tlv_");

    assert_eq!(verify_email(&app, &token).await.status(), 204);
    assert!(is_verified(&app, &email).await);
    let (status, body) = problem(verify_email(&app, &token).await).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("already used"));
    let (status, _) = problem(verify_email(&app, "tlv_unknown").await).await;
    assert_eq!(status, 400);

    let other = new_email();
    assert_eq!(register(&app, &other, TEST_PASSWORD).await.status(), 202);
    let expired = token_in(&app.wait_for_mail(&other, VERIFY_SUBJECT).await, "tlv_");
    sqlx::query("update account_tokens set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, _) = problem(verify_email(&app, &expired).await).await;
    assert_eq!(status, 400);
    assert!(!is_verified(&app, &other).await);
    app.stop().await;
}

/// ASVS 8.2.1: an unverified account can log in but cannot invite others or accept an
/// invitation until it verifies its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_account_cannot_invite() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    let session = login_body(&app, &email, TEST_PASSWORD).await;
    let token = session["access_token"].as_str().unwrap();

    let invitation = json!({ "email": new_email(), "role": "member" });
    let response = app
        .post_json(token, "/api/v1/invitations", invitation.clone())
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, 403);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("must be verified"), "{detail}");

    let owner = app.register("Inviting").await;
    let invited = app
        .post_json(
            &owner.token,
            "/api/v1/invitations",
            json!({ "email": email, "role": "member" }),
        )
        .await;
    assert_eq!(invited.status(), 201);
    let invited: Value = invited.json().await.unwrap();
    let accept_path = format!(
        "/api/v1/invitations/{}/accept",
        invited["token"].as_str().unwrap()
    );
    let (status, _) = problem(app.post_json(token, &accept_path, json!({})).await).await;
    assert_eq!(status, 403);

    let verification = token_in(&app.wait_for_mail(&email, VERIFY_SUBJECT).await, "tlv_");
    assert_eq!(verify_email(&app, &verification).await.status(), 204);
    let response = app
        .post_json(token, "/api/v1/invitations", invitation)
        .await;
    assert_eq!(response.status(), 201);
    let response = app.post_json(token, &accept_path, json!({})).await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}

/// ASVS 6.4.3, 7.4.3, 6.3.6: a reset through the mailed link sets the new password, the old
/// one stops working, every refresh and access token dies, the link works once, and a
/// mail notifies the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_through_mail() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    let session = login_body(&app, &email, TEST_PASSWORD).await;
    let access_token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&access_token, "/api/v1/projects").await.status(),
        200
    );

    let response = request_reset(&app, &email).await;
    assert_eq!(response.status(), 202);
    let token = token_in(&app.wait_for_mail(&email, RESET_SUBJECT).await, "tlw_");

    let new_password = "a brand new passphrase for mail";
    assert_eq!(
        confirm_reset(&app, &token, new_password).await.status(),
        204
    );
    assert_eq!(login(&app, &email, TEST_PASSWORD).await.status(), 401);
    assert_eq!(login(&app, &email, new_password).await.status(), 200);
    let refreshed = post(
        &app,
        "/api/v1/auth/refresh",
        json!({ "refresh_token": session["refresh_token"] }),
    )
    .await;
    assert_eq!(refreshed.status(), 401);
    let mut status = 0;
    for _ in 0..40 {
        status = app
            .get(&access_token, "/api/v1/projects")
            .await
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401, "the old access token still works");

    let (status, _) =
        problem(confirm_reset(&app, &token, "yet another passphrase here").await).await;
    assert_eq!(status, 400);
    assert_eq!(login(&app, &email, new_password).await.status(), 200);
    // The reset link arrived at the address, which proves the person receives mail there.
    assert!(is_verified(&app, &email).await);
    app.wait_for_mail(&email, CHANGED_SUBJECT).await;
    app.stop().await;
}

/// ASVS 6.3.8: a reset request returns the same status and body for an unknown address,
/// which gets no mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_answers_alike_for_unknown() {
    let app = TestApp::spawn().await;
    let account = new_email();
    assert_eq!(register(&app, &account, TEST_PASSWORD).await.status(), 202);
    let unknown = new_email();

    let known = request_reset(&app, &account).await;
    assert_eq!(known.status(), 202);
    let known: Value = known.json().await.unwrap();
    let missing = request_reset(&app, &unknown).await;
    assert_eq!(missing.status(), 202);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(known, missing);

    app.wait_for_mail(&account, RESET_SUBJECT).await;
    // The known address's mail arrived, and both requests were handled alike before it.
    let requested: i64 = sqlx::query_scalar(
        "select count(*) from outbox where event_type = 'auth.password_reset_requested'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(requested, 1);
    assert!(app.mails_to(&unknown).is_empty());
    app.stop().await;
}

/// ASVS 6.3.1: reset requests are limited per address like logins, and an expired or
/// wrong-purpose token does not reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_is_rate_limited() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    let verification = token_in(&app.wait_for_mail(&email, VERIFY_SUBJECT).await, "tlv_");
    let (status, _) =
        problem(confirm_reset(&app, &verification, "a fine new passphrase").await).await;
    assert_eq!(
        status, 400,
        "a verification token must not reset the password"
    );

    for attempt in 1..=5 {
        let response = request_reset(&app, &email).await;
        assert_eq!(response.status(), 202, "request {attempt}");
    }
    let limited = request_reset(&app, &email).await;
    assert!(limited.headers().contains_key("retry-after"));
    let (status, _) = problem(limited).await;
    assert_eq!(status, 429);

    let token = token_in(&app.wait_for_mail(&email, RESET_SUBJECT).await, "tlw_");
    sqlx::query("update account_tokens set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, _) = problem(confirm_reset(&app, &token, "a fine new passphrase").await).await;
    assert_eq!(status, 400);
    assert_eq!(login(&app, &email, TEST_PASSWORD).await.status(), 200);
    app.stop().await;
}

/// ASVS 6.2.4, 6.2.11: common passwords and passwords built on the person's own details
/// are rejected with 422 naming the rule, at registration, password change and reset. A
/// rejected reset leaves the link working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_passwords_are_rejected() {
    let app = TestApp::spawn().await;
    for common in [
        "password",
        "123456789",
        "qwertyuiop",
        "Password1!",
        "tasklane123",
    ] {
        let (status, body) = problem(register(&app, &new_email(), common).await).await;
        assert_eq!(status, 422, "{common:?} was accepted");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("too common or too easy to guess"),
            "{detail}"
        );
    }
    let email = new_email();
    let local_part = email.split('@').next().unwrap().to_owned();
    let (status, _) = problem(register(&app, &email, &local_part).await).await;
    assert_eq!(status, 422, "the address's local part was accepted");

    let account = app.register("Policy").await;
    let change = json!({ "current_password": TEST_PASSWORD, "new_password": "iloveyou1" });
    let (status, _) = problem(
        app.post_json(&account.token, "/api/v1/auth/password", change)
            .await,
    )
    .await;
    assert_eq!(status, 422);

    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    assert_eq!(request_reset(&app, &email).await.status(), 202);
    let token = token_in(&app.wait_for_mail(&email, RESET_SUBJECT).await, "tlw_");
    let (status, _) = problem(confirm_reset(&app, &token, "letmein").await).await;
    assert_eq!(status, 422);
    let (status, _) = problem(confirm_reset(&app, &token, "monkey123").await).await;
    assert_eq!(status, 422);
    assert_eq!(
        confirm_reset(&app, &token, "plum vortex quill harbor")
            .await
            .status(),
        204
    );
    app.stop().await;
}

/// ASVS 6.2.8, 6.2.9: a 64-character password and one of 1024 bytes work, compared whole
/// and without truncation, and longer ones are rejected with 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_passwords_are_kept_whole() {
    let app = TestApp::spawn().await;
    let sixty_four = "Plum vortex quill harbor, seven lanterns drift over the Minch!!!";
    assert_eq!(sixty_four.chars().count(), 64);
    let email = new_email();
    assert_eq!(register(&app, &email, sixty_four).await.status(), 202);
    assert_eq!(login(&app, &email, sixty_four).await.status(), 200);
    assert_eq!(login(&app, &email, &sixty_four[..63]).await.status(), 401);
    assert_eq!(
        login(&app, &email, &sixty_four.to_uppercase())
            .await
            .status(),
        401
    );

    let longest = format!("{sixty_four}{}", "k".repeat(1024 - 64));
    let email = new_email();
    assert_eq!(register(&app, &email, &longest).await.status(), 202);
    assert_eq!(login(&app, &email, &longest).await.status(), 200);
    let changed_tail = format!("{}j", &longest[..1023]);
    assert_eq!(login(&app, &email, &changed_tail).await.status(), 401);

    let too_long = format!("{longest}k");
    let (status, body) = problem(register(&app, &new_email(), &too_long).await).await;
    assert_eq!(status, 422);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("at most 1024 bytes"));
    app.stop().await;
}

/// Outbox events, which also reach Kafka and analytics, carry no mail token, and a
/// redelivered `mail.queued` event does not send its mail twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_tokens_stay_out_of_events() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    let token = token_in(&app.wait_for_mail(&email, VERIFY_SUBJECT).await, "tlv_");
    assert_eq!(request_reset(&app, &email).await.status(), 202);
    let reset_token = token_in(&app.wait_for_mail(&email, RESET_SUBJECT).await, "tlw_");

    let envelopes: Vec<Value> = sqlx::query_scalar("select envelope from outbox")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(envelopes.iter().any(|e| e["type"] == "mail.queued"));
    for envelope in &envelopes {
        let text = envelope.to_string();
        assert!(!text.contains(&token), "verification token in {text}");
        assert!(!text.contains(&reset_token), "reset token in {text}");
    }
    let kept_bodies: i64 = sqlx::query_scalar(
        "select count(*) from outgoing_mail where sent_at is not null and body is not null",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept_bodies, 0, "sent mail keeps its body");

    // Publish the verification mail's event again, as a redelivery would, then queue one
    // more mail: the worker takes messages in order, so once that mail arrives the
    // duplicate has been handled.
    let verification_event: Value = sqlx::query_scalar(
        "select envelope from outbox where event_type = 'mail.queued' order by id limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // The same queue settings as the test application, or declaring the queues fails.
    let topology = tasklane_bus::Topology::new(tasklane_config::NamespaceSettings {
        prefix: app.prefix.clone(),
    })
    .with_rabbit_queues("classic", Some(std::time::Duration::from_secs(120)));
    let rabbit_url = std::env::var("TASKLANE_RABBITMQ__URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connection = tasklane_bus::rabbit::connect(&rabbit_url).await.unwrap();
    let publisher = tasklane_bus::rabbit::RabbitPublisher::new(&connection, &topology)
        .await
        .unwrap();
    let payload = serde_json::to_vec(&verification_event).unwrap();
    let message_id = verification_event["event_id"].as_str().unwrap();
    publisher
        .publish("mail.queued", message_id, &payload)
        .await
        .unwrap();

    let other = app.register("After").await;
    let other_email: String = sqlx::query_scalar("select email from users where id = $1")
        .bind(other.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    app.wait_for_mail(&other_email, VERIFY_SUBJECT).await;
    let verification_mails = app
        .mails_to(&email)
        .into_iter()
        .filter(|mail| mail["subject"].as_str().unwrap().contains(VERIFY_SUBJECT))
        .count();
    assert_eq!(verification_mails, 1);
    app.stop().await;
}

/// ASVS 6.4.1: a resent verification mail replaces the earlier link, and a verified
/// address cannot ask for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_verification_replaces_link() {
    let app = TestApp::spawn().await;
    let email = new_email();
    assert_eq!(register(&app, &email, TEST_PASSWORD).await.status(), 202);
    let first = token_in(&app.wait_for_mail(&email, VERIFY_SUBJECT).await, "tlv_");
    let session = login_body(&app, &email, TEST_PASSWORD).await;
    let access_token = session["access_token"].as_str().unwrap();

    let resend = "/api/v1/auth/verify-email/resend";
    let response = app.post_json(access_token, resend, json!({})).await;
    assert_eq!(response.status(), 202);
    let mut second = None;
    for _ in 0..200 {
        second = app
            .mails_to(&email)
            .iter()
            .filter(|mail| mail["subject"].as_str().unwrap().contains(VERIFY_SUBJECT))
            .map(|mail| token_in(mail, "tlv_"))
            .find(|token| *token != first);
        if second.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let second = second.expect("a second verification mail arrives within 20 s");

    let (status, _) = problem(verify_email(&app, &first).await).await;
    assert_eq!(status, 400, "the replaced link still works");
    assert_eq!(verify_email(&app, &second).await.status(), 204);
    let (status, _) = problem(app.post_json(access_token, resend, json!({})).await).await;
    assert_eq!(status, 409);
    app.stop().await;
}
