//! `verify`: a stage that only runs its gates, in order, stopping at the first that fails.

use super::{StageCx, StageResult};
use crate::config::Stage;
use crate::gates::{self, GateCx};
use crate::run::record::Status;

pub async fn run(stage: &Stage, cx: &StageCx<'_>) -> StageResult {
    let gate_cx = GateCx { command: None, cancel: &cx.cancel, base_dir: cx.base_dir };
    StageResult { gates: run_gates(stage, &gate_cx).await, ..Default::default() }
}

/// Evaluates the stage's gates in order; after the first failure the rest are recorded as skipped.
pub async fn run_gates(stage: &Stage, gate_cx: &GateCx<'_>) -> Vec<crate::run::record::GateRecord> {
    let mut records = Vec::new();
    let mut stopped: Option<&str> = None;
    for gate in &stage.gates {
        if let Some(why) = stopped {
            records.push(gates::not_evaluated(gate, Status::Skipped, why));
            continue;
        }
        let record = gates::evaluate(gate, gate_cx).await;
        match record.status {
            Status::Failed => stopped = Some("an earlier gate in this stage failed"),
            Status::Interrupted => stopped = Some("interrupted"),
            _ => {}
        }
        records.push(record);
    }
    records
}
