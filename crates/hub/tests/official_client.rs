//! Interoperability with the official JavaScript client (`@microsoft/signalr`), driven
//! through `tests/js/hub-client.mjs`. Needs Node.js 18 or later and
//! `npm ci --prefix tests/js` run from the repository root.

mod common;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::{principal, token_for, TestServer, WAIT};
use serde_json::{json, Value};
use tasklane_hub::{CloseReason, HubMessage, Principal};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use uuid::Uuid;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js")
}

/// A running `hub-client.mjs` process and its stdout, one JSON event per line.
struct NodeClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeClient {
    async fn spawn(url: &str, token: &str, extra_args: &[String]) -> Self {
        let dir = js_dir();
        assert!(
            dir.join("node_modules/@microsoft/signalr").is_dir(),
            "the official SignalR client is not installed in {}: run `npm ci --prefix tests/js` \
             from the repository root",
            dir.display()
        );

        let mut child = Command::new("node")
            .arg(dir.join("hub-client.mjs"))
            .args(["--url", url, "--token", token])
            .args(extra_args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("failed to start `node` (Node.js 18 or later must be on PATH): {error}")
            });
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Reads the next event line, failing if none arrives within [`WAIT`].
    async fn next_event(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("hub-client printed an event in time")
            .expect("hub-client stdout is readable")
            .expect("hub-client printed an event before exiting");
        serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("hub-client printed invalid JSON {line:?}: {error}"))
    }

    /// Reads events up to and including the first with `"event": name`. Returns the
    /// events before it.
    async fn events_until(&mut self, name: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            if event["event"] == name {
                return events;
            }
            events.push(event);
        }
    }

    /// Closes stdin, which makes the client stop its connection and exit.
    async fn stop(mut self) -> ExitStatus {
        drop(self.child.stdin.take());
        self.wait().await
    }

    async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("hub-client exited in time")
            .unwrap()
    }
}

fn message(group: &str, seq: i64, method: &str, data: Value) -> HubMessage {
    HubMessage {
        group: group.to_owned(),
        seq,
        event_id: Uuid::new_v4(),
        event_type: format!("{method}.test"),
        method: method.to_owned(),
        data,
    }
}

/// Dispatches a `notification` that marks the end of a test's messages.
fn publish_sentinel(server: &TestServer, user: &Principal, seq: i64) {
    server.hub.dispatch(&message(
        &user.user_group(),
        seq,
        "notification",
        json!({"sentinel": true}),
    ));
}

/// Collects `message` events up to and including the sentinel notification.
async fn messages_until_sentinel(client: &mut NodeClient) -> Vec<Value> {
    let mut messages = Vec::new();
    loop {
        let event = client.next_event().await;
        assert_eq!(event["event"], "message", "unexpected event {event}");
        let is_sentinel = event["envelope"]["data"]["sentinel"] == true;
        messages.push(event);
        if is_sentinel {
            return messages;
        }
    }
}

