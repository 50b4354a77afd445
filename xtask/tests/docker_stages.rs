//! `build` and `compose` stages against the real Docker engine: builds that pass and fail, a stack that
//! becomes healthy, one that never does, and two runs at once. Nothing is left behind.

mod common;

use common::{BASE_IMAGE, Images, Workspace, docker_ready, project_containers, stderr, stdout, unique};

fn build_pipeline(image: &str) -> String {
    format!(
        "version: 1\nstages:\n  - name: images\n    kind: build\n    tags: [sha, latest]\n    images:\n      - {{ name: \"{image}\", context: ctx, args: {{ BASE: \"{BASE_IMAGE}\" }} }}\n"
    )
}

fn write(ws: &Workspace, path: &str, text: &str) {
    let path = ws.path().join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_build_succeeds_honours_dockerignore_and_records_id_and_tags() {
    if !docker_ready("build succeeds") {
        return;
    }
    let image = unique("xtask-test/ok");
    let _cleanup = Images(vec![format!("{image}:latest"), format!("{image}:nogit")]);
    let ws = Workspace::new(&build_pipeline(&image));
    write(
        &ws,
        "ctx/Dockerfile",
        "ARG BASE\nFROM ${BASE}\nCOPY . /ctx\nRUN test -e /ctx/kept.txt && test ! -e /ctx/ignored.txt\n",
    );
    write(&ws, "ctx/kept.txt", "kept");
    write(&ws, "ctx/ignored.txt", "ignored");
    write(&ws, "ctx/.dockerignore", "ignored.txt\n");
    // A file with holes: tar writes it as a GNU sparse entry unless told not to, which the engine refuses.
    let sparse = std::fs::File::create(ws.path().join("ctx/sparse.bin")).unwrap();
    sparse.set_len(4 << 20).unwrap();
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let built = &ws.record()["stages"][0]["outputs"]["images"][0];
    assert!(built["id"].as_str().unwrap().starts_with("sha256:"), "{built}");
    assert_eq!(built["tags"][1], format!("{image}:latest"));
    assert!(built["duration_ms"].is_u64());
}

#[test]
fn a_broken_dockerfile_fails_the_gate_naming_the_step() {
    if !docker_ready("broken build") {
        return;
    }
    let image = unique("xtask-test/broken");
    let _cleanup = Images(vec![format!("{image}:latest"), format!("{image}:nogit")]);
    let ws = Workspace::new(&build_pipeline(&image));
    write(&ws, "ctx/Dockerfile", "ARG BASE\nFROM ${BASE}\nRUN echo about to fail && exit 3\n");
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    let gate = &ws.record()["stages"][0]["gates"][0];
    assert_eq!(gate["status"], "failed");
    let actual = gate["actual"].as_str().unwrap();
    assert!(actual.contains("RUN echo about to fail && exit 3"), "{actual}");
    assert!(actual.contains("about to fail"), "the last output lines: {actual}");
}

fn compose_pipeline(project: &str, wait: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: up
    kind: compose
    file: compose.yml
    project: {project}
    wait: {wait}
  - name: down
    kind: compose
    when: always
    action: down
    file: compose.yml
    project: {project}
"#
    )
}

fn compose_file(healthcheck: &str) -> String {
    format!(
        r#"version: "2.4"
services:
  app:
    image: {BASE_IMAGE}
    command: ["sh", "-c", "echo app is booting; sleep 300"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "{healthcheck}"]
      interval: 1s
      retries: 2
  job:
    image: {BASE_IMAGE}
    command: ["true"]
"#
    )
}

#[test]
fn a_healthy_stack_passes_and_is_taken_down() {
    if !docker_ready("healthy stack") {
        return;
    }
    let project = unique("xtask-ok");
    let ws = Workspace::new(&compose_pipeline(&project, "60s"));
    write(&ws, "compose.yml", &compose_file("true"));
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let gates = &ws.record()["stages"][0]["gates"];
    assert_eq!(gates[0]["name"], "service app");
    assert_eq!(gates[0]["actual"], "running, healthy");
    assert_eq!(gates[1]["actual"], "exited 0 (one-shot)");
    assert!(project_containers(&project).is_empty());
}

#[test]
fn a_service_that_never_becomes_healthy_fails_within_the_wait_with_its_logs() {
    if !docker_ready("unhealthy stack") {
        return;
    }
    let project = unique("xtask-sick");
    let ws = Workspace::new(&compose_pipeline(&project, "8s"));
    write(&ws, "compose.yml", &compose_file("false"));
    let started = std::time::Instant::now();
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    let record = ws.record();
    let gate = &record["stages"][0]["gates"][0];
    assert_eq!(gate["name"], "service app");
    assert_eq!(gate["status"], "failed");
    let actual = gate["actual"].as_str().unwrap();
    assert!(actual.contains("unhealthy") && actual.contains("app is booting"), "{actual}");
    assert_eq!(record["stages"][1]["status"], "passed", "the down stage cleaned up");
    assert!(project_containers(&project).is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn two_runs_at_once_with_different_projects_both_succeed() {
    if !docker_ready("two runs") {
        return;
    }
    let runs: Vec<(Workspace, String)> = (0..2)
        .map(|_| {
            let project = unique("xtask-pair");
            let ws = Workspace::new(&compose_pipeline(&project, "60s"));
            write(&ws, "compose.yml", &compose_file("true"));
            (ws, project)
        })
        .collect();
    let piped = |ws: &Workspace| {
        ws.xtask(&["deploy"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let children: Vec<_> = runs.iter().map(|(ws, _)| piped(ws)).collect();
    for ((ws, project), child) in runs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
        assert_eq!(ws.record()["status"], "passed");
        assert!(project_containers(project).is_empty());
    }
}
