//! Real containers for the gate tests: started from the locally built images, published on 127.0.0.1 with a
//! random port, removed (with their anonymous volumes) when the last test using them lets go.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Every container the tests start carries this label, so a killed run's leftovers are easy to find.
pub const LABEL: &str = "rehearsal.test=gates-data";

pub struct Container {
    pub name: String,
}

/// Whether the tests can use Docker. With `CI=true` a missing engine is a failure, not a skip.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but the Docker engine is not reachable");
        eprintln!("note: Docker is not reachable; skipping this test (it fails when CI=true)");
    }
    ok
}

impl Container {
    /// `docker run -d` with a unique name; `args` are the options, image and command.
    pub fn start(role: &str, args: &[&str]) -> Container {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!("gates-data-{}-{role}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let container = Container { name };
        let out = docker(&[&["run", "-d", "--name", &container.name, "--label", LABEL], args].concat());
        assert!(out.status.success(), "docker run {role} failed: {}", String::from_utf8_lossy(&out.stderr));
        container
    }

    /// `127.0.0.1:<host port>` published for the container's `port`.
    pub fn address(&self, port: u16) -> String {
        let out = docker(&["port", &self.name, &format!("{port}/tcp")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("127.0.0.1:"));
        line.unwrap_or_else(|| panic!("{} publishes no port {port}: {text}", self.name)).trim().to_string()
    }

    /// Waits until the engine reports this health status (`healthy`, `unhealthy`).
    pub fn wait_for_health(&self, wanted: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = docker(&["inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", &self.name]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == format!("running {wanted}") {
                return;
            }
            if Instant::now() > deadline || state.starts_with("exited") {
                let logs = docker(&["logs", "--tail", "20", &self.name]);
                panic!(
                    "{} never became {wanted} (state: {state}); last logs:\n{}{}",
                    self.name,
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs a program inside the container and returns its stdout, failing the test if it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = docker(&[&["exec", &self.name], args].concat());
        assert!(out.status.success(), "{args:?} in {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// One container shared by the tests that run at the same time; the last to finish removes it.
pub fn shared(slot: &'static Mutex<Weak<Container>>, start: fn() -> Container) -> Arc<Container> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.upgrade() {
        return running;
    }
    let container = Arc::new(start());
    *slot = Arc::downgrade(&container);
    container
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

/// Docker's health probing, quick enough for tests.
pub const HEALTH: [&str; 6] = ["--health-interval", "1s", "--health-timeout", "3s", "--health-retries", "60"];
/// How long a container may take to become healthy on a busy machine.
pub const READY: Duration = Duration::from_secs(90);

/// Postgres as the stack runs it: user and database `control_plane`, SCRAM password, healthy.
pub fn start_postgres(role: &str, password: &str) -> Container {
    let password = format!("POSTGRES_PASSWORD={password}");
    let health = "pg_isready -q -h 127.0.0.1 -U control_plane -d control_plane";
    let env = ["-e", &password, "-e", "POSTGRES_USER=control_plane", "-e", "POSTGRES_DB=control_plane"];
    let run = ["--health-cmd", health, "-p", "127.0.0.1::5432", "rehearsal/postgres:15"];
    let pg = Container::start(role, &[&HEALTH[..], &env, &run].concat());
    pg.wait_for_health("healthy", READY);
    pg
}
