//! `sql`: a Postgres query's rows match the expectation (compared as text).

use std::time::Duration;

use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::Check;
use crate::config::{GateSpec, SqlGate};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(gate: &SqlGate, allow_empty: bool) -> Check {
    let expected = expectation(gate, allow_empty);
    if gate.auth.is_some()
        && let Some(problem) = auth_problem(&gate.url).await
    {
        return Check::new(false, expected, problem);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, rows(gate)).await {
        Ok(Ok(rows)) => judge(gate, allow_empty, expected, &rows),
        Ok(Err(e)) => Check::new(false, expected, e),
        Err(_) => Check::new(false, expected, format!("no answer within {}s", (CONNECT_TIMEOUT * 2).as_secs())),
    }
}

/// Every row as text; simple-query mode returns text whatever the column types.
async fn rows(gate: &SqlGate) -> Result<Vec<Vec<String>>, String> {
    let mut config: tokio_postgres::Config = gate.url.parse().map_err(|e| format!("invalid postgres URL: {e}"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| format!("cannot connect: {}", describe(&e)))?;
    let driver = tokio::spawn(connection);
    let result = client.simple_query(&gate.query).await;
    drop(client);
    driver.abort();
    let messages = result.map_err(|e| format!("query failed: {}", describe(&e)))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("null").to_string()).collect())
            }
            _ => None,
        })
        .collect())
}

/// Logins without the password, and with a wrong one, must be refused: a server that trusts the network
/// lets anyone who reaches the port read the data.
async fn auth_problem(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = match url.parse() {
        Ok(config) => config,
        Err(e) => return Some(format!("invalid postgres URL: {e}")),
    };
    let mut wrong = config.clone();
    wrong.password("not-the-password");
    let mut none = config;
    none.password(Vec::<u8>::new());
    for (what, mut attempt) in [("no password", none), ("a wrong password", wrong)] {
        attempt.connect_timeout(CONNECT_TIMEOUT);
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt.connect(NoTls)).await {
            Ok(Ok(_)) => return Some(format!("a login with {what} was accepted: authentication is off")),
            Ok(Err(e)) if refused_login(&e) => {}
            Ok(Err(e)) => return Some(format!("a login with {what} failed, but not as refused: {}", describe(&e))),
            Err(_) => return Some(format!("a login with {what} got no answer")),
        }
    }
    None
}

/// SQLSTATE class 28 is "invalid authorization"; a client asked for a password it lacks was refused too.
fn refused_login(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => db.code().code().starts_with("28"),
        None => e.to_string().contains("password missing"),
    }
}

/// The server's own message (e.g. `relation "x" does not exist`) is what a reader needs.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        // "error connecting to server" alone hides the cause (refused, unknown host, timed out).
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

fn expectation(gate: &SqlGate, allow_empty: bool) -> String {
    let mut parts = Vec::new();
    if let Some(n) = gate.rows {
        parts.push(format!("{n} rows"));
    }
    if let Some(n) = gate.min_rows {
        parts.push(format!(">= {n} rows"));
    }
    if let Some(v) = &gate.equals {
        parts.push(format!("first value {v:?}"));
    }
    if let Some(rows) = &gate.expect_rows {
        parts.push(format!("rows {rows:?}"));
    }
    if parts.is_empty() {
        parts.push(if allow_empty { "the query succeeds" } else { "at least one row" }.into());
    }
    format!("{}: {}", GateSpec::Sql(gate.clone()).target(), parts.join(", "))
}

fn judge(gate: &SqlGate, allow_empty: bool, expected: String, rows: &[Vec<String>]) -> Check {
    let first = rows.first().and_then(|r| r.first());
    let shown = summary(rows);
    let failure = if rows.is_empty() && !allow_empty {
        Some("no rows".to_string())
    } else if gate.rows.is_some_and(|n| rows.len() as u64 != n) {
        Some(format!("{} rows", rows.len()))
    } else if gate.min_rows.is_some_and(|n| (rows.len() as u64) < n) {
        Some(format!("only {} rows", rows.len()))
    } else if gate.equals.as_ref().is_some_and(|v| first != Some(v)) {
        Some(format!("first value {:?}", first.map_or("(none)", String::as_str)))
    } else if gate.expect_rows.as_ref().is_some_and(|want| want.as_slice() != rows) {
        Some(format!("rows {shown}"))
    } else {
        None
    };
    match failure {
        Some(actual) => Check::new(false, expected, actual),
        None => Check::new(true, expected, format!("{} rows: {shown}", rows.len())),
    }
}

/// The first few rows, enough to see what came back without flooding a report.
fn summary(rows: &[Vec<String>]) -> String {
    let shown: Vec<String> = rows.iter().take(5).map(|r| format!("[{}]", r.join(", "))).collect();
    let more = if rows.len() > 5 { format!(" … {} more", rows.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> SqlGate {
        SqlGate {
            url: "postgres://u:pw@localhost/db".into(),
            query: "select 1".into(),
            rows: None,
            min_rows: None,
            equals: None,
            expect_rows: None,
            auth: None,
        }
    }

    fn rows(values: &[&[&str]]) -> Vec<Vec<String>> {
        values.iter().map(|r| r.iter().map(|v| v.to_string()).collect()).collect()
    }

    #[test]
    fn expectations_on_rows() {
        let pass = |g: &SqlGate, r: &[&[&str]]| judge(g, false, String::new(), &rows(r)).passed;
        assert!(!pass(&gate(), &[]), "empty fails by default");
        assert!(judge(&gate(), true, String::new(), &[]).passed);
        assert!(pass(&SqlGate { rows: Some(2), ..gate() }, &[&["a"], &["b"]]));
        assert!(!pass(&SqlGate { rows: Some(1), ..gate() }, &[&["a"], &["b"]]));
        assert!(!pass(&SqlGate { min_rows: Some(3), ..gate() }, &[&["a"], &["b"]]));
        assert!(pass(&SqlGate { equals: Some("100".into()), ..gate() }, &[&["100", "x"]]));
        assert!(!pass(&SqlGate { equals: Some("100".into()), ..gate() }, &[&["99"]]));
        let want = Some(vec![vec!["a".to_string(), "1".to_string()]]);
        assert!(pass(&SqlGate { expect_rows: want.clone(), ..gate() }, &[&["a", "1"]]));
        assert!(!pass(&SqlGate { expect_rows: want, ..gate() }, &[&["a", "2"]]));
    }

    #[test]
    fn the_password_never_shows() {
        let c = judge(&gate(), false, expectation(&gate(), false), &[]);
        assert!(!c.expected.contains("pw"), "{}", c.expected);
    }
}
