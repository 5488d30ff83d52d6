//! The one error type of the HTTP surface and of every actor hop.
//!
//! Every failure a client can see is an [`ApiError`], one meaning per
//! variant. It maps to the contract's `{"error":{"code","message"}}` body and
//! status in exactly one place ([`ApiError::status`], [`ApiError::code`]), and
//! [`ApiError::from_body`] decodes that body back by its `code`, so a refusal
//! crosses an actor hop as the same variant. Domain errors convert with `From`
//! below, so call sites use `?`. An internal error's detail is logged, never
//! sent: the client gets a request id instead ([`ApiError::for_client`]).

use std::borrow::Cow;

use serde_json::Value;

use crate::domain::content::{superseded_reason, ContentError};
use crate::domain::jwt::JwtError;
use crate::domain::pipeline::{StageError, TransitionError};
use crate::domain::principal::Denied;
use crate::domain::followers::{FollowRefused, MAX_ANONYMOUS_FOLLOWERS, MAX_FOLLOWERS};
use crate::domain::session::{SubscribeError, MAX_SUBSCRIPTIONS};
use crate::domain::token::TokenError;
use crate::domain::vector::FenceError;
use crate::protocol::{ErrorBody, ErrorClass, ErrorDetail};

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
    /// A create found the item already there.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A newer version replaced the one a run works on, or the item was
    /// deleted: the run ends `cancelled` with this reason and writes nothing.
    #[error("{0}")]
    Superseded(String),
    /// The action does not fit the current state: cancel a finished run,
    /// retry a completed one, publish a run of another item.
    #[error("{0}")]
    InvalidTransition(String),
    /// The vector shard refused a write of an old version or a deleted item.
    #[error("{0}")]
    Fenced(String),
    #[error("a session holds at most {max} sockets")]
    TooManySockets { max: u32 },
    #[error("at most {max} subscriptions per socket")]
    TooManySubscriptions { max: u32 },
    /// One principal's sessions (one client IP's, when anonymous) follow a
    /// topic through session sockets at most `max` times.
    #[error("this principal's sessions follow this topic at most {max} times; use /api/topics/{{topic}}/ws for more tabs")]
    TooManyFollowers { max: u32 },
    /// The topic pushes to as many sessions as it takes (in all, or of
    /// anonymous ones): refused on this socket for as long as they stay, so
    /// a client does not ask again there; the topic's own socket
    /// (`/api/topics/{topic}/ws`) takes the tab.
    #[error("{0}")]
    TopicFull(String),
    /// `If-Match` named a version that is no longer the current one.
    #[error("version {expected} is not the current version {current}")]
    VersionConflict { expected: u32, current: u32 },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The item, with this change, would outgrow the one value its actor
    /// stores it in: the request may be small, the item is not.
    #[error("{0}")]
    ItemTooLarge(String),
    /// The body's content type is not one the route reads; the message says which it reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("rate limited, retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (storage, D1, another actor) failed. Never used for bad input.
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// The analyzer's circuit breaker is open: unavailable until it cools down.
    #[error("analyzer circuit is open for another {retry_after_ms} ms")]
    CircuitOpen { retry_after_ms: u64 },
    /// Neither a container nor `ANALYZER_URL` is configured.
    #[error("analyzer disabled: no container and no ANALYZER_URL")]
    AnalyzerDisabled,
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
            ApiError::AlreadyExists(_)
            | ApiError::Superseded(_)
            | ApiError::InvalidTransition(_)
            | ApiError::Fenced(_)
            | ApiError::TooManySockets { .. }
            | ApiError::TooManySubscriptions { .. }
            | ApiError::TooManyFollowers { .. }
            | ApiError::TopicFull(_) => 409,
            ApiError::VersionConflict { .. } => 412,
            ApiError::PayloadTooLarge { .. } | ApiError::ItemTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::InvalidField { .. } => 422,
            ApiError::RateLimited { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) | ApiError::CircuitOpen { .. } | ApiError::AnalyzerDisabled => 503,
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
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::Superseded(_) => "superseded",
            // The contract's generic 409, which clients and tests match on.
            ApiError::InvalidTransition(_) => "conflict",
            ApiError::Fenced(_) => "fenced",
            ApiError::TooManySockets { .. } => "too_many_sockets",
            ApiError::TooManySubscriptions { .. } => "too_many_subscriptions",
            ApiError::TooManyFollowers { .. } => "too_many_followers",
            ApiError::TopicFull(_) => "topic_full",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::ItemTooLarge(_) => "item_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::CircuitOpen { .. } => "circuit_open",
            ApiError::AnalyzerDisabled => "analyzer_disabled",
        }
    }

    /// The code of the WebSocket `error` frame that refuses a frame: a topic
    /// the socket may not see, or that does not parse, is `unknown_topic`.
    pub fn frame_code(&self) -> &'static str {
        match self {
            ApiError::InvalidField { .. } | ApiError::NotFound(_) => "unknown_topic",
            e => e.code(),
        }
    }

    /// The contract's error body. The fields beside `code` and `message` are
    /// extensions: `field` places a form's message next to its input, the
    /// others let [`ApiError::from_body`] rebuild the variant after a hop.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or_default()
    }

    /// The typed body [`ApiError::body`] serializes.
    pub fn wire(&self) -> ErrorBody {
        let mut error = ErrorDetail { code: self.code().into(), message: self.to_string(), ..ErrorDetail::default() };
        match self {
            ApiError::InvalidField { field, .. } => error.field = Some(field.clone()),
            ApiError::RateLimited { retry_after_secs } => error.retry_after = Some(*retry_after_secs),
            ApiError::CircuitOpen { retry_after_ms } => {
                error.retry_after = Some(secs_ceil(*retry_after_ms));
                error.retry_after_ms = Some(*retry_after_ms);
            }
            ApiError::VersionConflict { expected, current } => {
                error.expected = Some(*expected);
                error.current = Some(*current);
            }
            ApiError::MethodNotAllowed { method, path } => {
                error.method = Some(method.clone());
                error.path = Some(path.clone());
            }
            ApiError::TooManySockets { max } | ApiError::TooManySubscriptions { max } | ApiError::TooManyFollowers { max } => error.max = Some(*max),
            ApiError::PayloadTooLarge { limit } => error.limit = Some(*limit as u64),
            _ => {}
        }
        ErrorBody { error }
    }

    /// Headers the status calls for (RFC 9110: 429 and 503 may say when to
    /// retry). The router adds 405's `Allow`, since only it knows the path.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::RateLimited { retry_after_secs } => vec![("Retry-After", retry_after_secs.to_string())],
            ApiError::CircuitOpen { retry_after_ms } => vec![("Retry-After", secs_ceil(*retry_after_ms).to_string())],
            _ => Vec::new(),
        }
    }

    /// Rebuilds an error from a body made by [`ApiError::body`], by its
    /// `code`, so an actor's refusal travels through the Worker unchanged. A
    /// code this build does not know falls back on the status.
    pub fn from_body(status: u16, body: &Value) -> Option<Self> {
        // Read from the JSON directly: the wasm bundle carries no decoder for
        // `ErrorBody`, only its encoder.
        let err = body.get("error")?;
        let message = err.get("message")?.as_str()?.to_string();
        let code = err.get("code")?.as_str()?;
        let num = |k: &str| err.get(k).and_then(Value::as_u64);
        let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Some(match code {
            "bad_request" => ApiError::BadRequest(message),
            "malformed_json" => ApiError::MalformedJson(message),
            "unauthorized" => ApiError::Unauthorized(message),
            "forbidden" => ApiError::Forbidden(message),
            "not_found" => ApiError::NotFound(message.trim_end_matches(" not found").to_string()),
            "method_not_allowed" => ApiError::MethodNotAllowed { method: text("method"), path: text("path") },
            "already_exists" => ApiError::AlreadyExists(message.trim_end_matches(" already exists").to_string()),
            "superseded" => ApiError::Superseded(message),
            "conflict" => ApiError::InvalidTransition(message),
            "fenced" => ApiError::Fenced(message),
            "too_many_sockets" => ApiError::TooManySockets { max: num("max").unwrap_or(0) as u32 },
            "too_many_subscriptions" => ApiError::TooManySubscriptions { max: num("max").unwrap_or(0) as u32 },
            "too_many_followers" => ApiError::TooManyFollowers { max: num("max").unwrap_or(0) as u32 },
            "topic_full" => ApiError::TopicFull(message),
            "version_conflict" => ApiError::VersionConflict { expected: num("expected").unwrap_or(0) as u32, current: num("current").unwrap_or(0) as u32 },
            "payload_too_large" => ApiError::PayloadTooLarge { limit: num("limit").unwrap_or(0) as usize },
            "item_too_large" => ApiError::ItemTooLarge(message),
            "unsupported_media_type" => ApiError::UnsupportedMediaType(message),
            "invalid_field" => {
                let field = err.get("field").and_then(Value::as_str).unwrap_or("body");
                let message = message.strip_prefix(&format!("{field}: ")).unwrap_or(&message).to_string();
                ApiError::InvalidField { field: field.to_string(), message }
            }
            "rate_limited" => ApiError::RateLimited { retry_after_secs: num("retry_after").unwrap_or(1) },
            "internal" => ApiError::Internal(message),
            "unavailable" => ApiError::Unavailable(message),
            "circuit_open" => ApiError::CircuitOpen { retry_after_ms: num("retry_after_ms").unwrap_or(0) },
            "analyzer_disabled" => ApiError::AnalyzerDisabled,
            _ => match status {
                401 => ApiError::Unauthorized(message),
                403 => ApiError::Forbidden(message),
                404 => ApiError::NotFound(message),
                409 => ApiError::InvalidTransition(message),
                429 => ApiError::RateLimited { retry_after_secs: 1 },
                503 => ApiError::Unavailable(message),
                400..=499 => ApiError::BadRequest(message),
                _ => ApiError::Internal(message),
            },
        })
    }
}

