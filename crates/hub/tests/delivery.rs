//! Hub methods and message delivery: joins, sequence filtering and the groups every
//! connection joins on connect.

mod common;

use common::{principal, HubClient, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

/// Returns the sequence number of a `taskUpdated`-style invocation record.
fn seq_of(record: &Value) -> i64 {
    assert_eq!(record["type"], 1, "expected an invocation: {record}");
    record["arguments"][0]["seq"].as_i64().unwrap()
}

/// Reads the next `count` invocation records and returns their sequence numbers.
async fn next_seqs(client: &mut HubClient, count: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    for _ in 0..count {
        seqs.push(seq_of(&client.next_message().await));
    }
    seqs
}

#[tokio::test]
async fn join_task_returns_grant() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server
        .backend
        .add_task(user.tenant_id, 3, json!({"title": "Write spec"}));
    let mut client = server.connect(&user).await;

    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    let completion = client.next_message().await;

    assert_eq!(
        completion,
        json!({
            "type": 3,
            "invocationId": "1",
            "result": {
                "group": format!("task:{task_id}"),
                "seq": 3,
                "snapshot": {"title": "Write spec"}
            }
        })
    );
}

#[tokio::test]
async fn join_job_returns_grant() {
    let server = TestServer::start().await;
    let user = principal();
    let job_id = server
        .backend
        .add_job(user.tenant_id, 0, json!({"state": "queued"}));
    let mut client = server.connect(&user).await;

    client
        .invoke("j", "JoinJob", json!([job_id.to_string()]))
        .await;
    let completion = client.next_message().await;

    assert_eq!(completion["result"]["group"], format!("job:{job_id}"));
    assert_eq!(completion["result"]["seq"], 0);
}

#[tokio::test]
async fn join_unknown_task_returns_not_found() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;
    let task_id = Uuid::new_v4();

    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    let completion = client.next_message().await;

    assert_eq!(
        completion,
        json!({"type": 3, "invocationId": "1", "error": format!("task {task_id} not found")})
    );
}

#[tokio::test]
async fn join_other_tenant_task_returns_not_found() {
    let server = TestServer::start().await;
    let task_id = server.backend.add_task(Uuid::new_v4(), 1, json!({}));
    let mut client = server.connect(&principal()).await;

    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    let completion = client.next_message().await;
    server.publish(&format!("task:{task_id}"), 2, "taskUpdated");
    client.invoke("2", "Nope", json!([])).await;
    let next = client.next_message().await;

    assert_eq!(completion["error"], format!("task {task_id} not found"));
    assert_eq!(
        next["invocationId"], "2",
        "no task message after a denied join"
    );
}

#[tokio::test]
async fn join_with_bad_argument_returns_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client.invoke("1", "JoinTask", json!(["not-a-uuid"])).await;
    let bad_uuid = client.next_message().await;
    client.invoke("2", "JoinJob", json!([])).await;
    let missing = client.next_message().await;

    assert_eq!(
        bad_uuid["error"],
        "JoinTask expects one argument: a task id as a UUID string"
    );
    assert_eq!(
        missing["error"],
        "JoinJob expects one argument: a job id as a UUID string"
    );
}

#[tokio::test]
async fn join_internal_error_hides_details() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 1, json!({}));
    server.backend.fail_task(task_id);
    let mut client = server.connect(&user).await;

    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    let completion = client.next_message().await;

    assert_eq!(
        completion["error"],
        "join failed because of an internal server error"
    );
}

