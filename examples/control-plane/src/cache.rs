//! Redis cache in front of Postgres; every call is bounded, and after a failure the cache is
//! skipped for a moment, so a dead Redis costs the API almost nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Upper bound for any single Redis round trip, reconnect attempts included.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// How long API calls bypass Redis after it failed; readiness probes keep checking meanwhile.
const BACKOFF: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    skip_until: Arc<Mutex<Option<Instant>>>,
}

impl Cache {
    /// Connects lazily: a Redis that is down at start is retried on use, never fatal.
    pub fn new(redis_url: &str) -> Result<Self> {
        let client = redis::Client::open(redis_url).context("REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).context("creating the Redis connection manager")?;
        Ok(Self { conn, skip_until: Arc::new(Mutex::new(None)) })
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        self.check_backoff()?;
        let mut conn = self.conn.clone();
        self.observe(bounded(async move { conn.get(key).await }).await)
    }

    pub async fn set(&self, key: &str, value: &str, ttl_secs: u64) -> Result<()> {
        self.check_backoff()?;
        let mut conn = self.conn.clone();
        self.observe(bounded(async move { conn.set_ex(key, value, ttl_secs).await }).await)
    }

    /// Always asks Redis (ignores the backoff), so readiness sees recovery at once. A failure is
    /// retried once because the first call after an outage only triggers the reconnect.
    pub async fn ping(&self) -> Result<()> {
        let pong = match self.ping_once().await {
            Ok(pong) => pong,
            Err(_) => self.ping_once().await?,
        };
        if pong == "PONG" { Ok(()) } else { Err(anyhow!("unexpected PING reply {pong:?}")) }
    }

    async fn ping_once(&self) -> Result<String> {
        let mut conn = self.conn.clone();
        self.observe(bounded(async move { redis::cmd("PING").query_async(&mut conn).await }).await)
    }

    fn check_backoff(&self) -> Result<()> {
        let skip_until = self.skip_until.lock().map(|g| *g).unwrap_or(None);
        match skip_until {
            Some(until) if Instant::now() < until => bail!("redis: skipped after a recent failure"),
            _ => Ok(()),
        }
    }

    fn observe<T>(&self, outcome: Result<T>) -> Result<T> {
        if let Ok(mut guard) = self.skip_until.lock() {
            *guard = outcome.is_err().then(|| Instant::now() + BACKOFF);
        }
        outcome
    }
}

async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| anyhow!("redis: {e}")),
        Err(_) => Err(anyhow!("redis: no answer within {} ms", CALL_TIMEOUT.as_millis())),
    }
}
