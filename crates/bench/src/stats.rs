//! Delivery counting and latency histograms shared by many connection tasks, and the rules
//! that decide whether a measured rate step was sustained.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Highest latency the histograms record, in microseconds (60 s). Larger values are
/// clamped to it.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Number of independently locked shards, so connection tasks on different threads rarely
/// wait for each other.
const SHARDS: usize = 16;

struct Shard {
    deliveries: u64,
    latency_micros: Histogram<u64>,
}

/// Deliveries, and their latencies, of the messages sent within a time window.
///
/// Counting by send time, not by arrival time, makes the count exact at the window's edges:
/// the deliveries of a message sent just before the window closes still count, however
/// late they arrive, as long as they arrive before [`DeliveryRecorder::take`].
pub struct DeliveryRecorder {
    shards: Vec<Mutex<Shard>>,
    /// Window bounds in nanoseconds since the UNIX epoch; the end is exclusive.
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
}

impl Default for DeliveryRecorder {
    fn default() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    deliveries: 0,
                    latency_micros: new_histogram(),
                })
            })
            .collect();
        Self {
            shards,
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
        }
    }
}

impl DeliveryRecorder {
    /// Discards what was recorded and counts messages sent from `start_ns` on.
    pub fn open_window(&self, start_ns: u64) {
        self.take();
        self.window_end_ns.store(u64::MAX, Ordering::Relaxed);
        self.window_start_ns.store(start_ns, Ordering::Relaxed);
    }

    /// Stops counting messages sent from `end_ns` on. Deliveries of earlier messages still
    /// count until [`Self::take`].
    pub fn close_window(&self, end_ns: u64) {
        self.window_end_ns.store(end_ns, Ordering::Relaxed);
    }

    /// Records a delivery of a message sent at `sent_ns` and received at `received_ns`, if
    /// it was sent within the window. `connection` only spreads the lock load.
    pub fn record(&self, connection: usize, sent_ns: u64, received_ns: u64) {
        let start = self.window_start_ns.load(Ordering::Relaxed);
        let end = self.window_end_ns.load(Ordering::Relaxed);
        if sent_ns < start || sent_ns >= end {
            return;
        }
        let latency_micros = received_ns.saturating_sub(sent_ns) / 1000;
        let mut shard = self.shards[connection % SHARDS].lock();
        shard.deliveries += 1;
        shard
            .latency_micros
            .saturating_record(latency_micros.clamp(1, MAX_LATENCY_MICROS));
    }

    /// Returns what was recorded since the previous call and resets the counts.
    pub fn take(&self) -> (u64, Histogram<u64>) {
        let mut deliveries = 0;
        let mut merged = new_histogram();
        for shard in &self.shards {
            let mut shard = shard.lock();
            deliveries += shard.deliveries;
            merged
                .add(&shard.latency_micros)
                .expect("shards share the merged histogram's range");
            shard.deliveries = 0;
            shard.latency_micros.reset();
        }
        (deliveries, merged)
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("the histogram bounds are valid")
}

/// Latency percentiles of one window, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of microseconds. An empty histogram gives zeros.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let millis = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50_ms: millis(histogram.value_at_quantile(0.5)),
            p99_ms: millis(histogram.value_at_quantile(0.99)),
            p999_ms: millis(histogram.value_at_quantile(0.999)),
            max_ms: millis(histogram.max()),
        }
    }
}

/// Limits that a rate step must meet to count as sustained.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SustainCriteria {
    /// Minimum fraction of the requested messages that the server emitted, and of the
    /// emitted messages times the client count that the clients received.
    pub min_fraction: f64,
    pub max_p99_ms: f64,
}

/// Measurements of one rate step.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepMeasurement {
    /// Messages per second requested from the server.
    pub requested_rate: f64,
    pub window_secs: f64,
    /// Messages the server emitted during the window.
    pub emitted: u64,
    /// Messages the clients received during the window, over all clients.
    pub deliveries: u64,
    /// Clients that were connected and joined throughout the window.
    pub clients: u64,
    pub latency: LatencySummary,
}

