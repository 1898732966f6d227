//! Live updates through the hub, received by the official `@microsoft/signalr` client.

mod common;

use std::time::{Duration, Instant};

use common::{HubClient, TestApp};
use serde_json::{json, Value};
use tasklane_hub::HubMessage;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_reaches_joined_client() {
    let app = TestApp::spawn().await;
    let account = app.register("Live").await;
    let task = app.create_task(&account, "Before").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();

    let mut client = HubClient::connect(&app.hub_url(), &account.token, &[task_id], &[]).await;
    let sent = Instant::now();
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{task_id}")))
        .bearer_auth(&account.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "title": "After", "priority": "high" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");

    let update = client
        .wait_for(
            |line| line["event"] == "message" && line["method"] == "taskUpdated",
            Duration::from_secs(10),
        )
        .await;
    eprintln!("PATCH to taskUpdated took {:?}", sent.elapsed());
    let envelope = &update["envelope"];
    assert_eq!(envelope["group"], format!("task:{task_id}"));
    assert_eq!(envelope["type"], "task.updated");
    assert_eq!(envelope["data"]["title"], "After");
    assert_eq!(envelope["data"]["priority"], "high");
    assert_eq!(envelope["data"]["version"], 2);
    assert!(envelope["seq"].as_i64().unwrap() >= 1);
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_completes_with_snapshot_and_seq() {
    let app = TestApp::spawn().await;
    let account = app.register("Snapshot").await;
    let task = app.create_task(&account, "Snapshot me").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();

    let client = HubClient::connect(&app.hub_url(), &account.token, &[task_id], &[]).await;

    let joined = client
        .seen
        .iter()
        .find(|line| line["event"] == "joined")
        .expect("a joined line");
    let result = &joined["result"];
    assert_eq!(result["group"], format!("task:{task_id}"));
    assert_eq!(result["snapshot"]["title"], "Snapshot me");
    assert_eq!(result["snapshot"]["version"], 1);
    // The creation event may or may not have been sequenced yet, so seq is 0 or 1.
    assert!(matches!(result["seq"].as_i64(), Some(0 | 1)), "{result}");
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenant_cannot_join_task() {
    let app = TestApp::spawn().await;
    let owner = app.register("Owner Co").await;
    let stranger = app.register("Stranger Co").await;
    let task = app.create_task(&owner, "Private").await;
    let task_id = task["id"].as_str().unwrap();

    let output = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/js/hub-client.mjs"
        ))
        .args([
            "--url",
            &app.hub_url(),
            "--token",
            &stranger.token,
            "--join-task",
            task_id,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = output;
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut join_error = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["event"] == "ready" {
            break;
        }
        if value["event"] == "error" && value["stage"] == "join" {
            join_error = Some(value);
        }
    }
    drop(child.stdin.take());
    let _ = child.wait().await;
    let join_error = join_error.expect("the join of another tenant's task must fail");
    assert!(
        join_error["message"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{join_error}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_notifies_mentioned_member() {
    let app = TestApp::spawn().await;
    let author = app.register("Mentions").await;
    let other = app.register("Elsewhere").await;
    // Invitations arrive with the auth work; until then the membership is added directly.
    sqlx::query("insert into memberships (tenant_id, user_id, role, handle) values ($1, $2, 'member', 'bee')")
        .bind(author.tenant_id)
        .bind(other.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("select email from users where id = $1")
        .bind(other.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let login: Value = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": "correct horse battery", "tenant": author.tenant_id.to_string() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_token = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(login["tenant_id"], author.tenant_id.to_string());

    let task = app.create_task(&author, "Needs eyes").await;
    let task_id = task["id"].as_str().unwrap();
    let mut client = HubClient::connect(&app.hub_url(), &other_token, &[], &[]).await;

    let response = app
        .post_json(
            &author.token,
            &format!("/api/v1/tasks/{task_id}/comments"),
            json!({ "body": "@bee can you look?" }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let comment: Value = response.json().await.unwrap();
    assert_eq!(comment["mentions"], json!([other.user_id]));

    let pushed = client
        .wait_for(
            |line| line["event"] == "message" && line["method"] == "notification",
            Duration::from_secs(15),
        )
        .await;
    let envelope = &pushed["envelope"];
    assert_eq!(envelope["group"], format!("user:{}", other.user_id));
    assert_eq!(envelope["data"]["kind"], "mention");
    assert_eq!(envelope["data"]["comment_id"], comment["id"]);

    let listed: Value = app
        .get(&other_token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let author_listed: Value = app
        .get(&author.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        author_listed["items"].as_array().unwrap().len(),
        0,
        "{author_listed}"
    );
    client.stop().await;
    app.stop().await;
}

/// Records a notification for `group` in `hub_messages` as the relay does, and returns the
/// message the relay would publish.
async fn append_notification(
    app: &TestApp,
    group: &str,
    tenant_id: Uuid,
    text: &str,
) -> HubMessage {
    let event_id = Uuid::new_v4();
    let data = json!({ "text": text });
    let mut tx = app.pool.begin().await.unwrap();
    let stored = tasklane_store::hub::append(&mut tx, group, Some(tenant_id), event_id, "notification", |seq| {
        json!({ "event_id": event_id, "group": group, "seq": seq, "type": "notification.created", "data": data })
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    HubMessage {
        group: group.to_owned(),
        seq: stored.seq,
        event_id,
        event_type: "notification.created".to_owned(),
        method: "notification".to_owned(),
        data,
    }
}

fn messages(lines: &[Value]) -> Vec<(i64, String)> {
    lines
        .iter()
        .filter(|line| line["event"] == "message")
        .map(|line| {
            let envelope = &line["envelope"];
            (
                envelope["seq"].as_i64().unwrap(),
                envelope["data"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

// The messages are written to `hub_messages` directly and the live one is dispatched to the
// hub directly, so the test covers the PostgreSQL catch-up without depending on the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_missed_messages_then_live() {
    let app = TestApp::spawn().await;
    let account = app.register("Resume").await;
    let group = format!("user:{}", account.user_id);
    for n in 1..=5 {
        append_notification(&app, &group, account.tenant_id, &format!("n{n}")).await;
    }

    let resume = vec!["--resume".to_owned(), format!("{group}:2")];
    let mut client = HubClient::connect_with_args(&app.hub_url(), &account.token, &resume).await;
    let before_ready = std::mem::take(&mut client.seen);
    let live = append_notification(&app, &group, account.tenant_id, "n6").await;
    app.hub().dispatch(&live);
    client
        .wait_for(
            |line| line["event"] == "message" && line["envelope"]["seq"] == 6,
            Duration::from_secs(10),
        )
        .await;

    let replayed = messages(&before_ready);
    let expected: Vec<(i64, String)> = (3..=5).map(|n| (n, format!("n{n}"))).collect();
    assert_eq!(replayed, expected);
    let resumed = before_ready
        .iter()
        .find(|line| line["event"] == "resumed")
        .expect("a resumed line");
    assert_eq!(resumed["result"], json!([{ "group": group, "seq": 5 }]));
    let after_ready = messages(&client.seen);
    assert_eq!(after_ready, [(6, "n6".to_owned())]);
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_history_gap_asks_for_resync() {
    let app = TestApp::spawn().await;
    let account = app.register("Gap").await;
    let group = format!("user:{}", account.user_id);
    for n in 1..=3 {
        append_notification(&app, &group, account.tenant_id, &format!("n{n}")).await;
    }
    sqlx::query("delete from hub_messages where group_name = $1 and seq = 2")
        .bind(&group)
        .execute(&app.pool)
        .await
        .unwrap();

    let resume = vec!["--resume".to_owned(), format!("{group}:1")];
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &resume).await;

    let resync = client
        .seen
        .iter()
        .find(|line| line["event"] == "resync")
        .expect("a resync line");
    assert_eq!(resync["group"], group);
    let resumed = client
        .seen
        .iter()
        .find(|line| line["event"] == "resumed")
        .expect("a resumed line");
    assert_eq!(
        resumed["result"],
        json!([{ "group": group, "resync": true }])
    );
    assert!(messages(&client.seen).is_empty(), "{:?}", client.seen);
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_unknown_seq_asks_for_resync() {
    let app = TestApp::spawn().await;
    let account = app.register("Resync").await;
    let task = app.create_task(&account, "Stale").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let group = format!("task:{task_id}");

    // A sequence number beyond the group's last one, as after the history was reset.
    let resume = vec!["--resume".to_owned(), format!("{group}:1000")];
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &resume).await;

    let resync = client
        .seen
        .iter()
        .find(|line| line["event"] == "resync")
        .expect("a resync line");
    assert_eq!(resync["group"], group);
    let resumed = client
        .seen
        .iter()
        .find(|line| line["event"] == "resumed")
        .expect("a resumed line");
    assert_eq!(
        resumed["result"],
        json!([{ "group": group, "resync": true }])
    );
    client.stop().await;
    app.stop().await;
}
