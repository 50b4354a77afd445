//! Postgres pool and the queries the API runs.

use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use serde::Serialize;
use tokio_postgres::NoTls;

/// A lazily connecting pool: the service starts even while Postgres is down, and connections
/// are verified on checkout so a restarted Postgres is picked up without restarting the service.
pub fn pool(database_url: &str, size: usize) -> Result<Pool> {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(database_url.to_string());
    cfg.manager = Some(ManagerConfig { recycling_method: RecyclingMethod::Verified });
    let timeout = Some(Duration::from_secs(2));
    cfg.pool = Some(PoolConfig {
        max_size: size,
        timeouts: Timeouts { wait: timeout, create: timeout, recycle: timeout },
        ..PoolConfig::default()
    });
    cfg.create_pool(Some(Runtime::Tokio1), NoTls).context("DATABASE_URL is not a valid Postgres URL")
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Pattern {
    pub id: i32,
    pub name: String,
    pub version: String,
    pub description: String,
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Agent {
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub id: i64,
    pub pattern: String,
    pub pattern_version: String,
    pub status: String,
    pub input: serde_json::Value,
    pub output: serde_json::Value,
    pub confidence: f64,
    pub duration_ms: f64,
    pub created_at: String,
}

/// What an execution writes; the database assigns id and time.
pub struct NewExecution<'a> {
    pub pattern: &'a Pattern,
    pub status: &'a str,
    pub input: &'a serde_json::Value,
    pub output: &'a serde_json::Value,
    pub confidence: f64,
    pub duration_ms: f64,
}

const PATTERNS: &str = "SELECT p.id, p.name, p.version, p.description,
        COALESCE(json_agg(json_build_object('name', a.name, 'role', a.role) ORDER BY a.position)
                 FILTER (WHERE a.id IS NOT NULL), '[]')::text
    FROM patterns p LEFT JOIN agents a ON a.pattern_id = p.id";

fn pattern_from(row: &tokio_postgres::Row) -> Result<Pattern> {
    let agents: String = row.get(4);
    Ok(Pattern {
        id: row.get(0),
        name: row.get(1),
        version: row.get(2),
        description: row.get(3),
        agents: serde_json::from_str(&agents).context("agents column is not JSON")?,
    })
}

pub async fn patterns(pool: &Pool) -> Result<Vec<Pattern>> {
    let client = pool.get().await.context("no Postgres connection")?;
    let rows = client.query(&format!("{PATTERNS} GROUP BY p.id ORDER BY p.id"), &[]).await?;
    rows.iter().map(pattern_from).collect()
}

pub async fn pattern_by_name(pool: &Pool, name: &str) -> Result<Option<Pattern>> {
    let client = pool.get().await.context("no Postgres connection")?;
    let row = client.query_opt(&format!("{PATTERNS} WHERE p.name = $1 GROUP BY p.id"), &[&name]).await?;
    row.as_ref().map(pattern_from).transpose()
}

const EXECUTION: &str = "SELECT e.id, p.name, p.version, e.status, e.input::text, e.output::text, e.confidence,
        e.duration_ms, to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
    FROM executions e JOIN patterns p ON p.id = e.pattern_id";

fn execution_from(row: &tokio_postgres::Row) -> Result<Execution> {
    let input: String = row.get(4);
    let output: String = row.get(5);
    Ok(Execution {
        id: row.get(0),
        pattern: row.get(1),
        pattern_version: row.get(2),
        status: row.get(3),
        input: serde_json::from_str(&input)?,
        output: serde_json::from_str(&output)?,
        confidence: row.get(6),
        duration_ms: row.get(7),
        created_at: row.get(8),
    })
}

pub async fn insert_execution(pool: &Pool, new: NewExecution<'_>) -> Result<Execution> {
    let client = pool.get().await.context("no Postgres connection")?;
    let id: i64 = client
        .query_one(
            "INSERT INTO executions (pattern_id, status, input, output, confidence, duration_ms)
             VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb, $5, $6) RETURNING id",
            &[
                &new.pattern.id,
                &new.status,
                &new.input.to_string(),
                &new.output.to_string(),
                &new.confidence,
                &new.duration_ms,
            ],
        )
        .await?
        .get(0);
    let row = client.query_one(&format!("{EXECUTION} WHERE e.id = $1"), &[&id]).await?;
    execution_from(&row)
}

pub async fn execution(pool: &Pool, id: i64) -> Result<Option<Execution>> {
    let client = pool.get().await.context("no Postgres connection")?;
    let row = client.query_opt(&format!("{EXECUTION} WHERE e.id = $1"), &[&id]).await?;
    row.as_ref().map(execution_from).transpose()
}

pub async fn recent_executions(pool: &Pool, limit: i64) -> Result<Vec<Execution>> {
    let client = pool.get().await.context("no Postgres connection")?;
    let rows = client.query(&format!("{EXECUTION} ORDER BY e.id DESC LIMIT $1"), &[&limit]).await?;
    rows.iter().map(execution_from).collect()
}

/// Versions recorded in `schema_migrations`, oldest first.
pub async fn applied_versions(pool: &Pool) -> Result<Vec<i64>> {
    let client = pool.get().await.context("no Postgres connection")?;
    Ok(crate::migrations::applied(&client).await?.into_iter().map(|a| a.version).collect())
}
