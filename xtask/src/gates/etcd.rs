//! `etcd`: health, keys registered under a prefix, or keys gone within a window (through the v3 JSON gateway).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::Check;
use crate::config::{EtcdGate, GateSpec};

const TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(500);

pub async fn check(gate: &EtcdGate) -> Check {
    let expected = GateSpec::Etcd(gate.clone()).target();
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return Check::new(false, expected, format!("HTTP client: {e}")),
    };
    let base = gate.endpoint.trim_end_matches('/');
    let mut problems = Vec::new();
    if gate.auth.is_some()
        && let Some(p) = auth_problem(&client, base).await
    {
        problems.push(p);
    }
    let needs_keys = gate.min_keys.is_some() || gate.absent_after.is_some();
    let client = match (&gate.username, &gate.password) {
        (Some(user), Some(password)) if needs_keys => match authenticated(base, user, password).await {
            Ok(client) => client,
            Err(e) => return Check::new(false, expected, e),
        },
        _ => client,
    };
    if gate.health
        && let Err(e) = health(&client, base).await
    {
        problems.push(e);
    }
    if let (Some(prefix), Some(min)) = (&gate.prefix, gate.min_keys) {
        match count(&client, base, prefix).await {
            Ok(n) if n >= min => {}
            Ok(n) => problems.push(format!("{n} keys under {prefix}, fewer than {min}")),
            Err(e) => problems.push(e),
        }
    }
    if let (Some(prefix), Some(window)) = (&gate.prefix, gate.absent_after) {
        if let Err(e) = gone_within(&client, base, prefix, window.0).await {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Check::new(true, expected, "as expected")
    } else {
        Check::new(false, expected, problems.join("; "))
    }
}

async fn health(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let body: Value = get_json(client.get(format!("{base}/health"))).await?;
    match body["health"].as_str() {
        Some("true") => Ok(()),
        _ => Err(format!("unhealthy: {body}")),
    }
}

/// Reading keys without credentials must be refused; an answer means anyone on the network can read and write.
async fn auth_problem(client: &reqwest::Client, base: &str) -> Option<String> {
    let body = json!({ "key": STANDARD.encode("/"), "range_end": STANDARD.encode([0u8]), "count_only": true });
    let response = match client.post(format!("{base}/v3/kv/range")).json(&body).send().await {
        Ok(response) => response,
        Err(e) => return Some(format!("etcd unreachable: {e}")),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Some("a range request without credentials was answered: authentication is off".into());
    }
    // gRPC's Unauthenticated is 16, mapped to 401; etcd names the missing user or the invalid token.
    let refused = status == reqwest::StatusCode::UNAUTHORIZED
        || ["user name is empty", "invalid auth token", "permission denied"].iter().any(|t| text.contains(t));
    if refused {
        None
    } else {
        Some(format!("a range request without credentials failed, but not as refused: {status} {}", cut(&text)))
    }
}

/// A client that sends the token etcd issues for this user with every request.
async fn authenticated(base: &str, user: &str, password: &str) -> Result<reqwest::Client, String> {
    let plain = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| format!("HTTP client: {e}"))?;
    let request =
        plain.post(format!("{base}/v3/auth/authenticate")).json(&json!({ "name": user, "password": password }));
    let answer = match get_json(request).await {
        Ok(answer) => answer,
        // Whether auth is on is the `auth: required` check's question; keys can be read without it.
        Err(e) if e.contains("authentication is not enabled") => return Ok(plain),
        Err(e) => return Err(format!("authenticating as {user}: {e}")),
    };
    let token = answer["token"].as_str().ok_or_else(|| format!("authenticating as {user} gave no token: {answer}"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(token).map_err(|_| "etcd's token is not a header value")?;
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .default_headers(headers)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Polls until no key is left under `prefix`, or the window closes.
async fn gone_within(client: &reqwest::Client, base: &str, prefix: &str, window: Duration) -> Result<(), String> {
    let deadline = Instant::now() + window;
    loop {
        let n = count(client, base, prefix).await?;
        if n == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{n} keys still under {prefix} after {}", humantime::format_duration(window)));
        }
        tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
    }
}

async fn count(client: &reqwest::Client, base: &str, prefix: &str) -> Result<u64, String> {
    let body = json!({
        "key": STANDARD.encode(prefix),
        "range_end": STANDARD.encode(range_end(prefix.as_bytes())),
        "count_only": true,
    });
    let answer = get_json(client.post(format!("{base}/v3/kv/range")).json(&body)).await?;
    // The gateway writes int64 as a string and leaves out zero values.
    match &answer["count"] {
        Value::Null => Ok(0),
        Value::String(s) => s.parse().map_err(|_| format!("unexpected count {s:?}")),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("unexpected count {n}")),
        other => Err(format!("unexpected range answer: {other}")),
    }
}

/// The first key after every key starting with `prefix`: the prefix with its last byte below 0xff raised by one.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

async fn get_json(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| format!("etcd unreachable: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("reading etcd's answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("etcd answered {status}: {}", cut(&text)));
    }
    serde_json::from_str(&text).map_err(|e| format!("etcd's answer is not JSON ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends() {
        assert_eq!(range_end(b"/services/"), b"/services0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b""), vec![0]);
    }
}