#[tokio::test]
async fn join_delivers_only_messages_after_grant_seq() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 3, json!({}));
    let group = format!("task:{task_id}");
    let mut client = server.connect(&user).await;
    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    client.next_message().await;

    for seq in [1, 2, 3, 4, 5, 5, 4, 6] {
        server.publish(&group, seq, "taskUpdated");
    }

    assert_eq!(next_seqs(&mut client, 3).await, [4, 5, 6]);
    server.publish(&group, 7, "taskUpdated");
    assert_eq!(next_seqs(&mut client, 1).await, [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_holds_back_messages_until_grant() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 3, json!({}));
    let group = format!("task:{task_id}");
    let (started, release) = server.backend.gate_task(task_id);
    let mut client = server.connect(&user).await;

    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    tokio::time::timeout(common::WAIT, started)
        .await
        .expect("join started")
        .unwrap();
    for seq in 1..=5 {
        server.publish(&group, seq, "taskUpdated");
    }
    release.send(()).unwrap();

    let completion = client.next_message().await;
    assert_eq!(
        completion["type"], 3,
        "completion comes first: {completion}"
    );
    assert_eq!(completion["result"]["seq"], 3);
    assert_eq!(next_seqs(&mut client, 2).await, [4, 5]);

    server.publish(&group, 5, "taskUpdated");
    server.publish(&group, 6, "taskUpdated");
    assert_eq!(next_seqs(&mut client, 1).await, [6]);
}

#[tokio::test]
async fn rejoin_restarts_from_new_grant() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 1, json!({}));
    let group = format!("task:{task_id}");
    let mut client = server.connect(&user).await;
    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    client.next_message().await;
    server.publish(&group, 2, "taskUpdated");
    assert_eq!(next_seqs(&mut client, 1).await, [2]);

    let (started, release) = server.backend.gate_task(task_id);
    client
        .invoke("2", "JoinTask", json!([task_id.to_string()]))
        .await;
    started.await.unwrap();
    server.publish(&group, 3, "taskUpdated");
    server.publish(&group, 4, "taskUpdated");
    drop(release);

    let completion = client.next_message().await;
    assert_eq!(completion["invocationId"], "2");
    assert_eq!(completion["result"]["seq"], 1);
    assert_eq!(next_seqs(&mut client, 2).await, [3, 4]);
}

#[tokio::test]
async fn non_blocking_join_sends_no_completion() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let mut client = server.connect(&user).await;

    client
        .send(json!({"type": 1, "target": "JoinTask", "arguments": [task_id.to_string()]}))
        .await;
    client
        .send(json!({"type": 1, "target": "Nope", "arguments": []}))
        .await;
    client.invoke("marker", "Nope", json!([])).await;
    let first = client.next_message().await;
    server.publish(&format!("task:{task_id}"), 1, "taskUpdated");
    let second = client.next_message().await;

    assert_eq!(first["invocationId"], "marker");
    assert_eq!(seq_of(&second), 1);
}

#[tokio::test]
async fn connection_receives_user_and_tenant_groups() {
    let server = TestServer::start().await;
    let user = principal();
    let mut client = server.connect(&user).await;
    server.wait_for_connections(1).await;

    let sent = server.publish(&user.user_group(), 10, "notification");
    server.publish(&user.user_group(), 10, "notification");
    server.publish(&user.tenant_group(), 1, "jobProgress");
    server.publish(&format!("user:{}", Uuid::new_v4()), 11, "notification");

    let notification = client.next_message().await;
    let progress = client.next_message().await;
    assert_eq!(
        notification,
        json!({
            "type": 1,
            "target": "notification",
            "arguments": [{
                "event_id": sent.event_id,
                "group": user.user_group(),
                "seq": 10,
                "type": "test.event",
                "data": {"seq": 10}
            }]
        })
    );
    assert_eq!(progress["target"], "jobProgress");
    assert_eq!(seq_of(&progress), 1);
}

#[tokio::test]
async fn dispatch_reaches_every_member() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let mut first = server.connect(&user).await;
    let mut second = server.connect(&user).await;
    for client in [&mut first, &mut second] {
        client
            .invoke("1", "JoinTask", json!([task_id.to_string()]))
            .await;
        client.next_message().await;
    }

    server.publish(&format!("task:{task_id}"), 1, "taskUpdated");

    assert_eq!(next_seqs(&mut first, 1).await, [1]);
    assert_eq!(next_seqs(&mut second, 1).await, [1]);
    assert_eq!(server.hub.connection_count(), 2);
}
