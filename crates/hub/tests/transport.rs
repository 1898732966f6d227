//! Negotiate and WebSocket connect over HTTP: status codes, authentication and the
//! lifetime of connection tokens.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{connect_ws, principal, refused_status, token_for, HubClient, TestServer};
use serde_json::{json, Value};
use tasklane_hub::{HubSettings, Principal};

#[tokio::test]
async fn negotiate_v1_returns_token_and_transports() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let (status, body) = server
        .negotiate_raw("?negotiateVersion=1", Some(&token))
        .await;

    assert_eq!(status, StatusCode::OK);
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["negotiateVersion"], 1);
    let connection_id = response["connectionId"].as_str().unwrap();
    let connection_token = response["connectionToken"].as_str().unwrap();
    assert_ne!(connection_id, connection_token);
    assert_eq!(
        response["availableTransports"],
        json!([
            {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
            {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
            {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}
        ])
    );
}

#[tokio::test]
async fn negotiate_grants_stateful_reconnect_on_request() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let (_, requested) = server
        .negotiate_raw(
            "?negotiateVersion=1&useStatefulReconnect=true",
            Some(&token),
        )
        .await;
    let (_, plain) = server
        .negotiate_raw("?negotiateVersion=1", Some(&token))
        .await;
    let (_, version_zero) = server
        .negotiate_raw("?useStatefulReconnect=true", Some(&token))
        .await;

    let requested: Value = serde_json::from_str(&requested).unwrap();
    let plain: Value = serde_json::from_str(&plain).unwrap();
    let version_zero: Value = serde_json::from_str(&version_zero).unwrap();
    assert_eq!(requested["useStatefulReconnect"], true);
    assert_eq!(plain.get("useStatefulReconnect"), None);
    assert_eq!(version_zero.get("useStatefulReconnect"), None);
}

#[tokio::test]
async fn negotiate_caps_version_at_one() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let (status, body) = server
        .negotiate_raw("?negotiateVersion=7", Some(&token))
        .await;

    assert_eq!(status, StatusCode::OK);
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["negotiateVersion"], 1);
}

#[tokio::test]
async fn negotiate_v0_connects_with_connection_id() {
    let server = TestServer::start().await;
    let user = principal();
    let token = token_for(&user);

    let (status, body) = server.negotiate_raw("", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["negotiateVersion"], 0);
    assert!(response.get("connectionToken").is_none());

    let id = response["connectionId"].as_str().unwrap();
    let socket = connect_ws(&server.ws_url(&format!("?id={id}")), Some(&token))
        .await
        .expect("connect with the version 0 connection id");
    HubClient::new(socket).handshake().await;
    server.wait_for_connections(1).await;
}

