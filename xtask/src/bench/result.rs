//! The outcome of a load run as data (serialisable); rendering it is `svg.rs`' and the reports' job.

use serde::{Deserialize, Serialize};

use super::stats::{ErrorCounts, Interval, LatencySummary, error_rate, latency_summary, per_second};
use super::timeline::SecondSample;

/// Latencies are in milliseconds with microsecond resolution (fields end in `_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// `closed` or `open`.
    pub model: String,
    /// Open model: the arrival rate asked for.
    pub target_rate_per_sec: Option<f64>,
    pub duration_secs: f64,
    pub latency: LatencySummary,
    /// Requests that finished (answered, failed or timed out).
    pub requests: u64,
    /// Requests that got an HTTP answer of any status.
    pub completed: u64,
    /// Answers per second over the run.
    pub throughput_per_sec: f64,
    /// Failed share of `requests`, 0.0 ..= 1.0.
    pub error_rate: f64,
    pub errors: ErrorCounts,
    /// Open model: requests sent later than intended (no free connection, or a lagging generator).
    pub late: u64,
    /// Open model: requests due before the end that were never sent.
    pub unsent: u64,
    pub timeline: Vec<SecondSample>,
}

pub fn bench_result(
    model: &str,
    target_rate_per_sec: Option<f64>,
    duration_secs: f64,
    total: &Interval,
    unsent: u64,
    timeline: Vec<SecondSample>,
) -> BenchResult {
    BenchResult {
        model: model.to_string(),
        target_rate_per_sec,
        duration_secs,
        latency: latency_summary(&total.latency_us),
        requests: total.requests,
        completed: total.completed,
        throughput_per_sec: per_second(total.completed, duration_secs),
        error_rate: error_rate(total.requests, &total.errors),
        errors: total.errors,
        late: total.late,
        unsent,
        timeline,
    }
}
