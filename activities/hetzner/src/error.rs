//! One error type for every Hetzner call, and its retry classification.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a caller (the workflow runtime) should do with a failed activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Try again after the retry policy's delay (`locked`, `conflict`, 5xx, connection errors).
    Retryable,
    /// Retrying cannot help (`invalid_input`, `forbidden`, `unauthorized`, quota, …).
    Permanent,
    /// The API budget is spent: try again at `until`, not earlier.
    RateLimited {
        /// The earliest instant a retry makes sense.
        until: DateTime<Utc>,
    },
    /// Hetzner has no capacity for this server type in this location
    /// (`resource_unavailable`, `placement_error`): fall back to another type or location.
    CapacityUnavailable,
}

/// Which part of a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The API answered with an error envelope (status and usually a code).
    Api,
    /// The request never got an answer: connection refused or reset, timeout.
    Transport,
    /// A success response did not match the model (the `hcloud` crate's strict models).
    Decode,
    /// An action ended in status `error`; `code`/`message` are the action's error.
    ActionFailed,
    /// An action was still running when the configured action timeout passed.
    ActionTimeout,
    /// A resource with hk8s's deterministic name exists but is not hk8s's
    /// (no `managed-by=hk8s` or another `cluster=`); it is never adopted.
    NotManaged,
    /// A resource exists with settings hk8s cannot change in place (e.g. the network's IP range).
    Incompatible,
    /// The configuration could not be used (bad endpoint URL, client build failure).
    Config,
}

/// Any failure of a Hetzner activity.
///
/// Carries the operation that failed, the HTTP status, the Hetzner error code and message
/// and, where the response headers were visible, the `X-Correlation-Id`.
/// The API token never appears in it.
#[derive(Debug)]
pub struct HetznerError {
    /// The operation that failed, e.g. `create server hk8s-cp-1`.
    pub operation: String,
    /// Which part failed.
    pub kind: ErrorKind,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The Hetzner error code (`locked`, `uniqueness_error`, …) or the action's error code.
    pub code: Option<String>,
    /// The Hetzner error message or a description of the failure.
    pub message: String,
    /// The `X-Correlation-Id` response header, when the response headers were visible
    /// (requests the facade makes itself; the `hcloud` crate drops headers).
    pub correlation_id: Option<String>,
    /// For 429: when to retry (from `RateLimit-Reset` when visible, else from pacing).
    pub retry_at: Option<DateTime<Utc>>,
    /// The underlying error, if any.
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for HetznerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)?;
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, " ({code}, http {status})")?,
            (Some(code), None) => write!(f, " ({code})")?,
            (None, Some(status)) => write!(f, " (http {status})")?,
            (None, None) => {}
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " [correlation id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for HetznerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The Hetzner error envelope `{"error":{"code","message","details"}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) error: EnvelopeError,
}

/// The inner object of [`Envelope`].
#[derive(Debug, Deserialize)]
pub(crate) struct EnvelopeError {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

impl HetznerError {
    /// A new error of `kind` for `operation`.
    pub fn new(kind: ErrorKind, operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            kind,
            status: None,
            code: None,
            message: message.into(),
            correlation_id: None,
            retry_at: None,
            source: None,
        }
    }

