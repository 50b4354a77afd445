//! Real runs against a loopback server: both load models, error kinds and templating.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::loopback::Loopback;
use super::*;

fn spec(model: Model, stop: Stop, url: String) -> LoadSpec {
    LoadSpec {
        model,
        stop,
        scenario: vec![WeightedRequest::get(url)],
        timeout: Duration::from_secs(2),
        insecure_tls: false,
    }
}

async fn run_quietly(s: &LoadSpec) -> BenchResult {
    run(s, CancellationToken::new(), |_| {}).await.unwrap()
}

#[tokio::test]
async fn closed_model_sends_exactly_the_requested_count() {
    let server = Loopback::start(200).unwrap();
    let s = spec(Model::Closed { connections: 4 }, Stop::Requests(500), server.url("/"));
    let r = run_quietly(&s).await;
    assert_eq!((r.requests, r.completed, r.errors.total()), (500, 500, 0));
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::Relaxed), 500);
    // Keep-alive: one TCP connection per load connection.
    assert_eq!(server.connections.load(std::sync::atomic::Ordering::Relaxed), 4);
    assert!(r.latency.p50_ms > 0.0 && r.latency.max_ms >= r.latency.p99_ms);
    assert!(r.throughput_per_sec > 0.0);
}

#[tokio::test]
async fn closed_model_runs_for_a_duration_with_a_timeline() {
    let server = Loopback::start(200).unwrap();
    let s = spec(Model::Closed { connections: 2 }, Stop::Duration(Duration::from_millis(2100)), server.url("/"));
    let mut seen = Vec::new();
    let r = run(&s, CancellationToken::new(), |x| seen.push(x.second)).await.unwrap();
    assert!((2.0..2.6).contains(&r.duration_secs), "{}", r.duration_secs);
    assert_eq!(seen, vec![0, 1, 2]);
    assert_eq!(r.timeline.len(), 3);
    assert_eq!(r.timeline.iter().map(|t| t.completed).sum::<u64>(), r.completed);
    assert!(r.completed > 100, "{}", r.completed);
}

#[tokio::test]
async fn open_model_keeps_the_rate_and_counts_from_intended_time() {
    let server = Loopback::start(200).unwrap();
    let open = Model::Open { rate_per_sec: 200.0, max_connections: 8 };
    let s = spec(open, Stop::Duration(Duration::from_secs(2)), server.url("/"));
    let r = run_quietly(&s).await;
    assert!((390..=401).contains(&r.completed), "{r:?}");
    assert_eq!(r.model, "open");
    assert_eq!(r.target_rate_per_sec, Some(200.0));
    assert!(r.unsent <= 2, "{r:?}");
}

#[tokio::test]
async fn open_model_with_a_request_count_stops_there() {
    let server = Loopback::start(200).unwrap();
    let open = Model::Open { rate_per_sec: 1000.0, max_connections: 4 };
    let r = run_quietly(&spec(open, Stop::Requests(300), server.url("/"))).await;
    assert_eq!((r.requests, r.completed, r.unsent), (300, 300, 0));
}

#[tokio::test]
async fn a_stalled_server_shows_in_open_model_latency() {
    let server = Loopback::start_with(loopback::Behaviour {
        status: 200,
        freeze: Some((Duration::from_millis(500), Duration::from_millis(500))),
    })
    .unwrap();
    let open = Model::Open { rate_per_sec: 200.0, max_connections: 4 };
    let r = run_quietly(&spec(open, Stop::Duration(Duration::from_secs(2)), server.url("/"))).await;
    // A quarter of the run is frozen, so the top few percent waited close to the full freeze.
    assert!(r.latency.p99_ms > 350.0, "{:?}", r.latency);
    assert!(r.late > 0, "{r:?}");
}

#[tokio::test]
async fn server_errors_are_counted_as_5xx() {
    let server = Loopback::start(500).unwrap();
    let s = spec(Model::Closed { connections: 2 }, Stop::Requests(50), server.url("/"));
    let r = run_quietly(&s).await;
    assert_eq!((r.completed, r.errors.status_5xx, r.errors.total()), (50, 50, 50));
    assert_eq!(r.error_rate, 1.0);
    let t: Threshold = "error_rate < 1%".parse().unwrap();
    assert!(!evaluate(&t, &r, None).passed);
}

#[tokio::test]
async fn a_closed_port_gives_connect_errors_and_fails_thresholds() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_quietly(&spec(Model::Closed { connections: 2 }, Stop::Requests(20), url)).await;
    assert_eq!((r.requests, r.completed, r.errors.connect), (20, 0, 20));
    let v = evaluate(&"p99 < 10s".parse().unwrap(), &r, None);
    assert!(!v.passed);
}

