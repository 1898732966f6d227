//! Logging set-up and the Prometheus metrics every role records.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tasklane_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber: readable text, or one JSON object per line.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal, so log files and pipes get plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    // A second call (tests start several apps in one process) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub relay_published: IntCounterVec,
    pub relay_failures: IntCounterVec,
    pub hub_connections: IntGauge,
    pub import_rows: IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("tasklane".into()), None).expect("valid prefix");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency"),
            &["method", "route"],
        )
        .expect("valid metric");
        let relay_published = IntCounterVec::new(
            Opts::new(
                "relay_published_total",
                "Outbox events delivered, by destination",
            ),
            &["destination"],
        )
        .expect("valid metric");
        let relay_failures = IntCounterVec::new(
            Opts::new(
                "relay_failures_total",
                "Failed delivery attempts, by destination",
            ),
            &["destination"],
        )
        .expect("valid metric");
        let hub_connections =
            IntGauge::new("hub_connections", "Open hub connections").expect("valid metric");
        let import_rows = IntCounterVec::new(
            Opts::new("import_rows_total", "Imported rows by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(relay_published.clone()),
            Box::new(relay_failures.clone()),
            Box::new(hub_connections.clone()),
            Box::new(import_rows.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            relay_published,
            relay_failures,
            hub_connections,
            import_rows,
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Returns the process-wide metrics, which every role in the process records into.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
