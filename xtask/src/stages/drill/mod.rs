//! `drill`: rehearsals of what goes wrong in production; `drill:` picks one. Each records its timings,
//! fingerprints or recovery times in the stage's outputs for the reports. Faults are written to a
//! ledger (`ledger.rs`) so none outlives its run.

mod backup;
mod docker_ops;
mod faults;
mod fingerprint;
mod http;
pub mod ledger;
mod pitr;
mod rollback;
mod safety;
mod scale;

use super::{StageCx, StageResult};
use crate::config::{DrillSpec, Stage};
use crate::run::record::Status;

pub async fn run(stage: &Stage, spec: &DrillSpec, cx: &StageCx<'_>) -> StageResult {
    let result = match spec {
        DrillSpec::Rollback(spec) => rollback::run(stage, spec, cx).await,
        DrillSpec::Backup(spec) => backup::run(stage, spec, cx).await,
        DrillSpec::Faults(spec) => Ok(faults::run(stage, spec, cx).await),
    };
    result.unwrap_or_else(|e| StageResult {
        status: Some(if cx.cancel.is_cancelled() { Status::Interrupted } else { Status::Failed }),
        reason: Some(crate::redact::redact(&format!("{e:#}")).into_owned()),
        ..Default::default()
    })
}
