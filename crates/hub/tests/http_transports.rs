//! Server-sent events, long polling and `POST` sends over raw HTTP: the message flow and
//! the status codes of `TransportProtocols.md`.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use common::{principal, refused_status, token_for, TestServer, RECORD_SEPARATOR, WAIT};
use futures::StreamExt as _;
use serde_json::{json, Value};
use tasklane_hub::{CloseReason, HubSettings, Principal};
use tower::ServiceExt as _;

const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// Sends a request for the hub path with a bearer token and returns the response, whose
/// body may still be streaming.
async fn hub_request(
    server: &TestServer,
    method: Method,
    query: &str,
    token: &str,
    accept: Option<&str>,
    body: Body,
) -> Response<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/hubs/tasks{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let request = request.body(body).unwrap();
    tokio::time::timeout(WAIT, server.hub.router().oneshot(request))
        .await
        .expect("the hub answered in time")
        .unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = tokio::time::timeout(WAIT, axum::body::to_bytes(response.into_body(), 1 << 20))
        .await
        .expect("the body ended in time")
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Parses the JSON records of a response body.
fn records(text: &str) -> Vec<Value> {
    text.split_terminator(RECORD_SEPARATOR)
        .map(|record| serde_json::from_str(record).unwrap())
        .collect()
}

/// A long polling client speaking raw HTTP to the hub router.
struct LongPollClient<'a> {
    server: &'a TestServer,
    token: String,
    connection_token: String,
}

impl<'a> LongPollClient<'a> {
    /// Negotiates and sends the first poll, which starts the connection.
    async fn open(server: &'a TestServer, user: &Principal) -> Self {
        let token = token_for(user);
        let connection_token = server.negotiate(&token).await;
        let client = Self {
            server,
            token,
            connection_token,
        };
        let (status, body) = client.poll().await;
        assert_eq!(status, StatusCode::OK, "first poll: {body}");
        assert_eq!(body, "", "first poll returns no data");
        client
    }

    /// Opens the connection and completes the handshake.
    async fn connect(server: &'a TestServer, user: &Principal) -> Self {
        let client = Self::open(server, user).await;
        assert_eq!(client.post(HANDSHAKE).await, StatusCode::OK);
        let (status, body) = client.poll().await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(records(&body), vec![json!({})], "handshake response");
        client
    }

    fn query(&self) -> String {
        format!("?id={}", self.connection_token)
    }

    async fn poll(&self) -> (StatusCode, String) {
        let response = self.poll_response().await;
        let status = response.status();
        (status, body_text(response).await)
    }

    async fn poll_response(&self) -> Response<Body> {
        hub_request(
            self.server,
            Method::GET,
            &self.query(),
            &self.token,
            None,
            Body::empty(),
        )
        .await
    }

    async fn post(&self, text: &str) -> StatusCode {
        let body = Body::from(text.to_owned());
        hub_request(
            self.server,
            Method::POST,
            &self.query(),
            &self.token,
            None,
            body,
        )
        .await
        .status()
    }

    async fn delete(&self) -> StatusCode {
        hub_request(
            self.server,
            Method::DELETE,
            &self.query(),
            &self.token,
            None,
            Body::empty(),
        )
        .await
        .status()
    }

    /// Polls until a record that is not a ping arrives, and returns the records polled.
    async fn poll_messages(&self) -> Vec<Value> {
        loop {
            let (status, body) = self.poll().await;
            assert_eq!(status, StatusCode::OK, "poll: {body}");
            let messages: Vec<Value> = records(&body)
                .into_iter()
                .filter(|record| record["type"] != 6)
                .collect();
            if !messages.is_empty() {
                return messages;
            }
        }
    }
}

fn invocation(id: &str, target: &str, arguments: Value) -> String {
    let message = json!({"type": 1, "invocationId": id, "target": target, "arguments": arguments});
    format!("{message}{RECORD_SEPARATOR}")
}

#[tokio::test]
async fn long_polling_runs_invocations_and_delivers_messages() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server
        .backend
        .add_task(user.tenant_id, 2, json!({"title": "t"}));
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;

    let status = client
        .post(&invocation("1", "JoinTask", json!([task_id.to_string()])))
        .await;
    let completion = client.poll_messages().await;
    server.publish(&format!("task:{task_id}"), 3, "taskUpdated");
    let update = client.poll_messages().await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(completion.len(), 1);
    assert_eq!(completion[0]["invocationId"], "1");
    assert_eq!(completion[0]["result"]["seq"], 2);
    assert_eq!(update.len(), 1);
    assert_eq!(update[0]["target"], "taskUpdated");
    assert_eq!(update[0]["arguments"][0]["seq"], 3);
}