#[tokio::test]
async fn templates_weights_and_headers_reach_the_server() {
    let server = Loopback::start(200).unwrap();
    let mut post = WeightedRequest::get(server.url("/items/{{counter}}"));
    post.method = "POST".into();
    post.headers = vec![("x-test".into(), "yes".into())];
    post.body = Some(r#"{"id":"{{uuid}}"}"#.into());
    let mut skipped = WeightedRequest::get(server.url("/never"));
    skipped.weight = 0;
    let s = LoadSpec {
        scenario: vec![post, skipped],
        ..spec(Model::Closed { connections: 1 }, Stop::Requests(3), String::new())
    };
    let r = run_quietly(&s).await;
    assert_eq!(r.completed, 3);
    let head = server.last_head.lock().unwrap().clone();
    assert!(head.starts_with("POST /items/2 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("x-test: yes\r\n"), "{head}");
    assert!(head.contains(&format!("host: {}\r\n", server.addr)), "{head}");
    assert!(head.contains(r#"{"id":""#) && head.ends_with("\"}"), "{head}");
}

#[tokio::test]
async fn cancelling_stops_the_run_early() {
    let server = Loopback::start(200).unwrap();
    let s = spec(Model::Closed { connections: 2 }, Stop::Duration(Duration::from_secs(30)), server.url("/"));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let r = run(&s, cancel, |_| {}).await.unwrap();
    assert!(r.duration_secs < 2.0, "{}", r.duration_secs);
}

#[tokio::test]
async fn bad_specs_are_rejected_with_clear_errors() {
    let mut s = spec(Model::Closed { connections: 0 }, Stop::Requests(1), "http://127.0.0.1:1/".into());
    let e = run(&s, CancellationToken::new(), |_| {}).await.unwrap_err().to_string();
    assert!(e.contains("at least 1 connection"), "{e}");
    s.model = Model::Closed { connections: 1 };
    s.scenario[0].url = "ftp://127.0.0.1/".into();
    let e = format!("{:#}", run(&s, CancellationToken::new(), |_| {}).await.unwrap_err());
    assert!(e.contains("unsupported URL scheme \"ftp\""), "{e}");
    s.scenario[0].url = "http://127.0.0.1:1/{{nope}}".into();
    let e = format!("{:#}", run(&s, CancellationToken::new(), |_| {}).await.unwrap_err());
    assert!(e.contains("unknown placeholder"), "{e}");
}

/// `openssl s_server -WWW` on 127.0.0.1 with a throwaway self-signed certificate.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = std::env::temp_dir().join(format!("xtask-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.txt"), "hello").unwrap();
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(&dir);
        xshell::cmd!(
            sh,
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=localhost"
        )
        .quiet()
        .ignore_stderr()
        .run()
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer { child, port, dir }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_needs_insecure_tls() {
    let server = TlsServer::start();
    let url = format!("https://127.0.0.1:{}/index.txt", server.port);
    // s_server answers HTTP/1.0 and closes, so this also exercises reconnecting.
    let mut s = spec(Model::Closed { connections: 1 }, Stop::Requests(5), url);
    s.insecure_tls = true;
    let r = run_quietly(&s).await;
    assert_eq!((r.completed, r.errors.total()), (5, 0), "{r:?}");
    s.insecure_tls = false;
    let r = run_quietly(&s).await;
    assert_eq!((r.completed, r.errors.connect), (0, 5), "{r:?}");
}

#[test]
fn the_run_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let s = spec(Model::Closed { connections: 1 }, Stop::Requests(1), "http://127.0.0.1:1/".into());
    let fut = run(&s, CancellationToken::new(), |_| {});
    assert_send(&fut);
}

#[tokio::test]
async fn dropping_the_run_stops_the_load() {
    let server = Loopback::start(200).unwrap();
    let s = spec(Model::Closed { connections: 2 }, Stop::Duration(Duration::from_secs(30)), server.url("/"));
    let _ = tokio::time::timeout(Duration::from_millis(300), run(&s, CancellationToken::new(), |_| {})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drop = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::Relaxed), after_drop);
}

#[tokio::test]
async fn slow_answers_count_as_timeouts() {
    let server = Loopback::start_with(loopback::Behaviour {
        status: 200,
        freeze: Some((Duration::ZERO, Duration::from_secs(5))),
    })
    .unwrap();
    let mut s = spec(Model::Closed { connections: 1 }, Stop::Requests(3), server.url("/"));
    s.timeout = Duration::from_millis(200);
    let r = run_quietly(&s).await;
    assert_eq!((r.requests, r.completed, r.errors.timeout), (3, 0, 3), "{r:?}");
}

#[tokio::test]
async fn the_mix_follows_the_weights() {
    let mut a = WeightedRequest::get("http://127.0.0.1:1/a");
    a.weight = 3;
    let mut never = WeightedRequest::get("http://127.0.0.1:1/never");
    never.weight = 0;
    let b = WeightedRequest::get("http://127.0.0.1:1/b");
    let s = LoadSpec {
        scenario: vec![a, never, b],
        ..spec(Model::Closed { connections: 1 }, Stop::Requests(1), String::new())
    };
    let scenario = super::client::Scenario::prepare(&s).await.unwrap();
    let mut counts = [0u32; 3];
    for _ in 0..10_000 {
        counts[scenario.pick()] += 1;
    }
    assert_eq!(counts[1], 0, "{counts:?}");
    assert!((7_000..8_000).contains(&counts[0]), "{counts:?}");
}
