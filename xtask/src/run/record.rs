//! The run record: everything a run did and measured, written as `run.json` and read back by `report`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ChecklistItem, Signoff};

pub const RECORD_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    Interrupted,
    /// Not part of this run (environment, `--only`, dry run).
    NotRun,
    Running,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::NotRun => "not_run",
            Status::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: u32,
    pub id: String,
    pub pipeline: String,
    pub pipeline_file: PathBuf,
    pub environment: String,
    pub status: Status,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: u64,
    pub git: crate::git::GitInfo,
    pub tool: Tool,
    pub host: String,
    pub options: Options,
    pub stages: Vec<StageRecord>,
    /// The first failed gate, as stage/gate with expected and actual.
    pub failure: Option<Failure>,
    /// The evidence bundle's index, relative to the run directory, when a stage failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    pub checklist: Vec<ChecklistRow>,
    /// Faults a run that died left injected, undone when this run started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftover_faults: Vec<RecoveredFault>,
}

/// A leftover fault of a dead run, and what undoing it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveredFault {
    pub run_id: String,
    pub pid: u32,
    pub stage: String,
    pub fault: String,
    pub injected_at: String,
    pub undo: String,
    /// `undone`, or why it could not be.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    pub only: Vec<String>,
    pub from: Option<String>,
    pub skip: Vec<String>,
    pub keep_going: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    /// Checklist items the stage's own checks prove.
    #[serde(default)]
    pub checklist: Vec<String>,
    pub when: crate::config::When,
    pub target: String,
    pub status: Status,
    /// Why the stage was skipped or not run, or what went wrong outside its gates.
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub duration_ms: u64,
    pub gates: Vec<GateRecord>,
    /// Kind-specific results (image ids, benchmark figures, drill timings).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub outputs: serde_json::Value,
    /// The stage's log file, relative to the run directory.
    pub log: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRecord {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub checklist: Vec<String>,
    pub status: Status,
    pub expected: String,
    pub actual: String,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The request and response (or messages) behind the verdict, for gates that talk a protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

impl GateRecord {
    /// A verdict a stage reaches itself (a build, a lint, a health wait) rather than through a configured gate.
    pub fn judged(
        name: impl Into<String>,
        kind: &str,
        passed: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> GateRecord {
        let name = name.into();
        GateRecord {
            target: name.clone(),
            name,
            kind: kind.into(),
            checklist: Vec::new(),
            status: if passed { Status::Passed } else { Status::Failed },
            expected: expected.into(),
            actual: actual.into(),
            attempts: 1,
            duration_ms: 0,
            transcript: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub stage: String,
    pub gate: Option<String>,
    pub expected: String,
    pub actual: String,
}

/// One checklist item and what proves it: gates, or a person's sign-off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChecklistRow {
    pub id: String,
    pub section: String,
    pub item: String,
    /// passed, failed, not_run, signed, awaiting_signoff, uncovered
    pub status: String,
    pub gates: Vec<String>,
    pub signoff: Option<Signoff>,
}

/// Joins checklist items with the gates that name them and the sign-offs.
pub fn checklist_rows(items: &[ChecklistItem], signoffs: &[Signoff], stages: &[StageRecord]) -> Vec<ChecklistRow> {
    items
        .iter()
        .map(|item| {
            let gates: Vec<(&StageRecord, &GateRecord)> = stages
                .iter()
                .flat_map(|s| s.gates.iter().map(move |g| (s, g)))
                .filter(|(s, g)| g.checklist.contains(&item.id) || s.checklist.contains(&item.id))
                .collect();
            let signoff = signoffs.iter().find(|s| s.checklist == item.id).cloned();
            let status = if !gates.is_empty() {
                let statuses: Vec<Status> = gates.iter().map(|(_, g)| g.status).collect();
                if statuses.contains(&Status::Failed) {
                    "failed"
                } else if statuses.iter().all(|s| *s == Status::Passed) {
                    "passed"
                } else {
                    "not_run"
                }
            } else if let Some(s) = &signoff {
                if s.approver.as_deref().is_some_and(|a| !a.trim().is_empty()) { "signed" } else { "awaiting_signoff" }
            } else {
                "uncovered"
            };
            ChecklistRow {
                id: item.id.clone(),
                section: item.section.clone(),
                item: item.item.clone(),
                status: status.into(),
                gates: gates.iter().map(|(s, g)| format!("{} / {}", s.name, g.name)).collect(),
                signoff,
            }
        })
        .collect()
}

/// Writes `run.json` via a temporary file and a rename, so readers never see half a record.
pub fn write(dir: &Path, record: &RunRecord) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(record)?;
    let json = crate::redact::redact(&json);
    let path = dir.join("run.json");
    let tmp = dir.join(".run.json.tmp");
    std::fs::write(&tmp, json.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

pub fn read(path: &Path) -> anyhow::Result<RunRecord> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a run record: {e}", path.display()))
}

/// Points `runs/latest` at `id` (a symlink swapped in atomically).
pub fn set_latest(runs: &Path, id: &str) -> anyhow::Result<()> {
    let tmp = runs.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(id, &tmp)?;
    std::fs::rename(&tmp, runs.join("latest"))?;
    Ok(())
}
