//! Test harness: an in-memory backend, a hub served on 127.0.0.1, and a raw WebSocket
//! client that speaks the JSON hub protocol.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tasklane_hub::{
    AuthRejected, CatchUp, Hub, HubBackend, HubMessage, HubSettings, JoinError, JoinGrant,
    JoinTarget, Principal,
};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const RECORD_SEPARATOR: char = '\u{1e}';
/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn principal() -> Principal {
    Principal::new(Uuid::new_v4(), Uuid::new_v4())
}

/// Returns the bearer token that [`TestBackend`] accepts for `principal`.
pub fn token_for(principal: &Principal) -> String {
    format!("user-{}-tenant-{}", principal.user_id, principal.tenant_id)
}

/// Returns a token that [`TestBackend`] accepts for `principal`, with the expiry
/// `expires_at` given in whole seconds since the Unix epoch.
pub fn expiring_token_for(principal: &Principal, expires_at: SystemTime) -> String {
    let seconds = expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    format!("{}-expires-{seconds}", token_for(principal))
}

fn parse_token(token: &str) -> Option<Principal> {
    let rest = token.strip_prefix("user-")?;
    let (user, tenant) = rest.split_once("-tenant-")?;
    let (tenant, expires_at) = match tenant.split_once("-expires-") {
        Some((tenant, seconds)) => {
            let seconds: u64 = seconds.parse().ok()?;
            (tenant, Some(UNIX_EPOCH + Duration::from_secs(seconds)))
        }
        None => (tenant, None),
    };
    let mut principal = Principal::new(Uuid::parse_str(user).ok()?, Uuid::parse_str(tenant).ok()?);
    principal.expires_at = expires_at;
    Some(principal)
}

struct Entity {
    tenant_id: Uuid,
    seq: i64,
    snapshot: Value,
}

/// A join that waits until the test releases it.
struct Gate {
    started: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// Accepts tokens `user-<uuid>-tenant-<uuid>`, grants joins of the tasks and jobs added to
/// it within their tenant, and keeps the history of every message published through
/// [`TestServer::publish`] for catch-up.
#[derive(Default)]
pub struct TestBackend {
    tasks: Mutex<HashMap<Uuid, Entity>>,
    jobs: Mutex<HashMap<Uuid, Entity>>,
    gates: Mutex<HashMap<Uuid, Gate>>,
    catch_up_gates: Mutex<HashMap<String, Gate>>,
    failing: Mutex<Vec<Uuid>>,
    history: Mutex<HashMap<String, Vec<HubMessage>>>,
    /// Users whose tokens no longer authenticate.
    revoked: Mutex<Vec<Uuid>>,
}

impl TestBackend {
    pub fn add_task(&self, tenant_id: Uuid, seq: i64, snapshot: Value) -> Uuid {
        let id = Uuid::new_v4();
        let entity = Entity {
            tenant_id,
            seq,
            snapshot,
        };
        self.tasks.lock().insert(id, entity);
        id
    }

    pub fn add_job(&self, tenant_id: Uuid, seq: i64, snapshot: Value) -> Uuid {
        let id = Uuid::new_v4();
        let entity = Entity {
            tenant_id,
            seq,
            snapshot,
        };
        self.jobs.lock().insert(id, entity);
        id
    }

    /// Makes the next join of `task_id` wait. The returned receiver completes when the
    /// join has started, and the join continues when the returned sender is used or dropped.
    pub fn gate_task(&self, task_id: Uuid) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let gate = Gate {
            started: started_tx,
            release: release_rx,
        };
        self.gates.lock().insert(task_id, gate);
        (started_rx, release_tx)
    }

    /// Rejects every token of `user_id` from now on, as revoking a user's access does
    /// before the hub closes their connections.
    pub fn revoke(&self, user_id: Uuid) {
        self.revoked.lock().push(user_id);
    }

    /// Makes joins of `task_id` fail with an internal error.
    pub fn fail_task(&self, task_id: Uuid) {
        self.failing.lock().push(task_id);
    }

