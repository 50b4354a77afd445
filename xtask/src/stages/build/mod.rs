//! `build`: builds every listed image through the engine API (not the docker CLI), in parallel,
//! tags each by policy, and records ids, tags and durations. A failed build names its failing step.

mod context;
pub mod tags;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use futures::{StreamExt, stream};
use serde::Serialize;

use super::{StageCx, StageResult, log_path};
use crate::config::{BuildStage, ImageSpec, Stage};
use crate::run::progress::Event;
use crate::run::record::{GateRecord, Status};

/// Lines of build output shown when a build fails.
const TAIL_LINES: usize = 12;

#[derive(Debug, Serialize)]
struct Built {
    name: String,
    id: Option<String>,
    tags: Vec<String>,
    duration_ms: u64,
    steps: usize,
    cached_steps: usize,
    #[serde(skip)]
    error: Option<String>,
}

pub async fn run(stage: &Stage, spec: &BuildStage, cx: &StageCx<'_>) -> StageResult {
    let docker = match crate::docker::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            return StageResult { status: Some(Status::Failed), reason: Some(format!("{e:#}")), ..Default::default() };
        }
    };
    let log = log_path(stage);
    let log_file = std::sync::Mutex::new(open_log(cx.run_dir, &log));
    let builds = stream::iter(&spec.images)
        .map(|image| build_one(&docker, image, spec, stage, cx, &log_file))
        .buffered(spec.parallel.max(1))
        .collect::<Vec<_>>()
        .await;
    let gates = builds.iter().map(|b| gate_record(b, cx)).collect();
    let outputs = serde_json::json!({ "images": builds });
    StageResult { gates, outputs, log: Some(log), ..Default::default() }
}

async fn build_one(
    docker: &Docker,
    image: &ImageSpec,
    spec: &BuildStage,
    stage: &Stage,
    cx: &StageCx<'_>,
    log: &std::sync::Mutex<Option<std::fs::File>>,
) -> Built {
    let started = Instant::now();
    let mut built = Built {
        name: image.name.clone(),
        id: None,
        tags: Vec::new(),
        duration_ms: 0,
        steps: 0,
        cached_steps: 0,
        error: None,
    };
    let result = build_and_tag(docker, image, spec, stage, cx, log, &mut built).await;
    built.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = result {
        built.error = Some(format!("{e:#}"));
    }
    built
}

async fn build_and_tag(
    docker: &Docker,
    image: &ImageSpec,
    spec: &BuildStage,
    stage: &Stage,
    cx: &StageCx<'_>,
    log: &std::sync::Mutex<Option<std::fs::File>>,
    built: &mut Built,
) -> anyhow::Result<()> {
    let context_dir = cx.base_dir.join(&image.context);
    let dockerfile = image.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
    let version_from = image.version_from.as_ref().map(|v| cx.base_dir.join(v));
    let tags = tags::tags(&spec.tags, &cx.run.git, version_from.as_deref())?;
    let body = {
        let ignore_text = std::fs::read_to_string(context_dir.join(".dockerignore")).unwrap_or_default();
        let ignore = context::DockerIgnore::parse(&ignore_text)?;
        let files = context::files(&context_dir, &ignore, Path::new(&dockerfile))?;
        context::archive(&context_dir, &files)?
    };
    let first = format!("{}:{}", image.name, tags[0]);
    let args: HashMap<String, String> = image.args.clone().into_iter().collect();
    // Labels tie an image to the run and commit that built it.
    let labels = HashMap::from([
        ("rehearsal.run".to_string(), cx.run.id.clone()),
        ("rehearsal.commit".to_string(), cx.run.git.sha.clone().unwrap_or_default()),
    ]);
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(&dockerfile)
        .t(&first)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&labels);
    if let Some(target) = &image.target {
        options = options.target(target);
    }
    if let Some(network) = &spec.network {
        options = options.networkmode(network);
    }
    let mut output = docker.build_image(options.build(), None, Some(bollard::body_full(body.into())));
    let mut tail: Vec<String> = Vec::new();
    let mut last_step = String::new();
    loop {
        let item = tokio::select! {
            item = output.next() => item,
            () = cx.cancel.cancelled() => anyhow::bail!("interrupted"),
        };
        let Some(item) = item else { break };
        let info = item.map_err(|e| failure(&last_step, &tail, &e.to_string()))?;
        if let Some(text) = &info.stream {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                record_line(&image.name, line, stage, cx, log, &mut tail);
                if line.starts_with("Step ") {
                    built.steps += 1;
                    last_step = line.to_string();
                }
                if line.contains("Using cache") {
                    built.cached_steps += 1;
                }
            }
        }
        if let Some(detail) = info.error_detail {
            anyhow::bail!(failure(&last_step, &tail, detail.message.as_deref().unwrap_or("build failed")));
        }
        if let Some(aux) = info.aux {
            built.id = aux.id;
        }
    }
    let id = built.id.clone().ok_or_else(|| failure(&last_step, &tail, "the engine reported no image id"))?;
    for tag in &tags[1..] {
        let options = TagImageOptionsBuilder::default().repo(&image.name).tag(tag).build();
        docker.tag_image(&id, Some(options)).await?;
    }
    built.tags = tags.iter().map(|t| format!("{}:{t}", image.name)).collect();
    if let Some(registry) = &spec.push {
        push(docker, &built.tags, registry).await?;
    }
    Ok(())
}

