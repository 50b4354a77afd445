//! Runs a program to completion from blocking code, in its own process group, so that cancelling
//! stops it and everything it started (helm's Python, mmdebstrap's apt and chroot helpers).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);

pub enum Ran {
    Exited(Output),
    /// Cancelled: the group got SIGTERM, then SIGKILL after the grace period, and was waited for.
    Cancelled,
}

/// Runs `command` with stdin closed and stdout/stderr captured, until it exits or `cancel` fires.
pub fn run(command: impl Into<Command>, cancel: &CancellationToken, grace: Duration) -> std::io::Result<Ran> {
    let mut command = command.into();
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = command.spawn()?;
    let group = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if cancel.is_cancelled() {
            stop(&mut child, group, grace);
            return Ok(Ran::Cancelled);
        }
        std::thread::sleep(POLL);
    };
    // Whatever the program left running in its group would hold the pipes open.
    let _ = killpg(group, Signal::SIGKILL);
    let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Ran::Exited(Output { status, stdout: collect(stdout), stderr: collect(stderr) }))
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn stop(child: &mut std::process::Child, group: Pid, grace: Duration) {
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(POLL);
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let Ran::Exited(out) = run(command, &CancellationToken::new(), Duration::from_secs(1)).unwrap() else {
            panic!("not cancelled")
        };
        assert_eq!((out.status.code(), &out.stdout[..], &out.stderr[..]), (Some(3), &b"out\n"[..], &b"err\n"[..]));
    }

    #[test]
    fn cancelling_stops_the_whole_group() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            c.cancel();
        });
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; sleep 60 & wait"]);
        let started = Instant::now();
        assert!(matches!(run(command, &cancel, Duration::from_millis(500)).unwrap(), Ran::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
