//! `compose`: brings a compose project up with the machine's compose tool (`docker compose` v2 or
//! `docker-compose` v1) and waits until every service is healthy, or takes it down.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use super::{StageCx, StageResult, log_path};
use crate::config::{ComposeAction, ComposeStage, Stage};
use crate::run::record::{GateRecord, Status};

const DEFAULT_WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_secs(1);
const LOG_LINES: usize = 15;
/// How long an interrupted compose command gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub async fn run(stage: &Stage, spec: &ComposeStage, cx: &StageCx<'_>) -> StageResult {
    let compose = Compose::new(spec, cx).await;
    let result = match spec.action {
        ComposeAction::Up => up(&compose, spec, cx).await,
        ComposeAction::Down => down(&compose, spec, cx).await,
    };
    let mut result = result.unwrap_or_else(|e| StageResult {
        status: Some(Status::Failed),
        reason: Some(format!("{e:#}")),
        ..Default::default()
    });
    if cx.cancel.is_cancelled() {
        // Whatever `up` started stays for the cleanup stages (`when: always | on_failure`) to take down.
        result.status = Some(Status::Interrupted);
        result.reason = Some("interrupted; the compose command was stopped".into());
    }
    let _ = compose.save_log(&cx.run_dir.join(log_path(stage)));
    result.log = Some(log_path(stage));
    result.outputs = serde_json::json!({ "project": compose.project, "tool": compose.tool.join(" ") });
    result
}

/// One compose project: the tool, the file, the name, the variables, and a log of what it printed.
pub(super) struct Compose {
    tool: Vec<String>,
    file: std::path::PathBuf,
    project: String,
    env: BTreeMap<String, String>,
    log: std::sync::Mutex<Vec<u8>>,
}

impl Compose {
    async fn new(spec: &ComposeStage, cx: &StageCx<'_>) -> Compose {
        Compose {
            tool: detect_tool().await,
            file: cx.base_dir.join(&spec.file),
            project: project_name(&spec.project),
            env: spec.env.clone(),
            log: Default::default(),
        }
    }

    /// A project another stage acts on (a drill scaling a service).
    pub(super) async fn for_project(file: std::path::PathBuf, project: &str, env: BTreeMap<String, String>) -> Compose {
        Compose { tool: detect_tool().await, file, project: project_name(project), env, log: Default::default() }
    }

