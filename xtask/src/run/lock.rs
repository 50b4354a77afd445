//! One run per environment at a time: an OS file lock on `target/xtask/locks/<env>.lock`, plus a
//! holder record in that file naming who holds it.
//!
//! The OS lock dies with its process, but the record does not: a record found under a free lock was
//! left by a run that died without cleaning up, which may have left the environment half-deployed.
//! That is reported, never taken over; `cargo xtask unlock` clears it once a person has looked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const POLL: Duration = Duration::from_millis(200);

/// Who holds an environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub run_id: String,
    pub command: String,
}

impl Holder {
    /// This process, for run `run_id`. The command line is redacted: `--var` may carry a secret.
    pub fn this_process(run_id: &str) -> Holder {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        Holder {
            pid: std::process::id(),
            host: hostname(),
            started_at: jiff::Timestamp::now().to_string(),
            run_id: run_id.to_string(),
            command: crate::redact::redact(&command).into_owned(),
        }
    }

    /// Whether the holder's process still runs; `None` when it ran on another host.
    pub fn alive(&self) -> Option<bool> {
        (self.host == hostname()).then(|| pid_alive(self.pid))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} (pid {} on {}, started {}): {}",
            self.run_id, self.pid, self.host, self.started_at, self.command
        )
    }
}

#[derive(Debug)]
pub enum LockError {
    /// Another live run holds the environment (its record, when it could be read).
    Held {
        env: String,
        holder: Option<Holder>,
    },
    /// A run died holding the environment; its record is still there.
    Stale {
        env: String,
        holder: Holder,
        path: PathBuf,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { env, holder: Some(holder) } => {
                write!(f, "environment `{env}` is in use by {holder}; wait for it, or pass --wait-lock DURATION")
            }
            LockError::Held { env, holder: None } => write!(f, "environment `{env}` is in use by another run"),
            LockError::Stale { env, holder, path } => {
                let state = match holder.alive() {
                    Some(false) => "is no longer running".to_string(),
                    Some(true) => "runs but no longer holds the lock (a reused pid?)".to_string(),
                    None => format!("ran on another host ({})", holder.host),
                };
                write!(
                    f,
                    "environment `{env}` was left locked by {holder}\n  that process {state}: the environment \
                     may be half-deployed.\n  Check what it left (its record: target/xtask/runs/{}/run.json; \
                     `docker ps`), then run `cargo xtask unlock --env {env}` (lock file: {})",
                    holder.run_id,
                    path.display()
                )
            }
            LockError::Io(e) => write!(f, "cannot take the environment lock: {e}"),
        }
    }
}

/// A held environment lock. Dropping it clears the record and releases the OS lock.
#[derive(Debug)]
pub struct EnvLock {
    file: Option<File>,
    path: PathBuf,
}

/// `target/xtask/locks/<env>.lock` under the pipeline's directory.
pub fn lock_path(base_dir: &Path, env: &str) -> PathBuf {
    let safe: String =
        env.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    base_dir.join("target").join("xtask").join("locks").join(format!("{safe}.lock"))
}

impl EnvLock {
    /// Takes the lock, waiting up to `wait` for a live holder to finish; `on_wait` is told whom it
    /// waits for, once per holder.
    pub async fn acquire(
        path: &Path,
        env: &str,
        holder: &Holder,
        wait: Option<Duration>,
        on_wait: impl Fn(&Holder),
    ) -> Result<EnvLock, LockError> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut announced: Option<Holder> = None;
        loop {
            match try_acquire(path, env, holder) {
                Err(LockError::Held { env, holder: current }) => {
                    if deadline.is_none_or(|d| Instant::now() >= d) {
                        return Err(LockError::Held { env, holder: current });
                    }
                    if let Some(current) = current
                        && announced.as_ref() != Some(&current)
                    {
                        on_wait(&current);
                        announced = Some(current);
                    }
                    tokio::time::sleep(POLL).await;
                }
                other => return other,
            }
        }
    }

    /// Where the record is; cleared on a forced exit, which runs no destructors.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Clear first, then unlock: an empty file under a free lock means "free".
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}

fn try_acquire(path: &Path, env: &str, holder: &Holder) -> Result<EnvLock, LockError> {
    let mut file = open(path).map_err(LockError::Io)?;
    take_os_lock(&mut file, env)?;
    if let Some(left) = read_holder(&mut file) {
        let _ = file.unlock();
        return Err(LockError::Stale { env: env.to_string(), holder: left, path: path.to_path_buf() });
    }
    write_holder(&mut file, holder).map_err(LockError::Io)?;
    Ok(EnvLock { file: Some(file), path: path.to_path_buf() })
}

/// The OS lock, or who holds it: it is released when its holder dies, so holding it means being alive.
fn take_os_lock(file: &mut File, env: &str) -> Result<(), LockError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LockError::Held { env: env.to_string(), holder: read_holder(file) })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

/// What `unlock` found.
pub enum Unlocked {
    WasFree,
    Cleared(Holder),
}

/// Clears a record left by a dead run; refuses while a live run holds the lock.
pub fn unlock(path: &Path, env: &str) -> Result<Unlocked, LockError> {
    if !path.exists() {
        return Ok(Unlocked::WasFree);
    }
    let mut file = open(path).map_err(LockError::Io)?;
    take_os_lock(&mut file, env)?;
    let left = read_holder(&mut file);
    file.set_len(0).map_err(LockError::Io)?;
    let _ = file.unlock();
    Ok(left.map_or(Unlocked::WasFree, Unlocked::Cleared))
}

/// Empties the record at `path` without taking the lock: for the forced exit of the lock's own holder.
pub fn clear_on_forced_exit(path: &Path) {
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        let _ = file.set_len(0);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Never truncated on open: the record belongs to whoever holds the lock.
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    if text.trim().is_empty() {
        return None;
    }
    // An unreadable record is still somebody's: report it rather than treat the lock as free.
    Some(serde_json::from_str(&text).unwrap_or_else(|_| Holder {
        pid: 0,
        host: "unknown".into(),
        started_at: "unknown".into(),
        run_id: "unknown".into(),
        command: format!("(unreadable lock record: {})", text.trim().chars().take(80).collect::<String>()),
    }))
}

fn write_holder(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    let json = serde_json::to_string_pretty(holder).map_err(std::io::Error::other)?;
    file.write_all(json.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => !is_zombie(pid),
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32) -> Holder {
        Holder {
            pid,
            host: hostname(),
            started_at: "now".into(),
            run_id: format!("run-{pid}"),
            command: "cargo xtask deploy".into(),
        }
    }

    #[tokio::test]
    async fn a_second_taker_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "local");
        let first = EnvLock::acquire(&path, "local", &holder(1), None, |_| {}).await.unwrap();
        match EnvLock::acquire(&path, "local", &holder(2), None, |_| {}).await {
            Err(LockError::Held { holder: Some(h), .. }) => assert_eq!(h.run_id, "run-1"),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        EnvLock::acquire(&path, "local", &holder(2), None, |_| {}).await.unwrap();
    }

    #[tokio::test]
    async fn a_record_under_a_free_lock_is_stale_until_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "staging");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string(&holder(u32::MAX / 2)).unwrap()).unwrap();
        let err = EnvLock::acquire(&path, "staging", &holder(2), None, |_| {}).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no longer running") && text.contains("cargo xtask unlock --env staging"), "{text}");
        assert!(matches!(unlock(&path, "staging"), Ok(Unlocked::Cleared(_))));
        EnvLock::acquire(&path, "staging", &holder(2), None, |_| {}).await.unwrap();
    }
}
