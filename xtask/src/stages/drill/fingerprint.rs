//! Data fingerprints: per table a row count and an order-independent md5 of its rows, invariant query
//! results and Redis key counts, taken before and after a drill and compared into gates naming the table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::config::Fingerprints;
use crate::run::record::GateRecord;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub tables: Vec<TablePrint>,
    pub invariants: Vec<InvariantPrint>,
    pub redis_keys: Vec<KeyCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePrint {
    pub table: String,
    /// The columns hashed: those of the first snapshot, so columns added later do not change old rows.
    pub columns: Vec<String>,
    pub rows: u64,
    pub checksum: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// md5 of each row, sorted: kept in memory only, to say how many rows were lost.
    #[serde(skip)]
    pub row_hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvariantPrint {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyCount {
    pub pattern: String,
    pub keys: u64,
}

/// How an after-snapshot must relate to its before-snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every row there before is still there, unchanged; new rows may have come (a rollback).
    Retained,
    /// The same rows exactly (a restored backup).
    Identical,
}

/// Takes a snapshot; `database` reads another database at the same server, `like` hashes the columns it had.
pub async fn take(spec: &Fingerprints, database: Option<&str>, like: Option<&Snapshot>) -> anyhow::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    if let Some(url) = &spec.postgres
        && (!spec.tables.is_empty() || !spec.invariants.is_empty())
    {
        let client = connect(url, database).await?;
        for table in &spec.tables {
            let columns = like.and_then(|s| s.tables.iter().find(|t| &t.table == table)).map(|t| t.columns.clone());
            snapshot.tables.push(table_print(&client, table, columns).await);
        }
        for invariant in &spec.invariants {
            let value = match query_text(&client, &invariant.query).await {
                Ok(rows) => rows,
                Err(e) => format!("error: {e}"),
            };
            snapshot.invariants.push(InvariantPrint { name: invariant.name.clone(), value });
        }
    }
    if let Some(url) = &spec.redis {
        let mut conn = redis_connect(url).await?;
        for pattern in &spec.redis_keys {
            let keys = count_keys(&mut conn, pattern).await?;
            snapshot.redis_keys.push(KeyCount { pattern: pattern.clone(), keys });
        }
    }
    Ok(snapshot)
}

pub async fn connect(url: &str, database: Option<&str>) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("invalid postgres URL: {e}"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if let Some(db) = database {
        config.dbname(db);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        anyhow::anyhow!("cannot connect to {}: {}", crate::redact::mask_url_password(url), describe(&e))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string())
}

async fn table_print(client: &Client, table: &str, columns: Option<Vec<String>>) -> TablePrint {
    let mut print = TablePrint {
        table: table.to_string(),
        columns: Vec::new(),
        rows: 0,
        checksum: String::new(),
        error: None,
        row_hashes: Vec::new(),
    };
    let columns = match columns {
        Some(c) => Ok(c),
        None => table_columns(client, table).await,
    };
    let outcome = match columns {
        Ok(columns) => {
            print.columns = columns;
            row_hashes(client, table, &print.columns).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(hashes) => {
            print.rows = hashes.len() as u64;
            print.checksum = checksum(&hashes);
            print.row_hashes = hashes;
        }
        Err(e) => print.error = Some(e),
    }
    print
}

async fn table_columns(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| describe(&e))?;
    let columns: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if columns.is_empty() {
        return Err(format!("table {table} does not exist"));
    }
    Ok(columns)
}

/// Each row's md5 over the given columns, sorted, so row order on disk does not matter.
async fn row_hashes(client: &Client, table: &str, columns: &[String]) -> Result<Vec<String>, String> {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT md5(ROW({})::text) AS h FROM {} ORDER BY h", list.join(", "), quote_ident(table));
    let rows = client.query(&sql, &[]).await.map_err(|e| describe(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One hash for a table: the row hashes folded in order (FNV-1a, 64 bits, hex): a compact
/// comparison value for the report; lost rows are counted from the row hashes themselves.
pub fn checksum(hashes: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in hashes.iter().flat_map(|s| s.bytes().chain([b'\n'])) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn query_text(client: &Client, query: &str) -> Result<String, String> {
    let messages = client.simple_query(query).await.map_err(|e| describe(&e))?;
    let rows: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("null")).collect::<Vec<_>>().join(","))
            }
            _ => None,
        })
        .collect();
    Ok(rows.join("; "))
}

