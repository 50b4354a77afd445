//! Schedules stages: in order, in parallel where `needs` allow, stopping at the first failure,
//! then the cleanup stages.

use std::path::Path;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::evidence;
use super::progress::{Event, Progress};
use super::record::{StageRecord, Status};
use crate::config::{Pipeline, When};
use crate::gates;
use crate::plan::{Plan, Step};
use crate::stages::{self, RunContext, StageCx};

pub struct Executor<'a> {
    pub context: &'a RunContext,
    pub pipeline: &'a Pipeline,
    pub plan: &'a Plan,
    pub base_dir: &'a Path,
    pub run_dir: &'a Path,
    pub progress: &'a Progress,
    /// Cancelled on the first Ctrl-C / SIGTERM.
    pub interrupt: CancellationToken,
    pub keep_going: bool,
    pub dry_run: bool,
    /// Called with the records so far after each stage, so a record exists even if the process dies.
    pub on_update: &'a (dyn Fn(&[Option<StageRecord>]) + Sync),
}

/// What a run produced: every stage's record, and the evidence bundle if a stage failed.
pub struct Outcome {
    pub stages: Vec<StageRecord>,
    /// The evidence index, relative to the run directory.
    pub evidence: Option<String>,
}

enum Slot {
    Waiting,
    Running,
    Done(StageRecord),
}

