//! Interrupting the real binary in the middle of each stage kind, with SIGINT or SIGTERM: it exits 130,
//! the record says which stage was interrupted, and no process, container or network it started is left.
//!
//! A case is a workspace holding the pipeline, the stage to interrupt, and what shows that stage is under
//! way; adding a stage kind is a test that writes its pipeline and calls `check` with a `Case`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BASE_IMAGE, Images, Workspace, docker_ready, project_containers, unique};
use nix::sys::signal::Signal;

/// What shows the stage is doing its work, so the signal lands mid-stage.
enum Busy {
    /// This file (relative to the workspace) exists and is not empty.
    File(&'static str),
    /// A process with this name runs below the xtask process.
    Process(&'static str),
    /// A container whose command line contains this text exists.
    Container(String),
    /// A compose project has containers.
    Project(String),
    /// The stage has run this long.
    After(Duration),
}

struct Case {
    /// The stage to interrupt.
    stage: &'static str,
    busy: Busy,
    signal: Signal,
    /// A compose project whose containers and networks must all be gone afterwards.
    project: Option<String>,
}

struct Interrupted {
    record: serde_json::Value,
    output: String,
    elapsed: Duration,
}

/// Runs `deploy`, signals it once the stage is busy, and checks what every interruption must leave.
fn check(ws: &Workspace, case: Case) -> Interrupted {
    let output_path = ws.path().join("xtask-output.txt");
    let output = std::fs::File::create(&output_path).unwrap();
    let mut child = ws
        .xtask(&["deploy"])
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("the xtask binary starts");
    let pid = child.id() as i32;
    let started = format!("▶ {} (", case.stage);
    wait_for(&format!("stage `{}` to start", case.stage), Duration::from_secs(60), &output_path, &mut child, || {
        std::fs::read_to_string(&output_path).unwrap_or_default().contains(&started)
    });
    let stage_start = Instant::now();
    wait_for("the stage to be busy", Duration::from_secs(240), &output_path, &mut child, || match &case.busy {
        Busy::File(name) => std::fs::read_to_string(ws.path().join(name)).is_ok_and(|t| !t.trim().is_empty()),
        Busy::Process(name) => descendants(pid).iter().any(|&p| comm(p).as_deref() == Some(*name)),
        Busy::Container(text) => !containers_running(text).is_empty(),
        Busy::Project(project) => !project_containers(project).is_empty(),
        Busy::After(d) => stage_start.elapsed() >= *d,
    });
    let children = descendants(pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), case.signal).unwrap();
    let signalled = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(120));
    let elapsed = signalled.elapsed();
    let output = std::fs::read_to_string(&output_path).unwrap_or_default();
    assert_eq!(status, Some(130), "exit code after {:?}\n{output}", case.signal);
    let record = ws.record();
    assert_eq!(record["status"], "interrupted", "{output}");
    assert_eq!(record["exit_code"], 130);
    let stage = record["stages"].as_array().unwrap().iter().find(|s| s["name"] == case.stage).unwrap();
    assert_eq!(stage["status"], "interrupted", "stage {}: {stage:#}\n{output}", case.stage);
    // Zombies are reaped by whoever inherited them; only running processes count.
    std::thread::sleep(Duration::from_millis(300));
    let alive: Vec<String> = children.iter().filter(|&&p| running(p)).map(|&p| describe(p)).collect();
    assert!(alive.is_empty(), "processes left running: {alive:?}\n{output}");
    if let Some(project) = &case.project {
        assert_eq!(project_containers(project), Vec::<String>::new(), "containers of {project} left\n{output}");
        assert_eq!(project_networks(project), Vec::<String>::new(), "networks of {project} left\n{output}");
    }
    Interrupted { record, output, elapsed }
}

fn wait_for(what: &str, limit: Duration, output: &Path, child: &mut std::process::Child, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("xtask exited ({status}) before {what}:\n{}", std::fs::read_to_string(output).unwrap_or_default());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("waited {limit:?} for {what}:\n{}", std::fs::read_to_string(output).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("xtask did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every process below `root`, found through the parent ids in /proc.
fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_string())
}

/// Running or sleeping; a zombie waiting for its reaper does not count.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn describe(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!("{pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " "))
}

fn docker(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).stderr(Stdio::null()).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
}

