//! `rate_limit`: a burst larger than the limit gets 429s, and the service stays up (no 5xx) while limiting.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::Check;
use super::http::{client, error_chain};
use crate::config::{GateSpec, RateLimitGate};

const DEFAULT_REQUESTS: u32 = 200;
const DEFAULT_CONCURRENCY: u32 = 20;

/// What one request of the burst got: a status and whether a 429 said when to retry.
enum Outcome {
    Status { status: u16, retry_after: bool },
    Failed(String),
}

pub async fn check(gate: &RateLimitGate) -> Check {
    let expected = format!("{}: at least one 429, no 5xx", GateSpec::RateLimit(gate.clone()).target());
    let client = match client(&gate.tls, None) {
        Ok(client) => client,
        Err(e) => return Check::new(false, expected, e),
    };
    let requests = gate.requests.unwrap_or(DEFAULT_REQUESTS);
    let concurrency = gate.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize;
    let outcomes: Vec<Outcome> =
        futures::stream::iter(0..requests).map(|_| send(&client, gate)).buffered(concurrency).collect().await;
    judge(&outcomes, expected)
}

async fn send(client: &reqwest::Client, gate: &RateLimitGate) -> Outcome {
    let Ok(method) = reqwest::Method::from_bytes(gate.method.to_uppercase().as_bytes()) else {
        return Outcome::Failed(format!("`{}` is not an HTTP method", gate.method));
    };
    let mut request = client.request(method, &gate.url);
    for (name, value) in &gate.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &gate.body {
        request = request.body(body.clone());
    }
    match request.send().await {
        Ok(response) => Outcome::Status {
            status: response.status().as_u16(),
            retry_after: response.headers().contains_key(reqwest::header::RETRY_AFTER),
        },
        Err(e) => Outcome::Failed(error_chain(&e)),
    }
}

fn judge(outcomes: &[Outcome], expected: String) -> Check {
    let mut counts = BTreeMap::new();
    let mut first_limited = None;
    let mut retry_after = 0;
    let mut failures = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Outcome::Status { status, retry_after: said } => {
                *counts.entry(*status).or_insert(0) += 1;
                if *status == 429 {
                    first_limited.get_or_insert(i + 1);
                    retry_after += u32::from(*said);
                }
            }
            Outcome::Failed(e) => failures.push(e.as_str()),
        }
    }
    let mut actual: Vec<String> = counts.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    if !failures.is_empty() {
        actual.push(format!("{} failed ({})", failures.len(), failures[0]));
    }
    let limited = counts.get(&429).copied().unwrap_or(0);
    let server_errors: u32 = counts.range(500..).map(|(_, n)| n).sum();
    let mut actual = actual.join(", ");
    if let Some(n) = first_limited {
        actual.push_str(&format!("; first 429 at request {n}, {retry_after} of {limited} with Retry-After"));
    }
    let passed = limited > 0 && server_errors == 0 && failures.is_empty();
    if limited == 0 && !outcomes.is_empty() {
        actual.push_str("; no request was limited");
    }
    Check::new(passed, expected, actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(list: &[u16]) -> Vec<Outcome> {
        list.iter().map(|s| Outcome::Status { status: *s, retry_after: *s == 429 }).collect()
    }

    #[test]
    fn needs_a_429_and_no_server_error() {
        let c = judge(&statuses(&[200, 200, 429, 429]), String::new());
        assert!(c.passed, "{}", c.actual);
        assert_eq!(c.actual, "200×2, 429×2; first 429 at request 3, 2 of 2 with Retry-After");
        assert!(!judge(&statuses(&[200, 200]), String::new()).passed);
        assert!(!judge(&statuses(&[200, 429, 503]), String::new()).passed);
        assert!(!judge(&[], String::new()).passed);
        let failed = vec![Outcome::Status { status: 429, retry_after: true }, Outcome::Failed("reset".into())];
        assert!(!judge(&failed, String::new()).passed);
    }
}
