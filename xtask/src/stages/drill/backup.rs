//! The backup drill, inside the stack's Postgres container: a `pg_dump` restored into a scratch database
//! must fingerprint the same as the live one; point-in-time recovery (pitr.rs); the configuration
//! archived into the run directory must restore byte for byte.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::{Value, json};

use super::fingerprint::{self, Expect};
use super::pitr;
use crate::config::{BackupDrill, ConfigBackup, DumpDrill, Stage};
use crate::docker::exec;
use crate::run::record::{GateRecord, Status};
use crate::stages::{StageCx, StageResult};

const DEFAULT_RESTORE: Duration = Duration::from_secs(300);

pub async fn run(_stage: &Stage, spec: &BackupDrill, cx: &StageCx<'_>) -> anyhow::Result<StageResult> {
    let mut gates = Vec::new();
    let mut outputs = serde_json::Map::new();
    outputs.insert("type".into(), json!("backup"));
    let mut reason = None;
    if spec.dump.is_some() || spec.pitr.is_some() {
        let docker = crate::docker::connect().await?;
        let container = postgres_container(&docker, spec).await?;
        let target = Target { docker: &docker, container: &container, database: &spec.database, tag: scratch_tag(cx) };
        if let Some(dump) = &spec.dump {
            match dump_and_restore(&target, dump, cx, &mut gates).await {
                Ok(out) => drop(outputs.insert("dump".into(), out)),
                Err(e) => reason = Some(format!("dump and restore: {e:#}")),
            }
        }
        if let Some(spec_pitr) = &spec.pitr
            && reason.is_none()
        {
            match pitr::run(&target, spec_pitr, cx, &mut gates).await {
                Ok(out) => drop(outputs.insert("pitr".into(), out)),
                Err(e) => reason = Some(format!("point-in-time recovery: {e:#}")),
            }
        }
    }
    if let Some(config) = &spec.config
        && reason.is_none()
    {
        match config_backup(config, cx, &mut gates).await {
            Ok(out) => drop(outputs.insert("config".into(), out)),
            Err(e) => reason = Some(format!("configuration backup: {e:#}")),
        }
    }
    let status = reason.as_ref().map(|_| if cx.cancel.is_cancelled() { Status::Interrupted } else { Status::Failed });
    Ok(StageResult {
        status,
        reason: reason.map(|r| crate::redact::redact(&r).into_owned()),
        gates,
        outputs: json!({ "drill": "backup", "backup": Value::Object(outputs) }),
        log: None,
    })
}

/// The database server the drill works on: a container, a database, and a tag for scratch names.
pub struct Target<'a> {
    pub docker: &'a Docker,
    pub container: &'a str,
    pub database: &'a str,
    pub tag: String,
}

impl Target<'_> {
    /// Runs a command as the `postgres` OS user (peer authentication: the superuser, no password).
    pub async fn run(&self, cmd: &[&str]) -> anyhow::Result<crate::docker::ExecOutput> {
        exec(self.docker, self.container, "postgres", cmd).await
    }

    /// Runs a command that must succeed; its stdout.
    pub async fn must(&self, what: &str, cmd: &[&str]) -> anyhow::Result<String> {
        let out = self.run(cmd).await?;
        anyhow::ensure!(out.exit_code == 0, "{what} exited {}: {}", out.exit_code, out.stderr.trim());
        Ok(out.stdout)
    }

    pub async fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out =
            self.must("psql", &["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]).await?;
        Ok(out.trim().to_string())
    }
}

async fn postgres_container(docker: &Docker, spec: &BackupDrill) -> anyhow::Result<String> {
    let project = crate::stages::compose::project_name(&spec.project);
    let containers = crate::docker::project_containers(docker, &project).await?;
    containers
        .into_iter()
        .find(|(service, _)| service == &spec.service)
        .map(|(_, id)| id)
        .ok_or_else(|| anyhow::anyhow!("project {project} has no `{}` container", spec.service))
}

/// Lowercase letters and digits from the run id: part of scratch database and directory names.
fn scratch_tag(cx: &StageCx<'_>) -> String {
    let id: String = cx.run.id.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
    format!("{}{}", id.chars().rev().take(12).collect::<String>(), std::process::id())
}

