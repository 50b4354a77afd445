//! One load worker thread: its connection tasks (closed or open model), the per-second
//! hand-over of its interval, and stopping at the deadline or on cancellation.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep, sleep_until};

use super::client::{Outcome, exchange};
use super::engine::{Plan, Report, Shared};
use super::http1::Connection;
use super::stats::{ErrorKind, Interval};

/// A request that starts later than this after its intended time counts as late.
pub const LATE_SLACK: Duration = Duration::from_millis(2);

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

    /// Sends one request on this task's connections, started at `now`; `None` means it timed out.
    async fn send_one(&self, c: &mut Conn, now: Instant) -> Option<Outcome> {
        let scenario = &self.shared.scenario;
        let index = scenario.pick();
        // Re-arming one timer per connection is cheaper than a fresh `timeout()` per request.
        c.timer.as_mut().reset(now + self.shared.timeout);
        let slot = &mut c.slots[scenario.origin_of(index)];
        let outcome = tokio::select! {
            biased;
            outcome = exchange(scenario, slot, &mut c.scratch, index) => Some(outcome),
            _ = c.timer.as_mut() => None,
        };
        if outcome.is_none() {
            // The answer may still arrive on this connection; never reuse it.
            c.slots[scenario.origin_of(index)] = None;
        }
        outcome
    }
}

pub(super) async fn worker(plan: Plan, shared: Arc<Shared>, tx: UnboundedSender<Report>) {
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
    let unsent =
        plan.schedule.map_or(0, |(period, offset)| unsent(&plan, &shared, period, offset, end, w.started.get()));
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
fn unsent(plan: &Plan, shared: &Shared, period: f64, offset: f64, end: Instant, started: u64) -> u64 {
    let end = shared.deadline.map_or(end, |d| d.min(end));
    let window = end.saturating_duration_since(shared.start).as_secs_f64() - offset;
    let mut due = if window > 0.0 { (window / period).ceil() as u64 } else { 0 };
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
        let _ =
            tx.send(Report { worker: index, second, span_secs: 1.0, data, last: false, unsent: 0, elapsed_secs: 0.0 });
    }
}

/// One load connection: a keep-alive connection per origin, its request timer and the buffer
/// templated requests are rendered into.
struct Conn {
    slots: Vec<Option<Connection>>,
    timer: Pin<Box<Sleep>>,
    scratch: Vec<u8>,
}

fn new_conn(w: &Worker) -> Conn {
    Conn {
        slots: (0..w.shared.scenario.origins.len()).map(|_| None).collect(),
        timer: Box::pin(tokio::time::sleep(w.shared.timeout)),
        scratch: Vec::new(),
    }
}

/// Closed model: send the next request as soon as the previous one finished.
async fn closed_connection(g: LiveGuard) {
    let w = &g.0;
    let mut conn = new_conn(w);
    while w.take_ticket() {
        let sent = Instant::now();
        let outcome = w.send_one(&mut conn, sent).await;
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
        let now = Instant::now();
        let late = now.saturating_duration_since(intended) > LATE_SLACK;
        let outcome = w.send_one(&mut conn, now).await;
        w.record(outcome, Instant::now().saturating_duration_since(intended), late);
    }
}