#[tokio::test]
async fn long_poll_returns_all_queued_messages() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;

    for seq in 1..=3 {
        server.publish(&user.user_group(), seq, "notification");
    }
    let messages = client.poll_messages().await;

    let seqs: Vec<i64> = messages
        .iter()
        .map(|message| message["arguments"][0]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[tokio::test]
async fn newer_poll_ends_older_with_204() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;

    let (older, newer) = tokio::join!(client.poll_response(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The newer poll replaces the older one, then gets a message to return.
        let (newer, ()) = tokio::join!(client.poll_response(), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.publish(&user.user_group(), 1, "notification");
        });
        newer
    });

    assert_eq!(older.status(), StatusCode::NO_CONTENT);
    assert_eq!(newer.status(), StatusCode::OK);
    let messages = records(&body_text(newer).await);
    assert_eq!(messages[0]["arguments"][0]["seq"], 1);
}

#[tokio::test]
async fn delete_ends_long_polling_connection() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;

    let (poll, delete) = tokio::join!(client.poll(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.delete().await
    });
    server.wait_for_connections(0).await;
    let (status_after, _) = client.poll().await;

    assert_eq!(delete, StatusCode::ACCEPTED);
    assert_eq!(poll.0, StatusCode::NO_CONTENT);
    assert_eq!(status_after, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn long_poll_timeout_returns_empty_200() {
    let settings = HubSettings {
        long_poll_timeout: Duration::from_millis(200),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let client = LongPollClient::connect(&server, &principal()).await;

    let (status, body) = client.poll().await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "");
}

#[tokio::test]
async fn long_polling_client_that_stops_polling_is_closed() {
    let settings = HubSettings {
        client_timeout: Duration::from_millis(300),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let client = LongPollClient::connect(&server, &principal()).await;
    server.wait_for_connections(1).await;

    server.wait_for_connections(0).await;
    let (status, body) = client.poll().await;

    assert_eq!(status, StatusCode::OK);
    let close = &records(&body)[0];
    assert_eq!(close["type"], 7);
    assert_eq!(close["allowReconnect"], true);
}

#[tokio::test]
async fn shutdown_sends_close_to_waiting_poll() {
    let server = TestServer::start().await;
    let client = LongPollClient::connect(&server, &principal()).await;
    server.wait_for_connections(1).await;

    let ((status, body), ()) = tokio::join!(client.poll(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::time::timeout(WAIT, server.hub.shutdown())
            .await
            .expect("shutdown finishes");
    });

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        records(&body),
        vec![json!({"type": 7, "allowReconnect": true})]
    );
}

/// Returns a client of the same connection whose bearer token no longer authenticates.
fn revoked_client<'a>(client: &LongPollClient<'a>) -> LongPollClient<'a> {
    LongPollClient {
        server: client.server,
        token: "revoked-token".to_owned(),
        connection_token: client.connection_token.clone(),
    }
}

/// Checks that `body` is exactly one `Close` message that forbids reconnecting because
/// access was revoked.
fn assert_access_revoked_close(body: &str) {
    let close = records(body);
    assert_eq!(close.len(), 1, "{body}");
    assert_eq!(close[0]["type"], 7);
    assert_ne!(close[0]["allowReconnect"], true, "{body}");
    let error = close[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("access revoked"), "{body}");
}

#[tokio::test]
async fn revoked_client_still_polls_its_close() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;
    let revoked = revoked_client(&client);

    assert_eq!(
        server
            .hub
            .close_user(user.user_id, CloseReason::AccessRevoked),
        1
    );
    let (status, body) = revoked.poll().await;

    assert_eq!(status, StatusCode::OK, "poll after the close: {body}");
    assert_access_revoked_close(&body);
    assert_eq!(
        revoked.post("{}\u{1e}").await,
        StatusCode::UNAUTHORIZED,
        "only the final poll skips authentication"
    );
}

#[tokio::test]
async fn revoked_poll_before_close_gets_close() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;
    let revoked = revoked_client(&client);

    // The credential is rejected before the hub closes the connection, as when the
    // revocation commits before its notification reaches the hub.
    let ((status, body), closed) = tokio::join!(revoked.poll(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .hub
            .close_user(user.user_id, CloseReason::AccessRevoked)
    });

    assert_eq!(closed, 1);
    assert_eq!(status, StatusCode::OK, "poll before the close: {body}");
    assert_access_revoked_close(&body);
}

