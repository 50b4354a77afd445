//! What the fault drill does to containers through the engine: find a service's containers, inject a
//! fault, read restart counts, and wait until a service is back (running, and healthy if it has a check).

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerState, HealthStatusEnum};
use bollard::query_parameters::StopContainerOptionsBuilder;
use tokio_util::sync::CancellationToken;

use crate::config::FaultAction;

const POLL: Duration = Duration::from_millis(250);

/// The ids of a compose service's containers.
pub async fn service_containers(docker: &Docker, project: &str, service: &str) -> anyhow::Result<Vec<String>> {
    let all = crate::docker::project_containers(docker, project).await?;
    Ok(all.into_iter().filter(|(s, _)| s == service).map(|(_, id)| id).collect())
}

/// The first running container of the service: the one a fault hits.
pub async fn running_container(docker: &Docker, project: &str, service: &str) -> anyhow::Result<String> {
    for id in service_containers(docker, project, service).await? {
        if state(docker, &id).await.is_ok_and(|s| s.running.unwrap_or(false) && !s.paused.unwrap_or(false)) {
            return Ok(id);
        }
    }
    anyhow::bail!("compose project `{project}` has no running container of service `{service}`")
}

pub async fn inject(docker: &Docker, action: FaultAction, container: &str) -> anyhow::Result<()> {
    match action {
        FaultAction::Kill => crash(docker, container).await?,
        FaultAction::Stop => {
            docker.stop_container(container, Some(StopContainerOptionsBuilder::default().t(10).build())).await?
        }
        FaultAction::Pause => docker.pause_container(container).await?,
        FaultAction::Scale => anyhow::bail!("scale is injected through compose"),
    }
    Ok(())
}

/// SIGKILLs the container's main process from the host, as the OOM killer or a crash would. (`docker kill`
/// counts as a manual stop, which the restart policy leaves alone.) Returns once the engine saw it die.
async fn crash(docker: &Docker, container: &str) -> anyhow::Result<()> {
    let before = docker.inspect_container(container, None).await?;
    let state = before.state.unwrap_or_default();
    let pid = state.pid.filter(|p| *p > 0).ok_or_else(|| anyhow::anyhow!("container {container} has no process"))?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).map_err(|e| {
        anyhow::anyhow!("cannot SIGKILL the container's process {pid} (run as root, beside the engine): {e}")
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = docker.inspect_container(container, None).await?;
        let restarted = now.restart_count != before.restart_count;
        let now = now.state.unwrap_or_default();
        if restarted || !now.running.unwrap_or(false) || now.started_at != state.started_at {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "container {container} still runs 10s after SIGKILL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Restarts the engine made of the service's containers (its restart policy at work).
pub async fn restart_count(docker: &Docker, project: &str, service: &str) -> anyhow::Result<i64> {
    let mut total = 0;
    for id in service_containers(docker, project, service).await? {
        let inspect = docker.inspect_container(&id, None).await?;
        total += inspect.restart_count.unwrap_or(0);
    }
    Ok(total)
}

async fn state(docker: &Docker, id: &str) -> anyhow::Result<ContainerState> {
    Ok(docker.inspect_container(id, None).await?.state.unwrap_or_default())
}

/// Why a container is not serving yet, or `None` when it is running (and healthy, if it has a check).
pub async fn not_up(docker: &Docker, id: &str) -> Option<String> {
    let state = match state(docker, id).await {
        Ok(state) => state,
        Err(e) => return Some(format!("cannot inspect: {e}")),
    };
    let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
    if !state.running.unwrap_or(false) || state.paused.unwrap_or(false) {
        return Some(status);
    }
    match state.health.and_then(|h| h.status) {
        None | Some(HealthStatusEnum::HEALTHY) | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => None,
        Some(other) => Some(format!("running, {other}")),
    }
}

/// Waits until `count` containers of the service are up, or the deadline; `Err` says what is not up.
pub async fn wait_up(
    docker: &Docker,
    project: &str,
    service: &str,
    count: usize,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), String> {
    loop {
        let ids = service_containers(docker, project, service).await.map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut up = 0;
        for id in &ids {
            match not_up(docker, id).await {
                None => up += 1,
                Some(why) => problems.push(format!("{}: {why}", &id[..id.len().min(12)])),
            }
        }
        if up >= count && problems.is_empty() {
            return Ok(());
        }
        if Instant::now() + POLL > deadline {
            let mut why = format!("{up} of {count} container(s) of `{service}` up");
            if !problems.is_empty() {
                why = format!("{why} ({})", problems.join("; "));
            }
            return Err(why);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => return Err("interrupted".into()),
        }
    }
}
