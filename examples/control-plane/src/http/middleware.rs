//! Cross-cutting request handling: version and security headers, JSON escaping, metrics, rate limiting and
//! bearer-token auth.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

/// `x-app-version`, and `x-instance` so that behind a load balancer a client can tell which replica answered.
pub async fn version_header(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&state.config.app_version) {
        response.headers_mut().insert("x-app-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&state.config.instance_id) {
        response.headers_mut().insert("x-instance", value);
    }
    response
}

/// `<`, `>`, `&` and `'` can only occur inside JSON strings, where `\u003c`… means the same: the document is
/// unchanged for a JSON reader, but input echoed back can never open a tag or end an attribute if something
/// renders the answer as HTML. `nosniff` stops browsers from guessing that it is HTML in the first place.
pub async fn harden_json(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !state.config.escape_html || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "response body failed").into_response();
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(escape_html(&bytes)))
}

pub fn escape_html(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    for &b in json {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            b'\'' => out.extend_from_slice(b"\\u0027"),
            _ => out.push(b),
        }
    }
    out
}

/// The body-limit layers answer 413 in plain text; API clients get the same JSON error shape as elsewhere.
pub async fn json_payload_too_large(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        let limit = state.config.max_body_bytes;
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {limit} bytes (MAX_BODY_BYTES)"),
        )
        .into_response();
    }
    response
}

pub async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template, not the raw path, keeps label cardinality bounded.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.http_requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    m.http_duration.with_label_values(&[route.as_str()]).observe(start.elapsed().as_secs_f64());
    response
}

/// Probes and scrapes are never limited: throttling them would turn load into false outages. Callers with the
/// API token are trusted services (and the release benchmark): the limit protects against anonymous floods.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let trusted =
        state.config.api_token.as_ref().is_some_and(|t| bearer_matches(req.headers().get(header::AUTHORIZATION), t));
    let exempt = trusted || req.uri().path().starts_with("/health") || req.uri().path() == "/metrics";
    if let (Some(limiter), false) = (&state.limiter, exempt) {
        let allowed = limiter.lock().map(|mut bucket| bucket.try_take(Instant::now())).unwrap_or(true);
        if !allowed {
            let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded").into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
    next.run(req).await
}

pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.api_token
        && needs_token(req.method(), req.uri().path())
        && !bearer_matches(req.headers().get(header::AUTHORIZATION), token)
    {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}

pub fn needs_token(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    (method == Method::POST && path == "/api/v1/executions") || path.starts_with("/api/v1/admin")
}

fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let given = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so response time does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protects_only_writes_and_admin() {
        assert!(needs_token(&Method::POST, "/api/v1/executions"));
        assert!(needs_token(&Method::POST, "/api/v1/executions/"));
        assert!(needs_token(&Method::GET, "/api/v1/admin/config"));
        assert!(!needs_token(&Method::GET, "/api/v1/executions"));
        assert!(!needs_token(&Method::GET, "/api/v1/patterns"));
        assert!(!needs_token(&Method::GET, "/health/ready"));
    }

    #[test]
    fn escaped_json_reads_the_same() {
        let json = serde_json::json!({ "input": "<script>alert('x')</script> & more" });
        let escaped = escape_html(json.to_string().as_bytes());
        let text = String::from_utf8(escaped.clone()).unwrap();
        assert!(!text.contains(['<', '>', '&', '\'']), "{text}");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&escaped).unwrap(), json);
    }

    #[test]
    fn bearer_must_match_exactly() {
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(bearer_matches(Some(&ok), "s3cret"));
        assert!(!bearer_matches(Some(&HeaderValue::from_static("Bearer s3cre")), "s3cret"));
        assert!(!bearer_matches(Some(&HeaderValue::from_static("s3cret")), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
