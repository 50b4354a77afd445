//! The data and container gates against real containers: each kind passes on a sound service and fails on a
//! misconfigured one.

mod common;

use std::sync::{Arc, Mutex, Weak};

use common::containers::{Container, HEALTH, READY, docker_available, shared, start_postgres};
use common::{Workspace, stderr, stdout};

const PG_PASSWORD: &str = "gd-pg-Secret-4711";
const REDIS_PASSWORD: &str = "gd-redis-Secret-4711";

/// A verdict from the real binary: the exit code, the gate's record and everything printed.
struct Verdict {
    passed: bool,
    gate: serde_json::Value,
    printed: String,
}

/// Runs one gate (a YAML flow mapping) in a `verify` stage.
fn run_gate(gate: &str) -> Verdict {
    let ws = Workspace::new(&format!(
        "version: 1\nstages:\n  - name: check\n    kind: verify\n    gates:\n      - {gate}\n"
    ));
    let out = ws.run(&["deploy"]);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{printed}");
    let record = ws.record();
    let gate = record["stages"][0]["gates"][0].clone();
    let text = format!("{printed}{}", std::fs::read_to_string(ws.latest().join("run.json")).unwrap_or_default());
    assert!(!text.contains(PG_PASSWORD) && !text.contains(REDIS_PASSWORD), "a password was printed:\n{text}");
    Verdict { passed: out.status.code() == Some(0), gate, printed }
}

fn assert_passes(gate: &str) {
    let v = run_gate(gate);
    assert!(v.passed, "expected a pass for {gate}\n{}\n{}", v.gate, v.printed);
}

/// Fails, and says why in words containing `because`.
fn assert_fails(gate: &str, because: &str) {
    let v = run_gate(gate);
    assert!(!v.passed, "expected a failure for {gate}\n{}", v.printed);
    let actual = v.gate["actual"].as_str().unwrap_or_default();
    assert!(actual.contains(because), "expected {because:?} in the failure, got {actual:?}\n{}", v.printed);
}

// ---- containers, each shared by the tests running at the same time

fn postgres() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let pg = start_postgres("postgres", PG_PASSWORD);
            pg
        })
    })
}

fn pg_url(pg: &Container) -> String {
    format!("postgres://control_plane:{PG_PASSWORD}@{}/control_plane", pg.address(5432))
}

/// Redis as the stack runs it: password required, allkeys-lru, append-only.
fn redis() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let env = format!("REDIS_PASSWORD={REDIS_PASSWORD}");
            let health = format!("REDISCLI_AUTH={REDIS_PASSWORD} redis-cli -h 127.0.0.1 ping | grep -q PONG");
            let args =
                [&HEALTH[..], &["--health-cmd", &health, "-e", &env, "-p", "127.0.0.1::6379", "rehearsal/redis:7.0"]];
            let redis = Container::start("redis", &args.concat());
            redis.wait_for_health("healthy", READY);
            redis
        })
    })
}

/// Redis started by hand the wrong way: no password, and an eviction policy that refuses writes when full.
fn open_redis() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let health = "redis-cli -h 127.0.0.1 ping | grep -q PONG";
            let server = ["--entrypoint", "redis-server", "-p", "127.0.0.1::6379", "rehearsal/redis:7.0"];
            let conf = ["/etc/redis/redis.conf", "--protected-mode", "no", "--maxmemory-policy", "noeviction"];
            let redis =
                Container::start("open-redis", &[&HEALTH[..], &["--health-cmd", health], &server, &conf].concat());
            redis.wait_for_health("healthy", READY);
            redis
        })
    })
}

fn etcd() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let health = "etcdctl --endpoints=http://127.0.0.1:2379 endpoint health";
            let args = [&HEALTH[..], &["--health-cmd", health, "-p", "127.0.0.1::2379", "rehearsal/etcd:3.5"]];
            let etcd = Container::start("etcd", &args.concat());
            etcd.wait_for_health("healthy", READY);
            etcd
        })
    })
}

/// Prometheus with the stack's config: its `control-plane` target does not exist here.
fn prometheus() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let health = "curl -fsS -o /dev/null http://127.0.0.1:9090/-/ready";
            let args = [&HEALTH[..], &["--health-cmd", health, "-p", "127.0.0.1::9090", "rehearsal/prometheus:2.42"]];
            let prom = Container::start("prometheus", &args.concat());
            prom.wait_for_health("healthy", READY);
            prom
        })
    })
}

/// A well-behaved service of compose project `gdtest`: JSON log lines, healthy.
fn json_logger() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let script = r#"echo '{"level":"info","msg":"started"}'; echo; echo '{"level":"WARN","msg":"slow start"}'; exec sleep 600"#;
            let labels = ["--label", "com.docker.compose.project=gdtest", "--label", "com.docker.compose.service=api"];
            let run = ["--health-cmd", "true", "rehearsal/debian:bookworm", "sh", "-c", script];
            let c = Container::start("json-logger", &[&HEALTH[..], &labels, &run].concat());
            c.wait_for_health("healthy", READY);
            c
        })
    })
}

