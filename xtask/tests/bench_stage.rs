//! The `bench` stage through the real binary: thresholds as gates, figures in the record and reports.

mod common;

use std::net::TcpListener;

use common::{Workspace, stderr, stdout};

fn pipeline(url: &str, thresholds: &str) -> String {
    format!(
        "version: 1\nchecklist:\n  - {{ id: perf, section: Performance, item: fast }}\nstages:\n  - name: load\n    kind: bench\n    connections: 4\n    requests: 2000\n    scenario:\n      - {{ url: \"{url}\" }}\n    thresholds:\n{thresholds}"
    )
}

#[test]
fn thresholds_that_hold_pass_and_the_report_shows_the_figures() {
    let url = format!("http://{}/", common::http_ok_server());
    let ws = Workspace::new(&pipeline(
        &url,
        "      - { check: \"p99 < 5s\", checklist: [perf] }\n      - { check: \"error_rate < 1%\" }\n",
    ));
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let record = ws.record();
    assert_eq!(record["stages"][0]["outputs"]["bench"]["completed"], 2000);
    assert_eq!(record["checklist"][0]["status"], "passed");
    let report = std::fs::read_to_string(ws.latest().join("report.md")).unwrap();
    assert!(report.contains("## Benchmark: load"), "{report}");
    let html = std::fs::read_to_string(ws.latest().join("report.html")).unwrap();
    assert!(html.contains("load-latency.svg"), "{html}");
    assert!(std::fs::read_to_string(ws.latest().join("load-latency.svg")).unwrap().starts_with("<svg"));
}

#[test]
fn a_threshold_that_does_not_hold_fails_the_gate() {
    let url = format!("http://{}/", common::http_ok_server());
    let ws = Workspace::new(&pipeline(&url, "      - { check: \"throughput > 100000000/s\" }\n"));
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    let gate = &ws.record()["stages"][0]["gates"][0];
    assert_eq!(gate["status"], "failed");
    assert_eq!(gate["name"], "throughput > 100000000/s");
}

#[test]
fn zero_completed_requests_fail_even_a_lenient_threshold() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let ws = Workspace::new(
        &pipeline(&format!("http://{closed}/"), "      - { check: \"p99 < 60s\" }\n")
            .replace("requests: 2000", "duration: 1s"),
    );
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(ws.record()["stages"][0]["gates"][0]["status"], "failed");
}

#[test]
fn a_bad_threshold_is_a_located_load_error() {
    let ws = Workspace::new(&pipeline("http://127.0.0.1:1/", "      - { check: \"p95 < fast\" }\n"));
    let out = ws.run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("pipeline.yaml:12:18: error: threshold"), "{}", stderr(&out));
}
