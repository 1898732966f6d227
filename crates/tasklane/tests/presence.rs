//! Presence and the end of live hub connections, through the official SignalR client.
//! The tests cover task viewers and online users across two hub nodes, and viewers of a
//! dead node ageing out. They also cover connections closed when access is revoked or
//! the access token expires.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Account, HubClient, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use sqlx::PgPool;
use tasklane::app::Application;
use tasklane::roles::Role;
use tasklane_config::Settings;
use uuid::Uuid;

/// Upper bound for one presence change to reach a client.
const WAIT: Duration = Duration::from_secs(15);

/// Presence timing of the extra nodes: fast enough that an entry of a dead node expires
/// within a test, with several heartbeats per expiry.
const HEARTBEAT: &str = "300ms";
const EXPIRY: &str = "2s";

/// A node with the api and hub roles that shares `app`'s database and name prefix.
struct Node {
    application: Application,
    base_url: String,
}

impl Node {
    async fn start(app: &TestApp, extra: Value) -> Self {
        let mut overrides = json!({
            "server": { "bind": "127.0.0.1:0" },
            "database": { "url": database_url(&app.pool), "max_connections": 5 },
            "redis": { "url": std::env::var("TASKLANE_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()) },
            "kafka": { "brokers": std::env::var("TASKLANE_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()), "partitions": 1 },
            "namespace": { "prefix": app.prefix },
            "presence": { "heartbeat_interval": HEARTBEAT, "expiry": EXPIRY },
            "log": { "format": "text", "filter": "warn,sqlx=error" },
        });
        for (section, values) in extra.as_object().expect("extra settings are an object") {
            overrides[section] = values.clone();
        }
        let settings = Settings::with_overrides(overrides).expect("valid node settings");
        let application = Application::start(settings, &[Role::Api, Role::Hub])
            .await
            .expect("starting a node");
        let address = application.address.expect("the node listens");
        Self {
            application,
            base_url: format!("http://{address}"),
        }
    }

    fn hub_url(&self) -> String {
        format!("{}/hubs/tasks", self.base_url)
    }
}

/// Rebuilds the URL of the test database from the pool's options and the server URL the
/// harness uses.
fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("TASKLANE_DATABASE__URL")
        .unwrap_or_else(|_| "postgres://tasklane:tasklane@127.0.0.1:5432/tasklane".to_owned());
    let database = pool
        .connect_options()
        .get_database()
        .expect("the test pool names its database")
        .to_owned();
    let (base, _) = server.rsplit_once('/').expect("database URL ends in /NAME");
    format!("{base}/{database}")
}

fn user_set(users: &[Uuid]) -> BTreeSet<String> {
    users.iter().map(Uuid::to_string).collect()
}

/// Returns the user ids of a `viewers` or `onlineUsers` line.
fn users_of(line: &Value) -> BTreeSet<String> {
    line["envelope"]["users"]
        .as_array()
        .expect("a presence message lists users")
        .iter()
        .map(|user| user["user_id"].as_str().unwrap().to_owned())
        .collect()
}

fn is_presence_line(line: &Value, method: &str, group: &str) -> bool {
    line["event"] == "presence" && line["method"] == method && line["envelope"]["group"] == group
}

/// Waits until the latest `method` message for `group` that `client` received lists
/// exactly `users`, and returns it. Lines read before, such as those that arrived before
/// `ready`, count, because a join's presence update can reach the client before its join
/// completes.
async fn wait_for_users(
    client: &mut HubClient,
    method: &str,
    group: &str,
    users: &[Uuid],
) -> Value {
    let expected = user_set(users);
    let latest = client
        .seen
        .iter()
        .rev()
        .find(|line| is_presence_line(line, method, group));
    if let Some(line) = latest.filter(|line| users_of(line) == expected) {
        return line.clone();
    }
    client
        .wait_for(
            |line| is_presence_line(line, method, group) && users_of(line) == expected,
            WAIT,
        )
        .await
}

async fn create_task_id(app: &TestApp, owner: &Account) -> Uuid {
    let task = app.create_task(owner, "Watched task").await;
    task["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_follow_joins_across_nodes() {
    let app = TestApp::spawn().await;
    let owner = app.register("Presence").await;
    let member = app.add_member(&owner, "member").await;
    let task_id = create_task_id(&app, &owner).await;
    let group = format!("task:{task_id}");
    let (node_a, node_b) = (
        Node::start(&app, json!({})).await,
        Node::start(&app, json!({})).await,
    );

    let mut owner_client =
        HubClient::connect(&node_a.hub_url(), &owner.token, &[task_id], &[]).await;
    wait_for_users(&mut owner_client, "viewers", &group, &[owner.user_id]).await;
    let mut member_client =
        HubClient::connect(&node_b.hub_url(), &member.token, &[task_id], &[]).await;

    let both = [owner.user_id, member.user_id];
    let viewers = wait_for_users(&mut owner_client, "viewers", &group, &both).await;
    wait_for_users(&mut member_client, "viewers", &group, &both).await;
    for viewer in viewers["envelope"]["users"].as_array().unwrap() {
        assert_eq!(viewer["name"], "Test Person", "viewer: {viewer}");
        let handle = viewer["handle"].as_str().unwrap_or_default();
        assert!(!handle.is_empty(), "viewer without a handle: {viewer}");
    }

    let left = member_client
        .invoke("LeaveTask", json!([task_id.to_string()]))
        .await;
    assert_eq!(left["result"], true);
    wait_for_users(&mut owner_client, "viewers", &group, &[owner.user_id]).await;

    member_client
        .invoke("JoinTask", json!([task_id.to_string()]))
        .await;
    wait_for_users(&mut owner_client, "viewers", &group, &both).await;

    member_client.stop().await;
    wait_for_users(&mut owner_client, "viewers", &group, &[owner.user_id]).await;

    owner_client.stop().await;
    node_a.application.stop().await;
    node_b.application.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_users_lists_tenant_connections() {
    let app = TestApp::spawn().await;
    let owner = app.register("Online").await;
    let member = app.add_member(&owner, "member").await;
    let outsider = app.register("Elsewhere").await;
    let group = format!("tenant:{}", owner.tenant_id);

    let mut owner_client = HubClient::connect(&app.hub_url(), &owner.token, &[], &[]).await;
    let member_client = HubClient::connect(&app.hub_url(), &member.token, &[], &[]).await;
    let outsider_client = HubClient::connect(&app.hub_url(), &outsider.token, &[], &[]).await;
    let both = [owner.user_id, member.user_id];
    wait_for_users(&mut owner_client, "onlineUsers", &group, &both).await;

    let online = owner_client.invoke("OnlineUsers", json!([])).await;
    let online_users: BTreeSet<String> = online["result"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(online["result"]["group"], group.as_str());
    assert_eq!(online_users, user_set(&both));

    member_client.stop().await;
    wait_for_users(&mut owner_client, "onlineUsers", &group, &[owner.user_id]).await;

    outsider_client.stop().await;
    owner_client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_node_viewers_age_out() {
    let app = TestApp::spawn().await;
    let owner = app.register("Dying node").await;
    let member = app.add_member(&owner, "member").await;
    let task_id = create_task_id(&app, &owner).await;
    let group = format!("task:{task_id}");
    let (node_a, node_b) = (
        Node::start(&app, json!({})).await,
        Node::start(&app, json!({})).await,
    );
    let owner_client = HubClient::connect(&node_a.hub_url(), &owner.token, &[task_id], &[]).await;
    let mut member_client =
        HubClient::connect(&node_b.hub_url(), &member.token, &[task_id], &[]).await;
    let both = [owner.user_id, member.user_id];
    wait_for_users(&mut member_client, "viewers", &group, &both).await;

    // Dropping the application aborts its role tasks, the presence heartbeat among them,
    // without a shutdown: the owner's connection stays open but is no longer refreshed.
    drop(node_a.application);

    wait_for_users(&mut member_client, "viewers", &group, &[member.user_id]).await;

    owner_client.stop().await;
    member_client.stop().await;
    node_b.application.stop().await;
    app.stop().await;
}

/// Connects a client that reconnects once after a close that allows it.
async fn connect_reconnecting(hub_url: &str, token: &str) -> HubClient {
    HubClient::connect_with_args(hub_url, token, &["--auto-reconnect".to_owned()]).await
}

/// Waits for the client to report the server's close, and checks that the close did not
/// allow a reconnect.
async fn assert_closed_for_good(client: &mut HubClient) {
    let closed = client
        .wait_for(|line| line["event"] == "closed", WAIT)
        .await;
    let error = closed["error"].as_str().unwrap_or_default();
    assert!(error.contains("access revoked"), "close error: {error:?}");
    let reconnected = client
        .seen
        .iter()
        .any(|line| line["event"] == "reconnecting");
    assert!(
        !reconnected,
        "the client tried to reconnect: {:?}",
        client.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_closes_every_transport() {
    let app = TestApp::spawn().await;
    let owner = app.register("Logout").await;
    let mut clients = Vec::new();
    for transport in ["websockets", "serversentevents", "longpolling"] {
        let args = [
            "--auto-reconnect".to_owned(),
            "--transport".to_owned(),
            transport.to_owned(),
        ];
        let client = HubClient::connect_with_args(&app.hub_url(), &owner.token, &args).await;
        clients.push((transport, client));
    }

    let response = app
        .post_json(&owner.token, "/api/v1/auth/logout-all", json!({}))
        .await;
    assert_eq!(response.status(), 204);

    for (transport, mut client) in clients {
        eprintln!("checking the {transport} client");
        assert_closed_for_good(&mut client).await;
        client.stop().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_closes_old_connection() {
    let app = TestApp::spawn().await;
    let owner = app.register("Password").await;
    let mut client = connect_reconnecting(&app.hub_url(), &owner.token).await;

    let change = json!({
        "current_password": TEST_PASSWORD,
        "new_password": "orbit lantern quietly mosaic harbor",
    });
    let changed = app
        .post_json(&owner.token, "/api/v1/auth/password", change)
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();

    assert_closed_for_good(&mut client).await;
    let new_token = changed["access_token"].as_str().unwrap();
    let new_client = HubClient::connect(&app.hub_url(), new_token, &[], &[]).await;
    client.stop().await;
    new_client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_user_closed_on_every_node() {
    let app = TestApp::spawn().await;
    let owner = app.register("Disabled").await;
    let node = Node::start(&app, json!({})).await;
    let mut client = connect_reconnecting(&app.hub_url(), &owner.token).await;
    let mut node_client = connect_reconnecting(&node.hub_url(), &owner.token).await;

    sqlx::query("update users set disabled_at = now() where id = $1")
        .bind(owner.user_id)
        .execute(&app.pool)
        .await
        .unwrap();

    assert_closed_for_good(&mut client).await;
    assert_closed_for_good(&mut node_client).await;
    client.stop().await;
    node_client.stop().await;
    node.application.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_connection_closed() {
    let app = TestApp::spawn().await;
    let owner = app.register("Removal").await;
    let member = app.add_member(&owner, "member").await;
    let mut owner_client = HubClient::connect(&app.hub_url(), &owner.token, &[], &[]).await;
    let mut member_client = connect_reconnecting(&app.hub_url(), &member.token).await;

    sqlx::query("delete from memberships where user_id = $1 and tenant_id = $2")
        .bind(member.user_id)
        .bind(owner.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();

    assert_closed_for_good(&mut member_client).await;
    let group = format!("tenant:{}", owner.tenant_id);
    wait_for_users(&mut owner_client, "onlineUsers", &group, &[owner.user_id]).await;
    let owner_closed = owner_client
        .drain()
        .into_iter()
        .any(|line| line["event"] == "closed");
    assert!(!owner_closed, "the owner's connection was closed too");

    owner_client.stop().await;
    member_client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_closes_reconnectable() {
    let app = TestApp::spawn().await;
    let owner = app.register("Expiry").await;
    let node = Node::start(&app, json!({ "auth": { "access_token_ttl": "3s" } })).await;
    let email = app.email_of(owner.user_id).await;
    let login = app
        .client
        .post(format!("{}/api/v1/auth/login", node.base_url))
        .json(&json!({ "email": email, "password": TEST_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    let short_token = login["access_token"].as_str().unwrap();

    let mut client = connect_reconnecting(&node.hub_url(), short_token).await;

    let reconnecting = client
        .wait_for(|line| line["event"] == "reconnecting", WAIT)
        .await;
    let error = reconnecting["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("access token expired"),
        "close error: {error:?}"
    );
    // The only retry presents the same expired token, which negotiate rejects.
    client
        .wait_for(|line| line["event"] == "closed", WAIT)
        .await;

    client.stop().await;
    node.application.stop().await;
    app.stop().await;
}
