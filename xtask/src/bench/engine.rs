//! Drives the load. One OS thread per core, each running a current-thread tokio runtime with
//! its share of the connections, so requests never cross threads and recording is a plain
//! (non-atomic) histogram update. Each worker hands its interval to the coordinator once per
//! second; nothing is stored per request, so memory stays flat however long the run.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::client::{Outcome, Scenario, Sender, exchange};
use super::result::{BenchResult, bench_result};
use super::spec::{LoadSpec, Model, Stop};
use super::stats::{ErrorKind, Interval};
use super::timeline::{SecondSample, Timeline};

/// A request that starts later than this after its intended time counts as late.
pub const LATE_SLACK: Duration = Duration::from_millis(2);

/// Seconds shorter than this at the very end are folded into the totals but left off the timeline.
const MIN_TIMELINE_SPAN: f64 = 0.05;

/// What one worker thread does.
#[derive(Debug, Clone)]
struct Plan {
    index: usize,
    /// Closed: connections to keep busy. Open: the most connections to open.
    connections: usize,
    /// This worker's share of a request-count stop.
    requests: Option<u64>,
    /// Open model: this worker's arrival period and the offset of its first request.
    schedule: Option<(f64, f64)>,
}

struct Shared {
    scenario: Scenario,
    timeout: Duration,
    start: Instant,
    deadline: Option<Instant>,
    cancel: CancellationToken,
}

struct Report {
    worker: usize,
    second: u64,
    span_secs: f64,
    data: Interval,
    last: bool,
    unsent: u64,
    elapsed_secs: f64,
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
        Model::Open {
            max_connections, ..
        } => max_connections,
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
                Model::Open { rate_per_sec, .. } => {
                    Some((w as f64 / rate_per_sec, i as f64 / rate_per_sec))
                }
                Model::Closed { .. } => None,
            };
            Plan {
                index,
                connections: share(connections as u64) as usize,
                requests,
                schedule,
            }
        })
        .collect()
}

fn run_worker_thread(plan: Plan, shared: Arc<Shared>, tx: UnboundedSender<Report>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        // Dropping `tx` without a last report makes the coordinator fail the run.
        Err(_) => return,
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, worker(plan, shared, tx));
}

/// Per-thread state shared by that thread's tasks (never across threads).
struct Worker {
    shared: Arc<Shared>,
    recorder: RefCell<Interval>,
    next_second: Cell<u64>,
    tickets_left: Cell<Option<u64>>,
    started: Cell<u64>,
    live: Cell<usize>,
    all_stopped: Notify,
    aborts: RefCell<Vec<AbortHandle>>,
    /// Open model: this worker's `(period, offset)` in seconds and its next unclaimed send time.
    schedule: Option<(f64, f64)>,
    next_ticket: Cell<u64>,
    idle: RefCell<Vec<Rc<Slot>>>,
    connection_idle: Notify,
    opened: Cell<usize>,
    closing: Cell<bool>,
}

/// An idle open-model connection waiting for the dispatcher to hand it a send time.
#[derive(Default)]
struct Slot {
    ticket: Cell<Option<Instant>>,
    wake: Notify,
}

/// Counts a task as live until it ends or is aborted.
struct LiveGuard(Rc<Worker>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let live = self.0.live.get() - 1;
        self.0.live.set(live);
        if live == 0 {
            self.0.all_stopped.notify_one();
        }
    }
}

impl Worker {
    fn spawn<F>(self: &Rc<Self>, task: impl FnOnce(LiveGuard) -> F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.live.set(self.live.get() + 1);
        let handle = tokio::task::spawn_local(task(LiveGuard(self.clone())));
        self.aborts.borrow_mut().push(handle.abort_handle());
    }

    async fn all_stopped(&self) {
        while self.live.get() > 0 {
            self.all_stopped.notified().await;
        }
    }

