//! The JSON hub protocol over a real WebSocket: handshake, protocol errors, keep-alive
//! and timeouts.

mod common;

use std::time::Duration;

use common::{connect_ws, principal, token_for, HubClient, TestServer};
use serde_json::{json, Value};
use tasklane_hub::HubSettings;

/// Connects and negotiates but sends no handshake.
async fn connect_without_handshake(server: &TestServer) -> HubClient {
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;
    let socket = connect_ws(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&token),
    )
    .await
    .unwrap();
    HubClient::new(socket)
}

/// Asserts that the server sends a `Close` message whose error contains `expected` and
/// then closes the WebSocket.
async fn assert_closed_with_error(client: &mut HubClient, expected: &str) {
    let records = client.read_until_closed().await;
    assert_eq!(
        records.len(),
        1,
        "expected only a Close message: {records:?}"
    );
    let close = &records[0];
    assert_eq!(close["type"], 7, "{close}");
    let error = close["error"].as_str().expect("Close carries an error");
    assert!(
        error.contains(expected),
        "error {error:?} lacks {expected:?}"
    );
}

#[tokio::test]
async fn handshake_split_across_frames() {
    let server = TestServer::start().await;
    let mut client = connect_without_handshake(&server).await;

    client.send_text("{\"protocol\":").await;
    client.send_text("\"json\",\"version\":1}\u{1e}").await;

    assert_eq!(client.next_record().await, json!({}));
}

#[tokio::test]
async fn handshake_with_ping_in_same_frame() {
    let server = TestServer::start().await;
    let mut client = connect_without_handshake(&server).await;

    client
        .send_text("{\"protocol\":\"json\",\"version\":1}\u{1e}{\"type\":6}\u{1e}")
        .await;

    assert_eq!(client.next_record().await, json!({}));
    server.wait_for_connections(1).await;
}

#[tokio::test]
async fn handshake_rejects_unknown_protocol() {
    let server = TestServer::start().await;
    let mut client = connect_without_handshake(&server).await;

    client
        .send(json!({"protocol": "blazorpack", "version": 1}))
        .await;
    let records = client.read_until_closed().await;

    assert_eq!(
        records,
        vec![json!({"error": "Requested protocol 'blazorpack' is not available."})]
    );
    assert_eq!(server.hub.connection_count(), 0);
}

#[tokio::test]
async fn handshake_rejects_malformed_request() {
    let server = TestServer::start().await;
    let mut client = connect_without_handshake(&server).await;

    client.send_text("not json\u{1e}").await;
    let records = client.read_until_closed().await;

    assert_eq!(records.len(), 1, "{records:?}");
    let error = records[0]["error"].as_str().unwrap();
    assert!(error.starts_with("Handshake request is invalid"), "{error}");
}

#[tokio::test]
async fn handshake_timeout_closes_socket() {
    let settings = HubSettings {
        handshake_timeout: Duration::from_millis(200),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let mut client = connect_without_handshake(&server).await;

    let records = client.read_until_closed().await;

    assert!(records.is_empty(), "{records:?}");
    assert_eq!(server.hub.connection_count(), 0);
}

#[tokio::test]
async fn malformed_json_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.send_text("{\"type\":1,\u{1e}").await;

    assert_closed_with_error(&mut client, "invalid hub message").await;
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn unknown_message_type_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.send(json!({"type": 99})).await;

    assert_closed_with_error(&mut client, "unknown hub message type 99").await;
}

#[tokio::test]
async fn stream_item_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client
        .send(json!({"type": 2, "invocationId": "1", "item": 5}))
        .await;

    assert_closed_with_error(&mut client, "unexpected stream item message").await;
}

#[tokio::test]
async fn client_completion_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client
        .send(json!({"type": 3, "invocationId": "1", "result": 5}))
        .await;

    assert_closed_with_error(&mut client, "unexpected completion message").await;
}

#[tokio::test]
async fn binary_message_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    use futures::SinkExt as _;
    client
        .socket
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1u8, 2,
        ]))
        .await
        .unwrap();

    assert_closed_with_error(&mut client, "binary WebSocket messages").await;
}

#[tokio::test]
async fn oversized_message_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;
    let padding = "x".repeat(100 * 1024);

    client
        .send(json!({"type": 1, "target": "JoinTask", "arguments": [padding]}))
        .await;

    assert_closed_with_error(&mut client, "maximum message size of 65536 bytes").await;
}

