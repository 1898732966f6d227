//! Two hub nodes behind a round-robin balancer without session affinity: the official
//! `@microsoft/signalr` client on each transport joins a task, loses the node that owns its
//! connection, reconnects through the balancer, resumes, and receives every update once.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Account, HubClient, TestApp};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Updates sent before the kill, while the client reconnects, and after it resumed.
const UPDATES_PER_PHASE: i64 = 3;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_survive_node_kill() {
    resume_after_node_kill("websockets").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_survive_node_kill() {
    resume_after_node_kill("serversentevents").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_survives_node_kill() {
    resume_after_node_kill("longpolling").await;
}

/// Stateful reconnect across nodes: the WebSocket goes through a node that forwards it to
/// the owner, that node is killed, and the client's new WebSocket reaches the owner through
/// a third node. The owner resends what the client had not acknowledged, so the client
/// needs no `Resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_reconnect_survives_forwarder_kill() {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let account = app.register("Cluster").await;
    let task = app.create_task(&account, "Survive a forwarder").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let group = format!("task:{task_id}");

    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(HubNode::start(&app).await);
    }
    let balancer = Balancer::start(nodes.iter().map(|node| node.url.clone()).collect()).await;

    let args = [
        "--join-task".to_owned(),
        task_id.to_string(),
        "--stateful-reconnect".to_owned(),
    ];
    let mut client = HubClient::connect_with_args(&balancer.hub_url(), &account.token, &args).await;
    let joined = client
        .seen
        .iter()
        .find(|line| line["event"] == "joined")
        .cloned()
        .expect("the client joined the task");
    let join_seq = joined["result"]["seq"]
        .as_i64()
        .expect("join returns a seq");
    let mut version = task["version"].as_i64().expect("a task has a version");

    for _ in 0..UPDATES_PER_PHASE {
        version = patch_task(&app, &account, task_id, version).await;
    }
    let mut expected_last = join_seq + UPDATES_PER_PHASE;
    wait_for_seq(&mut client, &group, expected_last).await;

    let owner_url = connection_owner(&app.prefix).await;
    let owner = nodes.iter().position(|node| node.url == owner_url).unwrap();
    let forwarder = balancer.upgrade_backends()[0];
    assert_ne!(
        forwarder, owner,
        "the WebSocket went to the owner without forwarding"
    );
    nodes[forwarder].kill().await;

    for _ in 0..UPDATES_PER_PHASE {
        version = patch_task(&app, &account, task_id, version).await;
    }
    expected_last += UPDATES_PER_PHASE;
    wait_for_seq(&mut client, &group, expected_last).await;
    patch_task(&app, &account, task_id, version).await;
    expected_last += 1;
    wait_for_seq(&mut client, &group, expected_last).await;
    let late_lines = client.drain();
    client.seen.extend(late_lines);

    let upgrades = balancer.upgrade_backends();
    assert_eq!(
        upgrades.len(),
        2,
        "one WebSocket and one reconnect: {upgrades:?}"
    );
    assert_ne!(
        upgrades[1], owner,
        "the new WebSocket went to the owner without forwarding"
    );
    assert_ne!(
        upgrades[1], forwarder,
        "the new WebSocket went to the killed node"
    );
    let seqs = received_seqs(&client.seen, &group);
    let expected: Vec<i64> = (join_seq + 1..=expected_last).collect();
    assert_eq!(
        seqs, expected,
        "updates received across the stateful reconnect"
    );
    let event_ids: Vec<&str> = update_lines(&client.seen, &group)
        .map(|line| line["envelope"]["event_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = event_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        event_ids.len(),
        "duplicate event ids: {event_ids:?}"
    );

    client.stop().await;
    for node in &mut nodes {
        node.kill().await;
    }
    app.stop().await;
    eprintln!(
        "stateful reconnect across nodes took {:?}",
        started.elapsed()
    );
}

/// Runs the whole scenario on one transport. The in-process application provides the API
/// and the relay. The two hub nodes are child processes of the built binary, so killing
/// one ends its connections the way a crash does.
async fn resume_after_node_kill(transport: &str) {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let account = app.register("Cluster").await;
    let task = app.create_task(&account, "Survive a node").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let group = format!("task:{task_id}");

    let mut nodes = vec![HubNode::start(&app).await, HubNode::start(&app).await];
    let balancer = Balancer::start(nodes.iter().map(|node| node.url.clone()).collect()).await;

    let args = [
        "--join-task".to_owned(),
        task_id.to_string(),
        "--transport".to_owned(),
        transport.to_owned(),
        "--auto-reconnect".to_owned(),
    ];
    let mut client = HubClient::connect_with_args(&balancer.hub_url(), &account.token, &args).await;
    let joined = client
        .seen
        .iter()
        .find(|line| line["event"] == "joined")
        .cloned()
        .expect("the client joined the task");
    let join_seq = joined["result"]["seq"]
        .as_i64()
        .expect("join returns a seq");
    let mut version = task["version"].as_i64().expect("a task has a version");

    // Live updates before the kill.
    for _ in 0..UPDATES_PER_PHASE {
        version = patch_task(&app, &account, task_id, version).await;
    }
    let mut expected_last = join_seq + UPDATES_PER_PHASE;
    wait_for_seq(&mut client, &group, expected_last).await;

    // Kill the node that owns the connection, then update while the client reconnects.
    let owner_url = connection_owner(&app.prefix).await;
    let owner = nodes
        .iter()
        .position(|node| node.url == owner_url)
        .unwrap_or_else(|| panic!("owner {owner_url} is not one of the hub nodes"));
    nodes[owner].kill().await;
    for _ in 0..UPDATES_PER_PHASE {
        version = patch_task(&app, &account, task_id, version).await;
    }
    expected_last += UPDATES_PER_PHASE;
    client
        .wait_for(|line| line["event"] == "reconnected", WAIT)
        .await;

    let after_seq = received_seqs(&client.seen, &group)
        .into_iter()
        .max()
        .unwrap_or(join_seq);
    let resume = json!([[{ "group": group, "after_seq": after_seq }]]);
    let resumed = client.invoke("Resume", resume).await;
    assert_eq!(resumed["result"][0]["group"], group.as_str(), "{resumed}");
    assert!(
        resumed["result"][0].get("resync").is_none(),
        "the hub asked for a resync instead of replaying: {resumed}"
    );

    // Live updates after the resume, through the surviving node.
    for _ in 0..UPDATES_PER_PHASE {
        version = patch_task(&app, &account, task_id, version).await;
    }
    expected_last += UPDATES_PER_PHASE;
    wait_for_seq(&mut client, &group, expected_last).await;

    // One more update, so a late duplicate of an earlier one would arrive before it.
    patch_task(&app, &account, task_id, version).await;
    expected_last += 1;
    wait_for_seq(&mut client, &group, expected_last).await;
    let late_lines = client.drain();
    client.seen.extend(late_lines);

    let seqs = received_seqs(&client.seen, &group);
    let expected: Vec<i64> = (join_seq + 1..=expected_last).collect();
    assert_eq!(seqs, expected, "updates received on {transport}");
    let event_ids: Vec<&str> = update_lines(&client.seen, &group)
        .map(|line| line["envelope"]["event_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = event_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        event_ids.len(),
        "duplicate event ids: {event_ids:?}"
    );
    let reconnects = client
        .seen
        .iter()
        .filter(|line| line["event"] == "reconnected")
        .count();
    assert_eq!(reconnects, 1, "the client reconnected once");

    client.stop().await;
    for node in &mut nodes {
        node.kill().await;
    }
    app.stop().await;
    eprintln!(
        "{transport}: node kill and resume took {:?}",
        started.elapsed()
    );
}

/// Sends a `PATCH` that changes the title and returns the task's new version.
async fn patch_task(app: &TestApp, account: &Account, task_id: Uuid, version: i64) -> i64 {
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{task_id}")))
        .bearer_auth(&account.token)
        .header("if-match", format!("\"{version}\""))
        .json(&json!({ "title": format!("Version {}", version + 1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "PATCH of version {version}");
    version + 1
}

fn update_lines<'a>(lines: &'a [Value], group: &'a str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |line| {
        line["event"] == "message"
            && line["method"] == "taskUpdated"
            && line["envelope"]["group"] == group
    })
}

/// Returns the sequence numbers of the group's updates, in the order the client received them.
fn received_seqs(lines: &[Value], group: &str) -> Vec<i64> {
    update_lines(lines, group)
        .map(|line| line["envelope"]["seq"].as_i64().unwrap())
        .collect()
}

async fn wait_for_seq(client: &mut HubClient, group: &str, seq: i64) {
    client
        .wait_for(
            |line| {
                line["event"] == "message"
                    && line["envelope"]["group"] == group
                    && line["envelope"]["seq"] == seq
            },
            WAIT,
        )
        .await;
}

/// Reads the owner URL of the only hub connection recorded under the test's prefix.
async fn connection_owner(prefix: &str) -> String {
    let url = std::env::var("TASKLANE_REDIS__URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:hub:conn:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one recorded hub connection: {keys:?}");
    redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// A `tasklane run --roles hub` child process on its own port.
struct HubNode {
    url: String,
    child: Child,
}

impl HubNode {
    async fn start(app: &TestApp) -> Self {
        let port = free_port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(env!("CARGO_BIN_EXE_tasklane"))
            .args(["run", "--roles", "hub"])
            .env("TASKLANE_SERVER__BIND", address.to_string())
            .env("TASKLANE_DATABASE__URL", database_url(app).await)
            .env("TASKLANE_DATABASE__MAX_CONNECTIONS", "5")
            .env("TASKLANE_NAMESPACE__PREFIX", &app.prefix)
            .env("TASKLANE_LOG__FORMAT", "text")
            .env("TASKLANE_LOG__FILTER", "warn,sqlx=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting a hub node");
        let node = Self {
            url: format!("http://{address}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(address).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "hub node {address} did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node
    }

    /// Kills the process with SIGKILL, like a crash: no `Close` message, no cleanup.
    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Returns the test database's URL, built like the harness builds it, for the child
/// processes.
async fn database_url(app: &TestApp) -> String {
    let (database,): (String,) = sqlx::query_as("select current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let server = std::env::var("TASKLANE_DATABASE__URL")
        .unwrap_or_else(|_| "postgres://tasklane:tasklane@127.0.0.1:5432/tasklane".to_owned());
    let (base, _) = server.rsplit_once('/').expect("database URL ends in /NAME");
    format!("{base}/{database}")
}

/// A round-robin HTTP load balancer with no session affinity: every request, even on a
/// kept-alive client connection, goes to the next backend, and a backend that refuses TCP
/// connections is skipped, as nginx skips a failed upstream.
struct Balancer {
    address: SocketAddr,
    backends: Arc<Backends>,
}

struct Backends {
    urls: Vec<String>,
    next: AtomicUsize,
    client: reqwest::Client,
    /// Index of the backend that each upgrade request went to, in order.
    upgrades: Mutex<Vec<usize>>,
}

impl Balancer {
    async fn start(urls: Vec<String>) -> Self {
        let backends = Arc::new(Backends {
            urls,
            next: AtomicUsize::new(0),
            client: tasklane_hub::forwarding_client(),
            upgrades: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(balance)
            .with_state(Arc::clone(&backends));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { address, backends }
    }

    /// Returns the backend index of each upgrade request so far.
    fn upgrade_backends(&self) -> Vec<usize> {
        self.backends.upgrades.lock().unwrap().clone()
    }

    fn hub_url(&self) -> String {
        format!("http://{}/hubs/tasks", self.address)
    }
}

async fn balance(State(backends): State<Arc<Backends>>, request: Request) -> Response {
    let start = backends.next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..backends.urls.len() {
        let index = (start + offset) % backends.urls.len();
        let url = &backends.urls[index];
        let address = url.trim_start_matches("http://");
        if TcpStream::connect(address).await.is_err() {
            continue;
        }
        if request.headers().contains_key("upgrade") {
            backends.upgrades.lock().unwrap().push(index);
        }
        return match tasklane_hub::forward_request(&backends.client, url, request).await {
            Ok(response) => response,
            Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
        };
    }
    (StatusCode::BAD_GATEWAY, "no hub node is reachable").into_response()
}