    /// An error built from an HTTP error response body (the Hetzner envelope if it parses).
    pub(crate) fn from_response(
        operation: impl Into<String>,
        status: u16,
        body: &str,
        correlation_id: Option<String>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Self {
        let (code, message) = match serde_json::from_str::<Envelope>(body) {
            Ok(env) if !env.error.code.is_empty() => (Some(env.error.code), env.error.message),
            _ => (None, truncate(body, 300)),
        };
        Self {
            operation: operation.into(),
            kind: ErrorKind::Api,
            status: Some(status),
            code,
            message,
            correlation_id,
            retry_at,
            source: None,
        }
    }

    /// Converts an error of the `hcloud` crate.
    ///
    /// The crate drops response headers, so `correlation_id` stays empty and a 429 gets
    /// `retry_at` from the caller (the facade's pacing) instead of `RateLimit-Reset`.
    pub(crate) fn from_hcloud<T>(
        operation: impl Into<String>,
        err: hcloud::apis::Error<T>,
        retry_at_on_429: DateTime<Utc>,
    ) -> Self {
        let operation = operation.into();
        match err {
            hcloud::apis::Error::ResponseError(resp) => {
                let status = resp.status.as_u16();
                let retry_at = (status == 429).then_some(retry_at_on_429);
                Self::from_response(operation, status, &resp.content, None, retry_at)
            }
            // serde names the missing field or the unknown enum value and its expected values
            // (the API moved on: a dropped required field, a new value of a closed enum).
            // (Its text goes into the message, so it is not repeated as the source.)
            hcloud::apis::Error::Serde(e) => Self::new(
                ErrorKind::Decode,
                operation,
                format!("the response did not match the hcloud model: {e}"),
            ),
            hcloud::apis::Error::Reqwest(e) => Self::from_reqwest(operation, e),
            hcloud::apis::Error::Io(e) => Self {
                source: Some(Box::new(e)),
                ..Self::new(ErrorKind::Transport, operation, "i/o error")
            },
        }
    }

    /// Converts a reqwest error (connection, timeout, body or builder failure).
    pub(crate) fn from_reqwest(operation: impl Into<String>, e: reqwest::Error) -> Self {
        let kind = if e.is_builder() {
            ErrorKind::Config
        } else if e.is_decode() {
            ErrorKind::Decode
        } else {
            ErrorKind::Transport
        };
        let message = if e.is_timeout() {
            "request timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_builder() {
            "could not build the request"
        } else if e.is_decode() {
            "could not decode the response"
        } else {
            "request failed"
        };
        Self {
            source: Some(Box::new(e.without_url())),
            ..Self::new(kind, operation, message)
        }
    }

    /// The retry class of this error (see the crate doc for the table).
    pub fn class(&self) -> ErrorClass {
        match self.kind {
            ErrorKind::Transport | ErrorKind::ActionTimeout => ErrorClass::Retryable,
            ErrorKind::Decode
            | ErrorKind::NotManaged
            | ErrorKind::Incompatible
            | ErrorKind::Config => ErrorClass::Permanent,
            ErrorKind::Api => classify(self.status, self.code.as_deref(), self.retry_at),
            // An action error has no HTTP status; an unknown code (e.g. `action_failed`)
            // is permanent: the resource may be half-made and retrying blindly repeats it.
            ErrorKind::ActionFailed => match self.code.as_deref() {
                Some(code) => classify(Some(422), Some(code), self.retry_at),
                None => ErrorClass::Permanent,
            },
        }
    }

    /// True for `not_found` (or a bare 404).
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::Api
            && (self.code.as_deref() == Some("not_found")
                || (self.code.is_none() && self.status == Some(404)))
    }

    /// True for `uniqueness_error` or `conflict`: after a create this means "look again".
    pub fn is_uniqueness_or_conflict(&self) -> bool {
        self.kind == ErrorKind::Api
            && matches!(
                self.code.as_deref(),
                Some("uniqueness_error") | Some("conflict")
            )
    }

    /// Prefixes the operation with more context.
    pub(crate) fn context(mut self, operation: impl Into<String>) -> Self {
        self.operation = operation.into();
        self
    }
}

