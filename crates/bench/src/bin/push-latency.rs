//! Measures end-to-end push latency on a running Tasklane: from sending `PATCH
//! /api/v1/tasks/{id}` to the `taskUpdated` message reaching a SignalR client that joined the
//! task, through the whole path (API commit with its outbox row, relay, `hub_messages`,
//! Redis backplane, hub, WebSocket).
//!
//! The program registers a fresh account, creates one task and joins it over WebSockets
//! with the JSON protocol. It then sends the updates one at a time and waits for each push,
//! so the figures are latencies of an idle system rather than of a saturated one.
//! `scripts/bench-push` starts a server and runs this program against it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::Parser;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tasklane_bench::signalr_client::{self, SignalrTarget};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Title prefix of each update. The number after it identifies the update in its push.
const TITLE_PREFIX: &str = "latency-probe-";

#[derive(Parser)]
#[command(about = "Measures the latency from a task PATCH to the client's taskUpdated push")]
struct Args {
    /// HTTP root of a running Tasklane with the api, relay and hub roles.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Updates measured after the warm-up.
    #[arg(long, default_value_t = 500)]
    updates: u32,
    /// Updates sent first and not measured.
    #[arg(long, default_value_t = 20)]
    warmup: u32,
    /// Pause between two updates, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pause_ms: u64,
    /// How long to wait for one push before giving up, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let token = register_and_log_in(&http, &args.base_url).await?;
    let task_id = create_task(&http, &args.base_url, &token).await?;

    let target = SignalrTarget {
        base_url: args.base_url.clone(),
        hub_path: "/hubs/tasks".to_owned(),
        bearer_token: token.clone(),
        task_id,
    };
    let socket = signalr_client::connect(&target, &http).await?;
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    tokio::spawn(forward_update_numbers(socket, arrivals_tx));

    let task_url = format!("{}/api/v1/tasks/{task_id}", args.base_url);
    let mut to_push = new_histogram();
    let mut round_trip = new_histogram();
    let mut pushed_before_response = 0u32;
    let timeout = Duration::from_millis(args.timeout_ms);
    for number in 0..args.warmup + args.updates {
        let sent = Instant::now();
        let response = http
            .patch(&task_url)
            .bearer_auth(&token)
            .header("content-type", "application/merge-patch+json")
            .body(json!({ "title": format!("{TITLE_PREFIX}{number}") }).to_string())
            .send()
            .await?;
        let responded = Instant::now();
        ensure!(
            response.status().is_success(),
            "PATCH failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let arrived = wait_for_update(&mut arrivals, number, timeout).await?;
        if number < args.warmup {
            continue;
        }
        to_push.record(micros(arrived - sent))?;
        round_trip.record(micros(responded - sent))?;
        if arrived < responded {
            pushed_before_response += 1;
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }

    println!(
        "{} updates, one at a time, {} ms apart",
        args.updates, args.pause_ms
    );
    print_row("PATCH sent to taskUpdated received", &to_push);
    print_row("PATCH round trip (for comparison)", &round_trip);
    println!(
        "pushes that arrived before the PATCH response: {pushed_before_response} of {}",
        args.updates
    );
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().clamp(1, 60_000_000) as u64
}

fn print_row(label: &str, histogram: &Histogram<u64>) {
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1e3;
    println!(
        "{label:<38} p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1e3
    );
}

async fn wait_for_update(
    arrivals: &mut mpsc::UnboundedReceiver<(u32, Instant)>,
    number: u32,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, arrivals.recv()).await;
        match next {
            Err(_) => bail!("update {number} was not pushed within {timeout:?}"),
            Ok(None) => bail!("the hub connection closed while waiting for update {number}"),
            Ok(Some((arrived_number, at))) if arrived_number == number => return Ok(at),
            Ok(Some(_)) => continue,
        }
    }
}

/// Sends the update number and arrival time of every `taskUpdated` push on `arrivals`.
async fn forward_update_numbers(
    mut socket: signalr_client::Socket,
    arrivals: mpsc::UnboundedSender<(u32, Instant)>,
) {
    while let Some(Ok(message)) = socket.next().await {
        let at = Instant::now();
        let Message::Text(text) = message else {
            continue;
        };
        for frame in text.split('\u{1e}') {
            if !frame.contains(r#""target":"taskUpdated""#) {
                continue;
            }
            if let Some(number) = update_number(frame) {
                if arrivals.send((number, at)).is_err() {
                    return;
                }
            }
        }
    }
}

fn update_number(frame: &str) -> Option<u32> {
    let start = frame.find(TITLE_PREFIX)? + TITLE_PREFIX.len();
    let digits: String = frame[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn register_and_log_in(http: &reqwest::Client, base_url: &str) -> anyhow::Result<String> {
    let email = format!("latency-{}@example.com", Uuid::new_v4().simple());
    let password = "latency-bench-password-7d2e";
    let registered = http
        .post(format!("{base_url}/api/v1/auth/register"))
        .json(&json!({ "email": email, "password": password, "name": "Latency Bench", "tenant": "Latency" }))
        .send()
        .await
        .with_context(|| format!("is Tasklane running at {base_url}?"))?;
    ensure!(
        registered.status().is_success(),
        "registration failed: {}",
        registered.status()
    );
    let login: Value = http
        .post(format!("{base_url}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    login["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("login returned no access_token")
}

async fn create_task(http: &reqwest::Client, base_url: &str, token: &str) -> anyhow::Result<Uuid> {
    let projects: Value = http
        .get(format!("{base_url}/api/v1/projects"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let project_id = projects["items"][0]["id"]
        .as_str()
        .context("the new account has no project")?;
    let task: Value = http
        .post(format!("{base_url}/api/v1/tasks"))
        .bearer_auth(token)
        .json(&json!({ "project_id": project_id, "title": format!("{TITLE_PREFIX}start") }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    task["id"]
        .as_str()
        .context("the created task has no id")?
        .parse()
        .context("the task id is not a UUID")
}
