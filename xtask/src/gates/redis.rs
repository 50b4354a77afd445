//! `redis`: the server answers PING, refuses clients without the password, and runs the expected config.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::Check;
use crate::config::{GateSpec, RedisGate};

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(gate: &RedisGate) -> Check {
    let expected = GateSpec::Redis(gate.clone()).target();
    let problems = match tokio::time::timeout(TIMEOUT * 2, problems(gate)).await {
        Ok(Ok(problems)) => problems,
        Ok(Err(e)) => vec![e],
        Err(_) => vec![format!("no answer within {}s", (TIMEOUT * 2).as_secs())],
    };
    if problems.is_empty() {
        Check::new(true, expected, "as expected")
    } else {
        Check::new(false, expected, problems.join("; "))
    }
}

async fn problems(gate: &RedisGate) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    if gate.auth.is_some()
        && let Some(p) = auth_problem(&gate.url).await
    {
        problems.push(p);
    }
    if !gate.ping && gate.config.is_empty() {
        return Ok(problems);
    }
    let mut con = connect(&gate.url).await?;
    if gate.ping {
        match redis::cmd("PING").query_async::<String>(&mut con).await {
            Ok(answer) if answer == "PONG" => {}
            Ok(answer) => problems.push(format!("PING answered {answer:?}")),
            Err(e) => problems.push(format!("PING failed: {e}")),
        }
    }
    for (name, want) in &gate.config {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut con)
            .await
            .map_err(|e| format!("CONFIG GET {name} failed: {e}"))?;
        match pair.get(1) {
            Some(got) if *got == want.to_string() => {}
            Some(got) => problems.push(format!("{name} is {got:?}, not {:?}", want.to_string())),
            None => problems.push(format!("{name} is not a config parameter")),
        }
    }
    Ok(problems)
}

async fn connect(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid redis URL: {e}"))?;
    client.get_multiplexed_async_connection().await.map_err(|e| format!("cannot connect: {e}"))
}

/// A client without the password must be refused; a PONG means anyone on the network can use the server.
async fn auth_problem(url: &str) -> Option<String> {
    let anonymous = without_credentials(url);
    let mut con = match connect(&anonymous).await {
        Ok(con) => con,
        Err(e) if e.contains("NOAUTH") => return None,
        Err(e) => return Some(e),
    };
    match redis::cmd("PING").query_async::<String>(&mut con).await {
        Ok(_) => Some("a PING without the password was answered: auth is off".into()),
        Err(e) if e.code() == Some("NOAUTH") || e.to_string().contains("NOAUTH") => None,
        Err(e) => Some(format!("a PING without the password failed, but not with NOAUTH: {e}")),
    }
}

fn without_credentials(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_password() {
        assert_eq!(without_credentials("redis://:pw@127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(without_credentials("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