async fn redis_connect(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid redis URL: {e}"))?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await;
    match conn {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => anyhow::bail!("cannot connect to {}: {e}", crate::redact::mask_url_password(url)),
        Err(_) => anyhow::bail!("cannot connect to {}: timed out", crate::redact::mask_url_password(url)),
    }
}

/// SCAN rather than KEYS, so a big keyspace is not blocked while counting.
async fn count_keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> anyhow::Result<u64> {
    let mut cursor: u64 = 0;
    let mut count = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(|e| anyhow::anyhow!("SCAN {pattern}: {e}"))?;
        count += keys.len() as u64;
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}

/// One gate per table, invariant and key pattern.
pub fn compare(before: &Snapshot, after: &Snapshot, expect: Expect) -> Vec<GateRecord> {
    let mut gates = Vec::new();
    for old in &before.tables {
        let new = after.tables.iter().find(|t| t.table == old.table);
        gates.push(compare_table(old, new, expect));
    }
    for old in &before.invariants {
        let new = after.invariants.iter().find(|i| i.name == old.name).map_or("(not taken)", |i| i.value.as_str());
        let mut gate = GateRecord::judged(
            format!("invariant {}", old.name),
            "fingerprint",
            old.value == new && !old.value.is_empty() && !old.value.starts_with("error:"),
            format!("the same result as before: {}", old.value),
            new.to_string(),
        );
        gate.target = old.name.clone();
        gates.push(gate);
    }
    for old in &before.redis_keys {
        let new = after.redis_keys.iter().find(|k| k.pattern == old.pattern).map(|k| k.keys);
        let passed = old.keys > 0
            && match expect {
                Expect::Retained => new.is_some_and(|n| n >= old.keys),
                Expect::Identical => new == Some(old.keys),
            };
        let relation = if expect == Expect::Retained { "at least" } else { "exactly" };
        let mut gate = GateRecord::judged(
            format!("redis keys {}", old.pattern),
            "fingerprint",
            passed,
            format!("{relation} {} keys match {}", old.keys, old.pattern),
            new.map_or_else(|| "not counted".into(), |n| format!("{n} keys")),
        );
        gate.target = old.pattern.clone();
        gates.push(gate);
    }
    gates
}

fn compare_table(old: &TablePrint, new: Option<&TablePrint>, expect: Expect) -> GateRecord {
    let name = format!("fingerprint {}", old.table);
    let expected = match expect {
        Expect::Retained => format!(
            "table {}: all {} rows kept unchanged (checksum {}); new rows allowed",
            old.table, old.rows, old.checksum
        ),
        Expect::Identical => format!("table {}: {} rows, checksum {}", old.table, old.rows, old.checksum),
    };
    let (passed, actual) = match (old.error.as_ref(), new) {
        (Some(e), _) => (false, format!("table {}: could not be read before: {e}", old.table)),
        (None, None) => (false, format!("table {}: not read after", old.table)),
        // Nothing there before proves nothing kept: a fingerprint of no data fails.
        (None, _) if old.rows == 0 => (false, format!("table {} had no rows before: nothing to compare", old.table)),
        (None, Some(new)) => match &new.error {
            Some(e) => (false, format!("table {}: {e}", old.table)),
            None => judge_rows(old, new, expect),
        },
    };
    let mut gate = GateRecord::judged(name, "fingerprint", passed, expected, actual);
    gate.target = old.table.clone();
    gate
}

