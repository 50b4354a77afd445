//! Shared helpers for the integration tests: the real binary in a temporary directory.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod containers;

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
