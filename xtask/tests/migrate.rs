//! The `migrate` stage with the reference service's migrator against a real Postgres: migrations apply,
//! two concurrent migrators are serialised by the advisory lock, a second run is a no-op; an edited
//! applied migration and a failing statement stop the run naming the file (and the statement); a
//! migration that outlives the stage's timeout is killed; no migration container is ever left behind.

mod common;

use std::process::Command;

use common::control_plane::{Context, free_port};
use common::{BASE_IMAGE, Images, Workspace, docker_ready, project_containers, stderr, stdout, unique};

const PASSWORD: &str = "mig-Secret-pw-0415";

const INIT: &str = "-- widgets\nCREATE TABLE widgets (id SERIAL PRIMARY KEY, name TEXT NOT NULL);\n\
                    -- long enough that a second migrator started with this one waits for the lock\n\
                    SELECT pg_sleep(2);\n";

const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  postgres:
    image: rehearsal/postgres:15
    environment:
      POSTGRES_PASSWORD: ${PG_PASSWORD:?PG_PASSWORD must be set}
      POSTGRES_USER: control_plane
      POSTGRES_DB: control_plane
    ports: ["127.0.0.1:${PG_PORT}:5432"]
    healthcheck:
      test: ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "control_plane", "-d", "control_plane"]
      interval: 1s
      retries: 60
"#;

/// A pipeline: images built from `contexts`, Postgres up, then `stages`, then everything down.
fn pipeline(project: &str, port: u16, images: &[(&str, &Context)], stages: &str) -> String {
    let images: String = images
        .iter()
        .map(|(name, ctx)| format!("      - {{ name: \"{name}\", context: \"{}\" }}\n", ctx.path().display()))
        .collect();
    format!(
        r#"version: 1
secrets:
  PG_PASSWORD: {{}}
stages:
  - name: images
    kind: build
    tags: [latest]
    images:
{images}
  - name: db
    kind: compose
    file: compose.yml
    project: {project}
    wait: 90s
    env: {{ PG_PASSWORD: "${{secret:PG_PASSWORD}}", PG_PORT: "{port}" }}
{stages}
  - name: down
    kind: compose
    when: always
    action: down
    volumes: true
    file: compose.yml
    project: {project}
    env: {{ PG_PASSWORD: "${{secret:PG_PASSWORD}}", PG_PORT: "{port}" }}
"#
    )
    // Secrets are not allowed in `variables:`, so the URLs are written out where they are used.
    .replace("${DB_URL}", "postgres://control_plane:${secret:PG_PASSWORD}@postgres:5432/control_plane")
    .replace(
        "${HOST_DB_URL}",
        &format!("postgres://control_plane:${{secret:PG_PASSWORD}}@127.0.0.1:{port}/control_plane"),
    )
}

fn migrate_stage(name: &str, image: &str, project: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: migrate\n    image: \"{image}:latest\"\n    project: {project}\n    env: {{ DATABASE_URL: \"${{DB_URL}}\" }}\n{extra}"
    )
}

fn workspace(pipeline: &str) -> Workspace {
    let ws = Workspace::new(pipeline);
    std::fs::write(ws.path().join("compose.yml"), COMPOSE_FILE).unwrap();
    ws
}

fn deploy(ws: &Workspace, args: &[&str]) -> (Option<i32>, String) {
    let out = ws.xtask(&[&["deploy"], args].concat()).env("PG_PASSWORD", PASSWORD).output().unwrap();
    (out.status.code(), format!("{}{}", stdout(&out), stderr(&out)))
}

