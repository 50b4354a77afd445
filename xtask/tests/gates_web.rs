//! The `http` and `websocket` gates against real servers on 127.0.0.1, through the real binary.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{Workspace, stderr, stdout};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const HEALTH: &str = r#"{"status":"ok","checks":{"db":{"status":"up"},"cache":{"status":"up"}}}"#;
const DEGRADED: &str = r#"{"status":"degraded","checks":{"db":{"status":"down"}}}"#;
const JOBS: &str = r#"[{"name":"build"},{"name":"review"},{"name":"deploy"}]"#;

/// A minimal HTTP/1.1 server (one response per connection) answering a few fixed routes.
fn http_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    address
}

/// A fresh self-signed certificate for 127.0.0.1 in a server configuration, and the certificate as PEM.
fn self_signed() -> (Arc<rustls::ServerConfig>, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("a certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![issued.cert.der().clone()], key)
        .expect("a server config");
    (Arc::new(config), issued.cert.pem())
}

/// Serves each TLS connection on its own thread: the address and the certificate as PEM.
fn tls_server(serve: fn(rustls::StreamOwned<rustls::ServerConnection, TcpStream>)) -> (String, String) {
    let (config, pem) = self_signed();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                serve(rustls::StreamOwned::new(connection, stream));
            });
        }
    });
    (address, pem)
}

/// An HTTPS server like [`http_server`].
fn https_server() -> (String, String) {
    tls_server(answer)
}

/// A `wss://` server like [`websocket_server`], on tungstenite's blocking API.
fn wss_server() -> (String, String) {
    tls_server(|stream| {
        let Ok(mut ws) = tokio_tungstenite::tungstenite::accept(stream) else { return };
        let _ = ws.send(Message::text(r#"{"type":"hello","service":"control-plane"}"#));
        while let Ok(Message::Text(text)) = ws.read() {
            let _ = ws.send(Message::text(serde_json::json!({ "echo": text.as_str() }).to_string()));
        }
    })
}

fn answer(stream: impl Read + Write) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, reply) = match path.as_str() {
        "/health" => ("200 OK", HEALTH.to_string()),
        "/degraded" => ("503 Service Unavailable", DEGRADED.to_string()),
        "/jobs" => ("200 OK", JOBS.to_string()),
        "/empty" => ("200 OK", r#"{"checks":{}}"#.to_string()),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(300));
            ("200 OK", HEALTH.to_string())
        }
        "/echo" => ("200 OK", String::from_utf8_lossy(&body).into_owned()),
        _ => ("404 Not Found", "{}".to_string()),
    };
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nx-version: 3\r\nset-cookie: session=s3cr3t-cookie\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
}

/// A WebSocket server like the reference service's: a hello on connect, then `{"echo":…}` per message.
fn websocket_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                    let _ = ws.send(Message::text(r#"{"type":"hello","service":"control-plane"}"#)).await;
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(text) = message {
                            // JSON is echoed as JSON, anything else as a string.
                            let echoed = serde_json::from_str(text.as_str())
                                .unwrap_or_else(|_| serde_json::Value::from(text.as_str()));
                            let _ = ws.send(Message::text(serde_json::json!({ "echo": echoed }).to_string())).await;
                        }
                    }
                });
            }
        });
    });
    address
}

/// A pipeline with one verify stage holding `gate` (YAML lines indented for the gate list).
fn pipeline(gate: &str) -> String {
    format!("version: 1\nstages:\n  - name: probe\n    kind: verify\n    gates:\n{gate}")
}

/// Runs the pipeline and returns the exit code and the record of its single gate.
fn run_gate(gate: &str) -> (Option<i32>, serde_json::Value, String) {
    let ws = Workspace::new(&pipeline(gate));
    let out = ws.run(&["deploy"]);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    let record = ws.record();
    (out.status.code(), record["stages"][0]["gates"][0].clone(), printed)
}

#[test]
fn http_gate_passes_on_status_headers_body_and_json() {
    let addr = http_server();
    let (code, gate, printed) = run_gate(&format!(
        r#"      - name: healthy
        kind: http
        url: http://{addr}/health
        expect:
          status: [200, 204]
          headers: {{ content-type: application/json, x-version: exists }}
          body_contains: ['"status"']
          latency: 5s
          json:
            - {{ path: $.status, equals: ok }}
            - {{ path: "$.checks.*.status", all: up }}
            - {{ path: $.id, exists: false }}
      - name: jobs
        kind: http
        url: http://{addr}/jobs
        expect:
          json:
            - {{ path: "$[*].name", any: review }}
            - {{ path: $, count: 3 }}
            - {{ path: "$[*]", min_count: 2 }}
"#
    ));
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(gate["status"], "passed");
    assert!(gate["actual"].as_str().unwrap().starts_with("status 200 in "), "{gate}");
    assert!(gate["transcript"].as_str().unwrap().contains("> GET http://"), "{gate}");
}

