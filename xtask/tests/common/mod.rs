//! Shared helpers for the integration tests: the real binary in a temporary directory.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod containers;
pub mod control_plane;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(pipeline: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("pipeline.yaml written");
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args).current_dir(self.path()).env("NO_COLOR", "1").env_remove("GITHUB_STEP_SUMMARY");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.xtask(args).output().expect("the xtask binary runs")
    }

    pub fn latest(&self) -> PathBuf {
        self.path().join("target/xtask/runs/latest")
    }

    pub fn record(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.latest().join("run.json")).expect("run.json exists");
        serde_json::from_str(&text).expect("run.json is JSON")
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Compares `actual` with the snapshot file; `UPDATE_SNAPSHOTS=1` rewrites it instead.
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, actual).expect("snapshot written");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == actual,
        "snapshot {} differs (run with UPDATE_SNAPSHOTS=1 to accept)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Whether tests that need the Docker engine can run. Under `CI=true` they must: a missing engine fails.
pub fn docker_ready(test: &str) -> bool {
    let ok = Command::new("docker").args(["image", "inspect", BASE_IMAGE]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: needs the Docker engine and {BASE_IMAGE} (run `cargo xtask test`, which creates it)"
        );
        eprintln!("{test}: skipped, no Docker engine or no {BASE_IMAGE}");
    }
    ok
}

pub const BASE_IMAGE: &str = "rehearsal/debian:bookworm";

/// A name no other test or run uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Removes image tags when dropped, so failing tests leave nothing behind either.
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Containers of a compose project still present.
pub fn project_containers(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={project}")])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request with 200 "ok".
pub fn http_ok_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                use std::io::{BufRead, Write};
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" && writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// Every file below `dir`, links not followed (`latest` points into the same tree).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
