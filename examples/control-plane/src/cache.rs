//! Redis cache in front of Postgres; every call is bounded, and a circuit breaker skips Redis after
//! repeated failures, so a dead Redis costs the API almost nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::breaker::{Breaker, Snapshot};

/// Upper bound for any single Redis round trip, reconnect attempts included.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// Failures in a row that open the breaker.
const BREAKER_THRESHOLD: u32 = 2;
/// How long API calls bypass Redis once the breaker opened; readiness probes keep checking meanwhile.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    breaker: Breaker,
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
        Ok(Self { conn, breaker: Breaker::new(BREAKER_THRESHOLD, BREAKER_COOL_DOWN) })
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

    /// The breaker's state, for readiness and metrics.
    pub fn breaker(&self) -> Snapshot {
        self.breaker.snapshot(Instant::now())
    }

    /// Always asks Redis (ignores an open breaker), so readiness sees recovery at once. A failure is
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
        if self.breaker.allow(Instant::now()) { Ok(()) } else { bail!("redis: circuit breaker open") }
    }

    fn observe<T>(&self, outcome: Result<T>) -> Result<T> {
        self.breaker.record(outcome.is_ok(), Instant::now());
        outcome
    }
}

async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| anyhow!("redis: {e}")),
        Err(_) => Err(anyhow!("redis: no answer within {} ms", CALL_TIMEOUT.as_millis())),
    }
}
