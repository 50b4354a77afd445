//! API errors: a status and a message, rendered as `{"error": ...}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// A dependency failed: the request was fine, the service cannot answer it right now.
    pub fn unavailable(err: anyhow::Error) -> Self {
        tracing::warn!(error = %format!("{err:#}"), "dependency failure while serving a request");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "a dependency is unavailable, retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
