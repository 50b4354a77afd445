//! `drill: faults`: injects faults into the running compose project one after another. Each fault is
//! written to the ledger before it is injected, its `during` gates judge the stack while it holds, it is
//! undone (always: on failure and on Ctrl-C too), and then the stack must recover within its deadline:
//! the measured recovery time is a gate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::json;

use super::docker_ops;
use super::ledger::{self, Entry, Undo};
use super::scale;
use crate::config::{Fault, FaultAction, FaultsDrill, Gate, RestartChange, Stage};
use crate::gates::{self, GateCx};
use crate::run::progress::Event;
use crate::run::record::{GateRecord, Status};
use crate::stages::{StageCx, StageResult};

const DEFAULT_HOLD: Duration = Duration::from_secs(5);

/// What one fault drill needs besides the fault.
pub(super) struct Drill<'a> {
    pub stage: &'a Stage,
    pub spec: &'a FaultsDrill,
    pub cx: &'a StageCx<'a>,
    pub docker: Docker,
    pub project: String,
    pub ledger: PathBuf,
}

impl Drill<'_> {
    pub fn say(&self, line: &str) {
        self.cx.progress.emit(Event::Output { stage: self.stage.name(), line });
    }
}

pub async fn run(stage: &Stage, spec: &FaultsDrill, cx: &StageCx<'_>) -> StageResult {
    let docker = match crate::docker::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            return StageResult { status: Some(Status::Failed), reason: Some(format!("{e:#}")), ..Default::default() };
        }
    };
    let runs_dir = cx.run_dir.parent().unwrap_or(cx.run_dir);
    let drill = Drill {
        stage,
        spec,
        cx,
        docker,
        project: crate::stages::compose::project_name(&spec.project),
        ledger: ledger::path(runs_dir),
    };
    let mut gates = Vec::new();
    let mut summaries = Vec::new();
    let mut stopped: Option<&str> = None;
    for fault in &spec.faults {
        if let Some(why) = stopped {
            gates.push(skipped(fault, why));
            summaries.push(json!({ "name": fault.name, "action": fault.action.as_str(), "service": fault.service, "status": "skipped" }));
            continue;
        }
        let (records, summary) = one(&drill, fault).await;
        if records.iter().any(|g| g.status == Status::Interrupted) || cx.cancel.is_cancelled() {
            stopped = Some("interrupted");
        } else if records.iter().any(|g| g.status == Status::Failed) {
            stopped = Some("an earlier fault was not recovered from");
        }
        gates.extend(records);
        summaries.push(summary);
    }
    // The stage's own `gates:` judge the stack once the faults are over.
    match stopped {
        None => gates.extend(
            crate::stages::verify::run_gates(
                stage,
                &GateCx { command: None, cancel: &cx.cancel, base_dir: cx.base_dir },
            )
            .await,
        ),
        Some(why) => gates.extend(stage.gates.iter().map(|g| gates::not_evaluated(g, Status::Skipped, why))),
    }
    StageResult {
        gates,
        outputs: json!({ "drill": "faults", "project": drill.project, "faults": summaries }),
        ..Default::default()
    }
}