async fn dump_and_restore(
    target: &Target<'_>,
    spec: &DumpDrill,
    cx: &StageCx<'_>,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Value> {
    let scratch = format!("drill_restore_{}", target.tag);
    let dump_file = format!("/tmp/{scratch}.dump");
    let before = fingerprint::take(&spec.fingerprints, None, None).await?;
    let outcome = dump_restore_compare(target, spec, cx, &scratch, &dump_file, &before, gates).await;
    // Scratch things go whatever happened.
    let _ = target.run(&["dropdb", "--if-exists", &scratch]).await;
    let _ = target.run(&["rm", "-f", &dump_file]).await;
    outcome
}

async fn dump_restore_compare(
    target: &Target<'_>,
    spec: &DumpDrill,
    cx: &StageCx<'_>,
    scratch: &str,
    dump_file: &str,
    before: &fingerprint::Snapshot,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut dump_cmd = vec!["pg_dump", "-Fc", "-d", target.database, "-f", dump_file];
    dump_cmd.extend(spec.args.iter().map(String::as_str));
    let dumped = target.run(&dump_cmd).await?;
    let dump_ms = started.elapsed().as_millis() as u64;
    let size: u64 = target
        .must("stat", &["stat", "-c", "%s", dump_file])
        .await
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let kept = keep_dump(target, dump_file, cx).await;
    let passed = dumped.exit_code == 0 && size > 0;
    let actual = if passed {
        format!(
            "{size} bytes in {:.1}s, kept as {}",
            dump_ms as f64 / 1000.0,
            kept.as_deref().unwrap_or("(not copied)")
        )
    } else {
        format!("pg_dump exited {}: {}", dumped.exit_code, dumped.stderr.trim())
    };
    gates.push(GateRecord::judged(
        format!("pg_dump {}", target.database),
        "backup",
        passed,
        "a non-empty dump",
        actual,
    ));
    anyhow::ensure!(passed, "pg_dump failed");

    let restore_started = Instant::now();
    let owner = target
        .psql(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}'",
                target.database.replace('\'', "''")
            ),
        )
        .await?;
    target.must("createdb", &["createdb", "-O", &owner, scratch]).await?;
    let restored = target.run(&["pg_restore", "--exit-on-error", "-d", scratch, dump_file]).await?;
    let restore = restore_started.elapsed();
    let budget = spec.restore_within.map_or(DEFAULT_RESTORE, |d| d.0);
    let passed = restored.exit_code == 0 && restore <= budget;
    let actual = if restored.exit_code == 0 {
        format!("restored into {scratch} in {:.1}s", restore.as_secs_f64())
    } else {
        format!("pg_restore exited {}: {}", restored.exit_code, restored.stderr.trim())
    };
    let expected = format!("pg_restore into a scratch database within {}", humantime::format_duration(budget));
    let mut gate = GateRecord::judged("restore into scratch database", "backup", passed, expected, actual);
    gate.duration_ms = restore.as_millis() as u64;
    gates.push(gate);
    anyhow::ensure!(restored.exit_code == 0, "pg_restore failed");

    let after = fingerprint::take(&spec.fingerprints, Some(scratch), Some(before)).await?;
    gates.extend(fingerprint::compare(before, &after, Expect::Identical));
    Ok(json!({
        "dump_bytes": size,
        "dump_ms": dump_ms,
        "dump_file": kept,
        "time_to_restore_ms": restore.as_millis() as u64,
        "fingerprints": { "before": before, "after": after },
    }))
}

/// Copies the dump out of the container into the run directory: the backup outlives the stack.
async fn keep_dump(target: &Target<'_>, dump_file: &str, cx: &StageCx<'_>) -> Option<String> {
    use futures::TryStreamExt;
    let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default().path(dump_file).build();
    let chunks: Vec<bytes::Bytes> =
        target.docker.download_from_container(target.container, Some(options)).try_collect().await.ok()?;
    let tarball: Vec<u8> = chunks.concat();
    let dir = cx.run_dir.join("backup");
    std::fs::create_dir_all(&dir).ok()?;
    tar::Archive::new(tarball.as_slice()).unpack(&dir).ok()?;
    let name = Path::new(dump_file).file_name()?.to_string_lossy().into_owned();
    Some(format!("backup/{name}"))
}

