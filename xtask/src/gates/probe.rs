//! `probe`: hostile requests (malformed JSON, oversize bodies, SQL injection, XSS) get a client error, never a
//! 5xx, a database error or their payload reflected unescaped.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::Check;
use super::http::{client, error_chain};
use super::json_assert::excerpt;
use crate::config::{Attack, PAYLOAD, ProbeGate};

const MALFORMED_JSON: &[&str] = &[
    "",
    "{",
    r#"{"pattern": "#,
    r#"{"pattern": "review",}"#,
    r#"{pattern: "review"}"#,
    r#"{'pattern': 'review'}"#,
    r#"[1, 2"#,
    "nul",
    r#"{"pattern": "review"}{"pattern": "review"}"#,
    r#"{"pattern": "\ud800"}"#,
    r#"{"pattern": 1e999999}"#,
    r#"{"pattern": ["review"], "input": "not an object"}"#,
];

/// Nesting this deep breaks parsers that recurse without a limit (a stack overflow is a crash, not a 400).
const NESTING: usize = 20_000;

const SQL_INJECTION: &[&str] = &[
    "' OR '1'='1",
    "' OR 1=1--",
    "\" OR \"\"=\"",
    "'; DROP TABLE executions;--",
    "1' UNION SELECT NULL, version()--",
    "' AND 1=CAST((SELECT version()) AS int)--",
    "admin'--",
    "1; SELECT pg_sleep(3)--",
    "' || (SELECT pg_sleep(3))--",
    "\\'; SELECT 1;--",
];

const XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "'><iframe src=javascript:alert(1)>",
    "<body onload=alert(1)>",
    "' onmouseover='alert(1)",
];

/// Text that only a database error puts in a response: the query failed on the payload.
const DATABASE_ERRORS: &[&str] = &[
    "syntax error at or near",
    "unterminated quoted string",
    "SQLSTATE",
    "pq: ",
    "PSQLException",
    "You have an error in your SQL syntax",
    "SQLITE_ERROR",
    "ORA-0",
    "quoted string not properly terminated",
    "db error:",
];

/// An injected `pg_sleep(3)` that ran makes the answer take this long at least.
const SLEEP: Duration = Duration::from_secs(3);

/// One hostile request.
struct Attempt {
    payload: String,
    url: String,
    body: Option<Vec<u8>>,
}

