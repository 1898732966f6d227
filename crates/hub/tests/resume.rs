//! `Resume` and `LeaveTask` over a raw WebSocket client: missed messages arrive once and in
//! order before live ones, and groups are authorized again.

mod common;

use common::{principal, HubClient, TestServer, WAIT};
use serde_json::{json, Value};
use tasklane_hub::{HubSettings, Principal};
use uuid::Uuid;

fn seq_of(record: &Value) -> i64 {
    record["arguments"][0]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("record has no envelope seq: {record}"))
}

/// Reads `count` hub messages and returns their sequence numbers.
async fn next_seqs(client: &mut HubClient, count: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    for _ in 0..count {
        seqs.push(seq_of(&client.next_message().await));
    }
    seqs
}

async fn invoke_resume(client: &mut HubClient, id: &str, groups: Value) {
    client.invoke(id, "Resume", json!([groups])).await;
}

/// Connects a first client to `task_id`'s group, publishes messages 1 to 5 and
/// disconnects it, so a second client can resume.
async fn miss_five_messages(server: &TestServer, user: &Principal, task_id: Uuid) {
    let mut first = server.connect(user).await;
    first
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    first.next_message().await;
    let group = format!("task:{task_id}");
    for seq in 1..=5 {
        server.publish(&group, seq, "taskUpdated");
    }
    assert_eq!(next_seqs(&mut first, 5).await, [1, 2, 3, 4, 5]);
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_sends_missed_then_live() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    miss_five_messages(&server, &user, task_id).await;

    let mut client = server.connect(&user).await;
    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 2}])).await;
    let missed = next_seqs(&mut client, 3).await;
    let completion = client.next_message().await;
    server.publish(&group, 6, "taskUpdated");
    let live = client.next_message().await;

    assert_eq!(missed, [3, 4, 5]);
    assert_eq!(completion["invocationId"], "1");
    assert_eq!(completion["result"], json!([{"group": group, "seq": 5}]));
    assert_eq!(seq_of(&live), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_holds_back_live_during_catch_up() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    miss_five_messages(&server, &user, task_id).await;
    let mut client = server.connect(&user).await;
    let (started, release) = server.backend.gate_catch_up(&group);

    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 2}])).await;
    tokio::time::timeout(WAIT, started).await.unwrap().unwrap();
    // Published after the catch-up read the history, so only the live path has them.
    server.publish(&group, 6, "taskUpdated");
    server.publish(&group, 7, "taskUpdated");
    release.send(()).unwrap();
    let seqs = next_seqs(&mut client, 5).await;
    let completion = client.next_message().await;
    server.publish(&group, 8, "taskUpdated");
    let live = client.next_message().await;

    assert_eq!(seqs, [3, 4, 5, 6, 7]);
    assert_eq!(completion["result"], json!([{"group": group, "seq": 7}]));
    assert_eq!(seq_of(&live), 8);
}

#[tokio::test]
async fn resume_beyond_history_sends_resync() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    miss_five_messages(&server, &user, task_id).await;
    server.backend.forget_before(&group, 4);
    let mut client = server.connect(&user).await;

    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 2}])).await;
    let resync = client.next_message().await;
    let completion = client.next_message().await;
    server.publish(&group, 6, "taskUpdated");
    server.publish(&user.user_group(), 1, "notification");
    let next = client.next_message().await;

    assert_eq!(
        resync,
        json!({"type": 1, "target": "resync", "arguments": [{"group": group}]})
    );
    assert_eq!(
        completion["result"],
        json!([{"group": group, "resync": true}])
    );
    assert_eq!(next["target"], "notification", "the task group was left");
}

#[tokio::test]
async fn resume_of_too_many_messages_sends_resync() {
    let settings = HubSettings {
        outbound_queue_capacity: 4,
        ..HubSettings::default()
    };
    let server = TestServer::start_with(settings).await;
    let user = principal();
    let group = user.user_group();
    for seq in 1..=3 {
        server
            .backend
            .record(&server.message(&group, seq, "notification"));
    }
    let mut client = server.connect(&user).await;

    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 0}])).await;
    let resync = client.next_message().await;
    let completion = client.next_message().await;

    assert_eq!(resync["target"], "resync");
    assert_eq!(
        completion["result"],
        json!([{"group": group, "resync": true}])
    );
}

