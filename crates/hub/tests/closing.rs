//! The server ending connections (revoked access, expired tokens) and presence: which
//! entries the hub adds to and removes from its presence store, and who receives
//! `viewers` and `onlineUsers`.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{connect_ws, expiring_token_for, principal, HubClient, TestServer, WAIT};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tasklane_hub::{
    CloseReason, PresenceError, PresenceMember, PresenceStore, PresenceUser, Principal,
};
use uuid::Uuid;

/// Reads until the connection closes and returns its `Close` message.
async fn close_message(client: &mut HubClient) -> Value {
    let records = tokio::time::timeout(WAIT, client.read_until_closed())
        .await
        .expect("the connection closes in time");
    records
        .into_iter()
        .find(|record| record["type"] == 7)
        .expect("the server sent a Close message")
}

#[tokio::test]
async fn close_user_forbids_reconnect() {
    let server = TestServer::start().await;
    let revoked = principal();
    let other = principal();
    let mut revoked_client = server.connect(&revoked).await;
    let mut other_client = server.connect(&other).await;
    server.wait_for_connections(2).await;

    let closed = server
        .hub
        .close_user(revoked.user_id, CloseReason::AccessRevoked);

    assert_eq!(closed, 1);
    let close = close_message(&mut revoked_client).await;
    assert_eq!(close["allowReconnect"], Value::Null, "close: {close}");
    let error = close["error"].as_str().unwrap_or_default();
    assert!(error.contains("access revoked"), "close: {close}");
    server.publish(&other.user_group(), 1, "notification");
    let message = other_client.next_message().await;
    assert_eq!(message["target"], "notification");
}

#[tokio::test]
async fn close_user_where_filters_principals() {
    let server = TestServer::start().await;
    let in_first_tenant = principal();
    let in_second_tenant = Principal::new(in_first_tenant.user_id, Uuid::new_v4());
    let mut first_client = server.connect(&in_first_tenant).await;
    let mut second_client = server.connect(&in_second_tenant).await;
    server.wait_for_connections(2).await;

    let closed = server.hub.close_user_where(
        in_first_tenant.user_id,
        CloseReason::AccessRevoked,
        |principal| principal.tenant_id == in_first_tenant.tenant_id,
    );

    assert_eq!(closed, 1);
    close_message(&mut first_client).await;
    server.publish(&in_second_tenant.tenant_group(), 1, "notification");
    let message = second_client.next_message().await;
    assert_eq!(message["target"], "notification");
}

#[tokio::test]
async fn expired_token_allows_reconnect() {
    let server = TestServer::start().await;
    let user = principal();
    let token = expiring_token_for(&user, SystemTime::now() + Duration::from_secs(2));
    let connection_token = server.negotiate(&token).await;
    let socket = connect_ws(
        &server.ws_url(&format!("?id={connection_token}")),
        Some(&token),
    )
    .await
    .expect("WebSocket connect succeeds");
    let mut client = HubClient::new(socket);
    client.handshake().await;

    let close = close_message(&mut client).await;

    assert_eq!(close["allowReconnect"], true, "close: {close}");
    let error = close["error"].as_str().unwrap_or_default();
    assert!(error.contains("access token expired"), "close: {close}");
}

/// One call to the presence store: the group, the members, and whether they were added.
type StoreCall = (String, Vec<PresenceMember>, bool);

/// A presence store in memory that records every update and returns fixed users.
#[derive(Default)]
struct RecordingStore {
    calls: Mutex<Vec<StoreCall>>,
}

impl RecordingStore {
    fn calls_for(&self, group: &str) -> Vec<(Uuid, bool)> {
        self.calls
            .lock()
            .iter()
            .filter(|(called_group, _, _)| called_group == group)
            .flat_map(|(_, members, present)| {
                members.iter().map(|member| (member.user_id, *present))
            })
            .collect()
    }

