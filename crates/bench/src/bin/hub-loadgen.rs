//! Load generator for the hub benchmark. It opens N WebSocket clients against the Rust hub
//! (`--target signalr`) or the Socket.IO baseline (`--target socketio`) and measures the
//! server's memory per idle connection. Then it steps the server's emit rate up through the
//! control endpoint and measures deliveries per second and latency at each step. It stops
//! at the first step that loses messages, or after `--max-steps`.
//!
//! Progress goes to stderr, and one JSON object with every step goes to stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use serde::Serialize;
use tasklane_bench::control::ControlClient;
use tasklane_bench::payload::unix_nanos;
use tasklane_bench::signalr_client::{self, SignalrTarget, Socket};
use tasklane_bench::socketio_client::{self, SocketioTarget};
use tasklane_bench::stats::{DeliveryRecorder, LatencySummary, StepMeasurement, SustainCriteria};
use tasklane_bench::system::{own_cpu_time, process_cpu_time, raise_nofile_limit, resident_bytes};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
enum Target {
    /// The Rust SignalR hub served by hub-bench-server.
    Signalr,
    /// The Socket.IO server in bench/socketio-server.
    Socketio,
}

#[derive(Parser, Debug)]
#[command(about = "Open WebSocket clients against a benchmark server and measure fan-out")]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// HTTP root of the server.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    url: String,
    /// Hub path, for `--target signalr`.
    #[arg(long, default_value = "/hubs/tasks")]
    hub_path: String,
    /// Task whose group or room the clients join. It must match the server's.
    #[arg(long, default_value = "00000000-0000-4000-8000-000000000001")]
    task_id: Uuid,
    /// Number of WebSocket clients.
    #[arg(long)]
    connections: usize,
    /// Process id of the server, to read its resident memory and CPU time from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Maximum number of clients connecting at the same time.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Deliveries per second (emit rate times clients) of the first step.
    #[arg(long, default_value_t = 5_000.0)]
    start_deliveries_per_second: f64,
    /// Each step multiplies the emit rate by this factor.
    #[arg(long, default_value_t = 1.5)]
    step_factor: f64,
    /// Stop after this many steps even if all passed.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// Seconds at each new rate before measuring, so queues settle.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Seconds measured at each rate.
    #[arg(long, default_value_t = 3.0)]
    window_secs: f64,
    /// Seconds to wait after a window for the last deliveries of its messages. A delivery
    /// that arrives later counts as lost.
    #[arg(long, default_value_t = 2.0)]
    grace_secs: f64,
    /// p99 latency limit in milliseconds. A step above it is reported as such, but the
    /// stepping goes on, because it stops only when messages are lost.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// A step fails, and the stepping stops, if the server emitted or the clients received
    /// less than this fraction of what was expected.
    #[arg(long, default_value_t = 0.95)]
    min_fraction: f64,
    /// Seconds to wait after the last client joined before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    idle_settle_secs: f64,
    /// Free text copied into the JSON result, such as "pinned".
    #[arg(long, default_value = "")]
    label: String,
}

/// Clients that connected, and how many of them have since been disconnected.
#[derive(Default)]
struct ClientCounts {
    connected: AtomicU64,
    disconnected: AtomicU64,
}

#[derive(Serialize)]
struct StepReport {
    #[serde(flatten)]
    measurement: StepMeasurement,
    deliveries_per_second: f64,
    /// CPU time the server used per second of the window, in cores.
    server_cpu_cores: f64,
    /// CPU time this load generator used per second of the window, in cores.
    loadgen_cpu_cores: f64,
    /// Reason the step fell short of delivering every message to every client, or `None`.
    failed: Option<String>,
    /// Whether p99 latency was within `--max-p99-ms`.
    within_latency_limit: bool,
}

