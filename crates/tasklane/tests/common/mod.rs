//! Test harness: each test gets its own database and name prefix, and the whole
//! application in-process on a free port, against the real PostgreSQL, Redis, RabbitMQ and
//! Kafka broker that `scripts/services-up` starts.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tasklane::app::Application;
use tasklane::roles::Role;
use tasklane_config::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Admin URL of the database server; tests create one database each on it.
fn server_url() -> String {
    std::env::var("TASKLANE_DATABASE__URL")
        .unwrap_or_else(|_| "postgres://tasklane:tasklane@127.0.0.1:5432/tasklane".to_owned())
}

pub struct TestApp {
    pub base_url: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub prefix: String,
    database: String,
    application: Option<Application>,
}

/// The password `TestApp::register` gives every account.
pub const TEST_PASSWORD: &str = "correct horse battery";

pub struct Account {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let redis_url = std::env::var("TASKLANE_REDIS__URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        Self::spawn_with_redis(&redis_url).await
    }

    /// Starts the application like [`Self::spawn`], with every role on the Redis server at
    /// `redis_url`.
    pub async fn spawn_with_redis(redis_url: &str) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        let database = format!("tasklane_test_{suffix}");
        let admin = PgPool::connect(&server_url())
            .await
            .expect("connecting to PostgreSQL; run scripts/services-up");
        sqlx::query(&format!("create database {database}"))
            .execute(&admin)
            .await
            .expect("creating test database");
        admin.close().await;
        let database_url = replace_database(&server_url(), &database);