    fn take_ticket(&self) -> bool {
        match self.tickets_left.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                self.tickets_left.set(Some(n - 1));
                true
            }
        }
    }

    /// The intended time of the next unclaimed open-model request; `None` once the run has no more.
    fn next_due(&self) -> Option<Instant> {
        let (period, offset) = self.schedule?;
        let i = self.next_ticket.get();
        if self.tickets_left.get() == Some(0) {
            return None;
        }
        let t = self.shared.start + Duration::from_secs_f64(offset + i as f64 * period);
        if self.shared.deadline.is_some_and(|d| t >= d) {
            return None;
        }
        Some(t)
    }

    fn claim(&self) {
        self.next_ticket.set(self.next_ticket.get() + 1);
        self.take_ticket();
    }

    /// A connection that just finished takes the next request itself when it is already due,
    /// saving the hop through the dispatcher exactly when the load is high.
    fn claim_if_due(&self) -> Option<Instant> {
        let t = self.next_due()?;
        if t > Instant::now() {
            return None;
        }
        self.claim();
        Some(t)
    }

    fn record(&self, outcome: Option<Outcome>, latency: Duration, late: bool) {
        let mut r = self.recorder.borrow_mut();
        match outcome {
            Some(Outcome::Status(status)) => r.answered(status, latency.as_micros() as u64),
            Some(Outcome::Failed(kind)) => r.failed(kind),
            None => r.failed(ErrorKind::Timeout),
        }
        if late {
            r.late += 1;
        }
    }

    /// Sends one request on this task's connections; `None` means it timed out.
    async fn send_one(&self, c: &mut Conn) -> Option<Outcome> {
        let scenario = &self.shared.scenario;
        let index = scenario.pick();
        // Re-arming one timer per connection is cheaper than a fresh `timeout()` per request.
        c.timer.as_mut().reset(Instant::now() + self.shared.timeout);
        let slot = &mut c.slots[scenario.origin_of(index)];
        let outcome = tokio::select! {
            biased;
            outcome = exchange(scenario, slot, index) => Some(outcome),
            _ = c.timer.as_mut() => None,
        };
        if outcome.is_none() {
            // The answer may still arrive on this connection; never reuse it.
            c.slots[scenario.origin_of(index)] = None;
        }
        outcome
    }
}

async fn worker(plan: Plan, shared: Arc<Shared>, tx: UnboundedSender<Report>) {
    let w = Rc::new(Worker {
        shared: shared.clone(),
        recorder: RefCell::new(Interval::default()),
        next_second: Cell::new(0),
        tickets_left: Cell::new(plan.requests),
        started: Cell::new(0),
        live: Cell::new(0),
        all_stopped: Notify::new(),
        aborts: RefCell::new(Vec::new()),
        schedule: plan.schedule,
        next_ticket: Cell::new(0),
        idle: RefCell::new(Vec::new()),
        connection_idle: Notify::new(),
        opened: Cell::new(0),
        closing: Cell::new(false),
    });
    let ticker = tokio::task::spawn_local(ticker(w.clone(), tx.clone(), plan.index));
    if plan.schedule.is_none() {
        for _ in 0..plan.connections {
            w.spawn(closed_connection);
        }
    } else {
        let max_connections = plan.connections;
        w.spawn(move |g| dispatcher(g, max_connections));
    }
    let deadline = shared.deadline;
    tokio::select! {
        _ = w.all_stopped() => {}
        _ = sleep_until(deadline.unwrap_or(shared.start)), if deadline.is_some() => {}
        _ = shared.cancel.cancelled() => {}
    }
    let end = Instant::now();
    ticker.abort();
    for handle in w.aborts.borrow_mut().drain(..) {
        handle.abort();
    }
    let unsent = plan.schedule.map_or(0, |(period, offset)| {
        unsent(&plan, &shared, period, offset, end, w.started.get())
    });
    let elapsed = end.saturating_duration_since(shared.start).as_secs_f64();
    let second = w.next_second.get();
    let data = std::mem::take(&mut *w.recorder.borrow_mut());
    let _ = tx.send(Report {
        worker: plan.index,
        second,
        span_secs: (elapsed - second as f64).max(0.0),
        data,
        last: true,
        unsent,
        elapsed_secs: elapsed,
    });
}

/// Requests whose intended time fell before the end but that never started.
fn unsent(
    plan: &Plan,
    shared: &Shared,
    period: f64,
    offset: f64,
    end: Instant,
    started: u64,
) -> u64 {
    let end = shared.deadline.map_or(end, |d| d.min(end));
    let window = end.saturating_duration_since(shared.start).as_secs_f64() - offset;
    let mut due = if window > 0.0 {
        (window / period).ceil() as u64
    } else {
        0
    };
    if let Some(limit) = plan.requests {
        due = due.min(limit);
    }
    due.saturating_sub(started)
}