#[derive(Serialize)]
struct RunReport {
    target: Target,
    label: String,
    connections_requested: usize,
    connections_joined: u64,
    connect_failures: usize,
    first_connect_error: Option<String>,
    connect_secs: f64,
    server_rss_before_bytes: u64,
    server_rss_idle_bytes: u64,
    bytes_per_idle_connection: f64,
    criteria: SustainCriteria,
    steps: Vec<StepReport>,
    /// The machine's 1-minute load average at the end of the run, from /proc/loadavg.
    /// Above the core count, other processes competed for the CPU.
    load_average: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let open_files = raise_nofile_limit().context("failed to raise RLIMIT_NOFILE")?;
    if open_files < args.connections as u64 + 100 {
        bail!(
            "the open file limit {open_files} is too low for {} connections: raise the hard \
             limit (ulimit -Hn)",
            args.connections
        );
    }

    let control = ControlClient::new(&args.url, reqwest::Client::new());
    control.set_rate(0.0).await?;
    let recorder = Arc::new(DeliveryRecorder::default());
    let counts = Arc::new(ClientCounts::default());

    let rss_before = resident_bytes(args.server_pid).context("failed to read server memory")?;
    let started = Instant::now();
    let (failures, first_error) = open_clients(&args, &recorder, &counts).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let joined = counts.connected.load(Ordering::Relaxed);
    eprintln!(
        "{joined} of {} clients joined in {connect_secs:.1} s, {failures} failed",
        args.connections
    );

    tokio::time::sleep(Duration::from_secs_f64(args.idle_settle_secs)).await;
    let rss_idle = resident_bytes(args.server_pid).context("failed to read server memory")?;
    let bytes_per_idle_connection = if joined == 0 {
        0.0
    } else {
        (rss_idle as f64 - rss_before as f64) / joined as f64
    };
    eprintln!(
        "server memory: {} KiB before, {} KiB with {joined} idle clients, {:.0} bytes each",
        rss_before / 1024,
        rss_idle / 1024,
        bytes_per_idle_connection
    );

    let criteria = SustainCriteria {
        min_fraction: args.min_fraction,
        max_p99_ms: args.max_p99_ms,
    };
    let steps = if joined == 0 {
        Vec::new()
    } else {
        run_steps(&args, &control, &recorder, &counts, criteria).await?
    };
    control.set_rate(0.0).await?;

