//! Fault drills against real containers: a fault recovered from in time, one that is not, and a run
//! SIGKILLed while its fault holds, whose leftover the next run undoes and reports.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, docker_ready, project_containers, stderr, stdout, unique};

/// Takes the compose project down even when an assertion failed half-way.
struct Project(String);

impl Drop for Project {
    fn drop(&mut self) {
        for id in project_containers(&self.0) {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &id]).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &format!("{}_default", self.0)]).output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn compose_file(restart: &str, port: u16) -> String {
    format!(
        r#"version: "2.4"
services:
  cache:
    image: rehearsal/redis:7.0
    environment: {{ REDIS_PASSWORD: drillpass }}
    ports: ["127.0.0.1:{port}:6379"]
    restart: "{restart}"
    healthcheck:
      test: ["CMD-SHELL", "REDISCLI_AUTH=drillpass redis-cli -h 127.0.0.1 ping | grep -q PONG"]
      interval: 1s
      retries: 30
"#
    )
}

/// A stack of one Redis, a drill stage with `fault`, a check stage and the cleanup.
fn pipeline(project: &str, port: u16, fault: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: stack
    kind: compose
    file: compose.yml
    project: {project}
    wait: 60s
  - name: chaos
    kind: drill
    drill: faults
    project: {project}
    faults:
{fault}
  - name: check
    kind: verify
    needs: []
    gates:
      - {{ name: cache answers, kind: redis, url: "redis://:drillpass@127.0.0.1:{port}", ping: true, timeout: 15s }}
  - name: down
    kind: compose
    when: always
    action: down
    file: compose.yml
    project: {project}
"#
    )
}

fn kill_fault(port: u16, within: &str) -> String {
    format!(
        r#"      - name: cache killed
        action: kill
        service: cache
        recover_within: {within}
        restarts: {{ cache: increased }}
        recover:
          - {{ name: cache answers, kind: redis, url: "redis://:drillpass@127.0.0.1:{port}", ping: true }}"#
    )
}

fn workspace(project: &str, restart: &str, fault: &str, port: u16) -> Workspace {
    let ws = Workspace::new(&pipeline(project, port, fault));
    std::fs::write(ws.path().join("compose.yml"), compose_file(restart, port)).unwrap();
    ws
}

fn ledger(ws: &Workspace) -> serde_json::Value {
    let text = std::fs::read_to_string(ws.path().join("target/xtask/faults.json")).unwrap_or_else(|_| "[]".into());
    serde_json::from_str(&text).unwrap()
}

fn drill_stage(record: &serde_json::Value) -> &serde_json::Value {
    record["stages"].as_array().unwrap().iter().find(|s| s["name"] == "chaos").expect("the drill stage ran")
}

