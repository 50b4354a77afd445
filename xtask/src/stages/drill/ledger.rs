//! The fault ledger (`target/xtask/faults.json`): every fault is written here before it is injected and
//! removed once undone, so a run that died (SIGKILL, a crash) leaves a list the next run undoes.

use std::path::{Path, PathBuf};

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::run::record::RecoveredFault as Recovered;

/// One injected fault and how to undo it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub run_id: String,
    /// The xtask process that injected it: its entries are left alone while it lives.
    pub pid: u32,
    pub stage: String,
    pub fault: String,
    pub injected_at: String,
    pub undo: Undo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Undo {
    /// Start the container again (after a kill or stop).
    Start {
        container: String,
    },
    Unpause {
        container: String,
    },
    /// Remove every container of the service but these (after scaling up).
    ScaleBack {
        project: String,
        service: String,
        keep: Vec<String>,
    },
}

impl Undo {
    pub fn describe(&self) -> String {
        match self {
            Undo::Start { container } => format!("start container {}", short(container)),
            Undo::Unpause { container } => format!("unpause container {}", short(container)),
            Undo::ScaleBack { project, service, keep } => {
                format!("scale {project}/{service} back to {} replica(s)", keep.len())
            }
        }
    }
}

/// Where the ledger of the runs under `runs_dir` (`target/xtask/runs`) lives.
pub fn path(runs_dir: &Path) -> PathBuf {
    runs_dir.parent().unwrap_or(runs_dir).join("faults.json")
}

pub fn add(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    update(path, |entries| entries.push(entry.clone()))
}

pub fn remove(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    update(path, |entries| entries.retain(|e| e != entry))
}

/// Undoes the entries of runs that are no longer alive and drops them from the ledger.
pub async fn recover(path: &Path) -> anyhow::Result<Vec<Recovered>> {
    let _lock = Lock::take(path)?;
    let entries = read(path)?;
    let (dead, alive): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| !process_alive(e.pid));
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let docker = crate::docker::connect().await?;
    let mut recovered = Vec::new();
    // Newest first: a scale-back before the start of a replica it may remove.
    for entry in dead.iter().rev() {
        let outcome = match undo(&docker, &entry.undo).await {
            Ok(()) => "undone".to_string(),
            Err(e) => format!("not undone: {e:#}"),
        };
        recovered.push(Recovered {
            run_id: entry.run_id.clone(),
            pid: entry.pid,
            stage: entry.stage.clone(),
            fault: entry.fault.clone(),
            injected_at: entry.injected_at.clone(),
            undo: entry.undo.describe(),
            outcome,
        });
    }
    write(path, &alive)?;
    Ok(recovered)
}

/// Undoes one fault; a container that is gone, or already back, needs nothing.
pub async fn undo(docker: &Docker, undo: &Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Start { container } => {
            if let Some(state) = state(docker, container).await? {
                if state.paused.unwrap_or(false) {
                    docker.unpause_container(container).await?;
                }
                if !state.running.unwrap_or(false) {
                    docker.start_container(container, None).await?;
                }
            }
        }
        Undo::Unpause { container } => {
            if let Some(state) = state(docker, container).await?
                && state.paused.unwrap_or(false)
            {
                docker.unpause_container(container).await?;
            }
        }
        Undo::ScaleBack { project, service, keep } => {
            let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default().force(true).build();
            for (svc, id) in crate::docker::project_containers(docker, project).await? {
                if &svc == service && !keep.contains(&id) {
                    docker.remove_container(&id, Some(options.clone())).await?;
                }
            }
        }
    }
    Ok(())
}

async fn state(docker: &Docker, container: &str) -> anyhow::Result<Option<bollard::models::ContainerState>> {
    match docker.inspect_container(container, None).await {
        Ok(found) => Ok(Some(found.state.unwrap_or_default())),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Alive and still an xtask process (a reused pid belongs to something else).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "xtask")
}

fn update(path: &Path, change: impl FnOnce(&mut Vec<Entry>)) -> anyhow::Result<()> {
    let _lock = Lock::take(path)?;
    let mut entries = read(path)?;
    change(&mut entries);
    write(path, &entries)
}

pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
        Ok(text) => Ok(serde_json::from_str(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Atomically, so a reader never sees half a ledger.
fn write(path: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(entries)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// An exclusive lock on `faults.json.lock`, held while the ledger is read and rewritten.
struct Lock(#[allow(dead_code, reason = "held for its drop")] nix::fcntl::Flock<std::fs::File>);

impl Lock {
    fn take(path: &Path) -> anyhow::Result<Lock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("json.lock"))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking the fault ledger: {e}"))?;
        Ok(Lock(lock))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_are_removed_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        let entry = |fault: &str| Entry {
            run_id: "r".into(),
            pid: 1,
            stage: "faults".into(),
            fault: fault.into(),
            injected_at: "now".into(),
            undo: Undo::Unpause { container: "abc".into() },
        };
        add(&path, &entry("a")).unwrap();
        add(&path, &entry("b")).unwrap();
        remove(&path, &entry("a")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![entry("b")]);
    }

    #[test]
    fn only_xtask_processes_count_as_alive() {
        assert!(!process_alive(u32::MAX));
        // This test binary is not named xtask.
        assert!(!process_alive(std::process::id()));
    }
}
