//! The reference service for Docker tests: its binary built from this checkout (debug profile) and a
//! build context around it, optionally with migration files the binary reads instead of its embedded ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The target directory this test binary was built in (`<target>/debug/deps/<test>`).
fn target_dir() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    xtask.ancestors().nth(2).expect("the xtask binary sits in <target>/<profile>/").to_path_buf()
}

/// `control-plane`, built once per test process (cargo skips the work when it is up to date).
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut command = Command::new(cargo);
            // The variables cargo set for this test (CARGO_PKG_NAME and the like) reach build scripts
            // that watch them, which would rebuild shared dependencies on every alternate build.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if (key.starts_with("CARGO_") || key.starts_with("__CARGO")) && key != "CARGO_HOME" {
                    command.env_remove(key.as_ref());
                }
            }
            let out = command
                .args(["build", "-p", "control-plane", "--bin", "control-plane"])
                .env("CARGO_TARGET_DIR", target_dir())
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("cargo runs");
            assert!(out.status.success(), "building control-plane failed:\n{}", String::from_utf8_lossy(&out.stderr));
            target_dir().join("debug/control-plane")
        })
        .clone()
}

/// A build context for a control-plane image; removed when dropped.
pub struct Context {
    pub dir: PathBuf,
}

impl Context {
    /// The service binary and a Dockerfile; with `migrations`, those files are applied after the
    /// compiled-in ones (`MIGRATIONS_DIR`; their versions must come after the compiled-in 0001).
    pub fn new(name: &str, migrations: Option<&[(&str, &str)]>) -> Context {
        let dir = target_dir().join("xtask-test-contexts").join(super::unique(name));
        std::fs::create_dir_all(&dir).expect("context directory");
        let binary = binary();
        // A hard link when the context shares the target's file system; the binary is large.
        if std::fs::hard_link(&binary, dir.join("control-plane")).is_err() {
            std::fs::copy(&binary, dir.join("control-plane")).expect("binary copied");
        }
        let mut dockerfile = format!("FROM {}\nCOPY control-plane /usr/local/bin/control-plane\n", super::BASE_IMAGE);
        if let Some(files) = migrations {
            std::fs::create_dir_all(dir.join("migrations")).expect("migrations directory");
            for (file, sql) in files {
                std::fs::write(dir.join("migrations").join(file), sql).expect("migration written");
            }
            dockerfile.push_str("COPY migrations /migrations\nENV MIGRATIONS_DIR=/migrations\n");
        }
        dockerfile.push_str(
            "USER 10001:10001\nENV BIND_ADDR=0.0.0.0:8080\nENTRYPOINT [\"control-plane\"]\nCMD [\"serve\"]\n",
        );
        std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile written");
        Context { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now, for a test stack to publish.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}