/// Containers the run's migrate stages started and did not remove.
fn migration_containers(run_id: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=rehearsal.run={run_id}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// No file the run wrote holds the password.
fn assert_no_secret(ws: &Workspace, printed: &str) {
    assert!(!printed.contains(PASSWORD), "the password was printed:\n{printed}");
    for entry in walk(&ws.latest().canonicalize().unwrap()) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(PASSWORD), "the password is in {}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

fn stage<'a>(record: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    record["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no stage {name}"))
}

fn gate_text(record: &serde_json::Value, name: &str) -> String {
    let gates = stage(record, name)["gates"].as_array().unwrap();
    gates.iter().map(|g| g["actual"].as_str().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

#[test]
fn migrations_apply_once_concurrent_migrators_serialise_and_a_second_run_is_a_no_op() {
    if !docker_ready("migrate applies") {
        return;
    }
    let project = unique("xtask-mig-ok");
    let image = unique("xtask-test/cp-mig");
    let _images = Images(vec![format!("{image}:latest")]);
    let ctx = Context::new("mig-ok", Some(&[("0101_widgets.sql", INIT)]));
    let port = free_port();
    let both = "    needs: [db]\n";
    let stages = [
        migrate_stage("migrate-a", &image, &project, both),
        migrate_stage("migrate-b", &image, &project, both),
        migrate_stage(
            "migrate-again",
            &image,
            &project,
            "    needs: [migrate-a, migrate-b]\n    gates:\n      - { name: no-op, kind: output, stream: stderr, contains: [\"0 applied\"] }\n",
        ),
        "  - name: schema\n    kind: verify\n    gates:\n      - { name: both migrations recorded, kind: sql, url: \"${HOST_DB_URL}\", query: \"SELECT count(*) FROM schema_migrations\", equals: \"2\" }\n      - { name: table made, kind: sql, url: \"${HOST_DB_URL}\", query: \"SELECT count(*) FROM widgets\", equals: \"0\" }\n".to_string(),
    ]
    .concat();
    let ws = workspace(&pipeline(&project, port, &[(&image, &ctx)], &stages));

    let plan = ws.xtask(&["plan"]).env("PG_PASSWORD", PASSWORD).output().unwrap();
    let shown = stdout(&plan);
    assert!(
        shown.contains(&format!("docker run --rm {image}:latest migrate on project {project}'s network")),
        "{shown}"
    );

    let (code, printed) = deploy(&ws, &[]);
    assert_eq!(code, Some(0), "{printed}");
    let record = ws.record();
    let summaries: Vec<String> = ["migrate-a", "migrate-b"]
        .iter()
        .map(|s| stage(&record, s)["outputs"]["summary"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        summaries.iter().any(|s| s.contains("2 applied (0001_init.sql, 0101_widgets.sql)"))
            && summaries.iter().any(|s| s.contains("0 applied")),
        "one migrator applies, the other waits for the lock and finds nothing to do: {summaries:?}"
    );
    assert!(gate_text(&record, "migrate-again").contains("0 applied"), "{printed}");
    assert_eq!(stage(&record, "migrate-a")["outputs"]["exit_code"], 0);
    assert!(migration_containers(record["id"].as_str().unwrap()).is_empty(), "a migration container was left");
    assert!(project_containers(&project).is_empty());
    assert_no_secret(&ws, &printed);
}

#[test]
fn an_edited_or_failing_migration_stops_the_run_naming_the_file_and_the_statement() {
    if !docker_ready("migrate fails") {
        return;
    }
    let project = unique("xtask-mig-bad");
    let names: Vec<String> =
        ["orig", "edited", "broken", "slow"].iter().map(|n| unique(&format!("xtask-test/cp-{n}"))).collect();
    let _images = Images(names.iter().map(|n| format!("{n}:latest")).collect());
    let edited = INIT.replace("name TEXT NOT NULL", "name TEXT");
    let broken = "CREATE TABLE half_done (id INT);\nALTER TABLE no_such_table ADD COLUMN x INT;\n";
    let contexts = [
        Context::new("mig-orig", Some(&[("0101_widgets.sql", INIT)])),
        Context::new("mig-edited", Some(&[("0101_widgets.sql", &edited)])),
        Context::new("mig-broken", Some(&[("0101_widgets.sql", INIT), ("0102_broken.sql", broken)])),
        Context::new("mig-slow", Some(&[("0101_widgets.sql", INIT), ("0102_slow.sql", "SELECT pg_sleep(120);\n")])),
    ];
    let images: Vec<(&str, &Context)> = names.iter().map(String::as_str).zip(contexts.iter()).collect();
    let stages = [
        migrate_stage("migrate", &names[0], &project, ""),
        migrate_stage("migrate-edited", &names[1], &project, ""),
        migrate_stage("migrate-broken", &names[2], &project, ""),
        "  - name: rolled-back\n    kind: verify\n    gates:\n      - { name: no half migration, kind: sql, url: \"${HOST_DB_URL}\", query: \"SELECT to_regclass('half_done') IS NULL, count(*) FROM schema_migrations\", expect_rows: [[t, \"2\"]] }\n".to_string(),
        migrate_stage("migrate-slow", &names[3], &project, "    timeout: 4s\n"),
    ]
    .concat();
    let port = free_port();
    let ws = workspace(&pipeline(&project, port, &images, &stages));
    let (code, printed) = deploy(&ws, &["--keep-going"]);
    assert_eq!(code, Some(1), "{printed}");
    let record = ws.record();
    assert_eq!(stage(&record, "migrate")["status"], "passed", "{printed}");

    let edited = gate_text(&record, "migrate-edited");
    assert_eq!(stage(&record, "migrate-edited")["status"], "failed");
    assert!(edited.contains("0101_widgets.sql") && edited.contains("never edit an applied migration"), "{edited}");

    let broken = gate_text(&record, "migrate-broken");
    assert_eq!(stage(&record, "migrate-broken")["status"], "failed");
    assert!(broken.contains("migration 0102_broken.sql failed"), "{broken}");
    assert!(broken.contains("statement: ALTER TABLE no_such_table ADD COLUMN x INT"), "{broken}");
    assert!(broken.contains("no_such_table\" does not exist"), "the server's reason: {broken}");
    assert_eq!(stage(&record, "rolled-back")["status"], "passed", "the failed migration left no trace: {printed}");

    let slow = stage(&record, "migrate-slow");
    assert_eq!(slow["status"], "failed");
    assert!(slow["reason"].as_str().unwrap_or_default().contains("timed out after 4s"), "{slow}");

    // The first failure's evidence names the edited file; the run's first failure is that stage.
    assert_eq!(record["failure"]["stage"], "migrate-edited");
    let evidence = std::fs::read_to_string(ws.latest().join("evidence/README.md")).expect("an evidence bundle");
    assert!(evidence.contains("0101_widgets.sql"), "{evidence}");

    assert!(migration_containers(record["id"].as_str().unwrap()).is_empty(), "a migration container was left");
    assert!(project_containers(&project).is_empty());
    assert_no_secret(&ws, &printed);
}

#[test]
fn a_migrate_stage_without_its_project_network_fails_with_advice() {
    if !docker_ready("migrate without network") {
        return;
    }
    let project = unique("xtask-mig-none");
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: migrate\n    kind: migrate\n    image: {BASE_IMAGE}\n    project: {project}\n"
    ));
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let reason = ws.record()["stages"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("has no network") && reason.contains("compose"), "{reason}");
}
