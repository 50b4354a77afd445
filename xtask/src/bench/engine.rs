//! Coordinates a load run. One OS thread per core, each running a current-thread tokio runtime
//! with its share of the connections (`worker.rs`), so requests never cross threads and recording
//! is a plain (non-atomic) histogram update. Workers hand their interval over once per second;
//! nothing is stored per request, so memory stays flat however long the run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Scenario;
use super::result::{BenchResult, bench_result};
use super::spec::{LoadSpec, Model, Stop};
use super::stats::Interval;
use super::timeline::{SecondSample, Timeline};
use super::worker::worker;

/// Seconds shorter than this at the very end are folded into the totals but left off the timeline.
const MIN_TIMELINE_SPAN: f64 = 0.05;

/// What one worker thread does.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) index: usize,
    /// Closed: connections to keep busy. Open: the most connections to open.
    pub(super) connections: usize,
    /// This worker's share of a request-count stop.
    pub(super) requests: Option<u64>,
    /// Open model: this worker's arrival period and the offset of its first request.
    pub(super) schedule: Option<(f64, f64)>,
}

pub(super) struct Shared {
    pub(super) scenario: Scenario,
    pub(super) timeout: Duration,
    pub(super) start: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) cancel: CancellationToken,
}

pub(super) struct Report {
    pub(super) worker: usize,
    pub(super) second: u64,
    pub(super) span_secs: f64,
    pub(super) data: Interval,
    pub(super) last: bool,
    pub(super) unsent: u64,
    pub(super) elapsed_secs: f64,
}

pub async fn run(
    spec: &LoadSpec,
    cancel: CancellationToken,
    mut on_second: impl FnMut(&SecondSample),
) -> anyhow::Result<BenchResult> {
    spec.validate()?;
    // Dropping this future (or failing half-way) must stop the worker threads too.
    let cancel = cancel.child_token();
    let _stop_workers = cancel.clone().drop_guard();
    let scenario = Scenario::prepare(spec).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plans = plan(spec, cores);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        scenario,
        timeout: spec.timeout,
        start,
        deadline: match spec.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Requests(_) => None,
        },
        cancel,
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let workers = plans.len();
    for p in plans {
        let (shared, tx) = (shared.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("load-{}", p.index))
            .spawn(move || run_worker_thread(p, shared, tx))?;
    }
    drop(tx);

    let mut timeline = Timeline::new(workers);
    let mut samples = Vec::new();
    let mut total = Interval::default();
    let (mut unsent, mut elapsed, mut finished) = (0, 0.0f64, 0);
    while finished < workers {
        let Some(r) = rx.recv().await else {
            anyhow::bail!("a load worker thread stopped unexpectedly");
        };
        total.merge(&r.data);
        timeline.add(r.worker, r.second, r.span_secs, &r.data, r.last);
        if r.last {
            finished += 1;
            unsent += r.unsent;
            elapsed = elapsed.max(r.elapsed_secs);
        }
        for s in timeline.ready() {
            if s.span_secs >= MIN_TIMELINE_SPAN || s.requests > 0 {
                on_second(&s);
                samples.push(s);
            }
        }
    }
    let (model, rate) = match spec.model {
        Model::Closed { .. } => ("closed", None),
        Model::Open { rate_per_sec, .. } => ("open", Some(rate_per_sec)),
    };
    Ok(bench_result(model, rate, elapsed, &total, unsent, samples))
}

/// Splits connections, request counts and the arrival rate over at most `cores` workers.
fn plan(spec: &LoadSpec, cores: usize) -> Vec<Plan> {
    let connections = match spec.model {
        Model::Closed { connections } => connections,
        Model::Open { max_connections, .. } => max_connections,
    };
    let mut workers = cores.max(1).min(connections);
    if let Stop::Requests(n) = spec.stop {
        workers = workers.min(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let w = workers as u64;
    (0..workers)
        .map(|index| {
            let i = index as u64;
            let share = |total: u64| total / w + u64::from(i < total % w);
            let requests = match spec.stop {
                Stop::Requests(n) => Some(share(n)),
                Stop::Duration(_) => None,
            };
            let schedule = match spec.model {
                Model::Open { rate_per_sec, .. } => Some((w as f64 / rate_per_sec, i as f64 / rate_per_sec)),
                Model::Closed { .. } => None,
            };
            Plan { index, connections: share(connections as u64) as usize, requests, schedule }
        })
        .collect()
}

fn run_worker_thread(plan: Plan, shared: Arc<Shared>, tx: UnboundedSender<Report>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        // Dropping `tx` without a last report makes the coordinator fail the run.
        Err(_) => return,
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, worker(plan, shared, tx));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::spec::WeightedRequest;

    fn spec(model: Model, stop: Stop) -> LoadSpec {
        LoadSpec {
            model,
            stop,
            scenario: vec![WeightedRequest::get("http://127.0.0.1:1/")],
            timeout: Duration::from_secs(1),
            insecure_tls: false,
        }
    }

    #[test]
    fn plan_splits_connections_and_requests() {
        let p = plan(&spec(Model::Closed { connections: 5 }, Stop::Requests(11)), 2);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].connections, p[1].connections), (3, 2));
        assert_eq!((p[0].requests, p[1].requests), (Some(6), Some(5)));
        let p = plan(&spec(Model::Closed { connections: 1 }, Stop::Requests(11)), 8);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn plan_interleaves_the_open_schedule() {
        let open = Model::Open { rate_per_sec: 100.0, max_connections: 10 };
        let p = plan(&spec(open, Stop::Duration(Duration::from_secs(1))), 2);
        assert_eq!(p[0].schedule, Some((0.02, 0.0)));
        assert_eq!(p[1].schedule, Some((0.02, 0.01)));
    }
}
