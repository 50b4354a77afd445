//! `container`: a container is running, healthy, rarely restarted, and within its memory and CPU bounds.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerStatsResponse, HealthStatusEnum};
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use futures::StreamExt;

use super::Check;
use crate::config::{Bytes, ContainerGate, GateSpec, Selector};

pub async fn check(gate: &ContainerGate) -> Check {
    let expected = GateSpec::Container(gate.clone()).target();
    let verdict = async {
        let docker = crate::docker::connect().await.map_err(|e| e.to_string())?;
        let id = find(&docker, &gate.selector()).await?;
        problems(&docker, &id, gate).await
    };
    match verdict.await {
        Ok(problems) if problems.is_empty() => Check::new(true, expected, "as expected"),
        Ok(problems) => Check::new(false, expected, problems.join("; ")),
        Err(e) => Check::new(false, expected, e),
    }
}

/// The id of the one container the selector names (stopped ones included: `running` judges those).
pub(super) async fn find(docker: &Docker, selector: &Selector) -> Result<String, String> {
    let filters: HashMap<String, Vec<String>> = match selector {
        Selector::Name(name) => {
            return match docker.inspect_container(name, None).await {
                Ok(found) => Ok(found.id.unwrap_or_else(|| name.clone())),
                Err(e) => Err(format!("no container named {name}: {e}")),
            };
        }
        Selector::Compose { project, service } => HashMap::from([(
            "label".to_string(),
            vec![format!("com.docker.compose.project={project}"), format!("com.docker.compose.service={service}")],
        )]),
    };
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let found = docker.list_containers(Some(options)).await.map_err(|e| format!("listing containers: {e}"))?;
    match found.as_slice() {
        [] => Err(format!("no container for {selector}")),
        [one] => one.id.clone().ok_or_else(|| "the engine listed a container without an id".into()),
        many => Err(format!("{} containers for {selector}; a gate judges one (scale the service to 1)", many.len())),
    }
}

async fn problems(docker: &Docker, id: &str, gate: &ContainerGate) -> Result<Vec<String>, String> {
    let inspect = docker.inspect_container(id, None).await.map_err(|e| format!("inspecting {id}: {e}"))?;
    let state = inspect.state.unwrap_or_default();
    let mut problems = Vec::new();
    let running = state.running.unwrap_or(false);
    if let Some(want) = gate.running
        && want != running
    {
        let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
        problems.push(format!("status {status} (exit code {})", state.exit_code.unwrap_or(0)));
    }
    if let Some(want) = gate.healthy {
        let health = state.health.and_then(|h| h.status);
        let healthy = health == Some(HealthStatusEnum::HEALTHY);
        if want != healthy {
            let shown = match health {
                None | Some(HealthStatusEnum::EMPTY) | Some(HealthStatusEnum::NONE) => "no healthcheck".to_string(),
                Some(h) => h.to_string(),
            };
            problems.push(format!("health {shown}"));
        }
    }
    let restarts = inspect.restart_count.unwrap_or(0);
    if gate.max_restarts.is_some_and(|max| restarts > max) {
        problems.push(format!("{restarts} restarts"));
    }
    if gate.max_memory.is_some() || gate.max_cpu_percent.is_some() {
        if !running {
            problems.push("not running, so no resource use to measure".into());
            return Ok(problems);
        }
        let stats = sample(docker, id).await?;
        if let (Some(max), Some(used)) = (gate.max_memory, memory_used(&stats)) {
            if used > max.0 {
                problems.push(format!("memory {} above {max}", Bytes(used)));
            }
        }
        if let (Some(max), Some(cpu)) = (gate.max_cpu_percent, cpu_percent(&stats)) {
            if cpu > max {
                problems.push(format!("cpu {cpu:.1}% above {max}%"));
            }
        }
    }
    Ok(problems)
}

/// One stats sample; without `one_shot` the engine waits a cycle so the CPU delta is filled.
async fn sample(docker: &Docker, id: &str) -> Result<ContainerStatsResponse, String> {
    let options = StatsOptions { stream: false, one_shot: false };
    match docker.stats(id, Some(options)).next().await {
        Some(Ok(stats)) => Ok(stats),
        Some(Err(e)) => Err(format!("reading stats: {e}")),
        None => Err("the engine sent no stats".into()),
    }
}

/// Usage without the reclaimable page cache, as `docker stats` shows it.
fn memory_used(stats: &ContainerStatsResponse) -> Option<u64> {
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let cache = memory.stats.as_ref().and_then(|s| s.get("total_inactive_file").or_else(|| s.get("inactive_file")));
    Some(usage.saturating_sub(cache.copied().unwrap_or(0)))
}

/// CPU over the sample interval, 100 = one core, as `docker stats` computes it.
fn cpu_percent(stats: &ContainerStatsResponse) -> Option<f64> {
    let (now, before) = (stats.cpu_stats.as_ref()?, stats.precpu_stats.as_ref()?);
    let used = now.cpu_usage.as_ref()?.total_usage? as f64 - before.cpu_usage.as_ref()?.total_usage? as f64;
    let system = now.system_cpu_usage? as f64 - before.system_cpu_usage.unwrap_or(0) as f64;
    let cpus = now
        .online_cpus
        .map(f64::from)
        .or_else(|| now.cpu_usage.as_ref().and_then(|u| u.percpu_usage.as_ref()).map(|p| p.len() as f64))?;
    (system > 0.0 && used >= 0.0).then(|| used / system * cpus * 100.0)
}