/// One fault from injection to recovery; returns its gate records and its summary for the reports.
async fn one(drill: &Drill<'_>, fault: &Fault) -> (Vec<GateRecord>, serde_json::Value) {
    let mut gates = Vec::new();
    let started_at = jiff::Timestamp::now().to_string();
    let outcome = inject_and_observe(drill, fault, &mut gates).await;
    let (recovery_ms, error) = match outcome {
        Ok(ms) => (ms, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    if let Some(error) = &error {
        let mut gate = GateRecord::judged(
            format!("{}: fault injected", fault.name),
            "fault",
            false,
            "the fault injected and undone",
            error.clone(),
        );
        gate.checklist = fault.checklist.clone();
        if drill.cx.cancel.is_cancelled() {
            gate.status = Status::Interrupted;
        }
        gates.push(gate);
    }
    let status = if gates.iter().any(|g| g.status == Status::Interrupted) {
        "interrupted"
    } else if gates.iter().any(|g| g.status == Status::Failed) {
        "failed"
    } else {
        "passed"
    };
    let summary = json!({
        "name": fault.name,
        "action": fault.action.as_str(),
        "service": fault.service,
        "status": status,
        "started_at": started_at,
        "recovery_ms": recovery_ms,
        "deadline_ms": fault.recover_within.0.as_millis() as u64,
        "error": error,
    });
    drill.say(&format!(
        "fault `{}` {status}{}",
        fault.name,
        recovery_ms.map(|ms| format!(", recovered in {:.1}s", ms as f64 / 1000.0)).unwrap_or_default()
    ));
    (gates, summary)
}

/// Ledger first, then the fault; whatever happens after, the fault is undone and leaves the ledger.
async fn inject_and_observe(
    drill: &Drill<'_>,
    fault: &Fault,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Option<u64>> {
    let before = restart_counts(drill, fault).await?;
    let (entry, victim) = ledger_entry(drill, fault).await?;
    ledger::add(&drill.ledger, &entry)?;
    drill.say(&format!(
        "fault `{}`: {} {} (ledger: {})",
        fault.name,
        fault.action.as_str(),
        fault.service,
        drill.ledger.display()
    ));
    let observed = observe(drill, fault, victim.as_deref(), gates).await;
    // A kill is for the restart policy to undo: the drill starts the container itself only once
    // recovery was judged (or the kill itself failed).
    let crashed = fault.action == FaultAction::Kill && observed.is_ok();
    let undone = if crashed { Ok(()) } else { undo(drill, &entry).await };
    let fault_end = match (observed, undone) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(end), Ok(())) => end.unwrap_or_else(Instant::now),
    };
    let recovery = recover(drill, fault, fault_end, gates).await;
    if crashed {
        undo(drill, &entry).await?;
    }
    check_restarts(drill, fault, &before, gates).await?;
    Ok(recovery)
}

/// Undoes the fault and, once that worked, takes it off the ledger.
async fn undo(drill: &Drill<'_>, entry: &Entry) -> anyhow::Result<()> {
    ledger::undo(&drill.docker, &entry.undo)
        .await
        .map_err(|e| e.context(format!("undoing the fault ({})", entry.undo.describe())))?;
    ledger::remove(&drill.ledger, entry)
}

async fn ledger_entry(drill: &Drill<'_>, fault: &Fault) -> anyhow::Result<(Entry, Option<String>)> {
    let (undo, victim) = match fault.action {
        FaultAction::Scale => {
            let keep = docker_ops::service_containers(&drill.docker, &drill.project, &fault.service).await?;
            anyhow::ensure!(
                !keep.is_empty(),
                "compose project `{}` has no container of `{}`",
                drill.project,
                fault.service
            );
            (Undo::ScaleBack { project: drill.project.clone(), service: fault.service.clone(), keep }, None)
        }
        action => {
            let id = docker_ops::running_container(&drill.docker, &drill.project, &fault.service).await?;
            let undo = if action == FaultAction::Pause {
                Undo::Unpause { container: id.clone() }
            } else {
                Undo::Start { container: id.clone() }
            };
            (undo, Some(id))
        }
    };
    let entry = Entry {
        run_id: drill.cx.run.id.clone(),
        pid: std::process::id(),
        stage: drill.stage.name().to_string(),
        fault: fault.name.clone(),
        injected_at: jiff::Timestamp::now().to_string(),
        undo,
    };
    Ok((entry, victim))
}

/// Injects the fault and judges the stack while it holds. Returns when the fault ended by itself (a kill
/// ends at once: recovery is timed from the kill), or `None` when undoing it ends it.
async fn observe(
    drill: &Drill<'_>,
    fault: &Fault,
    victim: Option<&str>,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Option<Instant>> {
    let injected = Instant::now();
    let ended_by_itself = match (fault.action, victim) {
        (FaultAction::Scale, _) => {
            scale::run(drill, fault, gates).await?;
            None
        }
        (action, Some(victim)) => {
            docker_ops::inject(&drill.docker, action, victim).await?;
            (action == FaultAction::Kill).then_some(injected)
        }
        (_, None) => anyhow::bail!("no container to hit"),
    };
    run_gates(drill, fault, &fault.during.0, "while the fault holds", None, gates).await;
    if matches!(fault.action, FaultAction::Stop | FaultAction::Pause) {
        let hold = fault.hold.map_or(DEFAULT_HOLD, |d| d.0);
        tokio::select! {
            () = tokio::time::sleep_until((injected + hold).into()) => {}
            () = drill.cx.cancel.cancelled() => {}
        }
    }
    Ok(ended_by_itself)
}

/// The service back up and every `recover` gate passing, within the deadline; the time taken is a gate.
async fn recover(drill: &Drill<'_>, fault: &Fault, fault_end: Instant, gates: &mut Vec<GateRecord>) -> Option<u64> {
    let within = fault.recover_within.0;
    let deadline = fault_end + within;
    let expected =
        format!("`{}` up and every recover gate passing within {}", fault.service, humantime::format_duration(within));
    let up = docker_ops::wait_up(&drill.docker, &drill.project, &fault.service, 1, deadline, &drill.cx.cancel).await;
    let failed_gates = match &up {
        Ok(()) => run_gates(drill, fault, &fault.recover.0, "after the fault", Some(deadline), gates).await,
        Err(_) => Vec::new(),
    };
    let took = fault_end.elapsed();
    let taken = format!("{:.1}s", took.as_secs_f64());
    let (passed, actual) = match (up, failed_gates.is_empty()) {
        (Ok(()), true) if took <= within => (true, format!("recovered in {taken}")),
        (Ok(()), true) => (false, format!("recovered in {taken}, after the deadline")),
        (Ok(()), false) => (false, format!("not recovered after {taken}: {} failed", failed_gates.join(", "))),
        (Err(why), _) => (false, format!("not recovered after {taken}: {why}")),
    };
    let mut gate = GateRecord::judged(format!("{}: recovered", fault.name), "fault_recovery", passed, expected, actual);
    gate.checklist = fault.checklist.clone();
    gate.duration_ms = took.as_millis() as u64;
    if drill.cx.cancel.is_cancelled() {
        gate.status = Status::Interrupted;
    }
    gates.push(gate);
    passed.then_some(took.as_millis() as u64)
}

/// Evaluates gates in order (each within its own timeout, or what is left before `deadline`); returns
/// the names of those that failed.
async fn run_gates(
    drill: &Drill<'_>,
    fault: &Fault,
    list: &[Gate],
    when: &str,
    deadline: Option<Instant>,
    gates: &mut Vec<GateRecord>,
) -> Vec<String> {
    let gate_cx = GateCx { command: None, cancel: &drill.cx.cancel, base_dir: drill.cx.base_dir };
    let mut failed = Vec::new();
    for gate in list {
        let mut gate = gate.clone();
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            gate.common.timeout = Some(crate::config::Dur(left));
        }
        let mut record = gates::evaluate(&gate, &gate_cx).await;
        record.name = format!("{}: {} ({when})", fault.name, record.name);
        if record.checklist.is_empty() {
            record.checklist = fault.checklist.clone();
        }
        if record.status != Status::Passed {
            failed.push(gate.name());
        }
        gates.push(record);
    }
    failed
}

async fn restart_counts(drill: &Drill<'_>, fault: &Fault) -> anyhow::Result<Vec<(String, i64)>> {
    let mut counts = Vec::new();
    for service in fault.restarts.keys() {
        counts.push((service.clone(), docker_ops::restart_count(&drill.docker, &drill.project, service).await?));
    }
    Ok(counts)
}

async fn check_restarts(
    drill: &Drill<'_>,
    fault: &Fault,
    before: &[(String, i64)],
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<()> {
    for (service, was) in before {
        let now = docker_ops::restart_count(&drill.docker, &drill.project, service).await?;
        let change = fault.restarts[service];
        let passed = match change {
            RestartChange::Unchanged => now == *was,
            RestartChange::Increased => now > *was,
        };
        let expected = match change {
            RestartChange::Unchanged => format!("`{service}` not restarted (restart count stays {was})"),
            RestartChange::Increased => {
                format!("`{service}` restarted by its restart policy (restart count above {was})")
            }
        };
        let mut gate = GateRecord::judged(
            format!("{}: {service} restarts", fault.name),
            "fault_restarts",
            passed,
            expected,
            format!("restart count {now}"),
        );
        gate.checklist = fault.checklist.clone();
        gates.push(gate);
    }
    Ok(())
}

fn skipped(fault: &Fault, why: &str) -> GateRecord {
    let mut gate = GateRecord::judged(
        format!("{}: recovered", fault.name),
        "fault_recovery",
        false,
        format!("recovered within {}", fault.recover_within),
        why,
    );
    gate.status = if why == "interrupted" { Status::Interrupted } else { Status::Skipped };
    gate.checklist = fault.checklist.clone();
    gate
}