#[test]
fn a_killed_service_restarts_and_its_recovery_time_is_reported() {
    if !docker_ready("fault drill passes") {
        return;
    }
    let project = Project(unique("xtask-drill-ok"));
    let port = free_port();
    let ws = workspace(&project.0, "unless-stopped", &kill_fault(port, "45s"), port);
    let listed = ws.run(&["drill", "--list"]);
    assert!(stdout(&listed).starts_with("chaos\tfaults\t"), "{}", stdout(&listed));

    let out = ws.run(&["drill", "chaos"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let record = ws.record();
    let ran: Vec<&str> = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "not_run")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["stack", "chaos", "down"], "the drill, what it needs, and the cleanup");
    let drill = drill_stage(&record);
    let fault = &drill["outputs"]["faults"][0];
    assert_eq!(fault["status"], "passed", "{drill:#}");
    let ms = fault["recovery_ms"].as_u64().expect("a measured recovery time");
    assert!(ms > 0 && ms < 45_000, "{ms}");
    let names: Vec<&str> = drill["gates"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["cache killed: cache answers (after the fault)", "cache killed: recovered", "cache killed: cache restarts"]
    );
    assert!(drill["gates"][1]["actual"].as_str().unwrap().starts_with("recovered in "), "{drill:#}");

    let md = std::fs::read_to_string(ws.latest().join("report.md")).unwrap();
    assert!(md.contains("## Fault drill: chaos") && md.contains("| cache killed | kill `cache` |"), "{md}");
    let html = std::fs::read_to_string(ws.latest().join("report.html")).unwrap();
    assert!(html.contains("Fault drill: chaos"), "{html}");
    let junit = std::fs::read_to_string(ws.latest().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("junit.xml parses");
    let out_text: String =
        doc.descendants().filter(|n| n.has_tag_name("system-out")).filter_map(|n| n.text()).collect();
    assert!(out_text.contains("fault cache killed (kill cache): passed, recovered in"), "{junit}");
    assert_eq!(ledger(&ws), serde_json::json!([]), "every fault left the ledger");
    assert!(project_containers(&project.0).is_empty());
}

#[test]
fn a_service_without_restart_policy_misses_its_deadline_and_is_started_again() {
    if !docker_ready("fault drill fails") {
        return;
    }
    let project = Project(unique("xtask-drill-fail"));
    let port = free_port();
    let ws = workspace(&project.0, "no", &kill_fault(port, "6s"), port);
    let out = ws.run(&["deploy", "--skip", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let record = ws.record();
    let drill = drill_stage(&record);
    assert_eq!(drill["status"], "failed");
    assert_eq!(drill["outputs"]["faults"][0]["status"], "failed");
    let recovered = drill["gates"].as_array().unwrap().iter().find(|g| g["name"] == "cache killed: recovered").unwrap();
    assert_eq!(recovered["status"], "failed", "{drill:#}");
    let actual = recovered["actual"].as_str().unwrap();
    assert!(actual.starts_with("not recovered after") && actual.contains("exited"), "{actual}");
    let restarts =
        drill["gates"].as_array().unwrap().iter().find(|g| g["name"] == "cache killed: cache restarts").unwrap();
    assert_eq!(restarts["status"], "failed", "no restart policy, no restart");
    assert!(stdout(&out).contains("first failure: chaos / cache killed"), "{}", stdout(&out));
    assert_eq!(ledger(&ws), serde_json::json!([]), "the kill was undone (started again) and left the ledger");
    assert!(project_containers(&project.0).is_empty());
}

#[test]
fn a_run_killed_while_its_fault_holds_is_undone_by_the_next_run() {
    if !docker_ready("SIGKILLed drill") {
        return;
    }
    let project = Project(unique("xtask-drill-sigkill"));
    let port = free_port();
    let pause = "      - name: cache frozen\n        action: pause\n        service: cache\n        hold: 120s\n        recover_within: 30s";
    let ws = workspace(&project.0, "unless-stopped", pause, port);
    let mut first =
        ws.xtask(&["deploy", "--skip", "check"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let container = loop {
        let entries = ledger(&ws);
        if let Some(id) = entries[0]["undo"]["container"].as_str()
            && inspect(id, "{{.State.Paused}}") == "true"
        {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the fault never showed in the ledger: {entries}");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before its fault was injected");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ledger(&ws)[0]["undo"]["action"], "unpause");
    first.kill().unwrap(); // SIGKILL: no cleanup, no undo
    first.wait().unwrap();
    assert_eq!(inspect(&container, "{{.State.Paused}}"), "true", "the fault outlived its run");
    // The dead run also left its environment lock: clearing it is the operator's call.
    let unlocked = ws.run(&["unlock"]);
    assert_eq!(unlocked.status.code(), Some(0), "{}{}", stdout(&unlocked), stderr(&unlocked));

    let second = ws.run(&["deploy", "--only", "check"]);
    let printed = format!("{}{}", stdout(&second), stderr(&second));
    assert_eq!(second.status.code(), Some(0), "{printed}");
    assert!(printed.contains("undid a leftover fault of run") && printed.contains("chaos / cache frozen"), "{printed}");
    let record = ws.record();
    let leftover = &record["leftover_faults"][0];
    assert_eq!(leftover["fault"], "cache frozen");
    assert_eq!(leftover["outcome"], "undone");
    assert!(leftover["undo"].as_str().unwrap().starts_with("unpause container"), "{leftover}");
    let md = std::fs::read_to_string(ws.latest().join("report.md")).unwrap();
    assert!(md.contains("## Leftover faults undone") && md.contains("cache frozen"), "{md}");
    assert_eq!(ledger(&ws), serde_json::json!([]));
    assert!(project_containers(&project.0).is_empty(), "the second run's cleanup took the stack down");
}

#[test]
fn ctrl_c_while_a_fault_holds_undoes_it_before_the_run_ends() {
    if !docker_ready("interrupted drill") {
        return;
    }
    let project = Project(unique("xtask-drill-sigint"));
    let port = free_port();
    let pause = "      - name: cache frozen\n        action: pause\n        service: cache\n        hold: 120s\n        recover_within: 30s";
    let ws = workspace(&project.0, "unless-stopped", pause, port);
    let mut run = ws.xtask(&["deploy", "--skip", "check"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let container = loop {
        if let Some(id) = ledger(&ws)[0]["undo"]["container"].as_str()
            && inspect(id, "{{.State.Paused}}") == "true"
        {
            break id.to_string();
        }
        assert!(Instant::now() < deadline && run.try_wait().unwrap().is_none(), "the fault was never injected");
        std::thread::sleep(Duration::from_millis(200));
    };
    send_signal(run.id(), "-INT");
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(ledger(&ws), serde_json::json!([]), "undone and off the ledger");
    let record = ws.record();
    let drill = drill_stage(&record);
    assert_eq!(drill["status"], "interrupted", "{drill:#}");
    assert_eq!(inspect(&container, "{{.State.Status}}"), "", "the cleanup stage removed the (unpaused) stack");
}

fn send_signal(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker").args(["inspect", "--format", format, id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
