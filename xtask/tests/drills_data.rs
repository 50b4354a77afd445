//! `drill` stages against the real reference stack (compose/docker-compose.yml without Prometheus; the
//! service reached through its load balancer) and a
//! control-plane image made from the workspace's debug binary: a rollback that passes, one refused for a
//! destructive migration, one whose N+1 deletes rows (the fingerprint gate names the table), a backup
//! drill that passes (dump, point-in-time recovery, configuration) and one whose dump misses data.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{BASE_IMAGE, Images, Workspace, docker_ready, project_containers, stderr, stdout, unique};
use serde_json::Value;

/// Each test runs a whole stack: one at a time on a shared machine.
static ONE_STACK: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The debug binary of the service; built in a directory of its own when missing, since the target
/// directory of this `cargo test` is locked while it runs.
fn service_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let built = target.join("debug/control-plane");
    if built.exists() {
        return built;
    }
    let own = target.join("drill-service");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "control-plane"])
        .env("CARGO_TARGET_DIR", &own)
        .current_dir(repo())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building control-plane failed");
    own.join("debug/control-plane")
}

/// `rehearsal/control-plane:<tag>` like the reference Dockerfile's, from the debug binary.
fn service_image(tag: &str) -> Images {
    let image = format!("rehearsal/control-plane:{tag}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(service_binary(), dir.path().join("control-plane")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {BASE_IMAGE}\nCOPY control-plane /usr/local/bin/control-plane\nUSER 10001:10001\n\
             HEALTHCHECK --interval=2s --timeout=3s --retries=3 CMD [\"control-plane\", \"healthcheck\"]\n\
             ENTRYPOINT [\"control-plane\"]\nCMD [\"serve\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new("docker").args(["build", "-q", "-t", &image]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Images(vec![image.clone(), format!("{image}-next")])
}

/// Free ports for the stack's published services.
fn ports() -> [u16; 5] {
    let listeners: Vec<std::net::TcpListener> =
        (0..5).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    [ports[0], ports[1], ports[2], ports[3], ports[4]]
}

/// A pipeline: the stack up, the given drill stages (each runs even when one before failed, with
/// `--keep-going`), the stack down.
fn pipeline(project: &str, tag: &str, drills: &str) -> String {
    let [cp, pg, redis, etcd, cp_tls] = ports();
    let compose = repo().join("compose/docker-compose.yml");
    let compose = compose.display();
    format!(
        r#"version: 1
variables:
  CP_URL: http://127.0.0.1:{cp}
  PG_PORT: "{pg}"
secrets:
  POSTGRES_PASSWORD: {{ generate: true }}
  REDIS_PASSWORD: {{ generate: true }}
  ETCD_ROOT_PASSWORD: {{ generate: true }}
  ETCD_PASSWORD: {{ generate: true }}
stages:
  - name: certificate
    kind: certificate
    hosts: [localhost, 127.0.0.1]
  - name: stack
    kind: compose
    file: {compose}
    project: {project}
    services: [postgres, redis, etcd, migrate, control-plane, lb]
    wait: 3m
    env: &env
      IMAGE_TAG: {tag}
      POSTGRES_TAG: "15"
      REDIS_TAG: "7.0"
      ETCD_TAG: "3.5"
      HAPROXY_TAG: "2.6"
      POSTGRES_PASSWORD: ${{secret:POSTGRES_PASSWORD}}
      REDIS_PASSWORD: ${{secret:REDIS_PASSWORD}}
      ETCD_ROOT_PASSWORD: ${{secret:ETCD_ROOT_PASSWORD}}
      ETCD_PASSWORD: ${{secret:ETCD_PASSWORD}}
      TLS_DIR: ${{RUN_DIR}}/tls
      CP_TLS_PORT: "{cp_tls}"
      APP_VERSION: release-n
      CP_PORT: "{cp}"
      PG_PORT: "{pg}"
      REDIS_PORT: "{redis}"
      ETCD_PORT: "{etcd}"
      PROM_PORT: "0"
{drills}
  - name: down
    kind: compose
    when: always
    action: down
    volumes: true
    file: {compose}
    project: {project}
    env: *env
"#
    )
}

fn rollback_stage(name: &str, project: &str, tag: &str, migrations: &str) -> String {
    let compose = repo().join("compose/docker-compose.yml");
    format!(
        r#"  - name: {name}
    kind: drill
    drill: rollback
    file: {compose}
    project: {project}
    env: *env
    migrate: migrate
    url: ${{CP_URL}}
    image: rehearsal/control-plane:{tag}
    next:
      image: rehearsal/control-plane:{tag}-next
      migrations: {migrations}
      version: release-n-plus-1
      env: {{ IMAGE_TAG: "{tag}-next", APP_VERSION: release-n-plus-1 }}
    canary:
      write: ${{CP_URL}}/api/v1/executions
      body: '{{"pattern":"review","input":{{"canary":{{{{n}}}}}}}}'
      read: ${{CP_URL}}/api/v1/executions/{{id}}
    traffic: 10
    restore_within: 90s
    fingerprints:
      postgres: postgres://control_plane:${{secret:POSTGRES_PASSWORD}}@127.0.0.1:${{PG_PORT}}/control_plane
      tables: [patterns, agents, executions]
      invariants:
        - {{ name: patterns, query: "SELECT name FROM patterns ORDER BY name" }}
"#,
        compose = compose.display()
    )
}

fn write(ws: &Workspace, path: &str, text: &str) {
    let path = ws.path().join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stage<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no stage {name}"))
}

fn gate<'a>(stage: &'a Value, name: &str) -> &'a Value {
    stage["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {stage:#}"))
}