impl StepMeasurement {
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.window_secs
    }

    /// Checks that the server emitted, and the clients received, the expected messages, and
    /// returns the shortfall if not. The latency limit is separate: see
    /// [`Self::within_latency_limit`].
    pub fn delivery_shortfall(&self, criteria: &SustainCriteria) -> Option<String> {
        // One message of slack, because the window's edges fall between emits: at 2.2
        // messages per second a 2 s window contains 4 or 5 of them.
        let requested = self.requested_rate * self.window_secs;
        if ((self.emitted + 1) as f64) < criteria.min_fraction * requested {
            return Some(format!(
                "server emitted {} of {:.0} requested messages",
                self.emitted, requested
            ));
        }
        let expected = self.emitted as f64 * self.clients as f64;
        if (self.deliveries as f64) < criteria.min_fraction * expected {
            return Some(format!(
                "clients received {} of {:.0} expected deliveries",
                self.deliveries, expected
            ));
        }
        None
    }

    pub fn within_latency_limit(&self, criteria: &SustainCriteria) -> bool {
        self.latency.p99_ms <= criteria.max_p99_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRITERIA: SustainCriteria = SustainCriteria {
        min_fraction: 0.95,
        max_p99_ms: 50.0,
    };

    fn step(emitted: u64, deliveries: u64, p99_ms: f64) -> StepMeasurement {
        StepMeasurement {
            requested_rate: 100.0,
            window_secs: 2.0,
            emitted,
            deliveries,
            clients: 10,
            latency: LatencySummary {
                p99_ms,
                ..LatencySummary::default()
            },
        }
    }

    #[test]
    fn recorder_take_returns_window_and_resets() {
        let recorder = DeliveryRecorder::default();
        recorder.open_window(1_000);
        for (connection, micros) in (1..=1000).enumerate() {
            recorder.record(connection, 1_000, 1_000 + micros * 1000);
        }

        let (deliveries, histogram) = recorder.take();
        let summary = LatencySummary::from_micros(&histogram);
        let (deliveries_after, _) = recorder.take();

        assert_eq!(deliveries, 1000);
        assert!((summary.p50_ms - 0.5).abs() < 0.01, "{summary:?}");
        assert!((summary.p99_ms - 0.99).abs() < 0.01, "{summary:?}");
        assert_eq!(deliveries_after, 0);
    }

    #[test]
    fn recorder_counts_only_messages_sent_in_window() {
        let recorder = DeliveryRecorder::default();
        recorder.open_window(1_000);
        recorder.record(0, 999, 5_000);
        recorder.record(0, 1_000, 5_000);
        recorder.close_window(2_000);
        recorder.record(0, 1_999, 9_000);
        recorder.record(0, 2_000, 9_000);

        let (deliveries, _) = recorder.take();

        assert_eq!(deliveries, 2);
    }

    #[test]
    fn step_within_limits_is_sustained() {
        let step = step(200, 2000, 10.0);

        assert_eq!(step.delivery_shortfall(&CRITERIA), None);
        assert!(step.within_latency_limit(&CRITERIA));
    }

    #[test]
    fn delivery_shortfall_names_the_limit() {
        let cases = [
            (step(150, 1500, 10.0), "emitted"),
            (step(200, 1000, 10.0), "received"),
        ];

        for (step, expected) in cases {
            let reason = step
                .delivery_shortfall(&CRITERIA)
                .expect("the step falls short");
            assert!(
                reason.contains(expected),
                "{reason:?} does not mention {expected}"
            );
        }
    }

    #[test]
    fn slow_step_is_outside_latency_limit() {
        assert!(!step(200, 2000, 80.0).within_latency_limit(&CRITERIA));
    }
}
