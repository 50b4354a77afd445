//! `drill`: rehearsals of what goes wrong in production; `drill:` picks one. Each records its timings
//! and fingerprints in the stage's outputs for the reports.

mod backup;
mod fingerprint;
mod http;
mod pitr;
mod rollback;
mod safety;

use super::{StageCx, StageResult};
use crate::config::{DrillSpec, Stage};
use crate::run::record::Status;

pub async fn run(stage: &Stage, spec: &DrillSpec, cx: &StageCx<'_>) -> StageResult {
    let result = match spec {
        DrillSpec::Rollback(spec) => rollback::run(stage, spec, cx).await,
        DrillSpec::Backup(spec) => backup::run(stage, spec, cx).await,
    };
    result.unwrap_or_else(|e| StageResult {
        status: Some(if cx.cancel.is_cancelled() { Status::Interrupted } else { Status::Failed }),
        reason: Some(crate::redact::redact(&format!("{e:#}")).into_owned()),
        ..Default::default()
    })
}