// Multi-threaded like the production runtime, so dispatch and the connection tasks run
// in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_joins_and_receives_ordered_events() {
    joins_and_receives_ordered_events("websockets").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_over_server_sent_events() {
    joins_and_receives_ordered_events("serversentevents").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_over_long_polling() {
    joins_and_receives_ordered_events("longpolling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_with_messagepack() {
    joins_and_receives_ordered_events_with("websockets", "messagepack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_with_messagepack_over_long_polling() {
    joins_and_receives_ordered_events_with("longpolling", "messagepack").await;
}

/// Joins a task, a job and an unknown task with the official client on `transport`, then
/// checks that exactly the messages after each grant arrive, in order.
async fn joins_and_receives_ordered_events(transport: &str) {
    joins_and_receives_ordered_events_with(transport, "json").await;
}

async fn joins_and_receives_ordered_events_with(transport: &str, protocol: &str) {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server
        .backend
        .add_task(user.tenant_id, 3, json!({"title": "Plan"}));
    let job_id = server
        .backend
        .add_job(user.tenant_id, 0, json!({"state": "running"}));
    let unknown_task = Uuid::new_v4();
    let args = [
        "--transport".to_owned(),
        transport.to_owned(),
        "--protocol".to_owned(),
        protocol.to_owned(),
        "--join-task".to_owned(),
        task_id.to_string(),
        "--join-job".to_owned(),
        job_id.to_string(),
        "--join-task".to_owned(),
        unknown_task.to_string(),
    ];
    let mut client = NodeClient::spawn(&server.http_url(), &token_for(&user), &args).await;

    let joins = client.events_until("ready").await;
    assert_eq!(
        joins,
        vec![
            json!({
                "event": "joined",
                "kind": "task",
                "id": task_id.to_string(),
                "result": {"group": format!("task:{task_id}"), "seq": 3, "snapshot": {"title": "Plan"}}
            }),
            json!({
                "event": "joined",
                "kind": "job",
                "id": job_id.to_string(),
                "result": {"group": format!("job:{job_id}"), "seq": 0, "snapshot": {"state": "running"}}
            }),
            json!({
                "event": "error",
                "stage": "join",
                "kind": "task",
                "id": unknown_task.to_string(),
                "message": format!("task {unknown_task} not found")
            }),
        ]
    );

    let task_group = format!("task:{task_id}");
    let job_group = format!("job:{job_id}");
    let published = [
        message(&task_group, 1, "taskUpdated", json!({"n": 1})),
        message(&task_group, 2, "taskUpdated", json!({"n": 2})),
        message(&job_group, 1, "jobProgress", json!({"percent": 10})),
        message(&task_group, 3, "taskUpdated", json!({"n": 3})),
        message(&task_group, 4, "taskUpdated", json!({"n": 4})),
        message(&user.user_group(), 1, "notification", json!({"text": "hi"})),
        message(&task_group, 4, "taskUpdated", json!({"n": 4})),
        message(&task_group, 5, "taskUpdated", json!({"n": 5})),
        message(&job_group, 2, "jobProgress", json!({"percent": 20})),
        message(&format!("task:{unknown_task}"), 1, "taskUpdated", json!({})),
        message(&task_group, 6, "taskUpdated", json!({"n": 6})),
    ];
    for message in &published {
        server.hub.dispatch(message);
    }
    publish_sentinel(&server, &user, 2);
    let received = messages_until_sentinel(&mut client).await;

    let summary: Vec<(String, String, i64)> = received
        .iter()
        .map(|event| {
            (
                event["method"].as_str().unwrap().to_owned(),
                event["envelope"]["group"].as_str().unwrap().to_owned(),
                event["envelope"]["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, i64)> = [
        ("jobProgress", &job_group, 1),
        ("taskUpdated", &task_group, 4),
        ("notification", &user.user_group(), 1),
        ("taskUpdated", &task_group, 5),
        ("jobProgress", &job_group, 2),
        ("taskUpdated", &task_group, 6),
        ("notification", &user.user_group(), 2),
    ]
    .into_iter()
    .map(|(method, group, seq)| (method.to_owned(), group.clone(), seq))
    .collect();
    assert_eq!(summary, expected);

    let first_task_update = &published[4];
    assert_eq!(
        received[1]["envelope"],
        json!({
            "event_id": first_task_update.event_id,
            "group": task_group,
            "seq": 4,
            "type": "taskUpdated.test",
            "data": {"n": 4}
        })
    );

    let status = client.stop().await;
    assert!(status.success(), "hub-client exited with {status}");
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn official_client_connects_without_negotiate() {
    let server = TestServer::start().await;
    let user = principal();
    let args = [
        "--transport".to_owned(),
        "websockets".to_owned(),
        "--skip-negotiation".to_owned(),
    ];
    let mut client = NodeClient::spawn(&server.http_url(), &token_for(&user), &args).await;

    let before_ready = client.events_until("ready").await;
    publish_sentinel(&server, &user, 1);
    let received = messages_until_sentinel(&mut client).await;

    assert!(before_ready.is_empty(), "{before_ready:?}");
    assert_eq!(received.len(), 1);
    let status = client.stop().await;
    assert!(status.success(), "hub-client exited with {status}");
}

#[tokio::test]
async fn official_client_reports_rejected_token() {
    let server = TestServer::start().await;

    let mut client = NodeClient::spawn(&server.http_url(), "not-a-valid-token", &[]).await;
    let event = client.next_event().await;
    let status = client.wait().await;

    assert_eq!(event["event"], "error");
    assert_eq!(event["stage"], "start");
    let message = event["message"].as_str().unwrap();
    assert!(message.contains("401"), "{message}");
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn official_client_sees_shutdown_close() {
    sees_shutdown_close("websockets").await;
}

#[tokio::test]
async fn official_client_sees_shutdown_close_over_server_sent_events() {
    sees_shutdown_close("serversentevents").await;
}

#[tokio::test]
async fn official_client_sees_shutdown_close_over_long_polling() {
    sees_shutdown_close("longpolling").await;
}

async fn sees_shutdown_close(transport: &str) {
    let server = TestServer::start().await;
    let user = principal();
    let args = ["--transport".to_owned(), transport.to_owned()];
    let mut client = NodeClient::spawn(&server.http_url(), &token_for(&user), &args).await;
    client.events_until("ready").await;

    tokio::time::timeout(WAIT, server.hub.shutdown())
        .await
        .expect("shutdown finishes");
    let event = client.next_event().await;
    let status = client.wait().await;

    assert_eq!(event, json!({"event": "closed", "error": null}));
    assert_eq!(status.code(), Some(1));
}

// Revoking access rejects the client's credential before the hub closes its connection.
// A long polling client that polls in between must still end with the `Close` message
// instead of reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_client_revoked_before_close() {
    let server = TestServer::start().await;
    let user = principal();
    let args = [
        "--transport".to_owned(),
        "longpolling".to_owned(),
        "--auto-reconnect".to_owned(),
    ];
    let mut client = NodeClient::spawn(&server.http_url(), &token_for(&user), &args).await;
    client.events_until("ready").await;
    // Lets the client's next poll reach the hub, so one is waiting when access is revoked.
    // A poll sent after the revocation would wait for the close, and the close drops the
    // message below.
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.backend.revoke(user.user_id);
    // The message ends the waiting poll, so the client polls again with a rejected token.
    publish_sentinel(&server, &user, 1);
    let received = client.next_event().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let closed = server
        .hub
        .close_user(user.user_id, CloseReason::AccessRevoked);
    let mut before_close = Vec::new();
    let close_event = loop {
        let event = client.next_event().await;
        if event["event"] == "closed" {
            break event;
        }
        before_close.push(event);
    };
    let status = client.wait().await;

    assert_eq!(received["event"], "message", "{received}");
    assert_eq!(closed, 1);
    assert!(
        before_close.is_empty(),
        "events before the close: {before_close:?}"
    );
    let error = close_event["error"].as_str().unwrap_or_default();
    assert!(error.contains("access revoked"), "{close_event}");
    assert_eq!(status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_resumes_after_reconnect() {
    resumes_after_reconnect("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_resumes_with_messagepack() {
    resumes_after_reconnect("messagepack").await;
}

/// Receives messages 1 to 5 with one client, then resumes after 2 with a second client on
/// `protocol`, which must receive 3 to 5 once and then the live message 6.
async fn resumes_after_reconnect(protocol: &str) {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    let join_args = ["--join-task".to_owned(), task_id.to_string()];
    let mut first = NodeClient::spawn(&server.http_url(), &token_for(&user), &join_args).await;
    first.events_until("ready").await;
    for seq in 1..=5 {
        server.publish(&group, seq, "taskUpdated");
    }
    let mut received_first = Vec::new();
    for _ in 0..5 {
        received_first.push(first.next_event().await["envelope"]["seq"].as_i64());
    }
    let status = first.stop().await;
    assert!(status.success(), "first hub-client exited with {status}");

    let resume_args = [
        "--resume".to_owned(),
        format!("{group}:2"),
        "--protocol".to_owned(),
        protocol.to_owned(),
    ];
    let mut second = NodeClient::spawn(&server.http_url(), &token_for(&user), &resume_args).await;
    let before_ready = second.events_until("ready").await;
    server.publish(&group, 6, "taskUpdated");
    let live = second.next_event().await;

    let missed: Vec<Option<i64>> = before_ready
        .iter()
        .filter(|event| event["event"] == "message")
        .map(|event| event["envelope"]["seq"].as_i64())
        .collect();
    let resumed: Vec<&Value> = before_ready
        .iter()
        .filter(|event| event["event"] == "resumed")
        .collect();
    assert_eq!(
        received_first,
        [Some(1), Some(2), Some(3), Some(4), Some(5)]
    );
    assert_eq!(missed, [Some(3), Some(4), Some(5)]);
    assert_eq!(
        resumed,
        [&json!({"event": "resumed", "result": [{"group": group, "seq": 5}]})]
    );
    assert_eq!(live["event"], "message");
    assert_eq!(live["envelope"]["seq"], 6);
    let status = second.stop().await;
    assert!(status.success(), "second hub-client exited with {status}");
}

/// A TCP proxy in front of the hub whose open connections a test can cut, as a network
/// failure would, while new connections still go through.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    links: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttingProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let accepted_links = std::sync::Arc::clone(&links);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                accepted_links.lock().push(link);
            }
        });
        Self { addr, links }
    }

    fn hub_url(&self) -> String {
        format!("http://{}/hubs/tasks", self.addr)
    }

    /// Drops every open connection without a WebSocket close frame.
    fn cut(&self) {
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_survives_lost_websocket_with_stateful_reconnect() {
    survives_lost_websocket("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_stateful_reconnect_with_messagepack() {
    survives_lost_websocket("messagepack").await;
}

/// Cuts the client's WebSocket while messages are published, and checks that the client
/// reconnects by itself and receives every message exactly once.
async fn survives_lost_websocket(protocol: &str) {
    let server = TestServer::start().await;
    let proxy = CuttingProxy::start(server.addr).await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    let args = [
        "--protocol".to_owned(),
        protocol.to_owned(),
        "--stateful-reconnect".to_owned(),
        "--join-task".to_owned(),
        task_id.to_string(),
    ];
    let mut client = NodeClient::spawn(&proxy.hub_url(), &token_for(&user), &args).await;
    client.events_until("ready").await;
    server.publish(&group, 1, "taskUpdated");
    let first = client.next_event().await;

    proxy.cut();
    for seq in 2..=4 {
        server.publish(&group, seq, "taskUpdated");
    }
    let mut after_cut = Vec::new();
    for _ in 2..=4 {
        after_cut.push(client.next_event().await);
    }
    server.publish(&group, 5, "taskUpdated");
    let last = client.next_event().await;

    assert_eq!(first["envelope"]["seq"], 1);
    let seqs: Vec<&Value> = after_cut
        .iter()
        .map(|event| &event["envelope"]["seq"])
        .collect();
    assert_eq!(seqs, [&json!(2), &json!(3), &json!(4)], "{after_cut:?}");
    assert_eq!(last["envelope"]["seq"], 5, "{last}");
    assert_eq!(server.hub.connection_count(), 1);
    let status = client.stop().await;
    assert!(status.success(), "hub-client exited with {status}");
}
