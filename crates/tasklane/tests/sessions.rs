//! Browser sessions against the running application: the `__Host-` session cookie, CSRF
//! and Origin checks on cookie writes, the Redis cache with PostgreSQL behind it, the
//! session list with revocation, and hub connections authenticated by the cookie.
//!
//! Each test names the OWASP ASVS 5.0 requirements it covers; docs/asvs-coverage.md lists
//! them all.

mod common;

use common::{TestApp, TEST_PASSWORD};
use futures::{SinkExt, StreamExt};
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const COOKIE_NAME: &str = "__Host-tasklane_session";

/// One of the origins the default settings allow.
const ALLOWED_ORIGIN: &str = "http://localhost:8080";

const FOREIGN_ORIGIN: &str = "https://attacker.example";

/// A browser session started by `POST /auth/session`.
struct BrowserSession {
    /// Value of the session cookie.
    cookie: String,
    csrf_token: String,
    /// The whole `Set-Cookie` header of the login response.
    set_cookie: String,
    body: Value,
}

impl BrowserSession {
    fn cookie_header(&self) -> String {
        format!("{COOKIE_NAME}={}", self.cookie)
    }

    fn id(&self) -> Uuid {
        self.body["session_id"].as_str().unwrap().parse().unwrap()
    }
}

/// A registered person with the e-mail address to log in with.
struct Person {
    email: String,
    user_id: Uuid,
    token: String,
}

