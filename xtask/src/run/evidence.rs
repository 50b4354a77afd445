//! The evidence bundle written at the first failed stage, before cleanup takes the stack away: every
//! service's state and recent logs for the run's compose projects, and the failing gates' transcripts.
//! Everything goes through `redact`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use serde::Serialize;

use super::record::{StageRecord, Status};
use crate::redact::redact;

/// The bundle's directory inside the run directory, and its index.
pub const DIR: &str = "evidence";
pub const INDEX: &str = "evidence/README.md";
/// Log lines kept per service.
const LOG_LINES: usize = 200;
/// Collecting must not hold the run up for long when the engine is slow.
const LIMIT: Duration = Duration::from_secs(60);

/// One container's state as the engine reports it.
#[derive(Debug, Serialize)]
struct ServiceState {
    project: String,
    service: String,
    container: String,
    status: String,
    health: Option<String>,
    exit_code: Option<i64>,
    restart_count: Option<i64>,
    oom_killed: Option<bool>,
    error: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    log_file: String,
}

/// Writes the bundle for `failed` under `run_dir/evidence/`; `done` are the stages finished so far
/// (their outputs name the compose projects). Returns the index's path relative to the run directory.
pub async fn collect(run_dir: &Path, failed: &StageRecord, done: &[&StageRecord]) -> anyhow::Result<String> {
    let dir = run_dir.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let projects = projects(failed, done);
    let (states, trouble) = match tokio::time::timeout(LIMIT, services(&dir, &projects)).await {
        Ok(Ok(states)) => (states, None),
        Ok(Err(e)) => (Vec::new(), Some(format!("the Docker engine could not be asked: {e:#}"))),
        Err(_) => (Vec::new(), Some(format!("collecting took longer than {}s and was stopped", LIMIT.as_secs()))),
    };
    let state_json = serde_json::to_string_pretty(&states)?;
    std::fs::write(dir.join("services.json"), redact(&state_json).as_bytes())?;
    let index = index(failed, &projects, &states, trouble.as_deref());
    std::fs::write(run_dir.join(INDEX), redact(&index).as_bytes())?;
    Ok(INDEX.to_string())
}

/// Compose projects named in the outputs of the stages that ran (compose, migrate, bench), in order.
fn projects(failed: &StageRecord, done: &[&StageRecord]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for stage in done.iter().copied().chain([failed]) {
        if let Some(project) = stage.outputs.get("project").and_then(|p| p.as_str())
            && !project.is_empty()
            && !found.iter().any(|f| f == project)
        {
            found.push(project.to_string());
        }
    }
    found
}

async fn services(dir: &Path, projects: &[String]) -> anyhow::Result<Vec<ServiceState>> {
    if projects.is_empty() {
        return Ok(Vec::new());
    }
    let docker = crate::docker::connect().await?;
    let mut states = Vec::new();
    for project in projects {
        for (service, id) in crate::docker::project_containers(&docker, project).await? {
            states.push(service_state(&docker, dir, project, &service, &id).await);
        }
    }
    Ok(states)
}

async fn service_state(docker: &Docker, dir: &Path, project: &str, service: &str, id: &str) -> ServiceState {
    let log_file = format!("{project}.{service}.log");
    let logs = crate::docker::tail_logs(docker, id, LOG_LINES).await;
    let _ = std::fs::write(dir.join(&log_file), redact(&format!("{logs}\n")).as_bytes());
    let mut state = ServiceState {
        project: project.into(),
        service: service.into(),
        container: id.chars().take(12).collect(),
        status: "unknown".into(),
        health: None,
        exit_code: None,
        restart_count: None,
        oom_killed: None,
        error: None,
        started_at: None,
        finished_at: None,
        log_file,
    };
    match docker.inspect_container(id, None).await {
        Ok(info) => {
            state.restart_count = info.restart_count;
            if let Some(s) = info.state {
                state.status = s.status.map_or("unknown".into(), |s| s.to_string());
                state.health = s.health.and_then(|h| h.status).map(|h| h.to_string());
                state.exit_code = s.exit_code;
                state.oom_killed = s.oom_killed;
                state.error = s.error.filter(|e| !e.is_empty());
                state.started_at = s.started_at;
                state.finished_at = s.finished_at;
            }
        }
        Err(e) => state.error = Some(format!("cannot inspect: {e}")),
    }
    state
}