#[test]
fn http_wrong_status_fails_with_the_body_in_actual() {
    let addr = http_server();
    let (code, gate, printed) =
        run_gate(&format!("      - {{ name: up, kind: http, url: 'http://{addr}/degraded', timeout: 1s }}\n"));
    assert_eq!(code, Some(1), "{printed}");
    assert_eq!(gate["status"], "failed");
    assert_eq!(gate["expected"], "status 200");
    assert_eq!(gate["actual"], format!("status 503, body {DEGRADED}"));
    assert!(gate["attempts"].as_u64().unwrap() > 1, "a readiness gate retries: {gate}");
}

#[test]
fn http_json_path_that_matches_nothing_fails() {
    let addr = http_server();
    let gate = format!(
        "      - {{ name: checks, kind: http, url: 'http://{addr}/empty', timeout: 1s, expect: {{ json: [{{ path: '$.checks.*.status', all: up }}] }} }}\n"
    );
    let (code, record, printed) = run_gate(&gate);
    assert_eq!(code, Some(1), "{printed}");
    assert_eq!(record["expected"], "$.checks.*.status all equal \"up\"");
    assert_eq!(record["actual"], r#"$.checks.*.status matched nothing, body {"checks":{}}"#);
}

#[test]
fn http_allow_empty_passes_when_nothing_matches() {
    let addr = http_server();
    let gate = format!(
        "      - {{ name: checks, kind: http, url: 'http://{addr}/empty', allow_empty: true, expect: {{ json: [{{ path: '$.checks.*.status', all: up }}] }} }}\n"
    );
    let (code, record, printed) = run_gate(&gate);
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(record["status"], "passed");
}

#[test]
fn http_latency_budget_exceeded_fails() {
    let addr = http_server();
    let gate = format!(
        "      - {{ name: fast, kind: http, url: 'http://{addr}/slow', timeout: 1s, expect: {{ latency: 100ms }} }}\n"
    );
    let (code, record, printed) = run_gate(&gate);
    assert_eq!(code, Some(1), "{printed}");
    assert_eq!(record["expected"], "latency ≤ 100ms");
    let actual = record["actual"].as_str().unwrap();
    let took: u64 = actual.strip_prefix("took ").and_then(|r| r.split("ms").next()).unwrap().parse().unwrap();
    assert!(took >= 300 && actual.ends_with(&format!("ms, body {HEALTH}")), "{actual}");
}

#[test]
fn http_posts_json_and_redacts_credentials_in_the_transcript() {
    let addr = http_server();
    let gate = format!(
        r#"      - name: echo
        kind: http
        method: post
        url: http://{addr}/echo
        headers: {{ Authorization: Bearer t0ps3cret-token }}
        json: {{ name: review, replicas: 2 }}
        expect:
          json:
            - {{ path: $.replicas, equals: 2 }}
"#
    );
    let (code, record, printed) = run_gate(&gate);
    assert_eq!(code, Some(0), "{printed}");
    let transcript = record["transcript"].as_str().unwrap();
    assert!(transcript.contains("> POST http://"), "{transcript}");
    assert!(transcript.contains("> authorization: ***"), "{transcript}");
    assert!(transcript.contains("< set-cookie: ***"), "{transcript}");
    assert!(transcript.contains(r#"> {"name":"review","replicas":2}"#), "{transcript}");
    assert!(!transcript.contains("t0ps3cret") && !transcript.contains("s3cr3t-cookie"), "{transcript}");
}

#[test]
fn http_gate_keys_are_checked_before_running() {
    let cases = [
        (
            "{ kind: http, url: 'http://127.0.0.1:1/', body: x, json: {a: 1} }",
            "give either `body:` or `json:`, not both",
        ),
        (
            "{ kind: http, url: 'http://127.0.0.1:1/', expect: { json: [{ path: '$[', equals: 1 }] } }",
            "invalid JSONPath `$[`",
        ),
        ("{ kind: http, url: 'http://127.0.0.1:1/', expect: { json: [{ path: $.a }] } }", "must name exactly one of"),
        ("{ kind: websocket, url: 'http://127.0.0.1:1/' }", "must start with ws:// or wss://"),
    ];
    for (gate, message) in cases {
        let ws = Workspace::new(&pipeline(&format!("      - {gate}\n")));
        let out = ws.run(&["validate"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{gate}: {err}");
        assert!(err.contains(message), "{gate}: {err}");
    }
}

#[test]
fn websocket_handshake_and_echo_pass() {
    let addr = websocket_server();
    let (code, gate, printed) = run_gate(&format!(
        r#"      - {{ name: handshake, kind: websocket, url: 'ws://{addr}/ws' }}
      - {{ name: hello, kind: websocket, url: 'ws://{addr}/ws', expect: control-plane }}
      - name: echo
        kind: websocket
        url: ws://{addr}/ws
        send: ping
        expect_json:
          - {{ path: $.echo, equals: ping }}
      - name: echo json
        kind: websocket
        url: ws://{addr}/ws
        send: '{{"n": 7, "tags": ["a", "b"]}}'
        expect_json:
          - {{ path: $.echo.n, equals: 7 }}
          - {{ path: "$.echo.tags[*]", count: 2 }}
          - {{ path: $.type, exists: false }}
"#
    ));
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(gate["actual"], "handshake 101");
}

#[test]
fn websocket_unexpected_reply_fails() {
    let addr = websocket_server();
    let (code, gate, printed) = run_gate(&format!(
        "      - {{ name: echo, kind: websocket, url: 'ws://{addr}/ws', send: ping, expect: pong, connect_timeout: 300ms, timeout: 500ms }}\n"
    ));
    assert_eq!(code, Some(1), "{printed}");
    assert_eq!(gate["expected"], "handshake 101; a message containing \"pong\"");
    let actual = gate["actual"].as_str().unwrap();
    assert!(actual.starts_with("no matching message within 300ms; 2 message(s) did not match"), "{actual}");
    assert!(actual.contains(r#"{"echo":"ping"} lacks "pong""#), "{actual}");
}

#[test]
fn websocket_refused_connection_fails() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, gate, printed) =
        run_gate(&format!("      - {{ name: down, kind: websocket, url: 'ws://{closed}/ws', timeout: 500ms }}\n"));
    assert_eq!(code, Some(1), "{printed}");
    assert!(gate["actual"].as_str().unwrap().starts_with("handshake failed"), "{gate}");
}

#[test]
fn http_secrets_in_headers_and_echoed_bodies_never_reach_the_record() {
    let addr = http_server();
    let secret = "c0rrect-h0rse-battery";
    let pipeline = format!(
        "version: 1\nsecrets: {{ API_KEY: {{}} }}\nstages:\n  - name: probe\n    kind: verify\n    gates:\n      \
         - {{ name: echo, kind: http, method: POST, url: 'http://{addr}/echo', headers: {{ x-api-key: '${{secret:API_KEY}}' }}, body: 'key=${{secret:API_KEY}}', expect: {{ body_contains: [key=] }} }}\n"
    );
    let ws = Workspace::new(&pipeline);
    let out = ws.xtask(&["deploy", "--json"]).env("API_KEY", secret).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains(secret) && !stderr(&out).contains(secret));
    let record = std::fs::read_to_string(ws.latest().join("run.json")).unwrap();
    assert!(!record.contains(secret), "{record}");
    assert!(record.contains("x-api-key: ***"), "{record}");
}

#[test]
fn http_unreadable_ca_file_fails_clearly() {
    let addr = http_server();
    let (code, gate, printed) = run_gate(&format!(
        "      - {{ name: tls, kind: http, url: 'https://{addr}/health', tls: {{ ca: missing.pem }}, timeout: 300ms }}\n"
    ));
    assert_eq!(code, Some(1), "{printed}");
    assert!(gate["actual"].as_str().unwrap().starts_with("cannot read tls.ca `missing.pem`"), "{gate}");
}

#[test]
fn https_trusts_a_given_ca_or_insecure_and_rejects_an_unknown_certificate() {
    let (addr, ca) = https_server();
    let ws = Workspace::new(&pipeline(&format!(
        "      - {{ name: ca, kind: http, url: 'https://{addr}/health', tls: {{ ca: ca.pem }} }}\n      \
         - {{ name: insecure, kind: http, url: 'https://{addr}/health', tls: {{ insecure: true }} }}\n"
    )));
    std::fs::write(ws.path().join("ca.pem"), ca).unwrap();
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));

    let (code, gate, printed) =
        run_gate(&format!("      - {{ name: untrusted, kind: http, url: 'https://{addr}/health', timeout: 300ms }}\n"));
    assert_eq!(code, Some(1), "{printed}");
    let actual = gate["actual"].as_str().unwrap();
    assert!(actual.starts_with("request failed: ") && actual.contains("certificate"), "{actual}");
}

#[test]
fn wss_trusts_a_given_ca_or_insecure_and_rejects_an_unknown_certificate() {
    let (addr, ca) = wss_server();
    let ws = Workspace::new(&pipeline(&format!(
        "      - {{ name: ca, kind: websocket, url: 'wss://{addr}/ws', send: ping, expect: '\"echo\"', tls: {{ ca: ca.pem }} }}\n      \
         - {{ name: insecure, kind: websocket, url: 'wss://{addr}/ws', expect: hello, tls: {{ insecure: true }} }}\n"
    )));
    std::fs::write(ws.path().join("ca.pem"), ca).unwrap();
    let out = ws.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));

    let (code, gate, printed) =
        run_gate(&format!("      - {{ name: untrusted, kind: websocket, url: 'wss://{addr}/ws', timeout: 300ms }}\n"));
    assert_eq!(code, Some(1), "{printed}");
    let actual = gate["actual"].as_str().unwrap();
    assert!(actual.starts_with("handshake failed: ") && actual.contains("certificate"), "{actual}");
}