fn containers_running(text: &str) -> Vec<String> {
    docker(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
        .into_iter()
        .filter(|l| l.contains(text))
        .collect()
}

fn project_networks(project: &str) -> Vec<String> {
    let mut networks =
        docker(&["network", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={project}")]);
    networks.extend(docker(&["network", "ls", "--format", "{{.Name}}"]).into_iter().filter(|n| n.starts_with(project)));
    networks
}

fn write(ws: &Workspace, path: &str, text: &str) {
    let path = ws.path().join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A cleanup stage that touches `cleaned`, so every case also shows cleanup ran after the interruption.
const CLEANUP: &str = "  - { name: cleanup, kind: command, when: always, program: touch, args: [cleaned] }\n";

#[test]
fn command_stage_sigint() {
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: long\n    kind: command\n    program: sh\n    args: [-c, \"sleep 300 & echo $! > child.pid; wait\"]\n  - {{ name: after, kind: command, program: \"true\" }}\n{CLEANUP}"
    ));
    let done = check(&ws, Case { stage: "long", busy: Busy::File("child.pid"), signal: Signal::SIGINT, project: None });
    assert_eq!(done.record["stages"][1]["status"], "skipped");
    assert!(ws.path().join("cleaned").exists(), "cleanup ran");
}

#[test]
fn command_stage_sigterm_kills_a_program_that_ignores_it() {
    // The program ignores SIGTERM: after the grace period it is killed.
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: stubborn\n    kind: command\n    program: sh\n    args: [-c, \"trap '' TERM; echo $$ > started; while true; do sleep 1; done\"]\n{CLEANUP}"
    ));
    let done =
        check(&ws, Case { stage: "stubborn", busy: Busy::File("started"), signal: Signal::SIGTERM, project: None });
    assert!(done.elapsed < Duration::from_secs(30), "took {:?}", done.elapsed);
    assert!(ws.path().join("cleaned").exists(), "cleanup ran");
}

#[test]
fn verify_stage_sigint_while_a_gate_retries() {
    // Port 1 on loopback refuses connections: the gate keeps retrying until its deadline.
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: waiting\n    kind: verify\n    gates:\n      - {{ name: never open, kind: tcp, address: \"127.0.0.1:1\", timeout: 5m }}\n{CLEANUP}"
    ));
    let done = check(
        &ws,
        Case { stage: "waiting", busy: Busy::After(Duration::from_secs(1)), signal: Signal::SIGINT, project: None },
    );
    assert_eq!(done.record["stages"][0]["gates"][0]["status"], "interrupted");
    assert!(done.elapsed < Duration::from_secs(10), "took {:?}", done.elapsed);
}

#[test]
fn bench_stage_sigterm_mid_load() {
    let server = common::http_ok_server();
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: load\n    kind: bench\n    connections: 2\n    duration: 5m\n    scenario: [{{ url: \"http://{server}/\" }}]\n    thresholds: [{{ check: \"p99 < 1s\" }}]\n{CLEANUP}"
    ));
    let done = check(
        &ws,
        Case { stage: "load", busy: Busy::After(Duration::from_secs(2)), signal: Signal::SIGTERM, project: None },
    );
    assert_eq!(done.record["stages"][0]["gates"][0]["status"], "interrupted", "{}", done.output);
    assert!(done.elapsed < Duration::from_secs(10), "took {:?}", done.elapsed);
}

#[test]
fn helm_stage_sigint_stops_helm_and_its_children() {
    // A helm that hangs, as helm does against an unreachable repository: the stage must stop it.
    let pid_file = "helm.pid";
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: chart\n    kind: helm\n    chart: chart\n    helm: fake-helm\n{CLEANUP}"
    ));
    let script = format!("#!/bin/sh\nsleep 300 &\necho $! > '{}'\nwait\n", ws.path().join(pid_file).display());
    write(&ws, "fake-helm", &script);
    write(&ws, "chart/Chart.yaml", "apiVersion: v2\nname: chart\nversion: 0.1.0\n");
    std::fs::set_permissions(ws.path().join("fake-helm"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let done = check(&ws, Case { stage: "chart", busy: Busy::File(pid_file), signal: Signal::SIGINT, project: None });
    assert!(done.elapsed < Duration::from_secs(15), "took {:?}", done.elapsed);
}

#[test]
fn build_stage_sigint_cancels_the_build() {
    if !docker_ready("interrupted build") {
        return;
    }
    let image = unique("xtask-test/interrupted");
    let _cleanup = Images(vec![format!("{image}:latest")]);
    let marker = unique("interrupt-marker");
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: images\n    kind: build\n    tags: [latest]\n    images: [{{ name: \"{image}\", context: ctx }}]\n{CLEANUP}"
    ));
    write(&ws, "ctx/Dockerfile", &format!("FROM {BASE_IMAGE}\nRUN echo {marker} && sleep 300\n"));
    let done = check(
        &ws,
        Case { stage: "images", busy: Busy::Container(marker.clone()), signal: Signal::SIGINT, project: None },
    );
    assert_eq!(done.record["stages"][0]["gates"][0]["status"], "interrupted");
    assert!(done.elapsed < Duration::from_secs(30), "took {:?}", done.elapsed);
    // The engine stops the build when its client goes away; give it a moment to remove the container.
    let started = Instant::now();
    while !containers_running(&marker).is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(containers_running(&marker), Vec::<String>::new(), "the build's container is left");
    assert!(docker(&["images", "-q", &format!("{image}:latest")]).is_empty(), "an image was tagged");
}

fn compose_case(when: &str, signal: Signal, busy: impl Fn(&str) -> Busy) {
    if !docker_ready("interrupted compose") {
        return;
    }
    let project = unique("xtask-int");
    let busy = busy(&project);
    let ws = Workspace::new(&format!(
        r#"version: 1
stages:
  - {{ name: up, kind: compose, file: compose.yml, project: {project}, wait: 5m }}
  - {{ name: down, kind: compose, when: {when}, action: down, file: compose.yml, project: {project} }}
"#
    ));
    // Never healthy: `up` waits until the signal.
    write(
        &ws,
        "compose.yml",
        &format!(
            "version: \"2.4\"\nservices:\n  app:\n    image: {BASE_IMAGE}\n    command: [\"sleep\", \"300\"]\n    stop_signal: SIGKILL\n    healthcheck: {{ test: [\"CMD\", \"false\"], interval: 1s }}\n"
        ),
    );
    let done = check(&ws, Case { stage: "up", busy, signal, project: Some(project.clone()) });
    assert_eq!(done.record["stages"][1]["status"], "passed", "the stack was taken down: {}", done.output);
}

#[test]
fn compose_stage_sigint_while_waiting_for_health_brings_the_stack_down() {
    compose_case("always", Signal::SIGINT, |project| Busy::Project(project.to_string()));
}

#[test]
fn compose_stage_sigterm_counts_as_failure_for_on_failure_cleanup() {
    // Early: while compose itself runs (`config --services`, then `up`).
    compose_case("on_failure", Signal::SIGTERM, |_| Busy::After(Duration::from_millis(300)));
}

#[test]
fn base_image_stage_sigint_stops_mmdebstrap_and_creates_nothing() {
    if !docker_ready("interrupted base image") {
        return;
    }
    // A recipe no image was made from, so the stage must create one: mmdebstrap runs for minutes.
    let image = format!("{}:bookworm", unique("xtask-test/base"));
    let _cleanup = Images(vec![image.clone()]);
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: base\n    kind: base_image\n    image: \"{image}\"\n    packages: [less]\n{CLEANUP}"
    ));
    let scratch_before = mmdebstrap_dirs();
    let done =
        check(&ws, Case { stage: "base", busy: Busy::Process("mmdebstrap"), signal: Signal::SIGINT, project: None });
    assert_eq!(done.record["stages"][0]["gates"][0]["status"], "interrupted", "{}", done.output);
    assert!(docker(&["images", "-q", &image]).is_empty(), "an image was created");
    let base = ws.path().join("target/xtask/base");
    let left: Vec<_> = std::fs::read_dir(&base).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "rootfs files left: {left:?}");
    let new_scratch: Vec<_> = mmdebstrap_dirs().into_iter().filter(|d| !scratch_before.contains(d)).collect();
    assert!(new_scratch.is_empty(), "mmdebstrap's scratch directories left: {new_scratch:?}");
}

/// mmdebstrap's temporary directories.
fn mmdebstrap_dirs() -> Vec<std::path::PathBuf> {
    let tmp = std::env::temp_dir();
    std::fs::read_dir(&tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("mmdebstrap")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn migrate_stage_sigterm_removes_the_migrator() {
    if !docker_ready("interrupted migrate") {
        return;
    }
    let marker = unique("migrate-marker");
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: migrate\n    kind: migrate\n    image: {BASE_IMAGE}\n    network: bridge\n    command: [sh, -c, \"sleep 300; echo {marker}\"]\n{CLEANUP}"
    ));
    let done = check(
        &ws,
        Case { stage: "migrate", busy: Busy::Container(marker.clone()), signal: Signal::SIGTERM, project: None },
    );
    assert!(done.elapsed < Duration::from_secs(30), "took {:?}", done.elapsed);
    assert_eq!(containers_running(&marker), Vec::<String>::new(), "the migrator's container is left");
}
