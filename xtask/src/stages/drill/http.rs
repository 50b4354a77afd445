//! The few HTTP calls drills make to the service: its version and readiness, canary writes and reads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(250);

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?)
}

/// Status and JSON body (Null when the body is not JSON).
pub async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = client.get(url).send().await.map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    headers: &BTreeMap<String, String>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Polls `base/version` until it shows `version` and `base/health/ready` answers 200; how long it took.
pub async fn wait_serving(
    client: &reqwest::Client,
    base: &str,
    version: &str,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let last = match serving(client, base, version).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => return Err("interrupted".into()),
        }
    }
}

async fn serving(client: &reqwest::Client, base: &str, version: &str) -> Result<(), String> {
    let (status, body) = get(client, &format!("{base}/version")).await.map_err(|e| format!("{e:#}"))?;
    let shown = body.get("version").and_then(Value::as_str).unwrap_or("");
    if status != 200 || shown != version {
        return Err(format!("/version answers {status} with version {shown:?}"));
    }
    let (status, _) = get(client, &format!("{base}/health/ready")).await.map_err(|e| format!("{e:#}"))?;
    if status != 200 {
        return Err(format!("version {shown} shown, /health/ready answers {status}"));
    }
    Ok(())
}
