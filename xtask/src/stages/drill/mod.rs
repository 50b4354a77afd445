//! `drill`: rehearses failures against the running stack. The stage's `drill:` key picks the type;
//! one file per type. Faults are written to a ledger (`ledger.rs`) so none outlives its run.

mod docker_ops;
mod faults;
pub mod ledger;
mod scale;

use super::{StageCx, StageResult};
use crate::config::{DrillSpec, Stage};

pub async fn run(stage: &Stage, spec: &DrillSpec, cx: &StageCx<'_>) -> StageResult {
    match spec {
        DrillSpec::Faults(faults) => faults::run(stage, faults, cx).await,
    }
}
