//! `websocket`: the handshake completes and, when asked, an expected message arrives.

use std::fmt::Write as _;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

use super::Check;
use super::json_assert::{self, excerpt};
use crate::config::WebsocketGate;

const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Closing is a courtesy: a server that never answers the close frame must not hold the gate.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub async fn check(gate: &WebsocketGate, allow_empty: bool) -> Check {
    let wait = gate.connect_timeout.map_or(DEFAULT_WAIT, |d| d.0);
    let expected = expectation(gate);
    // tungstenite's rustls is built without a crypto provider; an already installed one is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut transcript = format!("> GET {} (upgrade: websocket)\n", gate.url);
    let connector = match super::tls_client::client_config(&gate.tls) {
        Ok(config) => config.map(Connector::Rustls),
        Err(e) => return failed(expected, e, transcript),
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(gate.url.as_str(), None, false, connector);
    let (mut ws, response) = match timeout(wait, connect).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return failed(expected, format!("handshake failed: {e}"), transcript),
        Err(_) => {
            return failed(expected, format!("no handshake within {}", humantime::format_duration(wait)), transcript);
        }
    };
    let _ = writeln!(transcript, "< {}", response.status());
    if let Some(text) = &gate.send {
        let _ = writeln!(transcript, "> {}", excerpt(text));
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            return failed(expected, format!("sending failed: {e}"), transcript);
        }
    }
    let verdict = if gate.expect.is_none() && gate.expect_json.is_empty() {
        Check::new(true, expected, format!("handshake {}", response.status().as_u16()))
    } else {
        await_match(gate, &mut ws, wait, allow_empty, &mut transcript).await
    };
    let _ = timeout(CLOSE_WAIT, ws.close(None)).await;
    verdict.with_transcript(transcript)
}

/// Reads messages until one matches or `wait` runs out; the service may greet before it answers.
async fn await_match<S>(
    gate: &WebsocketGate,
    ws: &mut S,
    wait: Duration,
    allow_empty: bool,
    transcript: &mut String,
) -> Check
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let expected = expectation(gate);
    let deadline = Instant::now() + wait;
    let mut misses = Vec::new();
    let ending = loop {
        let message = match timeout_at(deadline, ws.next()).await {
            Err(_) => break format!("no matching message within {}", humantime::format_duration(wait)),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break "the server closed the connection".to_string(),
            Ok(Some(Err(e))) => break format!("receiving failed: {e}"),
            Ok(Some(Ok(message))) => message,
        };
        let text = match &message {
            Message::Text(text) => text.as_str().to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => continue,
        };
        let _ = writeln!(transcript, "< {}", excerpt(&text));
        match judge_message(gate, &text, allow_empty) {
            Ok(()) => return Check::new(true, expected, format!("received {}", excerpt(&text))),
            Err(miss) => misses.push(miss),
        }
    };
    let actual = match misses.as_slice() {
        [] => ending,
        [.., last] => format!("{ending}; {} message(s) did not match, the last: {last}", misses.len()),
    };
    Check::new(false, expected, actual)
}

/// Whether one received message is the expected one; if not, why not (with the message).
pub fn judge_message(gate: &WebsocketGate, text: &str, allow_empty: bool) -> Result<(), String> {
    if let Some(want) = &gate.expect
        && !text.contains(want.as_str())
    {
        return Err(format!("{} lacks {want:?}", excerpt(text)));
    }
    if gate.expect_json.is_empty() {
        return Ok(());
    }
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{} is not JSON ({e})", excerpt(text)))?;
    let misses = json_assert::misses(&gate.expect_json, &doc, allow_empty);
    match misses.first() {
        None => Ok(()),
        Some(miss) => Err(format!("{} in {}", miss.actual, excerpt(text))),
    }
}

fn expectation(gate: &WebsocketGate) -> String {
    let mut parts = vec!["handshake 101".to_string()];
    if let Some(want) = &gate.expect {
        parts.push(format!("a message containing {want:?}"));
    }
    if !gate.expect_json.is_empty() {
        let each: Vec<String> = gate.expect_json.iter().map(json_assert::describe).collect();
        parts.push(format!("a JSON message where {}", each.join(" and ")));
    }
    parts.join("; ")
}

fn failed(expected: String, actual: String, mut transcript: String) -> Check {
    let _ = writeln!(transcript, "! {actual}");
    Check::new(false, expected, actual).with_transcript(transcript)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JsonAssertion, JsonPathText};

    fn gate() -> WebsocketGate {
        WebsocketGate {
            url: "ws://127.0.0.1:1".into(),
            send: None,
            expect: None,
            expect_json: vec![],
            connect_timeout: None,
            tls: Default::default(),
        }
    }

    #[test]
    fn text_and_json_expectations() {
        let text = WebsocketGate { expect: Some("pong".into()), ..gate() };
        assert_eq!(judge_message(&text, r#"{"echo":"pong"}"#, false), Ok(()));
        assert_eq!(judge_message(&text, "hello", false), Err("hello lacks \"pong\"".into()));
        let echo = JsonAssertion {
            path: JsonPathText("$.echo".into()),
            equals: Some(serde_json::json!("ping")),
            all: None,
            any: None,
            count: None,
            min_count: None,
            exists: None,
        };
        let json = WebsocketGate { expect_json: vec![echo], ..gate() };
        assert_eq!(judge_message(&json, r#"{"echo":"ping"}"#, false), Ok(()));
        assert_eq!(
            judge_message(&json, r#"{"hello":"control-plane"}"#, false),
            Err(r#"$.echo matched nothing in {"hello":"control-plane"}"#.into())
        );
        assert!(judge_message(&json, "plain", false).unwrap_err().contains("is not JSON"));
        assert_eq!(expectation(&json), r#"handshake 101; a JSON message where $.echo equals "ping""#);
    }
}
