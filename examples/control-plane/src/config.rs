//! Service configuration, read only from environment variables.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::redact::{redact_list, redact_url};

#[derive(Clone)]
pub struct Config {
    pub bind_addr: SocketAddr,
    pub database_url: String,
    pub redis_url: String,
    pub etcd_endpoints: Vec<String>,
    pub service_name: String,
    pub instance_id: String,
    pub app_version: String,
    pub git_sha: String,
    pub log_level: String,
    pub db_pool_size: usize,
    pub rate_limit_per_sec: u32,
    pub cors_allowed_origins: Vec<String>,
    pub api_token: Option<String>,
    pub max_body_bytes: usize,
    /// Write `<`, `>`, `&` and `'` in JSON answers as `\u003c`…, so reflected input cannot become markup.
    pub escape_html: bool,
    /// HTTPS is served on `tls_bind_addr` when both are set (PEM files).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_bind_addr: SocketAddr,
    pub etcd_username: Option<String>,
    pub etcd_password: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Takes the lookup as a function so tests need not mutate the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |key: &str| get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let git_sha = var("GIT_SHA").or_else(|| option_env!("GIT_SHA").map(str::to_string)).unwrap_or_default();
        Ok(Self {
            bind_addr: parse_or("BIND_ADDR", var("BIND_ADDR"), "0.0.0.0:8080".parse().expect("valid default"))?,
            database_url: var("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            redis_url: var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            etcd_endpoints: split_list(var("ETCD_ENDPOINTS").as_deref().unwrap_or("")),
            service_name: var("SERVICE_NAME").unwrap_or_else(|| "control-plane".into()),
            instance_id: var("INSTANCE_ID").unwrap_or_else(hostname),
            app_version: var("APP_VERSION").unwrap_or_else(default_version),
            git_sha: if git_sha.is_empty() { "unknown".into() } else { git_sha },
            log_level: var("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            db_pool_size: parse_or("DB_POOL_SIZE", var("DB_POOL_SIZE"), 10)?.max(1),
            rate_limit_per_sec: parse_or("RATE_LIMIT_PER_SEC", var("RATE_LIMIT_PER_SEC"), 0)?,
            cors_allowed_origins: split_list(var("CORS_ALLOWED_ORIGINS").as_deref().unwrap_or("")),
            api_token: var("API_TOKEN"),
            max_body_bytes: parse_or("MAX_BODY_BYTES", var("MAX_BODY_BYTES"), 65536)?,
            escape_html: parse_or("ESCAPE_HTML", var("ESCAPE_HTML"), true)?,
            tls_cert: var("TLS_CERT"),
            tls_key: var("TLS_KEY"),
            tls_bind_addr: parse_or(
                "TLS_BIND_ADDR",
                var("TLS_BIND_ADDR"),
                "0.0.0.0:8443".parse().expect("valid default"),
            )?,
            etcd_username: var("ETCD_USERNAME"),
            etcd_password: var("ETCD_PASSWORD"),
        })
        .and_then(Config::checked)
    }

    /// Settings that only make sense together.
    fn checked(self) -> Result<Self> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("set TLS_CERT and TLS_KEY together (PEM files), or neither");
        }
        if self.etcd_username.is_some() != self.etcd_password.is_some() {
            anyhow::bail!("set ETCD_USERNAME and ETCD_PASSWORD together, or neither");
        }
        Ok(self)
    }

    /// `CORS_ALLOWED_ORIGINS=*` echoes every origin: for tests of the CORS gate, never for a deployment.
    pub fn cors_mirrors_any_origin(&self) -> bool {
        self.cors_allowed_origins.iter().any(|o| o == "*")
    }

    /// What may be shown in logs and `/api/v1/admin/config`: URLs redacted, token hidden.
    pub fn redacted(&self) -> RedactedConfig {
        RedactedConfig {
            bind_addr: self.bind_addr.to_string(),
            database_url: redact_url(&self.database_url),
            redis_url: redact_url(&self.redis_url),
            etcd_endpoints: redact_list(&self.etcd_endpoints.join(",")),
            service_name: self.service_name.clone(),
            instance_id: self.instance_id.clone(),
            app_version: self.app_version.clone(),
            log_level: self.log_level.clone(),
            db_pool_size: self.db_pool_size,
            rate_limit_per_sec: self.rate_limit_per_sec,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            api_token_set: self.api_token.is_some(),
            max_body_bytes: self.max_body_bytes,
            escape_html: self.escape_html,
            tls: self.tls_cert.is_some().then(|| self.tls_bind_addr.to_string()),
            etcd_username: self.etcd_username.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RedactedConfig {
    pub bind_addr: String,
    pub database_url: String,
    pub redis_url: String,
    pub etcd_endpoints: String,
    pub service_name: String,
    pub instance_id: String,
    pub app_version: String,
    pub log_level: String,
    pub db_pool_size: usize,
    pub rate_limit_per_sec: u32,
    pub cors_allowed_origins: Vec<String>,
    pub api_token_set: bool,
    pub max_body_bytes: usize,
    pub escape_html: bool,
    /// The HTTPS address, when TLS is on.
    pub tls: Option<String>,
    pub etcd_username: Option<String>,
}

/// `CARGO_PKG_VERSION`, plus `+<GIT_SHA>` when GIT_SHA was set at compile time.
pub fn default_version() -> String {
    match option_env!("GIT_SHA") {
        Some(sha) if !sha.is_empty() => format!("{}+{sha}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// What `control-plane version` prints: APP_VERSION when set, else the compiled-in default.
pub fn default_version_or_env() -> String {
    std::env::var("APP_VERSION").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(default_version)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn parse_or<T: std::str::FromStr>(key: &str, raw: Option<String>, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse().with_context(|| format!("environment variable {key}={raw:?} is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.service_name, "control-plane");
        assert_eq!(c.log_level, "info");
        assert_eq!(c.db_pool_size, 10);
        assert_eq!(c.rate_limit_per_sec, 0);
        assert_eq!(c.max_body_bytes, 65536);
        assert!(c.cors_allowed_origins.is_empty() && c.etcd_endpoints.is_empty() && c.api_token.is_none());
        assert!(c.app_version.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(!c.instance_id.is_empty());
    }

    #[test]
    fn reads_lists_and_numbers() {
        let c = config(&[
            ("ETCD_ENDPOINTS", "http://etcd:2379, http://etcd2:2379,"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example"),
            ("RATE_LIMIT_PER_SEC", "50"),
            ("API_TOKEN", "t"),
            ("APP_VERSION", "2.0.0"),
            ("INSTANCE_ID", "i-1"),
        ])
        .unwrap();
        assert_eq!(c.etcd_endpoints, vec!["http://etcd:2379", "http://etcd2:2379"]);
        assert_eq!(c.cors_allowed_origins, vec!["https://a.example"]);
        assert_eq!(c.rate_limit_per_sec, 50);
        assert_eq!(c.app_version, "2.0.0");
        assert_eq!(c.instance_id, "i-1");
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = config(&[("DB_POOL_SIZE", "many")]).err().unwrap();
        assert!(format!("{err:#}").contains("DB_POOL_SIZE"));
        assert!(config(&[("BIND_ADDR", "nowhere")]).is_err());
    }

    #[test]
    fn tls_and_etcd_credentials_come_in_pairs() {
        assert!(config(&[("TLS_CERT", "/c.pem")]).is_err());
        assert!(config(&[("ETCD_PASSWORD", "p")]).is_err());
        let c = config(&[("TLS_CERT", "/c.pem"), ("TLS_KEY", "/k.pem"), ("ESCAPE_HTML", "false")]).unwrap();
        assert_eq!(c.tls_bind_addr.to_string(), "0.0.0.0:8443");
        assert!(!c.escape_html);
        assert!(config(&[("ESCAPE_HTML", "maybe")]).is_err());
    }

    #[test]
    fn redacted_view_has_no_secrets() {
        let c = config(&[
            ("DATABASE_URL", "postgres://app:dbpass@db/app"),
            ("REDIS_URL", "redis://:redispass@redis:6379"),
            ("API_TOKEN", "tokenvalue"),
            ("ETCD_USERNAME", "cp"),
            ("ETCD_PASSWORD", "etcdpass"),
        ])
        .unwrap();
        let shown = serde_json::to_string(&c.redacted()).unwrap();
        for secret in ["dbpass", "redispass", "tokenvalue", "etcdpass"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
