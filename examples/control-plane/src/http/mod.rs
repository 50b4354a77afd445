//! The HTTP surface: routes and the layers every request passes through.

mod api;
mod error;
mod middleware;
mod ops;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/version", get(ops::version))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/api/v1/patterns", get(api::patterns))
        .route("/api/v1/executions", get(api::list_executions).post(api::create_execution))
        .route("/api/v1/executions/{id}", get(api::get_execution))
        .route("/api/v1/admin/config", get(api::admin_config))
        .route("/ws", get(ws::upgrade))
        .fallback(|| async { error::ApiError::new(StatusCode::NOT_FOUND, "no such route") });

    // The last layer added runs first: the version header wraps everything, even 401/413/429.
    routes
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), middleware::json_payload_too_large))
        .layer(from_fn_with_state(state.clone(), middleware::require_token))
        .layer(from_fn_with_state(state.clone(), middleware::rate_limit))
        .layer(from_fn_with_state(state.clone(), middleware::record_metrics))
        .layer(cors(&state.config.cors_allowed_origins))
        // A 503 from a degraded readiness probe is expected during outages: warn, not error.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)))
        .layer(from_fn_with_state(state.clone(), middleware::version_header))
        .with_state(state)
}

/// Only listed origins are echoed back; with none listed, no cross-origin access is granted.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
}

#[cfg(test)]
mod tests;
