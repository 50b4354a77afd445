//! The gate kinds that look at the stack's data services and containers: their keys and checks of those keys.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

use super::model::Dur;
use crate::redact::mask_url_password;

/// A Postgres query and what its rows must be (compared as text).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlGate {
    /// `postgres://user:password@host:port/db`; the password is masked wherever the URL is shown.
    pub url: String,
    pub query: String,
    /// Exactly this many rows.
    #[serde(default)]
    pub rows: Option<u64>,
    /// At least this many rows.
    #[serde(default)]
    pub min_rows: Option<u64>,
    /// The first column of the first row, as text.
    #[serde(default)]
    pub equals: Option<String>,
    /// The whole result, row by row, as text (`null` for SQL NULL). An empty result fails unless the
    /// gate's `allow_empty` is set.
    #[serde(default)]
    pub expect_rows: Option<Vec<Vec<String>>>,
    /// `required`: a login without the password, and one with a wrong password, are refused.
    #[serde(default)]
    pub auth: Option<AuthExpectation>,
}

/// A Redis server answers and is configured as expected.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisGate {
    /// `redis://:password@host:port`.
    pub url: String,
    /// PING answers PONG.
    #[serde(default)]
    pub ping: bool,
    /// `required`: a PING without the password is refused with NOAUTH.
    #[serde(default)]
    pub auth: Option<AuthExpectation>,
    /// CONFIG GET name → expected value, e.g. `maxmemory-policy: allkeys-lru`.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthExpectation {
    Required,
}

/// A scalar compared as text, so `maxmemory: 268435456` needs no quotes.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(t) => f.write_str(t),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{}", if *b { "yes" } else { "no" }),
        }
    }
}

/// etcd through its v3 JSON gateway: health, registered keys, keys that must expire.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdGate {
    /// `http://host:port`.
    pub endpoint: String,
    /// GET /health answers `{"health":"true"}`.
    #[serde(default)]
    pub health: bool,
    /// A key prefix, e.g. `/services/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// At least this many keys under `prefix`.
    #[serde(default)]
    pub min_keys: Option<u64>,
    /// The keys under `prefix` are gone within this long (a lease expired after its owner stopped).
    #[serde(default)]
    pub absent_after: Option<Dur>,
    /// `required`: reading keys without credentials is refused.
    #[serde(default)]
    pub auth: Option<AuthExpectation>,
    /// A user to authenticate as (with auth enabled, reading keys needs one).
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password (use `${secret:NAME}`).
    #[serde(default)]
    pub password: Option<String>,
}

/// Prometheus: scrape targets up, a PromQL query's result, alerting rules loaded.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusGate {
    /// `http://host:port`.
    pub url: String,
    /// Every active target's health is `up` (no targets fails).
    #[serde(default)]
    pub targets_up: bool,
    /// A PromQL instant query.
    #[serde(default)]
    pub query: Option<String>,
    /// The query returns at least this many series (default 1).
    #[serde(default)]
    pub min_results: Option<usize>,
    /// Every sample of the query satisfies this bound.
    #[serde(default)]
    pub bound: Option<Bound>,
    /// Alerting rules that must be loaded, by name.
    #[serde(default)]
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Eq => left == right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// A container's state and resource use, through the engine API.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerGate {
    /// The container's name or id (`name` is the gate's own name).
    #[serde(default)]
    pub container: Option<String>,
    /// Compose project (label `com.docker.compose.project`); with `service`.
    #[serde(default)]
    pub project: Option<String>,
    /// Compose service (label `com.docker.compose.service`); with `project`.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub running: Option<bool>,
    /// The container's healthcheck reports `healthy`.
    #[serde(default)]
    pub healthy: Option<bool>,
    #[serde(default)]
    pub max_restarts: Option<i64>,
    /// Memory in use (one stats sample, page cache excluded), e.g. `512MiB`.
    #[serde(default)]
    pub max_memory: Option<Bytes>,
    /// CPU use over one stats interval, 100 = one core.
    #[serde(default)]
    pub max_cpu_percent: Option<f64>,
}

