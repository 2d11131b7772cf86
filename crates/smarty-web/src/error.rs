//! The API's error answer, `{"error": "…"}` with its status: what handlers, extractors and
//! the token check return.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use smarty_store::StoreError;

/// An error answer: `{"error": "…"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `status` and a message for the user.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// A 400: a parameter the API cannot use, with what to send instead.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    /// 404 for an unknown meter, 400 for an unknown field or too large an answer, 500 (and
    /// logged) for anything else.
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::UnknownMeter(_) => StatusCode::NOT_FOUND,
            StoreError::UnknownField(_) | StoreError::TooManyPoints { .. } => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("http: store: {e}");
        }
        ApiError::new(status, e.to_string())
    }
}
