//! Self-registration in etcd through its v3 JSON gateway: lease, key, keep-alive, revoke on shutdown.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::redact::redact_url;

const LEASE_TTL_SECS: i64 = 10;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);
const RETRY_EVERY: Duration = Duration::from_secs(2);

pub struct Registration {
    pub endpoints: Vec<String>,
    pub key: String,
    pub value: String,
    /// User and password, when etcd has authentication enabled.
    pub credentials: Option<(String, String)>,
}

impl Registration {
    pub fn new(endpoints: Vec<String>, service: &str, instance: &str, value: Value) -> Self {
        Self { endpoints, key: service_key(service, instance), value: value.to_string(), credentials: None }
    }
}

pub fn service_key(service: &str, instance: &str) -> String {
    format!("/services/{service}/{instance}")
}

/// Keeps the key registered until `shutdown` flips, then revokes the lease so the key disappears at once.
/// Never returns an error: an unreachable etcd is retried in the background.
pub async fn run(reg: Registration, mut shutdown: watch::Receiver<bool>) {
    let http = match crate::net::client(Duration::from_secs(2)) {
        Ok(http) => http,
        Err(err) => return tracing::error!(error = %err, "cannot build the etcd HTTP client"),
    };
    let mut etcd = Etcd { http, endpoints: reg.endpoints.clone(), credentials: reg.credentials.clone(), token: None };
    let mut lease: Option<i64> = None;
    loop {
        lease = match lease {
            None => register_logged(&mut etcd, &reg).await,
            Some(id) => match etcd.keep_alive(id).await {
                Ok(()) => Some(id),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), lease = id, "etcd lease lost, re-registering");
                    register_logged(&mut etcd, &reg).await
                }
            },
        };
        let wait = if lease.is_some() { KEEPALIVE_EVERY } else { RETRY_EVERY };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Some(id) = lease {
        match etcd.call("/v3/lease/revoke", json!({ "ID": id })).await {
            Ok(_) => tracing::info!(key = %reg.key, "etcd lease revoked"),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "revoking the etcd lease failed")
            }
        }
    }
}

async fn register_logged(etcd: &mut Etcd, reg: &Registration) -> Option<i64> {
    match etcd.register(&reg.key, &reg.value).await {
        Ok(id) => {
            tracing::info!(key = %reg.key, lease = id, "registered in etcd");
            Some(id)
        }
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "etcd registration failed, retrying");
            None
        }
    }
}

struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    credentials: Option<(String, String)>,
    /// Sent as `Authorization` with every call; renewed at each registration (tokens expire when idle).
    token: Option<String>,
}

impl Etcd {
    async fn register(&mut self, key: &str, value: &str) -> Result<i64> {
        if let Some((user, password)) = self.credentials.clone() {
            self.token = None;
            match self.call("/v3/auth/authenticate", json!({ "name": user, "password": password })).await {
                Ok(answer) => {
                    let token = answer.get("token").and_then(Value::as_str).context("etcd issued no token")?;
                    self.token = Some(token.to_string());
                }
                // Credentials are configured but etcd does not ask for them: work, but say so.
                Err(err) if format!("{err:#}").contains("authentication is not enabled") => {
                    tracing::warn!("etcd has authentication off; registering without credentials")
                }
                Err(err) => return Err(err.context("authenticating to etcd")),
            }
        }
        let granted = self.call("/v3/lease/grant", json!({ "TTL": LEASE_TTL_SECS, "ID": 0 })).await?;
        let id = int_field(&granted, "ID").context("lease grant answered without an ID")?;
        self.call("/v3/kv/put", json!({ "key": B64.encode(key), "value": B64.encode(value), "lease": id })).await?;
        Ok(id)
    }

    async fn keep_alive(&self, id: i64) -> Result<()> {
        let answer = self.call("/v3/lease/keepalive", json!({ "ID": id })).await?;
        // The gateway streams `{"result": {...}}`; an expired lease comes back without a TTL.
        let result = answer.get("result").unwrap_or(&answer);
        match int_field(result, "TTL") {
            Some(ttl) if ttl > 0 => Ok(()),
            _ => bail!("lease {id} expired"),
        }
    }

    /// POSTs to each endpoint in turn until one answers.
    async fn call(&self, path: &str, body: Value) -> Result<Value> {
        let mut last = anyhow!("ETCD_ENDPOINTS is empty");
        for endpoint in &self.endpoints {
            let url = format!("{}{path}", endpoint.trim_end_matches('/'));
            match self.post(&url, &body).await {
                Ok(answer) => return Ok(answer),
                Err(err) => last = err.context(format!("POST {}", redact_url(&url))),
            }
        }
        Err(last)
    }

    /// Errors drop the URL (an endpoint may carry credentials) but keep the cause chain.
    async fn post(&self, url: &str, body: &Value) -> Result<Value> {
        let mut request = self.http.post(url).json(body);
        if let Some(token) = &self.token {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        let response = request.send().await.map_err(|e| anyhow::Error::new(e.without_url()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| anyhow::Error::new(e.without_url()))?;
        if !status.is_success() {
            bail!("etcd answered {status}: {}", text.chars().take(200).collect::<String>());
        }
        // keepalive may stream several JSON objects, one per line; the first is enough.
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("{}");
        let answer: Value = serde_json::from_str(first).context("etcd answered with invalid JSON")?;
        if let Some(error) = answer.get("error") {
            bail!("etcd error: {error}");
        }
        Ok(answer)
    }
}

/// The JSON gateway encodes int64 fields as strings.
fn int_field(value: &Value, name: &str) -> Option<i64> {
    match value.get(name)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_and_int64_strings() {
        assert_eq!(service_key("control-plane", "host-1"), "/services/control-plane/host-1");
        assert_eq!(int_field(&json!({"ID": "7587862"}), "ID"), Some(7587862));
        assert_eq!(int_field(&json!({"TTL": 10}), "TTL"), Some(10));
        assert_eq!(int_field(&json!({"ID": "x"}), "ID"), None);
        assert_eq!(int_field(&json!({}), "TTL"), None);
    }
}