fn failure(step: &str, tail: &[String], message: &str) -> anyhow::Error {
    let step = if step.is_empty() { "before the first step".to_string() } else { step.to_string() };
    anyhow::anyhow!("failed at {step}: {}\n{}", message.trim(), tail.join("\n"))
}

fn record_line(
    image: &str,
    line: &str,
    stage: &Stage,
    cx: &StageCx<'_>,
    log: &std::sync::Mutex<Option<std::fs::File>>,
    tail: &mut Vec<String>,
) {
    let line = format!("[{image}] {line}");
    if let Some(file) = log.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = writeln!(file, "{}", crate::redact::redact(&line));
    }
    cx.progress.emit(Event::Output { stage: stage.name(), line: &line });
    tail.push(line);
    if tail.len() > TAIL_LINES {
        tail.remove(0);
    }
}

/// Pushes each tag to `registry`, with credentials from REGISTRY_USERNAME / REGISTRY_PASSWORD.
async fn push(docker: &Docker, tags: &[String], registry: &str) -> anyhow::Result<()> {
    let credentials = bollard::auth::DockerCredentials {
        username: std::env::var("REGISTRY_USERNAME").ok(),
        password: std::env::var("REGISTRY_PASSWORD").ok(),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    };
    for tag in tags {
        let (repo, version) = tag.rsplit_once(':').expect("tags are name:tag");
        let remote = format!("{registry}/{repo}");
        docker.tag_image(tag, Some(TagImageOptionsBuilder::default().repo(&remote).tag(version).build())).await?;
        let options = bollard::query_parameters::PushImageOptionsBuilder::default().tag(version).build();
        let mut progress = docker.push_image(&remote, Some(options), Some(credentials.clone()));
        while let Some(item) = progress.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                anyhow::bail!("push of {remote}:{version} failed: {}", detail.message.unwrap_or_default());
            }
        }
    }
    Ok(())
}

fn gate_record(built: &Built, cx: &StageCx<'_>) -> GateRecord {
    let status = match &built.error {
        None => Status::Passed,
        Some(e) if e == "interrupted" || cx.cancel.is_cancelled() => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    let actual = match &built.error {
        None => format!(
            "built {} in {:.1}s ({}/{} steps cached)",
            built.tags.join(", "),
            built.duration_ms as f64 / 1000.0,
            built.cached_steps,
            built.steps
        ),
        Some(e) => e.clone(),
    };
    GateRecord {
        name: format!("image {}", built.name),
        kind: "image_build".into(),
        target: built.name.clone(),
        checklist: vec![],
        status,
        expected: "the image builds and is tagged".into(),
        actual,
        attempts: 1,
        duration_ms: built.duration_ms,
        transcript: None,
    }
}

fn open_log(run_dir: &Path, log: &str) -> Option<std::fs::File> {
    let path = run_dir.join(log);
    std::fs::create_dir_all(path.parent()?).ok()?;
    std::fs::File::create(path).ok()
}
