//! The one error type of the HTTP surface.
//!
//! Every failure a client can see is an [`ApiError`]; it maps to the contract's
//! `{"error":{"code","message"}}` body and status in exactly one place
//! ([`ApiError::status`], [`ApiError::code`]), so no handler invents its own shape.

use serde_json::json;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Conflict(String),
    #[error("a session holds at most {max} sockets")]
    TooManySockets { max: u32 },
    /// `If-Match` named a version that is no longer the current one.
    #[error("version {expected} is not the current version {current}")]
    VersionConflict { expected: u32, current: u32 },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected content type application/json")]
    UnsupportedMediaType,
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("rate limited, retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (storage, another actor) failed. Never used for bad input.
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField { field: field.into(), message: message.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::MalformedJson(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::VersionConflict { .. } => 412,
            ApiError::TooManySockets { .. } => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::InvalidField { .. } => 422,
            ApiError::RateLimited { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::TooManySockets { .. } => "too_many_sockets",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// The contract's error body. `field` is an extension that forms use to
    /// place the message next to the right input.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        match self {
            ApiError::InvalidField { field, .. } => error["field"] = json!(field),
            ApiError::RateLimited { retry_after_secs } => error["retry_after"] = json!(retry_after_secs),
            ApiError::VersionConflict { expected, current } => {
                error["expected"] = json!(expected);
                error["current"] = json!(current);
            }
            _ => {}
        }
        json!({ "error": error })
    }

    /// Headers the status requires (RFC 9110: 405 needs Allow, 429 Retry-After).
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                vec![("Retry-After", retry_after_secs.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// Rebuilds an error from a body made by [`ApiError::body`], so an actor's
    /// refusal travels through the Worker unchanged.
    pub fn from_body(status: u16, body: &serde_json::Value) -> Option<Self> {
        let err = body.get("error")?;
        let message = err.get("message")?.as_str()?.to_string();
        let code = err.get("code")?.as_str()?;
        Some(match (status, code) {
            (400, "malformed_json") => ApiError::MalformedJson(message),
            (400, _) => ApiError::BadRequest(message),
            (401, _) => ApiError::Unauthorized(message),
            (403, _) => ApiError::Forbidden(message),
            (404, _) => ApiError::NotFound(message.trim_end_matches(" not found").to_string()),
            (409, _) => ApiError::Conflict(message),
            (422, _) => {
                let field = err.get("field").and_then(|f| f.as_str()).unwrap_or("body");
                let message = message
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(&message)
                    .to_string();
                ApiError::InvalidField { field: field.to_string(), message }
            }
            (412, _) => ApiError::VersionConflict {
                expected: err.get("expected").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
                current: err.get("current").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            },
            (429, _) => ApiError::RateLimited {
                retry_after_secs: err.get("retry_after").and_then(|v| v.as_u64()).unwrap_or(1),
            },
            (503, _) => ApiError::Unavailable(message),
            _ => ApiError::Internal(message),
        })
    }
}

impl From<crate::domain::principal::Denied> for ApiError {
    fn from(d: crate::domain::principal::Denied) -> Self {
        match d {
            crate::domain::principal::Denied::Hidden => ApiError::not_found("content"),
            crate::domain::principal::Denied::ReadOnly => ApiError::Forbidden(d.to_string()),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::MalformedJson(format!("malformed JSON: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_contract_shape() {
        let e = ApiError::invalid("title", "must be 1 to 300 characters");
        assert_eq!(e.status(), 422);
        let b = e.body();
        assert_eq!(b["error"]["code"], "invalid_field");
        assert_eq!(b["error"]["message"], "title: must be 1 to 300 characters");
        assert_eq!(b["error"]["field"], "title");
    }

    #[test]
    fn round_trips_through_body() {
        for e in [
            ApiError::not_found("run"),
            ApiError::Conflict("busy".into()),
            ApiError::invalid("tags", "too many"),
            ApiError::MalformedJson("eof".into()),
            ApiError::RateLimited { retry_after_secs: 7 },
            ApiError::VersionConflict { expected: 1, current: 2 },
        ] {
            assert_eq!(ApiError::from_body(e.status(), &e.body()), Some(e.clone()));
        }
    }

    #[test]
    fn every_client_error_is_4xx() {
        let errs = [
            ApiError::BadRequest(String::new()),
            ApiError::Unauthorized(String::new()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType,
            ApiError::RateLimited { retry_after_secs: 3 },
        ];
        for e in errs {
            assert!((400..500).contains(&e.status()), "{e:?}");
        }
    }
}