fn judge_rows(old: &TablePrint, new: &TablePrint, expect: Expect) -> (bool, String) {
    let missing = missing_rows(&old.row_hashes, &new.row_hashes);
    let extra = (new.rows + missing).saturating_sub(old.rows);
    let table = &old.table;
    let passed = match expect {
        Expect::Retained => missing == 0,
        Expect::Identical => missing == 0 && extra == 0 && old.checksum == new.checksum,
    };
    let actual = if missing > 0 {
        format!(
            "table {table}: {missing} of {} rows lost or changed; {} rows now (checksum {})",
            old.rows, new.rows, new.checksum
        )
    } else if extra > 0 && expect == Expect::Identical {
        format!("table {table}: {extra} rows more than before; {} rows (checksum {})", new.rows, new.checksum)
    } else if expect == Expect::Identical {
        format!("table {table}: the same {} rows (checksum {})", new.rows, new.checksum)
    } else {
        format!("table {table}: all {} rows kept; {} rows now (checksum {})", old.rows, new.rows, new.checksum)
    };
    (passed, actual)
}

/// How many of `before`'s rows (a sorted multiset of hashes) are not in `after`.
fn missing_rows(before: &[String], after: &[String]) -> u64 {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for h in after {
        *counts.entry(h).or_default() += 1;
    }
    let mut missing = 0;
    for h in before {
        let left = counts.entry(h).or_default();
        if *left > 0 {
            *left -= 1;
        } else {
            missing += 1;
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, hashes: &[&str]) -> TablePrint {
        let row_hashes: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
        TablePrint {
            table: name.into(),
            columns: vec!["id".into()],
            rows: row_hashes.len() as u64,
            checksum: checksum(&row_hashes),
            error: None,
            row_hashes,
        }
    }

    #[test]
    fn retained_allows_new_rows_but_not_lost_ones() {
        let before = Snapshot { tables: vec![table("executions", &["a", "b"])], ..Default::default() };
        let grown = Snapshot { tables: vec![table("executions", &["a", "b", "c"])], ..Default::default() };
        let shrunk = Snapshot { tables: vec![table("executions", &["b", "c"])], ..Default::default() };
        assert_eq!(compare(&before, &grown, Expect::Retained)[0].status, crate::run::record::Status::Passed);
        let gate = &compare(&before, &shrunk, Expect::Retained)[0];
        assert_eq!(gate.status, crate::run::record::Status::Failed);
        assert!(gate.actual.contains("table executions: 1 of 2 rows lost"), "{}", gate.actual);
    }

    #[test]
    fn identical_refuses_extra_rows_and_duplicates_count() {
        let before = Snapshot { tables: vec![table("t", &["a", "a"])], ..Default::default() };
        let one = Snapshot { tables: vec![table("t", &["a"])], ..Default::default() };
        let more = Snapshot { tables: vec![table("t", &["a", "a", "b"])], ..Default::default() };
        assert_eq!(compare(&before, &one, Expect::Identical)[0].status, crate::run::record::Status::Failed);
        let gate = &compare(&before, &more, Expect::Identical)[0];
        assert_eq!(gate.status, crate::run::record::Status::Failed);
        assert!(gate.actual.contains("1 rows more"), "{}", gate.actual);
        assert_eq!(compare(&before, &before, Expect::Identical)[0].status, crate::run::record::Status::Passed);
    }

    #[test]
    fn nothing_before_proves_nothing() {
        let empty = Snapshot {
            tables: vec![table("t", &[])],
            invariants: vec![InvariantPrint { name: "i".into(), value: String::new() }],
            redis_keys: vec![KeyCount { pattern: "k:*".into(), keys: 0 }],
        };
        let gates = compare(&empty, &empty, Expect::Retained);
        assert!(gates.iter().all(|g| g.status == crate::run::record::Status::Failed), "{gates:#?}");
        assert!(gates[0].actual.contains("had no rows before"));
    }

    #[test]
    fn a_table_unreadable_after_fails_naming_it() {
        let before = Snapshot { tables: vec![table("agents", &["a"])], ..Default::default() };
        let mut gone = table("agents", &[]);
        gone.error = Some("column \"role\" does not exist".into());
        let after = Snapshot { tables: vec![gone], ..Default::default() };
        let gate = &compare(&before, &after, Expect::Retained)[0];
        assert!(gate.actual.starts_with("table agents: column"), "{}", gate.actual);
    }
}
