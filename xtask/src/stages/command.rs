//! `command`: runs one program with arguments (never through a shell), captures its output, gates on it.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::verify::run_gates;
use super::{StageCx, StageResult, log_path};
use crate::config::{CommandStage, Stage};
use crate::gates::{CommandOutput, GateCx};
use crate::redact::redact;
use crate::run::progress::Event;
use crate::run::record::Status;

/// How long a cancelled program gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// Output kept in memory for the gates (the log file has all of it).
const KEEP_BYTES: usize = 1 << 20;

pub async fn run(stage: &Stage, spec: &CommandStage, cx: &StageCx<'_>) -> StageResult {
    let log = log_path(stage);
    let mut log_file = match open_log(cx, &log) {
        Ok(file) => file,
        Err(e) => return failed(format!("cannot write the log {log}: {e}")),
    };
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(cx.base_dir.join(spec.cwd.as_deref().unwrap_or(".")))
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so cancelling reaches every process it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start `{}`: {e}", spec.program)),
    };
    // Read now: once the child is reaped its id is gone, but its group may live on.
    let pid = child_pid(&child);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
    spawn_reader(child.stdout.take(), false, tx.clone());
    spawn_reader(child.stderr.take(), true, tx);

    let mut output = CommandOutput::default();
    let mut interrupted = false;
    let mut status = None;
    let mut streams_open = true;
    while status.is_none() || streams_open {
        tokio::select! {
            line = rx.recv(), if streams_open => match line {
                Some((is_err, line)) => {
                    let _ = writeln!(log_file, "{}", redact(&line));
                    cx.progress.emit(Event::Output { stage: stage.name(), line: &line });
                    let buffer = if is_err { &mut output.stderr } else { &mut output.stdout };
                    keep(buffer, &line);
                }
                None => streams_open = false,
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit.ok());
                // Whatever it left running in its group goes too, so the pipes close.
                signal_group(&pid, Signal::SIGKILL);
            },
            () = cx.cancel.cancelled(), if !interrupted && status.is_none() => {
                interrupted = true;
                status = Some(terminate(&mut child, pid).await);
            },
        }
    }
    output.exit_code = status.flatten().and_then(|s| s.code());
    if interrupted {
        return StageResult {
            status: Some(Status::Interrupted),
            reason: Some("interrupted; the program and its children were stopped".into()),
            gates: stage
                .gates
                .iter()
                .map(|g| crate::gates::not_evaluated(g, Status::Interrupted, "interrupted"))
                .collect(),
            log: Some(log),
            ..Default::default()
        };
    }
    let gate_cx = GateCx { command: Some(&output), cancel: &cx.cancel, base_dir: cx.base_dir };
    StageResult { gates: run_gates(stage, &gate_cx).await, log: Some(log), ..Default::default() }
}

fn failed(reason: String) -> StageResult {
    StageResult { status: Some(Status::Failed), reason: Some(reason), ..Default::default() }
}

fn open_log(cx: &StageCx<'_>, log: &str) -> std::io::Result<std::fs::File> {
    let path = cx.run_dir.join(log);
    std::fs::create_dir_all(path.parent().expect("log paths have a directory"))?;
    std::fs::File::create(path)
}

fn spawn_reader(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    is_err: bool,
    tx: tokio::sync::mpsc::UnboundedSender<(bool, String)>,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((is_err, line)).is_err() {
                break;
            }
        }
    });
}

fn keep(buffer: &mut String, line: &str) {
    buffer.push_str(line);
    buffer.push('\n');
    if buffer.len() > KEEP_BYTES {
        let cut = buffer.len() - KEEP_BYTES / 2;
        let cut = (cut..buffer.len()).find(|&i| buffer.is_char_boundary(i)).unwrap_or(buffer.len());
        buffer.drain(..cut);
    }
}

fn child_pid(child: &Child) -> Option<Pid> {
    child.id().map(|id| Pid::from_raw(id as i32))
}

fn signal_group(pid: &Option<Pid>, signal: Signal) {
    if let Some(pid) = pid {
        let _ = killpg(*pid, signal);
    }
}

/// SIGTERM to the group, then SIGKILL after the grace period.
async fn terminate(child: &mut Child, pid: Option<Pid>) -> Option<std::process::ExitStatus> {
    signal_group(&pid, Signal::SIGTERM);
    let status = match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(&pid, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    signal_group(&pid, Signal::SIGKILL);
    status
}
