//! `migrate`: runs the service's migrations as a one-off container from the image just built, on the
//! stack's network, and gates on its exit code. The container is removed whatever happens.

use std::collections::HashMap;
use std::io::Write;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures::StreamExt;

use super::verify::run_gates;
use super::{StageCx, StageResult, log_path};
use crate::config::{MigrateStage, Stage};
use crate::gates::{CommandOutput, GateCx};
use crate::redact::redact;
use crate::run::progress::Event;
use crate::run::record::Status;

/// Lines of the migrator's error output shown in the gate (they name the file and the statement).
const FAILURE_LINES: usize = 12;

pub async fn run(stage: &Stage, spec: &MigrateStage, cx: &StageCx<'_>) -> StageResult {
    let log = log_path(stage);
    let mut result = match migrate(stage, spec, cx, &log).await {
        Ok(result) => result,
        Err(e) => StageResult {
            status: Some(Status::Failed),
            reason: Some(redact(&format!("{e:#}")).into()),
            ..Default::default()
        },
    };
    result.log = Some(log);
    result
}

async fn migrate(stage: &Stage, spec: &MigrateStage, cx: &StageCx<'_>, log: &str) -> anyhow::Result<StageResult> {
    let docker = crate::docker::connect().await?;
    let network = network(&docker, spec).await?;
    let name = container_name(&cx.run.id, stage.name());
    let config = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(HashMap::from([
            ("rehearsal.run".to_string(), cx.run.id.clone()),
            ("rehearsal.stage".to_string(), stage.name().to_string()),
        ])),
        host_config: Some(HostConfig { network_mode: network.clone(), ..Default::default() }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the migration container from {}: {e}", spec.image))?;
    let outcome = run_container(&docker, &name, stage, cx, log).await;
    let remove = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    let removed = docker.remove_container(&name, Some(remove)).await;
    let (output, oom_killed) = outcome?;
    if let Err(e) = removed {
        anyhow::bail!("the migration container {name} could not be removed: {e}");
    }
    if cx.cancel.is_cancelled() {
        return Ok(StageResult {
            status: Some(Status::Interrupted),
            reason: Some("interrupted; the migration container was killed and removed".into()),
            gates: stage
                .gates
                .iter()
                .map(|g| crate::gates::not_evaluated(g, Status::Interrupted, "interrupted"))
                .collect(),
            ..Default::default()
        });
    }
    let mut gates =
        run_gates(stage, &GateCx { command: Some(&output), cancel: &cx.cancel, base_dir: cx.base_dir }).await;
    let said = what_it_said(&output);
    for gate in gates.iter_mut().filter(|g| g.kind == "exit_code") {
        if oom_killed {
            gate.actual.push_str(" (killed: out of memory)");
        }
        if !said.is_empty() {
            gate.actual = format!("{}; it said:\n{said}", gate.actual);
        }
    }
    let outputs = serde_json::json!({
        "image": spec.image,
        "command": spec.command,
        "network": network,
        "project": spec.project.as_deref().map(super::compose::project_name),
        "exit_code": output.exit_code,
        "oom_killed": oom_killed,
        "summary": last_line(&output),
    });
    Ok(StageResult { gates, outputs, ..Default::default() })
}

/// Starts the container, streams its output to the log and the progress, and waits for it to exit.
/// Cancelling kills it. Returns what it printed and whether it ran out of memory.
async fn run_container(
    docker: &Docker,
    name: &str,
    stage: &Stage,
    cx: &StageCx<'_>,
    log: &str,
) -> anyhow::Result<(CommandOutput, bool)> {
    let mut log_file = open_log(cx, log)?;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the migration container: {e}"))?;
    let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
    let mut logs = docker.logs(name, Some(options));
    let mut output = CommandOutput::default();
    loop {
        tokio::select! {
            chunk = logs.next() => match chunk {
                Some(Ok(chunk)) => {
                    let (is_err, text) = match &chunk {
                        LogOutput::StdErr { message } => (true, String::from_utf8_lossy(message).into_owned()),
                        other => (false, other.to_string()),
                    };
                    for line in text.lines() {
                        let _ = writeln!(log_file, "{}", redact(line));
                        cx.progress.emit(Event::Output { stage: stage.name(), line });
                    }
                    if is_err { output.stderr.push_str(&text) } else { output.stdout.push_str(&text) }
                }
                // The stream ends when the container stops.
                Some(Err(_)) | None => break,
            },
            () = cx.cancel.cancelled() => {
                let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                let _ = docker.kill_container(name, Some(kill)).await;
                return Ok((output, false));
            }
        }
    }
    let mut wait = docker.wait_container(name, None);
    while wait.next().await.is_some() {}
    let state = docker.inspect_container(name, None).await?.state.unwrap_or_default();
    output.exit_code = state.exit_code.map(|c| c as i32);
    Ok((output, state.oom_killed.unwrap_or(false)))
}

/// The network to join: the one named, or the compose project's `default` network.
async fn network(docker: &Docker, spec: &MigrateStage) -> anyhow::Result<Option<String>> {
    if let Some(network) = &spec.network {
        return Ok(Some(network.clone()));
    }
    let Some(project) = &spec.project else { return Ok(None) };
    let project = super::compose::project_name(project);
    let filters = HashMap::from([("label", vec![format!("com.docker.compose.project={project}")])]);
    let networks = docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await?;
    let default = |n: &&bollard::models::Network| {
        n.labels.as_ref().and_then(|l| l.get("com.docker.compose.network")).is_some_and(|l| l == "default")
    };
    let found = networks.iter().find(default).or(networks.first()).and_then(|n| n.name.clone());
    found.map(Some).ok_or_else(|| {
        anyhow::anyhow!("compose project `{project}` has no network: bring its stack up (a `compose` stage) first")
    })
}

/// Unique per run and stage, so parallel migrate stages and concurrent runs never collide.
fn container_name(run_id: &str, stage: &str) -> String {
    let safe: String = stage.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("xtask-{run_id}-{safe}")
}

/// The migrator's own words: its error output's last lines (they name the failing file and statement),
/// else the last line it printed (its summary).
fn what_it_said(output: &CommandOutput) -> String {
    let lines: Vec<&str> = output.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if output.exit_code != Some(0) && !lines.is_empty() {
        return redact(&lines[lines.len().saturating_sub(FAILURE_LINES)..].join("\n")).into_owned();
    }
    last_line(output)
}

fn last_line(output: &CommandOutput) -> String {
    let text = if output.stderr.trim().is_empty() { &output.stdout } else { &output.stderr };
    redact(text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")).into_owned()
}

fn open_log(cx: &StageCx<'_>, log: &str) -> std::io::Result<std::fs::File> {
    let path = cx.run_dir.join(log);
    std::fs::create_dir_all(path.parent().expect("log paths have a directory"))?;
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_run_and_stage() {
        assert_eq!(container_name("20261125-1-42", "migrate db"), "xtask-20261125-1-42-migrate-db");
    }

    #[test]
    fn a_failure_shows_the_error_lines_and_a_success_its_summary() {
        let failed = CommandOutput {
            exit_code: Some(1),
            stdout: "{\"level\":\"INFO\"}\n".into(),
            stderr: "control-plane migrate: migration 0002_x.sql failed: syntax error\nstatement: SELEC 1\n".into(),
        };
        let said = what_it_said(&failed);
        assert!(said.contains("0002_x.sql") && said.contains("statement: SELEC 1"), "{said}");
        let passed = CommandOutput {
            exit_code: Some(0),
            stdout: "{\"level\":\"INFO\"}\n".into(),
            stderr: "control-plane migrate: 0 applied, database at version 1\n".into(),
        };
        assert_eq!(what_it_said(&passed), "control-plane migrate: 0 applied, database at version 1");
    }
}
