//! Serves the SignalR hub with a benchmark backend on 127.0.0.1 and emits timed messages
//! to one task group through `Hub::dispatch`, at a rate set by a flag or at run time
//! through the control endpoint:
//!
//! - `POST /bench/rate?messages_per_second=R` sets the emit rate.
//! - `GET /bench/stats` returns `{"emitted": N, "messages_per_second": R}`.
//!
//! The backend accepts any bearer token as one fixed principal and grants every join with
//! sequence number 0 and a small snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use clap::Parser;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tasklane_bench::payload::{task_data, unix_nanos};
use tasklane_bench::system::raise_nofile_limit;
use tasklane_hub::{
    AuthRejected, Hub, HubBackend, HubMessage, HubSettings, JoinError, JoinGrant, JoinTarget,
    Principal,
};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

/// The emitter checks for due messages this often.
const TICK: Duration = Duration::from_millis(1);

#[derive(Parser)]
#[command(about = "Serve the SignalR hub and emit timed benchmark messages to one task group")]
struct Args {
    /// TCP port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 4000)]
    port: u16,
    /// Initial emit rate, in messages per second to the task group.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many seconds. 0 runs until interrupted.
    #[arg(long, default_value_t = 0)]
    duration_secs: u64,
    /// Id of the task whose group receives the messages.
    #[arg(long, default_value = "00000000-0000-4000-8000-000000000001")]
    task_id: Uuid,
}

/// Accepts every token as one fixed principal and grants every join.
struct BenchBackend {
    principal: Principal,
}

#[async_trait::async_trait]
impl HubBackend for BenchBackend {
    async fn authenticate(&self, _bearer_token: &str) -> Result<Principal, AuthRejected> {
        Ok(self.principal.clone())
    }

    async fn join(
        &self,
        _principal: &Principal,
        target: JoinTarget,
    ) -> Result<JoinGrant, JoinError> {
        Ok(JoinGrant {
            group: target.group(),
            seq: 0,
            snapshot: json!({ "id": target.id() }),
        })
    }
}

struct RateSetting {
    messages_per_second: f64,
    set_at: Instant,
    emitted_at_set: u64,
}

/// Emits to `group` at the current rate. Each tick emits every message due since the rate
/// was set, so a late tick catches up instead of lowering the average rate.
struct Emitter {
    hub: Hub,
    group: String,
    emitted: AtomicU64,
    rate: Mutex<RateSetting>,
}

impl Emitter {
    fn new(hub: Hub, group: String, messages_per_second: f64) -> Self {
        Self {
            hub,
            group,
            emitted: AtomicU64::new(0),
            rate: Mutex::new(RateSetting {
                messages_per_second,
                set_at: Instant::now(),
                emitted_at_set: 0,
            }),
        }
    }

    fn set_rate(&self, messages_per_second: f64) {
        *self.rate.lock() = RateSetting {
            messages_per_second,
            set_at: Instant::now(),
            emitted_at_set: self.emitted.load(Ordering::Relaxed),
        };
        tracing::info!(messages_per_second, "emit rate set");
    }

    async fn run(&self) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            let due_total = {
                let rate = self.rate.lock();
                let due = rate.messages_per_second * rate.set_at.elapsed().as_secs_f64();
                rate.emitted_at_set + due as u64
            };
            while self.emitted.load(Ordering::Relaxed) < due_total {
                self.emit_one();
            }
        }
    }

    fn emit_one(&self) {
        // Counted before the send time is taken, so a message that the emitted count read
        // by the load generator at a window's start leaves out has a later send time.
        let counter = self.emitted.fetch_add(1, Ordering::Relaxed) + 1;
        let seq = i64::try_from(counter).expect("fewer than 2^63 messages are emitted");
        let message = HubMessage {
            group: self.group.clone(),
            seq,
            event_id: Uuid::from_u64_pair(0, counter),
            event_type: "task.updated".to_owned(),
            method: "taskUpdated".to_owned(),
            data: task_data(unix_nanos(), counter),
        };
        self.hub.dispatch(&message);
    }
}

#[derive(Deserialize)]
struct RateQuery {
    messages_per_second: f64,
}

async fn set_rate(
    State(emitter): State<Arc<Emitter>>,
    Query(query): Query<RateQuery>,
) -> Result<StatusCode, (StatusCode, String)> {
    let rate = query.messages_per_second;
    if !rate.is_finite() || rate < 0.0 {
        let message = format!("invalid messages_per_second {rate}: expected a number >= 0");
        return Err((StatusCode::BAD_REQUEST, message));
    }
    emitter.set_rate(rate);
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(emitter): State<Arc<Emitter>>) -> Json<serde_json::Value> {
    let messages_per_second = emitter.rate.lock().messages_per_second;
    Json(json!({
        "emitted": emitter.emitted.load(Ordering::Relaxed),
        "messages_per_second": messages_per_second,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The log goes to a file. Without colour codes each connection's span also keeps its
    // formatted fields shorter, closer to the JSON logs of the tasklane binary.
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let open_files = raise_nofile_limit().context("failed to raise RLIMIT_NOFILE")?;

    let backend = Arc::new(BenchBackend {
        principal: Principal::new(Uuid::from_u64_pair(0, 1), Uuid::from_u64_pair(0, 2)),
    });
    let hub = Hub::new(backend, HubSettings::default());
    let group = JoinTarget::Task(args.task_id).group();
    let emitter = Arc::new(Emitter::new(hub.clone(), group, args.rate));

    let control = Router::new()
        .route("/bench/rate", post(set_rate))
        .route("/bench/stats", get(stats))
        .with_state(Arc::clone(&emitter));
    let router = hub.router().merge(control);

    let address = format!("127.0.0.1:{}", args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("failed to listen on {address}"))?;
    tracing::info!(%address, pid = std::process::id(), open_files, "hub bench server started");

    let emitter_task = tokio::spawn(async move { emitter.run().await });
    let stop = stop_signal(args.duration_secs);
    // Small frames must leave at once, but Nagle's algorithm can delay one until the client
    // acknowledges the previous one. Node 20's HTTP server sets TCP_NODELAY by default
    // (`server.noDelay` is true), so the Socket.IO baseline has it too.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "failed to set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .context("HTTP server failed")?;

    emitter_task.abort();
    hub.shutdown().await;
    tracing::info!("hub bench server stopped");
    Ok(())
}

/// Completes on Ctrl-C, SIGTERM, or after `duration_secs` if that is not 0.
async fn stop_signal(duration_secs: u64) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler can be installed");
    let deadline = async {
        if duration_secs == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_secs(duration_secs)).await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
        _ = terminate.recv() => tracing::info!("terminated, stopping"),
        () = deadline => tracing::info!(duration_secs, "duration elapsed, stopping"),
    }
}
