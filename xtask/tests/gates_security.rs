//! The security gates against real servers: the reference service (its debug binary on 127.0.0.1, with each
//! protection switched on or off by its environment), Postgres and etcd containers, and openssl's TLS server.
//! Each gate kind passes where the protection is on and fails where configuration switched it off.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::containers::{Container, HEALTH, READY, docker_available, shared, start_postgres};
use common::{Workspace, stderr, stdout};

const PG_PASSWORD: &str = "gs-pg-Secret-4711";
const TOKEN: &str = "gs-token-4711";

/// The exit code and the record of every gate of a pipeline with one verify stage holding `gates`.
fn run_gates(ws: &Workspace, gates: &str) -> (bool, Vec<serde_json::Value>, String) {
    std::fs::write(
        ws.path().join("pipeline.yaml"),
        format!("version: 1\nstages:\n  - name: check\n    kind: verify\n    gates:\n{gates}"),
    )
    .unwrap();
    let out = ws.run(&["deploy"]);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{printed}");
    let record = ws.record();
    let text = format!("{printed}{record}");
    assert!(!text.contains(PG_PASSWORD), "a password was printed:\n{text}");
    let gates = record["stages"][0]["gates"].as_array().cloned().unwrap_or_default();
    (out.status.code() == Some(0), gates, printed)
}

fn assert_passes(ws: &Workspace, gates: &str) {
    let (passed, records, printed) = run_gates(ws, gates);
    assert!(passed, "expected every gate to pass:\n{}\n{printed}", serde_json::Value::from(records));
}

/// The single gate fails, and its `actual` says why in words containing `because`.
fn assert_fails(ws: &Workspace, gate: &str, because: &str) {
    let (passed, records, printed) = run_gates(ws, gate);
    assert!(!passed, "expected a failure for {gate}\n{printed}");
    let actual = records[0]["actual"].as_str().unwrap_or_default().to_string();
    assert!(actual.contains(because), "expected {because:?} in the failure, got {actual:?}\n{printed}");
}

// ---- the reference service

/// The control-plane debug binary, built once per test run next to the xtask binary under test.
fn control_plane_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let debug_dir = Path::new(env!("CARGO_BIN_EXE_xtask")).parent().expect("the binary's directory").to_path_buf();
        let target_dir = debug_dir.parent().expect("the target directory");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "control-plane"])
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building control-plane failed");
        debug_dir.join("control-plane")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running control-plane, killed when dropped. Dependencies it is not given point at a closed port.
struct ControlPlane {
    child: Child,
    url: String,
    tls_address: String,
}

