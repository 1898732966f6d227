//! OpenID Connect login against a real provider: `oidc-provider` (npm, version 8) run by
//! `tests/js/oidc-provider.mjs`, signed in to through its development login form. Each
//! step of the browser's redirect chain is followed by hand, with a cookie jar, so the
//! tests see and can alter every step.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use common::{Account, TestApp};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const CLIENT_ID: &str = "tasklane";
const CLIENT_SECRET: &str = "tasklane-test-secret";

/// The local OpenID provider, stopped when dropped.
struct OpenIdProvider {
    issuer: String,
    _child: Child,
}

impl OpenIdProvider {
    /// Starts the provider with one client whose only redirect URI is the app's callback.
    async fn start(app: &TestApp) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js/oidc-provider.mjs");
        assert!(
            script
                .parent()
                .unwrap()
                .join("node_modules/oidc-provider")
                .exists(),
            "oidc-provider is not installed; run `npm ci --prefix tests/js`"
        );
        let mut child = Command::new("node")
            .arg(&script)
            .arg(app.url("/api/v1/auth/oidc/callback"))
            .args([CLIENT_ID, CLIENT_SECRET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("running node for the OpenID provider");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .expect("reading the OpenID provider's output")
            .expect("the OpenID provider exited before it was ready");
        // The provider writes to stdout later too, and would fail on a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ready: Value = serde_json::from_str(&line).expect("a JSON ready line");
        let issuer = ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("the ready line has no issuer: {line}"))
            .to_owned();
        Self {
            issuer,
            _child: child,
        }
    }
}

