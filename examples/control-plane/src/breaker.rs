//! A circuit breaker for one dependency: after a run of failures it opens and calls skip the dependency
//! for a cool-down; then one trial call is let through (half-open) and its outcome closes or re-opens it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// For the `control_plane_circuit_breaker_state` gauge.
    pub fn as_number(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// What `/health/ready` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub state: State,
    pub consecutive_failures: u32,
    pub opened_total: u64,
}

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    opened_total: u64,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Arc<Mutex<Inner>>,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        let inner = Inner { consecutive_failures: 0, open_until: None, trial_in_flight: false, opened_total: 0 };
        Self { threshold: threshold.max(1), cool_down, inner: Arc::new(Mutex::new(inner)) }
    }

    /// Whether a call may go to the dependency now; after the cool-down only one trial call at a time.
    pub fn allow(&self, now: Instant) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return true };
        match inner.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if inner.trial_in_flight => false,
            Some(_) => {
                inner.trial_in_flight = true;
                true
            }
        }
    }

    pub fn record(&self, ok: bool, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.trial_in_flight = false;
        if ok {
            inner.consecutive_failures = 0;
            inner.open_until = None;
            return;
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let was_open = inner.open_until.is_some();
        if was_open || inner.consecutive_failures >= self.threshold {
            if !was_open {
                inner.opened_total += 1;
            }
            inner.open_until = Some(now + self.cool_down);
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let Ok(inner) = self.inner.lock() else {
            return Snapshot { state: State::Closed, consecutive_failures: 0, opened_total: 0 };
        };
        let state = match inner.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
        };
        Snapshot { state, consecutive_failures: inner.consecutive_failures, opened_total: inner.opened_total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_after_a_good_trial() {
        let b = Breaker::new(2, Duration::from_secs(2));
        let t0 = Instant::now();
        b.record(false, t0);
        assert_eq!(b.snapshot(t0).state, State::Closed);
        b.record(false, t0);
        assert_eq!(b.snapshot(t0).state, State::Open);
        assert!(!b.allow(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(3);
        assert_eq!(b.snapshot(later).state, State::HalfOpen);
        assert!(b.allow(later), "one trial call");
        assert!(!b.allow(later), "only one trial at a time");
        b.record(true, later);
        assert_eq!(b.snapshot(later).state, State::Closed);
        assert_eq!(b.snapshot(later).opened_total, 1);
    }

    #[test]
    fn a_failed_trial_reopens() {
        let b = Breaker::new(1, Duration::from_secs(2));
        let t0 = Instant::now();
        b.record(false, t0);
        let later = t0 + Duration::from_secs(3);
        assert!(b.allow(later));
        b.record(false, later);
        assert_eq!(b.snapshot(later).state, State::Open);
        assert_eq!(b.snapshot(later).opened_total, 1, "still the same outage");
    }
}