impl Executor<'_> {
    pub async fn run(&self) -> Outcome {
        let steps = &self.plan.steps;
        let mut slots: Vec<Slot> = steps.iter().map(|_| Slot::Waiting).collect();
        let mut running = FuturesUnordered::new();
        let mut first_failure: Option<String> = None;
        let mut evidence = None;
        loop {
            for step in steps.iter().filter(|s| !s.is_cleanup()) {
                if !matches!(slots[step.index], Slot::Waiting) {
                    continue;
                }
                match self.readiness(step, &slots, first_failure.as_deref()) {
                    Ready::Wait => {}
                    Ready::Skip(status, reason) => slots[step.index] = Slot::Done(self.unrun(step, status, reason)),
                    Ready::Go => {
                        slots[step.index] = Slot::Running;
                        running.push(self.run_step(step, self.interrupt.clone()));
                    }
                }
            }
            let Some(record) = running.next().await else {
                break;
            };
            let index = steps.iter().position(|s| s.name == record.name).expect("records come from steps");
            if matches!(record.status, Status::Failed | Status::Interrupted) && first_failure.is_none() {
                first_failure = Some(record.name.clone());
                if record.status == Status::Failed {
                    evidence = self.collect_evidence(&record, &slots).await;
                }
            }
            slots[index] = Slot::Done(record);
            self.report(&slots);
        }
        self.run_cleanup(&mut slots, first_failure.is_some()).await;
        let stages = slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(r) => r,
                _ => unreachable!("every slot is done when the executor returns"),
            })
            .collect();
        Outcome { stages, evidence }
    }

    /// Services' state and logs and the failing gates' transcripts, taken while the stack still stands.
    async fn collect_evidence(&self, failed: &StageRecord, slots: &[Slot]) -> Option<String> {
        let done: Vec<&StageRecord> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Done(r) => Some(r),
                _ => None,
            })
            .collect();
        match evidence::collect(self.run_dir, failed, &done).await {
            Ok(path) => Some(path),
            Err(e) => {
                self.progress.emit(Event::Note(&format!("evidence could not be written: {e:#}")));
                None
            }
        }
    }

    fn readiness(&self, step: &Step, slots: &[Slot], failure: Option<&str>) -> Ready {
        if let Some(reason) = &step.skip_reason {
            return Ready::Skip(Status::NotRun, reason.clone());
        }
        if self.dry_run {
            return Ready::Skip(Status::NotRun, "dry run".into());
        }
        if self.interrupt.is_cancelled() {
            return Ready::Skip(Status::Skipped, "the run was interrupted".into());
        }
        if let Some(failed) = failure
            && !self.keep_going
        {
            return Ready::Skip(Status::Skipped, format!("stopped after `{failed}` failed"));
        }
        for &dep in &step.needs {
            let dep_step = &self.plan.steps[dep];
            match &slots[dep] {
                // A dependency outside this run (`--only`, `--from`, environment) counts as done.
                _ if !dep_step.runs() => {}
                Slot::Done(r) if r.status == Status::Passed => {}
                // With --keep-going only a declared `needs` holds a stage back; plain order does not.
                Slot::Done(_) if self.keep_going && !step.needs_declared => {}
                Slot::Done(r) => {
                    return Ready::Skip(Status::Skipped, format!("needs `{}`, which {}", r.name, r.status.as_str()));
                }
                _ => return Ready::Wait,
            }
        }
        Ready::Go
    }

    async fn run_cleanup(&self, slots: &mut [Slot], failed: bool) {
        let interrupted = self.interrupt.is_cancelled();
        for step in self.plan.steps.iter().filter(|s| s.is_cleanup()) {
            let record = if let Some(reason) = &step.skip_reason {
                self.unrun(step, Status::NotRun, reason.clone())
            } else if self.dry_run {
                self.unrun(step, Status::NotRun, "dry run".into())
            } else if step.when == When::OnFailure && !failed && !interrupted {
                self.unrun(step, Status::NotRun, "runs only when the run fails".into())
            } else {
                // Cleanup must run even after an interrupt: it gets a token of its own.
                self.run_step(step, CancellationToken::new()).await
            };
            slots[step.index] = Slot::Done(record);
            self.report(slots);
        }
    }

    async fn run_step(&self, step: &Step, cancel: CancellationToken) -> StageRecord {
        let stage = &self.pipeline.stages[step.index];
        self.progress.emit(Event::StageStarted { stage: &step.name, kind: &step.kind });
        let started_at = jiff::Timestamp::now().to_string();
        let clock = Instant::now();
        let cx = StageCx {
            run: self.context,
            base_dir: self.base_dir,
            run_dir: self.run_dir,
            cancel,
            progress: self.progress,
        };
        let result = stages::run(stage, &cx).await;
        let status = result.status();
        let duration = clock.elapsed();
        for gate in result.gates.iter().filter(|g| g.status != Status::Skipped) {
            self.progress.emit(Event::Gate {
                stage: &step.name,
                gate: &gate.name,
                status: gate.status,
                expected: &gate.expected,
                actual: &gate.actual,
            });
        }
        self.progress.emit(Event::StageFinished {
            stage: &step.name,
            status,
            duration,
            reason: result.reason.as_deref(),
        });
        StageRecord {
            reason: result.reason,
            started_at: Some(started_at),
            duration_ms: duration.as_millis() as u64,
            gates: result.gates,
            outputs: result.outputs,
            log: result.log,
            ..self.record(step, status)
        }
    }

    fn unrun(&self, step: &Step, status: Status, reason: String) -> StageRecord {
        let stage = &self.pipeline.stages[step.index];
        if status == Status::Skipped {
            self.progress.emit(Event::StageFinished {
                stage: &step.name,
                status,
                duration: Default::default(),
                reason: Some(&reason),
            });
        }
        StageRecord {
            gates: stage.gates.iter().map(|g| gates::not_evaluated(g, status, &reason)).collect(),
            reason: Some(reason),
            ..self.record(step, status)
        }
    }

    /// A stage's record with nothing run yet: what the plan knows about it.
    fn record(&self, step: &Step, status: Status) -> StageRecord {
        StageRecord {
            name: step.name.clone(),
            kind: step.kind.clone(),
            checklist: self.pipeline.stages[step.index].common.checklist.clone(),
            when: step.when,
            target: step.target.clone(),
            status,
            reason: None,
            started_at: None,
            duration_ms: 0,
            gates: Vec::new(),
            outputs: serde_json::Value::Null,
            log: None,
        }
    }

    fn report(&self, slots: &[Slot]) {
        let records: Vec<Option<StageRecord>> = slots
            .iter()
            .map(|s| match s {
                Slot::Done(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        (self.on_update)(&records);
    }
}

enum Ready {
    Wait,
    Go,
    Skip(Status, String),
}