/// The classification table for API and action error codes.
///
/// Codes decide first; a code this table does not know falls back on the status
/// (408, 429 and 5xx retryable, everything else permanent).
pub(crate) fn classify(
    status: Option<u16>,
    code: Option<&str>,
    retry_at: Option<DateTime<Utc>>,
) -> ErrorClass {
    let rate_limited = || ErrorClass::RateLimited {
        until: retry_at.unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(1)),
    };
    match code {
        Some("rate_limit_exceeded") => return rate_limited(),
        // `resource_in_use`: deleting a firewall or network whose servers are still being
        // detached; it clears once the detach finishes.
        Some(
            "locked" | "resource_locked" | "conflict" | "unavailable" | "timeout" | "server_error"
            | "bad_gateway" | "maintenance" | "robot_unavailable" | "resource_in_use",
        ) => return ErrorClass::Retryable,
        Some("resource_unavailable" | "placement_error") => {
            return ErrorClass::CapacityUnavailable;
        }
        Some(
            "invalid_input"
            | "json_error"
            | "forbidden"
            | "unauthorized"
            | "token_readonly"
            | "resource_limit_exceeded"
            | "not_found"
            | "uniqueness_error"
            | "protected"
            | "method_not_allowed"
            | "deprecated_api_endpoint"
            | "service_error"
            | "unsupported_error",
        ) => return ErrorClass::Permanent,
        _ => {}
    }
    match status {
        Some(429) => rate_limited(),
        Some(408) => ErrorClass::Retryable,
        Some(s) if s >= 500 => ErrorClass::Retryable,
        Some(_) => ErrorClass::Permanent,
        None => ErrorClass::Retryable,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> HetznerError {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"m","details":null}}}}"#);
        HetznerError::from_response("op", status, &body, None, None)
    }

    #[test]
    fn retryable_codes() {
        for (status, code) in [
            (423, "locked"),
            (409, "conflict"),
            (503, "unavailable"),
            (504, "timeout"),
            (500, "server_error"),
            (502, "bad_gateway"),
            (422, "resource_in_use"),
        ] {
            assert_eq!(api(status, code).class(), ErrorClass::Retryable, "{code}");
        }
    }

    #[test]
    fn permanent_codes() {
        for (status, code) in [
            (422, "invalid_input"),
            (403, "forbidden"),
            (401, "unauthorized"),
            (403, "resource_limit_exceeded"),
            (404, "not_found"),
            (409, "uniqueness_error"),
            (400, "json_error"),
        ] {
            assert_eq!(api(status, code).class(), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn capacity_codes() {
        assert_eq!(
            api(412, "resource_unavailable").class(),
            ErrorClass::CapacityUnavailable
        );
        assert_eq!(
            api(422, "placement_error").class(),
            ErrorClass::CapacityUnavailable
        );
    }

    #[test]
    fn rate_limited_carries_retry_at() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = r#"{"error":{"code":"rate_limit_exceeded","message":"slow down"}}"#;
        let e = HetznerError::from_response("op", 429, body, None, Some(at));
        assert_eq!(e.class(), ErrorClass::RateLimited { until: at });
        let bare = HetznerError::from_response("op", 429, "", None, Some(at));
        assert_eq!(bare.class(), ErrorClass::RateLimited { until: at });
    }

    #[test]
    fn unknown_code_falls_back_on_status() {
        assert_eq!(api(500, "brand_new_code").class(), ErrorClass::Retryable);
        assert_eq!(api(422, "brand_new_code").class(), ErrorClass::Permanent);
        let e = HetznerError::from_response("op", 502, "<html>bad gateway</html>", None, None);
        assert_eq!(e.code, None);
        assert_eq!(e.class(), ErrorClass::Retryable);
    }

    #[test]
    fn kinds_without_response() {
        assert_eq!(
            HetznerError::new(ErrorKind::Transport, "op", "x").class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            HetznerError::new(ErrorKind::Decode, "op", "x").class(),
            ErrorClass::Permanent
        );
        assert_eq!(
            HetznerError::new(ErrorKind::NotManaged, "op", "x").class(),
            ErrorClass::Permanent
        );
        assert_eq!(
            HetznerError::new(ErrorKind::ActionTimeout, "op", "x").class(),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn action_failure_uses_the_code_table() {
        let mut e = HetznerError::new(ErrorKind::ActionFailed, "wait", "boom");
        e.code = Some("action_failed".into());
        assert_eq!(e.class(), ErrorClass::Permanent);
        e.code = Some("locked".into());
        assert_eq!(e.class(), ErrorClass::Retryable);
    }

    #[test]
    fn display_names_operation_code_and_status() {
        let body = r#"{"error":{"code":"uniqueness_error","message":"name is already used"}}"#;
        let e = HetznerError::from_response(
            "create server c-cp-1",
            409,
            body,
            Some("abc".into()),
            None,
        );
        assert_eq!(
            e.to_string(),
            "create server c-cp-1: name is already used (uniqueness_error, http 409) [correlation id abc]"
        );
        assert!(e.is_uniqueness_or_conflict());
        assert!(!e.is_not_found());
        assert!(api(404, "not_found").is_not_found());
    }

    #[test]
    fn hcloud_response_error_is_parsed_from_content() {
        let err: hcloud::apis::Error<()> =
            hcloud::apis::Error::ResponseError(hcloud::apis::ResponseContent {
                status: reqwest::StatusCode::from_u16(423).unwrap(),
                content: r#"{"error":{"code":"locked","message":"server is locked"}}"#.into(),
                entity: None,
            });
        let e = HetznerError::from_hcloud("poweron", err, Utc::now());
        assert_eq!(e.status, Some(423));
        assert_eq!(e.code.as_deref(), Some("locked"));
        assert_eq!(e.message, "server is locked");
        assert_eq!(e.retry_at, None);
        assert_eq!(e.class(), ErrorClass::Retryable);
    }

    #[test]
    fn hcloud_serde_error_is_decode() {
        let serde_err = serde_json::from_str::<u32>("{").unwrap_err();
        let err: hcloud::apis::Error<()> = hcloud::apis::Error::Serde(serde_err);
        let e = HetznerError::from_hcloud("list servers", err, Utc::now());
        assert_eq!(e.kind, ErrorKind::Decode);
        assert!(
            e.to_string().starts_with(
                "list servers: the response did not match the hcloud model: invalid type"
            ),
            "{e}"
        );
    }
}
