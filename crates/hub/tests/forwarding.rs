//! Two hubs on loopback sharing an in-memory owner registry: requests for a connection that
//! the other node negotiated are forwarded to it, on every transport.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{connect_ws, principal, token_for, HubClient, TestBackend, RECORD_SEPARATOR, WAIT};
use futures::StreamExt as _;
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tasklane_hub::{
    owner_key, ConnectionOwners, Hub, HubCluster, HubMessage, HubSettings, OwnersUnavailable,
    Principal,
};
use uuid::Uuid;

const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// Owner records in a map, ignoring the TTL.
#[derive(Default)]
struct MemoryOwners {
    records: Mutex<HashMap<String, String>>,
}

#[async_trait::async_trait]
impl ConnectionOwners for MemoryOwners {
    async fn register(
        &self,
        key: &str,
        owner_url: &str,
        _ttl: Duration,
    ) -> Result<(), OwnersUnavailable> {
        self.records
            .lock()
            .insert(key.to_owned(), owner_url.to_owned());
        Ok(())
    }

    async fn owner(&self, key: &str) -> Result<Option<String>, OwnersUnavailable> {
        Ok(self.records.lock().get(key).cloned())
    }

    async fn remove(&self, key: &str) -> Result<(), OwnersUnavailable> {
        self.records.lock().remove(key);
        Ok(())
    }
}

/// A registry that is always down, like Redis during an outage.
struct UnreachableOwners;

#[async_trait::async_trait]
impl ConnectionOwners for UnreachableOwners {
    async fn register(&self, _: &str, _: &str, _: Duration) -> Result<(), OwnersUnavailable> {
        Err(OwnersUnavailable("connection refused".to_owned()))
    }

    async fn owner(&self, _: &str) -> Result<Option<String>, OwnersUnavailable> {
        Err(OwnersUnavailable("connection refused".to_owned()))
    }

    async fn remove(&self, _: &str) -> Result<(), OwnersUnavailable> {
        Err(OwnersUnavailable("connection refused".to_owned()))
    }
}

/// One hub node served on loopback.
struct Node {
    hub: Hub,
    address: SocketAddr,
}