#[tokio::test]
async fn negotiate_rejects_invalid_version() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let (status, _body) = server
        .negotiate_raw("?negotiateVersion=abc", Some(&token))
        .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn negotiate_without_token_is_401() {
    let server = TestServer::start().await;

    let (status, _body) = server.negotiate_raw("?negotiateVersion=1", None).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn negotiate_with_bad_token_is_401() {
    let server = TestServer::start().await;

    let (status, _body) = server
        .negotiate_raw("?negotiateVersion=1", Some("not-a-valid-token"))
        .await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn negotiate_accepts_access_token_parameter() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let (status, _body) = server
        .negotiate_raw(&format!("?negotiateVersion=1&access_token={token}"), None)
        .await;

    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn connect_with_unknown_id_is_404() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let status = refused_status(&server.ws_url("?id=unknown"), Some(&token)).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn connect_with_bad_token_is_401() {
    let server = TestServer::start().await;
    let connection_token = server.negotiate(&token_for(&principal())).await;
    let url = server.ws_url(&format!("?id={connection_token}"));

    let with_bad_token = refused_status(&url, Some("user-x-tenant-y")).await;
    let without_token = refused_status(&url, None).await;

    assert_eq!(with_bad_token, StatusCode::UNAUTHORIZED);
    assert_eq!(without_token, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn connect_as_other_user_is_403() {
    let server = TestServer::start().await;
    let connection_token = server.negotiate(&token_for(&principal())).await;
    let other_token = token_for(&principal());

    let status = refused_status(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&other_token),
    )
    .await;

    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn second_websocket_is_409() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;
    let url = server.ws_url(&format!("?id={connection_token}"));
    let _first = connect_ws(&url, Some(&token)).await.unwrap();

    let status = refused_status(&url, Some(&token)).await;

    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn connect_accepts_access_token_parameter() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;

    let socket = connect_ws(
        &server.ws_url(&format!("?id={connection_token}&access_token={token}")),
        None,
    )
    .await
    .expect("connect with access_token");
    HubClient::new(socket).handshake().await;

    server.wait_for_connections(1).await;
}

#[tokio::test]
async fn connect_without_id_skips_negotiate() {
    let server = TestServer::start().await;
    let token = token_for(&principal());

    let socket = connect_ws(&server.ws_url(""), Some(&token)).await.unwrap();
    HubClient::new(socket).handshake().await;

    server.wait_for_connections(1).await;
}

#[tokio::test]
async fn token_is_rejected_after_connection_closes() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;
    let url = server.ws_url(&format!("?id={connection_token}"));
    let mut client = HubClient::new(connect_ws(&url, Some(&token)).await.unwrap());
    client.handshake().await;
    server.wait_for_connections(1).await;

    client.send(json!({"type": 7})).await;
    server.wait_for_connections(0).await;
    let status = refused_status(&url, Some(&token)).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unclaimed_token_expires() {
    let settings = HubSettings {
        negotiate_timeout: Duration::from_millis(100),
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;

    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = refused_status(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&token),
    )
    .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn plain_get_without_id_is_400() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let request = Request::get("/hubs/tasks")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();

    let (status, body) = server.request(request).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("WebSockets"), "{body}");
}

#[tokio::test]
async fn shutdown_closes_connections_and_rejects_new_ones() {
    let server = TestServer::start().await;
    let user = principal();
    let mut client = server.connect(&user).await;
    server.wait_for_connections(1).await;

    tokio::time::timeout(common::WAIT, server.hub.shutdown())
        .await
        .expect("shutdown finishes");
    let records = client.read_until_closed().await;
    let (status, _body) = server
        .negotiate_raw("?negotiateVersion=1", Some(&token_for(&user)))
        .await;

    assert_eq!(records, vec![json!({"type": 7, "allowReconnect": true})]);
    assert_eq!(server.hub.connection_count(), 0);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn shutdown_closes_connection_during_handshake() {
    let server = TestServer::start().await;
    let token = token_for(&principal());
    let connection_token = server.negotiate(&token).await;
    let socket = connect_ws(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&token),
    )
    .await
    .unwrap();
    let mut client = HubClient::new(socket);

    // The handshake timeout (15 s by default) is longer than this wait.
    tokio::time::timeout(Duration::from_secs(5), server.hub.shutdown())
        .await
        .expect("shutdown does not wait for the handshake timeout");
    let records = client.read_until_closed().await;

    assert!(records.is_empty(), "{records:?}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_pending_join() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let (started, _release) = server.backend.gate_task(task_id);
    let mut client = server.connect(&user).await;
    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    started.await.unwrap();

    tokio::time::timeout(common::WAIT, server.hub.shutdown())
        .await
        .expect("shutdown finishes while the join is pending");
    let records = client.read_until_closed().await;

    assert_eq!(records, vec![json!({"type": 7, "allowReconnect": true})]);
    assert_eq!(server.hub.connection_count(), 0);
}

/// Negotiates stateful reconnect for `user` and opens the WebSocket, without a handshake.
async fn open_stateful_websocket(server: &TestServer, user: &Principal) -> HubClient {
    let token = token_for(user);
    let (_, negotiated) = server
        .negotiate_raw(
            "?negotiateVersion=1&useStatefulReconnect=true",
            Some(&token),
        )
        .await;
    let negotiated: Value = serde_json::from_str(&negotiated).unwrap();
    let connection_token = negotiated["connectionToken"].as_str().unwrap();
    let socket = connect_ws(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&token),
    )
    .await
    .unwrap();
    HubClient::new(socket)
}

/// The official JavaScript client counts the server's messages for stateful reconnect only
/// once its handshake has completed. A message that reaches it together with the handshake
/// response is handled but not counted, and after a reconnect it handles a resent message
/// twice. The hub therefore sends a stateful connection nothing after the handshake
/// response until the client's first message.
#[tokio::test]
async fn stateful_messages_wait_for_client() {
    let server = TestServer::start().await;
    let user = principal();
    let mut client = open_stateful_websocket(&server, &user).await;
    client.handshake().await;
    server.wait_for_connections(1).await;

    server.publish(&user.user_group(), 1, "notification");
    let early = tokio::time::timeout(Duration::from_millis(300), client.next_message()).await;
    assert!(early.is_err(), "sent before the client spoke: {early:?}");

    client.send(json!({"type": 6})).await;
    let message = client.next_message().await;

    assert_eq!(message["target"], "notification", "{message}");
    assert_eq!(message["arguments"][0]["seq"], 1, "{message}");
}

// Messages sent in the same WebSocket message as the handshake request count as the
// client's first, so their replies are not held.
#[tokio::test]
async fn stateful_handshake_invocation_answered_promptly() {
    let server = TestServer::start().await;
    let user = principal();
    let mut client = open_stateful_websocket(&server, &user).await;

    let handshake = json!({"protocol": "json", "version": 1});
    let invocation =
        json!({"type": 1, "invocationId": "1", "target": "NoSuchMethod", "arguments": []});
    client
        .send_text(&format!("{handshake}\u{1e}{invocation}\u{1e}"))
        .await;
    let response = client.next_record().await;
    // The writer keeps frames back for at most 1 s, so a reply within half of that was
    // not kept back.
    let completion = tokio::time::timeout(Duration::from_millis(500), client.next_message()).await;

    assert_eq!(response, json!({}), "handshake response");
    let completion = completion.expect("the completion was not held");
    assert_eq!(completion["type"], 3, "{completion}");
    assert_eq!(completion["invocationId"], "1", "{completion}");
}
