//! `http`: an endpoint answers with the expected status, headers, body, JSON and latency.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::Check;
use super::json_assert::{self, Miss, excerpt};
use crate::config::{Dur, HttpExpect, HttpGate, TlsOptions};

const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 8 << 20;
/// Header values never written to a transcript.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// What came back, reduced to what the expectations judge.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub elapsed: Duration,
}

pub async fn check(gate: &HttpGate, allow_empty: bool) -> Check {
    let expected = expectations(&gate.expect).join("; ");
    let (client, request) = match prepare(gate) {
        Ok(ready) => ready,
        Err(e) => return Check::new(false, expected, e),
    };
    let mut transcript = request_transcript(&request);
    let started = Instant::now();
    let response = match client.execute(request).await {
        Ok(response) => response,
        Err(e) => {
            let why = format!("request failed: {}", error_chain(&e));
            let _ = writeln!(transcript, "! {why}");
            return Check::new(false, expected, why).with_transcript(transcript);
        }
    };
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    let body = match read_body(response).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(why) => return Check::new(false, expected, format!("status {status}, {why}")).with_transcript(transcript),
    };
    let reply = Reply { status, headers, body, elapsed: started.elapsed() };
    transcript.push_str(&response_transcript(&reply));
    judge(&gate.expect, &reply, allow_empty).with_transcript(transcript)
}