/// What a client reads of an internal error: the detail (D1's or storage's
/// own text) stays in the log under this request id.
pub fn internal_message(request_id: &str) -> String {
    format!("{INTERNAL_PREFIX}{request_id})")
}

const INTERNAL_PREFIX: &str = "internal error (request id ";

/// The request id of a message made by [`internal_message`].
pub fn logged_request_id(message: &str) -> Option<&str> {
    message.strip_prefix(INTERNAL_PREFIX)?.strip_suffix(')').filter(|id| !id.is_empty())
}

impl ApiError {
    /// The error as a client may see it, and the line to log if any: an
    /// internal error becomes [`internal_message`] with the id `request_id`
    /// gives, and its detail is logged under that id. One whose message is
    /// already that crossed an actor hop: the actor logged its detail, so it
    /// is shown as it is and keeps the actor's id.
    pub fn for_client(&self, request_id: impl FnOnce() -> String) -> (Cow<'_, ApiError>, Option<String>) {
        match self {
            ApiError::Internal(detail) if logged_request_id(detail).is_none() => {
                let id = request_id();
                let log = format!("internal error, request id {id}: {detail}");
                (Cow::Owned(ApiError::Internal(internal_message(&id))), Some(log))
            }
            e => (Cow::Borrowed(e), None),
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
fn secs_ceil(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Hidden => ApiError::not_found("content"),
            Denied::ReadOnly => ApiError::Forbidden(d.to_string()),
        }
    }
}

/// A request body (or an internal call's) that does not parse. Stored state
/// that does not parse is not this: `store::storage_err` makes it internal.
impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::MalformedJson(format!("malformed JSON: {e}"))
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        ApiError::InvalidTransition(e.to_string())
    }
}

