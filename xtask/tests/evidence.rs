//! Evidence at the first failed gate: a small stack (Postgres, the reference service, a service that
//! prints a planted secret) comes up, its gates pass; then Postgres is stopped, the `sql` and
//! `/health/ready` gates fail with clear messages, and the evidence bundle holds Postgres' state
//! (exited) and logs, is linked from every report, and contains no secret.

mod common;

use common::control_plane::{Context, free_port};
use common::{BASE_IMAGE, Images, Workspace, docker_ready, project_containers, stderr, stdout, unique};

const PASSWORD: &str = "ev-Secret-pw-9931";

fn compose_file(image: &str) -> String {
    format!(
        r#"version: "2.4"
services:
  postgres:
    image: rehearsal/postgres:15
    environment:
      POSTGRES_PASSWORD: ${{PG_PASSWORD:?PG_PASSWORD must be set}}
      POSTGRES_USER: control_plane
      POSTGRES_DB: control_plane
    ports: ["127.0.0.1:${{PG_PORT}}:5432"]
    healthcheck:
      test: ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "control_plane", "-d", "control_plane"]
      interval: 1s
      retries: 60
  control-plane:
    image: {image}:latest
    environment:
      DATABASE_URL: postgres://control_plane:${{PG_PASSWORD}}@postgres:5432/control_plane
    ports: ["127.0.0.1:${{CP_PORT}}:8080"]
    healthcheck:
      test: ["CMD", "control-plane", "healthcheck"]
      interval: 1s
      retries: 30
  # Prints the secret, so the bundle's logs must redact it.
  planter:
    image: {BASE_IMAGE}
    command: ["sh", "-c", "echo planted=$$PLANTED; sleep 600"]
    environment:
      PLANTED: ${{PG_PASSWORD}}
    stop_signal: SIGKILL
"#
    )
}

fn pipeline(project: &str, image: &str, ctx: &Context, pg: u16, cp: u16) -> String {
    let env = format!("{{ PG_PASSWORD: \"${{secret:PG_PASSWORD}}\", PG_PORT: \"{pg}\", CP_PORT: \"{cp}\" }}");
    let compose = format!("file: compose.yml\n    project: {project}\n    env: {env}");
    format!(
        r#"version: 1
secrets:
  PG_PASSWORD: {{}}
stages:
  - name: image
    kind: build
    tags: [latest]
    images:
      - {{ name: "{image}", context: "{ctx}" }}
  - name: db
    kind: compose
    services: [postgres, planter]
    wait: 90s
    {compose}
  - name: migrate
    kind: migrate
    image: "{image}:latest"
    project: {project}
    env: {{ DATABASE_URL: "postgres://control_plane:${{secret:PG_PASSWORD}}@postgres:5432/control_plane" }}
  - name: app
    kind: compose
    services: [control-plane]
    no_deps: true
    wait: 60s
    {compose}
  - name: healthy
    kind: verify
    gates:
      - {{ name: postgres answers, kind: sql, url: "${{DB_URL}}", query: SELECT 1, equals: "1" }}
      - name: postgres ready
        kind: http
        url: http://127.0.0.1:{cp}/health/ready
        timeout: 30s
        expect: {{ status: [200, 503], json: [{{ path: $.checks.postgres.status, equals: up }}] }}
  - name: stop-postgres
    kind: command
    program: docker-compose
    args: [-p, {project}, -f, compose.yml, stop, postgres]
    env: {env}
  # Plain order (no `needs`): with --keep-going each runs after the one before, whatever it did.
  - name: sql-down
    kind: verify
    gates:
      - {{ name: postgres answers, kind: sql, url: "${{DB_URL}}", query: SELECT 1, equals: "1", timeout: 2s }}
  - name: ready-down
    kind: verify
    gates:
      - name: postgres ready
        kind: http
        url: http://127.0.0.1:{cp}/health/ready
        timeout: 2s
        expect: {{ status: [200, 503], json: [{{ path: $.checks.postgres.status, equals: up }}] }}
  - name: down
    kind: compose
    when: always
    action: down
    volumes: true
    {compose}
"#,
        ctx = ctx.path().display()
    )
    // Secrets are not allowed in `variables:`, so the URL is written out where it is used.
    .replace("${DB_URL}", &format!("postgres://control_plane:${{secret:PG_PASSWORD}}@127.0.0.1:{pg}/control_plane"))
}