#[tokio::test]
async fn revoked_poll_of_open_connection_is_401() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;
    let revoked = revoked_client(&client);

    let ((status, body), ()) = tokio::join!(revoked.poll(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.publish(&user.user_group(), 1, "notification");
    });
    let messages = client.poll_messages().await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(messages.len(), 1, "the rejected poll took no message");
    assert_eq!(messages[0]["arguments"][0]["seq"], 1);
}

// A request without a valid credential must not take the final frame from the poll of the
// connection's owner that is already waiting, nor end that poll with 204.
#[tokio::test]
async fn rejected_poll_leaves_close_to_waiting_poll() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::connect(&server, &user).await;
    server.wait_for_connections(1).await;
    let stranger = revoked_client(&client);

    let ((owner_status, owner_body), (stranger_status, stranger_body), closed) = tokio::join!(
        client.poll(),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stranger.poll().await
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server
                .hub
                .close_user(user.user_id, CloseReason::AccessRevoked)
        }
    );

    assert_eq!(closed, 1);
    assert_eq!(owner_status, StatusCode::OK, "owner: {owner_body}");
    assert_access_revoked_close(&owner_body);
    // The stranger gets 401 while the owner's poll waits, or 204 with nothing once that
    // poll has taken the final frame.
    assert!(
        matches!(
            stranger_status,
            StatusCode::UNAUTHORIZED | StatusCode::NO_CONTENT
        ),
        "stranger: {stranger_status} {stranger_body}"
    );
    assert!(
        records(&stranger_body).is_empty(),
        "stranger: {stranger_body}"
    );
}

#[tokio::test]
async fn overlapping_post_is_409() {
    let server = TestServer::start().await;
    let client = LongPollClient::connect(&server, &principal()).await;
    let (body_sender, body_receiver) =
        futures::channel::mpsc::unbounded::<Result<String, std::io::Error>>();
    body_sender
        .unbounded_send(Ok("{\"type\":6}".to_owned()))
        .unwrap();

    let query = client.query();
    let slow_post = hub_request(
        &server,
        Method::POST,
        &query,
        &client.token,
        None,
        Body::from_stream(body_receiver),
    );
    let (slow_status, overlapping_status) = tokio::join!(slow_post, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = client
            .post(&format!("{{\"type\":6}}{RECORD_SEPARATOR}"))
            .await;
        body_sender
            .unbounded_send(Ok(RECORD_SEPARATOR.to_string()))
            .unwrap();
        drop(body_sender);
        status
    });
    let status_after = client
        .post(&format!("{{\"type\":6}}{RECORD_SEPARATOR}"))
        .await;

    assert_eq!(overlapping_status, StatusCode::CONFLICT);
    assert_eq!(slow_status.status(), StatusCode::OK);
    assert_eq!(status_after, StatusCode::OK);
}

#[tokio::test]
async fn unknown_id_is_404_for_every_request() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let cases = [
        (Method::GET, None),
        (Method::GET, Some("text/event-stream")),
        (Method::POST, None),
        (Method::DELETE, None),
    ];

    for (method, accept) in cases {
        let response = hub_request(
            &server,
            method.clone(),
            "?id=unknown",
            &token,
            accept,
            Body::empty(),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{method} with Accept {accept:?}"
        );
    }
}

#[tokio::test]
async fn post_and_delete_without_id_are_400() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    for method in [Method::POST, Method::DELETE] {
        let response = hub_request(&server, method.clone(), "", &token, None, Body::empty()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{method}");
    }
}