    /// Runs one compose command; its output goes to the stage log. Cancelling kills it.
    pub(super) async fn run(&self, args: &[&str], cx: &StageCx<'_>) -> anyhow::Result<std::process::Output> {
        let mut command = Command::new(&self.tool[0]);
        command
            .args(&self.tool[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: `docker compose` runs the compose plugin as a child process.
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn()?;
        let group = child.id().map(|id| Pid::from_raw(id as i32));
        let output = child.wait_with_output();
        tokio::pin!(output);
        let output = tokio::select! {
            output = &mut output => output?,
            () = cx.cancel.cancelled() => {
                // Asked to stop, compose finishes the API call in flight rather than leave it half done.
                signal_group(group, Signal::SIGTERM);
                if tokio::time::timeout(STOP_GRACE, &mut output).await.is_err() {
                    signal_group(group, Signal::SIGKILL);
                }
                anyhow::bail!("interrupted")
            }
        };
        signal_group(group, Signal::SIGKILL);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(log, "$ {} {}", self.tool.join(" "), args.join(" "));
        log.extend_from_slice(&output.stdout);
        log.extend_from_slice(&output.stderr);
        Ok(output)
    }

    fn save_log(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("logs have a directory"))?;
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::write(path, crate::redact::redact(&String::from_utf8_lossy(&log)).as_bytes())
    }
}

/// `docker compose` (v2) when the CLI has it, else `docker-compose` (v1).
pub(crate) async fn detect_tool() -> Vec<String> {
    let v2 =
        Command::new("docker").args(["compose", "version"]).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
    if v2.is_ok_and(|s| s.success()) { vec!["docker".into(), "compose".into()] } else { vec!["docker-compose".into()] }
}

/// Compose accepts lowercase letters, digits, `-` and `_`.
pub(crate) fn project_name(raw: &str) -> String {
    raw.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect()
}

async fn up(compose: &Compose, spec: &ComposeStage, cx: &StageCx<'_>) -> anyhow::Result<StageResult> {
    let wait = spec.wait.map_or(DEFAULT_WAIT, |d| d.0);
    let services = match spec.services.is_empty() {
        true => listed_services(compose, cx).await?,
        false => spec.services.clone(),
    };
    let mut args = vec!["up", "-d", "--no-build", "--remove-orphans"];
    if spec.no_deps {
        args.push("--no-deps");
    }
    args.extend(services.iter().map(String::as_str));
    let started = Instant::now();
    // `up` itself may wait for dependencies' health; the stage timeout bounds it.
    let up = compose.run(&args, cx).await?;
    let deadline = Instant::now() + wait;
    let docker = crate::docker::connect().await?;
    let up_error =
        (!up.status.success()).then(|| format!("`up` exited {:?}: {}", up.status.code(), last_lines(&up.stderr, 6)));
    let states = match up_error {
        Some(_) => states(&docker, &compose.project, &services).await?,
        None => wait_until_ready(&docker, &compose.project, &services, deadline, cx).await?,
    };
    let mut gates = Vec::new();
    if let Some(error) = &up_error {
        gates.push(GateRecord::judged("compose up", "compose_up", false, "`up` succeeds", error.clone()));
    }
    for (service, state) in &states {
        let expected = "healthy, or exited 0 for a one-shot service";
        let mut gate = match state {
            State::Ready(how) => {
                GateRecord::judged(format!("service {service}"), "service_health", true, expected, how.clone())
            }
            State::Pending(how) | State::Failed(how) => {
                let logs = match state_container(&docker, &compose.project, service).await {
                    Some(id) => crate::docker::tail_logs(&docker, &id, LOG_LINES).await,
                    None => String::new(),
                };
                let actual = format!("{how}; last log lines:\n{logs}");
                GateRecord::judged(format!("service {service}"), "service_health", false, expected, actual)
            }
        };
        gate.duration_ms = started.elapsed().as_millis() as u64;
        if cx.cancel.is_cancelled() && gate.status == Status::Failed {
            gate.status = Status::Interrupted;
        }
        gates.push(gate);
    }
    Ok(StageResult { gates, ..Default::default() })
}

async fn down(compose: &Compose, spec: &ComposeStage, cx: &StageCx<'_>) -> anyhow::Result<StageResult> {
    let mut args = vec!["down", "--remove-orphans", "--timeout", "10"];
    if spec.volumes {
        args.push("--volumes");
    }
    let out = compose.run(&args, cx).await?;
    let docker = crate::docker::connect().await?;
    let left = crate::docker::project_containers(&docker, &compose.project).await?;
    let passed = out.status.success() && left.is_empty();
    let actual = if passed {
        "project removed".to_string()
    } else if !left.is_empty() {
        format!(
            "{} container(s) left: {}",
            left.len(),
            left.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("`down` exited {:?}: {}", out.status.code(), last_lines(&out.stderr, 6))
    };
    let gate =
        GateRecord::judged("compose down", "compose_down", passed, "no container of the project is left", actual);
    Ok(StageResult { gates: vec![gate], ..Default::default() })
}

async fn listed_services(compose: &Compose, cx: &StageCx<'_>) -> anyhow::Result<Vec<String>> {
    let out = compose.run(&["config", "--services"], cx).await?;
    anyhow::ensure!(out.status.success(), "the compose file is invalid: {}", last_lines(&out.stderr, 6));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

#[derive(Debug, Clone)]
enum State {
    Ready(String),
    Pending(String),
    Failed(String),
}

async fn wait_until_ready(
    docker: &Docker,
    project: &str,
    services: &[String],
    deadline: Instant,
    cx: &StageCx<'_>,
) -> anyhow::Result<Vec<(String, State)>> {
    loop {
        let states = states(docker, project, services).await?;
        let settled = states.iter().all(|(_, s)| !matches!(s, State::Pending(_)));
        if settled || Instant::now() >= deadline || cx.cancel.is_cancelled() {
            return Ok(states);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cx.cancel.cancelled() => {}
        }
    }
}

async fn state_container(docker: &Docker, project: &str, service: &str) -> Option<String> {
    let containers = crate::docker::project_containers(docker, project).await.ok()?;
    containers.into_iter().find(|(s, _)| s == service).map(|(_, id)| id)
}

async fn states(docker: &Docker, project: &str, services: &[String]) -> anyhow::Result<Vec<(String, State)>> {
    let containers = crate::docker::project_containers(docker, project).await?;
    let mut states = Vec::new();
    for service in services {
        let ids: Vec<&String> = containers.iter().filter(|(s, _)| s == service).map(|(_, id)| id).collect();
        let state = match ids.first() {
            None => State::Pending("no container yet".into()),
            Some(id) => container_state(docker, id).await,
        };
        states.push((service.clone(), state));
    }
    Ok(states)
}

async fn container_state(docker: &Docker, id: &str) -> State {
    let Ok(info) = docker.inspect_container(id, None).await else {
        return State::Pending("not inspectable yet".into());
    };
    let Some(state) = info.state else { return State::Pending("no state yet".into()) };
    let health = state.health.and_then(|h| h.status);
    match (state.status, health) {
        (Some(ContainerStateStatusEnum::EXITED), _) if state.exit_code == Some(0) => {
            State::Ready("exited 0 (one-shot)".into())
        }
        (Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD), _) => {
            State::Failed(format!("exited with code {}", state.exit_code.unwrap_or(-1)))
        }
        (Some(ContainerStateStatusEnum::RESTARTING), _) => State::Failed("restarting (it keeps crashing)".into()),
        (Some(ContainerStateStatusEnum::RUNNING), Some(HealthStatusEnum::HEALTHY)) => {
            State::Ready("running, healthy".into())
        }
        (Some(ContainerStateStatusEnum::RUNNING), Some(HealthStatusEnum::UNHEALTHY)) => {
            State::Pending("running, unhealthy".into())
        }
        (Some(ContainerStateStatusEnum::RUNNING), Some(HealthStatusEnum::STARTING)) => {
            State::Pending("running, health starting".into())
        }
        (Some(ContainerStateStatusEnum::RUNNING), _) => State::Ready("running (no healthcheck)".into()),
        (status, _) => {
            State::Pending(format!("{:?}", status.unwrap_or(ContainerStateStatusEnum::EMPTY)).to_lowercase())
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        let _ = killpg(group, signal);
    }
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    crate::redact::redact(&lines[lines.len().saturating_sub(n)..].join("\n")).into_owned()
}