    /// Makes the next catch-up of `group` wait after it has read the history, like
    /// [`Self::gate_task`].
    pub fn gate_catch_up(&self, group: &str) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let gate = Gate {
            started: started_tx,
            release: release_rx,
        };
        self.catch_up_gates.lock().insert(group.to_owned(), gate);
        (started_rx, release_tx)
    }

    pub fn record(&self, message: &HubMessage) {
        self.history
            .lock()
            .entry(message.group.clone())
            .or_default()
            .push(message.clone());
    }

    /// Drops the history of `group` before `seq`, as a retention limit would.
    pub fn forget_before(&self, group: &str, seq: i64) {
        if let Some(messages) = self.history.lock().get_mut(group) {
            messages.retain(|message| message.seq >= seq);
        }
    }
}

#[async_trait::async_trait]
impl HubBackend for TestBackend {
    async fn authenticate(&self, bearer_token: &str) -> Result<Principal, AuthRejected> {
        let principal =
            parse_token(bearer_token).ok_or_else(|| AuthRejected::new("unknown test token"))?;
        if self.revoked.lock().contains(&principal.user_id) {
            return Err(AuthRejected::new("revoked test token"));
        }
        Ok(principal)
    }

    async fn join(
        &self,
        principal: &Principal,
        target: JoinTarget,
    ) -> Result<JoinGrant, JoinError> {
        let gate = self.gates.lock().remove(&target.id());
        if let Some(gate) = gate {
            let _ = gate.started.send(());
            let _ = gate.release.await;
        }
        if self.failing.lock().contains(&target.id()) {
            return Err(JoinError::Internal("test backend failure".to_owned()));
        }

        let entities = match target {
            JoinTarget::Task(_) => &self.tasks,
            JoinTarget::Job(_) => &self.jobs,
        };
        let entities = entities.lock();
        let entity = entities.get(&target.id()).ok_or(JoinError::NotFound)?;
        if entity.tenant_id != principal.tenant_id {
            return Err(JoinError::Forbidden);
        }
        Ok(JoinGrant {
            group: target.group(),
            seq: entity.seq,
            snapshot: entity.snapshot.clone(),
        })
    }

    /// Returns the recorded messages after `after_seq`, or `Resync` unless the history
    /// starts at `after_seq + 1` or earlier.
    async fn catch_up(
        &self,
        _principal: &Principal,
        group: &str,
        after_seq: i64,
    ) -> Result<CatchUp, JoinError> {
        let messages = self.history.lock().get(group).cloned().unwrap_or_default();
        let gate = self.catch_up_gates.lock().remove(group);
        if let Some(gate) = gate {
            let _ = gate.started.send(());
            let _ = gate.release.await;
        }

        let first_seq = messages.first().map(|message| message.seq);
        if first_seq.is_some_and(|first_seq| first_seq > after_seq + 1) {
            return Ok(CatchUp::Resync);
        }
        let missed = messages
            .into_iter()
            .filter(|message| message.seq > after_seq)
            .collect();
        Ok(CatchUp::Messages(missed))
    }
}

