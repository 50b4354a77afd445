//! The router's own behaviour (headers, limits, auth, CORS, rate limiting, input errors), driven in-process.
//! Dependencies point at closed ports: none of these answers may need Postgres, Redis or etcd.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::config::Config;
use crate::state::AppState;
use crate::{cache, db, metrics, ratelimit};

fn state(pairs: &[(&str, &str)]) -> AppState {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), "postgres://app:pw@127.0.0.1:1/app".into()),
        ("REDIS_URL".into(), "redis://:pw@127.0.0.1:1".into()),
        ("APP_VERSION".into(), "7.7.7-test".into()),
        ("INSTANCE_ID".into(), "i-test".into()),
    ];
    vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_lookup(|key| vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone())).unwrap();
    AppState {
        pool: db::pool(&config.database_url, 2).unwrap(),
        cache: cache::Cache::new(&config.redis_url).unwrap(),
        metrics: metrics::Metrics::new().unwrap(),
        http: crate::net::client(Duration::from_millis(200)).unwrap(),
        limiter: (config.rate_limit_per_sec > 0)
            .then(|| Arc::new(Mutex::new(ratelimit::TokenBucket::new(config.rate_limit_per_sec, Instant::now())))),
        config: Arc::new(config),
    }
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = super::router(state.clone()).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).body(body.into()).unwrap()
}

#[tokio::test]
async fn health_answers_with_version_header() {
    let (status, headers, body) = send(&state(&[]), get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ok"}"#);
    assert_eq!(headers["x-app-version"], "7.7.7-test");
    assert_eq!(headers["x-instance"], "i-test");
    let (status, headers, _) = send(&state(&[]), get("/no/such/route")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-app-version"], "7.7.7-test");
}

#[tokio::test]
async fn readiness_is_503_with_every_check_when_dependencies_are_down() {
    let (status, _, body) = send(&state(&[("ETCD_ENDPOINTS", "http://127.0.0.1:1")]), get("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "degraded");
    for dependency in ["postgres", "redis", "etcd"] {
        assert_eq!(body["checks"][dependency]["status"], "down", "{body}");
        assert!(body["checks"][dependency]["latency_ms"].is_number());
    }
    // The readiness ping failed twice (first try and retry): the Redis breaker is open.
    assert_eq!(body["circuit_breakers"]["redis"]["state"], "open", "{body}");
    assert_eq!(body["circuit_breakers"]["redis"]["opened_total"], 1, "{body}");
}

#[tokio::test]
async fn bad_input_is_4xx_never_5xx() {
    let s = state(&[("MAX_BODY_BYTES", "100")]);
    let (status, _, body) = send(&s, post("/api/v1/executions", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = send(&s, post("/api/v1/executions", vec![b'x'; 500])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("MAX_BODY_BYTES"), "{body}");
    let (status, _, _) = send(&s, get("/api/v1/executions/abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(&s, get("/api/v1/executions?limit=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_guards_writes_and_admin_only() {
    let s = state(&[("API_TOKEN", "t0ken")]);
    let (status, _, _) = send(&s, post("/api/v1/executions", "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&s, get("/api/v1/admin/config")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let authorized =
        Request::get("/api/v1/admin/config").header(header::AUTHORIZATION, "Bearer t0ken").body(Body::empty()).unwrap();
    let (status, _, body) = send(&s, authorized).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("t0ken") && !body.contains(":pw@"), "{body}");
    let (status, _, _) = send(&s, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn cors_echoes_only_allowed_origins() {
    let s = state(&[("CORS_ALLOWED_ORIGINS", "https://ok.example")]);
    let with_origin =
        |origin: &str| Request::get("/health").header(header::ORIGIN, origin).body(Body::empty()).unwrap();
    let (_, headers, _) = send(&s, with_origin("https://ok.example")).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://ok.example");
    let (_, headers, _) = send(&s, with_origin("https://evil.example")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn rate_limit_answers_429_but_spares_probes() {
    let s = state(&[("RATE_LIMIT_PER_SEC", "2")]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(&s, get("/version")).await.0);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(send(&s, get("/health/live")).await.0, StatusCode::OK);
    assert_eq!(send(&s, get("/metrics")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn token_holders_are_not_rate_limited() {
    let s = state(&[("RATE_LIMIT_PER_SEC", "1"), ("API_TOKEN", "t0ken")]);
    let authorized =
        || Request::get("/version").header(header::AUTHORIZATION, "Bearer t0ken").body(Body::empty()).unwrap();
    for _ in 0..5 {
        assert_eq!(send(&s, authorized()).await.0, StatusCode::OK);
    }
    let wrong = Request::get("/version").header(header::AUTHORIZATION, "Bearer nope").body(Body::empty()).unwrap();
    send(&s, get("/version")).await;
    assert_eq!(send(&s, wrong).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn every_answer_forbids_content_sniffing() {
    let s = state(&[]);
    let (status, headers, _) = send(&s, get("/api/v1/executions/%3Cscript%3E")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(send(&s, get("/metrics")).await.1["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn cors_star_mirrors_any_origin() {
    let s = state(&[("CORS_ALLOWED_ORIGINS", "*")]);
    let request = Request::get("/health").header(header::ORIGIN, "https://evil.example").body(Body::empty()).unwrap();
    let (_, headers, _) = send(&s, request).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://evil.example");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let s = state(&[]);
    send(&s, get("/api/v1/executions/abc")).await;
    let (status, headers, body) = send(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    assert!(
        body.contains(r#"control_plane_http_requests_total{route="/api/v1/executions/{id}",status="400"} 1"#),
        "{body}"
    );
}

/// The routes the router registers, with their methods, read from the router's source.
fn routed() -> std::collections::BTreeSet<(String, String)> {
    let source = include_str!("mod.rs");
    let mut routes = std::collections::BTreeSet::new();
    for line in source.lines().filter_map(|l| l.trim().strip_prefix(".route(\"")) {
        let (path, handlers) = line.split_once('"').unwrap();
        for method in ["get", "post", "put", "patch", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                routes.insert((path.to_string(), method.to_string()));
            }
        }
    }
    routes
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let doc: serde_json::Value = serde_json::from_str(super::ops::OPENAPI).unwrap();
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (path.clone(), m.clone())))
        .collect();
    let routed = routed();
    assert!(routed.len() >= 10, "the router's routes were not found: {routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "openapi.json documents routes the router lacks: {unrouted:?}");
}

#[tokio::test]
async fn openapi_is_served() {
    let (status, headers, body) = send(&state(&[]), Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(body.contains("\"openapi\": \"3.0.3\""));
}