    /// Waits until `group` has `count` recorded calls, because some run in the background.
    async fn wait_for_calls(&self, group: &str, count: usize) -> Vec<(Uuid, bool)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let calls = self.calls_for(group);
            if calls.len() >= count {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "presence calls for {group}: {calls:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait::async_trait]
impl PresenceStore for RecordingStore {
    async fn refresh(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError> {
        let call = (group.to_owned(), members.to_vec(), true);
        self.calls.lock().push(call);
        Ok(())
    }

    async fn remove(&self, group: &str, members: &[PresenceMember]) -> Result<(), PresenceError> {
        let call = (group.to_owned(), members.to_vec(), false);
        self.calls.lock().push(call);
        Ok(())
    }

    async fn users(&self, _group: &str) -> Result<Vec<PresenceUser>, PresenceError> {
        Ok(vec![PresenceUser::new(Uuid::nil())])
    }
}

#[tokio::test]
async fn presence_follows_connection_and_joins() {
    let server = TestServer::start().await;
    let store = Arc::new(RecordingStore::default());
    server.hub.set_presence(store.clone());
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let task_group = format!("task:{task_id}");
    let tenant_group = user.tenant_group();

    let mut client = server.connect(&user).await;
    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    client.next_message().await;
    client
        .invoke("2", "LeaveTask", json!([task_id.to_string()]))
        .await;
    client.next_message().await;
    drop(client);

    let task_calls = store.wait_for_calls(&task_group, 2).await;
    let tenant_calls = store.wait_for_calls(&tenant_group, 2).await;
    assert_eq!(task_calls, [(user.user_id, true), (user.user_id, false)]);
    assert_eq!(tenant_calls, [(user.user_id, true), (user.user_id, false)]);
}

#[tokio::test]
async fn dispatch_presence_reaches_joined_members() {
    let server = TestServer::start().await;
    let viewer = principal();
    let bystander = Principal::new(Uuid::new_v4(), viewer.tenant_id);
    let task_id = server.backend.add_task(viewer.tenant_id, 0, json!({}));
    let task_group = format!("task:{task_id}");
    let mut viewer_client = server.connect(&viewer).await;
    let mut bystander_client = server.connect(&bystander).await;
    viewer_client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    viewer_client.next_message().await;
    let users = [PresenceUser {
        user_id: viewer.user_id,
        name: Some("Ana".to_owned()),
        handle: Some("ana".to_owned()),
    }];

    server.hub.dispatch_presence(&task_group, &users);
    server.publish(&bystander.user_group(), 1, "notification");

    let viewers = viewer_client.next_message().await;
    assert_eq!(viewers["target"], "viewers");
    let expected = json!({
        "group": task_group,
        "users": [{ "user_id": viewer.user_id, "name": "Ana", "handle": "ana" }],
    });
    assert_eq!(viewers["arguments"], json!([expected]));
    let next = bystander_client.next_message().await;
    assert_eq!(next["target"], "notification", "the bystander got {next}");
}

#[tokio::test]
async fn online_users_without_store_fails() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.invoke("1", "OnlineUsers", json!([])).await;

    let completion = client.next_message().await;
    assert_eq!(completion["type"], 3);
    let error = completion["error"].as_str().unwrap_or_default();
    assert!(error.contains("presence is not enabled"), "{completion}");
}

#[tokio::test]
async fn online_users_returns_store_users() {
    let server = TestServer::start().await;
    server.hub.set_presence(Arc::new(RecordingStore::default()));
    let user = principal();
    let mut client = server.connect(&user).await;

    client.invoke("1", "OnlineUsers", json!([])).await;

    let completion = client.next_message().await;
    let expected = json!({
        "group": user.tenant_group(),
        "users": [{ "user_id": Uuid::nil() }],
    });
    assert_eq!(completion["result"], expected);
}

#[tokio::test]
async fn shutdown_applies_presence_removals() {
    let server = TestServer::start().await;
    let store = Arc::new(RecordingStore::default());
    server.hub.set_presence(store.clone());
    let user = principal();
    let _client = server.connect(&user).await;
    server.wait_for_connections(1).await;

    server.hub.shutdown().await;

    let tenant_calls = store.calls_for(&user.tenant_group());
    assert_eq!(tenant_calls, [(user.user_id, true), (user.user_id, false)]);
}
