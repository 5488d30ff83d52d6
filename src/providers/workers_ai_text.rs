//! The text model: prompts, JSON schemas, and the field-by-field validation
//! of its answers, with the local extractor as the fallback for any field the
//! model got wrong.

use serde::Serialize;
use serde_json::Value;

use super::provider_errors::truncate_chars;
use super::types::Extraction;
use super::OnRateLimit;
use crate::domain::pipeline::StageError;
use crate::protocol::{Entity, ErrorClass, Keyword, Sentiment};

/// The text model, in JSON mode (`response_format: {type: "json_schema",
/// json_schema: <schema>}`). Sources (cloudflare-docs):
/// * `changelog/workers-ai/2026-05-08-planned-model-deprecations.mdx`: the
///   old `@cf/meta/llama-3.1-8b-instruct` was deprecated on 2026-05-30 with
///   no alias; "The `-fast` … variants … remain active", this one included;
/// * `workers-ai/features/json-mode.mdx`: listed under "Supported Models" in
///   every version of the page;
/// * `workers-ai-models/llama-3.3-70b-instruct-fp8-fast.json`: input
///   `messages`, `response_format` ("JSON Mode"), `max_tokens` (default 256),
///   context window 24,000 tokens; output `{response: string, usage,
///   tool_calls}`, where JSON mode puts the object itself in `response` (the
///   json-mode example), or `{request_id}` for queued requests (not used).
pub const TEXT_MODEL: &str = "@cf/meta/llama-3.3-70b-instruct-fp8-fast";
/// A text-model call that has not answered by then is abandoned for the
/// local fallback, well inside the stage's 30 s attempt budget.
pub const TEXT_MODEL_TIMEOUT_MS: u64 = 20_000;
/// Answer budgets. A full extraction (20 keywords, 50 entities, sentiment)
/// as pretty-printed JSON estimates at about 2,400 tokens (see the test,
/// with the conservative [`super::token_estimate`]);
/// a budget too small cuts the JSON short and every field falls back.
pub const SUMMARY_MAX_TOKENS: u32 = 768;
pub const EXTRACTION_MAX_TOKENS: u32 = 3072;
/// Input sent to the text model is cut to this many characters (about 3k
/// tokens), leaving room for the prompt and the answer in the context window.
pub const TEXT_INPUT_MAX_CHARS: usize = 12_000;
pub const SUMMARY_MAX_CHARS: usize = 1000;
pub const KEYWORDS_MAX: usize = 20;
pub const ENTITIES_MAX: usize = 50;
pub const TERM_MAX_CHARS: usize = 100;
pub const ENTITY_TEXT_MAX_CHARS: usize = 200;
pub const ENTITY_KINDS: [&str; 4] = ["person", "organization", "place", "other"];
pub const SENTIMENT_LABELS: [&str; 3] = ["positive", "negative", "neutral"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A JSON Schema. It is a `Value` (objects are maps), so it must cross
    /// into JS with the json-compatible serializer.
    pub json_schema: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextRequest {
    pub messages: Vec<ChatMessage>,
    pub response_format: ResponseFormat,
    pub max_tokens: u32,
    pub temperature: f32,
}

const SYSTEM_PROMPT: &str = "You are a precise text analysis service. Reply with exactly one JSON object that \
matches the given JSON Schema: no prose, no markdown, no code fences. Use only facts stated in the text.";

fn text_request(task: &str, schema: Value, text: &str, max_tokens: u32) -> TextRequest {
    let text = truncate_chars(text.trim(), TEXT_INPUT_MAX_CHARS);
    TextRequest {
        messages: vec![
            ChatMessage { role: "system", content: SYSTEM_PROMPT.to_string() },
            ChatMessage {
                role: "user",
                content: format!("{task}\n\nJSON Schema:\n{schema}\n\nText:\n<<<\n{text}\n>>>"),
            },
        ],
        response_format: ResponseFormat { kind: "json_schema", json_schema: schema },
        max_tokens,
        temperature: 0.0,
    }
}

// The schemas are JSON text rather than `json!` literals: parsing reuses
// serde_json's parser, where a `json!` tree expands to a lot of Worker code.
// Their bounds are the constants above (checked by the tests).
const SUMMARY_SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "summary": { "type": "string", "minLength": 1, "maxLength": 1000 } },
  "required": ["summary"]
}"#;