async fn ticker(w: Rc<Worker>, tx: UnboundedSender<Report>, index: usize) {
    loop {
        let second = w.next_second.get();
        sleep_until(w.shared.start + Duration::from_secs(second + 1)).await;
        let data = std::mem::take(&mut *w.recorder.borrow_mut());
        w.next_second.set(second + 1);
        let _ = tx.send(Report {
            worker: index,
            second,
            span_secs: 1.0,
            data,
            last: false,
            unsent: 0,
            elapsed_secs: 0.0,
        });
    }
}

/// One load connection: a keep-alive connection per origin and its request timer.
struct Conn {
    slots: Vec<Option<Sender>>,
    timer: Pin<Box<Sleep>>,
}

fn new_conn(w: &Worker) -> Conn {
    Conn {
        slots: (0..w.shared.scenario.origins.len()).map(|_| None).collect(),
        timer: Box::pin(tokio::time::sleep(w.shared.timeout)),
    }
}

/// Closed model: send the next request as soon as the previous one finished.
async fn closed_connection(g: LiveGuard) {
    let w = &g.0;
    let mut conn = new_conn(w);
    while w.take_ticket() {
        let sent = std::time::Instant::now();
        let outcome = w.send_one(&mut conn).await;
        w.record(outcome, sent.elapsed(), false);
    }
}

/// Open model: hands each send time, once due, to an idle connection, opening new ones (up to
/// the limit) when none is idle. When every connection is busy the due requests wait, unclaimed,
/// for the first connection to finish: they are sent late and their latency still counts from
/// the intended time.
async fn dispatcher(g: LiveGuard, max_connections: usize) {
    let w = &g.0;
    while let Some(intended) = w.next_due() {
        if intended > Instant::now() {
            sleep_until(intended).await;
            continue;
        }
        let idle = w.idle.borrow_mut().pop();
        if let Some(slot) = idle {
            w.claim();
            slot.ticket.set(Some(intended));
            slot.wake.notify_one();
        } else if w.opened.get() < max_connections {
            w.claim();
            w.opened.set(w.opened.get() + 1);
            w.spawn(move |g| open_connection(g, intended));
        } else {
            w.connection_idle.notified().await;
        }
    }
    w.closing.set(true);
    for slot in w.idle.borrow_mut().drain(..) {
        slot.wake.notify_one();
    }
}

async fn open_connection(g: LiveGuard, first: Instant) {
    let w = &g.0;
    let me = Rc::new(Slot::default());
    let mut conn = new_conn(w);
    let mut next = Some(first);
    loop {
        let intended = match next.take().or_else(|| w.claim_if_due()) {
            Some(t) => t,
            None => {
                if w.closing.get() {
                    return;
                }
                w.idle.borrow_mut().push(me.clone());
                w.connection_idle.notify_one();
                me.wake.notified().await;
                match me.ticket.take() {
                    Some(t) => t,
                    None => return,
                }
            }
        };
        w.started.set(w.started.get() + 1);
        let late = Instant::now().saturating_duration_since(intended) > LATE_SLACK;
        let outcome = w.send_one(&mut conn).await;
        w.record(
            outcome,
            Instant::now().saturating_duration_since(intended),
            late,
        );
    }
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
        let p = plan(
            &spec(Model::Closed { connections: 5 }, Stop::Requests(11)),
            2,
        );
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].connections, p[1].connections), (3, 2));
        assert_eq!((p[0].requests, p[1].requests), (Some(6), Some(5)));
        let p = plan(
            &spec(Model::Closed { connections: 1 }, Stop::Requests(11)),
            8,
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn plan_interleaves_the_open_schedule() {
        let open = Model::Open {
            rate_per_sec: 100.0,
            max_connections: 10,
        };
        let p = plan(&spec(open, Stop::Duration(Duration::from_secs(1))), 2);
        assert_eq!(p[0].schedule, Some((0.02, 0.0)));
        assert_eq!(p[1].schedule, Some((0.02, 0.01)));
    }
}