    let report = RunReport {
        target: args.target,
        label: args.label.clone(),
        connections_requested: args.connections,
        connections_joined: joined,
        connect_failures: failures,
        first_connect_error: first_error,
        connect_secs,
        server_rss_before_bytes: rss_before,
        server_rss_idle_bytes: rss_idle,
        bytes_per_idle_connection,
        criteria,
        steps,
        load_average: load_average(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Connects and joins every client, each followed by a task that counts its deliveries.
/// Returns the number of clients that failed and the first failure.
async fn open_clients(
    args: &Args,
    recorder: &Arc<DeliveryRecorder>,
    counts: &Arc<ClientCounts>,
) -> anyhow::Result<(usize, Option<String>)> {
    // No idle HTTP connections are kept after negotiate, so they do not count as memory
    // of the WebSocket connections.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let signalr = SignalrTarget {
        base_url: args.url.clone(),
        hub_path: args.hub_path.clone(),
        bearer_token: "bench".to_owned(),
        task_id: args.task_id,
    };
    let socketio = SocketioTarget {
        base_url: args.url.clone(),
        task_id: args.task_id,
    };

    let mut attempts = futures::stream::iter(0..args.connections)
        .map(|index| {
            let (http, signalr, socketio) = (&http, &signalr, &socketio);
            async move {
                let socket = match args.target {
                    Target::Signalr => signalr_client::connect(signalr, http).await,
                    Target::Socketio => socketio_client::connect(socketio).await,
                };
                (index, socket)
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1));

    let mut failures = 0;
    let mut first_error = None;
    while let Some((index, socket)) = attempts.next().await {
        match socket {
            Ok(socket) => {
                counts.connected.fetch_add(1, Ordering::Relaxed);
                spawn_receiver(args.target, socket, index, recorder, counts);
            }
            Err(error) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    Ok((failures, first_error))
}

fn spawn_receiver(
    target: Target,
    socket: Socket,
    index: usize,
    recorder: &Arc<DeliveryRecorder>,
    counts: &Arc<ClientCounts>,
) {
    let recorder = Arc::clone(recorder);
    let counts = Arc::clone(counts);
    tokio::spawn(async move {
        let error = match target {
            Target::Signalr => signalr_client::receive(socket, index, recorder).await,
            Target::Socketio => socketio_client::receive(socket, index, recorder).await,
        };
        let earlier = counts.disconnected.fetch_add(1, Ordering::Relaxed);
        // Log only the first few, since an overloaded server may drop thousands at once.
        if earlier < 5 {
            eprintln!("client {index} disconnected: {error:#}");
        }
    });
}

/// Steps the emit rate up until a step loses messages or `max_steps` have run.
async fn run_steps(
    args: &Args,
    control: &ControlClient,
    recorder: &DeliveryRecorder,
    counts: &ClientCounts,
    criteria: SustainCriteria,
) -> anyhow::Result<Vec<StepReport>> {
    let clients = counts.connected.load(Ordering::Relaxed);
    let mut rate = args.start_deliveries_per_second / clients as f64;
    let mut steps = Vec::new();
    for _ in 0..args.max_steps {
        let step = measure_step(args, control, recorder, counts, rate, criteria).await?;
        eprintln!(
            "rate {:>9.1} msg/s: {:>9.0} deliveries/s, p50 {:>7.2} ms, p99 {:>7.2} ms, \
             p99.9 {:>7.2} ms, server {:.2} cores, loadgen {:.2} cores{}{}",
            rate,
            step.deliveries_per_second,
            step.measurement.latency.p50_ms,
            step.measurement.latency.p99_ms,
            step.measurement.latency.p999_ms,
            step.server_cpu_cores,
            step.loadgen_cpu_cores,
            if step.within_latency_limit {
                ""
            } else {
                ", p99 above the limit"
            },
            step.failed
                .as_deref()
                .map(|reason| format!(", failed: {reason}"))
                .unwrap_or_default(),
        );
        let failed = step.failed.is_some();
        steps.push(step);
        if failed {
            break;
        }
        rate *= args.step_factor;
    }
    Ok(steps)
}

async fn measure_step(
    args: &Args,
    control: &ControlClient,
    recorder: &DeliveryRecorder,
    counts: &ClientCounts,
    rate: f64,
    criteria: SustainCriteria,
) -> anyhow::Result<StepReport> {
    control.set_rate(rate).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup_secs)).await;

    // The window opens before the first emitted count is read and closes after the last
    // one is read, so every counted message was sent within the window.
    let disconnected_before = counts.disconnected.load(Ordering::Relaxed);
    let server_cpu_before = process_cpu_time(args.server_pid)?;
    let own_cpu_before = own_cpu_time()?;
    let window_start = Instant::now();
    recorder.open_window(unix_nanos());
    let emitted_before = control.stats().await?.emitted;

    tokio::time::sleep(Duration::from_secs_f64(args.window_secs)).await;

    let emitted_after = control.stats().await?.emitted;
    recorder.close_window(unix_nanos());
    let window_secs = window_start.elapsed().as_secs_f64();
    let server_cpu = process_cpu_time(args.server_pid)? - server_cpu_before;
    let own_cpu = own_cpu_time()? - own_cpu_before;

    // Deliveries of messages sent near the end of the window may still be on the way.
    tokio::time::sleep(Duration::from_secs_f64(args.grace_secs)).await;
    let (deliveries, histogram) = recorder.take();
    let disconnected = counts.disconnected.load(Ordering::Relaxed);

    let measurement = StepMeasurement {
        requested_rate: rate,
        window_secs,
        emitted: emitted_after - emitted_before,
        deliveries,
        clients: counts.connected.load(Ordering::Relaxed) - disconnected,
        latency: LatencySummary::from_micros(&histogram),
    };
    let failed = if disconnected > disconnected_before {
        Some(format!(
            "{} clients were disconnected",
            disconnected - disconnected_before
        ))
    } else {
        measurement.delivery_shortfall(&criteria)
    };
    Ok(StepReport {
        deliveries_per_second: measurement.deliveries_per_second(),
        within_latency_limit: measurement.within_latency_limit(&criteria),
        server_cpu_cores: server_cpu.as_secs_f64() / window_secs,
        loadgen_cpu_cores: own_cpu.as_secs_f64() / window_secs,
        measurement,
        failed,
    })
}