/// A broken service: its healthcheck fails and it logs plain text.
fn sick() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let script = "echo starting worker; echo ERROR cannot reach the database; exec sleep 600";
            let health = ["--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"];
            let c =
                Container::start("sick", &[&health[..], &["rehearsal/debian:bookworm", "sh", "-c", script]].concat());
            c.wait_for_health("unhealthy", READY);
            c
        })
    })
}

// ---- sql

#[test]
fn sql_passes_on_expected_rows_and_settings() {
    let Some(pg) = postgres() else { return };
    let url = pg_url(&pg);
    assert_passes(&format!(
        r#"{{ kind: sql, url: "{url}", query: "SELECT extname FROM pg_extension", expect_rows: [[plpgsql]] }}"#
    ));
    assert_passes(&format!(r#"{{ kind: sql, url: "{url}", query: "SHOW max_connections", rows: 1 }}"#));
    assert_passes(&format!(
        r#"{{ kind: sql, url: "{url}", query: "SELECT count(*) FROM pg_stat_activity", min_rows: 1 }}"#
    ));
    assert_passes(&format!(r#"{{ kind: sql, url: "{url}", query: "SELECT 1 WHERE false", allow_empty: true }}"#));
}

#[test]
fn sql_fails_when_migrations_were_never_applied() {
    let Some(pg) = postgres() else { return };
    let url = pg_url(&pg);
    assert_fails(
        &format!(r#"{{ kind: sql, url: "{url}", query: "SELECT count(*) FROM schema_migrations", timeout: 1s }}"#),
        "relation \"schema_migrations\" does not exist",
    );
}

#[test]
fn sql_fails_on_a_wrong_value_or_an_empty_result() {
    let Some(pg) = postgres() else { return };
    let url = pg_url(&pg);
    assert_fails(
        &format!(
            r#"{{ kind: sql, url: "{url}", query: "SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'", timeout: 1s }}"#
        ),
        "no rows",
    );
    assert_fails(
        &format!(r#"{{ kind: sql, url: "{url}", query: "SHOW max_connections", equals: "500", timeout: 1s }}"#),
        "first value",
    );
}

// ---- redis

#[test]
fn redis_passes_with_auth_on_and_the_stack_config() {
    let Some(redis) = redis() else { return };
    let url = format!("redis://:{REDIS_PASSWORD}@{}", redis.address(6379));
    assert_passes(&format!(
        r#"{{ kind: redis, url: "{url}", ping: true, auth: required, config: {{ maxmemory-policy: allkeys-lru, appendonly: "yes", maxmemory: 268435456 }} }}"#
    ));
}

#[test]
fn redis_fails_when_auth_is_off_and_the_policy_is_wrong() {
    let Some(redis) = open_redis() else { return };
    let url = format!("redis://{}", redis.address(6379));
    assert_fails(&format!(r#"{{ kind: redis, url: "{url}", auth: required, timeout: 1s }}"#), "auth is off");
    assert_fails(
        &format!(
            r#"{{ kind: redis, url: "{url}", ping: true, config: {{ maxmemory-policy: allkeys-lru }}, timeout: 1s }}"#
        ),
        "maxmemory-policy is \"noeviction\", not \"allkeys-lru\"",
    );
}

// ---- etcd

#[test]
fn etcd_passes_on_health_registered_keys_and_expired_leases() {
    let Some(etcd) = etcd() else { return };
    let endpoint = format!("http://{}", etcd.address(2379));
    etcd.exec(&["etcdctl", "put", "/pass/services/a", "10.0.0.1"]);
    etcd.exec(&["etcdctl", "put", "/pass/services/b", "10.0.0.2"]);
    assert_passes(&format!(
        r#"{{ kind: etcd, endpoint: "{endpoint}", health: true, prefix: /pass/services/, min_keys: 2 }}"#
    ));

    let granted = etcd.exec(&["etcdctl", "lease", "grant", "2"]);
    let lease = granted.split_whitespace().nth(1).expect("`lease <id> granted …`");
    etcd.exec(&["etcdctl", "put", &format!("--lease={lease}"), "/pass/leased/a", "x"]);
    assert_passes(&format!(r#"{{ kind: etcd, endpoint: "{endpoint}", prefix: /pass/leased/, absent_after: 20s }}"#));
}

#[test]
fn etcd_fails_when_a_service_is_missing_or_its_key_never_expires() {
    let Some(etcd) = etcd() else { return };
    let endpoint = format!("http://{}", etcd.address(2379));
    assert_fails(
        &format!(r#"{{ kind: etcd, endpoint: "{endpoint}", prefix: /fail/services/, min_keys: 1, timeout: 1s }}"#),
        "0 keys under /fail/services/, fewer than 1",
    );
    etcd.exec(&["etcdctl", "put", "/fail/unleased/a", "x"]);
    assert_fails(
        &format!(r#"{{ kind: etcd, endpoint: "{endpoint}", prefix: /fail/unleased/, absent_after: 2s }}"#),
        "1 keys still under /fail/unleased/",
    );
}

// ---- prometheus

#[test]
fn prometheus_passes_on_loaded_rules_and_a_bounded_query() {
    let Some(prom) = prometheus() else { return };
    let url = format!("http://{}", prom.address(9090));
    assert_passes(&format!(
        r#"{{ kind: prometheus, url: "{url}", rules: [HighFailureRate, DatabaseConnectionFailure] }}"#
    ));
    assert_passes(&format!(
        r#"{{ kind: prometheus, url: "{url}", query: 'up{{job="prometheus"}}', bound: {{ op: "==", value: 1 }}, timeout: 60s }}"#
    ));
}

#[test]
fn prometheus_fails_when_a_target_is_down_or_a_rule_is_missing() {
    let Some(prom) = prometheus() else { return };
    let url = format!("http://{}", prom.address(9090));
    assert_fails(&format!(r#"{{ kind: prometheus, url: "{url}", targets_up: true, timeout: 10s }}"#), "control-plane");
    assert_fails(
        &format!(r#"{{ kind: prometheus, url: "{url}", rules: [HighFailureRate, DiskAlmostFull], timeout: 1s }}"#),
        "missing: DiskAlmostFull",
    );
}

// ---- container

#[test]
fn container_passes_when_running_healthy_and_within_bounds() {
    let Some(pg) = postgres() else { return };
    assert_passes(&format!(
        r#"{{ kind: container, container: {}, running: true, healthy: true, max_restarts: 0, max_memory: 512MiB, max_cpu_percent: 200 }}"#,
        pg.name
    ));
    let Some(_api) = json_logger() else { return };
    assert_passes(r#"{ kind: container, project: gdtest, service: api, running: true, healthy: true }"#);
}

#[test]
fn container_fails_when_unhealthy_or_absent() {
    let Some(sick) = sick() else { return };
    assert_fails(
        &format!(r#"{{ kind: container, container: {}, healthy: true, timeout: 1s }}"#, sick.name),
        "health unhealthy",
    );
    assert_fails(
        r#"{ kind: container, project: gdtest-nothing, service: api, running: true, timeout: 1s }"#,
        "no container for service api of project gdtest-nothing",
    );
}

// ---- logs

#[test]
fn logs_pass_when_every_line_is_json_and_quiet_enough() {
    let Some(_api) = json_logger() else { return };
    assert_passes(r#"{ kind: logs, project: gdtest, service: api, json: true, max_level: warn, since: 10m }"#);
}

#[test]
fn logs_fail_on_plain_text_lines_or_a_louder_level() {
    let Some(sick) = sick() else { return };
    assert_fails(
        &format!(r#"{{ kind: logs, container: {}, json: true, tail: 50, timeout: 1s }}"#, sick.name),
        "2 of 2 lines are not JSON objects",
    );
    let Some(_api) = json_logger() else { return };
    assert_fails(
        r#"{ kind: logs, project: gdtest, service: api, max_level: info, timeout: 1s }"#,
        "1 lines above info, e.g. warn",
    );
}

// ---- keys that do not fit together are refused before anything runs

#[test]
fn contradictory_or_empty_gates_are_refused_by_validate() {
    let cases = [
        (r#"{ kind: prometheus, url: "http://127.0.0.1:1", targets_up: true, rules: [A] }"#, "exactly one of"),
        (r#"{ kind: container, project: p, running: true }"#, "by `project` and `service` together"),
        (r#"{ kind: logs, container: c }"#, "nothing to check"),
        (r#"{ kind: etcd, endpoint: "http://127.0.0.1:1", min_keys: 1 }"#, "need a `prefix`"),
        (r#"{ kind: sql, url: "mysql://u:hunter22@db/x", query: "SELECT 1" }"#, "mysql://u:***@db/x"),
        (r#"{ kind: container, container: c, max_memory: 512 }"#, "has no unit"),
    ];
    for (gate, because) in cases {
        let ws = Workspace::new(&format!(
            "version: 1\nstages:\n  - name: check\n    kind: verify\n    gates:\n      - {gate}\n"
        ));
        let out = ws.run(&["validate"]);
        let printed = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{gate}: {printed}");
        assert!(printed.contains(because), "{gate}: expected {because:?} in\n{printed}");
    }
}