#[tokio::test]
async fn post_before_transport_starts_is_400() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;

    let response = hub_request(
        &server,
        Method::POST,
        &format!("?id={connection_token}"),
        &token,
        None,
        Body::from(HANDSHAKE),
    )
    .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn post_as_other_user_is_403() {
    let server = TestServer::start().await;
    let client = LongPollClient::open(&server, &principal()).await;
    let other = token_for(&principal());

    let response = hub_request(
        &server,
        Method::POST,
        &client.query(),
        &other,
        None,
        Body::from(HANDSHAKE),
    )
    .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn post_larger_than_limit_is_413() {
    let settings = HubSettings {
        max_message_size: 100,
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let client = LongPollClient::open(&server, &principal()).await;

    let status = client.post(&"x".repeat(201)).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn websocket_on_long_polling_connection_is_400() {
    let server = TestServer::start().await;
    let user = principal();
    let client = LongPollClient::open(&server, &user).await;

    let url = server.ws_url(&client.query());
    let status = refused_status(&url, Some(&client.token)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Reads server-sent events from a streaming response body.
struct EventReader {
    stream: axum::body::BodyDataStream,
    buffer: String,
}

impl EventReader {
    fn new(response: Response<Body>) -> Self {
        Self {
            stream: response.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }

    /// Returns the data of the next event, or `None` when the stream ends.
    async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\r\n\r\n") {
                let event: String = self.buffer.drain(..end + 4).collect();
                let data: Vec<&str> = event
                    .split("\r\n")
                    .filter_map(|line| line.strip_prefix("data: "))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(data.join("\n"));
            }
            let chunk = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the event stream sent something in time")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }

    /// Returns the next record that is not a ping.
    async fn next_message(&mut self) -> Value {
        loop {
            let data = self.next_data().await.expect("the event stream is open");
            let record: Value = serde_json::from_str(data.trim_end_matches(RECORD_SEPARATOR))
                .unwrap_or_else(|error| panic!("event data {data:?} is not a record: {error}"));
            if record["type"] != 6 {
                return record;
            }
        }
    }
}

#[tokio::test]
async fn event_stream_delivers_handshake_and_messages() {
    let server = TestServer::start().await;
    let user = principal();
    let token = token_for(&user);
    let connection_token = server.negotiate(&token).await;
    let query = format!("?id={connection_token}");

    let response = hub_request(
        &server,
        Method::GET,
        &query,
        &token,
        Some("text/event-stream"),
        Body::empty(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut events = EventReader::new(response);
    let post = hub_request(
        &server,
        Method::POST,
        &query,
        &token,
        None,
        Body::from(HANDSHAKE),
    )
    .await;
    let handshake = events.next_message().await;
    server.wait_for_connections(1).await;
    server.publish(&user.user_group(), 1, "notification");
    let message = events.next_message().await;

    assert_eq!(post.status(), StatusCode::OK);
    assert_eq!(handshake, json!({}));
    assert_eq!(message["target"], "notification");
    assert_eq!(message["arguments"][0]["seq"], 1);

    let second = hub_request(
        &server,
        Method::GET,
        &query,
        &token,
        Some("text/event-stream"),
        Body::empty(),
    )
    .await;
    assert_eq!(second.status(), StatusCode::CONFLICT);

    drop(events);
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn event_stream_ends_after_close_message() {
    let server = TestServer::start().await;
    let user = principal();
    let token = token_for(&user);
    let connection_token = server.negotiate(&token).await;
    let query = format!("?id={connection_token}");
    let response = hub_request(
        &server,
        Method::GET,
        &query,
        &token,
        Some("text/event-stream"),
        Body::empty(),
    )
    .await;
    let mut events = EventReader::new(response);
    hub_request(
        &server,
        Method::POST,
        &query,
        &token,
        None,
        Body::from(HANDSHAKE),
    )
    .await;
    assert_eq!(events.next_message().await, json!({}));

    let post = hub_request(
        &server,
        Method::POST,
        &query,
        &token,
        None,
        Body::from("not json\u{1e}"),
    )
    .await;
    let close = events.next_message().await;
    let end = events.next_data().await;

    assert_eq!(post.status(), StatusCode::OK);
    assert_eq!(close["type"], 7);
    assert!(close["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid hub message"));
    assert_eq!(end, None);
}

#[tokio::test]
async fn messagepack_over_event_stream_is_rejected() {
    let server = TestServer::start().await;
    let user = principal();
    let token = token_for(&user);
    let connection_token = server.negotiate(&token).await;
    let query = format!("?id={connection_token}");
    let response = hub_request(
        &server,
        Method::GET,
        &query,
        &token,
        Some("text/event-stream"),
        Body::empty(),
    )
    .await;
    let mut events = EventReader::new(response);

    let handshake = "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}";
    hub_request(
        &server,
        Method::POST,
        &query,
        &token,
        None,
        Body::from(handshake),
    )
    .await;
    let data = events.next_data().await.expect("a handshake response");
    let end = events.next_data().await;

    let response: Value = serde_json::from_str(data.trim_end_matches(RECORD_SEPARATOR)).unwrap();
    let error = response["error"].as_str().unwrap();
    assert!(error.contains("'messagepack'"), "{error}");
    assert_eq!(end, None);
    assert_eq!(server.hub.connection_count(), 0);
}