pub async fn check(gate: &ProbeGate) -> Check {
    let expected = expectation(gate.attack);
    let client = match client(&gate.tls, gate.request_timeout) {
        Ok(client) => client,
        Err(e) => return Check::new(false, expected, e),
    };
    let attempts = attempts(gate);
    let mut findings = Vec::new();
    let mut statuses = Vec::new();
    let mut transcript = String::new();
    for attempt in &attempts {
        let shown = excerpt(&attempt.payload);
        let (status, body, elapsed) = match send(&client, gate, attempt).await {
            Ok(answer) => answer,
            Err(e) => {
                let _ = writeln!(transcript, "> {shown}\n! {e}");
                findings.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let _ = writeln!(transcript, "> {shown}\n< {status} ({}ms) {}", elapsed.as_millis(), excerpt(&body));
        statuses.push(status);
        if let Some(problem) = judge(gate.attack, &attempt.payload, status, &body, elapsed) {
            findings.push(format!("{shown}: {problem}"));
        }
    }
    if findings.is_empty() {
        return Check::new(true, expected, format!("{} probes: {}", attempts.len(), tally(&statuses)))
            .with_transcript(transcript);
    }
    let shown: Vec<&str> = findings.iter().take(5).map(String::as_str).collect();
    let more = if findings.len() > 5 { format!(" … {} more", findings.len() - 5) } else { String::new() };
    let actual = format!("{} of {} probes failed: {}{more}", findings.len(), attempts.len(), shown.join("; "));
    Check::new(false, expected, actual).with_transcript(transcript)
}

fn expectation(attack: Attack) -> String {
    match attack {
        Attack::MalformedJson => "every malformed JSON body gets a 4xx".into(),
        Attack::Oversize => "an oversize body gets 413".into(),
        Attack::SqlInjection => "no 5xx, no database error text, no injected sleep".into(),
        Attack::Xss => "no 5xx, no payload reflected unescaped".into(),
    }
}

/// What is wrong with one answer, if anything.
fn judge(attack: Attack, payload: &str, status: u16, body: &str, elapsed: Duration) -> Option<String> {
    if status >= 500 {
        return Some(format!("status {status}, body {}", excerpt(body)));
    }
    match attack {
        Attack::MalformedJson if !(400..500).contains(&status) => Some(format!("status {status}, not a 4xx")),
        Attack::Oversize if status != 413 => Some(format!("status {status}, not 413")),
        Attack::SqlInjection => {
            if let Some(sign) = DATABASE_ERRORS.iter().find(|sign| body.contains(*sign)) {
                Some(format!("the answer shows a database error ({sign:?}): {}", excerpt(body)))
            } else if payload.contains("sleep") && elapsed >= SLEEP {
                Some(format!("answered after {}ms: the injected sleep may have run", elapsed.as_millis()))
            } else {
                None
            }
        }
        Attack::Xss if body.contains(payload) => Some(format!("reflected unescaped: {}", excerpt(body))),
        _ => None,
    }
}

fn attempts(gate: &ProbeGate) -> Vec<Attempt> {
    let template = gate.body.as_deref();
    let fill = |payload: &str| Attempt {
        payload: payload.to_string(),
        url: gate.url.replace(PAYLOAD, &percent_encode(payload)),
        body: template.map(|t| t.replace(PAYLOAD, &json_string_content(payload)).into_bytes()),
    };
    let chosen = |builtin: &[&str]| -> Vec<String> {
        if gate.payloads.is_empty() { builtin.iter().map(|p| p.to_string()).collect() } else { gate.payloads.clone() }
    };
    match gate.attack {
        Attack::MalformedJson => {
            let mut bodies = chosen(MALFORMED_JSON);
            if gate.payloads.is_empty() {
                bodies.push(format!("{}{}", "[".repeat(NESTING), "]".repeat(NESTING)));
            }
            let url = gate.url.replace(PAYLOAD, "");
            bodies
                .into_iter()
                .map(|b| Attempt { url: url.clone(), body: Some(b.clone().into_bytes()), payload: b })
                .collect()
        }
        Attack::Oversize => vec![oversize(gate)],
        Attack::SqlInjection => chosen(SQL_INJECTION).iter().map(|p| fill(p)).collect(),
        Attack::Xss => chosen(XSS).iter().map(|p| fill(p)).collect(),
    }
}

/// The body template (default `{"padding":"{{payload}}"}`) padded to `size` bytes: otherwise valid, only too large.
fn oversize(gate: &ProbeGate) -> Attempt {
    let size = gate.size.map_or(1 << 20, |s| s.0) as usize;
    let template = gate.body.as_deref().unwrap_or(r#"{"padding":"{{payload}}"}"#);
    let fixed = template.len().saturating_sub(PAYLOAD.len());
    let padding = "a".repeat(size.saturating_sub(fixed).max(1));
    let body = template.replace(PAYLOAD, &padding).into_bytes();
    Attempt { payload: format!("{} bytes of JSON", body.len()), url: gate.url.replace(PAYLOAD, ""), body: Some(body) }
}

async fn send(
    client: &reqwest::Client,
    gate: &ProbeGate,
    attempt: &Attempt,
) -> Result<(u16, String, Duration), String> {
    let method = reqwest::Method::from_bytes(gate.method.to_uppercase().as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", gate.method))?;
    let mut request = client.request(method, &attempt.url);
    let has_type = gate.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type"));
    for (name, value) in &gate.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &attempt.body {
        if !has_type {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        request = request.body(body.clone());
    }
    let started = Instant::now();
    let response = request.send().await.map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    // A server may answer 413 and close before reading the rest; the status is what counts then.
    let body = response.text().await.unwrap_or_default();
    Ok((status, body, started.elapsed()))
}

/// `400×5, 422×3`: how the answers were spread over statuses.
fn tally(statuses: &[u16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0) += 1;
    }
    counts.iter().map(|(s, n)| format!("{s}×{n}")).collect::<Vec<_>>().join(", ")
}

/// The payload inside a JSON string: quotes and backslashes escaped, so the body stays valid JSON.
fn json_string_content(payload: &str) -> String {
    let quoted = serde_json::Value::from(payload).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// RFC 3986: everything but unreserved characters is percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(5);

    #[test]
    fn server_errors_always_fail() {
        for attack in [Attack::MalformedJson, Attack::Oversize, Attack::SqlInjection, Attack::Xss] {
            assert!(judge(attack, "x", 500, "", FAST).is_some());
        }
    }

    #[test]
    fn each_attack_has_its_own_rule() {
        assert!(judge(Attack::MalformedJson, "{", 400, "", FAST).is_none());
        assert!(judge(Attack::MalformedJson, "{", 201, "", FAST).is_some());
        assert!(judge(Attack::Oversize, "", 400, "", FAST).is_some());
        assert!(judge(Attack::Oversize, "", 413, "", FAST).is_none());
        let sql = "' OR 1=1--";
        assert!(judge(Attack::SqlInjection, sql, 422, r#"{"error":"unknown pattern"}"#, FAST).is_none());
        let leaked = r#"{"error":"db error: ERROR: syntax error at or near \"OR\""}"#;
        assert!(judge(Attack::SqlInjection, sql, 400, leaked, FAST).is_some());
        assert!(judge(Attack::SqlInjection, "1; SELECT pg_sleep(3)--", 200, "", SLEEP).is_some());
        let xss = "<script>alert(1)</script>";
        assert!(
            judge(Attack::Xss, xss, 201, r#"{"input":"\u003cscript\u003ealert(1)\u003c/script\u003e"}"#, FAST)
                .is_none()
        );
        assert!(judge(Attack::Xss, xss, 201, r#"{"input":"<script>alert(1)</script>"}"#, FAST).is_some());
    }

    #[test]
    fn payloads_are_placed_safely() {
        assert_eq!(json_string_content(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(percent_encode("' OR 1=1"), "%27%20OR%201%3D1");
    }

    #[test]
    fn oversize_bodies_are_valid_json_of_the_size_asked() {
        let gate: ProbeGate = serde_json::from_value(serde_json::json!({
            "url": "http://x/", "attack": "oversize", "size": "1KiB",
            "body": r#"{"pattern":"review","input":{"pad":"{{payload}}"}}"#
        }))
        .unwrap();
        let body = oversize(&gate).body.unwrap();
        assert_eq!(body.len(), 1024);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    }
}
