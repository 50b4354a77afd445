//! The `scale` fault: the service scaled out behind its load balancer, a write read back through every
//! replica (no state lives in one), and one new replica killed while traffic flows (few or no failures).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::docker_ops;
use super::faults::Drill;
use crate::bench::{self, LoadSpec, Model, Stop, WeightedRequest};
use crate::config::{Fault, FaultAction, FaultLoad, StatelessCheck};
use crate::run::record::GateRecord;

const DEFAULT_REPLICAS: u32 = 3;
const READS_WITHIN: Duration = Duration::from_secs(20);

pub(super) async fn run(drill: &Drill<'_>, fault: &Fault, gates: &mut Vec<GateRecord>) -> anyhow::Result<()> {
    let replicas = fault.replicas.unwrap_or(DEFAULT_REPLICAS) as usize;
    let service = fault.service.as_str();
    let before = docker_ops::service_containers(&drill.docker, &drill.project, service).await?;
    scale_to(drill, service, replicas).await?;
    let started = Instant::now();
    let up = docker_ops::wait_up(
        &drill.docker,
        &drill.project,
        service,
        replicas,
        started + fault.recover_within.0,
        &drill.cx.cancel,
    )
    .await;
    let actual = match &up {
        Ok(()) => format!("{replicas} up after {:.1}s", started.elapsed().as_secs_f64()),
        Err(why) => why.clone(),
    };
    gates.push(gate(
        fault,
        "scaled out",
        "fault_scale",
        up.is_ok(),
        format!("{replicas} replicas of `{service}` up within {}", fault.recover_within),
        actual,
    ));
    if up.is_err() {
        return Ok(());
    }
    if let Some(check) = &fault.stateless {
        let (passed, actual) = stateless(check, replicas).await;
        let expected = format!("a write through the balancer read back through all {replicas} replicas");
        gates.push(gate(fault, "stateless across replicas", "fault_stateless", passed, expected, actual));
    }
    if let Some(load) = &fault.load {
        let after = docker_ops::service_containers(&drill.docker, &drill.project, service).await?;
        let victim = after.iter().find(|id| !before.contains(id)).cloned().unwrap_or_else(|| after[0].clone());
        let (passed, actual) = kill_under_load(drill, load, &victim).await;
        let expected = format!("at most {} failed request(s) while a replica is killed", load.max_failed);
        gates.push(gate(fault, "replica killed under load", "fault_load", passed, expected, actual));
    }
    Ok(())
}

fn gate(fault: &Fault, what: &str, kind: &str, passed: bool, expected: String, actual: String) -> GateRecord {
    let mut gate = GateRecord::judged(format!("{}: {what}", fault.name), kind, passed, expected, actual);
    gate.checklist = fault.checklist.clone();
    gate
}

async fn scale_to(drill: &Drill<'_>, service: &str, replicas: usize) -> anyhow::Result<()> {
    let file = drill.spec.file.as_deref().ok_or_else(|| anyhow::anyhow!("a scale fault needs the drill's `file:`"))?;
    let compose = crate::stages::compose::Compose::for_project(
        drill.cx.base_dir.join(file),
        &drill.project,
        drill.spec.env.clone(),
    )
    .await;
    let scale = format!("{service}={replicas}");
    let output = compose.run(&["up", "-d", "--no-deps", "--no-recreate", "--scale", &scale, service], drill.cx).await?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        anyhow::bail!("compose could not scale `{service}` to {replicas}: {}", tail.join(" | "));
    }
    Ok(())
}

/// Writes once, then reads until every replica has answered a read (each read must succeed).
async fn stateless(check: &StatelessCheck, replicas: usize) -> (bool, String) {
    match read_back(check, replicas).await {
        Ok((writer, seen, reads)) => {
            let names: Vec<&str> = seen.iter().map(String::as_str).collect();
            let passed = seen.len() >= replicas;
            let actual = format!(
                "written via {writer}; {reads} read(s) answered by {} replica(s): {}",
                seen.len(),
                names.join(", ")
            );
            (passed, actual)
        }
        Err(e) => (false, format!("{e:#}")),
    }
}

async fn read_back(check: &StatelessCheck, replicas: usize) -> anyhow::Result<(String, BTreeSet<String>, usize)> {
    let header = check.instance_header.as_deref().unwrap_or("x-instance");
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &check.headers {
        headers.insert(reqwest::header::HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).default_headers(headers).build()?;
    let instance =
        |r: &reqwest::Response| r.headers().get(header).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
    let written = client.post(&check.write_url).json(&check.write_json).send().await?;
    let writer = instance(&written);
    anyhow::ensure!(written.status().is_success(), "the write answered {} (via {writer})", written.status());
    let body: Value = written.json().await?;
    let path = check.id_path.as_ref().map_or("$.id", |p| p.0.as_str());
    let id = serde_json_path::JsonPath::parse(path)?
        .query(&body)
        .exactly_one()
        .map_err(|_| anyhow::anyhow!("the write's answer has no single value at {path}"))?
        .clone();
    let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
    let url = check.read_url.replace("{id}", &id);
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    let mut reads = 0;
    while seen.len() < replicas && started.elapsed() < READS_WITHIN {
        let read = client.get(&url).send().await?;
        reads += 1;
        let by = instance(&read);
        anyhow::ensure!(
            read.status().is_success(),
            "read {reads} of id {id} answered {} (via {by}), written via {writer}",
            read.status()
        );
        seen.insert(by);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((writer, seen, reads))
}

/// Open-model traffic; a third of the way in, one replica is killed.
async fn kill_under_load(drill: &Drill<'_>, load: &FaultLoad, victim: &str) -> (bool, String) {
    let duration = load.duration.map_or(Duration::from_secs(10), |d| d.0);
    let spec = LoadSpec {
        model: Model::Open { rate_per_sec: load.rate.unwrap_or(50.0), max_connections: 200 },
        stop: Stop::Duration(duration),
        scenario: vec![WeightedRequest {
            weight: 1,
            method: load.method.clone(),
            url: load.url.clone(),
            headers: load.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: load.body.clone(),
        }],
        timeout: Duration::from_secs(5),
        insecure_tls: false,
    };
    let kill = async {
        tokio::time::sleep(duration / 3).await;
        drill.say(&format!("killing replica {} under load", &victim[..victim.len().min(12)]));
        docker_ops::inject(&drill.docker, FaultAction::Kill, victim).await
    };
    let (result, killed) = tokio::join!(bench::run(&spec, drill.cx.cancel.clone(), |_| {}), kill);
    let result = match result {
        Ok(result) => result,
        Err(e) => return (false, format!("the load did not run: {e:#}")),
    };
    if let Err(e) = killed {
        return (false, format!("killing the replica failed: {e:#}"));
    }
    let failed = result.errors.total();
    let e = &result.errors;
    let actual = format!(
        "{failed} of {} request(s) failed (5xx {}, 4xx {}, timeout {}, connect {}, other {}); p99 {:.1}ms",
        result.requests, e.status_5xx, e.status_4xx, e.timeout, e.connect, e.other, result.latency.p99_ms
    );
    (result.completed > 0 && failed <= load.max_failed, actual)
}
