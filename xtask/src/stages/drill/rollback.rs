//! The rollback drill: release N serves; N+1 (image N with later migrations baked in) is deployed with its
//! migrations and written to; the application goes back to N. N must serve again (its version shown),
//! read what N+1 wrote, and no fingerprint may show lost data. Unsafe schema changes are refused first.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::process::Command;

use super::fingerprint::{self, Expect};
use super::{http, safety};
use crate::config::{RollbackDrill, Stage};
use crate::run::progress::Event;
use crate::run::record::GateRecord;
use crate::stages::{StageCx, StageResult, log_path};

const DEFAULT_WAIT: Duration = Duration::from_secs(180);
const DEFAULT_RESTORE: Duration = Duration::from_secs(120);

/// What the drill learnt, kept for the record whether it passed or not.
struct Drill<'a> {
    spec: &'a RollbackDrill,
    stage: &'a Stage,
    cx: &'a StageCx<'a>,
    client: reqwest::Client,
    base: String,
    gates: Vec<GateRecord>,
    outputs: serde_json::Map<String, Value>,
    log: Vec<u8>,
}

pub async fn run(stage: &Stage, spec: &RollbackDrill, cx: &StageCx<'_>) -> anyhow::Result<StageResult> {
    let mut drill = Drill {
        spec,
        stage,
        cx,
        client: http::client()?,
        base: spec.url.trim_end_matches('/').to_string(),
        gates: Vec::new(),
        outputs: serde_json::Map::new(),
        log: Vec::new(),
    };
    drill.outputs.insert("type".into(), json!("rollback"));
    let outcome = drill.run().await;
    let log = log_path(stage);
    let path = cx.run_dir.join(&log);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, crate::redact::redact(&String::from_utf8_lossy(&drill.log)).as_bytes())?;
    let reason = outcome.err().map(|e| crate::redact::redact(&format!("{e:#}")).into_owned());
    let status = reason.as_ref().map(|_| {
        if cx.cancel.is_cancelled() {
            crate::run::record::Status::Interrupted
        } else {
            crate::run::record::Status::Failed
        }
    });
    Ok(StageResult {
        status,
        reason,
        gates: drill.gates,
        outputs: json!({ "drill": "rollback", "rollback": Value::Object(drill.outputs) }),
        log: Some(log),
    })
}

