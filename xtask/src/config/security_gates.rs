//! The gate kinds that test a running service's defences and the stack's credentials: their keys and checks.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::data_gates::Bytes;
use super::model::{Dur, TlsOptions};

/// Hostile requests to one endpoint: each answer must be a client error or a success, never a 5xx.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeGate {
    /// The endpoint; `{{payload}}` in it is replaced by each payload, percent-encoded.
    pub url: String,
    /// Default POST.
    #[serde(default = "default_post")]
    pub method: String,
    /// Request headers (e.g. `authorization`, so the probe reaches the handler, not the auth layer).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What to send: `malformed_json` (every answer is a 4xx), `oversize` (answered 413),
    /// `sql_injection` (no 5xx, no database error text, no injected sleep) or
    /// `xss` (no 5xx, the payload never comes back unescaped).
    pub attack: Attack,
    /// A JSON body template; `{{payload}}` is replaced by each payload, escaped as JSON string content.
    /// `oversize` fills it to `size` (default: a JSON object with one long string).
    #[serde(default)]
    pub body: Option<String>,
    /// Replace the built-in payload list.
    #[serde(default)]
    pub payloads: Vec<String>,
    /// `oversize`: how large the body is (default 1MiB).
    #[serde(default)]
    pub size: Option<Bytes>,
    /// Each request gives up after this long (default 10s).
    #[serde(default)]
    pub request_timeout: Option<Dur>,
    #[serde(default)]
    pub tls: TlsOptions,
}

fn default_post() -> String {
    "POST".into()
}

fn default_get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    MalformedJson,
    Oversize,
    SqlInjection,
    Xss,
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attack::MalformedJson => "malformed JSON",
            Attack::Oversize => "oversize body",
            Attack::SqlInjection => "SQL injection",
            Attack::Xss => "XSS",
        })
    }
}

/// A burst of requests must meet the rate limit: at least one answer is 429, none is a 5xx.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitGate {
    pub url: String,
    #[serde(default = "default_get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Requests in the burst (default 200): more than the limit allows in a second.
    #[serde(default)]
    pub requests: Option<u32>,
    /// Requests in flight at once (default 20).
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub tls: TlsOptions,
}

/// Cross-origin requests: the allowed origin is echoed in `Access-Control-Allow-Origin`, another is not.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsGate {
    pub url: String,
    /// An origin the service lists, e.g. `https://console.example.com`.
    pub allowed_origin: String,
    /// An origin it must refuse (default `https://attacker.example`).
    #[serde(default)]
    pub disallowed_origin: Option<String>,
    /// The method named in the preflight's `Access-Control-Request-Method` (default GET).
    #[serde(default = "default_get")]
    pub method: String,
    #[serde(default)]
    pub tls: TlsOptions,
}

pub const DEFAULT_DISALLOWED_ORIGIN: &str = "https://attacker.example";

/// A TLS endpoint: the certificate is valid for the host and not about to expire, old protocols are refused.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsGate {
    /// `host:port`.
    pub address: String,
    /// The name the certificate must be valid for (default: the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A PEM file of trusted certificates (default: the system's roots), relative to the working directory.
    #[serde(default)]
    pub ca: Option<String>,
    /// The certificate must stay valid at least this long (default 14 days).
    #[serde(default)]
    pub min_validity: Option<Dur>,
    /// The oldest protocol the server may accept: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == TlsVersion::V1_2 { "TLS 1.2" } else { "TLS 1.3" })
    }
}

/// Configuration files hold no plaintext credentials: a password-like key has a `${VAR}` reference,
/// a template expression or a Secret reference as its value, never a literal.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsScanGate {
    /// YAML files or globs (`helm/*/values*.yaml`), relative to the pipeline file.
    pub files: Vec<String>,
    /// Keys whose literal values are known not to be credentials (matched case-insensitively).
    #[serde(default)]
    pub ignore_keys: Vec<String>,
}

impl ProbeGate {
    pub fn validate(&self) -> Result<(), String> {
        check_http_url(&self.url)?;
        let placed = self.url.contains(PAYLOAD) || self.body.as_deref().is_some_and(|b| b.contains(PAYLOAD));
        if matches!(self.attack, Attack::SqlInjection | Attack::Xss) && !placed {
            return Err(format!("the payload goes nowhere: put `{PAYLOAD}` in `url` or `body`"));
        }
        if self.size.is_some() && self.attack != Attack::Oversize {
            return Err("`size` applies to `attack: oversize`".into());
        }
        if self.attack == Attack::Oversize && !self.payloads.is_empty() {
            return Err("`payloads` do not apply to `attack: oversize`; set `size`".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        format!("{} probes on {} {}", self.attack, self.method.to_uppercase(), self.url)
    }
}

/// Where a probe's payload goes in `url` and `body`.
pub const PAYLOAD: &str = "{{payload}}";

impl RateLimitGate {
    pub fn validate(&self) -> Result<(), String> {
        check_http_url(&self.url)?;
        if self.requests == Some(0) || self.concurrency == Some(0) {
            return Err("`requests` and `concurrency` must be at least 1".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        format!("{} requests to {} {} get a 429", self.requests.unwrap_or(200), self.method.to_uppercase(), self.url)
    }
}

impl CorsGate {
    pub fn validate(&self) -> Result<(), String> {
        check_http_url(&self.url)?;
        if Some(&self.allowed_origin) == self.disallowed_origin.as_ref() {
            return Err("`allowed_origin` and `disallowed_origin` are the same".into());
        }
        Ok(())
    }

    pub fn disallowed(&self) -> &str {
        self.disallowed_origin.as_deref().unwrap_or(DEFAULT_DISALLOWED_ORIGIN)
    }

    pub fn target(&self) -> String {
        format!("{}: {} allowed, {} refused", self.url, self.allowed_origin, self.disallowed())
    }
}

impl TlsGate {
    pub fn validate(&self) -> Result<(), String> {
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(format!("`{}` is not host:port", self.address)),
        }
    }

    pub fn target(&self) -> String {
        format!("tls://{} ({} or newer)", self.address, self.min_version)
    }
}

impl SecretsScanGate {
    pub fn validate(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("`files` is empty: name the compose files and Helm values to scan".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        format!("no plaintext credentials in {}", self.files.join(", "))
    }
}

fn check_http_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("`{url}` must start with http:// or https://"))
    }
}
