//! `cors`: the allowed origin is echoed in `Access-Control-Allow-Origin` (preflight and request), another is not.

use super::Check;
use super::http::{client, error_chain};
use crate::config::{CorsGate, GateSpec};

const ALLOW_ORIGIN: &str = "access-control-allow-origin";

pub async fn check(gate: &CorsGate) -> Check {
    let expected = GateSpec::Cors(gate.clone()).target();
    let client = match client(&gate.tls, None) {
        Ok(client) => client,
        Err(e) => return Check::new(false, expected, e),
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (origin, allowed) in [(gate.allowed_origin.as_str(), true), (gate.disallowed(), false)] {
        for preflight in [true, false] {
            let what = if preflight { "preflight" } else { "request" };
            match allow_origin(&client, gate, origin, preflight).await {
                Ok(granted) => {
                    seen.push(format!("{what} from {origin}: {}", granted.as_deref().unwrap_or("no header")));
                    if let Some(problem) = judge(origin, allowed, granted.as_deref()) {
                        problems.push(format!("{what}: {problem}"));
                    }
                }
                Err(e) => problems.push(format!("{what} from {origin} failed: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Check::new(true, expected, seen.join("; "))
    } else {
        Check::new(false, expected, problems.join("; "))
    }
}

/// The `Access-Control-Allow-Origin` the service answers a request from `origin` with.
async fn allow_origin(
    client: &reqwest::Client,
    gate: &CorsGate,
    origin: &str,
    preflight: bool,
) -> Result<Option<String>, String> {
    let request = if preflight {
        client
            .request(reqwest::Method::OPTIONS, &gate.url)
            .header("access-control-request-method", gate.method.to_uppercase())
            .header("access-control-request-headers", "content-type")
    } else {
        client.get(&gate.url)
    };
    let response = request.header("origin", origin).send().await.map_err(|e| error_chain(&e))?;
    Ok(response.headers().get(ALLOW_ORIGIN).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

/// The allowed origin must be granted (by name or `*`); any other must get neither its name nor `*`.
fn judge(origin: &str, allowed: bool, granted: Option<&str>) -> Option<String> {
    match (allowed, granted) {
        (true, Some(g)) if g == origin || g == "*" => None,
        (true, Some(g)) => Some(format!("allowed origin {origin} got {ALLOW_ORIGIN}: {g}")),
        (true, None) => Some(format!("allowed origin {origin} got no {ALLOW_ORIGIN}")),
        (false, Some(g)) if g == origin || g == "*" => Some(format!("disallowed origin {origin} was granted ({g})")),
        (false, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_the_listed_origin() {
        assert!(judge("https://a", true, Some("https://a")).is_none());
        assert!(judge("https://a", true, None).is_some());
        assert!(judge("https://a", true, Some("https://b")).is_some());
        assert!(judge("https://evil", false, None).is_none());
        assert!(judge("https://evil", false, Some("https://a")).is_none());
        assert!(judge("https://evil", false, Some("https://evil")).is_some());
        assert!(judge("https://evil", false, Some("*")).is_some());
    }
}
