//! Running pipelines for real: fail-fast, cleanup, records, reports, interruption.

mod common;

use std::time::{Duration, Instant};

use common::{Workspace, stderr, stdout, walk};

const THIRD_GATE_FAILS: &str = r#"
version: 1
name: third gate fails
checklist:
  - { id: one, section: S, item: First }
  - { id: two, section: S, item: Second }
stages:
  - name: first
    kind: command
    program: echo
    args: [alpha beta]
    gates:
      - { name: says alpha, kind: output, contains: [alpha], checklist: [one] }
      - { name: says beta, kind: output, contains: [beta] }
  - name: second
    kind: command
    program: echo
    args: [gamma]
    gates:
      - { name: says delta, kind: output, contains: [delta], checklist: [two] }
  - name: third
    kind: command
    program: "true"
  - name: cleanup
    kind: command
    when: always
    program: touch
    args: [cleaned]
"#;

#[test]
fn a_failed_gate_stops_the_run_skips_later_stages_and_runs_cleanup() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(ws.path().join("cleaned").exists(), "the cleanup stage ran");

    let record = ws.record();
    assert_eq!(record["status"], "failed");
    let status = |i: usize| record["stages"][i]["status"].as_str().unwrap().to_string();
    assert_eq!([status(0), status(1), status(2), status(3)], ["passed", "failed", "skipped", "passed"]);
    assert_eq!(record["failure"]["gate"], "says delta");
    assert_eq!(record["stages"][2]["gates"][0]["status"], "skipped");
    assert_eq!(record["checklist"][1]["status"], "failed");

    let report = std::fs::read_to_string(ws.latest().join("report.md")).unwrap();
    assert!(report.contains("| third | command | ⏭️ skipped |"), "{report}");
    let html = std::fs::read_to_string(ws.latest().join("report.html")).unwrap();
    assert!(html.contains("<b>third</b> (command)</td><td></td><td class=\"skipped\">skipped"), "{html}");

    let junit = std::fs::read_to_string(ws.latest().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("junit.xml parses");
    let failures: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("failure")).collect();
    assert_eq!(failures.len(), 1, "{junit}");
    assert_eq!(failures[0].parent().unwrap().attribute("name"), Some("says delta"));
    assert!(failures[0].attribute("message").unwrap().contains("missing \"delta\""), "{junit}");
    let skipped = doc.descendants().filter(|n| n.has_tag_name("skipped")).count();
    assert_eq!(skipped, 1, "the third stage's implicit exit code gate: {junit}");
}

#[test]
fn keep_going_runs_everything_and_fails_at_the_end() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    let out = ws.run(&["deploy", "--keep-going"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ws.record()["stages"][2]["status"], "passed");
}

