//! Stage kinds: each runs its work, then its gates, and reports a result. One file per kind.

mod base_image;
mod bench;
mod build;
mod certificate;
mod command;
mod compose;
pub mod drill;
mod helm;
mod migrate;
mod verify;

pub use build::tags::sha_tag;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Stage, StageSpec};
use crate::run::progress::Progress;
use crate::run::record::{GateRecord, Status};

/// A stage with no `timeout` is stopped after this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Facts about the whole run that stages need.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub id: String,
    pub git: crate::git::GitInfo,
}

pub struct StageCx<'a> {
    pub run: &'a RunContext,
    /// The pipeline file's directory: relative paths in the file start here.
    pub base_dir: &'a Path,
    /// This run's directory (`target/xtask/runs/<id>`).
    pub run_dir: &'a Path,
    pub cancel: CancellationToken,
    pub progress: &'a Progress,
}

#[derive(Debug, Default)]
pub struct StageResult {
    pub status: Option<Status>,
    pub reason: Option<String>,
    pub gates: Vec<GateRecord>,
    pub outputs: serde_json::Value,
    pub log: Option<String>,
}

impl StageResult {
    /// The stage's status: interrupted, failed if any gate failed, else passed.
    pub fn status(&self) -> Status {
        if let Some(status) = self.status {
            return status;
        }
        let statuses: Vec<Status> = self.gates.iter().map(|g| g.status).collect();
        if statuses.contains(&Status::Interrupted) {
            Status::Interrupted
        } else if statuses.contains(&Status::Failed) {
            Status::Failed
        } else {
            Status::Passed
        }
    }
}

/// Runs one stage within its timeout; a timed-out stage is cancelled and cleans up before it fails.
pub async fn run(stage: &Stage, cx: &StageCx<'_>) -> StageResult {
    let mut result = run_with_timeout(stage, cx).await;
    // Checks a stage makes itself prove the items the stage names.
    let own_checks = result.gates.iter_mut().filter(|g| !crate::config::GateSpec::KINDS.contains(&g.kind.as_str()));
    for gate in own_checks.filter(|g| g.checklist.is_empty()) {
        gate.checklist = stage.common.checklist.clone();
    }
    result
}

async fn run_with_timeout(stage: &Stage, cx: &StageCx<'_>) -> StageResult {
    let limit = stage.common.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    let token = cx.cancel.child_token();
    let inner = StageCx {
        run: cx.run,
        base_dir: cx.base_dir,
        run_dir: cx.run_dir,
        cancel: token.clone(),
        progress: cx.progress,
    };
    let work = dispatch(stage, &inner);
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        () = tokio::time::sleep(limit) => {
            token.cancel();
            let mut result = work.await;
            result.status = Some(Status::Failed);
            result.reason = Some(format!("timed out after {}", humantime::format_duration(limit)));
            for gate in &mut result.gates {
                if gate.status == Status::Interrupted {
                    gate.status = Status::Failed;
                    gate.actual = "stage timed out".into();
                }
            }
            result
        }
    }
}

async fn dispatch(stage: &Stage, cx: &StageCx<'_>) -> StageResult {
    match &stage.spec {
        StageSpec::Command(spec) => command::run(stage, spec, cx).await,
        StageSpec::Verify(_) => verify::run(stage, cx).await,
        StageSpec::Build(spec) => build::run(stage, spec, cx).await,
        StageSpec::BaseImage(spec) => base_image::run(spec, cx).await,
        StageSpec::Helm(spec) => helm::run(spec, cx).await,
        StageSpec::Compose(spec) => compose::run(stage, spec, cx).await,
        StageSpec::Bench(spec) => bench::run(stage, spec, cx).await,
        StageSpec::Drill(spec) => drill::run(stage, spec, cx).await,
        StageSpec::Migrate(spec) => migrate::run(stage, spec, cx).await,
        StageSpec::Certificate(spec) => certificate::run(stage, spec, cx).await,
    }
}

/// The log file of a stage, relative to the run directory.
pub fn log_path(stage: &Stage) -> String {
    let safe: String =
        stage.name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("logs/{safe}.log")
}
