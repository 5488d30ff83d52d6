//! How a Cloudflare provider failure (Workers AI, Vectorize) is classified for
//! the retry engine. JS errors cross the boundary as text, so the class is
//! read from the message: status codes, Workers AI internal codes and the
//! services' documented wording.

use crate::domain::pipeline::StageError;

/// How long a rate-limited call waits before the retry engine tries again.
pub const RATE_LIMIT_RETRY_MS: u64 = 2000;

/// Longest error text kept in a `StageError` (it lands in the run journal).
const ERROR_TEXT_MAX_CHARS: usize = 500;

/// Classifies a provider error message.
///
/// * Workers AI's used-up daily free allocation (code 3036, sent as HTTP 429)
///   → `Terminal`: it resets the next day, long after the retry budget
///   (minutes) is spent, so retrying only adds calls. The text model falls
///   back to the local extractor on it; the embedder fails the run with it;
/// * rate limits, HTTP 429, "too many requests", Workers AI capacity errors
///   (code 3040, "Out of capacity") → `RateLimited(2000 ms)`;
/// * local-only bindings ("needs to be run remotely"), missing or broken
///   bindings, network failures, timeouts and HTTP 5xx → `Transient`;
/// * malformed input (HTTP 4xx, schema and validation failures, wrong
///   dimensions, Vectorize `code = 40xxx` request errors, an unknown or
///   retired model (5007 "No such model", 3042), "JSON Mode couldn't be met")
///   → `Terminal`;
/// * anything unrecognized → `Transient`: retrying an unknown failure is
///   bounded by the retry policy, while failing it for good is not undoable.
pub fn classify_error(context: &str, message: &str) -> StageError {
    let text = truncate_chars(message.trim(), ERROR_TEXT_MAX_CHARS);
    let full = if context.is_empty() { text.to_string() } else { format!("{context}: {text}") };
    let lower = message.to_lowercase();
    let tokens: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).collect();
    let status = |range: std::ops::RangeInclusive<u32>| {
        tokens.iter().any(|t| t.len() == 3 && t.parse::<u32>().is_ok_and(|n| range.contains(&n)))
    };
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));

    // 3036: the daily free allocation is spent; 3023: the account may not
    // use the service ("Service unavailable for account", a 403), which a
    // retry cannot change though its words read as an outage.
    if has(&["daily free allocation", "unavailable for account"]) || tokens.contains(&"3036") || tokens.contains(&"3023") {
        return StageError::terminal(full);
    }
    // A throttle's words (or Vectorize's code for it) make it one whatever
    // else the text names: Vectorize sends its throttle as a request error,
    // "VECTOR_UPSERT_ERROR (code = 40041): Too Many Requests". A bare 429 is
    // only read as a status after the request-error check below: in "got
    // 429 dimensions" or an id "c:429:3" it is not one.
    let rate_limit_words = ["rate limit", "ratelimit", "rate-limit", "rate_limit", "too many requests"];
    if has(&rate_limit_words) || tokens.contains(&"40041") {
        return StageError::rate_limited(RATE_LIMIT_RETRY_MS, full);
    }
    // A Vectorize request error (`code = 40xxx`) or a dimension mismatch is
    // the request's fault whatever numbers it names: "got 512 dimensions" or
    // an id ending ":512" is not an HTTP 5xx.
    let vectorize_request_error =
        tokens.iter().any(|t| t.len() == 5 && t.starts_with("40") && t.parse::<u32>().is_ok());
    if vectorize_request_error || has(&["dimension"]) {
        return StageError::terminal(full);
    }
    if has(&["capacity", "no more data centers"]) || tokens.iter().any(|t| *t == "429" || *t == "3040") {
        return StageError::rate_limited(RATE_LIMIT_RETRY_MS, full);
    }
    if has(&[
        "needs to be run remotely",
        "run remotely",
        "binding",
        "network",
        "timed out",
        "timeout",
        "connection",
        "internal error",
        "internal server error",
        "service unavailable",
        "temporarily unavailable",
        "overloaded",
    ]) || status(500..=599)
    {
        return StageError::transient(full);
    }
    let client_status = tokens
        .iter()
        .any(|t| t.len() == 3 && t.parse::<u32>().is_ok_and(|n| (400..=499).contains(&n) && n != 408 && n != 429));
    if client_status
        || has(&[
            "invalid",
            "malformed",
            "validation",
            "required propert",
            "bad request",
            "must be",
            "must not",
            "too long",
            "too large",
            "unsupported",
            "not allowed",
            "no such model",
            // A prompt past the model's context: the same prompt fails again.
            "context length",
            "context window",
            "couldn't be met",
            "could not be met",
        ])
    {
        return StageError::terminal(full);
    }
    StageError::transient(full)
}

/// The first `max` characters of `s`, cut on a char boundary.
/// How long the analyze stage waits after the analyzer answered 429.
pub const ANALYZER_RATE_LIMIT_RETRY_MS: u64 = 1000;

/// The analyzer's non-2xx answer, the same over `ANALYZER_URL` and inside
/// the container: 429 waits, another 4xx refuses the document for good (its
/// text cut to what the journal keeps), anything else is worth another try.
pub fn analyzer_refusal(status: u16, text: &str) -> StageError {
    match status {
        429 => StageError::rate_limited(ANALYZER_RATE_LIMIT_RETRY_MS, "analyzer is rate limiting"),
        400..=499 => StageError::terminal(format!(
            "analyzer refused the document ({status}): {}",
            truncate_chars(text.trim(), ERROR_TEXT_MAX_CHARS)
        )),
        _ => StageError::transient(format!("analyzer answered {status}")),
    }
}

pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn analyzer_answers_have_one_classification() {
        use crate::protocol::ErrorClass;
        assert_eq!(super::analyzer_refusal(429, "").class, ErrorClass::RateLimited { retry_after_ms: super::ANALYZER_RATE_LIMIT_RETRY_MS });
        let refused = super::analyzer_refusal(413, &"x".repeat(10_000));
        assert_eq!(refused.class, ErrorClass::Terminal);
        assert!(refused.message.len() < 600, "{}", refused.message.len());
        assert_eq!(super::analyzer_refusal(500, "boom").class, ErrorClass::Transient);
        assert_eq!(super::analyzer_refusal(503, "").class, ErrorClass::Transient);
    }

    use super::*;
    use crate::protocol::ErrorClass;

    fn class(msg: &str) -> ErrorClass {
        classify_error("", msg).class
    }

    fn assert_all(want: ErrorClass, messages: &[&str]) {
        for m in messages {
            assert_eq!(class(m), want, "{m}");
        }
    }

    #[test]
    fn rate_limits_and_capacity_are_rate_limited() {
        assert_all(
            ErrorClass::RateLimited { retry_after_ms: RATE_LIMIT_RETRY_MS },
            &[
                "AiError: 3040: Capacity temporarily exceeded, please try again.",
                "Error: rate limited",
                "HTTP 429 Too Many Requests",
                "You have exceeded the rate limit",
                "too many requests",
                "status=429",
                "AiError: 3040: No more data centers to forward the request to",
                "InferenceUpstreamError: 3040: Out of capacity",
                // Vectorize's throttle is a `code = 40xxx` request error by its form.
                "Error: VECTOR_UPSERT_ERROR (code = 40041): Too Many Requests",
                "VECTOR_GET_ERROR (code = 40041): Too Many Requests",
                "VECTOR_QUERY_ERROR (code = 40041): Too Many Requests",
                "VECTOR_DELETE_ERROR (code = 40041): Too Many Requests",
            ],
        );
    }

    #[test]
    fn remote_binding_network_and_5xx_are_transient() {
        assert_all(
            ErrorClass::Transient,
            &[
                "Error: AI bindings always access remote resources, and so this needs to be run remotely",
                "Binding `AI` is undefined.",
                "Network connection lost.",
                "upstream returned 502",
                "HTTP 503 Service Unavailable",
                "InferenceUpstreamError: 500 internal server error",
                "the operation timed out",
                "something entirely new happened",
            ],
        );
    }

    #[test]
    fn malformed_input_is_terminal() {
        assert_all(
            ErrorClass::Terminal,
            &[
                "AiError: 5006: Error: required properties at '/' are 'text'",
                "AiError: 3023: Service unavailable for account",
                "400 Bad Request",
                "invalid input: text must be a string",
                "VECTOR_UPSERT_ERROR (code = 40006): dimensions mismatch",
                "HTTP 422",
                "Unsupported model",
                "AiError: 5007: No such model @cf/meta/llama-3.1-8b-instruct or task",
                "AiError: 3042: The model name is invalid",
                "AiError: JSON Mode couldn't be met",
                "VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100",
                "VECTOR_QUERY_ERROR (code = 40025): max top K is 50, but got 60",
                // Numbers from 500 to 599 here are an id's chunk and a size, not a status.
                "VECTOR_UPSERT_ERROR (code = 40012): invalid vector for id=\"c:2:512\", expected 768 dimensions, and got 512 dimensions",
                "expected 768 dimensions, and got 512 dimensions",
                // A 429 inside an id or a size is not a throttle.
                "VECTOR_UPSERT_ERROR (code = 40012): invalid vector for id=\"c:429:3\", expected 768 dimensions",
                "expected 768 dimensions, and got 429 dimensions",
                "AiError: This model's maximum context length is 24000 tokens. However, you requested 26000 tokens",
            ],
        );
    }

    #[test]
    fn a_used_up_daily_allocation_is_terminal_not_rate_limited() {
        // Sent as HTTP 429, but it only resets the next day.
        assert_all(
            ErrorClass::Terminal,
            &[
                "AiError: 3036: You have used up your daily free allocation of 10,000 neurons. Please upgrade to \
             Cloudflare's Workers Paid plan if you would like to continue usage.",
                "429: 3036 account limited",
            ],
        );
    }

    #[test]
    fn numbers_inside_longer_tokens_do_not_count_as_status_codes() {
        // 5006 is not a 5xx, 14290 is not a 429.
        assert_eq!(class("code 5006 something odd"), ErrorClass::Transient);
        assert_eq!(class("id 14290 went away"), ErrorClass::Transient);
        assert_eq!(class("request 408 timeout"), ErrorClass::Transient);
    }

    #[test]
    fn error_text_keeps_context_and_is_bounded() {
        let e = classify_error("workers ai", &"x".repeat(2000));
        assert!(e.message.starts_with("workers ai: x"));
        assert_eq!(e.message.chars().count(), "workers ai: ".len() + ERROR_TEXT_MAX_CHARS);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
        assert_eq!(truncate_chars("", 3), "");
    }
}
