//! The per-second timeline: merges each worker's interval for a second into one `SecondSample`
//! as soon as every worker has reported that second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{Interval, error_rate, per_second};

/// One second of a run (the last one may be shorter: see `span_secs`). Latencies in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// 0-based index of the second since the run started.
    pub second: u64,
    pub span_secs: f64,
    pub requests: u64,
    pub completed: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub throughput_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub late: u64,
}

pub fn sample(second: u64, span_secs: f64, i: &Interval) -> SecondSample {
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &i.latency_us;
    let quantile = |q| {
        if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(q)) }
    };
    SecondSample {
        second,
        span_secs,
        requests: i.requests,
        completed: i.completed,
        errors: i.errors.total(),
        error_rate: error_rate(i.requests, &i.errors),
        throughput_per_sec: per_second(i.completed, span_secs),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
        late: i.late,
    }
}

struct Pending {
    merged: Interval,
    reported: Vec<bool>,
    span_secs: f64,
}

/// Collects worker intervals; yields whole seconds in order.
pub struct Timeline {
    workers: usize,
    done: Vec<bool>,
    pending: BTreeMap<u64, Pending>,
}

impl Timeline {
    pub fn new(workers: usize) -> Timeline {
        Timeline { workers, done: vec![false; workers], pending: BTreeMap::new() }
    }

    /// Adds worker `w`'s interval for `second`; `last` marks the worker's final (maybe partial) one.
    pub fn add(&mut self, w: usize, second: u64, span_secs: f64, i: &Interval, last: bool) {
        let workers = self.workers;
        let p = self.pending.entry(second).or_insert_with(|| Pending {
            merged: Interval::default(),
            reported: vec![false; workers],
            span_secs: 0.0,
        });
        p.merged.merge(i);
        p.reported[w] = true;
        p.span_secs = p.span_secs.max(span_secs);
        if last {
            self.done[w] = true;
        }
    }

    /// Seconds every worker has reported (or finished before), oldest first.
    pub fn ready(&mut self) -> Vec<SecondSample> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let complete = entry.get().reported.iter().zip(&self.done).all(|(&reported, &done)| reported || done);
            if !complete {
                break;
            }
            let (second, p) = entry.remove_entry();
            out.push(sample(second, p.span_secs, &p.merged));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_request() -> Interval {
        let mut i = Interval::default();
        i.answered(200, 2000);
        i
    }

    #[test]
    fn a_second_is_ready_when_all_workers_reported_it() {
        let mut t = Timeline::new(2);
        t.add(0, 0, 1.0, &one_request(), false);
        assert!(t.ready().is_empty());
        t.add(1, 0, 1.0, &one_request(), false);
        let ready = t.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].second, ready[0].completed), (0, 2));
        assert_eq!(ready[0].throughput_per_sec, 2.0);
        assert_eq!(ready[0].p50_ms, 2.0);
    }

    #[test]
    fn finished_workers_do_not_hold_back_later_seconds() {
        let mut t = Timeline::new(2);
        t.add(0, 0, 0.5, &one_request(), true);
        t.add(1, 0, 1.0, &one_request(), false);
        t.add(1, 1, 0.25, &one_request(), true);
        let ready = t.ready();
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[1].span_secs, 0.25);
        assert_eq!(ready[1].throughput_per_sec, 4.0);
    }
}