/// The body, refusing one larger than [`MAX_BODY`]: a gate judges health answers, not downloads.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("reading the body failed: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the body is larger than {} MiB", MAX_BODY >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A client with the gate's `tls:` options; the gates that send HTTP requests share it.
pub fn client(tls: &TlsOptions, timeout: Option<Dur>) -> Result<reqwest::Client, String> {
    // reqwest is built without a crypto provider; an already installed one is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout.map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0))
        .tls_danger_accept_invalid_certs(tls.insecure);
    if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read tls.ca `{ca}`: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls.ca `{ca}` is not a PEM certificate bundle: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

fn prepare(gate: &HttpGate) -> Result<(reqwest::Client, reqwest::Request), String> {
    let client = client(&gate.tls, gate.request_timeout)?;
    let method = reqwest::Method::from_bytes(gate.method.to_uppercase().as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", gate.method))?;
    let mut request = client.request(method, &gate.url);
    for (name, value) in &gate.headers {
        request = request.header(name, value);
    }
    if let Some(json) = &gate.json {
        let body = serde_json::to_vec(json).map_err(|e| format!("cannot encode `json:`: {e}"))?;
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    } else if let Some(body) = &gate.body {
        request = request.body(body.clone());
    }
    let request = request.build().map_err(|e| format!("invalid request to `{}`: {}", gate.url, error_chain(&e)))?;
    Ok((client, request))
}

/// Judges a reply: every expectation that failed, with what was there instead, and the body.
pub fn judge(expect: &HttpExpect, reply: &Reply, allow_empty: bool) -> Check {
    let mut misses = Vec::new();
    let statuses = expect.status.as_ref().map_or(vec![200], |s| s.to_vec());
    if !statuses.contains(&reply.status) {
        misses.push(Miss { expected: status_words(&statuses), actual: format!("status {}", reply.status) });
    }
    for (name, want) in &expect.headers {
        let got = reply.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let (expected, holds) = match want.as_str() {
            "exists" => (format!("header {name} present"), got.is_some()),
            _ => (format!("header {name}: {want}"), got == Some(want.as_str())),
        };
        if !holds {
            let actual = got.map_or(format!("no header {name}"), |v| format!("header {name}: {v}"));
            misses.push(Miss { expected, actual });
        }
    }
    for text in &expect.body_contains {
        if !reply.body.contains(text.as_str()) {
            misses.push(Miss { expected: format!("body contains {text:?}"), actual: format!("body lacks {text:?}") });
        }
    }
    if !expect.json.is_empty() {
        match serde_json::from_str(&reply.body) {
            Ok(doc) => misses.extend(json_assert::misses(&expect.json, &doc, allow_empty)),
            Err(e) => misses.push(Miss { expected: "a JSON body".into(), actual: format!("body is not JSON ({e})") }),
        }
    }
    if let Some(budget) = expect.latency
        && reply.elapsed > budget.0
    {
        misses.push(Miss {
            expected: format!("latency ≤ {budget}"),
            actual: format!("took {}ms", reply.elapsed.as_millis()),
        });
    }
    if misses.is_empty() {
        let actual = format!("status {} in {}ms", reply.status, reply.elapsed.as_millis());
        return Check::new(true, expectations(expect).join("; "), actual);
    }
    let expected: Vec<String> = misses.iter().map(|m| m.expected.clone()).collect();
    let actual: Vec<String> = misses.iter().map(|m| m.actual.clone()).collect();
    let body = if reply.body.is_empty() { "(empty)".to_string() } else { excerpt(&reply.body) };
    Check::new(false, expected.join("; "), format!("{}, body {body}", actual.join("; ")))
}

/// Everything the gate expects, in words.
fn expectations(expect: &HttpExpect) -> Vec<String> {
    let mut all = vec![status_words(&expect.status.as_ref().map_or(vec![200], |s| s.to_vec()))];
    all.extend(expect.headers.iter().map(|(n, v)| match v.as_str() {
        "exists" => format!("header {n} present"),
        _ => format!("header {n}: {v}"),
    }));
    all.extend(expect.body_contains.iter().map(|t| format!("body contains {t:?}")));
    all.extend(expect.json.iter().map(json_assert::describe));
    all.extend(expect.latency.map(|l| format!("latency ≤ {l}")));
    all
}

fn status_words(statuses: &[u16]) -> String {
    let list: Vec<String> = statuses.iter().map(u16::to_string).collect();
    format!("status {}", list.join(" or "))
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

fn shown_header(name: &str, value: &str) -> String {
    if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        format!("{name}: ***")
    } else {
        format!("{name}: {value}")
    }
}

fn request_transcript(request: &reqwest::Request) -> String {
    let mut out = format!("> {} {}\n", request.method(), request.url());
    for (name, value) in header_pairs(request.headers()) {
        let _ = writeln!(out, "> {}", shown_header(&name, &value));
    }
    if let Some(body) = request.body().and_then(reqwest::Body::as_bytes) {
        let _ = writeln!(out, ">\n> {}", excerpt(&String::from_utf8_lossy(body)));
    }
    out
}

fn response_transcript(reply: &Reply) -> String {
    let mut out = format!("< {} ({}ms)\n", reply.status, reply.elapsed.as_millis());
    for (name, value) in &reply.headers {
        let _ = writeln!(out, "< {}", shown_header(name, value));
    }
    let _ = writeln!(out, "<\n< {}", excerpt(&reply.body));
    out
}

/// The error with its causes: reqwest's own message alone ("error sending request") says little.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JsonAssertion, JsonPathText, OneOrMany};

    fn reply(status: u16, body: &str, ms: u64) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_wrong_status_shows_the_body() {
        let c = judge(&HttpExpect::default(), &reply(503, r#"{"status":"degraded"}"#, 5), false);
        assert!(!c.passed);
        assert_eq!(c.expected, "status 200");
        assert_eq!(c.actual, r#"status 503, body {"status":"degraded"}"#);
    }

    #[test]
    fn a_status_list_headers_and_body_text() {
        let expect = HttpExpect {
            status: Some(OneOrMany::Many(vec![200, 204])),
            headers: [("Content-Type".into(), "exists".into()), ("x-version".into(), "3".into())].into(),
            body_contains: vec!["ok".into()],
            ..Default::default()
        };
        let c = judge(&expect, &reply(204, "ok", 5), false);
        assert!(!c.passed);
        assert_eq!(c.expected, "header x-version: 3");
        assert_eq!(c.actual, "no header x-version, body ok");
    }

    #[test]
    fn latency_over_budget_fails_and_json_must_parse() {
        let expect = HttpExpect { latency: Some(Dur(Duration::from_millis(100))), ..Default::default() };
        let c = judge(&expect, &reply(200, "", 150), false);
        assert_eq!(
            (c.passed, c.expected.as_str(), c.actual.as_str()),
            (false, "latency ≤ 100ms", "took 150ms, body (empty)")
        );
        assert!(judge(&expect, &reply(200, "", 50), false).passed);
        let json = JsonAssertion {
            path: JsonPathText("$.status".into()),
            equals: Some(serde_json::json!("ok")),
            all: None,
            any: None,
            count: None,
            min_count: None,
            exists: None,
        };
        let expect = HttpExpect { json: vec![json], ..Default::default() };
        let c = judge(&expect, &reply(200, "<html>", 5), false);
        assert!(c.actual.starts_with("body is not JSON"), "{}", c.actual);
        assert!(judge(&expect, &reply(200, r#"{"status":"ok"}"#, 5), false).passed);
    }

    #[test]
    fn secret_headers_are_masked_in_transcripts() {
        assert_eq!(shown_header("Authorization", "Bearer abc"), "Authorization: ***");
        assert_eq!(shown_header("accept", "*/*"), "accept: */*");
    }
}
