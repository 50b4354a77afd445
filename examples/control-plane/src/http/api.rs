//! The business API: patterns (Postgres, cached in Redis), executions and admin views.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::{db, execute, state::AppState};

const PATTERNS_KEY: &str = "control-plane:patterns:v1";
const PATTERNS_TTL_SECS: u64 = 30;

/// Served from Redis when it answers, else from Postgres; `X-Cache` says which.
pub async fn patterns(State(state): State<AppState>) -> Result<Response, ApiError> {
    let cached = state.cache.get(PATTERNS_KEY).await;
    if let Ok(Some(text)) = &cached
        && let Ok(patterns) = serde_json::from_str::<Vec<db::Pattern>>(text)
    {
        state.metrics.patterns_total.set(patterns.len() as i64);
        return Ok(with_cache_header(Json(patterns), "hit"));
    }
    let patterns = db::patterns(&state.pool).await.map_err(ApiError::unavailable)?;
    state.metrics.patterns_total.set(patterns.len() as i64);
    let outcome = match cached {
        Ok(_) => {
            let text = serde_json::to_string(&patterns).unwrap_or_default();
            match state.cache.set(PATTERNS_KEY, &text, PATTERNS_TTL_SECS).await {
                Ok(()) => "miss",
                Err(_) => "bypass",
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, "redis unavailable, serving patterns from Postgres");
            "bypass"
        }
    };
    Ok(with_cache_header(Json(patterns), outcome))
}

fn with_cache_header(body: impl IntoResponse, outcome: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert("x-cache", HeaderValue::from_static(outcome));
    response
}

#[derive(Deserialize)]
struct ExecutionRequest {
    pattern: String,
    #[serde(default)]
    input: Option<Value>,
}

/// Takes raw bytes so every kind of bad input maps to a 4xx chosen here, never a 5xx.
pub async fn create_execution(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request = parse_execution(&body)?;
    let input = request.input.unwrap_or_else(|| json!({}));
    let pattern =
        db::pattern_by_name(&state.pool, &request.pattern).await.map_err(ApiError::unavailable)?.ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("unknown pattern {:?}", request.pattern))
        })?;

    let outcome = execute::run(&pattern, &input, &state.metrics).await;
    let stored = db::insert_execution(
        &state.pool,
        db::NewExecution {
            pattern: &pattern,
            status: "succeeded",
            input: &input,
            output: &outcome.output,
            confidence: outcome.confidence,
            duration_ms: outcome.duration_ms,
        },
    )
    .await;
    let m = &state.metrics;
    let status = if stored.is_ok() { "succeeded" } else { "failed" };
    m.executions.with_label_values(&[pattern.name.as_str(), status]).inc();
    m.execution_duration.with_label_values(&[pattern.name.as_str()]).observe(outcome.duration_ms / 1000.0);
    let execution = stored.map_err(ApiError::unavailable)?;
    m.confidence.observe(execution.confidence);
    m.last_confidence.set(execution.confidence);
    tracing::info!(id = execution.id, pattern = %execution.pattern, confidence = execution.confidence, "execution stored");
    Ok((StatusCode::CREATED, Json(execution)).into_response())
}

fn parse_execution(body: &[u8]) -> Result<ExecutionRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body is not valid JSON: {e}")))?;
    let request: ExecutionRequest = serde_json::from_value(value).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("expected {{\"pattern\": \"<name>\", \"input\": {{..}}}}: {e}"))
    })?;
    if request.input.as_ref().is_some_and(|i| !i.is_object()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "input must be a JSON object"));
    }
    if request.pattern.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "pattern must not be empty"));
    }
    Ok(request)
}

pub async fn get_execution(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "execution id must be an integer"))?;
    match db::execution(&state.pool, id).await.map_err(ApiError::unavailable)? {
        Some(execution) => Ok(Json(execution).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no execution {id}"))),
    }
}

pub async fn list_executions(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.get("limit").map(String::as_str))?;
    let executions = db::recent_executions(&state.pool, limit).await.map_err(ApiError::unavailable)?;
    Ok(Json(executions).into_response())
}

/// Default 20, at most 100, so one request cannot dump the table.
fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(20),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(100)),
            _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "limit must be a positive integer")),
        },
    }
}

pub async fn admin_config(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.config.redacted()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bodies_are_client_errors() {
        let status = |body: &str| parse_execution(body.as_bytes()).err().map(|e| e.status);
        assert_eq!(status("{"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("[]"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(r#"{"input":{}}"#), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(r#"{"pattern":"x","input":3}"#), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(r#"{"pattern":" "}"#), Some(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(status(r#"{"pattern":"review","input":{"q":1}}"#), None);
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(parse_limit(None).ok(), Some(20));
        assert_eq!(parse_limit(Some("5")).ok(), Some(5));
        assert_eq!(parse_limit(Some("100000")).ok(), Some(100));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("x")).is_err());
    }
}