/// A container's recent log lines: JSON, and no level above a bound.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsGate {
    /// The container's name or id (`name` is the gate's own name).
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    /// Read lines from this long ago on.
    #[serde(default)]
    pub since: Option<Dur>,
    /// Read this many last lines (default 1000 when `since` is not given).
    #[serde(default)]
    pub tail: Option<u64>,
    /// Every non-empty line is a JSON object.
    #[serde(default)]
    pub json: bool,
    /// No line's `level` field is above this. No lines at all fails unless the gate's `allow_empty` is set.
    #[serde(default)]
    pub max_level: Option<Level>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// Reads the level names common loggers write, in any case.
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" | "notice" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "err" | "fatal" | "critical" | "crit" | "panic" => Level::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(format!("{self:?}").to_lowercase().as_str())
    }
}

/// Which container a gate looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    Compose { project: String, service: String },
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Name(n) => write!(f, "container {n}"),
            Selector::Compose { project, service } => write!(f, "service {service} of project {project}"),
        }
    }
}

fn selector(name: &Option<String>, project: &Option<String>, service: &Option<String>) -> Result<Selector, String> {
    match (name, project, service) {
        (Some(n), None, None) => Ok(Selector::Name(n.clone())),
        (None, Some(p), Some(s)) => Ok(Selector::Compose { project: p.clone(), service: s.clone() }),
        _ => Err("select the container by `container` (its name), or by `project` and `service` together".into()),
    }
}

/// A size in bytes written with a unit: `512MiB`, `1GB`, `256m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        parse_bytes(&text).map(Bytes).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bytes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A size with a unit: 512MiB, 1GiB, 500MB, 256m.",
            "pattern": "^\\s*[0-9.]+\\s*[A-Za-z]*\\s*$"
        })
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}MiB", self.0 as f64 / (1024.0 * 1024.0))
    }
}

pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("invalid size `{text}`; expected e.g. 512MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1000,
        "mb" => 1000_000,
        "gb" => 1000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "" => return Err(format!("size `{text}` has no unit; write e.g. `{t}MiB`")),
        other => return Err(format!("unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    Ok((number * factor as f64).round() as u64)
}

impl SqlGate {
    pub fn validate(&self) -> Result<(), String> {
        if self.query.trim().is_empty() {
            return Err("`query` is empty".into());
        }
        check_url(&self.url, &["postgres://", "postgresql://"])
    }

    pub fn target(&self) -> String {
        let auth = if self.auth.is_some() { ", auth required" } else { "" };
        format!("{} {:?}{auth}", mask_url_password(&self.url), self.query)
    }
}

impl RedisGate {
    pub fn validate(&self) -> Result<(), String> {
        check_url(&self.url, &["redis://", "rediss://"])?;
        if !self.ping && self.auth.is_none() && self.config.is_empty() {
            return Err("nothing to check: give `ping: true`, `auth: required` or `config:`".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if self.ping {
            parts.push("PING".to_string());
        }
        if self.auth.is_some() {
            parts.push("auth required".into());
        }
        parts.extend(self.config.iter().map(|(k, v)| format!("{k}={v}")));
        format!("{} {}", mask_url_password(&self.url), parts.join(", "))
    }
}

impl EtcdGate {
    pub fn validate(&self) -> Result<(), String> {
        check_url(&self.endpoint, &["http://", "https://"])?;
        if (self.min_keys.is_some() || self.absent_after.is_some()) && self.prefix.is_none() {
            return Err("`min_keys` and `absent_after` need a `prefix`".into());
        }
        if self.min_keys.is_some() && self.absent_after.is_some() {
            return Err("`min_keys` and `absent_after` contradict each other; use two gates".into());
        }
        if !self.health && self.min_keys.is_none() && self.absent_after.is_none() && self.auth.is_none() {
            return Err(
                "nothing to check: give `health: true`, `prefix` with `min_keys`, `absent_after`, or `auth: required`"
                    .into(),
            );
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("give `username` and `password` together".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if self.health {
            parts.push("healthy".to_string());
        }
        if let (Some(p), Some(n)) = (&self.prefix, self.min_keys) {
            parts.push(format!(">= {n} keys under {p}"));
        }
        if let (Some(p), Some(d)) = (&self.prefix, self.absent_after) {
            parts.push(format!("no keys under {p} within {d}"));
        }
        if self.auth.is_some() {
            parts.push("auth required".into());
        }
        let user = self.username.as_ref().map(|u| format!(" as {u}")).unwrap_or_default();
        format!("etcd {}{user} {}", self.endpoint, parts.join(", "))
    }
}

impl PrometheusGate {
    pub fn validate(&self) -> Result<(), String> {
        check_url(&self.url, &["http://", "https://"])?;
        let chosen = [self.targets_up, self.query.is_some(), !self.rules.is_empty()].iter().filter(|b| **b).count();
        if chosen != 1 {
            return Err("give exactly one of `targets_up: true`, `query` or `rules`".into());
        }
        if self.query.is_none() && (self.min_results.is_some() || self.bound.is_some()) {
            return Err("`min_results` and `bound` apply to a `query`".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        if self.targets_up {
            format!("{} all targets up", self.url)
        } else if let Some(q) = &self.query {
            let bound = self.bound.map(|b| format!(" {} {}", b.op.symbol(), b.value)).unwrap_or_default();
            format!("{} {q:?}{bound}", self.url)
        } else {
            format!("{} rules {}", self.url, self.rules.join(", "))
        }
    }
}

impl ContainerGate {
    pub fn selector(&self) -> Selector {
        selector(&self.container, &self.project, &self.service).unwrap_or(Selector::Name(String::new()))
    }

    pub fn validate(&self) -> Result<(), String> {
        selector(&self.container, &self.project, &self.service)?;
        let none = self.running.is_none()
            && self.healthy.is_none()
            && self.max_restarts.is_none()
            && self.max_memory.is_none()
            && self.max_cpu_percent.is_none();
        if none {
            return Err(
                "nothing to check: give `running`, `healthy`, `max_restarts`, `max_memory` or `max_cpu_percent`".into(),
            );
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.running {
            parts.push(if r { "running".to_string() } else { "not running".into() });
        }
        if let Some(h) = self.healthy {
            parts.push(if h { "healthy".to_string() } else { "not healthy".into() });
        }
        if let Some(n) = self.max_restarts {
            parts.push(format!("<= {n} restarts"));
        }
        if let Some(m) = self.max_memory {
            parts.push(format!("memory <= {m}"));
        }
        if let Some(c) = self.max_cpu_percent {
            parts.push(format!("cpu <= {c}%"));
        }
        format!("{} {}", self.selector(), parts.join(", "))
    }
}

impl LogsGate {
    pub fn selector(&self) -> Selector {
        selector(&self.container, &self.project, &self.service).unwrap_or(Selector::Name(String::new()))
    }

    pub fn validate(&self) -> Result<(), String> {
        selector(&self.container, &self.project, &self.service)?;
        if !self.json && self.max_level.is_none() {
            return Err("nothing to check: give `json: true` and/or `max_level`".into());
        }
        Ok(())
    }

    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if self.json {
            parts.push("JSON lines".to_string());
        }
        if let Some(l) = self.max_level {
            parts.push(format!("level <= {l}"));
        }
        format!("logs of {}: {}", self.selector(), parts.join(", "))
    }
}

fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    if schemes.iter().any(|s| url.starts_with(s)) {
        return Ok(());
    }
    Err(format!("`{}` does not start with {}", mask_url_password(url), schemes.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("256m"), Ok(256 << 20));
        assert!(parse_bytes("512").unwrap_err().contains("no unit"));
        assert!(parse_bytes("5 parsecs").unwrap_err().contains("unknown size unit"));
    }

    #[test]
    fn levels_are_ordered_and_read_loosely() {
        assert!(Level::Warn > Level::Info);
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("verbose"), None);
    }
}