impl Drill<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.log, "{line}");
        self.cx.progress.emit(Event::Output { stage: self.stage.name(), line });
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let (n_version, n_schema, applied) = self.current_release().await?;
        self.outputs.insert("from_version".into(), json!(n_version));
        self.outputs.insert("to_version".into(), json!(self.spec.next.version));
        self.say(&format!("release N: version {n_version}, schema {n_schema}, database at {applied:?}"));

        let files = read_migrations(&self.cx.base_dir.join(&self.spec.next.migrations))?;
        let verdicts = self.judge_schema(&files, n_schema, &applied);
        let refused: Vec<String> =
            verdicts.iter().flat_map(|v| v.reasons.iter().map(|r| format!("{}: {r}", v.file))).collect();
        if !refused.is_empty() {
            anyhow::bail!("rollback refused before changing anything: {}", refused.join("; "));
        }

        let canaries = self.write(self.spec.canary.count, "canary").await?;
        let before = fingerprint::take(&self.spec.fingerprints, None, None).await?;
        self.outputs.insert("fingerprints".into(), json!({ "before": before }));

        let image = self.build_next(&files).await?;
        self.outputs.insert("next_image".into(), json!(image));
        // From here the stack runs N+1: whatever happens next, N is put back.
        let written = self.deploy_next_and_write(&verdicts, n_schema).await;
        let restored = self.roll_back(&n_version).await;
        if restored.is_ok() {
            // Nothing runs N+1 any more (its migrations ran with `run --rm`): leave no image behind.
            let docker = crate::docker::connect().await?;
            let _ = docker.remove_image(&image, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        }
        let written = written?;
        restored?;

        self.check_reads(&canaries, &written).await;
        let after = fingerprint::take(&self.spec.fingerprints, None, Some(&before)).await?;
        self.gates.extend(fingerprint::compare(&before, &after, Expect::Retained));
        self.outputs.insert("fingerprints".into(), json!({ "before": before, "after": after }));
        Ok(())
    }

    /// N's version, the schema it expects, and the versions the database has applied.
    async fn current_release(&mut self) -> anyhow::Result<(String, i64, Vec<i64>)> {
        let url = format!("{}/version", self.base);
        let (status, body) = http::get(&self.client, &url).await?;
        anyhow::ensure!(status == 200, "release N is not serving: GET {url} answered {status}");
        let version = body.get("version").and_then(Value::as_str).unwrap_or_default().to_string();
        let schema = &body["schema_version"];
        let embedded = schema["embedded"].as_i64();
        let Some(embedded) = embedded else { anyhow::bail!("GET {url} shows no schema_version.embedded: {body}") };
        let applied =
            schema["applied"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
        Ok((version, embedded, applied))
    }

    /// One gate: every migration N+1 brings, and every one the database has beyond N's, is safe for N.
    fn judge_schema(&mut self, files: &[(String, String)], n_schema: i64, applied: &[i64]) -> Vec<safety::Verdict> {
        let mut verdicts: Vec<safety::Verdict> = Vec::new();
        for (file, sql) in files {
            let mut verdict = safety::analyse(file, sql);
            if verdict.version <= n_schema {
                verdict.safe = false;
                verdict.reasons.push(format!(
                    "its version {} is not above release N's schema {n_schema} (N+1's migrations come after N's)",
                    verdict.version
                ));
            }
            verdicts.push(verdict);
        }
        let unknown: Vec<i64> =
            applied.iter().copied().filter(|v| *v > n_schema && !verdicts.iter().any(|m| m.version == *v)).collect();
        for version in unknown {
            verdicts.push(safety::Verdict {
                file: format!("database migration {version}"),
                version,
                safe: false,
                reasons: vec![
                    "applied in the database, but neither release N nor N+1 has it, so it cannot be judged".into(),
                ],
                declared: None,
            });
        }
        let unsafe_ones: Vec<String> =
            verdicts.iter().filter(|v| !v.safe).map(|v| format!("{}: {}", v.file, v.reasons.join("; "))).collect();
        let expected = format!("every migration beyond release N's schema {n_schema} keeps N working");
        let actual = if unsafe_ones.is_empty() {
            let names: Vec<&str> = verdicts.iter().map(|v| v.file.as_str()).collect();
            format!(
                "{} migration(s) safe: {}",
                verdicts.len(),
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )
        } else {
            format!("unsafe for a rollback: {}", unsafe_ones.join(" | "))
        };
        self.gates.push(GateRecord::judged(
            "rollback is safe for the schema",
            "rollback_safety",
            unsafe_ones.is_empty(),
            expected,
            actual,
        ));
        self.outputs.insert("migrations".into(), json!(verdicts));
        verdicts
    }

    /// Writes `count` records through the API; their ids.
    async fn write(&mut self, count: u32, what: &str) -> anyhow::Result<Vec<String>> {
        let canary = &self.spec.canary;
        let mut ids = Vec::new();
        for n in 0..count {
            let body = canary.body.replace("{{n}}", &n.to_string()).replace("{{run}}", &self.cx.run.id);
            let (status, answer) = http::post(&self.client, &canary.write, body, &canary.headers).await?;
            anyhow::ensure!(
                (200..300).contains(&status),
                "{what} write {n} to {} answered {status}: {answer}",
                canary.write
            );
            let id = match &answer[&canary.id_field] {
                Value::String(s) => s.clone(),
                Value::Null => anyhow::bail!("{what} write answered without `{}`: {answer}", canary.id_field),
                other => other.to_string(),
            };
            ids.push(id);
        }
        self.say(&format!("{count} {what} write(s) stored"));
        Ok(ids)
    }

    /// Image N plus the migrations directory, told to apply it and to show N+1's version.
    async fn build_next(&mut self, files: &[(String, String)]) -> anyhow::Result<String> {
        let next = &self.spec.next;
        let dockerfile = format!(
            "FROM {}\nCOPY migrations/ {}/\nENV MIGRATIONS_DIR={} APP_VERSION={}\n",
            self.spec.image, next.migrations_dir, next.migrations_dir, next.version
        );
        let mut archive = tar::Builder::new(Vec::new());
        append(&mut archive, "Dockerfile", dockerfile.as_bytes())?;
        for (file, sql) in files {
            append(&mut archive, &format!("migrations/{file}"), sql.as_bytes())?;
        }
        let body = archive.into_inner()?;
        let labels = std::collections::HashMap::from([("rehearsal.run".to_string(), self.cx.run.id.clone())]);
        let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .t(&next.image)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        let docker = crate::docker::connect().await?;
        let mut stream = docker.build_image(options, None, Some(bollard::body_full(body.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| anyhow::anyhow!("building {}: {e}", next.image))?;
            if let Some(detail) = info.error_detail {
                anyhow::bail!("building {}: {}", next.image, detail.message.unwrap_or_default());
            }
            if let Some(text) = info.stream {
                let _ = write!(self.log, "{text}");
            }
        }
        self.say(&format!("built N+1 as {} from {} with {} migration(s)", next.image, self.spec.image, files.len()));
        Ok(next.image.clone())
    }

    /// Runs N+1's migrations, serves N+1, writes through it; the ids it wrote.
    async fn deploy_next_and_write(
        &mut self,
        verdicts: &[safety::Verdict],
        n_schema: i64,
    ) -> anyhow::Result<Vec<String>> {
        let mut env = self.spec.env.clone();
        env.extend(self.spec.next.env.clone());
        let started = Instant::now();
        if let Some(migrate) = self.spec.migrate.clone() {
            let out = self.compose(&env, &["run", "--rm", "--no-deps", "-T", &migrate]).await?;
            let passed = out.status.success();
            let actual = if passed {
                "exited 0".to_string()
            } else {
                format!("exited {:?}: {}", out.status.code(), tail(&out.stderr))
            };
            self.gates.push(GateRecord::judged(
                format!("N+1 migrations ({migrate})"),
                "rollback_deploy",
                passed,
                "exit 0",
                actual,
            ));
            anyhow::ensure!(passed, "N+1's migrations failed");
        }
        let service = self.spec.service.clone();
        self.compose(&env, &["up", "-d", "--no-deps", "--no-build", "--force-recreate", &service]).await?;
        let deadline = Instant::now() + self.spec.wait.map_or(DEFAULT_WAIT, |d| d.0);
        let serving =
            http::wait_serving(&self.client, &self.base, &self.spec.next.version, deadline, &self.cx.cancel).await;
        let expected = format!("N+1 serves version {}", self.spec.next.version);
        let actual = match &serving {
            Ok(_) => format!("serving after {:.1}s", started.elapsed().as_secs_f64()),
            Err(e) => e.clone(),
        };
        self.gates.push(GateRecord::judged("N+1 deployed", "rollback_deploy", serving.is_ok(), expected, actual));
        serving.map_err(|e| anyhow::anyhow!("N+1 did not serve: {e}"))?;
        self.outputs.insert("deploy_next_ms".into(), json!(started.elapsed().as_millis() as u64));

        let (_, schema, applied) = self.current_release().await?;
        self.say(&format!("N+1 serving: schema {schema}, database at {applied:?}"));
        // An image whose binary ignores MIGRATIONS_DIR would serve N+1's version without its schema.
        let wanted = verdicts.iter().map(|v| v.version).max().unwrap_or(n_schema);
        let migrated = schema == wanted && applied.contains(&wanted);
        let expected = format!("N+1 expects and the database has schema {wanted}");
        let actual = format!("N+1 expects schema {schema}; the database has {applied:?}");
        self.gates.push(GateRecord::judged("N+1 schema applied", "rollback_deploy", migrated, expected, actual));
        anyhow::ensure!(migrated, "N+1 did not apply its migrations (does its binary read MIGRATIONS_DIR?)");
        let surprise: Vec<i64> = applied
            .iter()
            .copied()
            .filter(|v| *v > n_schema && !verdicts.iter().any(|m| m.version == *v && m.safe))
            .collect();
        anyhow::ensure!(surprise.is_empty(), "the database now has migrations not judged safe: {surprise:?}");
        self.write(self.spec.traffic, "N+1").await
    }

    /// Serves N again; time-to-restore runs from the first command to N answering with its version, ready.
    async fn roll_back(&mut self, n_version: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let env = self.spec.env.clone();
        let service = self.spec.service.clone();
        // A cancelled drill still puts N back: this is the undo, so it does not listen to `cancel`.
        let out = self
            .compose_uncancelled(&env, &["up", "-d", "--no-deps", "--no-build", "--force-recreate", &service])
            .await?;
        anyhow::ensure!(out.status.success(), "rolling back failed: {}", tail(&out.stderr));
        let deadline = Instant::now() + self.spec.wait.map_or(DEFAULT_WAIT, |d| d.0);
        let never = tokio_util::sync::CancellationToken::new();
        let serving = http::wait_serving(&self.client, &self.base, n_version, deadline, &never).await;
        let restore = started.elapsed();
        let budget = self.spec.restore_within.map_or(DEFAULT_RESTORE, |d| d.0);
        self.outputs.insert("time_to_restore_ms".into(), json!(restore.as_millis() as u64));
        let expected =
            format!("N (version {n_version}) healthy and serving within {}", humantime::format_duration(budget));
        let actual = match &serving {
            Ok(_) => format!("serving after {:.1}s", restore.as_secs_f64()),
            Err(e) => format!("{e} after {:.1}s", restore.as_secs_f64()),
        };
        let passed = serving.is_ok() && restore <= budget;
        let mut gate = GateRecord::judged("N restored", "time_to_restore", passed, expected, actual);
        gate.duration_ms = restore.as_millis() as u64;
        self.gates.push(gate);
        self.say(&format!("rolled back to {n_version} in {:.1}s", restore.as_secs_f64()));
        Ok(())
    }

    /// N reads every canary and every record N+1 wrote.
    async fn check_reads(&mut self, canaries: &[String], written: &[String]) {
        for (what, ids) in [("canaries written by N", canaries), ("records written by N+1", written)] {
            let mut missing = Vec::new();
            for id in ids {
                let url = self.spec.canary.read.replace("{id}", id);
                match http::get(&self.client, &url).await {
                    Ok((200, _)) => {}
                    Ok((status, _)) => missing.push(format!("{id} ({status})")),
                    Err(e) => missing.push(format!("{id} ({e:#})")),
                }
            }
            let actual = if missing.is_empty() {
                format!("all {} read", ids.len())
            } else {
                format!("{} of {} not read: {}", missing.len(), ids.len(), missing.join(", "))
            };
            let passed = missing.is_empty() && !ids.is_empty();
            self.gates.push(GateRecord::judged(
                format!("N reads {what}"),
                "rollback_reads",
                passed,
                format!("each of {} answers 200", ids.len()),
                actual,
            ));
        }
    }

    async fn compose(&mut self, env: &BTreeMap<String, String>, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let cancel = self.cx.cancel.clone();
        tokio::select! {
            out = self.compose_uncancelled(env, args) => out,
            () = cancel.cancelled() => anyhow::bail!("interrupted"),
        }
    }

    async fn compose_uncancelled(
        &mut self,
        env: &BTreeMap<String, String>,
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        let tool = crate::stages::compose::detect_tool().await;
        let file = self.cx.base_dir.join(&self.spec.file);
        let project = crate::stages::compose::project_name(&self.spec.project);
        let output = Command::new(&tool[0])
            .args(&tool[1..])
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&file)
            .args(args)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let _ = writeln!(self.log, "$ {} {}", tool.join(" "), args.join(" "));
        self.log.extend_from_slice(&output.stdout);
        self.log.extend_from_slice(&output.stderr);
        Ok(output)
    }
}

fn append(archive: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive.append_data(&mut header, path, data)?;
    Ok(())
}

/// The `.sql` files of N+1's migrations directory, sorted by name.
fn read_migrations(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("reading N+1's migrations {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            anyhow::ensure!(
                safety::version_of(&name).is_some(),
                "{}: migrations are named NNNN_name.sql",
                path.display()
            );
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    crate::redact::redact(&lines[lines.len().saturating_sub(6)..].join("\n")).into_owned()
}