impl ControlPlane {
    fn start(env: &[(&str, &str)]) -> ControlPlane {
        let (port, tls_port) = (free_port(), free_port());
        let mut command = Command::new(control_plane_binary());
        command
            .arg("serve")
            .env_clear()
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("TLS_BIND_ADDR", format!("127.0.0.1:{tls_port}"))
            .env("DATABASE_URL", "postgres://app:pw@127.0.0.1:1/app")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("control-plane starts");
        let service = ControlPlane {
            child,
            url: format!("http://127.0.0.1:{port}"),
            tls_address: format!("127.0.0.1:{tls_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            assert!(Instant::now() < deadline, "control-plane did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postgres as the stack runs it (SCRAM passwords), with the service's migrations applied.
fn postgres() -> Option<Arc<Container>> {
    static SLOT: Mutex<Weak<Container>> = Mutex::new(Weak::new());
    docker_available().then(|| {
        shared(&SLOT, || {
            let pg = start_postgres("gs-postgres", PG_PASSWORD);
            let migrated = Command::new(control_plane_binary())
                .arg("migrate")
                .env("DATABASE_URL", pg_url(&pg))
                .output()
                .expect("control-plane migrate runs");
            assert!(migrated.status.success(), "migrate failed: {}", String::from_utf8_lossy(&migrated.stderr));
            pg
        })
    })
}

fn pg_url(pg: &Container) -> String {
    format!("postgres://control_plane:{PG_PASSWORD}@{}/control_plane", pg.address(5432))
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

// ---- probe

#[test]
fn probes_pass_against_the_reference_service() {
    let Some(pg) = postgres() else { return };
    let cp = ControlPlane::start(&[("DATABASE_URL", &pg_url(&pg)), ("API_TOKEN", TOKEN)]);
    let (url, auth) = (format!("{}/api/v1/executions", cp.url), bearer());
    let ws = Workspace::new("");
    assert_passes(
        &ws,
        &format!(
            r#"      - {{ kind: probe, attack: malformed_json, url: "{url}", headers: {{ authorization: "{auth}" }} }}
      - {{ name: p1, kind: probe, attack: oversize, url: "{url}", headers: {{ authorization: "{auth}" }}, body: '{{"pattern":"review","input":{{"pad":"{{{{payload}}}}"}}}}' }}
      - {{ name: p2, kind: probe, attack: sql_injection, url: "{url}", headers: {{ authorization: "{auth}" }}, body: '{{"pattern":"{{{{payload}}}}"}}' }}
      - {{ name: p3, kind: probe, attack: sql_injection, method: GET, url: "{url}/{{{{payload}}}}" }}
      - {{ name: p4, kind: probe, attack: xss, url: "{url}", headers: {{ authorization: "{auth}" }}, body: '{{"pattern":"review","input":{{"c":"{{{{payload}}}}"}}}}' }}
      - {{ name: p5, kind: probe, attack: xss, url: "{url}", headers: {{ authorization: "{auth}" }}, body: '{{"pattern":"{{{{payload}}}}"}}' }}
"#
        ),
    );
}

#[test]
fn probes_fail_when_the_protections_are_off() {
    let Some(pg) = postgres() else { return };
    let cp = ControlPlane::start(&[
        ("DATABASE_URL", &pg_url(&pg)),
        ("ESCAPE_HTML", "false"),
        ("MAX_BODY_BYTES", "100000000"),
    ]);
    let url = format!("{}/api/v1/executions", cp.url);
    let ws = Workspace::new("");
    let xss = format!(
        r#"      - {{ kind: probe, attack: xss, url: "{url}", body: '{{"pattern":"review","input":{{"c":"{{{{payload}}}}"}}}}' }}"#
    );
    assert_fails(&ws, &format!("{xss}\n"), "reflected unescaped");
    assert_fails(
        &ws,
        &format!("      - {{ kind: probe, attack: oversize, size: 200KiB, url: \"{url}\" }}\n"),
        "not 413",
    );
    // Without its database the service answers injections with 503: a server error is never acceptable.
    let no_db = ControlPlane::start(&[]);
    let sql = format!(
        r#"      - {{ kind: probe, attack: sql_injection, url: "{}/api/v1/executions", body: '{{"pattern":"{{{{payload}}}}"}}' }}"#,
        no_db.url
    );
    assert_fails(&ws, &format!("{sql}\n"), "status 503");
}

// ---- rate_limit, cors, authentication

#[test]
fn a_burst_is_limited_only_when_rate_limiting_is_on() {
    let ws = Workspace::new("");
    let limited = ControlPlane::start(&[("RATE_LIMIT_PER_SEC", "5")]);
    assert_passes(&ws, &format!("      - {{ kind: rate_limit, url: \"{}/version\", requests: 50 }}\n", limited.url));
    let open = ControlPlane::start(&[("RATE_LIMIT_PER_SEC", "0")]);
    let gate = format!("      - {{ kind: rate_limit, url: \"{}/version\", requests: 50 }}\n", open.url);
    assert_fails(&ws, &gate, "no request was limited");
}

#[test]
fn cors_grants_only_the_listed_origin() {
    let ws = Workspace::new("");
    let strict = ControlPlane::start(&[("CORS_ALLOWED_ORIGINS", "https://ok.example")]);
    let gate = |url: &str| {
        format!(
            "      - {{ kind: cors, url: \"{url}/health\", allowed_origin: https://ok.example, method: POST, timeout: 1s }}\n"
        )
    };
    assert_passes(&ws, &gate(&strict.url));
    let any = ControlPlane::start(&[("CORS_ALLOWED_ORIGINS", "*")]);
    assert_fails(&ws, &gate(&any.url), "disallowed origin https://attacker.example was granted");
    let none = ControlPlane::start(&[]);
    assert_fails(&ws, &gate(&none.url), "allowed origin https://ok.example got no");
}

#[test]
fn writes_need_the_token_only_when_one_is_configured() {
    let ws = Workspace::new("");
    let gates = |url: &str| {
        format!(
            "      - {{ name: anonymous write, kind: http, method: POST, url: \"{url}/api/v1/executions\", json: {{ pattern: review }}, expect: {{ status: 401 }}, timeout: 1s }}\n\
             \x20     - {{ name: admin with token, kind: http, url: \"{url}/api/v1/admin/config\", headers: {{ authorization: \"{}\" }}, timeout: 1s }}\n",
            bearer()
        )
    };
    let guarded = ControlPlane::start(&[("API_TOKEN", TOKEN)]);
    assert_passes(&ws, &gates(&guarded.url));
    let open = ControlPlane::start(&[]);
    let (passed, records, printed) = run_gates(&ws, &gates(&open.url));
    assert!(!passed, "{printed}");
    assert!(records[0]["actual"].as_str().unwrap().starts_with("status 503"), "{printed}");
}

// ---- certificate stage and tls

/// Issues a certificate with the `certificate` stage into `dir`.
fn issue(ws: &Workspace, dir: &Path, hosts: &str, valid_for: &str) -> (bool, String) {
    let pipeline = format!(
        "version: 1\nstages:\n  - name: cert\n    kind: certificate\n    dir: {}\n    hosts: {hosts}\n    valid_for: {valid_for}\n",
        dir.display()
    );
    std::fs::write(ws.path().join("pipeline.yaml"), pipeline).unwrap();
    let out = ws.run(&["deploy"]);
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

fn https_service(dir: &Path) -> ControlPlane {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let cp = ControlPlane::start(&[("TLS_CERT", cert.to_str().unwrap()), ("TLS_KEY", key.to_str().unwrap())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&cp.tls_address).is_err() {
        assert!(Instant::now() < deadline, "no HTTPS listener");
        std::thread::sleep(Duration::from_millis(100));
    }
    cp
}

#[test]
fn tls_passes_with_the_issued_certificate() {
    let ws = Workspace::new("");
    let dir = ws.path().join("tls");
    let (issued, printed) = issue(&ws, &dir, "[localhost, 127.0.0.1]", "30d");
    assert!(issued, "{printed}");
    let cp = https_service(&dir);
    let ca = dir.join("ca.pem");
    let (ca, address) = (ca.display(), &cp.tls_address);
    assert_passes(
        &ws,
        &format!(
            "      - {{ kind: tls, address: \"{address}\", ca: \"{ca}\" }}\n\
             \x20     - {{ name: by name, kind: tls, address: \"{address}\", server_name: localhost, ca: \"{ca}\", min_validity: 20days }}\n\
             \x20     - {{ kind: http, url: \"https://{address}/health\", tls: {{ ca: \"{ca}\" }} }}\n"
        ),
    );
    let (passed, records, printed) =
        run_gates(&ws, &format!("      - {{ kind: tls, address: \"{address}\", ca: \"{ca}\" }}\n"));
    assert!(passed, "{printed}");
    assert!(records[0]["actual"].as_str().unwrap().contains("TLS 1.0/1.1 refused"), "{}", records[0]);
}

#[test]
fn tls_fails_on_expiry_wrong_names_untrusted_or_missing_https() {
    let ws = Workspace::new("");
    let dir = ws.path().join("tls");
    assert!(issue(&ws, &dir, "[127.0.0.1]", "5days").0);
    let cp = https_service(&dir);
    let ca = dir.join("ca.pem");
    let (ca, address) = (ca.display(), &cp.tls_address);
    let gate = |extra: &str| format!("      - {{ kind: tls, address: \"{address}\", timeout: 1s{extra} }}\n");
    assert_fails(&ws, &gate(&format!(", ca: \"{ca}\"")), "expires in");
    assert_fails(&ws, &gate(&format!(", ca: \"{ca}\", server_name: other.example")), "the handshake failed");
    assert_fails(&ws, &gate(""), "the handshake failed");
    assert_fails(&ws, &gate(&format!(", ca: \"{ca}\", min_version: \"1.3\", min_validity: 1h")), "accepted TLS 1.2");
    let plain = ControlPlane::start(&[]);
    assert_fails(
        &ws,
        &format!("      - {{ kind: tls, address: \"{}\", timeout: 1s }}\n", plain.tls_address),
        "cannot connect",
    );
    // A certificate for a name that is none stops the stage.
    let (issued, printed) = issue(&ws, &dir, "[\"not a name!\"]", "5days");
    assert!(!issued && printed.contains("neither a DNS name nor an IP address"), "{printed}");
}

#[test]
fn tls_fails_when_the_server_accepts_tls_1_1() {
    let ws = Workspace::new("");
    let dir = ws.path().join("tls");
    assert!(issue(&ws, &dir, "[127.0.0.1]", "30d").0);
    let port = free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ])
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (Debian's openssl package) runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gate = format!(
        "      - {{ kind: tls, address: \"127.0.0.1:{port}\", ca: \"{}\", timeout: 1s }}\n",
        dir.join("ca.pem").display()
    );
    let (passed, records, printed) = run_gates(&ws, &gate);
    let _ = server.kill();
    let _ = server.wait();
    assert!(!passed, "{printed}");
    // Only TLS 1.1 is offered, so the verifying handshake (1.2+) fails first; either finding fails the gate.
    let actual = records[0]["actual"].as_str().unwrap();
    assert!(actual.contains("handshake failed") || actual.contains("accepted TLS 1.1"), "{actual}");
}

// ---- credentials: sql and etcd auth, secrets_scan

#[test]
fn postgres_refuses_logins_without_the_password_unless_it_trusts_everyone() {
    let Some(pg) = postgres() else { return };
    let ws = Workspace::new("");
    let gate =
        |url: &str| format!("      - {{ kind: sql, url: \"{url}\", query: SELECT 1, auth: required, timeout: 1s }}\n");
    assert_passes(&ws, &gate(&pg_url(&pg)));
    let hba = ws.path().join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\nhost all all 0.0.0.0/0 trust\n").unwrap();
    let mount = format!("{}:/etc/postgresql/pg_hba.conf:ro", hba.display());
    let password = format!("POSTGRES_PASSWORD={PG_PASSWORD}");
    let health = "pg_isready -q -h 127.0.0.1 -U control_plane -d control_plane";
    let env = ["-e", &password, "-e", "POSTGRES_USER=control_plane", "-e", "POSTGRES_DB=control_plane", "-v", &mount];
    let run = ["--health-cmd", health, "-p", "127.0.0.1::5432", "rehearsal/postgres:15"];
    let trusting = Container::start("gs-trusting-postgres", &[&HEALTH[..], &env, &run].concat());
    trusting.wait_for_health("healthy", READY);
    assert_fails(&ws, &gate(&pg_url(&trusting)), "was accepted: authentication is off");
}

#[test]
fn etcd_refuses_anonymous_clients_only_with_auth_enabled() {
    if !docker_available() {
        return;
    }
    let health = "etcdctl --endpoints=http://127.0.0.1:2379 endpoint health --user root:rootpw || etcdctl --endpoints=http://127.0.0.1:2379 endpoint health";
    let etcd = Container::start(
        "gs-etcd",
        &[&HEALTH[..], &["--health-cmd", health, "-p", "127.0.0.1::2379", "rehearsal/etcd:3.5"]].concat(),
    );
    etcd.wait_for_health("healthy", READY);
    let endpoint = format!("http://{}", etcd.address(2379));
    let ws = Workspace::new("");
    let gate = format!("      - {{ kind: etcd, endpoint: \"{endpoint}\", auth: required, timeout: 1s }}\n");
    assert_fails(&ws, &gate, "authentication is off");
    etcd.exec(&["etcdctl", "put", "/services/a/1", "x"]);
    // Credentials for an etcd without auth still read the keys: whether auth is on is `auth: required`'s question.
    let keys = format!(
        "      - {{ name: keys, kind: etcd, endpoint: \"{endpoint}\", prefix: /services/, min_keys: 1, username: root, password: rootpw }}\n"
    );
    assert_passes(&ws, &keys);
    for step in [
        &["etcdctl", "user", "add", "root", "--new-user-password=rootpw"][..],
        &["etcdctl", "user", "grant-role", "root", "root"],
        &["etcdctl", "auth", "enable"],
    ] {
        etcd.exec(step);
    }
    assert_passes(
        &ws,
        &format!(
            "{gate}      - {{ name: keys, kind: etcd, endpoint: \"{endpoint}\", health: true, prefix: /services/, min_keys: 1, username: root, password: rootpw }}\n"
        ),
    );
    let wrong = format!(
        "      - {{ kind: etcd, endpoint: \"{endpoint}\", prefix: /services/, min_keys: 1, username: root, password: nope, timeout: 1s }}\n"
    );
    assert_fails(&ws, &wrong, "authenticating as root");
}

#[test]
fn secrets_scan_passes_on_the_reference_stack_and_names_literal_credentials() {
    let ws = Workspace::new("");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let gate = format!(
        "      - {{ kind: secrets_scan, files: [\"{}\", \"{}/helm/control-plane/values*.yaml\"] }}\n",
        repo.join("compose/docker-compose.yml").display(),
        repo.display()
    );
    let (passed, records, printed) = run_gates(&ws, &gate);
    assert!(passed, "{printed}");
    assert!(records[0]["actual"].as_str().unwrap().starts_with("5 files scanned"), "{}", records[0]);

    std::fs::create_dir_all(ws.path().join("deploy")).unwrap();
    std::fs::write(
        ws.path().join("deploy/values-prod.yaml"),
        "db:\n  host: db\n  password: hunter2\nredis:\n  url: redis://:s3cret@redis:6379\n",
    )
    .unwrap();
    let leaky = "      - { kind: secrets_scan, files: [\"deploy/*.yaml\"] }\n";
    assert_fails(&ws, leaky, "deploy/values-prod.yaml:3: `password` holds a literal value");
    let (_, records, printed) = run_gates(&ws, leaky);
    assert!(records[0]["actual"].as_str().unwrap().contains(":5: `url (URL password)`"), "{printed}");
    assert!(!printed.contains("hunter2") && !records[0].to_string().contains("hunter2"), "{printed}");
    assert_fails(&ws, "      - { kind: secrets_scan, files: [\"nothing/*.yaml\"] }\n", "nothing was scanned");
}
