//! Hub delivery that loses nothing: `Resume` served from the group's Redis log or from
//! `hub_messages`, `resync` when neither reaches back, and live delivery that goes on
//! through PostgreSQL while Redis is down and returns to Redis when it is back.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Account, HubClient, TestApp};
use serde_json::{json, Value};
use tasklane_workers::relay::HUB_MESSAGE_RETENTION;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Time allowed for the relay to record a message, or for a client to receive it.
const WAIT: Duration = Duration::from_secs(20);

/// Time allowed for a new hub client to connect, join and resume while Redis is down.
const CONNECT_DURING_OUTAGE: Duration = Duration::from_secs(5);

fn default_redis_url() -> String {
    std::env::var("TASKLANE_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `redis-cli` against `redis_url` and returns its trimmed output.
async fn redis_cli(redis_url: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-u", redis_url])
        .args(args)
        .output()
        .await
        .expect("running redis-cli");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn hub_log_key(app: &TestApp, group: &str) -> String {
    format!("{}:hub:{group}:log", app.prefix)
}

async fn patch_title(app: &TestApp, account: &Account, task_id: Uuid, title: &str) {
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{task_id}")))
        .bearer_auth(&account.token)
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "PATCH {task_id} to {title:?}");
}

/// Waits until the relay has recorded `count` messages for `group` in `hub_messages`.
async fn wait_for_recorded(app: &TestApp, group: &str, count: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let recorded: i64 =
            sqlx::query_scalar("select count(*) from hub_messages where group_name = $1")
                .bind(group)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if recorded >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} has {recorded} of {count} messages in hub_messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the sorted set `key` in Redis has `count` entries.
async fn wait_for_redis_log(redis_url: &str, key: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let length: usize = redis_cli(redis_url, &["ZCARD", key]).await.parse().unwrap();
        if length >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} has {length} of {count} entries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a task and renames it `titles.len()` times, then waits until the relay has
/// recorded every message of the task's group in PostgreSQL and in the Redis log.
async fn task_with_history(app: &TestApp, account: &Account, titles: &[&str]) -> (Uuid, String) {
    let task = app.create_task(account, "created").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let group = format!("task:{task_id}");
    for title in titles {
        patch_title(app, account, task_id, title).await;
    }
    let count = titles.len() + 1;
    wait_for_recorded(app, &group, count as i64).await;
    wait_for_redis_log(&default_redis_url(), &hub_log_key(app, &group), count).await;
    (task_id, group)
}

/// Rewrites the title in every stored envelope of `group`, so a test can tell whether a
/// replayed message came from PostgreSQL.
async fn mark_postgres_copies(app: &TestApp, group: &str) {
    sqlx::query(
        "update hub_messages
         set envelope = jsonb_set(envelope, '{data,title}', to_jsonb('from postgresql ' || seq))
         where group_name = $1",
    )
    .bind(group)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Collects the `(seq, title)` of every task message among `lines`, in arrival order.
fn task_messages(lines: &[Value]) -> Vec<(i64, String)> {
    lines
        .iter()
        .filter(|line| line["event"] == "message" && line["method"] == "taskUpdated")
        .map(|line| {
            let envelope = &line["envelope"];
            (
                envelope["seq"].as_i64().unwrap(),
                envelope["data"]["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn resume_after(group: &str, seq: i64) -> Vec<String> {
    vec!["--resume".to_owned(), format!("{group}:{seq}")]
}

fn resumed_result(client: &HubClient) -> Value {
    let resumed = client
        .seen
        .iter()
        .find(|line| line["event"] == "resumed")
        .expect("a resumed line");
    resumed["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_served_from_redis_log() {
    let app = TestApp::spawn().await;
    let account = app.register("Redis resume").await;
    let (_, group) = task_with_history(&app, &account, &["a", "b", "c", "d"]).await;
    mark_postgres_copies(&app, &group).await;

    let args = resume_after(&group, 1);
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &args).await;

    let expected: Vec<(i64, String)> = vec![
        (2, "a".to_owned()),
        (3, "b".to_owned()),
        (4, "c".to_owned()),
        (5, "d".to_owned()),
    ];
    assert_eq!(task_messages(&client.seen), expected);
    assert_eq!(
        resumed_result(&client),
        json!([{ "group": group, "seq": 5 }])
    );
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_served_from_postgres_without_log() {
    let app = TestApp::spawn().await;
    let account = app.register("Postgres resume").await;
    let (_, group) = task_with_history(&app, &account, &["a", "b", "c"]).await;
    mark_postgres_copies(&app, &group).await;
    redis_cli(&default_redis_url(), &["DEL", &hub_log_key(&app, &group)]).await;

    let args = resume_after(&group, 2);
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &args).await;

    let expected: Vec<(i64, String)> = vec![
        (3, "from postgresql 3".to_owned()),
        (4, "from postgresql 4".to_owned()),
    ];
    assert_eq!(task_messages(&client.seen), expected);
    assert_eq!(
        resumed_result(&client),
        json!([{ "group": group, "seq": 4 }])
    );
    client.stop().await;
    app.stop().await;
}

// The Redis log keeps only the newest messages, so a resume from before its oldest one is
// served wholly from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_before_log_start_uses_postgres() {
    let app = TestApp::spawn().await;
    let account = app.register("Trimmed log").await;
    let (_, group) = task_with_history(&app, &account, &["a", "b", "c"]).await;
    mark_postgres_copies(&app, &group).await;
    let key = hub_log_key(&app, &group);
    redis_cli(&default_redis_url(), &["ZREMRANGEBYSCORE", &key, "0", "2"]).await;

    let args = resume_after(&group, 1);
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &args).await;

    let expected: Vec<(i64, String)> = (2..=4)
        .map(|seq| (seq, format!("from postgresql {seq}")))
        .collect();
    assert_eq!(task_messages(&client.seen), expected);
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_without_any_history_resyncs() {
    let app = TestApp::spawn().await;
    let account = app.register("No history").await;
    let (_, group) = task_with_history(&app, &account, &["a", "b"]).await;
    redis_cli(&default_redis_url(), &["DEL", &hub_log_key(&app, &group)]).await;
    sqlx::query("delete from hub_messages where group_name = $1 and seq <= 2")
        .bind(&group)
        .execute(&app.pool)
        .await
        .unwrap();

    let args = resume_after(&group, 1);
    let client = HubClient::connect_with_args(&app.hub_url(), &account.token, &args).await;

    let resync = client
        .seen
        .iter()
        .find(|line| line["event"] == "resync")
        .expect("a resync line");
    assert_eq!(resync["group"], group);
    assert_eq!(
        resumed_result(&client),
        json!([{ "group": group, "resync": true }])
    );
    assert!(task_messages(&client.seen).is_empty(), "{:?}", client.seen);
    client.stop().await;
    app.stop().await;
}

/// A Redis server of the test's own on a free loopback port, which it can stop and start.
struct OwnRedis {
    port: u16,
    process: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let port = self.port.to_string();
        let process = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("running redis-server");
        self.process = Some(process);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.answers_ping().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        let output = Command::new("redis-cli")
            .args(["-u", &self.url(), "PING"])
            .output()
            .await
            .expect("running redis-cli");
        output.status.success() && output.stdout.starts_with(b"PONG")
    }

    async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("stopping redis-server");
        }
    }
}

/// Waits until `count` clients subscribe to `channel`.
async fn wait_for_subscribers(redis_url: &str, channel: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let output = redis_cli(redis_url, &["PUBSUB", "NUMSUB", channel]).await;
        let subscribers: usize = output
            .lines()
            .last()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or(0);
        if subscribers >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} has {subscribers} of {count} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rename_and_receive(
    app: &TestApp,
    account: &Account,
    task_id: Uuid,
    client: &mut HubClient,
    title: &str,
) {
    patch_title(app, account, task_id, title).await;
    client
        .wait_for(
            |line| line["event"] == "message" && line["envelope"]["data"]["title"] == title,
            WAIT,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_survives_redis_outage() {
    let mut redis = OwnRedis::start().await;
    let app = TestApp::spawn_with_redis(&redis.url()).await;
    let channel = format!("{}:hub:messages", app.prefix);
    wait_for_subscribers(&redis.url(), &channel, 1).await;
    let account = app.register("Outage").await;
    let task = app.create_task(&account, "created").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    // The join then starts after the creation message, so every later one arrives live.
    wait_for_recorded(&app, &format!("task:{task_id}"), 1).await;
    let mut client = HubClient::connect(&app.hub_url(), &account.token, &[task_id], &[]).await;

    for title in ["redis 1", "redis 2"] {
        rename_and_receive(&app, &account, task_id, &mut client, title).await;
    }
    redis.stop().await;
    for title in ["postgres 1", "postgres 2", "postgres 3"] {
        rename_and_receive(&app, &account, task_id, &mut client, title).await;
    }
    // A client that connects while Redis is down negotiates without the owner registry
    // and resumes from PostgreSQL, then gets the next message live.
    let group = format!("task:{task_id}");
    let connecting = tokio::time::Instant::now();
    let args = resume_after(&group, 2);
    let hub_url = app.hub_url();
    let connect = HubClient::connect_with_args(&hub_url, &account.token, &args);
    let mut resumer = tokio::time::timeout(CONNECT_DURING_OUTAGE, connect)
        .await
        .unwrap_or_else(|_| {
            panic!("new hub client not ready within {CONNECT_DURING_OUTAGE:?} with Redis down")
        });
    eprintln!(
        "new hub client ready {:?} after it started, with Redis down",
        connecting.elapsed()
    );
    assert_eq!(
        resumed_result(&resumer),
        json!([{ "group": group, "seq": 6 }])
    );
    patch_title(&app, &account, task_id, "postgres 4").await;
    for receiver in [&mut client, &mut resumer] {
        receiver
            .wait_for(
                |line| {
                    line["event"] == "message" && line["envelope"]["data"]["title"] == "postgres 4"
                },
                WAIT,
            )
            .await;
    }
    let mut resumer_lines = resumer.seen.clone();
    resumer_lines.extend(resumer.drain());
    let expected_resumed: Vec<(i64, String)> = (3..)
        .zip([
            "redis 2",
            "postgres 1",
            "postgres 2",
            "postgres 3",
            "postgres 4",
        ])
        .map(|(seq, title)| (seq, title.to_owned()))
        .collect();
    assert_eq!(task_messages(&resumer_lines), expected_resumed);
    resumer.stop().await;

    redis.restart().await;
    wait_for_subscribers(&redis.url(), &channel, 1).await;
    // The restarted Redis started empty, so an entry in the log shows the relay writes to
    // Redis again. The relay's connection may come back after the hub's subscription did,
    // and messages sent before that reach clients through PostgreSQL only, so renaming goes
    // on until one lands in the log.
    let key = hub_log_key(&app, &format!("task:{task_id}"));
    let mut titles: Vec<String> = [
        "redis 1",
        "redis 2",
        "postgres 1",
        "postgres 2",
        "postgres 3",
        "postgres 4",
    ]
    .map(str::to_owned)
    .to_vec();
    let deadline = tokio::time::Instant::now() + WAIT;
    for number in 3.. {
        let title = format!("redis {number}");
        rename_and_receive(&app, &account, task_id, &mut client, &title).await;
        titles.push(title);
        let logged: usize = redis_cli(&redis.url(), &["ZCARD", &key])
            .await
            .parse()
            .unwrap();
        if number >= 4 && logged >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} stayed empty: the relay did not write to the restarted Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut lines = client.seen.clone();
    lines.extend(client.drain());
    let expected: Vec<(i64, String)> = (2..).zip(titles).collect();
    assert_eq!(task_messages(&lines), expected);
    client.stop().await;
    app.stop().await;
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_expired_messages() {
    let app = TestApp::spawn().await;
    let account = app.register("Prune").await;
    let (_, group) = task_with_history(&app, &account, &["a", "b"]).await;
    sqlx::query(
        "update hub_messages set created_at = now() - interval '8 days'
         where group_name = $1 and seq <= 2",
    )
    .bind(&group)
    .execute(&app.pool)
    .await
    .unwrap();

    let deleted = tasklane_store::hub::prune(&app.pool, HUB_MESSAGE_RETENTION, 5_000)
        .await
        .unwrap();

    assert_eq!(deleted, 2);
    let remaining: Vec<i64> =
        sqlx::query_scalar("select seq from hub_messages where group_name = $1 order by seq")
            .bind(&group)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(remaining, [3]);
    app.stop().await;
}

/// Returns whether `line` is a `viewers` message for `group` that lists `user_id`.
fn viewers_include(line: &Value, group: &str, user_id: Uuid) -> bool {
    let lists_user = line["envelope"]["users"].as_array().is_some_and(|users| {
        users
            .iter()
            .any(|user| user["user_id"] == user_id.to_string())
    });
    line["event"] == "presence"
        && line["method"] == "viewers"
        && line["envelope"]["group"] == group
        && lists_user
}

// A presence change published while a node's subscription is down never reaches that
// node, so the node sends every list it has clients for again once it subscribes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_resent_after_subscription_loss() {
    let redis = OwnRedis::start().await;
    let app = TestApp::spawn_with_redis(&redis.url()).await;
    let channel = format!("{}:hub:presence", app.prefix);
    wait_for_subscribers(&redis.url(), &channel, 1).await;
    let owner = app.register("Presence loss").await;
    let colleague = app.add_member(&owner, "member").await;
    let task = app.create_task(&owner, "watched").await;
    let task_id: Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let group = format!("task:{task_id}");
    let mut watcher = HubClient::connect(&app.hub_url(), &owner.token, &[task_id], &[]).await;

    // The subscription comes back a second later, so the colleague's join is published
    // while the node is not listening.
    redis_cli(&redis.url(), &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    let colleague_client =
        HubClient::connect(&app.hub_url(), &colleague.token, &[task_id], &[]).await;

    watcher
        .wait_for(
            |line| viewers_include(line, &group, colleague.user_id),
            WAIT,
        )
        .await;
    colleague_client.stop().await;
    watcher.stop().await;
    app.stop().await;
}
