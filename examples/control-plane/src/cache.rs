//! Redis cache in front of Postgres; every call is bounded so a dead Redis only costs milliseconds.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Upper bound for any single Redis round trip, reconnect attempts included.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
}

impl Cache {
    /// Connects lazily: a Redis that is down at start is retried on use, never fatal.
    pub fn new(redis_url: &str) -> Result<Self> {
        let client =
            redis::Client::open(redis_url).context("REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the Redis connection manager")?;
        Ok(Self { conn })
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        bounded(async move { conn.get(key).await }).await
    }

    pub async fn set(&self, key: &str, value: &str, ttl_secs: u64) -> Result<()> {
        let mut conn = self.conn.clone();
        bounded(async move { conn.set_ex(key, value, ttl_secs).await }).await
    }

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let pong: String =
            bounded(async move { redis::cmd("PING").query_async(&mut conn).await }).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(anyhow!("unexpected PING reply {pong:?}"))
        }
    }
}

async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| anyhow!("redis: {e}")),
        Err(_) => Err(anyhow!(
            "redis: no answer within {} ms",
            CALL_TIMEOUT.as_millis()
        )),
    }
}