const SAFE: &str = "-- rollback-safe: yes\nALTER TABLE executions ADD COLUMN labels JSONB;\n";

#[test]
fn rollback_drills_pass_refuse_a_destructive_migration_and_catch_lost_rows() {
    if !docker_ready("rollback drills") {
        return;
    }
    let _one = ONE_STACK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = unique("drill");
    let _images = service_image(&tag);
    let project = unique("xtask-drill-rb");
    let drills = [
        rollback_stage("destructive", &project, &tag, "destructive"),
        rollback_stage("safe", &project, &tag, "safe"),
        rollback_stage("lossy", &project, &tag, "lossy"),
    ]
    .concat();
    let ws = Workspace::new(&pipeline(&project, &tag, &drills));
    write(&ws, "destructive/0002_drop_role.sql", "-- rollback-safe: yes\nALTER TABLE agents DROP COLUMN role;\n");
    write(&ws, "safe/0002_labels.sql", SAFE);
    write(&ws, "lossy/0002_labels.sql", SAFE);
    write(
        &ws,
        "lossy/0003_prune.sql",
        "DELETE FROM executions WHERE id IN (SELECT id FROM executions ORDER BY id LIMIT 2);\n",
    );
    let out = ws.run(&["deploy", "--keep-going"]);
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(ws.latest().join("run.json").exists(), "{log}");
    let record = ws.record();
    assert!(project_containers(&project).is_empty(), "the stack is down");
    assert_eq!(stage(&record, "stack")["status"], "passed", "{log}");

    // Refused before anything changed: no N+1 image, no canaries, N still serving.
    let refused = stage(&record, "destructive");
    assert_eq!(refused["status"], "failed", "{refused:#}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("rollback refused before changing anything"), "{reason}");
    assert!(reason.contains("0002_drop_role.sql: it drops column agents.role"), "{reason}");
    assert_eq!(gate(refused, "rollback is safe for the schema")["status"], "failed");
    assert!(refused["outputs"]["rollback"]["next_image"].is_null(), "{refused:#}");

    let safe = stage(&record, "safe");
    assert_eq!(safe["status"], "passed", "{safe:#}\n{log}");
    let drill = &safe["outputs"]["rollback"];
    assert_eq!(drill["from_version"], "release-n");
    assert_eq!(drill["to_version"], "release-n-plus-1");
    assert!(drill["time_to_restore_ms"].as_u64().unwrap() > 0);
    assert_eq!(gate(safe, "N reads records written by N+1")["actual"], "all 10 read");
    assert_eq!(gate(safe, "fingerprint executions")["status"], "passed");
    assert!(
        drill["fingerprints"]["after"]["tables"][2]["rows"].as_u64()
            > drill["fingerprints"]["before"]["tables"][2]["rows"].as_u64()
    );

    let lossy = stage(&record, "lossy");
    assert_eq!(lossy["status"], "failed", "{lossy:#}");
    let lost = gate(lossy, "fingerprint executions");
    assert_eq!(lost["status"], "failed");
    assert!(lost["actual"].as_str().unwrap().starts_with("table executions: 2 of "), "{lost}");
    assert_eq!(gate(lossy, "fingerprint agents")["status"], "passed");

    let report = std::fs::read_to_string(ws.latest().join("report.md")).unwrap();
    assert!(report.contains("## Drill: safe (rollback)") && report.contains("time to restore"), "{report}");
    assert!(report.contains("| table executions |"), "{report}");
    let junit = std::fs::read_to_string(ws.latest().join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"time_to_restore_ms\""), "{junit}");
    assert!(std::fs::read_to_string(ws.latest().join("report.html")).unwrap().contains("Drill: safe (rollback)"));
}

