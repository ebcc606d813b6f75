//! The Hetzner error envelope: one [`ApiError`] renders `{"error":{"code","message","details"}}`
//! with the documented HTTP status and an `X-Correlation-Id` header.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Header carrying a per-response correlation id, as the real API sends.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// An error as the Hetzner Cloud API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Hetzner error code, e.g. `invalid_input`.
    pub code: String,
    /// Human readable message.
    pub message: String,
    /// `details` object, or `null`.
    pub details: Value,
}

impl ApiError {
    /// An error with the given status, code and message and no details.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Attaches a `details` object.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 422 `invalid_input` naming one field and why it is wrong.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("invalid input in field '{field}'"),
        )
        .with_details(json!({"fields": [{"name": field, "messages": [message]}]}))
    }

    /// 422 `invalid_input` without a field (e.g. a bad query parameter).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// 400 `json_error` for a body that is not valid JSON.
    pub fn json_error(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "json_error", message)
    }

    /// 404 `not_found` for a resource kind.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409 `uniqueness_error` on a field (normally `name`).
    pub fn uniqueness(field: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "uniqueness_error",
            format!("{field} is already used"),
        )
        .with_details(json!({"fields": [{"name": field}]}))
    }

    /// 423 `locked`: the resource has a running action.
    pub fn locked() -> Self {
        Self::new(
            StatusCode::LOCKED,
            "locked",
            "The resource is locked by a running action",
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        )
    }

    /// 403 `token_readonly`: a "Read" token used for anything but `GET` (Hetzner's error
    /// code table: "The token is only allowed to perform GET requests").
    pub fn token_readonly() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "token_readonly",
            "The token is only allowed to perform GET requests",
        )
    }

    /// 429 `rate_limit_exceeded`.
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "limit of requests per hour reached",
        )
    }

    /// 422 with an operation specific code (e.g. `server_already_attached`).
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The JSON envelope of this error.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

/// A fresh random correlation id (16 hex digits).
pub fn correlation_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Ok(v) = HeaderValue::from_str(&correlation_id()) {
            resp.headers_mut().insert(CORRELATION_ID, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_message_details() {
        let e = ApiError::invalid_field("name", "is required");
        let b = e.body();
        assert_eq!(b["error"]["code"], "invalid_input");
        assert_eq!(b["error"]["details"]["fields"][0]["name"], "name");
        assert_eq!(
            b["error"]["details"]["fields"][0]["messages"][0],
            "is required"
        );
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let n = ApiError::not_found("server").body();
        assert!(n["error"]["details"].is_null());
    }

    #[test]
    fn response_carries_status_and_correlation_id() {
        let r = ApiError::locked().into_response();
        assert_eq!(r.status(), StatusCode::LOCKED);
        assert_eq!(r.headers()[CORRELATION_ID].len(), 16);
    }
}