/// A browser: an HTTP client that follows no redirects, with one cookie jar for every
/// port of 127.0.0.1, as browsers share cookies across ports of a host.
struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            client,
            cookies: HashMap::new(),
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let request = self.client.get(url);
        self.send(request).await
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let request = self.client.post(url).form(form);
        self.send(request).await
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> reqwest::Response {
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(COOKIE, header);
        }
        let response = request.send().await.unwrap();
        for set_cookie in response.headers().get_all(SET_COOKIE) {
            let set_cookie = set_cookie.to_str().unwrap();
            let pair = set_cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = set_cookie.contains("Max-Age=0") || value.is_empty();
            if expired {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        response
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("a redirect, got {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Returns the `action` of the page's form, resolved against `base`.
fn form_action(html: &str, base: &str) -> String {
    let start = html.find("action=\"").expect("a form on the page") + "action=\"".len();
    let end = start + html[start..].find('"').unwrap();
    let action = &html[start..end];
    if action.starts_with("http") {
        action.to_owned()
    } else {
        format!("{base}{action}")
    }
}

/// Starts a login at the app, signs in at the provider's login form as `login`, consents,
/// and returns the callback URL that the provider redirects the browser to, unvisited.
async fn authorize(
    browser: &mut Browser,
    app: &TestApp,
    provider: &OpenIdProvider,
    provider_id: Uuid,
    login: &str,
) -> String {
    let start = browser
        .get(&app.url(&format!("/api/v1/auth/oidc/{provider_id}/start")))
        .await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let mut url = location(&start);
    assert!(url.starts_with(&provider.issuer), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("state="), "{url}");
    assert!(url.contains("nonce="), "{url}");

    let callback = app.url("/api/v1/auth/oidc/callback");
    for _ in 0..10 {
        if url.starts_with(&callback) {
            return url;
        }
        let response = browser.get(&url).await;
        if response.status().is_redirection() {
            url = resolve(&location(&response), &provider.issuer);
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "at {url}");
        let html = response.text().await.unwrap();
        let action = form_action(&html, &provider.issuer);
        let submitted = if html.contains("name=\"login\"") {
            browser
                .post_form(
                    &action,
                    &[("prompt", "login"), ("login", login), ("password", "any")],
                )
                .await
        } else {
            assert!(
                html.contains("value=\"consent\""),
                "an unexpected page: {html}"
            );
            browser.post_form(&action, &[("prompt", "consent")]).await
        };
        assert!(submitted.status().is_redirection(), "form at {url}");
        url = resolve(&location(&submitted), &provider.issuer);
    }
    panic!("the provider did not redirect to the callback within 10 steps; last at {url}");
}

fn resolve(location: &str, base: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

/// Signs in through the provider and returns the callback's status and body.
async fn log_in(
    app: &TestApp,
    provider: &OpenIdProvider,
    provider_id: Uuid,
    login: &str,
) -> (StatusCode, Value) {
    let mut browser = Browser::new();
    let callback = authorize(&mut browser, app, provider, provider_id, login).await;
    let response = browser.get(&callback).await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Configures the local provider in the tenant of `admin` and returns its id.
async fn add_provider(app: &TestApp, admin: &Account, provider: &OpenIdProvider) -> Uuid {
    let response = app
        .post_json(
            &admin.token,
            "/api/v1/oidc/providers",
            json!({
                "display_name": "Local provider",
                "issuer_url": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("client_secret").is_none(), "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Invites `invitee` to the tenant of `owner` with `role` and accepts the invitation.
async fn join_tenant(app: &TestApp, owner: &Account, invitee: &Account, role: &str) {
    let email = app.email_of(invitee.user_id).await;
    let created = app
        .post_json(
            &owner.token,
            "/api/v1/invitations",
            json!({ "email": email, "role": role }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let invitation: Value = created.json().await.unwrap();
    let path = format!(
        "/api/v1/invitations/{}/accept",
        invitation["token"].as_str().unwrap()
    );
    let accepted = app.post_json(&invitee.token, &path, json!({})).await;
    assert_eq!(accepted.status(), 200);
}

/// Counts the outbox events of a type that concern OpenID Connect logins.
async fn count_events(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from outbox
         where event_type = $1 and envelope->'data' ? 'provider_id'",
    )
    .bind(event_type)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

fn new_login() -> String {
    format!("{}@example.com", Uuid::new_v4().simple())
}

// ASVS 6.8.1, 10.5.2: a new person gets an account in the provider's tenant only, and the
// identity (provider, sub) finds the same account at the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_user_signs_in_to_provider_tenant() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner = app.register("Acme").await;
    let provider_id = add_provider(&app, &owner, &provider).await;
    let login = new_login();

    let (status, first) = log_in(&app, &provider, provider_id, &login).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["tenant_id"], json!(owner.tenant_id));
    assert_eq!(first["new_account"], true);
    assert!(first["refresh_token"].is_string(), "{first}");
    let user_id: Uuid = first["user_id"].as_str().unwrap().parse().unwrap();

    let (email, password_hash, verified): (String, Option<String>, bool) = sqlx::query_as(
        "select email, password_hash, email_verified_at is not null from users where id = $1",
    )
    .bind(user_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(email, login);
    assert!(password_hash.is_none());
    assert!(verified);
    let memberships: Vec<(Uuid, String)> =
        sqlx::query_as("select tenant_id, role from memberships where user_id = $1")
            .bind(user_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(memberships, vec![(owner.tenant_id, "member".to_owned())]);

    let token = first["access_token"].as_str().unwrap();
    let projects = app.get(token, "/api/v1/projects").await;
    assert_eq!(projects.status(), 200);

    // The account has no password, so no password logs in to it.
    let password_login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": login, "password": common::TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(password_login.status(), 401);

    let (status, second) = log_in(&app, &provider, provider_id, &login).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["user_id"], first["user_id"]);
    assert_eq!(second["new_account"], false);
    assert_eq!(count_events(&app, "auth.login_succeeded").await, 2);

    // A person removed from the tenant no longer signs in through its provider.
    sqlx::query("delete from memberships where user_id = $1")
        .bind(user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, removed) = log_in(&app, &provider, provider_id, &login).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{removed}");
    assert!(removed.get("access_token").is_none(), "{removed}");

    // The provider asserts no e-mail address for a login without an @, so no account is made.
    let (status, rejected) = log_in(&app, &provider, provider_id, "no-email").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{rejected}");
    assert!(rejected.get("access_token").is_none(), "{rejected}");
    assert_eq!(count_events(&app, "auth.login_failed").await, 2);
    app.stop().await;
}

// ASVS 6.8.1: a provider that asserts the e-mail address of an existing account neither
// signs in to it nor links to it until that account confirms with its own login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_email_needs_confirmed_link() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner = app.register("Acme").await;
    let provider_id = add_provider(&app, &owner, &provider).await;
    let person = app.register("Home").await;
    join_tenant(&app, &owner, &person, "member").await;
    let email = app.email_of(person.user_id).await;

    let (status, pending) = log_in(&app, &provider, provider_id, &email).await;
    assert_eq!(status, StatusCode::CONFLICT, "{pending}");
    assert!(pending.get("access_token").is_none(), "{pending}");
    let link_token = pending["link_token"].as_str().unwrap().to_owned();
    let linked: i64 = sqlx::query_scalar("select count(*) from oidc_identities")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(linked, 0);

    let (status, again) = log_in(&app, &provider, provider_id, &email).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // Another account cannot confirm the link, and its attempt does not use the token up.
    let stranger = app.register("Elsewhere").await;
    let rejected = app
        .post_json(
            &stranger.token,
            "/api/v1/auth/oidc/link",
            json!({ "link_token": link_token }),
        )
        .await;
    assert_eq!(rejected.status(), 400);

    let confirmed = app
        .post_json(
            &person.token,
            "/api/v1/auth/oidc/link",
            json!({ "link_token": link_token }),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    let reused = app
        .post_json(
            &person.token,
            "/api/v1/auth/oidc/link",
            json!({ "link_token": link_token }),
        )
        .await;
    assert_eq!(reused.status(), 400);

    let (status, signed_in) = log_in(&app, &provider, provider_id, &email).await;
    assert_eq!(status, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["user_id"], json!(person.user_id));
    assert_eq!(signed_in["tenant_id"], json!(owner.tenant_id));
    assert_eq!(signed_in["new_account"], false);
    assert_eq!(count_events(&app, "auth.oidc_link_requested").await, 2);
    assert_eq!(count_events(&app, "auth.oidc_linked").await, 1);
    app.stop().await;
}

// ASVS 10.1.2, 10.2.1: the state works once, for the browser that started the login, and
// only within its lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_reused_state_is_rejected() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner = app.register("Acme").await;
    let provider_id = add_provider(&app, &owner, &provider).await;
    let login = new_login();

    // A changed state matches neither the browser's cookie nor a stored login.
    let mut browser = Browser::new();
    let callback = authorize(&mut browser, &app, &provider, provider_id, &login).await;
    let tampered = callback.replace("state=", "state=x");
    let response = browser.get(&tampered).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // Another browser, without the state cookie, cannot finish the login.
    let callback = authorize(&mut browser, &app, &provider, provider_id, &login).await;
    let response = Browser::new().get(&callback).await;
    assert_eq!(response.status(), 400);

    // The callback works once, even when the cookie is presented again.
    let callback = authorize(&mut browser, &app, &provider, provider_id, &login).await;
    let state_cookie = browser.cookies["tasklane_oidc_state"].clone();
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), 200);
    browser
        .cookies
        .insert("tasklane_oidc_state".to_owned(), state_cookie);
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status(), 400);
    let body: Value = replayed.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{body}"
    );

    // An expired state is rejected.
    let callback = authorize(&mut browser, &app, &provider, provider_id, &login).await;
    sqlx::query("update oidc_login_states set expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), 400);
    app.stop().await;
}

// ASVS 10.2.2: a response naming another issuer is rejected before the code is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_from_other_issuer_is_rejected() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner = app.register("Acme").await;
    let provider_id = add_provider(&app, &owner, &provider).await;

    let mut browser = Browser::new();
    let callback = authorize(&mut browser, &app, &provider, provider_id, &new_login()).await;
    assert!(callback.contains("iss="), "{callback}");
    let mut mixed_up = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = mixed_up
        .query_pairs()
        .filter(|(name, _)| name != "iss")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    mixed_up
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("iss", "https://evil.example.com");
    let response = browser.get(mixed_up.as_str()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(count_events(&app, "auth.login_failed").await, 1);
    app.stop().await;
}

// ASVS 8.4.1: a provider of tenant A signs in to tenant A only, even for a person who is
// also a member of tenant B, and tenant B's provider cannot claim A's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_grants_only_its_tenant() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner_a = app.register("Tenant A").await;
    let owner_b = app.register("Tenant B").await;
    let provider_a = add_provider(&app, &owner_a, &provider).await;
    let provider_b = add_provider(&app, &owner_b, &provider).await;
    let task_b = app.create_task(&owner_b, "Tenant B only").await;
    let login = new_login();

    let (status, signed_in) = log_in(&app, &provider, provider_a, &login).await;
    assert_eq!(status, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["tenant_id"], json!(owner_a.tenant_id));
    let token = signed_in["access_token"].as_str().unwrap();
    let task_path = format!("/api/v1/tasks/{}", task_b["id"].as_str().unwrap());
    assert_eq!(app.get(token, &task_path).await.status(), 404);
    let switched = app
        .post_json(
            token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner_b.tenant_id }),
        )
        .await;
    assert_eq!(switched.status(), 403);

    // The same identity at tenant B's provider is another identity: it gets no session for
    // the account that tenant A's provider created.
    let (status, pending) = log_in(&app, &provider, provider_b, &login).await;
    assert_eq!(status, StatusCode::CONFLICT, "{pending}");
    assert!(pending.get("access_token").is_none(), "{pending}");
    app.stop().await;
}

// ASVS 8.2.1: only owners and admins configure providers, each in their own tenant, and
// bad input gets a problem+json error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_admin_follows_policy() {
    let app = TestApp::spawn().await;
    let provider = OpenIdProvider::start(&app).await;
    let owner = app.register("Acme").await;
    let provider_id = add_provider(&app, &owner, &provider).await;
    let member = app.register("Member Home").await;
    join_tenant(&app, &owner, &member, "member").await;
    let switched = app
        .post_json(
            &member.token,
            "/api/v1/auth/switch-tenant",
            json!({ "tenant": owner.tenant_id }),
        )
        .await;
    assert_eq!(switched.status(), 200);
    let switched: Value = switched.json().await.unwrap();
    let member_token = switched["access_token"].as_str().unwrap();

    let created = app
        .post_json(
            member_token,
            "/api/v1/oidc/providers",
            json!({
                "display_name": "Rogue",
                "issuer_url": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            }),
        )
        .await;
    assert_eq!(created.status(), 403);
    assert_eq!(
        app.get(member_token, "/api/v1/oidc/providers")
            .await
            .status(),
        403
    );
    let delete_path = format!("/api/v1/oidc/providers/{provider_id}");
    let deleted = app
        .client
        .delete(app.url(&delete_path))
        .bearer_auth(member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 403);

    // Another tenant's owner sees neither the provider nor a way to delete it.
    let other = app.register("Other").await;
    let listed: Value = app
        .get(&other.token, "/api/v1/oidc/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
    let deleted = app
        .client
        .delete(app.url(&delete_path))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 404);

    let listed: Value = app
        .get(&owner.token, "/api/v1/oidc/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0].get("client_secret").is_none(),
        "{listed}"
    );

    for issuer_url in ["http://login.example.com", "ftp://127.0.0.1", "not a url"] {
        let invalid = app
            .post_json(
                &owner.token,
                "/api/v1/oidc/providers",
                json!({
                    "display_name": "Invalid",
                    "issuer_url": issuer_url,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                }),
            )
            .await;
        assert_eq!(invalid.status(), 422, "{issuer_url}");
    }
    let bad_redirect = app
        .client
        .get(app.url(&format!(
            "/api/v1/auth/oidc/{provider_id}/start?redirect=//evil.example.com"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_redirect.status(), 400);
    let unknown = app
        .client
        .get(app.url(&format!("/api/v1/auth/oidc/{}/start", Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A disabled provider starts no logins.
    let created = app
        .post_json(
            &owner.token,
            "/api/v1/oidc/providers",
            json!({
                "display_name": "Disabled",
                "issuer_url": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "enabled": false,
            }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let disabled: Value = created.json().await.unwrap();
    let disabled_start = app
        .client
        .get(app.url(&format!(
            "/api/v1/auth/oidc/{}/start",
            disabled["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled_start.status(), 404);

    let deleted = app
        .client
        .delete(app.url(&delete_path))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.stop().await;
}