#[test]
fn a_passing_run_exits_0_and_json_prints_the_record() {
    let ws = Workspace::new("version: 1\nstages:\n  - { name: ok, kind: command, program: \"true\" }\n");
    let out = ws.run(&["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON record");
    assert_eq!(record["status"], "passed");
    assert_eq!(record["exit_code"], 0);
}

#[test]
fn stages_run_in_parallel_where_needs_allow() {
    // Each waits for the other's file: only a parallel run finishes.
    let ws = Workspace::new(
        r#"
version: 1
stages:
  - { name: a, kind: command, program: sh, args: [-c, "touch a; while [ ! -e b ]; do sleep 0.05; done"], needs: [], timeout: 20s }
  - { name: b, kind: command, program: sh, args: [-c, "touch b; while [ ! -e a ]; do sleep 0.05; done"], needs: [], timeout: 20s }
  - { name: c, kind: command, program: "true", needs: [a, b] }
"#,
    );
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn only_from_and_skip_select_stages() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    let out = ws.run(&["deploy", "--only", "first,third"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record = ws.record();
    assert_eq!(record["stages"][1]["status"], "not_run");
    assert_eq!(record["stages"][2]["status"], "passed");

    let out = ws.run(&["deploy", "--from", "third"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ws.record()["stages"][0]["reason"], "before --from");

    let out = ws.run(&["deploy", "--skip", "second"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn dry_run_runs_nothing() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    let out = ws.run(&["deploy", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!ws.path().join("cleaned").exists());
    assert!(stdout(&out).contains("runs: echo alpha beta"), "{}", stdout(&out));
}

#[test]
fn a_stage_timeout_fails_the_stage() {
    let ws = Workspace::new(
        "version: 1\nstages:\n  - { name: slow, kind: command, program: sleep, args: [\"30\"], timeout: 300ms }\n",
    );
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ws.record()["stages"][0]["reason"], "timed out after 300ms");
}

#[test]
fn plan_shows_resolved_targets_and_has_no_side_effects() {
    let ws = Workspace::new(
        "version: 1\nvariables: { PORT: \"5432\" }\nstages:\n  - name: db\n    kind: verify\n    gates:\n      - { kind: tcp, address: \"127.0.0.1:${PORT}\" }\n",
    );
    let out = ws.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "environment: local\n  1. db (verify)\n       runs: gates only\n       gate tcp (tcp): tcp://127.0.0.1:5432\n"
    );
    assert!(!ws.path().join("target").exists());
}

#[test]
fn report_rerenders_a_stored_run_with_user_templates() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    ws.run(&["deploy"]);
    let templates = ws.path().join("my-templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(templates.join("report.md"), "custom {{ run.status }} {{ run.stages | length }}\n").unwrap();
    let out = ws.run(&["report", "--templates", "my-templates"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(ws.latest().join("report.md")).unwrap(), "custom failed 4\n");
}

#[test]
fn github_step_summary_gets_the_report() {
    let ws = Workspace::new(THIRD_GATE_FAILS);
    let summary = ws.path().join("summary.md");
    let out = ws.xtask(&["deploy"]).env("GITHUB_STEP_SUMMARY", &summary).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(std::fs::read_to_string(summary).unwrap().contains("third gate fails — rehearsal FAILED"));
}

#[test]
fn secrets_never_reach_any_file_or_output() {
    let secret = "tr0ub4dor-and-3-horses";
    let ws = Workspace::new(
        r#"
version: 1
secrets: { API_TOKEN: {} }
stages:
  - name: uses-secret
    kind: command
    program: sh
    args: [-c, "echo token=$0; echo token=$0 >&2; exit 1", "${secret:API_TOKEN}"]
"#,
    );
    let out = ws.xtask(&["deploy", "--verbose"]).env("API_TOKEN", secret).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains(secret) && !stderr(&out).contains(secret));
    assert!(stdout(&out).contains("token=***"), "{}", stdout(&out));
    for entry in walk(&ws.path().join("target")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(secret), "{} holds the secret", entry.display());
    }
}

#[test]
fn sigint_cancels_the_stage_kills_its_children_runs_cleanup_and_exits_130() {
    let ws = Workspace::new(
        r#"
version: 1
stages:
  - name: long
    kind: command
    program: sh
    args: [-c, "sleep 300 & echo $! > child.pid; wait"]
  - name: after
    kind: command
    program: "true"
  - name: cleanup
    kind: command
    when: always
    program: touch
    args: [cleaned]
"#,
    );
    let mut child = ws.xtask(&["deploy"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid_file = ws.path().join("child.pid");
    let started = Instant::now();
    while !pid_file.exists() || std::fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the long stage never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sleeper: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(ws.path().join("cleaned").exists(), "cleanup ran");
    let record = ws.record();
    assert_eq!(record["status"], "interrupted");
    assert_eq!(record["stages"][0]["status"], "interrupted");
    assert_eq!(record["stages"][1]["status"], "skipped");
    assert!(!alive(sleeper), "the stage's child process {sleeper} is still running");
}

/// Running or sleeping; a zombie waiting for its reaper does not count.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn a_generated_secret_has_one_value_per_run() {
    let ws = Workspace::new(
        r#"
version: 1
secrets: { PASSWORD: { generate: true } }
stages:
  - name: same
    kind: command
    program: sh
    args: [-c, 'test "$0" = "$1"', "${secret:PASSWORD}", "${secret:PASSWORD}"]
"#,
    );
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
}