const EXTRACTION_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "keywords": {
      "type": "array",
      "maxItems": 20,
      "items": {
        "type": "object",
        "properties": {
          "term": { "type": "string" },
          "score": { "type": "number", "minimum": 0, "maximum": 1 }
        },
        "required": ["term", "score"]
      }
    },
    "entities": {
      "type": "array",
      "maxItems": 50,
      "items": {
        "type": "object",
        "properties": {
          "text": { "type": "string" },
          "kind": { "type": "string", "enum": ["person", "organization", "place", "other"] },
          "count": { "type": "integer", "minimum": 1 }
        },
        "required": ["text", "kind", "count"]
      }
    },
    "sentiment": {
      "type": "object",
      "properties": {
        "score": { "type": "number", "minimum": -1, "maximum": 1 },
        "label": { "type": "string", "enum": ["positive", "negative", "neutral"] }
      },
      "required": ["score", "label"]
    }
  },
  "required": ["keywords", "entities", "sentiment"]
}"#;

pub fn summary_schema() -> Value {
    serde_json::from_str(SUMMARY_SCHEMA).unwrap_or_default()
}

pub fn extraction_schema() -> Value {
    serde_json::from_str(EXTRACTION_SCHEMA).unwrap_or_default()
}

pub fn summary_request(text: &str) -> TextRequest {
    text_request(
        &format!(
            "Summarize the text in at most three sentences and at most {SUMMARY_MAX_CHARS} characters, \
             as {{\"summary\": \"...\"}}."
        ),
        summary_schema(),
        text,
        SUMMARY_MAX_TOKENS,
    )
}

pub fn extraction_request(text: &str) -> TextRequest {
    text_request(
        &format!(
            "Extract from the text: up to {KEYWORDS_MAX} keywords (term, relevance score from 0 to 1, most \
             relevant first); the named entities (text, kind one of person, organization, place or other, and \
             the number of mentions); and the overall sentiment (score from -1 to 1, label positive, negative \
             or neutral)."
        ),
        extraction_schema(),
        text,
        EXTRACTION_MAX_TOKENS,
    )
}

/// The JSON object a text model answered with, wherever the response shape
/// put it: `{response: {...}}` (JSON mode), `{response: "<json>"}` (the
/// documented string type), an OpenAI-style `choices[0].message.content`,
/// or a REST-style `{result: ...}` envelope. `None` if there is no object
/// (a queued `{request_id}` answer included).
pub fn model_json(output: &Value) -> Option<Value> {
    match output {
        Value::String(s) => parse_json_lenient(s),
        Value::Object(o) => {
            if let Some(r) = o.get("response") {
                return match r {
                    Value::Object(_) => Some(r.clone()),
                    Value::String(s) => parse_json_lenient(s),
                    _ => None,
                };
            }
            if let Some(c) = output.pointer("/choices/0/message/content") {
                return model_json(c);
            }
            if let Some(r) = o.get("result") {
                return model_json(r);
            }
            None
        }
        _ => None,
    }
}

/// Parses a JSON object out of model text: tolerates surrounding whitespace,
/// a markdown code fence, or prose before and after the object.
pub fn parse_json_lenient(s: &str) -> Option<Value> {
    let t = s.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    let (start, end) = (t.find('{')?, t.rfind('}')?);
    if end <= start {
        return None;
    }
    match serde_json::from_str::<Value>(&t[start..=end]) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// `summary`: a non-empty string of at most [`SUMMARY_MAX_CHARS`] characters
/// (after trimming). Anything else is invalid.
pub fn validate_summary(v: &Value) -> Option<String> {
    let s = v.get("summary")?.as_str()?.trim();
    (!s.is_empty() && s.chars().count() <= SUMMARY_MAX_CHARS).then(|| s.to_string())
}

fn non_empty_str(v: &Value, key: &str, max_chars: usize) -> Option<String> {
    let s = v.get(key)?.as_str()?.trim();
    (!s.is_empty() && s.chars().count() <= max_chars).then(|| s.to_string())
}

fn number_in(v: &Value, key: &str, lo: f64, hi: f64) -> Option<f32> {
    let x = v.get(key)?.as_f64()?;
    (x.is_finite() && (lo..=hi).contains(&x)).then_some(x as f32)
}

/// `keywords`: a non-empty array of at most [`KEYWORDS_MAX`] `{term, score}`,
/// each term a non-empty string, each score in [0, 1]. One bad item makes
/// the whole field invalid; an empty list counts as "the model found
/// nothing", so the local extractor gets its chance.
pub fn validate_keywords(v: &Value) -> Option<Vec<Keyword>> {
    valid_list(v, "keywords", KEYWORDS_MAX, |k| {
        Some(Keyword { term: non_empty_str(k, "term", TERM_MAX_CHARS)?, score: number_in(k, "score", 0.0, 1.0)? })
    })
}

/// `v[key]` as a non-empty array of at most `max` items, each valid.
fn valid_list<T>(v: &Value, key: &str, max: usize, item: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    let items = v.get(key)?.as_array()?;
    if items.is_empty() || items.len() > max {
        return None;
    }
    items.iter().map(item).collect()
}

/// `entities`: a non-empty array of at most [`ENTITIES_MAX`] `{text, kind,
/// count}`, kind one of [`ENTITY_KINDS`] (case-insensitive), count an integer
/// ≥ 1 (a missing count means 1). Same all-or-nothing rule as keywords.
pub fn validate_entities(v: &Value) -> Option<Vec<Entity>> {
    valid_list(v, "entities", ENTITIES_MAX, |e| {
        let text = non_empty_str(e, "text", ENTITY_TEXT_MAX_CHARS)?;
        let kind = e.get("kind")?.as_str()?.trim().to_lowercase();
        if !ENTITY_KINDS.contains(&kind.as_str()) {
            return None;
        }
        let count = match e.get("count") {
            None | Some(Value::Null) => 1,
            Some(c) => {
                let n =
                    c.as_u64().or_else(|| c.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))?;
                u32::try_from(n).ok().filter(|n| *n >= 1)?
            }
        };
        Some(Entity { text, kind, count })
    })
}