async fn register(app: &TestApp, tenant: &str) -> Person {
    let account = app.register(tenant).await;
    let email: String = sqlx::query_scalar("select email from users where id = $1")
        .bind(account.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    Person {
        email,
        user_id: account.user_id,
        token: account.token,
    }
}

async fn start_session(app: &TestApp, person: &Person) -> BrowserSession {
    let response = app
        .client
        .post(app.url("/api/v1/auth/session"))
        .header(ORIGIN, ALLOWED_ORIGIN)
        .header(reqwest::header::USER_AGENT, "session-test-browser/1.0")
        .json(&json!({ "email": person.email, "password": TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "cookie login failed");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .expect("the login sets the session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let pair = set_cookie.split(';').next().unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, COOKIE_NAME);
    BrowserSession {
        cookie: value.to_owned(),
        csrf_token: body["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie,
        body,
    }
}

async fn cookie_get(app: &TestApp, session: &BrowserSession, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header(COOKIE, session.cookie_header())
        .send()
        .await
        .unwrap()
}

/// Sends a cookie-authenticated write with the given `Origin` and `X-CSRF-Token`, each
/// left out when `None`.
async fn cookie_write(
    app: &TestApp,
    method: reqwest::Method,
    session: &BrowserSession,
    path: &str,
    origin: Option<&str>,
    csrf_token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header(COOKIE, session.cookie_header());
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    if let Some(token) = csrf_token {
        request = request.header("x-csrf-token", token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Sends a cookie-authenticated write with the allowed origin and the session's token.
async fn trusted_write(
    app: &TestApp,
    method: reqwest::Method,
    session: &BrowserSession,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    cookie_write(
        app,
        method,
        session,
        path,
        Some(ALLOWED_ORIGIN),
        Some(&session.csrf_token),
        body,
    )
    .await
}

async fn problem_detail(response: reqwest::Response) -> String {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    body["detail"].as_str().unwrap().to_owned()
}

async fn list_sessions(app: &TestApp, session: &BrowserSession) -> Vec<Value> {
    let response = cookie_get(app, session, "/api/v1/auth/sessions").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn reads_status(app: &TestApp, session: &BrowserSession) -> u16 {
    cookie_get(app, session, "/api/v1/projects")
        .await
        .status()
        .as_u16()
}

/// Polls until the cookie gets `expected` from the API, for changes that reach this
/// process by PostgreSQL notification; fails after two seconds.
async fn wait_for_reads_status(app: &TestApp, session: &BrowserSession, expected: u16) {
    for _ in 0..40 {
        if reads_status(app, session).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the API did not answer {expected} to the cookie within 2 s");
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    let url =
        std::env::var("TASKLANE_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Returns the test's cached session keys.
async fn session_keys(app: &TestApp) -> Vec<String> {
    let mut connection = redis_connection().await;
    redis::cmd("KEYS")
        .arg(format!("{}:session:*", app.prefix))
        .query_async(&mut connection)
        .await
        .unwrap()
}

// ASVS 3.3.1, 3.3.2, 3.3.3, 3.3.4, 7.2.3: the session cookie is `__Host-` prefixed, Secure,
// HttpOnly and SameSite, contains 256 random bits and appears only in `Set-Cookie`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_attributes() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Cookies").await;
    let session = start_session(&app, &person).await;

    let attributes: Vec<&str> = session.set_cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"Secure"), "{}", session.set_cookie);
    assert!(attributes.contains(&"HttpOnly"), "{}", session.set_cookie);
    assert!(
        attributes.contains(&"SameSite=Strict"),
        "{}",
        session.set_cookie
    );
    assert!(attributes.contains(&"Path=/"), "{}", session.set_cookie);
    assert!(
        !session.set_cookie.to_ascii_lowercase().contains("domain"),
        "a __Host- cookie has no Domain: {}",
        session.set_cookie
    );
    assert!(
        attributes.contains(&"Max-Age=43200"),
        "the cookie lives as long as the session's absolute lifetime: {}",
        session.set_cookie
    );

    let token = session.cookie.strip_prefix("tls_").expect("tls_ prefix");
    assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
    assert!(
        !session.body.to_string().contains(&session.cookie),
        "the session id is sent only in Set-Cookie"
    );

    let stored: Vec<u8> =
        sqlx::query_scalar("select token_hash from browser_sessions where id = $1")
            .bind(session.id())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32, "only the SHA-256 hash is stored");
    let second = start_session(&app, &person).await;
    assert_ne!(second.cookie, session.cookie);
    app.stop().await;
}

// ASVS 7.2.4: a login from a browser that already has a session cookie issues a new id and
// ends the old session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_replaces_existing_session() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Replace").await;
    let old = start_session(&app, &person).await;
    assert_eq!(reads_status(&app, &old).await, 200);

    let response = app
        .client
        .post(app.url("/api/v1/auth/session"))
        .header(ORIGIN, ALLOWED_ORIGIN)
        .header(COOKIE, old.cookie_header())
        .json(&json!({ "email": person.email, "password": TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        !set_cookie.contains(&old.cookie),
        "the login issues a new session id"
    );
    assert_eq!(reads_status(&app, &old).await, 401);
    app.stop().await;
}

// ASVS 7.2.1: the server checks the cookie on every request, and it works for reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_authenticates_reads() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Reads").await;
    let session = start_session(&app, &person).await;

    assert_eq!(reads_status(&app, &session).await, 200);
    let current = cookie_get(&app, &session, "/api/v1/auth/session").await;
    assert_eq!(current.status(), 200);
    let current: Value = current.json().await.unwrap();
    assert_eq!(current["csrf_token"], json!(session.csrf_token));
    assert_eq!(current["user_id"], json!(person.user_id));
    assert_eq!(current["session_id"], json!(session.id()));

    let forged = BrowserSession {
        cookie: format!("tls_{}", "A".repeat(43)),
        csrf_token: String::new(),
        set_cookie: String::new(),
        body: json!({}),
    };
    assert_eq!(reads_status(&app, &forged).await, 401);
    let anonymous = app
        .client
        .get(app.url("/api/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let bearer = app
        .client
        .get(app.url("/api/v1/auth/session"))
        .bearer_auth(&person.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        404,
        "a bearer-token request has no browser session"
    );
    app.stop().await;
}

// ASVS 3.5.1: cookie-authenticated writes need the session's CSRF token and an allowed
// Origin; bearer-token writes need neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_writes_need_csrf_and_origin() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Csrf").await;
    let session = start_session(&app, &person).await;
    let project = || Some(json!({ "key": "WEB", "name": "Website" }));
    let post = reqwest::Method::POST;

    let missing_token = cookie_write(
        &app,
        post.clone(),
        &session,
        "/api/v1/projects",
        Some(ALLOWED_ORIGIN),
        None,
        project(),
    )
    .await;
    assert_eq!(missing_token.status(), 403);
    assert!(problem_detail(missing_token)
        .await
        .contains("missing X-CSRF-Token header"));

    let wrong_token = cookie_write(
        &app,
        post.clone(),
        &session,
        "/api/v1/projects",
        Some(ALLOWED_ORIGIN),
        Some("not-the-token"),
        project(),
    )
    .await;
    assert_eq!(wrong_token.status(), 403);
    assert!(problem_detail(wrong_token).await.contains("does not match"));

    let other = start_session(&app, &person).await;
    let other_sessions_token = cookie_write(
        &app,
        post.clone(),
        &session,
        "/api/v1/projects",
        Some(ALLOWED_ORIGIN),
        Some(&other.csrf_token),
        project(),
    )
    .await;
    assert_eq!(
        other_sessions_token.status(),
        403,
        "a token is bound to its session"
    );

    let foreign = cookie_write(
        &app,
        post.clone(),
        &session,
        "/api/v1/projects",
        Some(FOREIGN_ORIGIN),
        Some(&session.csrf_token),
        project(),
    )
    .await;
    assert_eq!(foreign.status(), 403);
    assert!(problem_detail(foreign).await.contains("attacker.example"));

    let no_origin = cookie_write(
        &app,
        post.clone(),
        &session,
        "/api/v1/projects",
        None,
        Some(&session.csrf_token),
        project(),
    )
    .await;
    assert_eq!(no_origin.status(), 403);
    assert!(problem_detail(no_origin)
        .await
        .contains("missing Origin header"));

    let cross_site = app
        .client
        .post(app.url("/api/v1/projects"))
        .header(COOKIE, session.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .header("x-csrf-token", &session.csrf_token)
        .json(&project())
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);

    let accepted = trusted_write(&app, post.clone(), &session, "/api/v1/projects", project()).await;
    assert_eq!(accepted.status(), 201);

    let bearer = app
        .post_json(
            &person.token,
            "/api/v1/projects",
            json!({ "key": "API", "name": "Bearer project" }),
        )
        .await;
    assert_eq!(bearer.status(), 201, "bearer writes need no CSRF token");

    let foreign_login = app
        .client
        .post(app.url("/api/v1/auth/session"))
        .header(ORIGIN, FOREIGN_ORIGIN)
        .json(&json!({ "email": person.email, "password": TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign_login.status(),
        403,
        "another site cannot log the browser in"
    );
    app.stop().await;
}

// ASVS 7.2.1: PostgreSQL stores the session, so it stays valid when its Redis copy is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_redis_flush() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Flush").await;
    let session = start_session(&app, &person).await;
    assert_eq!(reads_status(&app, &session).await, 200);

    let keys = session_keys(&app).await;
    assert_eq!(
        keys.len(),
        1,
        "the session is cached under the test's prefix"
    );
    let mut connection = redis_connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (1..=1800).contains(&ttl),
        "the cache entry expires within the 30 min idle timeout, TTL {ttl}"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(session_keys(&app).await.is_empty());

    assert_eq!(reads_status(&app, &session).await, 200);
    assert_eq!(
        session_keys(&app).await.len(),
        1,
        "a miss refills the cache from PostgreSQL"
    );
    let write = trusted_write(
        &app,
        reqwest::Method::POST,
        &session,
        "/api/v1/projects",
        Some(json!({ "key": "RDS", "name": "After flush" })),
    )
    .await;
    assert_eq!(write.status(), 201, "the CSRF token survives the flush too");
    app.stop().await;
}

// ASVS 7.5.2: a user sees every session of both kinds and the one in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_list_shows_both_kinds() {
    let app = TestApp::spawn().await;
    let person = register(&app, "List").await;
    let first = start_session(&app, &person).await;
    let second = start_session(&app, &person).await;

    let items = list_sessions(&app, &first).await;
    let browser: Vec<&Value> = items.iter().filter(|i| i["kind"] == "browser").collect();
    let families: Vec<&Value> = items
        .iter()
        .filter(|i| i["kind"] == "refresh_token")
        .collect();
    assert_eq!(browser.len(), 2, "{items:?}");
    assert_eq!(
        families.len(),
        1,
        "the token login of registration: {items:?}"
    );
    let current: Vec<&Value> = items.iter().filter(|i| i["current"] == true).collect();
    assert_eq!(current.len(), 1, "{items:?}");
    assert_eq!(current[0]["id"], json!(first.id()));
    let other = browser
        .iter()
        .find(|i| i["id"] == json!(second.id()))
        .unwrap();
    assert_eq!(other["current"], false);
    assert_eq!(other["user_agent"], "session-test-browser/1.0");
    assert_eq!(other["ip"], "127.0.0.1");
    for field in ["created_at", "last_used_at", "expires_at", "tenant_id"] {
        assert!(items.iter().all(|i| i[field].is_string()), "{field}");
    }
    app.stop().await;
}

// ASVS 7.4.1, 7.5.2: revoking one session ends it on the next request and leaves the
// others; another user's session id is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_one_session() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Revoke").await;
    let kept = start_session(&app, &person).await;
    let revoked = start_session(&app, &person).await;
    assert_eq!(
        reads_status(&app, &revoked).await,
        200,
        "cached before the revocation"
    );

    let path = format!("/api/v1/auth/sessions/{}", revoked.id());
    let response = trusted_write(&app, reqwest::Method::DELETE, &kept, &path, None).await;
    assert_eq!(response.status(), 204);
    assert_eq!(reads_status(&app, &revoked).await, 401);
    assert_eq!(reads_status(&app, &kept).await, 200);
    let again = trusted_write(&app, reqwest::Method::DELETE, &kept, &path, None).await;
    assert_eq!(again.status(), 404);

    let stranger = register(&app, "Stranger").await;
    let strangers_session = start_session(&app, &stranger).await;
    let foreign_path = format!("/api/v1/auth/sessions/{}", strangers_session.id());
    let response = trusted_write(&app, reqwest::Method::DELETE, &kept, &foreign_path, None).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        reads_status(&app, &strangers_session).await,
        200,
        "another user's session is untouched"
    );

    let family = list_sessions(&app, &kept)
        .await
        .into_iter()
        .find(|i| i["kind"] == "refresh_token")
        .unwrap();
    let family_path = format!("/api/v1/auth/sessions/{}", family["id"].as_str().unwrap());
    let response = trusted_write(&app, reqwest::Method::DELETE, &kept, &family_path, None).await;
    assert_eq!(response.status(), 204);
    let kinds: Vec<Value> = list_sessions(&app, &kept)
        .await
        .into_iter()
        .map(|i| i["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("browser")]);

    let logout = trusted_write(
        &app,
        reqwest::Method::DELETE,
        &kept,
        "/api/v1/auth/session",
        None,
    )
    .await;
    assert_eq!(logout.status(), 204);
    let cleared = logout.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(reads_status(&app, &kept).await, 401);
    app.stop().await;
}

// ASVS 7.4.1: logout-all ends browser sessions as well as tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_cookie_sessions() {
    let app = TestApp::spawn().await;
    let person = register(&app, "LogoutAll").await;
    let first = start_session(&app, &person).await;
    let second = start_session(&app, &person).await;
    assert_eq!(reads_status(&app, &second).await, 200);

    let response = trusted_write(
        &app,
        reqwest::Method::POST,
        &first,
        "/api/v1/auth/logout-all",
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    let cleared = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    wait_for_reads_status(&app, &first, 401).await;
    wait_for_reads_status(&app, &second, 401).await;
    assert!(
        session_keys(&app).await.is_empty(),
        "the cached copies are deleted"
    );
    let status = app.get(&person.token, "/api/v1/projects").await.status();
    assert_eq!(status, 401);
    app.stop().await;
}

// ASVS 7.4.3: a password change made with the cookie keeps that session and ends the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_cookie_sessions() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Password").await;
    let current = start_session(&app, &person).await;
    let other = start_session(&app, &person).await;
    assert_eq!(reads_status(&app, &other).await, 200);

    let response = trusted_write(
        &app,
        reqwest::Method::POST,
        &current,
        "/api/v1/auth/password",
        Some(json!({
            "current_password": TEST_PASSWORD,
            "new_password": "an entirely new passphrase 42",
        })),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("access_token").is_none(),
        "a cookie caller gets no tokens that scripts could read: {body}"
    );
    wait_for_reads_status(&app, &other, 401).await;
    assert_eq!(reads_status(&app, &current).await, 200);
    let status = app.get(&person.token, "/api/v1/projects").await.status();
    assert_eq!(status, 401, "older access tokens end too");
    let ids: Vec<Value> = list_sessions(&app, &current)
        .await
        .into_iter()
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(current.id())],
        "the token login's family is revoked and no new one is started"
    );
    app.stop().await;
}

// ASVS 7.4.2: disabling the account ends its browser sessions at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_account_loses_cookie_session() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Disabled").await;
    let session = start_session(&app, &person).await;
    assert_eq!(reads_status(&app, &session).await, 200);

    sqlx::query("update users set disabled_at = now() where id = $1")
        .bind(person.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    wait_for_reads_status(&app, &session, 401).await;
    app.stop().await;
}

async fn negotiate_with_cookie(
    app: &TestApp,
    session: &BrowserSession,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/hubs/tasks/negotiate?negotiateVersion=1"))
        .header(COOKIE, session.cookie_header());
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    request.send().await.unwrap()
}

// ASVS 4.4.2: the hub accepts the session cookie only from an allowed Origin, at negotiate
// and at the WebSocket handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_accepts_cookie_from_allowed_origin() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Hub").await;
    let session = start_session(&app, &person).await;

    let foreign = negotiate_with_cookie(&app, &session, Some(FOREIGN_ORIGIN)).await;
    assert_eq!(foreign.status(), 403);
    let missing = negotiate_with_cookie(&app, &session, None).await;
    assert_eq!(missing.status(), 403);

    let negotiated = negotiate_with_cookie(&app, &session, Some(ALLOWED_ORIGIN)).await;
    assert_eq!(negotiated.status(), 200);
    let negotiated: Value = negotiated.json().await.unwrap();
    let connection_token = negotiated["connectionToken"].as_str().unwrap();

    let ws_url = format!(
        "{}?id={connection_token}",
        app.hub_url().replacen("http://", "ws://", 1)
    );
    let mut foreign_upgrade = ws_url.as_str().into_client_request().unwrap();
    foreign_upgrade
        .headers_mut()
        .insert(COOKIE, session.cookie_header().parse().unwrap());
    foreign_upgrade
        .headers_mut()
        .insert(ORIGIN, FOREIGN_ORIGIN.parse().unwrap());
    let rejected = tokio_tungstenite::connect_async(foreign_upgrade).await;
    match rejected {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403 upgrade response, got {other:?}"),
    }

    let mut upgrade = ws_url.as_str().into_client_request().unwrap();
    upgrade
        .headers_mut()
        .insert(COOKIE, session.cookie_header().parse().unwrap());
    upgrade
        .headers_mut()
        .insert(ORIGIN, ALLOWED_ORIGIN.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("the hub answers the handshake")
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "{}\u{1e}");
    let _ = socket.close(None).await;

    let bearer = app
        .client
        .post(app.url("/hubs/tasks/negotiate?negotiateVersion=1"))
        .bearer_auth(&person.token)
        .header(ORIGIN, FOREIGN_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200, "bearer auth ignores the Origin");
    app.stop().await;
}

type HubSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Negotiates and opens a hub WebSocket with the session cookie, and completes the JSON
/// protocol handshake.
async fn open_cookie_hub(app: &TestApp, session: &BrowserSession) -> HubSocket {
    let negotiated = negotiate_with_cookie(app, session, Some(ALLOWED_ORIGIN)).await;
    assert_eq!(negotiated.status(), 200);
    let negotiated: Value = negotiated.json().await.unwrap();
    let connection_token = negotiated["connectionToken"].as_str().unwrap();
    let ws_url = format!(
        "{}?id={connection_token}",
        app.hub_url().replacen("http://", "ws://", 1)
    );
    let mut upgrade = ws_url.as_str().into_client_request().unwrap();
    let headers = upgrade.headers_mut();
    headers.insert(COOKIE, session.cookie_header().parse().unwrap());
    headers.insert(ORIGIN, ALLOWED_ORIGIN.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    socket
        .send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let reply = next_hub_record(&mut socket).await;
    assert_eq!(reply, json!({}), "handshake response");
    socket
}

/// Returns the next hub message other than a ping or a presence update, or `Null` when
/// the socket ended.
async fn next_hub_record(socket: &mut HubSocket) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a hub message within 10 s");
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
            Some(Ok(_)) => continue,
        };
        let record = text.as_str().trim_end_matches('\u{1e}');
        let value: Value = serde_json::from_str(record).unwrap();
        let presence = value["type"] == 1 && value["target"] == "onlineUsers";
        if value["type"] != 6 && !presence {
            return value;
        }
    }
}

// ASVS 7.4.1: revoking one browser session closes the hub connections its cookie opened,
// for good, and leaves the user's other sessions connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_session_closes_its_hub_connections() {
    let app = TestApp::spawn().await;
    let person = register(&app, "HubRevoke").await;
    let revoked_session = start_session(&app, &person).await;
    let other_session = start_session(&app, &person).await;
    let mut revoked_socket = open_cookie_hub(&app, &revoked_session).await;
    let mut other_socket = open_cookie_hub(&app, &other_session).await;

    let path = format!("/api/v1/auth/sessions/{}", revoked_session.id());
    let response = trusted_write(&app, reqwest::Method::DELETE, &other_session, &path, None).await;
    assert_eq!(response.status(), 204);

    let close = next_hub_record(&mut revoked_socket).await;
    assert_eq!(close["type"], 7, "a Close message: {close}");
    // The protocol leaves `allowReconnect` out when it is false.
    assert_ne!(close["allowReconnect"], true, "{close}");
    assert!(
        close["error"].as_str().unwrap().contains("revoked"),
        "{close}"
    );
    other_socket
        .send(Message::text(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"OnlineUsers\",\"arguments\":[]}\u{1e}",
        ))
        .await
        .unwrap();
    let completion = next_hub_record(&mut other_socket).await;
    assert_eq!(
        completion["type"], 3,
        "the other session's connection still answers: {completion}"
    );
    assert_eq!(completion["invocationId"], "1", "{completion}");
    app.stop().await;
}

// A retried cookie write with the same Idempotency-Key gets the stored response, and a
// request that fails the CSRF checks gets no replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_write_honours_idempotency_key() {
    let app = TestApp::spawn().await;
    let person = register(&app, "Idempotent").await;
    let session = start_session(&app, &person).await;
    let send = |csrf_token: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/projects"))
            .header(COOKIE, session.cookie_header())
            .header(ORIGIN, ALLOWED_ORIGIN)
            .header("idempotency-key", "create-web-project")
            .json(&json!({ "key": "RETRY", "name": "Once" }));
        if let Some(token) = csrf_token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };

    let first = send(Some(session.csrf_token.clone())).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = send(Some(session.csrf_token.clone())).await.unwrap();
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"], "the retry replays the response");

    let forged = send(None).await.unwrap();
    assert_eq!(forged.status(), 403);

    let count: i64 = sqlx::query_scalar("select count(*) from projects where key = 'RETRY'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.stop().await;
}

// ASVS 8.3.2: removing the membership of a browser session's tenant ends the session at
// once, in the API and the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_loses_cookie_session() {
    let app = TestApp::spawn().await;
    let owner = app.register("Owner").await;
    let guest = register(&app, "GuestHome").await;
    sqlx::query(
        "insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, 'member', 'guest')",
    )
    .bind(owner.tenant_id)
    .bind(guest.user_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/auth/session"))
        .header(ORIGIN, ALLOWED_ORIGIN)
        .json(
            &json!({ "email": guest.email, "password": TEST_PASSWORD, "tenant": owner.tenant_id }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant_id"], json!(owner.tenant_id));
    let session = BrowserSession {
        cookie,
        csrf_token: body["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie: String::new(),
        body,
    };
    assert_eq!(reads_status(&app, &session).await, 200);
    let negotiated = negotiate_with_cookie(&app, &session, Some(ALLOWED_ORIGIN)).await;
    assert_eq!(negotiated.status(), 200);

    sqlx::query("delete from memberships where tenant_id = $1 and user_id = $2")
        .bind(owner.tenant_id)
        .bind(guest.user_id)
        .execute(&app.pool)
        .await
        .unwrap();

    wait_for_reads_status(&app, &session, 401).await;
    let negotiated = negotiate_with_cookie(&app, &session, Some(ALLOWED_ORIGIN)).await;
    assert_eq!(negotiated.status(), 401);
    app.stop().await;
}
