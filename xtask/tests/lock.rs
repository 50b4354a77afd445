//! One run per environment at a time, through the real binary: a second run is refused naming the
//! holder, `--wait-lock` waits for it, a lock left by a killed run is reported, `unlock` clears it.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, stderr, stdout};

/// The first stage holds the run until the file `release` exists.
const HOLDS: &str = r#"
version: 1
environments: { staging: {} }
stages:
  - name: hold
    kind: command
    program: sh
    args: [-c, "echo $$ > holding; while [ ! -e release ]; do sleep 0.05; done"]
"#;

const EXIT_LOCKED: i32 = 3;

fn start_holder(ws: &Workspace, args: &[&str]) -> Child {
    std::fs::remove_file(ws.path().join("holding")).ok();
    let child = ws.xtask(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("the holder to start", || {
        std::fs::read_to_string(ws.path().join("holding")).is_ok_and(|t| !t.is_empty())
    });
    child
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn release(ws: &Workspace) {
    std::fs::write(ws.path().join("release"), "").unwrap();
}

fn lock_file(ws: &Workspace, env: &str) -> std::path::PathBuf {
    ws.path().join(format!("target/xtask/locks/{env}.lock"))
}

#[test]
fn a_second_run_is_refused_naming_the_holder_and_read_only_commands_are_not() {
    let ws = Workspace::new(HOLDS);
    let mut holder = start_holder(&ws, &["deploy"]);
    let out = ws.run(&["deploy"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_LOCKED), "{err}");
    assert!(err.contains("environment `local` is in use by run"), "{err}");
    assert!(err.contains(&format!("pid {}", holder.id())), "names the holder's pid: {err}");
    assert!(err.contains("--wait-lock"), "{err}");
    // Another environment, and commands that touch nothing, are free to run.
    for args in [&["plan"][..], &["validate"], &["deploy", "--dry-run"]] {
        let out = ws.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    let out = ws.run(&["unlock"]);
    assert_eq!(out.status.code(), Some(EXIT_LOCKED), "unlock refuses while the holder lives");
    assert!(stderr(&out).contains("refusing"), "{}", stderr(&out));
    release(&ws);
    assert_eq!(holder.wait().unwrap().code(), Some(0));
    assert_eq!(std::fs::read_to_string(lock_file(&ws, "local")).unwrap(), "", "the record is cleared");
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn wait_lock_waits_for_the_holder_then_runs() {
    let ws = Workspace::new(HOLDS);
    let mut holder = start_holder(&ws, &["deploy", "--env", "staging"]);
    let waiter = ws
        .xtask(&["deploy", "--env", "staging", "--wait-lock", "1m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    release(&ws);
    assert_eq!(holder.wait().unwrap().code(), Some(0));
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("waiting for environment `staging`, in use by run"), "{err}");
    assert!(err.contains(&format!("pid {}", holder.id())), "{err}");
}

#[test]
fn wait_lock_gives_up_after_its_duration() {
    let ws = Workspace::new(HOLDS);
    let mut holder = start_holder(&ws, &["deploy"]);
    let started = Instant::now();
    let out = ws.run(&["deploy", "--wait-lock", "700ms"]);
    assert_eq!(out.status.code(), Some(EXIT_LOCKED), "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_millis(700));
    release(&ws);
    holder.wait().unwrap();
}

#[test]
fn a_lock_left_by_a_killed_run_is_reported_until_unlocked() {
    let ws = Workspace::new(HOLDS);
    let mut holder = start_holder(&ws, &["deploy"]);
    let dead = holder.id();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The killed run's stage runs on in its own process group; let it end.
    release(&ws);
    for args in [&["deploy"][..], &["deploy", "--wait-lock", "1s"]] {
        let out = ws.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_LOCKED), "{err}");
        assert!(err.contains(&format!("pid {dead}")) && err.contains("is no longer running"), "{err}");
        assert!(err.contains("cargo xtask unlock --env local"), "says what to do: {err}");
    }
    let out = ws.run(&["unlock"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("pid {dead}")), "{}", stdout(&out));
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ws.run(&["unlock"]);
    assert!(stdout(&out).contains("was not locked"), "{}", stdout(&out));
}

#[test]
fn ctrl_c_releases_the_lock() {
    let ws = Workspace::new(HOLDS);
    let mut holder = start_holder(&ws, &["deploy"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(holder.wait().unwrap().code(), Some(130));
    assert_eq!(std::fs::read_to_string(lock_file(&ws, "local")).unwrap(), "");
    release(&ws);
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