#[tokio::test]
async fn oversized_partial_record_closes_with_error() {
    let settings = HubSettings {
        max_message_size: 1024,
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let mut client = server.connect(&principal()).await;
    let chunk = "x".repeat(600);

    client.send_text(&format!("{{\"a\":\"{chunk}")).await;
    client.send_text(&chunk).await;

    assert_closed_with_error(&mut client, "maximum message size of 1024 bytes").await;
}

#[tokio::test]
async fn far_oversized_message_closes_connection() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;
    let padding = "x".repeat(1024 * 1024);

    client.send_text(&padding).await;

    // The WebSocket layer rejects this message before the hub reads it. The hub still tries
    // to send a Close message.
    let records = client.read_until_closed().await;
    assert!(records.len() <= 1, "{records:?}");
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn client_close_message_ends_connection() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;
    server.wait_for_connections(1).await;

    client.send(json!({"type": 7})).await;
    let records = client.read_until_closed().await;

    assert!(records.is_empty(), "{records:?}");
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn keep_alive_ping_is_sent() {
    let settings = HubSettings {
        keep_alive_interval: Duration::from_millis(100),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let mut client = server.connect(&principal()).await;

    let record = client.next_record().await;

    assert_eq!(record, json!({"type": 6}));
}

#[tokio::test]
async fn silent_client_is_closed() {
    let settings = HubSettings {
        client_timeout: Duration::from_millis(300),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let mut client = server.connect(&principal()).await;

    let records = client.read_until_closed().await;

    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["type"], 7);
    assert_eq!(records[0]["allowReconnect"], true);
    let error = records[0]["error"].as_str().unwrap();
    assert!(error.contains("no message received"), "{error}");
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn client_pings_keep_connection_open() {
    let settings = HubSettings {
        client_timeout: Duration::from_millis(400),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let mut client = server.connect(&principal()).await;

    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send(json!({"type": 6})).await;
    }

    assert_eq!(server.hub.connection_count(), 1);
}

#[tokio::test]
async fn slow_consumer_is_disconnected() {
    let settings = HubSettings {
        outbound_queue_capacity: 8,
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let user = principal();
    let mut client = server.connect(&user).await;
    server.wait_for_connections(1).await;

    // The client reads nothing while the server sends about 50 MB, so the socket
    // buffers fill, the writer blocks and the outbound queue overflows.
    let big = "x".repeat(256 * 1024);
    for seq in 1..=200 {
        let message = tasklane_hub::HubMessage {
            group: user.user_group(),
            seq,
            event_id: uuid::Uuid::new_v4(),
            event_type: "test.event".to_owned(),
            method: "notification".to_owned(),
            data: json!({ "padding": big }),
        };
        server.hub.dispatch(&message);
    }

    let records = client.read_until_closed().await;
    let close = records.last().expect("the server sent records");
    assert_eq!(close["type"], 7, "last record is a Close message");
    assert_eq!(close["allowReconnect"], true);
    let error = close["error"].as_str().unwrap();
    assert!(error.contains("outbound queue full"), "{error}");
    assert!(records.len() < 200, "received {} records", records.len());
    server.wait_for_connections(0).await;
}

#[tokio::test]
async fn invocation_before_handshake_response_is_processed() {
    let server = TestServer::start().await;
    let mut client = connect_without_handshake(&server).await;

    let handshake = "{\"protocol\":\"json\",\"version\":1}\u{1e}";
    let invocation = json!({"type": 1, "invocationId": "1", "target": "Nope", "arguments": []});
    client
        .send_text(&format!("{handshake}{invocation}\u{1e}"))
        .await;

    assert_eq!(client.next_record().await, json!({}));
    let completion: Value = client.next_message().await;
    assert_eq!(completion["invocationId"], "1");
    assert_eq!(completion["error"], "unknown hub method 'Nope'");
}

#[tokio::test]
async fn unknown_method_keeps_connection_open() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.invoke("1", "Nope", json!([])).await;
    let first = client.next_message().await;
    client.invoke("2", "AlsoNope", json!([])).await;
    let second = client.next_message().await;

    assert_eq!(first["error"], "unknown hub method 'Nope'");
    assert_eq!(second["error"], "unknown hub method 'AlsoNope'");
    assert_eq!(server.hub.connection_count(), 1);
}

#[tokio::test]
async fn ack_without_stateful_reconnect_closes_with_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.send(json!({"type": 8, "sequenceId": 1})).await;

    assert_closed_with_error(&mut client, "did not negotiate stateful reconnect").await;
}