/// A publish of an old version: the run that tried it is superseded.
impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::Stale { current, .. } => ApiError::Superseded(superseded_reason(current)),
            e @ ContentError::TooManyVersions { .. } => ApiError::InvalidTransition(e.to_string()),
            e @ ContentError::TooLarge { .. } => ApiError::ItemTooLarge(e.to_string()),
        }
    }
}

/// An injected fault fails the call for now, as a real outage would.
impl From<crate::domain::faults::InjectedFault> for ApiError {
    fn from(e: crate::domain::faults::InjectedFault) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::domain::FieldError> for ApiError {
    fn from(e: crate::domain::FieldError) -> Self {
        ApiError::InvalidField { field: e.field, message: e.message }
    }
}

impl From<FenceError> for ApiError {
    fn from(e: FenceError) -> Self {
        ApiError::Fenced(e.to_string())
    }
}

impl From<FollowRefused> for ApiError {
    fn from(e: FollowRefused) -> Self {
        match e {
            FollowRefused::Full => ApiError::TopicFull(format!("this topic pushes to at most {MAX_FOLLOWERS} sessions; follow it on /api/topics/{{topic}}/ws")),
            FollowRefused::HolderCap { max } => ApiError::TooManyFollowers { max },
            FollowRefused::AnonymousShare => ApiError::TopicFull(format!(
                "anonymous sessions follow this topic at most {MAX_ANONYMOUS_FOLLOWERS} times in all; sign in, or follow it on /api/topics/{{topic}}/ws"
            )),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::TooMany => ApiError::TooManySubscriptions { max: MAX_SUBSCRIPTIONS as u32 },
        }
    }
}

/// A session token that is present but bad is a bad credential: 401.
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl From<JwtError> for ApiError {
    fn from(e: JwtError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

/// A runtime failure (storage, D1, a binding, a fetch): never the caller's fault.
#[cfg(target_arch = "wasm32")]
impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// How a stage treats another actor's refusal: a refusal of the input itself
/// is terminal (a retry sends the same), a rate limit or an open circuit says
/// when to try again, and anything else is worth another try.
impl From<ApiError> for StageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(_)
            | ApiError::MalformedJson(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::ItemTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::InvalidField { .. } => StageError::terminal(e.to_string()),
            ApiError::RateLimited { retry_after_secs } => StageError::rate_limited(retry_after_secs.saturating_mul(1000), e.to_string()),
            ApiError::CircuitOpen { retry_after_ms } => StageError::rate_limited(retry_after_ms, e.to_string()),
            e => StageError::transient(e.to_string()),
        }
    }
}

impl ApiError {
    /// A provider's failure (an embedder, a vector index) as the caller's
    /// error when a request waits on it: a rate limit says when to come
    /// back (`429` with `Retry-After`), anything else is `503`.
    pub fn from_provider(e: StageError) -> ApiError {
        match e.class {
            ErrorClass::RateLimited { retry_after_ms } => ApiError::RateLimited { retry_after_secs: retry_after_ms.div_ceil(1000).max(1) },
            _ => ApiError::Unavailable(e.message),
        }
    }
}

/// An item the batch does not have is not found (`item 3 of a batch of 2`).
impl From<crate::domain::batch::BatchError> for ApiError {
    fn from(e: crate::domain::batch::BatchError) -> Self {
        match e {
            crate::domain::batch::BatchError::NoSuchItem { index, total } => ApiError::not_found(format!("item {index} of a batch of {total}")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use crate::domain::retry::{decide, RetryDecision, RetryPolicy, RetryTuning};
    use crate::protocol::{ErrorClass, RunStatus, Stage};

    /// One of each variant; [`ordinal`] makes the compiler ask for a new one.
    fn every_variant() -> Vec<ApiError> {
        vec![
            ApiError::BadRequest("id must be a UUID".into()),
            ApiError::MalformedJson("malformed JSON: eof".into()),
            ApiError::Unauthorized("token has expired".into()),
            ApiError::Forbidden("read only".into()),
            ApiError::not_found("run"),
            ApiError::MethodNotAllowed { method: "PATCH".into(), path: "/api/content".into() },
            ApiError::AlreadyExists("content".into()),
            ApiError::Superseded(superseded_reason(2)),
            ApiError::InvalidTransition("run is Completed, which does not allow this".into()),
            ApiError::Fenced("content deleted".into()),
            ApiError::TooManySockets { max: 8 },
            ApiError::TooManySubscriptions { max: 16 },
            ApiError::VersionConflict { expected: 1, current: 2 },
            ApiError::PayloadTooLarge { limit: 1 << 20 },
            ApiError::UnsupportedMediaType("expected content type application/json".into()),
            ApiError::invalid("tags", "too many"),
            ApiError::RateLimited { retry_after_secs: 7 },
            ApiError::Internal("storage: disk I/O error".into()),
            ApiError::Unavailable("vector index: shard busy".into()),
            ApiError::CircuitOpen { retry_after_ms: 2_500 },
            ApiError::AnalyzerDisabled,
            ApiError::TooManyFollowers { max: 16 },
            ApiError::ItemTooLarge("with this change the item would take 2000000 bytes stored".into()),
            ApiError::TopicFull("this topic pushes to at most 1000 sessions".into()),
        ]
    }

    /// No wildcard: a new variant does not compile until it has a number,
    /// and `every_variant_is_listed` then fails until it is listed above.
    fn ordinal(e: &ApiError) -> usize {
        match e {
            ApiError::BadRequest(_) => 0,
            ApiError::MalformedJson(_) => 1,
            ApiError::Unauthorized(_) => 2,
            ApiError::Forbidden(_) => 3,
            ApiError::NotFound(_) => 4,
            ApiError::MethodNotAllowed { .. } => 5,
            ApiError::AlreadyExists(_) => 6,
            ApiError::Superseded(_) => 7,
            ApiError::InvalidTransition(_) => 8,
            ApiError::Fenced(_) => 9,
            ApiError::TooManySockets { .. } => 10,
            ApiError::TooManySubscriptions { .. } => 11,
            ApiError::VersionConflict { .. } => 12,
            ApiError::PayloadTooLarge { .. } => 13,
            ApiError::UnsupportedMediaType(_) => 14,
            ApiError::InvalidField { .. } => 15,
            ApiError::RateLimited { .. } => 16,
            ApiError::Internal(_) => 17,
            ApiError::Unavailable(_) => 18,
            ApiError::CircuitOpen { .. } => 19,
            ApiError::AnalyzerDisabled => 20,
            ApiError::TooManyFollowers { .. } => 21,
            ApiError::ItemTooLarge(_) => 22,
            ApiError::TopicFull(_) => 23,
        }
    }

    /// What an actor's reply carries: the status and the body as JSON text.
    fn hop(e: &ApiError) -> Option<ApiError> {
        let text = serde_json::to_string(&e.body()).unwrap();
        ApiError::from_body(e.status(), &serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn every_variant_is_listed() {
        let seen: Vec<usize> = every_variant().iter().map(ordinal).collect();
        assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>());
        assert_eq!(seen.len(), 24);
    }

    #[test]
    fn every_variant_survives_an_actor_hop() {
        for e in every_variant() {
            assert_eq!(hop(&e), Some(e.clone()), "{}", e.body());
        }
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut codes: Vec<&str> = every_variant().iter().map(ApiError::code).collect();
        assert!(codes.iter().all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{codes:?}");
        codes.sort();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "{codes:?}");
    }

    #[test]
    fn codes_clients_match_on_are_kept() {
        // tests/e2e, web/live.js and docs/protocol.md read these exactly.
        assert_eq!((ApiError::InvalidTransition(String::new()).status(), ApiError::InvalidTransition(String::new()).code()), (409, "conflict"));
        assert_eq!(ApiError::VersionConflict { expected: 1, current: 2 }.status(), 412);
        assert_eq!(ApiError::VersionConflict { expected: 1, current: 2 }.code(), "version_conflict");
        assert_eq!(ApiError::TooManySockets { max: 8 }.code(), "too_many_sockets");
        assert_eq!(ApiError::from(SubscribeError::TooMany).frame_code(), "too_many_subscriptions");
        assert_eq!(ApiError::invalid("topic", "bad").frame_code(), "unknown_topic");
        assert_eq!(ApiError::not_found("topic run:x").frame_code(), "unknown_topic");
        assert_eq!(ApiError::RateLimited { retry_after_secs: 1 }.frame_code(), "rate_limited");
        let field = ApiError::from(crate::domain::FieldError::new("title", "must be 1 to 300 characters"));
        assert_eq!((field.status(), field.code(), field.to_string().as_str()), (422, "invalid_field", "title: must be 1 to 300 characters"));
        // Refused for good on a session socket: not a code the client asks again after.
        for refused in [FollowRefused::Full, FollowRefused::AnonymousShare] {
            let e = ApiError::from(refused);
            assert_eq!((e.status(), e.frame_code()), (409, "topic_full"), "{e}");
        }
    }

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
    fn an_open_circuit_is_retryable_unavailability_not_a_conflict() {
        let e = ApiError::CircuitOpen { retry_after_ms: 2_500 };
        assert_eq!(e.status(), 503);
        assert_eq!(e.extra_headers(), vec![("Retry-After", "3".to_string())]);
        assert_eq!(e.body()["error"]["retry_after"], 3);
        let disabled = ApiError::AnalyzerDisabled;
        assert_eq!(disabled.status(), 503);
        assert_eq!(ApiError::CircuitOpen { retry_after_ms: 0 }.extra_headers(), vec![("Retry-After", "1".to_string())]);
    }

    /// The analyze stage's view of the analyzer actor's refusals, after the
    /// hop: an open circuit waits for the cool-down and a missing analyzer
    /// backs off; neither fails the stage at once nor cancels the run.
    #[test]
    fn the_analyze_stage_retries_an_open_circuit() {
        let policy = RetryPolicy::for_stage(Stage::Analyze, RetryTuning::default());
        let open = StageError::from(hop(&ApiError::CircuitOpen { retry_after_ms: 2_500 }).unwrap());
        assert_eq!(open.class, ErrorClass::RateLimited { retry_after_ms: 2_500 });
        match decide(&policy, 1, open.class, 10_000, 7) {
            RetryDecision::RetryAt { at, .. } => assert_eq!(at, 12_500),
            d => panic!("an open circuit gave up: {d:?}"),
        }
        let disabled = StageError::from(hop(&ApiError::AnalyzerDisabled).unwrap());
        assert_eq!(disabled.class, ErrorClass::Transient);
        assert!(matches!(decide(&policy, 1, disabled.class, 10_000, 7), RetryDecision::RetryAt { .. }));
        // A refused document is still terminal.
        let refused = StageError::from(hop(&ApiError::invalid("text", "too long")).unwrap());
        assert_eq!(refused.class, ErrorClass::Terminal);
    }

    #[test]
    fn a_rate_limit_keeps_its_wait_across_the_hop() {
        let e = StageError::from(hop(&ApiError::RateLimited { retry_after_secs: 4 }).unwrap());
        assert_eq!(e.class, ErrorClass::RateLimited { retry_after_ms: 4_000 });
    }

    #[test]
    fn only_a_superseded_refusal_reads_as_superseded() {
        let stale = ApiError::from(ContentError::Stale { got: 1, current: 3 });
        assert_eq!(hop(&stale), Some(ApiError::Superseded("superseded by version 3".into())));
        let transition = ApiError::from(TransitionError::InvalidState(RunStatus::Completed));
        assert!(matches!(hop(&transition), Some(ApiError::InvalidTransition(_))));
        assert!(matches!(hop(&ApiError::from(FenceError::Deleted)), Some(ApiError::Fenced(_))));
        for e in [ApiError::CircuitOpen { retry_after_ms: 1 }, ApiError::AnalyzerDisabled, ApiError::AlreadyExists("content".into())] {
            assert!(!matches!(hop(&e), Some(ApiError::Superseded(_))), "{e:?}");
        }
    }

    #[test]
    fn an_unknown_code_falls_back_on_the_status() {
        let body = json!({ "error": { "code": "from_a_newer_build", "message": "m" } });
        assert_eq!(ApiError::from_body(404, &body), Some(ApiError::NotFound("m".into())));
        assert_eq!(ApiError::from_body(409, &body), Some(ApiError::InvalidTransition("m".into())));
        assert_eq!(ApiError::from_body(418, &body), Some(ApiError::BadRequest("m".into())));
        assert_eq!(ApiError::from_body(502, &body), Some(ApiError::Internal("m".into())));
        assert_eq!(ApiError::from_body(500, &json!({ "oops": 1 })), None);
    }

    #[test]
    fn an_internal_error_shows_the_client_an_id_and_logs_its_detail() {
        let e = ApiError::Internal("D1_ERROR: no such table: content: SQLITE_ERROR".into());
        let (shown, log) = e.for_client(|| "8f1c2a3b4d5e6f70-AMS".into());
        let body = shown.body();
        // The contract's shape, nothing more.
        assert_eq!(body, json!({ "error": { "code": "internal", "message": "internal error (request id 8f1c2a3b4d5e6f70-AMS)" } }));
        assert_eq!(shown.status(), 500);
        let log = log.expect("the detail is logged");
        assert!(log.contains("8f1c2a3b4d5e6f70-AMS") && log.contains("no such table"), "{log}");
        assert!(!body.to_string().contains("SQLITE"), "{body}");
    }

    /// An actor renders its internal error with its own id; the Worker that
    /// rebuilds it after the hop shows that one, logs nothing more and never
    /// asks for an id of its own.
    #[test]
    fn an_internal_error_keeps_the_actors_id_across_a_hop() {
        let failed = ApiError::Internal("storage: disk I/O error".into());
        let (in_actor, log) = failed.for_client(|| "actor-id-1".into());
        assert!(log.is_some());
        let rebuilt = hop(&in_actor).unwrap();
        let (shown, log) = rebuilt.for_client(|| panic!("a second id was made"));
        assert_eq!(shown.into_owned(), ApiError::Internal(internal_message("actor-id-1")));
        assert_eq!(log, None);
        assert_eq!(logged_request_id(&internal_message("actor-id-1")), Some("actor-id-1"));
        assert_eq!(logged_request_id("internal error (request id )"), None);
    }

    #[test]
    fn only_internal_errors_are_rewritten_for_clients() {
        for e in every_variant().into_iter().filter(|e| !matches!(e, ApiError::Internal(_))) {
            let (shown, log) = e.for_client(|| panic!("{e:?} asked for an id"));
            assert_eq!((shown.into_owned(), log), (e.clone(), None));
        }
    }

    #[test]
    fn bad_credentials_are_401() {
        assert_eq!(ApiError::from(TokenError::Expired).status(), 401);
        assert_eq!(ApiError::from(JwtError::BadSignature).status(), 401);
    }

    #[test]
    fn every_client_error_is_4xx() {
        let errs = [
            ApiError::BadRequest(String::new()),
            ApiError::Unauthorized(String::new()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType("expected content type application/json".into()),
            ApiError::RateLimited { retry_after_secs: 3 },
        ];
        for e in errs {
            assert!((400..500).contains(&e.status()), "{e:?}");
        }
    }
}