#[tokio::test]
async fn resume_own_user_group() {
    let server = TestServer::start().await;
    let user = principal();
    let group = user.user_group();
    for seq in 1..=3 {
        server.publish(&group, seq, "notification");
    }
    let mut client = server.connect(&user).await;

    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 1}])).await;
    let missed = next_seqs(&mut client, 2).await;
    let completion = client.next_message().await;

    assert_eq!(missed, [2, 3]);
    assert_eq!(completion["result"], json!([{"group": group, "seq": 3}]));
}

#[tokio::test]
async fn resume_rejects_groups_of_others() {
    let server = TestServer::start().await;
    let user = principal();
    let stranger = principal();
    let foreign_task = server.backend.add_task(stranger.tenant_id, 0, json!({}));
    let groups = [
        stranger.user_group(),
        stranger.tenant_group(),
        format!("task:{foreign_task}"),
        "project:1".to_owned(),
    ];
    for group in &groups {
        server.publish(group, 1, "notification");
    }
    let mut client = server.connect(&user).await;

    let requests: Vec<Value> = groups
        .iter()
        .map(|group| json!({"group": group, "after_seq": 0}))
        .collect();
    invoke_resume(&mut client, "1", Value::Array(requests)).await;
    let completion = client.next_message().await;

    assert_eq!(completion["invocationId"], "1");
    let outcomes = completion["result"].as_array().unwrap();
    assert_eq!(outcomes.len(), groups.len());
    assert_eq!(
        outcomes[0]["error"],
        format!("group {} not found", groups[0])
    );
    assert_eq!(
        outcomes[1]["error"],
        format!("group {} not found", groups[1])
    );
    assert_eq!(
        outcomes[2]["error"],
        format!("task {foreign_task} not found")
    );
    assert_eq!(outcomes[3]["error"], "group project:1 not found");
}

#[tokio::test]
async fn resume_with_bad_argument_returns_error() {
    let server = TestServer::start().await;
    let mut client = server.connect(&principal()).await;

    client
        .invoke("1", "Resume", json!([{"group": "task:x"}]))
        .await;
    let completion = client.next_message().await;

    let error = completion["error"].as_str().unwrap();
    assert!(error.starts_with("Resume expects one argument"), "{error}");
}

#[tokio::test]
async fn leave_task_stops_delivery() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    let group = format!("task:{task_id}");
    let mut client = server.connect(&user).await;
    client
        .invoke("1", "JoinTask", json!([task_id.to_string()]))
        .await;
    client.next_message().await;

    client
        .invoke("2", "LeaveTask", json!([task_id.to_string()]))
        .await;
    let left = client.next_message().await;
    client
        .invoke("3", "LeaveTask", json!([task_id.to_string()]))
        .await;
    let left_again = client.next_message().await;
    server.publish(&group, 1, "taskUpdated");
    server.publish(&user.user_group(), 1, "notification");
    let next = client.next_message().await;

    assert_eq!(left["result"], true);
    assert_eq!(left_again["result"], false);
    assert_eq!(
        next["target"], "notification",
        "no task message after leaving"
    );
}

#[tokio::test]
async fn resume_internal_error_hides_details() {
    let server = TestServer::start().await;
    let user = principal();
    let task_id = server.backend.add_task(user.tenant_id, 0, json!({}));
    server.backend.fail_task(task_id);
    let group = format!("task:{task_id}");
    let mut client = server.connect(&user).await;

    invoke_resume(&mut client, "1", json!([{"group": group, "after_seq": 0}])).await;
    let completion = client.next_message().await;

    assert_eq!(
        completion["result"],
        json!([{"group": group, "error": "resume failed because of an internal server error"}])
    );
}
