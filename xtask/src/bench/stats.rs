//! Pure statistics of a run: per-interval counters, HDR latency histograms and their summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds up to one hour; longer ones saturate at the top.
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Status4xx,
    Status5xx,
    Timeout,
    Connect,
    Other,
}

/// Failed requests by kind; 4xx and 5xx answers count as errors (and as completed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub timeout: u64,
    pub connect: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.status_4xx + self.status_5xx + self.timeout + self.connect + self.other
    }

    pub fn count(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Status4xx => self.status_4xx += 1,
            ErrorKind::Status5xx => self.status_5xx += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Other => self.other += 1,
        }
    }

    /// `none`, or each non-zero kind: `4xx 3, timeout 1`.
    pub fn describe(&self) -> String {
        let kinds = [
            ("4xx", self.status_4xx),
            ("5xx", self.status_5xx),
            ("timeout", self.timeout),
            ("connect", self.connect),
            ("other", self.other),
        ];
        let parts: Vec<String> = kinds.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
    }

    pub fn add(&mut self, o: &ErrorCounts) {
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.timeout += o.timeout;
        self.connect += o.connect;
        self.other += o.other;
    }
}

/// Latency percentiles in milliseconds (microsecond resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What happened during one stretch of a run (a second, or the whole run once merged).
#[derive(Debug, Clone)]
pub struct Interval {
    pub latency_us: Histogram<u64>,
    /// Requests that finished: answered, failed or timed out.
    pub requests: u64,
    /// Requests that got an HTTP answer (any status).
    pub completed: u64,
    pub errors: ErrorCounts,
    /// Open model: requests sent later than their intended time by more than the slack.
    pub late: u64,
}

impl Default for Interval {
    fn default() -> Self {
        Interval { latency_us: new_histogram(), requests: 0, completed: 0, errors: ErrorCounts::default(), late: 0 }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("constant histogram bounds are valid")
}

impl Interval {
    /// Records an HTTP answer with its latency.
    pub fn answered(&mut self, status: u16, latency_us: u64) {
        self.requests += 1;
        self.completed += 1;
        self.latency_us.saturating_record(latency_us.max(1));
        match status {
            400..=499 => self.errors.count(ErrorKind::Status4xx),
            500..=599 => self.errors.count(ErrorKind::Status5xx),
            _ => {}
        }
    }

    /// Records a request that got no HTTP answer.
    pub fn failed(&mut self, kind: ErrorKind) {
        self.requests += 1;
        self.errors.count(kind);
    }

    pub fn merge(&mut self, other: &Interval) {
        // Both histograms share constant bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.requests += other.requests;
        self.completed += other.completed;
        self.errors.add(&other.errors);
        self.late += other.late;
    }
}

pub fn latency_summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p99_9_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

/// Share of finished requests that failed, 0.0 ..= 1.0 (0 when nothing finished).
pub fn error_rate(requests: u64, errors: &ErrorCounts) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    errors.total() as f64 / requests as f64
}

pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    count as f64 / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_describe_only_what_happened() {
        let mut e = ErrorCounts::default();
        assert_eq!(e.describe(), "none");
        e.count(ErrorKind::Status4xx);
        e.count(ErrorKind::Timeout);
        e.count(ErrorKind::Timeout);
        assert_eq!(e.describe(), "4xx 1, timeout 2");
    }

    #[test]
    fn percentiles_of_one_to_thousand_ms() {
        let mut i = Interval::default();
        for ms in 1..=1000u64 {
            i.answered(200, ms * 1000);
        }
        let s = latency_summary(&i.latency_us);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p95_ms, 950.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p99_9_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(latency_summary(&new_histogram()), LatencySummary::default());
    }

    #[test]
    fn statuses_and_failures_are_counted_by_kind() {
        let mut i = Interval::default();
        i.answered(200, 10);
        i.answered(404, 10);
        i.answered(503, 10);
        i.failed(ErrorKind::Timeout);
        i.failed(ErrorKind::Connect);
        assert_eq!((i.requests, i.completed), (5, 3));
        assert_eq!(i.errors.total(), 4);
        assert_eq!(error_rate(i.requests, &i.errors), 0.8);
        let mut sum = Interval::default();
        sum.merge(&i);
        sum.merge(&i);
        assert_eq!((sum.requests, sum.errors.status_5xx, sum.latency_us.len()), (10, 2, 6));
    }

    #[test]
    fn huge_latencies_saturate_instead_of_failing() {
        let mut i = Interval::default();
        i.answered(200, u64::MAX);
        assert!(latency_summary(&i.latency_us).max_ms >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn rates_handle_zero() {
        assert_eq!(error_rate(0, &ErrorCounts::default()), 0.0);
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(10, 2.0), 5.0);
    }
}
