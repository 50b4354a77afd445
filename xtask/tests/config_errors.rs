//! Malformed pipelines: every one exits 2 with a located message, compared whole against a snapshot.

mod common;

use std::path::Path;

use common::{Workspace, assert_snapshot, stderr};

#[test]
fn malformed_pipelines_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/malformed exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "at least 12 malformed cases, found {}", cases.len());
    for case in cases {
        let ws = Workspace::new(&std::fs::read_to_string(&case).expect("case readable"));
        let out = ws.run(&["validate"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: exit code\n{err}", case.display());
        assert!(!err.contains("panicked"), "{}: panicked\n{err}", case.display());
        assert_snapshot(&case.with_extension("out"), &err);
    }
}

#[test]
fn errors_point_at_file_line_and_column_with_a_caret() {
    let ws = Workspace::new(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed/needs_unknown.yaml"))
            .unwrap(),
    );
    let err = stderr(&ws.run(&["validate"]));
    assert!(err.starts_with("pipeline.yaml:9:13: error: `needs` names no stage: `biuld`"), "{err}");
    assert!(err.contains("^^^^^"), "{err}");
    assert!(err.contains("did you mean `build`?"), "{err}");
}

#[test]
fn binary_data_is_refused_cleanly() {
    let ws = Workspace::new("");
    std::fs::write(ws.path().join("pipeline.yaml"), [0x76, 0x65, 0x72, 0xff, 0xfe, 0x00, 0x01, 0x80]).unwrap();
    let out = ws.run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
}

#[test]
fn deep_nesting_is_refused_cleanly() {
    let ws = Workspace::new(&format!("version: 1\nvariables: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)));
    let out = ws.run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_ten_megabyte_file_is_handled() {
    let mut text = String::from("version: 1\nstages:\n");
    let line = "# padding padding padding padding padding padding padding padding padding padding\n";
    while text.len() < 10 * 1024 * 1024 {
        text.push_str(line);
    }
    text.push_str("  - { name: a, kind: command, program: \"true\" }\n");
    let ws = Workspace::new(&text);
    let out = ws.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn garbage_bytes_never_panic() {
    // A fixed pseudo-random sequence: the same garbage every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..400)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"version: 1\nstages:\n - name: kind{}[]&*!|>'\"%@`#,?-: \t"[(state % 48) as usize]
            })
            .collect();
        let ws = Workspace::new("");
        std::fs::write(ws.path().join("pipeline.yaml"), &bytes).unwrap();
        let out = ws.run(&["validate"]);
        assert!(matches!(out.status.code(), Some(0 | 2)), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn unknown_stage_on_the_command_line_gets_a_suggestion() {
    let ws = Workspace::new("version: 1\nstages:\n  - { name: build, kind: command, program: \"true\" }\n");
    let out = ws.run(&["deploy", "--only", "biuld"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: no stage is named `biuld`; did you mean `build`?\n");
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::new("version: 1\n");
    assert_eq!(ws.run(&["deploy", "--no-such-flag"]).status.code(), Some(2));
}