pub struct TestServer {
    pub hub: Hub,
    pub backend: Arc<TestBackend>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(HubSettings::default()).await
    }

    pub async fn start_with(settings: HubSettings) -> Self {
        let backend = Arc::new(TestBackend::default());
        let hub = Hub::new(backend.clone(), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = hub.router();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { hub, backend, addr }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}/hubs/tasks", self.addr)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/hubs/tasks{query}", self.addr)
    }

    /// Sends a request to the hub router without a socket.
    pub async fn request(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.hub.router().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Calls negotiate with `query` and a bearer header when `token` is given.
    pub async fn negotiate_raw(&self, query: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::post(format!("/hubs/tasks/negotiate{query}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.request(request.body(Body::empty()).unwrap()).await
    }

    /// Negotiates version 1 and returns the connection token.
    pub async fn negotiate(&self, token: &str) -> String {
        let (status, body) = self.negotiate_raw("?negotiateVersion=1", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "negotiate failed: {body}");
        let response: Value = serde_json::from_str(&body).unwrap();
        response["connectionToken"].as_str().unwrap().to_owned()
    }

    /// Negotiates, connects and completes the handshake.
    pub async fn connect(&self, principal: &Principal) -> HubClient {
        let token = token_for(principal);
        let connection_token = self.negotiate(&token).await;
        let socket = connect_ws(
            &self.ws_url(&format!("?id={connection_token}")),
            Some(&token),
        )
        .await
        .expect("WebSocket connect succeeds");
        let mut client = HubClient::new(socket);
        client.handshake().await;
        client
    }

    /// Builds a test message whose data is `{"seq": seq}`.
    pub fn message(&self, group: &str, seq: i64, method: &str) -> HubMessage {
        HubMessage {
            group: group.to_owned(),
            seq,
            event_id: Uuid::new_v4(),
            event_type: "test.event".to_owned(),
            method: method.to_owned(),
            data: json!({ "seq": seq }),
        }
    }

    /// Records a message in the backend's history and dispatches it, as the relay does.
    pub fn publish(&self, group: &str, seq: i64, method: &str) -> HubMessage {
        let message = self.message(group, seq, method);
        self.backend.record(&message);
        self.hub.dispatch(&message);
        message
    }

    /// Waits until the hub reports `count` connections.
    pub async fn wait_for_connections(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.hub.connection_count() != count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} connections, hub has {}",
                self.hub.connection_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket, with a bearer header when `token` is given.
pub async fn connect_ws(url: &str, token: Option<&str>) -> Result<WsStream, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    let (socket, _response) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// Returns the HTTP status with which the server refused a WebSocket connect.
pub async fn refused_status(url: &str, token: Option<&str>) -> StatusCode {
    match connect_ws(url, token).await {
        Ok(_) => panic!("WebSocket connect to {url} succeeded, expected a refusal"),
        Err(tungstenite::Error::Http(response)) => response.status(),
        Err(other) => panic!("WebSocket connect to {url} failed without a status: {other}"),
    }
}

/// What the raw client read next.
#[derive(Debug)]
pub enum Received {
    Record(Value),
    /// The WebSocket closed or failed.
    Closed,
}

/// A raw JSON hub protocol client.
pub struct HubClient {
    pub socket: WsStream,
    pending: VecDeque<Value>,
    partial: String,
}

impl HubClient {
    pub fn new(socket: WsStream) -> Self {
        Self {
            socket,
            pending: VecDeque::new(),
            partial: String::new(),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .unwrap();
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&format!("{message}{RECORD_SEPARATOR}"))
            .await;
    }

    pub async fn handshake(&mut self) {
        self.send(json!({"protocol": "json", "version": 1})).await;
        let response = self.next_record().await;
        assert_eq!(response, json!({}), "handshake response");
    }

    pub async fn invoke(&mut self, id: &str, target: &str, arguments: Value) {
        self.send(json!({
            "type": 1,
            "invocationId": id,
            "target": target,
            "arguments": arguments,
        }))
        .await;
    }

    /// Reads the next record or the end of the connection, including pings.
    pub async fn receive(&mut self) -> Received {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Received::Record(record);
            }
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the server sent something in time");
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("server sent a binary message"),
                Some(Ok(Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Received::Closed,
            };
            self.partial.push_str(text.as_str());
            while let Some(end) = self.partial.find(RECORD_SEPARATOR) {
                let record: String = self.partial.drain(..=end).collect();
                let json = record.trim_end_matches(RECORD_SEPARATOR);
                self.pending
                    .push_back(serde_json::from_str(json).expect("server sent valid JSON"));
            }
        }
    }

    /// Reads the next record, failing if the connection closes first.
    pub async fn next_record(&mut self) -> Value {
        match self.receive().await {
            Received::Record(record) => record,
            Received::Closed => panic!("connection closed while a record was expected"),
        }
    }

    /// Reads the next record that is not a ping.
    pub async fn next_message(&mut self) -> Value {
        loop {
            let record = self.next_record().await;
            if record["type"] != 6 {
                return record;
            }
        }
    }

    /// Reads until the WebSocket closes and returns the non-ping records read meanwhile.
    pub async fn read_until_closed(&mut self) -> Vec<Value> {
        let mut records = Vec::new();
        loop {
            match self.receive().await {
                Received::Record(record) if record["type"] == 6 => {}
                Received::Record(record) => records.push(record),
                Received::Closed => return records,
            }
        }
    }
}
