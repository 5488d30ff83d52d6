//! Request parsing shared by handlers: JSON bodies with size and type checks,
//! UUID path ids, and query strings. Every failure is a precise 4xx.

use serde::de::DeserializeOwned;
use uuid::Uuid;
use worker::{Env, Request};

use crate::error::{ApiError, ApiResult};
use crate::protocol::MAX_QUERY_CHARS;
use crate::runtime::config;

/// Whether a content type's essence (before any `;` parameter) is JSON:
/// `application/json` or `application/<x>+json`. `text/plain;+json` is not.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|sub| sub.ends_with("+json") && !sub.contains('/'))
}

/// Reads a JSON body: 415 without a JSON content type, 413 over `limit`,
/// 400 for malformed JSON, 422 for JSON of the wrong shape.
pub async fn json_body<T: DeserializeOwned>(req: &mut Request, limit: usize) -> ApiResult<T> {
    let ct = req.headers().get("content-type").ok().flatten().unwrap_or_default();
    if !is_json(&ct) {
        return Err(ApiError::UnsupportedMediaType("expected content type application/json".into()));
    }
    let bytes = read_capped(req, limit).await?;
    parse_json(&bytes)
}

/// Past the cap, up to this much more is read and discarded before the `413`
/// goes out: answering while the client is still sending leaves the
/// connection with unread body bytes, and wrangler dev's proxy then fails the
/// next request on that connection (a 503). A longer body is cut off.
const DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The body, read as a stream with a running count: `413` once it passes
/// `limit`, whether or not `Content-Length` was sent. Nothing past the cap is
/// kept: the rest is read and dropped (at most [`DRAIN_MAX_BYTES`]).
pub async fn read_capped(req: &mut Request, limit: usize) -> ApiResult<Vec<u8>> {
    use futures::StreamExt;
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // No body at all is an empty one.
    let Ok(mut stream) = req.stream() else { return Ok(Vec::new()) };
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            let mut dropped = chunk.len();
            while dropped < DRAIN_MAX_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => dropped += more.len(),
                    _ => break,
                }
            }
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.is_empty() {
        return Err(ApiError::MalformedJson("malformed JSON: empty body".into()));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::MalformedJson("malformed JSON: body is not valid UTF-8".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("body", e.to_string()),
        _ => ApiError::MalformedJson(format!("malformed JSON: {e}")),
    })
}

pub fn uuid_param(raw: &str, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest(format!("{what} id must be a UUID")))
}

/// Decoded query pairs; repeated keys keep the last value.
pub fn query(req: &Request) -> ApiResult<Vec<(String, String)>> {
    let url = req.url().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

/// A query parameter's value. An empty one (`mode=`) is absent, as the
/// OpenAPI document declares (`allowEmptyValue`): it takes the default.
pub fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

impl super::routes::IntParam {
    /// The parameter from the query, within its declared bounds, or its
    /// default when absent.
    pub fn read(&self, q: &[(String, String)]) -> ApiResult<u32> {
        Ok(self.read_opt(q)?.or(self.default).unwrap_or(self.min))
    }

    /// The parameter from the query, within its declared bounds, if given.
    pub fn read_opt(&self, q: &[(String, String)]) -> ApiResult<Option<u32>> {
        let (key, min, max) = (self.name, self.min, self.max);
        match param(q, key) {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::invalid(key, format!("must be an integer from {min} to {max}"))),
            },
        }
    }
}

/// The trimmed query text `field`, or a 422 saying what is wrong with it.
pub fn query_text<'a>(raw: &'a str, field: &str) -> ApiResult<&'a str> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(field, format!("must be at most {MAX_QUERY_CHARS} characters")));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(text)
}

/// A category filter, normalized, or a 422 (the rule submissions follow).
pub fn category_filter(env: &Env, raw: Option<&str>) -> ApiResult<Option<String>> {
    Ok(crate::domain::content::category(raw, &config(env).limits)?)
}
