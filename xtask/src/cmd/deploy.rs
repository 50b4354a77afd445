//! `cargo xtask deploy`: run the pipeline, write the run record and the reports.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::plan::{SelectArgs, usage_errors};
use super::{
    EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_LOCKED, EXIT_PASSED, PipelineArgs, Secrets, builtins, load,
    runs_dir,
};
use crate::plan;
use crate::run::executor::Executor;
use crate::run::lock::{self, EnvLock, Holder, LockError};
use crate::run::progress::{Event, Progress};
use crate::run::record::{self, Failure, Options, RunRecord, StageRecord, Status, Tool};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Run every stage even after a failure; fail at the end.
    #[arg(long)]
    pub keep_going: bool,
    /// Show the plan and write a record, but run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Templates replacing the built-in report templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<std::path::PathBuf>,
    /// When another run holds the environment, wait up to this long for it (e.g. 10m) instead of
    /// failing at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
}

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

pub async fn run(args: &PipelineArgs, deploy: &DeployArgs, out: &Output) -> ExitCode {
    let run_id = new_run_id();
    let git = crate::git::inspect(Path::new("."));
    let loaded = match load(args, Secrets::Resolve, builtins(&run_id, &git)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let selector = deploy.select.selector();
    let plan = match plan::build(&loaded.pipeline, &selector) {
        Ok(plan) => plan,
        Err(errors) => return usage_errors(&errors),
    };
    // Held until this function returns, on every path; a forced exit clears it in `watch_signals`.
    let lock = match deploy.dry_run {
        true => None,
        false => match take_lock(&loaded.base_dir, &plan.environment, &run_id, deploy.wait_lock).await {
            Ok(lock) => Some(lock),
            Err(code) => return code,
        },
    };
    let runs = runs_dir(&loaded.base_dir);
    let run_dir = runs.join(&run_id);
    if let Err(e) = std::fs::create_dir_all(&run_dir) {
        eprintln!("error: cannot create {}: {e}", run_dir.display());
        return ExitCode::from(EXIT_INVALID);
    }
    let progress = Progress::new(out.quiet, out.json, out.verbose);
    if deploy.dry_run {
        progress.emit(Event::Note(&super::plan::render(&plan)));
    }
    let interrupt = CancellationToken::new();
    watch_signals(interrupt.clone(), run_dir.clone(), lock.as_ref().map(|l| l.path().to_path_buf()));

    let mut record = RunRecord {
        schema: record::RECORD_SCHEMA,
        id: run_id.clone(),
        pipeline: loaded.pipeline.header.name.clone().unwrap_or_else(|| "pipeline".into()),
        pipeline_file: loaded.file.clone(),
        environment: plan.environment.clone(),
        status: Status::Running,
        exit_code: 0,
        started_at: jiff::Timestamp::now().to_string(),
        finished_at: None,
        duration_ms: 0,
        git,
        tool: Tool { name: "xtask".into(), version: env!("CARGO_PKG_VERSION").into() },
        host: lock::hostname(),
        options: Options {
            only: selector.only.clone(),
            from: selector.from.clone(),
            skip: selector.skip.clone(),
            keep_going: deploy.keep_going,
            dry_run: deploy.dry_run,
        },
        stages: Vec::new(),
        failure: None,
        evidence: None,
        checklist: Vec::new(),
        leftover_faults: undo_leftover_faults(&runs, &progress, deploy.dry_run).await,
    };
    let _ = record::write(&run_dir, &record);
    let clock = Instant::now();
    let on_update = |partial: &[Option<StageRecord>]| {
        let mut snapshot = record.clone();
        snapshot.stages = partial.iter().flatten().cloned().collect();
        let _ = record::write(&run_dir, &snapshot);
    };
    let context = crate::stages::RunContext { id: run_id.clone(), git: record.git.clone() };
    let executor = Executor {
        context: &context,
        pipeline: &loaded.pipeline,
        plan: &plan,
        base_dir: &loaded.base_dir,
        run_dir: &run_dir,
        progress: &progress,
        interrupt: interrupt.clone(),
        keep_going: deploy.keep_going,
        dry_run: deploy.dry_run,
        on_update: &on_update,
    };
    let outcome = executor.run().await;
    let stages = outcome.stages;
    record.evidence = outcome.evidence;

    let header = &loaded.pipeline.header;
    record.checklist = record::checklist_rows(&header.checklist, &header.signoffs, &stages);
    record.failure = first_failure(&stages);
    record.stages = stages;
    record.status = if interrupt.is_cancelled() {
        Status::Interrupted
    } else if record.stages.iter().any(|s| s.status == Status::Failed) {
        Status::Failed
    } else {
        Status::Passed
    };
    record.exit_code = i32::from(exit_code(record.status));
    record.finished_at = Some(jiff::Timestamp::now().to_string());
    record.duration_ms = clock.elapsed().as_millis() as u64;
    finish(&record, &runs, &run_dir, deploy, out, &progress, &loaded.pipeline)
}

fn finish(
    record: &RunRecord,
    runs: &Path,
    run_dir: &Path,
    deploy: &DeployArgs,
    out: &Output,
    progress: &Progress,
    pipeline: &crate::config::Pipeline,
) -> ExitCode {
    if let Err(e) = record::write(run_dir, record).and_then(|_| record::set_latest(runs, &record.id)) {
        eprintln!("error: cannot write the run record: {e:#}");
        return ExitCode::from(EXIT_INVALID);
    }
    let templates = deploy.templates.clone().or_else(|| {
        pipeline.header.reports.templates.as_ref().map(|t| run_dir.ancestors().nth(4).unwrap_or(Path::new(".")).join(t))
    });
    match crate::report::render_all(record, run_dir, templates.as_deref()) {
        Ok(_) => {
            let _ = crate::report::append_step_summary(run_dir);
        }
        Err(e) => eprintln!("error: reports not rendered: {e:#}"),
    }
    if let Some(f) = &record.failure {
        let gate = f.gate.as_deref().map(|g| format!(" / {g}")).unwrap_or_default();
        progress.emit(Event::Note(&format!(
            "first failure: {}{gate}\n  expected: {}\n  actual:   {}",
            f.stage, f.expected, f.actual
        )));
        if let Some(evidence) = &record.evidence {
            progress.emit(Event::Note(&format!("evidence: {}", run_dir.join(evidence).display())));
        }
    }
    progress.emit(Event::Note(&format!(
        "run {} {} — record and reports in {}",
        record.id,
        record.status.as_str(),
        run_dir.display()
    )));
    if out.json {
        let json = serde_json::to_string_pretty(record).expect("records serialize");
        println!("{}", crate::redact::redact(&json));
    }
    ExitCode::from(exit_code(record.status))
}

fn exit_code(status: Status) -> u8 {
    match status {
        Status::Passed => EXIT_PASSED,
        Status::Interrupted => EXIT_INTERRUPTED,
        _ => EXIT_GATE_FAILED,
    }
}

/// The first failed stage in pipeline order, with its first failed gate.
fn first_failure(stages: &[StageRecord]) -> Option<Failure> {
    let stage = stages.iter().find(|s| s.status == Status::Failed)?;
    let gate = stage.gates.iter().find(|g| g.status == Status::Failed);
    Some(Failure {
        stage: stage.name.clone(),
        gate: gate.map(|g| g.name.clone()),
        expected: gate.map_or_else(|| "the stage to complete".into(), |g| g.expected.clone()),
        actual: gate.map_or_else(|| stage.reason.clone().unwrap_or_else(|| "failed".into()), |g| g.actual.clone()),
    })
}

/// Faults that a run which died left injected are undone before anything else runs, and reported.
async fn undo_leftover_faults(runs: &Path, progress: &Progress, dry_run: bool) -> Vec<record::RecoveredFault> {
    let ledger = crate::stages::drill::ledger::path(runs);
    if dry_run || !ledger.exists() {
        return Vec::new();
    }
    let recovered = match crate::stages::drill::ledger::recover(&ledger).await {
        Ok(recovered) => recovered,
        Err(e) => {
            progress
                .emit(Event::Note(&format!("warning: cannot undo leftover faults from {}: {e:#}", ledger.display())));
            return Vec::new();
        }
    };
    for r in &recovered {
        progress.emit(Event::Note(&format!(
            "undid a leftover fault of run {} (pid {} is gone): {} / {}: {} — {}",
            r.run_id, r.pid, r.stage, r.fault, r.undo, r.outcome
        )));
    }
    recovered
}

/// The environment's lock, or the exit code when another run holds it (or left it behind).
async fn take_lock(
    base_dir: &Path,
    env: &str,
    run_id: &str,
    wait: Option<std::time::Duration>,
) -> Result<EnvLock, ExitCode> {
    let path = lock::lock_path(base_dir, env);
    let holder = Holder::this_process(run_id);
    let on_wait = |current: &Holder| eprintln!("waiting for environment `{env}`, in use by {current}");
    EnvLock::acquire(&path, env, &holder, wait, on_wait).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(match e {
            LockError::Io(_) => EXIT_INVALID,
            _ => EXIT_LOCKED,
        })
    })
}

/// First SIGINT/SIGTERM: cancel and clean up. Second: leave at once, marking the record interrupted.
fn watch_signals(interrupt: CancellationToken, run_dir: std::path::PathBuf, lock: Option<std::path::PathBuf>) {
    // Registered here, before any stage starts: inside the task they would wait for it to be polled,
    // and a signal arriving first would kill the process with nothing cleaned up.
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("interrupted: stopping the running stages and cleaning up (interrupt again to force exit)");
        interrupt.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("forced exit: cleanup did not finish");
        if let Ok(mut r) = record::read(&run_dir.join("run.json")) {
            r.status = Status::Interrupted;
            r.exit_code = i32::from(EXIT_INTERRUPTED);
            let _ = record::write(&run_dir, &r);
        }
        // No destructor runs past `exit`: the lock record would be left for the next run to find.
        if let Some(lock) = &lock {
            lock::clear_on_forced_exit(lock);
        }
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
}

/// Sortable and unique enough for one machine: UTC time plus the process id. Lowercase, so it can
/// name a compose project.
fn new_run_id() -> String {
    format!("{}-{}", jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S"), std::process::id())
}