fn backup_stage(name: &str, project: &str, dump_args: &str) -> String {
    format!(
        r#"  - name: {name}
    kind: drill
    drill: backup
    project: {project}
    database: control_plane
    dump:
      args: {dump_args}
      fingerprints:
        postgres: postgres://control_plane:${{secret:POSTGRES_PASSWORD}}@127.0.0.1:${{PG_PORT}}/control_plane
        tables: [patterns, agents, executions, schema_migrations]
        invariants:
          - {{ name: agent count, query: "SELECT count(*) FROM agents" }}
"#
    )
}

#[test]
fn backup_drills_restore_recover_to_a_point_in_time_and_catch_an_incomplete_dump() {
    if !docker_ready("backup drills") {
        return;
    }
    let _one = ONE_STACK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = unique("drill");
    let _images = service_image(&tag);
    let project = unique("xtask-drill-bk");
    let compose = repo().join("compose/docker-compose.yml");
    let mut drills = String::from(
        r#"  - name: writes
    kind: bench
    requests: 20
    connections: 2
    scenario:
      - { method: POST, url: "${CP_URL}/api/v1/executions", headers: { content-type: application/json }, body: '{"pattern":"review","input":{"n":{{counter}}}}' }
    thresholds:
      - { check: "error_rate < 1%" }
"#,
    );
    drills.push_str(&backup_stage("backup", &project, "[]"));
    drills.push_str(&format!(
        "    pitr: {{}}\n    config:\n      files: [conf]\n      compose: {}\n      env: *env\n",
        compose.display()
    ));
    drills.push_str(&backup_stage("incomplete", &project, "[--exclude-table-data=agents]"));
    let ws = Workspace::new(&pipeline(&project, &tag, &drills));
    write(&ws, "conf/app.toml", "answer = 42\n");
    let out = ws.run(&["deploy", "--keep-going"]);
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(ws.latest().join("run.json").exists(), "{log}");
    let record = ws.record();
    assert!(project_containers(&project).is_empty(), "the stack is down");

    let backup = stage(&record, "backup");
    assert_eq!(backup["status"], "passed", "{backup:#}\n{log}");
    let drill = &backup["outputs"]["backup"];
    assert!(drill["dump"]["time_to_restore_ms"].is_u64());
    assert!(ws.latest().join(drill["dump"]["dump_file"].as_str().unwrap()).exists());
    let pitr = gate(backup, "recovered to the point in time");
    assert!(pitr["actual"].as_str().unwrap().contains("before-"), "{pitr}");
    assert!(!pitr["actual"].as_str().unwrap().contains("after-"), "{pitr}");
    assert_eq!(gate(backup, "compose configuration restores")["status"], "passed");
    assert!(ws.latest().join("backup/config/conf/app.toml").exists());
    let rendered = std::fs::read_to_string(ws.latest().join("backup/config/compose.rendered.yml")).unwrap();
    assert!(rendered.contains("POSTGRES_PASSWORD: '***'") || rendered.contains("***"), "secrets masked");

    let incomplete = stage(&record, "incomplete");
    assert_eq!(incomplete["status"], "failed");
    let agents = gate(incomplete, "fingerprint agents");
    assert_eq!(agents["status"], "failed");
    assert!(agents["actual"].as_str().unwrap().starts_with("table agents: "), "{agents}");
    assert_eq!(gate(incomplete, "invariant agent count")["status"], "failed");
    assert_eq!(gate(incomplete, "fingerprint patterns")["status"], "passed");
    assert_eq!(out.status.code(), Some(1));
}