fn read(ws: &Workspace, file: &str) -> String {
    std::fs::read_to_string(ws.latest().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn a_stopped_postgres_fails_the_sql_and_ready_gates_and_leaves_evidence_without_secrets() {
    if !docker_ready("evidence") {
        return;
    }
    let project = unique("xtask-evidence");
    let image = unique("xtask-test/cp-evidence");
    let _images = Images(vec![format!("{image}:latest")]);
    let ctx = Context::new("evidence", None);
    let ws = Workspace::new(&pipeline(&project, &image, &ctx, free_port(), free_port()));
    std::fs::write(ws.path().join("compose.yml"), compose_file(&image)).unwrap();

    let out = ws.xtask(&["deploy", "--keep-going"]).env("PG_PASSWORD", PASSWORD).output().unwrap();
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let record = ws.record();
    let stages = record["stages"].as_array().unwrap();
    let stage = |name: &str| stages.iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(stage("healthy")["status"], "passed", "the gates pass while Postgres runs: {printed}");

    let sql = stage("sql-down")["gates"][0].clone();
    assert_eq!(sql["status"], "failed");
    let sql_actual = sql["actual"].as_str().unwrap();
    assert!(sql_actual.contains("cannot connect") && sql_actual.contains("refused"), "{sql}");
    let ready = stage("ready-down")["gates"][0].clone();
    assert_eq!(ready["status"], "failed");
    let ready_actual = ready["actual"].as_str().unwrap();
    assert!(ready_actual.contains("$.checks.postgres.status") && ready_actual.contains("down"), "{ready}");

    // The bundle, taken at the first failure (sql-down), before `down` removed the stack.
    assert_eq!(record["evidence"], "evidence/README.md");
    let index = read(&ws, "evidence/README.md");
    eprintln!("{index}\nready-down: {ready_actual}");
    assert!(index.contains("stage `sql-down` failed") && index.contains("### postgres answers (sql)"), "{index}");
    let row = index.lines().find(|l| l.starts_with(&format!("| {project} | postgres |"))).expect("a postgres row");
    assert!(row.contains("| exited |"), "{row}");
    assert!(index.contains(&format!("| {project} | control-plane | running |")), "{index}");
    let pg_logs = read(&ws, &format!("evidence/{project}.postgres.log"));
    assert!(pg_logs.contains("shut down"), "postgres' last words: {pg_logs}");
    let states: serde_json::Value = serde_json::from_str(&read(&ws, "evidence/services.json")).unwrap();
    let pg = states.as_array().unwrap().iter().find(|s| s["service"] == "postgres").unwrap();
    assert_eq!(pg["status"], "exited");
    assert_eq!(pg["oom_killed"], false);
    let planter = read(&ws, &format!("evidence/{project}.planter.log"));
    assert!(planter.contains("planted=***"), "the planted secret is masked: {planter}");

    for report in ["report.md", "report.html", "junit.xml"] {
        // HTML and XML escape `/` as `&#x2f;`, which links resolve the same.
        let text = read(&ws, report).replace("&#x2f;", "/");
        assert!(text.contains("evidence/README.md"), "{report} links the evidence:\n{text}");
    }
    let everything: String = std::fs::read_dir(ws.latest().join("evidence"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .chain(["run.json", "report.md", "report.html", "junit.xml"].map(|f| read(&ws, f)))
        .collect();
    assert!(!everything.contains(PASSWORD) && !printed.contains(PASSWORD), "a secret leaked");
    assert!(project_containers(&project).is_empty());
}