/// The bundle's README: what failed, each service's state with a link to its logs, the transcripts.
fn index(failed: &StageRecord, projects: &[String], states: &[ServiceState], trouble: Option<&str>) -> String {
    let mut md = format!("# Evidence: stage `{}` failed\n\n", failed.name);
    let _ = writeln!(md, "Collected at {} before any cleanup stage ran.\n", jiff::Timestamp::now());
    if let Some(reason) = &failed.reason {
        let _ = writeln!(md, "Stage reason: {reason}\n");
    }
    if let Some(log) = &failed.log {
        let _ = writeln!(md, "Stage log: [{log}](../{log})\n");
    }
    md.push_str("## Services\n\n");
    if let Some(trouble) = trouble {
        let _ = writeln!(md, "No service state: {trouble}\n");
    } else if projects.is_empty() {
        md.push_str("No compose project ran before this failure.\n\n");
    } else if states.is_empty() {
        let _ = writeln!(md, "Projects {} have no containers.\n", projects.join(", "));
    } else {
        md.push_str("| Project | Service | Status | Health | Exit code | Restarts | OOM killed | Logs |\n");
        md.push_str("|---|---|---|---|---|---|---|---|\n");
        for s in states {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | [{}]({}) |",
                s.project,
                s.service,
                s.status,
                s.health.as_deref().unwrap_or("—"),
                s.exit_code.map_or("—".into(), |c| c.to_string()),
                s.restart_count.map_or("—".into(), |c| c.to_string()),
                s.oom_killed.map_or("—".into(), |c| c.to_string()),
                s.log_file,
                s.log_file
            );
        }
        md.push_str("\nThe same as JSON: [services.json](services.json).\n\n");
    }
    md.push_str("## Failed gates\n\n");
    let failures: Vec<_> = failed.gates.iter().filter(|g| g.status == Status::Failed).collect();
    if failures.is_empty() {
        md.push_str("No gate failed: the stage itself did (see its reason and log).\n");
    }
    for gate in failures {
        let _ = writeln!(md, "### {} ({})\n", gate.name, gate.kind);
        let _ = writeln!(md, "- target: `{}`", gate.target);
        let _ = writeln!(md, "- attempts: {} over {} ms", gate.attempts, gate.duration_ms);
        let _ = writeln!(md, "- expected: {}", gate.expected);
        let _ = writeln!(md, "\nactual:\n\n```text\n{}\n```\n", gate.actual);
        if let Some(transcript) = &gate.transcript {
            let _ = writeln!(md, "transcript:\n\n```text\n{transcript}\n```\n");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::record::GateRecord;

    fn stage(name: &str, project: Option<&str>) -> StageRecord {
        StageRecord {
            name: name.into(),
            kind: "compose".into(),
            checklist: Vec::new(),
            when: crate::config::When::OnSuccess,
            target: String::new(),
            status: Status::Passed,
            reason: None,
            started_at: None,
            duration_ms: 0,
            gates: Vec::new(),
            outputs: project.map_or(serde_json::Value::Null, |p| serde_json::json!({ "project": p })),
            log: None,
        }
    }

    #[test]
    fn projects_come_from_stage_outputs_once_each() {
        let (a, b, c) = (stage("stack", Some("p1")), stage("migrate", Some("p1")), stage("other", Some("p2")));
        let failed = stage("check", None);
        assert_eq!(projects(&failed, &[&a, &b, &c]), vec!["p1", "p2"]);
    }

    #[test]
    fn index_names_the_gate_and_its_transcript() {
        let mut failed = stage("readiness", None);
        let mut gate = GateRecord::judged("GET /health/ready", "http", false, "status 200", "status 503");
        gate.transcript = Some("> GET /health/ready\n< 503".into());
        failed.gates.push(gate);
        let md = index(&failed, &[], &[], None);
        assert!(md.contains("### GET /health/ready (http)"), "{md}");
        assert!(md.contains("< 503") && md.contains("No compose project ran"), "{md}");
    }
}