        let prefix = format!("t{}", &suffix[..12]);
        let overrides = json!({
            "server": { "bind": "127.0.0.1:0" },
            "database": { "url": database_url, "max_connections": 10 },
            "redis": { "url": redis_url },
            "rabbitmq": {
                "url": std::env::var("TASKLANE_RABBITMQ__URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
                "queue_type": "classic",
                "queue_expires": "2m",
            },
            "kafka": { "brokers": std::env::var("TASKLANE_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()), "partitions": 1 },
            "namespace": { "prefix": prefix },
            "relay": { "poll_interval": "100ms", "retry_delay": "500ms" },
            "log": { "format": "text", "filter": "warn,sqlx=error" },
            "mail": { "smtp_host": "127.0.0.1", "smtp_port": mail_capture().port },
        });
        let settings = Settings::with_overrides(overrides).expect("valid test settings");
        tasklane_telemetry::init_logging(&settings.log);
        let application = Application::start(settings, &Role::ALL)
            .await
            .expect("starting the application");
        let address = application.address.expect("the api role listens");
        let pool = PgPool::connect(&database_url)
            .await
            .expect("connecting to the test database");
        Self {
            base_url: format!("http://{address}"),
            pool,
            client: reqwest::Client::new(),
            prefix,
            database,
            application: Some(application),
        }
    }

    /// The running hub, for tests that publish to it without the relay.
    pub fn hub(&self) -> tasklane_hub::Hub {
        let application = self
            .application
            .as_ref()
            .expect("the application is running");
        application.hub.clone().expect("the hub role runs")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn hub_url(&self) -> String {
        self.url("/hubs/tasks")
    }

    /// Registers a new person with their own tenant and logs them in.
    pub async fn register(&self, tenant: &str) -> Account {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let response = self
            .client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({ "email": email, "password": TEST_PASSWORD, "name": "Test Person", "tenant": tenant }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "registration failed");
        self.mark_email_verified(&email).await;

        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": TEST_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login after registration failed");
        let body: Value = response.json().await.unwrap();
        let tenant_id: Uuid = body["tenant_id"].as_str().unwrap().parse().unwrap();
        let project_id = sqlx::query_scalar(
            "select id from projects where tenant_id = $1 order by created_at limit 1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await
        .expect("registration creates a default project");
        Account {
            user_id: body["user_id"].as_str().unwrap().parse().unwrap(),
            tenant_id,
            project_id,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Waits up to 20 s for a mail to `recipient` whose subject contains `subject`, and
    /// returns it as `tests/js/smtp-capture.mjs` reports it (`subject`, `text`, ...).
    pub async fn wait_for_mail(&self, recipient: &str, subject: &str) -> Value {
        for _ in 0..200 {
            if let Some(mail) = self.mails_to(recipient).into_iter().find(|mail| {
                mail["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(subject)
            }) {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no mail to {recipient} with a subject containing {subject:?} arrived within 20 s; received: {:?}",
            self.mails_to(recipient)
        );
    }

    /// Returns every mail the SMTP capture server has received for `recipient` so far.
    pub fn mails_to(&self, recipient: &str) -> Vec<Value> {
        let messages = mail_capture().messages.lock().unwrap();
        messages
            .iter()
            .filter(|mail| {
                mail["envelope_to"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|to| {
                        to.as_str()
                            .is_some_and(|to| to.eq_ignore_ascii_case(recipient))
                    })
            })
            .cloned()
            .collect()
    }

    /// Marks an address verified in the database, as following the verification mail would.
    /// Test accounts skip the mail, so tests of other features do not depend on the relay,
    /// RabbitMQ and the email worker. The mail path has its own tests.
    pub async fn mark_email_verified(&self, email: &str) {
        sqlx::query("update users set email_verified_at = now() where lower(email) = lower($1)")
            .bind(email)
            .execute(&self.pool)
            .await
            .expect("marking the test account verified");
    }

    /// Reads a user's e-mail address.
    pub async fn email_of(&self, user_id: Uuid) -> String {
        sqlx::query_scalar("select email from users where id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .expect("reading the user's e-mail")
    }

    /// Registers a second person, has `owner` invite them with `role`, and returns an
    /// access token of theirs for `owner`'s tenant.
    pub async fn add_member(&self, owner: &Account, role: &str) -> Account {
        let person = self.register("Member home").await;
        let email = self.email_of(person.user_id).await;
        let invited = self
            .post_json(
                &owner.token,
                "/api/v1/invitations",
                json!({ "email": email, "role": role }),
            )
            .await;
        assert_eq!(invited.status(), 201, "invitation failed");

        let invitation: Value = invited.json().await.unwrap();
        let accept_path = format!(
            "/api/v1/invitations/{}/accept",
            invitation["token"].as_str().unwrap()
        );
        let accepted = self.post_json(&person.token, &accept_path, json!({})).await;
        assert_eq!(accepted.status(), 200, "accepting the invitation failed");

        let switched = self
            .post_json(
                &person.token,
                "/api/v1/auth/switch-tenant",
                json!({ "tenant": owner.tenant_id }),
            )
            .await;
        assert_eq!(switched.status(), 200, "switching tenant failed");
        let switched: Value = switched.json().await.unwrap();
        Account {
            user_id: person.user_id,
            tenant_id: owner.tenant_id,
            project_id: owner.project_id,
            token: switched["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_task(&self, account: &Account, title: &str) -> Value {
        let response = self
            .post_json(
                &account.token,
                "/api/v1/tasks",
                json!({ "project_id": account.project_id, "title": title }),
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Uploads a file to `POST /imports` and returns the job id.
    pub async fn start_import(&self, token: &str, path: &std::path::Path) -> Uuid {
        let bytes = tokio::fs::read(path).await.unwrap();
        let part = reqwest::multipart::Part::bytes(bytes).file_name("export.csv");
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("format", "jira");
        let response = self
            .client
            .post(self.url("/api/v1/imports"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().parse().unwrap()
    }

    /// Polls `GET /jobs/{id}` until the job ends, and returns it.
    pub async fn wait_for_job(&self, token: &str, job_id: Uuid) -> Value {
        for _ in 0..600 {
            let job: Value = self
                .get(token, &format!("/api/v1/jobs/{job_id}"))
                .await
                .json()
                .await
                .unwrap();
            if matches!(
                job["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("job {job_id} did not finish within 120 s");
    }

    pub async fn stop(mut self) {
        if let Some(application) = self.application.take() {
            application.stop().await;
        }
        self.pool.close().await;
        // A failing test skips this and leaves its database behind for inspection.
        if let Ok(admin) = PgPool::connect(&server_url()).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.database
            ))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// The SMTP server of `tests/js/smtp-capture.mjs`, started once per test binary and shared
/// by its tests, which tell their mail apart by the unique recipient addresses they use.
pub struct MailCapture {
    pub port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
    /// Kept open for the life of the test process; the server exits when it closes.
    _stdin: Mutex<std::process::ChildStdin>,
}

/// Starts the SMTP capture server on first use and returns it.
pub fn mail_capture() -> &'static MailCapture {
    static CAPTURE: OnceLock<MailCapture> = OnceLock::new();
    CAPTURE.get_or_init(start_mail_capture)
}

fn start_mail_capture() -> MailCapture {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    assert!(
        js.join("node_modules/smtp-server").exists(),
        "the SMTP capture server is not installed; run `npm ci --prefix tests/js`"
    );
    let mut child = std::process::Command::new("node")
        .arg(js.join("smtp-capture.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running node for the SMTP capture server");
    let stdin = child.stdin.take().expect("piped stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();

    let first = lines
        .next()
        .expect("the SMTP capture server exited before listening")
        .expect("reading the SMTP capture server's output");
    let listening: Value = serde_json::from_str(&first).expect("a JSON line");
    let port = listening["port"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or_else(|| panic!("the SMTP capture server did not report a port: {first}"));

    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&messages);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            match serde_json::from_str::<Value>(&line) {
                Ok(message) => sink.lock().unwrap().push(message),
                Err(error) => {
                    eprintln!("invalid line from the SMTP capture server ({error}): {line}")
                }
            }
        }
        // The output ends when the server exits; reap it.
        let _ = child.wait();
    });
    MailCapture {
        port,
        messages,
        _stdin: Mutex::new(stdin),
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL ends in /NAME");
    format!("{base}/{database}")
}

/// Path of a sample file under `data/samples`.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

/// The official `@microsoft/signalr` client, run by `tests/js/hub-client.mjs`, reporting
/// each event as one JSON line.
pub struct HubClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every line `wait_for` has read, matching or not.
    pub seen: Vec<Value>,
}

impl HubClient {
    /// Connects, performs the joins, and waits until the client reports it is ready.
    pub async fn connect(hub_url: &str, token: &str, tasks: &[Uuid], jobs: &[Uuid]) -> Self {
        let mut args = Vec::new();
        for id in tasks {
            args.extend(["--join-task".to_owned(), id.to_string()]);
        }
        for id in jobs {
            args.extend(["--join-job".to_owned(), id.to_string()]);
        }
        Self::connect_with_args(hub_url, token, &args).await
    }

    /// Connects with more `hub-client.mjs` options, such as `--resume GROUP:SEQ`, and waits
    /// until the client reports it is ready.
    pub async fn connect_with_args(hub_url: &str, token: &str, args: &[String]) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js/hub-client.mjs");
        let modules = script
            .parent()
            .unwrap()
            .join("node_modules/@microsoft/signalr");
        assert!(
            modules.exists(),
            "the SignalR client is not installed; run `npm ci --prefix tests/js`"
        );
        let mut command = Command::new("node");
        command
            .arg(script)
            .args(["--url", hub_url, "--token", token])
            .args(args);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("running node");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = sender.send(value);
                }
            }
        });
        let mut client = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        client
            .wait_for(|line| line["event"] == "ready", Duration::from_secs(30))
            .await;
        client
    }

    /// Returns the next line matching `predicate`, failing the test after `timeout`.
    pub async fn wait_for(
        &mut self,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("timed out waiting for a hub client event")
                .expect("the hub client exited");
            assert_ne!(
                line["event"], "error",
                "hub client reported an error: {line}"
            );
            self.seen.push(line.clone());
            if predicate(&line) {
                return line;
            }
        }
    }

    /// Returns every line received so far that is not yet consumed.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            lines.push(line);
        }
        lines
    }

    /// Invokes the hub method `method` with `args` (a JSON array) through the client, and
    /// returns the client's `invoked` line, whose `result` is the method's result.
    pub async fn invoke(&mut self, method: &str, args: Value) -> Value {
        let command = format!("{}\n", json!({ "method": method, "args": args }));
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("the client's stdin is open");
        tokio::io::AsyncWriteExt::write_all(stdin, command.as_bytes())
            .await
            .expect("writing a command to the hub client");
        self.wait_for(
            |line| line["event"] == "invoked" && line["method"] == method,
            Duration::from_secs(10),
        )
        .await
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