/// Copies each file into `backup/config/`, then reads the copies back and compares them with the
/// originals; a compose file's rendered configuration is archived too, secrets masked.
async fn config_backup(spec: &ConfigBackup, cx: &StageCx<'_>, gates: &mut Vec<GateRecord>) -> anyhow::Result<Value> {
    let dest = cx.run_dir.join("backup").join("config");
    std::fs::create_dir_all(&dest)?;
    let mut files = Vec::new();
    for entry in &spec.files {
        collect(&cx.base_dir.join(entry), &inside(Path::new(entry)), &mut files)?;
    }
    anyhow::ensure!(!files.is_empty(), "no configuration files found in {:?}", spec.files);
    let mut archived = Vec::new();
    let mut differing = Vec::new();
    for (source, relative) in &files {
        let bytes = std::fs::read(source)?;
        let copy = dest.join(relative);
        std::fs::create_dir_all(copy.parent().expect("a file has a directory"))?;
        std::fs::write(&copy, &bytes)?;
        let restored = std::fs::read(&copy)?;
        if restored != bytes {
            differing.push(relative.display().to_string());
        }
        archived.push(json!({ "file": relative.display().to_string(), "bytes": bytes.len() }));
    }
    let passed = differing.is_empty();
    let actual = if passed {
        format!("{} file(s) archived in backup/config and restored identical", files.len())
    } else {
        format!("restored copies differ: {}", differing.join(", "))
    };
    gates.push(GateRecord::judged(
        "configuration files restore",
        "backup",
        passed,
        "every file restores byte for byte",
        actual,
    ));
    if let Some(compose) = &spec.compose {
        gates.push(compose_config(compose, spec, cx, &dest).await?);
    }
    Ok(json!({ "directory": "backup/config", "files": archived }))
}

/// The rendered compose configuration, archived with secrets masked, must render again the same.
async fn compose_config(file: &str, spec: &ConfigBackup, cx: &StageCx<'_>, dest: &Path) -> anyhow::Result<GateRecord> {
    let tool = crate::stages::compose::detect_tool().await;
    let source = cx.base_dir.join(file);
    let project_dir = source.parent().map(Path::to_path_buf).unwrap_or_default();
    // Relative paths (build contexts) resolve against the original directory for both renderings.
    let render = |path: PathBuf| {
        let mut command = tokio::process::Command::new(&tool[0]);
        command
            .args(&tool[1..])
            .arg("--project-directory")
            .arg(&project_dir)
            .arg("-f")
            .arg(path)
            .arg("config")
            .envs(&spec.env)
            .stdin(std::process::Stdio::null());
        command
    };
    let live = render(source.clone()).output().await?;
    anyhow::ensure!(live.status.success(), "`config` of {file} failed: {}", String::from_utf8_lossy(&live.stderr));
    let rendered = String::from_utf8_lossy(&live.stdout).into_owned();
    let masked = crate::redact::redact(&rendered).into_owned();
    std::fs::write(dest.join("compose.rendered.yml"), masked.as_bytes())?;
    // The archived source, rendered with the same variables, must give the same configuration.
    let copy = dest.join(inside(Path::new(file)));
    std::fs::create_dir_all(copy.parent().unwrap_or(dest))?;
    std::fs::copy(&source, &copy)?;
    let again = render(copy).output().await?;
    let same = again.status.success() && again.stdout == live.stdout;
    let actual = if same {
        "the archived compose file renders the same configuration (archived masked as compose.rendered.yml)".to_string()
    } else {
        format!("renders differently: {}", crate::redact::redact(String::from_utf8_lossy(&again.stderr).trim()))
    };
    Ok(GateRecord::judged(
        "compose configuration restores",
        "backup",
        same,
        "the archived compose file renders as the live one",
        actual,
    ))
}

/// A path made relative (no root, no `..`), so an archived copy always lands inside the archive and
/// never on its original.
fn inside(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|c| if let std::path::Component::Normal(part) = c { Some(part) } else { None })
        .collect()
}

fn collect(path: &Path, relative: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            collect(&entry.path(), &relative.join(entry.file_name()), out)?;
        }
    } else {
        out.push((path.to_path_buf(), relative.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_paths_stay_inside_the_archive() {
        assert_eq!(inside(Path::new("/work/compose/docker-compose.yml")), Path::new("work/compose/docker-compose.yml"));
        assert_eq!(inside(Path::new("../x/./y.conf")), Path::new("x/y.conf"));
        assert_eq!(inside(Path::new("compose")), Path::new("compose"));
    }
}
