//! Operational endpoints: liveness, readiness, version, Prometheus metrics and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{db, migrations, readiness, state::AppState};

/// The API's description, kept complete by a test that compares it with the router's routes.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (ready, body) = readiness::check_all(&state).await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// `schema_version.embedded` is what this binary expects; `applied` is what the database has
/// (null when Postgres cannot be asked), so a rollback drill can compare them.
pub async fn version(State(state): State<AppState>) -> Json<Value> {
    let applied = tokio::time::timeout(Duration::from_secs(1), db::applied_versions(&state.pool)).await;
    let applied = match applied {
        Ok(Ok(versions)) => json!(versions),
        _ => Value::Null,
    };
    Json(json!({
        "version": state.config.app_version,
        "git_sha": state.config.git_sha,
        "service": state.config.service_name,
        "instance": state.config.instance_id,
        "schema_version": { "embedded": migrations::highest_embedded(), "applied": applied },
    }))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.set_pool(state.pool.status());
    state.metrics.set_breaker("redis", &state.cache.breaker());
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