/// `sentiment`: `{score in [-1, 1], label in positive|negative|neutral}`.
pub fn validate_sentiment(v: &Value) -> Option<Sentiment> {
    let s = v.get("sentiment")?;
    let score = number_in(s, "score", -1.0, 1.0)?;
    let label = s.get("label")?.as_str()?.trim().to_lowercase();
    SENTIMENT_LABELS.contains(&label.as_str()).then_some(Sentiment { score, label })
}

/// What a failed text-model call means for its stage. A rate limit (3040
/// "Out of capacity", HTTP 429) is returned for the retry engine to wait
/// out, unless the stage has no attempt left after this one. Anything else
/// (a rejection, an unknown or retired model, "JSON Mode couldn't be met", a
/// used-up daily allocation, an unreadable answer, a timeout) gives the
/// reason to log before using the local extractor for the field: the model
/// is an improvement over the local result, not a requirement, and paid
/// retries of a failing model cannot change that.
pub fn fallback_reason(err: StageError, on_limit: OnRateLimit) -> Result<String, StageError> {
    match (err.class, on_limit) {
        (ErrorClass::RateLimited { .. }, OnRateLimit::Retry) => Err(err),
        _ => Ok(err.message),
    }
}

/// A validated model answer, with the fields that came from the local
/// fallback instead (empty when the model's answer was used whole).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<T> {
    pub value: T,
    pub fallbacks: Vec<&'static str>,
}

/// The model's summary if valid, else `fallback()` (the local summarizer).
pub fn summary_or_fallback(output: &Value, fallback: impl FnOnce() -> String) -> Checked<String> {
    match model_json(output).as_ref().and_then(validate_summary) {
        Some(value) => Checked { value, fallbacks: Vec::new() },
        None => Checked { value: fallback(), fallbacks: vec!["summary"] },
    }
}

