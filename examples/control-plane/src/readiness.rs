//! Readiness: Postgres, Redis and etcd each checked with a short deadline, concurrently.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
pub struct Check {
    pub status: &'static str,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs all checks; returns (all up, JSON body).
pub async fn check_all(state: &AppState) -> (bool, Value) {
    let (pg, redis, etcd) =
        tokio::join!(timed(postgres(state)), timed(async { state.cache.ping().await }), timed(etcd(state)),);
    let mut checks = Map::new();
    let mut ready = true;
    for (name, check) in [("postgres", pg), ("redis", redis), ("etcd", etcd)] {
        let up = check.status == "up";
        state.metrics.set_dependency(name, up);
        ready &= up;
        checks.insert(name.to_string(), json!(check));
    }
    let status = if ready { "ready" } else { "degraded" };
    let redis_breaker = state.cache.breaker();
    state.metrics.set_breaker("redis", &redis_breaker);
    let breakers = json!({ "redis": redis_breaker });
    (ready, json!({ "status": status, "checks": checks, "circuit_breakers": breakers }))
}

async fn timed(check: impl Future<Output = Result<()>>) -> Check {
    let start = Instant::now();
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    let latency_ms = (start.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    match outcome {
        Ok(()) => Check { status: "up", latency_ms, error: None },
        Err(err) => Check { status: "down", latency_ms, error: Some(format!("{err:#}")) },
    }
}

async fn postgres(state: &AppState) -> Result<()> {
    let client = state.pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// etcd is up when any endpoint's `/health` says so.
async fn etcd(state: &AppState) -> Result<()> {
    let mut last = anyhow!("ETCD_ENDPOINTS is empty");
    for endpoint in &state.config.etcd_endpoints {
        let url = format!("{}/health", endpoint.trim_end_matches('/'));
        match state.http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if body.get("health").and_then(Value::as_str) == Some("true") {
                    return Ok(());
                }
                last = anyhow!("etcd reports unhealthy: {body}");
            }
            Ok(resp) => last = anyhow!("etcd /health answered {}", resp.status()),
            Err(err) => last = anyhow::Error::new(err.without_url()),
        }
    }
    Err(last)
}