impl Node {
    async fn start(owners: Arc<dyn ConnectionOwners>, registration_ttl: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut cluster = HubCluster::new(owners, format!("http://{address}"));
        cluster.registration_ttl = registration_ttl;
        let backend = Arc::new(TestBackend::default());
        let hub = Hub::with_cluster(backend, HubSettings::default(), Some(cluster));
        let router = hub.router();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { hub, address }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn hub_url(&self, token: &str) -> String {
        format!("http://{}/hubs/tasks?id={token}", self.address)
    }

    /// Negotiates version 1 as `user` and returns the connection token.
    async fn negotiate(&self, http: &reqwest::Client, user: &Principal) -> String {
        let response = http
            .post(format!(
                "http://{}/hubs/tasks/negotiate?negotiateVersion=1",
                self.address
            ))
            .bearer_auth(token_for(user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["connectionToken"].as_str().unwrap().to_owned()
    }

    async fn wait_for_connection(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.hub.connection_count() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection on {}",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Dispatches a message to `user`'s own group, which every connection joins.
    fn publish_to(&self, user: &Principal, seq: i64) {
        self.hub.dispatch(&HubMessage {
            group: user.user_group(),
            seq,
            event_id: Uuid::new_v4(),
            event_type: "test.event".to_owned(),
            method: "notification".to_owned(),
            data: json!({ "seq": seq }),
        });
    }
}

async fn two_nodes() -> (Arc<MemoryOwners>, Node, Node) {
    let owners = Arc::new(MemoryOwners::default());
    let ttl = Duration::from_secs(30);
    let first = Node::start(owners.clone(), ttl).await;
    let second = Node::start(owners.clone(), ttl).await;
    (owners, first, second)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Parses the JSON records of a response body, without pings.
fn records(text: &str) -> Vec<Value> {
    text.split_terminator(RECORD_SEPARATOR)
        .map(|record| serde_json::from_str::<Value>(record).unwrap())
        .filter(|record| record["type"] != 6)
        .collect()
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    user: &Principal,
    body: &str,
) -> (StatusCode, String) {
    let response = tokio::time::timeout(
        WAIT,
        http.request(method, url)
            .bearer_auth(token_for(user))
            .body(body.to_owned())
            .send(),
    )
    .await
    .expect("the hub responded in time")
    .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn poll(http: &reqwest::Client, url: &str, user: &Principal) -> (StatusCode, String) {
    let response = tokio::time::timeout(WAIT, http.get(url).bearer_auth(token_for(user)).send())
        .await
        .expect("the poll returned in time")
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn long_polling_crosses_nodes() {
    let (owners, first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();
    let token = first.negotiate(&http, &user).await;

    assert_eq!(
        owners.records.lock().get(&owner_key(&token)),
        Some(&first.url()),
        "negotiate records its node as the owner"
    );
    let (status, body) = poll(&http, &second.hub_url(&token), &user).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "first poll through the other node: {body}"
    );
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &second.hub_url(&token),
        &user,
        HANDSHAKE,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "handshake through the other node: {body}"
    );
    let (status, body) = poll(&http, &first.hub_url(&token), &user).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(records(&body), vec![json!({})], "handshake response");

    first.publish_to(&user, 1);
    let (status, body) = poll(&http, &second.hub_url(&token), &user).await;
    assert_eq!(status, StatusCode::OK);
    let messages = records(&body);
    assert_eq!(messages.len(), 1, "{body}");
    assert_eq!(messages[0]["target"], "notification");
    assert_eq!(messages[0]["arguments"][0]["seq"], 1);

    let (status, _) = send(
        &http,
        reqwest::Method::DELETE,
        &second.hub_url(&token),
        &user,
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "delete through the other node"
    );
}

#[tokio::test]
async fn event_stream_crosses_nodes() {
    let (_owners, first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();
    let token = first.negotiate(&http, &user).await;

    let response = http
        .get(second.hub_url(&token))
        .bearer_auth(token_for(&user))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream();

    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &second.hub_url(&token),
        &user,
        HANDSHAKE,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "handshake: {body}");
    let mut received = String::new();
    read_until(&mut events, &mut received, "data: {}").await;

    first.publish_to(&user, 7);
    read_until(&mut events, &mut received, "\"seq\":7").await;
}

/// Reads the stream into `received` until it contains `expected`.
async fn read_until(
    events: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    received: &mut String,
    expected: &str,
) {
    while !received.contains(expected) {
        let chunk = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {expected:?} in the event stream: {received:?}"))
            .expect("the event stream is open")
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn websocket_crosses_nodes() {
    let (_owners, first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();
    let token = first.negotiate(&http, &user).await;

    let url = format!("ws://{}/hubs/tasks?id={token}", second.address);
    let socket = connect_ws(&url, Some(&token_for(&user)))
        .await
        .expect("the WebSocket upgrade is forwarded");
    let mut client = HubClient::new(socket);
    client.handshake().await;
    first.wait_for_connection().await;

    first.publish_to(&user, 3);
    let record = client.next_record().await;
    assert_eq!(record["target"], "notification");
    assert_eq!(record["arguments"][0]["seq"], 3);
    assert_eq!(
        second.hub.connection_count(),
        0,
        "the other node only forwards"
    );
}

#[tokio::test]
async fn unreachable_owner_is_404() {
    let (owners, _first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();
    let token = "token-of-a-dead-node";
    // A port that was free a moment ago, so nothing listens on it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    owners.records.lock().insert(owner_key(token), dead_url);

    let (status, body) = poll(&http, &second.hub_url(token), &user).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("negotiate again"), "{body}");
}

#[tokio::test]
async fn unrecorded_token_is_404() {
    let (_owners, _first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();

    let (status, body) = poll(&http, &second.hub_url("never-negotiated"), &user).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("negotiate again"), "{body}");
}

#[tokio::test]
async fn forwarded_request_is_not_forwarded_again() {
    let (_owners, first, second) = two_nodes().await;
    let http = http_client();
    let user = principal();
    let token = first.negotiate(&http, &user).await;

    let response = http
        .get(second.hub_url(&token))
        .bearer_auth(token_for(&user))
        .header("x-tasklane-hub-forwarded-by", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owner_record_removed_after_connection_ends() {
    let owners = Arc::new(MemoryOwners::default());
    let node = Node::start(owners.clone(), Duration::from_millis(300)).await;
    let http = http_client();
    let user = principal();
    let token = node.negotiate(&http, &user).await;
    let key = owner_key(&token);
    let (status, _) = poll(&http, &node.hub_url(&token), &user).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = send(
        &http,
        reqwest::Method::DELETE,
        &node.hub_url(&token),
        &user,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let deadline = tokio::time::Instant::now() + WAIT;
    while owners.records.lock().contains_key(&key) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner record outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreachable_registry_keeps_local_connections() {
    let node = Node::start(Arc::new(UnreachableOwners), Duration::from_secs(30)).await;
    let http = http_client();
    let user = principal();
    let token = node.negotiate(&http, &user).await;

    let (status, body) = poll(&http, &node.hub_url(&token), &user).await;
    assert_eq!(status, StatusCode::OK, "first poll: {body}");
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &node.hub_url(&token),
        &user,
        HANDSHAKE,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "handshake: {body}");
    let (status, body) = poll(&http, &node.hub_url(&token), &user).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(records(&body), vec![json!({})], "handshake response");
}
