//! `bench`: a load benchmark against the running stack; every threshold is a gate, resource use is
//! sampled through the engine while the load runs, and the figures and plots go into the record.

use std::time::Duration;

use super::{StageCx, StageResult};
use crate::bench::{self, LoadSpec, Model, Stop, WeightedRequest};
use crate::config::{BenchStage, Stage};
use crate::run::progress::Event;
use crate::run::record::{GateRecord, Status};

const SOAK: Duration = Duration::from_secs(60 * 60);

pub async fn run(stage: &Stage, spec: &BenchStage, cx: &StageCx<'_>) -> StageResult {
    match measure(stage, spec, cx).await {
        Ok(result) => result,
        Err(e) => StageResult { status: Some(Status::Failed), reason: Some(format!("{e:#}")), ..Default::default() },
    }
}

async fn measure(stage: &Stage, spec: &BenchStage, cx: &StageCx<'_>) -> anyhow::Result<StageResult> {
    let load = load_spec(spec);
    load.validate()?;
    let containers = sampled_containers(spec).await?;
    let sampler = match containers.is_empty() {
        true => None,
        false => Some(bench::ResourceSampler::start(&containers).await?),
    };
    let result = bench::run(&load, cx.cancel.clone(), |s| {
        let line = format!(
            "{:>4}s {:>8.0} req/s p99 {:.1}ms errors {}",
            s.second + 1,
            s.throughput_per_sec,
            s.p99_ms,
            s.errors
        );
        cx.progress.emit(Event::Output { stage: stage.name(), line: &line });
    })
    .await?;
    let resources = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let interrupted = cx.cancel.is_cancelled();
    let gates = spec
        .thresholds
        .iter()
        .map(|t| {
            let verdict = bench::evaluate(&t.check.0, &result, resources.as_ref());
            let mut gate = GateRecord::judged(
                t.check.0.text.clone(),
                "threshold",
                verdict.passed,
                verdict.expected,
                verdict.actual,
            );
            gate.checklist = t.checklist.clone();
            if interrupted {
                gate.status = Status::Interrupted;
            }
            gate
        })
        .collect();
    let plots = write_plots(stage, &result, cx)?;
    let outputs = serde_json::json!({ "bench": result, "resources": resources, "plots": plots });
    Ok(StageResult { gates, outputs, ..Default::default() })
}

fn load_spec(spec: &BenchStage) -> LoadSpec {
    let model = match spec.rate {
        Some(rate_per_sec) => Model::Open { rate_per_sec, max_connections: spec.max_connections.unwrap_or(1000) },
        None => Model::Closed { connections: spec.connections.unwrap_or(10) },
    };
    let stop = match (spec.soak, spec.requests, spec.duration) {
        (true, _, _) => Stop::Duration(SOAK),
        (false, Some(n), _) => Stop::Requests(n),
        (false, None, d) => Stop::Duration(d.map_or(Duration::from_secs(10), |d| d.0)),
    };
    let scenario = spec
        .scenario
        .iter()
        .map(|r| WeightedRequest {
            weight: r.weight,
            method: r.method.clone(),
            url: r.url.clone(),
            headers: r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: r.body.clone(),
        })
        .collect();
    let timeout = spec.request_timeout.map_or(Duration::from_secs(10), |d| d.0);
    LoadSpec { model, stop, scenario, timeout, insecure_tls: spec.insecure_tls }
}

async fn sampled_containers(spec: &BenchStage) -> anyhow::Result<Vec<String>> {
    let mut containers = spec.containers.clone();
    if let Some(project) = &spec.project {
        let docker = crate::docker::connect().await?;
        let found = crate::docker::project_containers(&docker, project).await?;
        anyhow::ensure!(!found.is_empty(), "compose project `{project}` has no containers to sample");
        containers.extend(found.into_iter().map(|(_, id)| id));
    }
    Ok(containers)
}

/// The SVG plots next to the record, for report.html; their names relative to the run directory.
fn write_plots(stage: &Stage, result: &bench::BenchResult, cx: &StageCx<'_>) -> anyhow::Result<serde_json::Value> {
    let safe: String = stage.name().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let latency = format!("{safe}-latency.svg");
    let throughput = format!("{safe}-throughput.svg");
    std::fs::write(cx.run_dir.join(&latency), bench::latency_svg(result))?;
    std::fs::write(cx.run_dir.join(&throughput), bench::throughput_svg(result))?;
    Ok(serde_json::json!({ "latency": latency, "throughput": throughput }))
}