/// The model's extraction, field by field: each invalid field is replaced
/// by the local extractor's (computed at most once, only when needed).
pub fn extraction_or_fallback(output: &Value, fallback: impl FnOnce() -> Extraction) -> Checked<Extraction> {
    let parsed = model_json(output).unwrap_or(Value::Null);
    let keywords = validate_keywords(&parsed);
    let entities = validate_entities(&parsed);
    let sentiment = validate_sentiment(&parsed);
    if let (Some(keywords), Some(entities), Some(sentiment)) = (&keywords, &entities, &sentiment) {
        return Checked {
            value: Extraction { keywords: keywords.clone(), entities: entities.clone(), sentiment: sentiment.clone() },
            fallbacks: Vec::new(),
        };
    }
    let local = fallback();
    let mut fallbacks = Vec::new();
    let mut pick = |name: &'static str, got: bool| {
        if !got {
            fallbacks.push(name);
        }
    };
    pick("keywords", keywords.is_some());
    pick("entities", entities.is_some());
    pick("sentiment", sentiment.is_some());
    Checked {
        value: Extraction {
            keywords: keywords.unwrap_or(local.keywords),
            entities: entities.unwrap_or(local.entities),
            sentiment: sentiment.unwrap_or(local.sentiment),
        },
        fallbacks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_requests_ask_for_json_schema_output_and_cut_input() {
        let long = "word ".repeat(10_000);
        let r = extraction_request(&long);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(v["response_format"]["json_schema"]["required"], json!(["keywords", "entities", "sentiment"]));
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["role"], "user");
        let user = v["messages"][1]["content"].as_str().unwrap();
        assert!(user.len() < TEXT_INPUT_MAX_CHARS + 3000, "input is cut");
        assert!(user.contains("person"));

        let s = serde_json::to_value(summary_request("A short text.")).unwrap();
        assert_eq!(s["response_format"]["json_schema"]["properties"]["summary"]["maxLength"], SUMMARY_MAX_CHARS);
        assert!(s["messages"][1]["content"].as_str().unwrap().contains("A short text."));
        assert!(s["max_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn model_json_finds_the_object_in_every_response_shape() {
        let obj = json!({ "summary": "ok" });
        assert_eq!(model_json(&json!({ "response": obj })), Some(obj.clone()));
        assert_eq!(model_json(&json!({ "response": "{\"summary\": \"ok\"}" })), Some(obj.clone()));
        assert_eq!(model_json(&json!({ "response": "```json\n{\"summary\": \"ok\"}\n```" })), Some(obj.clone()));
        assert_eq!(
            model_json(&json!({ "response": "Here you go: {\"summary\": \"ok\"} Hope it helps." })),
            Some(obj.clone())
        );
        assert_eq!(
            model_json(&json!({ "choices": [{ "message": { "content": "{\"summary\": \"ok\"}" } }] })),
            Some(obj.clone())
        );
        assert_eq!(model_json(&json!({ "result": { "response": obj } })), Some(obj.clone()));
        assert_eq!(model_json(&json!({ "response": "no json here" })), None);
        assert_eq!(model_json(&json!({ "response": "{not json}" })), None);
        assert_eq!(model_json(&json!({ "response": 42 })), None);
        assert_eq!(model_json(&json!({ "request_id": "queued-1" })), None, "a queued answer has no object");
        assert_eq!(
            model_json(
                &json!({ "response": obj, "usage": { "prompt_tokens": 90, "completion_tokens": 8 }, "tool_calls": [] })
            ),
            Some(obj.clone()),
            "the documented fields next to response are ignored"
        );
        assert_eq!(model_json(&json!({ "response": "[1, 2]" })), None);
        assert_eq!(model_json(&json!(null)), None);
        assert_eq!(model_json(&json!({})), None);
    }

    #[test]
    fn summary_is_validated_and_falls_back() {
        let ok = summary_or_fallback(&json!({ "response": { "summary": "  A fine summary.  " } }), || "local".into());
        assert_eq!(ok, Checked { value: "A fine summary.".into(), fallbacks: vec![] });

        for bad in [
            json!({ "response": { "summary": "" } }),
            json!({ "response": { "summary": "   " } }),
            json!({ "response": { "summary": 7 } }),
            json!({ "response": { "text": "x" } }),
            json!({ "response": { "summary": "x".repeat(SUMMARY_MAX_CHARS + 1) } }),
            json!({ "response": "garbage" }),
        ] {
            let c = summary_or_fallback(&bad, || "local".into());
            assert_eq!(c.value, "local", "{bad}");
            assert_eq!(c.fallbacks, vec!["summary"]);
        }
        let edge =
            summary_or_fallback(&json!({ "response": { "summary": "é".repeat(SUMMARY_MAX_CHARS) } }), || "l".into());
        assert!(edge.fallbacks.is_empty(), "the bound counts characters, not bytes");
    }

    fn local() -> Extraction {
        Extraction {
            keywords: vec![Keyword { term: "local".into(), score: 0.5 }],
            entities: vec![Entity { text: "Local".into(), kind: "other".into(), count: 1 }],
            sentiment: Sentiment { score: 0.0, label: "neutral".into() },
        }
    }

    fn good() -> Value {
        json!({
            "keywords": [{ "term": "radium", "score": 0.9 }, { "term": "physics", "score": 0 }],
            "entities": [
                { "text": "Marie Curie", "kind": "person", "count": 3 },
                { "text": "Paris", "kind": "Place", "count": 1.0 },
                { "text": "Sorbonne", "kind": "organization" }
            ],
            "sentiment": { "score": -0.25, "label": "Negative" }
        })
    }

    #[test]
    fn a_valid_extraction_is_used_whole() {
        let mut called = false;
        let c = extraction_or_fallback(&json!({ "response": good() }), || {
            called = true;
            local()
        });
        assert!(!called, "the local extractor is not run when not needed");
        assert!(c.fallbacks.is_empty());
        assert_eq!(c.value.keywords.len(), 2);
        assert_eq!(c.value.entities[1].kind, "place");
        assert_eq!(c.value.entities[2].count, 1);
        assert_eq!(c.value.sentiment, Sentiment { score: -0.25, label: "negative".into() });
    }

    #[test]
    fn each_invalid_field_falls_back_alone() {
        let mut v = good();
        v["keywords"][1]["score"] = json!(1.5);
        let c = extraction_or_fallback(&json!({ "response": v }), local);
        assert_eq!(c.fallbacks, vec!["keywords"]);
        assert_eq!(c.value.keywords, local().keywords);
        assert_eq!(c.value.entities.len(), 3);

        let mut v = good();
        v["entities"][0]["kind"] = json!("animal");
        let c = extraction_or_fallback(&json!({ "response": v }), local);
        assert_eq!(c.fallbacks, vec!["entities"]);
        assert_eq!(c.value.entities, local().entities);

        let mut v = good();
        v["sentiment"] = json!({ "score": -2, "label": "negative" });
        let c = extraction_or_fallback(&json!({ "response": v }), local);
        assert_eq!(c.fallbacks, vec!["sentiment"]);
        assert_eq!(c.value.sentiment, local().sentiment);
        assert_eq!(c.value.keywords.len(), 2);
    }

    #[test]
    fn field_bounds_are_enforced() {
        let many: Vec<Value> = (0..=KEYWORDS_MAX).map(|i| json!({ "term": format!("k{i}"), "score": 0.5 })).collect();
        assert!(validate_keywords(&json!({ "keywords": many })).is_none(), "more than 20 keywords");
        assert!(validate_keywords(&json!({ "keywords": [] })).is_none(), "empty");
        assert!(validate_keywords(&json!({ "keywords": [{ "term": "", "score": 0.5 }] })).is_none());
        assert!(validate_keywords(&json!({ "keywords": [{ "term": "a", "score": "0.5" }] })).is_none());
        assert!(validate_keywords(&json!({ "keywords": [{ "term": "a", "score": -0.1 }] })).is_none());
        assert!(validate_keywords(&json!({ "keywords": [{ "term": "a" }] })).is_none());
        assert!(validate_keywords(&json!({ "keywords": "a, b" })).is_none());
        assert!(validate_keywords(&json!({ "keywords": [{ "term": "a", "score": 1 }] })).is_some());

        assert!(validate_entities(&json!({ "entities": [{ "text": "X", "kind": "person", "count": 0 }] })).is_none());
        assert!(validate_entities(&json!({ "entities": [{ "text": "X", "kind": "person", "count": 1.5 }] })).is_none());
        assert!(validate_entities(&json!({ "entities": [{ "text": "X", "kind": "person", "count": -1 }] })).is_none());
        assert!(validate_entities(&json!({ "entities": [{ "text": " ", "kind": "person" }] })).is_none());
        assert!(validate_entities(&json!({ "entities": [{ "text": "X" }] })).is_none());
        for kind in ENTITY_KINDS {
            assert!(validate_entities(&json!({ "entities": [{ "text": "X", "kind": kind, "count": 2 }] })).is_some());
        }

        assert!(validate_sentiment(&json!({ "sentiment": { "score": 1, "label": "positive" } })).is_some());
        assert!(validate_sentiment(&json!({ "sentiment": { "score": 0.5, "label": "happy" } })).is_none());
        assert!(validate_sentiment(&json!({ "sentiment": { "score": 1.01, "label": "positive" } })).is_none());
        assert!(validate_sentiment(&json!({ "sentiment": { "label": "neutral" } })).is_none());
        assert!(validate_sentiment(&json!({ "sentiment": "positive" })).is_none());
    }

    #[test]
    fn unparseable_output_falls_back_entirely() {
        for out in [json!({ "response": "I cannot do that." }), json!(null), json!({ "response": { "other": 1 } })] {
            let c = extraction_or_fallback(&out, local);
            assert_eq!(c.value, local());
            assert_eq!(c.fallbacks, vec!["keywords", "entities", "sentiment"]);
        }
    }

    #[test]
    fn schema_bounds_agree_with_validation() {
        let s = extraction_schema();
        assert!(s.is_object(), "the schema text parses");
        assert_eq!(summary_schema()["properties"]["summary"]["maxLength"], SUMMARY_MAX_CHARS);
        assert_eq!(s["properties"]["keywords"]["maxItems"], KEYWORDS_MAX);
        assert_eq!(s["properties"]["entities"]["maxItems"], ENTITIES_MAX);
        assert_eq!(
            s["properties"]["keywords"]["items"]["properties"]["score"],
            json!({ "type": "number", "minimum": 0, "maximum": 1 })
        );
        assert_eq!(
            s["properties"]["sentiment"]["properties"]["score"],
            json!({ "type": "number", "minimum": -1, "maximum": 1 })
        );
        assert_eq!(s["properties"]["entities"]["items"]["properties"]["kind"]["enum"], json!(ENTITY_KINDS));
        assert_eq!(s["properties"]["sentiment"]["properties"]["label"]["enum"], json!(SENTIMENT_LABELS));
        // The example that satisfies the schema also passes validation.
        let c = extraction_or_fallback(&json!({ "response": good() }), local);
        assert!(c.fallbacks.is_empty());
    }

    #[test]
    fn the_model_is_the_current_json_mode_one() {
        assert_eq!(TEXT_MODEL, "@cf/meta/llama-3.3-70b-instruct-fp8-fast");
        assert_ne!(TEXT_MODEL, "@cf/meta/llama-3.1-8b-instruct", "deprecated on 2026-05-30, no alias");
    }

    #[test]
    fn the_answer_budget_fits_a_full_extraction() {
        use crate::providers::token_estimate::estimate_tokens;
        // The largest answer the schema allows with realistic sizes, written
        // the way models write JSON (pretty-printed), plus room for the
        // longest summary.
        let full = json!({
            "keywords": (0..KEYWORDS_MAX)
                .map(|i| json!({ "term": format!("electromagnetic radiation {i}"), "score": 0.875 }))
                .collect::<Vec<_>>(),
            "entities": (0..ENTITIES_MAX)
                .map(|i| json!({ "text": format!("International Atomic Energy Agency {i}"), "kind": "organization", "count": 12 }))
                .collect::<Vec<_>>(),
            "sentiment": { "score": -0.125, "label": "negative" }
        });
        let text = serde_json::to_string_pretty(&full).unwrap();
        let need = estimate_tokens(&text);
        assert!(need as u32 <= EXTRACTION_MAX_TOKENS, "extraction needs about {need} tokens");
        let c = extraction_or_fallback(&json!({ "response": text }), local);
        assert!(c.fallbacks.is_empty(), "the full answer is valid");

        let summary = json!({ "summary": "Word and word again. ".repeat(SUMMARY_MAX_CHARS / 21) }).to_string();
        let need = estimate_tokens(&summary);
        assert!(need as u32 <= SUMMARY_MAX_TOKENS, "summary needs about {need} tokens");
        let r = serde_json::to_value(extraction_request("A text.")).unwrap();
        assert_eq!(r["max_tokens"], EXTRACTION_MAX_TOKENS);
        let r = serde_json::to_value(summary_request("A text.")).unwrap();
        assert_eq!(r["max_tokens"], SUMMARY_MAX_TOKENS);
    }

    #[test]
    fn model_failures_fall_back_and_rate_limits_wait() {
        use crate::providers::provider_errors::classify_error;
        for m in [
            "AiError: 5007: No such model @cf/meta/llama-3.1-8b-instruct or task",
            "AiError: JSON Mode couldn't be met",
            "AiError: 3036: You have used up your daily free allocation of 10,000 neurons.",
            "InferenceUpstreamError: 500 internal server error",
            "the operation timed out",
            "400 Bad Request",
        ] {
            let reason = fallback_reason(classify_error("workers ai", m), OnRateLimit::Retry).unwrap();
            assert!(reason.starts_with("workers ai: "), "{m}");
        }
        for m in ["AiError: 3040: Out of capacity", "HTTP 429 Too Many Requests"] {
            let e = fallback_reason(classify_error("workers ai", m), OnRateLimit::Retry).unwrap_err();
            assert!(matches!(e.class, ErrorClass::RateLimited { .. }), "{m}");
            // The stage's last attempt takes the local result instead of failing the run.
            let reason = fallback_reason(classify_error("workers ai", m), OnRateLimit::Fallback).unwrap();
            assert!(reason.contains(m), "{m}");
        }
    }
}
