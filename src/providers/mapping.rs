//! Pure request/response mapping for the Cloudflare providers (Workers AI and
//! Vectorize). Nothing here touches the Workers runtime: `workers_ai.rs` and
//! `vectorize.rs` only move these values across the JS boundary, so every
//! shape check, bound, fallback rule and error classification is tested
//! natively with `cargo test`.
//!
//! Payloads are plain structs and `serde_json::Value`s that cross into JS as
//! JSON text (`JSON.parse`), so every object arrives as a plain JS object:
//! a Rust map serialized by serde-wasm-bindgen's default serializer would
//! become a JS `Map`, which both services silently ignore.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{Extraction, VectorItem, VectorQuery};
use crate::domain::pipeline::StageError;
use crate::domain::vector::{Hit, VectorMeta};
use crate::protocol::{Entity, Keyword, Sentiment};

// ===========================================================================
// Errors
// ===========================================================================

/// How long a rate-limited call waits before the retry engine tries again.
pub const RATE_LIMIT_RETRY_MS: u64 = 2000;

/// Longest error text kept in a `StageError` (it lands in the run journal).
const ERROR_TEXT_MAX_CHARS: usize = 500;

/// Classifies a provider error message.
///
/// * rate limits, HTTP 429, "too many requests", Workers AI capacity errors
///   (code 3040, "capacity temporarily exceeded") → `RateLimited(2000 ms)`;
/// * local-only bindings ("needs to be run remotely"), missing or broken
///   bindings, network failures, timeouts and HTTP 5xx → `Transient`;
/// * malformed input (HTTP 4xx, schema and validation failures, wrong
///   dimensions, Vectorize `code = 40xxx` request errors) → `Terminal`;
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

    if has(&["rate limit", "ratelimit", "rate-limit", "rate_limit", "too many requests", "capacity"])
        || tokens.iter().any(|t| *t == "429" || *t == "3040")
    {
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
    let vectorize_request_error =
        tokens.iter().any(|t| t.len() == 5 && t.starts_with("40") && t.parse::<u32>().is_ok());
    if client_status
        || vectorize_request_error
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
            "dimension",
            "unsupported",
            "not allowed",
        ])
    {
        return StageError::terminal(full);
    }
    StageError::transient(full)
}

/// The first `max` characters of `s`, cut on a char boundary.
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ===========================================================================
// Workers AI: embeddings (`@cf/baai/bge-base-en-v1.5`)
// ===========================================================================

pub const EMBED_MODEL: &str = "@cf/baai/bge-base-en-v1.5";
/// Output dimension of bge-base; the Vectorize index is created with it.
pub const EMBED_DIM: usize = 768;
/// The model accepts at most 100 texts per call.
pub const EMBED_BATCH: usize = 100;
/// bge-base reads at most 512 tokens; about 4 characters a token in English.
/// Pipeline chunks (800 characters) are far below this, so it only guards
/// against unusually long single texts (search queries, odd chunks).
pub const EMBED_MAX_CHARS: usize = 2000;
/// `cls` pooling is the model card's recommendation for accuracy. Embeddings
/// made with `mean` are not comparable: changing this means re-indexing.
pub const EMBED_POOLING: &str = "cls";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRequest<'a> {
    pub text: Vec<&'a str>,
    pub pooling: &'static str,
}

/// `{"shape":[n,768],"data":[[...],...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingResponse {
    #[serde(default)]
    pub shape: Vec<u64>,
    #[serde(default)]
    pub data: Vec<Vec<f32>>,
}

/// One request per batch of at most [`EMBED_BATCH`] texts, each text cut to
/// [`EMBED_MAX_CHARS`]. An empty (or all-whitespace) text is malformed input:
/// the model rejects strings shorter than one character.
pub fn embedding_requests(texts: &[String]) -> Result<Vec<EmbeddingRequest<'_>>, StageError> {
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(StageError::terminal(format!("cannot embed text #{i}: it is empty")));
    }
    Ok(texts
        .chunks(EMBED_BATCH)
        .map(|batch| EmbeddingRequest {
            text: batch.iter().map(|t| truncate_chars(t, EMBED_MAX_CHARS)).collect(),
            pooling: EMBED_POOLING,
        })
        .collect())
}

/// Checks one embedding response against the batch it answers: `expected`
/// rows of `dim` finite values, and a `shape` (when present) that agrees.
/// A wrong dimension is terminal (the model or index is misconfigured and a
/// retry returns the same); a short or non-finite answer is transient.
pub fn parse_embeddings(resp: EmbeddingResponse, expected: usize, dim: usize) -> Result<Vec<Vec<f32>>, StageError> {
    if !resp.shape.is_empty() {
        if resp.shape.len() != 2 {
            return Err(StageError::transient(format!("embedding shape {:?} is not [n, dim]", resp.shape)));
        }
        if resp.shape[1] != dim as u64 {
            return Err(StageError::terminal(format!(
                "embedding dimension {} does not match the expected {dim}",
                resp.shape[1]
            )));
        }
        if resp.shape[0] != expected as u64 {
            return Err(StageError::transient(format!(
                "embedding shape says {} rows for {expected} texts",
                resp.shape[0]
            )));
        }
    }
    if resp.data.len() != expected {
        return Err(StageError::transient(format!("got {} embeddings for {expected} texts", resp.data.len())));
    }
    for (i, row) in resp.data.iter().enumerate() {
        if row.len() != dim {
            return Err(StageError::terminal(format!("embedding #{i} has {} dimensions, expected {dim}", row.len())));
        }
        if row.iter().any(|x| !x.is_finite()) {
            return Err(StageError::transient(format!("embedding #{i} contains non-finite values")));
        }
    }
    Ok(resp.data)
}

// ===========================================================================
// Workers AI: text model (summary and extraction, JSON mode)
// ===========================================================================

/// Supports JSON mode (`response_format: {type: "json_schema"}`).
pub const TEXT_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";
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
        512,
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
        1024,
    )
}

/// The JSON object a text model answered with, wherever the response shape
/// put it: `{response: {...}}` (JSON mode), `{response: "<json>"}` (a model
/// that answers with text), an OpenAI-style `choices[0].message.content`, or
/// a REST-style `{result: ...}` envelope. `None` if there is no object.
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
    let items = v.get("keywords")?.as_array()?;
    if items.is_empty() || items.len() > KEYWORDS_MAX {
        return None;
    }
    items
        .iter()
        .map(|k| {
            Some(Keyword { term: non_empty_str(k, "term", TERM_MAX_CHARS)?, score: number_in(k, "score", 0.0, 1.0)? })
        })
        .collect()
}

/// `entities`: a non-empty array of at most [`ENTITIES_MAX`] `{text, kind,
/// count}`, kind one of [`ENTITY_KINDS`] (case-insensitive), count an integer
/// ≥ 1 (a missing count means 1). Same all-or-nothing rule as keywords.
pub fn validate_entities(v: &Value) -> Option<Vec<Entity>> {
    let items = v.get("entities")?.as_array()?;
    if items.is_empty() || items.len() > ENTITIES_MAX {
        return None;
    }
    items
        .iter()
        .map(|e| {
            let text = non_empty_str(e, "text", ENTITY_TEXT_MAX_CHARS)?;
            let kind = e.get("kind")?.as_str()?.trim().to_lowercase();
            if !ENTITY_KINDS.contains(&kind.as_str()) {
                return None;
            }
            let count = match e.get("count") {
                None | Some(Value::Null) => 1,
                Some(c) => {
                    let n = c
                        .as_u64()
                        .or_else(|| c.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))?;
                    u32::try_from(n).ok().filter(|n| *n >= 1)?
                }
            };
            Some(Entity { text, kind, count })
        })
        .collect()
}

/// `sentiment`: `{score in [-1, 1], label in positive|negative|neutral}`.
pub fn validate_sentiment(v: &Value) -> Option<Sentiment> {
    let s = v.get("sentiment")?;
    let score = number_in(s, "score", -1.0, 1.0)?;
    let label = s.get("label")?.as_str()?.trim().to_lowercase();
    SENTIMENT_LABELS.contains(&label.as_str()).then_some(Sentiment { score, label })
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

// ===========================================================================
// Vectorize
// ===========================================================================
//
// Index setup (once per index; filters only see vectors written after their
// metadata index exists):
//
//   wrangler vectorize create actorline-chunks --dimensions=768 --metric=cosine
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=content_id --type=string
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=category --type=string
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=version --type=number
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=chunk --type=number
//
// `category` serves search filters; `content_id`, `version` and `chunk` serve
// `delete_content` (Vectorize cannot delete by metadata; see `DeletePlan`).

/// Every metadata property the code filters on, with its index type. The
/// README's deploy steps create exactly these (checked by `tests/deploy.rs`),
/// and a filter on any other property matches nothing in Vectorize.
pub const METADATA_INDEXES: &[(&str, &str)] =
    &[("content_id", "string"), ("category", "string"), ("version", "number"), ("chunk", "number")];

/// Vectors per `upsert` call through a Worker binding.
pub const UPSERT_BATCH: usize = 1000;
/// Ids per `deleteByIds` call.
pub const DELETE_IDS_BATCH: usize = 1000;
/// `topK` limit when a query returns metadata (`returnMetadata: "all"`).
pub const TOP_K_MAX: u32 = 50;
/// Vectorize ids are at most 64 bytes.
pub const ID_MAX_BYTES: usize = 64;
/// Namespaces are at most 64 bytes.
pub const NAMESPACE_MAX_BYTES: usize = 64;
/// Queries one `delete_content` call may make before giving up (transient).
pub const DELETE_MAX_ROUNDS: u32 = 20;
/// Chunk numbers swept per window query: equal to [`TOP_K_MAX`], so a window
/// of one version always fits in one page.
pub const DELETE_WINDOW: u32 = TOP_K_MAX;
/// At most this many versions are excluded in a discovery filter (a filter
/// must stay under 2 KiB of JSON).
pub const DELETE_MAX_VERSIONS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VectorizeMetadata<'a> {
    pub content_id: &'a str,
    pub version: u32,
    pub chunk: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VectorizeVector<'a> {
    pub id: &'a str,
    pub values: &'a [f32],
    pub namespace: &'a str,
    pub metadata: VectorizeMetadata<'a>,
}

fn check_vector(what: &str, values: &[f32], dim: usize) -> Result<(), StageError> {
    if values.len() != dim {
        return Err(StageError::terminal(format!(
            "{what} has {} dimensions; the Vectorize index has {dim}",
            values.len()
        )));
    }
    if values.iter().any(|x| !x.is_finite()) {
        return Err(StageError::terminal(format!("{what} contains non-finite values")));
    }
    Ok(())
}

fn check_namespace(ns: &str) -> Result<(), StageError> {
    if ns.len() > NAMESPACE_MAX_BYTES {
        return Err(StageError::terminal(format!("namespace {ns:?} is longer than {NAMESPACE_MAX_BYTES} bytes")));
    }
    Ok(())
}

/// Upsert payloads in batches of at most [`UPSERT_BATCH`], after checking
/// every vector's id, namespace, dimension and values.
pub fn upsert_batches(items: &[VectorItem], dim: usize) -> Result<Vec<Vec<VectorizeVector<'_>>>, StageError> {
    for it in items {
        if it.id.is_empty() || it.id.len() > ID_MAX_BYTES {
            return Err(StageError::terminal(format!("vector id {:?} must be 1 to {ID_MAX_BYTES} bytes", it.id)));
        }
        check_namespace(&it.namespace)?;
        check_vector(&format!("vector {}", it.id), &it.values, dim)?;
    }
    Ok(items
        .chunks(UPSERT_BATCH)
        .map(|batch| {
            batch
                .iter()
                .map(|it| VectorizeVector {
                    id: &it.id,
                    values: &it.values,
                    namespace: if it.namespace.is_empty() { super::DEFAULT_NAMESPACE } else { &it.namespace },
                    metadata: VectorizeMetadata {
                        content_id: &it.meta.content_id,
                        version: it.meta.version,
                        chunk: it.meta.chunk,
                        category: it.meta.category.as_deref(),
                    },
                })
                .collect()
        })
        .collect())
}

/// One metadata condition. Vectorize allows one operator per property,
/// except a lower bound combined with an upper bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cond<T> {
    Eq {
        #[serde(rename = "$eq")]
        eq: T,
    },
    Ne {
        #[serde(rename = "$ne")]
        ne: T,
    },
    Nin {
        #[serde(rename = "$nin")]
        nin: Vec<T>,
    },
    Range {
        #[serde(rename = "$gte")]
        gte: T,
        #[serde(rename = "$lt")]
        lt: T,
    },
    Gte {
        #[serde(rename = "$gte")]
        gte: T,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<Cond<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Cond<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Cond<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Cond<u32>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.content_id.is_none() && self.category.is_none() && self.version.is_none() && self.chunk.is_none()
    }
}

/// Options of `index.query(vector, options)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryOptions {
    pub top_k: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub return_values: bool,
    pub return_metadata: &'static str,
    /// Vectorize rejects an empty filter object, so an empty one is omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl QueryOptions {
    fn new(top_k: u32, namespace: Option<String>, filter: Filter) -> Self {
        QueryOptions {
            top_k: top_k.clamp(1, TOP_K_MAX),
            namespace: namespace.filter(|n| !n.is_empty()),
            return_values: false,
            return_metadata: "all",
            filter: (!filter.is_empty()).then_some(filter),
        }
    }
}

/// The options for a search query: its namespace, `topK` capped at
/// [`TOP_K_MAX`], and the category filter when one is asked for. Checks the
/// query vector first (a wrong dimension is terminal).
pub fn search_query_options(q: &VectorQuery, dim: usize) -> Result<QueryOptions, StageError> {
    check_vector("query vector", &q.vector, dim)?;
    check_namespace(&q.namespace)?;
    let filter = Filter {
        category: q.category.as_ref().filter(|c| !c.is_empty()).map(|c| Cond::Eq { eq: c.clone() }),
        ..Filter::default()
    };
    Ok(QueryOptions::new(q.top_k, Some(q.namespace.clone()), filter))
}

/// A unit vector of `dim` values, for metadata-only scans: any vector will
/// do since the filter picks the rows, but cosine needs a non-zero one.
pub fn unit_vector(dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    if let Some(x) = v.first_mut() {
        *x = 1.0;
    }
    v
}

fn as_u32(v: &Value) -> Option<u32> {
    let n = match v {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        }
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    u32::try_from(n).ok()
}

fn parse_match(m: &Value) -> Option<Hit> {
    let id = m.get("id")?.as_str()?.to_string();
    let score = m.get("score")?.as_f64().filter(|s| s.is_finite())? as f32;
    let md = m.get("metadata")?;
    let content_id = md.get("content_id")?.as_str().filter(|s| !s.is_empty())?.to_string();
    let version = as_u32(md.get("version")?)?;
    let chunk = as_u32(md.get("chunk")?)?;
    let category = md.get("category").and_then(Value::as_str).map(str::to_string);
    Some(Hit { id, score, meta: VectorMeta { content_id, version, chunk, category } })
}

/// Hits from a query result `{count, matches: [{id, score, metadata}]}`.
/// A match without usable metadata (`content_id`, `version`, `chunk`) or
/// score is skipped: it cannot be attributed to a content item. Sorted like
/// the actor index: best score first, ties by id.
pub fn parse_query_matches(result: &Value) -> Result<Vec<Hit>, StageError> {
    let matches = result
        .get("matches")
        .and_then(Value::as_array)
        .ok_or_else(|| StageError::transient("Vectorize query result has no matches array"))?;
    let mut hits: Vec<Hit> = matches.iter().filter_map(parse_match).collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    Ok(hits)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DeleteStep {
    /// Which old versions exist? A page that is not full is the whole set.
    Discover,
    /// Chunks `lo..lo + DELETE_WINDOW` of one version: always one page.
    Window { version: u32, lo: u32 },
    /// Is anything of this version left at chunk `from` or above?
    Probe { version: u32, from: u32 },
}

/// `delete_content` for Vectorize, as a pure state machine.
///
/// Vectorize has no delete-by-metadata, and its writes apply asynchronously
/// (a deleted id keeps showing up in queries for a few seconds). Re-running
/// one query until it comes back empty would keep seeing the same page, and
/// the kept version's own vectors could crowd old ones out of the 50-result
/// page. So the plan asks questions whose answers are complete:
///
/// 1. *Discover*: `content_id = id`, `version != keep` (`version ∉ known ∪
///    {keep}` once versions are known). A page of fewer than 50 hits is all
///    that is left: delete it and stop. A full page names versions to sweep.
/// 2. *Window* per discovered version: `version = v`, `chunk ∈ [lo, lo+50)`.
///    Chunk numbers of one version are distinct, so a window always fits in
///    one page. If chunk `lo+49` is there, the next window follows.
/// 3. *Probe*: `version = v`, `chunk ≥ lo+50`. Not full: the version is done.
///    Full: chunks were missing below (an earlier, interrupted cleanup), so
///    the windows go on from there.
/// 4. Discover again, excluding the versions swept, until a page is not full.
///
/// Each id goes to `deleteByIds` once per call; hits of other content or of
/// the kept version are never deleted (a defence in case a filter is not
/// applied). A content of a few hundred chunks per version finishes well
/// within [`DELETE_MAX_ROUNDS`]; a larger one fails transiently and the retry
/// resumes (deleting an id twice is harmless). Needs metadata indexes on
/// `content_id`, `version` and `chunk` (see the setup above).
#[derive(Debug, Clone)]
pub struct DeletePlan {
    content_id: String,
    keep: Option<u32>,
    /// Old versions found, sorted. (Vecs, not sets: a few hundred entries
    /// at most, and no new collection code in the Worker binary.)
    known: Vec<u32>,
    /// Per-version work, the next step last.
    tasks: Vec<DeleteStep>,
    discover: bool,
    deleted: Vec<String>,
    rounds: u32,
    current: Option<DeleteStep>,
}

impl DeletePlan {
    pub fn new(content_id: &str, keep: Option<u32>) -> Self {
        DeletePlan {
            content_id: content_id.to_string(),
            keep,
            known: Vec::new(),
            tasks: Vec::new(),
            discover: true,
            deleted: Vec::new(),
            rounds: 0,
            current: None,
        }
    }

    /// Ids sent for deletion so far.
    pub fn removed(&self) -> u32 {
        self.deleted.len() as u32
    }

    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The next query to run, `Ok(None)` when done, or a transient error when
    /// [`DELETE_MAX_ROUNDS`] queries did not finish.
    pub fn next_query(&mut self) -> Result<Option<QueryOptions>, StageError> {
        let step = match self.tasks.last() {
            Some(t) => *t,
            None if self.discover => DeleteStep::Discover,
            None => {
                self.current = None;
                return Ok(None);
            }
        };
        if self.rounds >= DELETE_MAX_ROUNDS {
            return Err(StageError::transient(format!(
                "Vectorize cleanup of {} not finished after {DELETE_MAX_ROUNDS} queries ({} vectors removed so far)",
                self.content_id,
                self.removed()
            )));
        }
        self.rounds += 1;
        self.current = Some(step);
        let content_id = Some(Cond::Eq { eq: self.content_id.clone() });
        let filter = match step {
            DeleteStep::Discover => {
                let version = if self.known.is_empty() {
                    self.keep.map(|k| Cond::Ne { ne: k })
                } else {
                    Some(Cond::Nin { nin: self.known.iter().copied().chain(self.keep).collect() })
                };
                Filter { content_id, version, ..Filter::default() }
            }
            DeleteStep::Window { version, lo } => Filter {
                content_id,
                version: Some(Cond::Eq { eq: version }),
                chunk: Some(Cond::Range { gte: lo, lt: lo.saturating_add(DELETE_WINDOW) }),
                ..Filter::default()
            },
            DeleteStep::Probe { version, from } => Filter {
                content_id,
                version: Some(Cond::Eq { eq: version }),
                chunk: Some(Cond::Gte { gte: from }),
                ..Filter::default()
            },
        };
        Ok(Some(QueryOptions::new(TOP_K_MAX, None, filter)))
    }

    /// Takes the hits of the query [`next_query`](Self::next_query) returned
    /// and gives the ids to delete now (never one already sent).
    pub fn apply(&mut self, hits: &[Hit]) -> Vec<String> {
        let full = hits.len() >= TOP_K_MAX as usize;
        let mine: Vec<&Hit> =
            hits.iter().filter(|h| h.meta.content_id == self.content_id && Some(h.meta.version) != self.keep).collect();
        match self.current.take() {
            Some(DeleteStep::Discover) => {
                let mut found_new = false;
                if full {
                    for h in &mine {
                        let v = h.meta.version;
                        if self.known.len() < DELETE_MAX_VERSIONS {
                            if let Err(at) = self.known.binary_search(&v) {
                                self.known.insert(at, v);
                                self.tasks.push(DeleteStep::Window { version: v, lo: 0 });
                                found_new = true;
                            }
                        }
                    }
                }
                // A page that is not full is everything that is left; a full
                // page that names no new version cannot make progress.
                self.discover = full && found_new;
            }
            Some(DeleteStep::Window { version, lo }) => {
                self.tasks.pop();
                let next = lo.saturating_add(DELETE_WINDOW);
                let top = next - 1;
                let has_top = mine.iter().any(|h| h.meta.version == version && h.meta.chunk == top);
                if next > lo {
                    self.tasks.push(if has_top {
                        DeleteStep::Window { version, lo: next }
                    } else {
                        DeleteStep::Probe { version, from: next }
                    });
                }
            }
            Some(DeleteStep::Probe { version, from }) => {
                self.tasks.pop();
                if full {
                    self.tasks.push(DeleteStep::Window { version, lo: from });
                }
            }
            None => return Vec::new(),
        }
        let mut ids: Vec<String> = Vec::new();
        for h in mine {
            if !self.deleted.contains(&h.id) && !ids.contains(&h.id) {
                ids.push(h.id.clone());
            }
        }
        self.deleted.extend(ids.iter().cloned());
        ids
    }
}

// ===========================================================================
// Tests
// ===========================================================================

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorClass;
    use serde_json::json;
    use std::collections::HashSet;

    // ---- errors ------------------------------------------------------------

    fn class(msg: &str) -> ErrorClass {
        classify_error("", msg).class
    }

    #[test]
    fn rate_limits_and_capacity_are_rate_limited() {
        for m in [
            "AiError: 3040: Capacity temporarily exceeded, please try again.",
            "Error: rate limited",
            "HTTP 429 Too Many Requests",
            "You have exceeded the rate limit",
            "too many requests",
            "status=429",
        ] {
            assert_eq!(class(m), ErrorClass::RateLimited { retry_after_ms: RATE_LIMIT_RETRY_MS }, "{m}");
        }
    }

    #[test]
    fn remote_binding_network_and_5xx_are_transient() {
        for m in [
            "Error: AI bindings always access remote resources, and so this needs to be run remotely",
            "Binding `AI` is undefined.",
            "Network connection lost.",
            "upstream returned 502",
            "HTTP 503 Service Unavailable",
            "InferenceUpstreamError: 500 internal server error",
            "the operation timed out",
            "something entirely new happened",
        ] {
            assert_eq!(class(m), ErrorClass::Transient, "{m}");
        }
    }

    #[test]
    fn malformed_input_is_terminal() {
        for m in [
            "AiError: 5006: Error: required properties at '/' are 'text'",
            "400 Bad Request",
            "invalid input: text must be a string",
            "VECTOR_UPSERT_ERROR (code = 40006): dimensions mismatch",
            "HTTP 422",
            "Unsupported model",
        ] {
            assert_eq!(class(m), ErrorClass::Terminal, "{m}");
        }
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

    // ---- embeddings ----------------------------------------------------------

    #[test]
    fn embedding_requests_batch_by_100_and_cut_long_texts() {
        let texts: Vec<String> = (0..250).map(|i| format!("text {i}")).collect();
        let reqs = embedding_requests(&texts).unwrap();
        assert_eq!(reqs.iter().map(|r| r.text.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
        assert_eq!(reqs[2].text[49], "text 249");

        let long = vec!["é".repeat(EMBED_MAX_CHARS + 10)];
        let reqs = embedding_requests(&long).unwrap();
        assert_eq!(reqs[0].text[0].chars().count(), EMBED_MAX_CHARS);

        let v = serde_json::to_value(&reqs[0]).unwrap();
        assert!(v["text"].is_array());
        assert_eq!(v["pooling"], "cls");
    }

    #[test]
    fn embedding_requests_reject_empty_text_and_allow_no_text() {
        let e = embedding_requests(&["ok".into(), "  ".into()]).unwrap_err();
        assert_eq!(e.class, ErrorClass::Terminal);
        assert!(embedding_requests(&[]).unwrap().is_empty());
    }

    fn resp(shape: Vec<u64>, rows: usize, dim: usize) -> EmbeddingResponse {
        EmbeddingResponse { shape, data: (0..rows).map(|r| vec![r as f32 * 0.01; dim]).collect() }
    }

    #[test]
    fn embedding_response_parses_from_model_json() {
        let v = json!({ "shape": [2, 3], "data": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]] });
        let r: EmbeddingResponse = serde_json::from_value(v).unwrap();
        let out = parse_embeddings(r, 2, 3).unwrap();
        assert_eq!(out.len(), 2);
        assert!((out[1][2] - 0.6).abs() < 1e-6);
    }

    #[test]
    fn embedding_response_checks_shape_and_dimension() {
        assert!(parse_embeddings(resp(vec![2, 768], 2, 768), 2, 768).is_ok());
        assert!(parse_embeddings(resp(vec![], 2, 768), 2, 768).is_ok(), "shape is optional");

        let e = parse_embeddings(resp(vec![2, 384], 2, 384), 2, 768).unwrap_err();
        assert_eq!(e.class, ErrorClass::Terminal);
        let e = parse_embeddings(resp(vec![], 2, 384), 2, 768).unwrap_err();
        assert_eq!(e.class, ErrorClass::Terminal);

        let e = parse_embeddings(resp(vec![1, 768], 1, 768), 2, 768).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        let e = parse_embeddings(resp(vec![2, 768], 1, 768), 2, 768).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        let e = parse_embeddings(resp(vec![2, 768, 1], 2, 768), 2, 768).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);

        let mut r = resp(vec![1, 3], 1, 3);
        r.data[0][1] = f32::NAN;
        assert_eq!(parse_embeddings(r, 1, 3).unwrap_err().class, ErrorClass::Transient);

        let mut r = resp(vec![2, 3], 2, 3);
        r.data[1].pop();
        assert_eq!(parse_embeddings(r, 2, 3).unwrap_err().class, ErrorClass::Terminal);
    }

    // ---- text model ----------------------------------------------------------

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

    // ---- Vectorize payloads ----------------------------------------------------

    fn item(cid: &str, version: u32, chunk: u32, dim: usize, category: Option<&str>) -> VectorItem {
        VectorItem {
            id: format!("{cid}:{version}:{chunk}"),
            namespace: "content".into(),
            values: vec![0.5; dim],
            meta: VectorMeta { content_id: cid.into(), version, chunk, category: category.map(str::to_string) },
        }
    }

    #[test]
    fn upsert_payload_has_the_vectorize_shape() {
        let items = vec![item("c1", 2, 0, 4, Some("science")), item("c1", 2, 1, 4, None)];
        let batches = upsert_batches(&items, 4).unwrap();
        assert_eq!(batches.len(), 1);
        let v = serde_json::to_value(&batches[0]).unwrap();
        assert_eq!(
            v[0],
            json!({
                "id": "c1:2:0",
                "values": [0.5, 0.5, 0.5, 0.5],
                "namespace": "content",
                "metadata": { "content_id": "c1", "version": 2, "chunk": 0, "category": "science" }
            })
        );
        assert!(v[1]["metadata"].get("category").is_none(), "no null metadata values");
    }

    #[test]
    fn upserts_are_batched_by_1000() {
        let items: Vec<VectorItem> = (0..2500).map(|i| item("c", 1, i, 2, None)).collect();
        let b = upsert_batches(&items, 2).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        assert_eq!(b[2][499].id, "c:1:2499");
        assert!(upsert_batches(&[], 2).unwrap().is_empty());
    }

    #[test]
    fn upsert_rejects_bad_vectors_terminally() {
        let e = upsert_batches(&[item("c", 1, 0, 3, None)], 4).unwrap_err();
        assert_eq!(e.class, ErrorClass::Terminal);
        assert!(e.message.contains("3 dimensions"));

        let mut it = item("c", 1, 0, 2, None);
        it.values[1] = f32::INFINITY;
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        let mut it = item("c", 1, 0, 2, None);
        it.id = "x".repeat(65);
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        let mut it = item("c", 1, 0, 2, None);
        it.namespace = "n".repeat(65);
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        // A real pipeline id fits: uuid + two u32s.
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(upsert_batches(&[item(uuid, u32::MAX, u32::MAX, 2, None)], 2).is_ok());
    }

    fn vq(dim: usize, top_k: u32, category: Option<&str>) -> VectorQuery {
        VectorQuery {
            vector: vec![0.1; dim],
            top_k,
            namespace: "content".into(),
            category: category.map(str::to_string),
        }
    }

    #[test]
    fn search_query_options_cap_top_k_and_filter_category() {
        let o = search_query_options(&vq(4, 200, Some("science")), 4).unwrap();
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            json!({
                "topK": 50,
                "namespace": "content",
                "returnValues": false,
                "returnMetadata": "all",
                "filter": { "category": { "$eq": "science" } }
            })
        );
        let o = search_query_options(&vq(4, 0, None), 4).unwrap();
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["topK"], 1);
        assert!(v.get("filter").is_none(), "no empty filter object");
        let o = search_query_options(&vq(4, 10, Some("")), 4).unwrap();
        assert!(o.filter.is_none());
    }

    #[test]
    fn search_query_checks_the_vector() {
        assert_eq!(search_query_options(&vq(3, 10, None), 4).unwrap_err().class, ErrorClass::Terminal);
        let mut q = vq(4, 10, None);
        q.vector[0] = f32::NAN;
        assert_eq!(search_query_options(&q, 4).unwrap_err().class, ErrorClass::Terminal);
    }

    #[test]
    fn unit_vector_is_unit() {
        let v = unit_vector(768);
        assert_eq!(v.len(), 768);
        assert_eq!(v.iter().map(|x| x * x).sum::<f32>(), 1.0);
        assert!(unit_vector(0).is_empty());
    }

    #[test]
    fn query_matches_map_to_hits_and_skip_missing_metadata() {
        let r = json!({
            "count": 5,
            "matches": [
                { "id": "a:1:0", "score": 0.5, "metadata": { "content_id": "a", "version": 1, "chunk": 0, "category": "x" } },
                { "id": "b:2:3", "score": 0.9, "metadata": { "content_id": "b", "version": 2.0, "chunk": "3" } },
                { "id": "c:1:0", "score": 0.8 },
                { "id": "d:1:0", "score": 0.7, "metadata": { "content_id": "d", "chunk": 0 } },
                { "id": "e:1:0", "score": 0.6, "metadata": { "content_id": "e", "version": 1.5, "chunk": 0 } },
                { "id": "f:1:0", "metadata": { "content_id": "f", "version": 1, "chunk": 0 } },
                { "id": "g:1:0", "score": 0.5, "metadata": { "content_id": "", "version": 1, "chunk": 0 } },
                { "id": "h:1:0", "score": 0.5, "metadata": { "content_id": "h", "version": 1, "chunk": 0, "category": 3 } }
            ]
        });
        let hits = parse_query_matches(&r).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, vec!["b:2:3", "a:1:0", "h:1:0"], "sorted by score, ties by id");
        assert_eq!(hits[0].meta, VectorMeta { content_id: "b".into(), version: 2, chunk: 3, category: None });
        assert_eq!(hits[1].meta.category.as_deref(), Some("x"));
        assert_eq!(hits[2].meta.category, None);
        assert!((hits[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn query_result_without_matches_is_an_error() {
        assert_eq!(parse_query_matches(&json!({ "count": 0 })).unwrap_err().class, ErrorClass::Transient);
        assert!(parse_query_matches(&json!({ "matches": [] })).unwrap().is_empty());
    }

    // ---- delete plan ---------------------------------------------------------

    /// An in-memory Vectorize with delayed deletes: ids passed to
    /// `deleteByIds` keep showing up in queries until `settle()`.
    struct FakeIndex {
        rows: Vec<Hit>,
        pending: HashSet<String>,
    }

    impl FakeIndex {
        fn new() -> Self {
            FakeIndex { rows: Vec::new(), pending: HashSet::new() }
        }
        fn add(&mut self, cid: &str, version: u32, chunks: u32) {
            for c in 0..chunks {
                self.rows.push(Hit {
                    id: format!("{cid}:{version}:{c}"),
                    score: 0.0,
                    meta: VectorMeta { content_id: cid.into(), version, chunk: c, category: None },
                });
            }
        }
        fn cond_u32(c: &Cond<u32>, x: u32) -> bool {
            match c {
                Cond::Eq { eq } => x == *eq,
                Cond::Ne { ne } => x != *ne,
                Cond::Nin { nin } => !nin.contains(&x),
                Cond::Range { gte, lt } => x >= *gte && x < *lt,
                Cond::Gte { gte } => x >= *gte,
            }
        }
        fn query(&self, o: &QueryOptions) -> Vec<Hit> {
            let f = o.filter.clone().unwrap_or_default();
            let mut out: Vec<Hit> = self
                .rows
                .iter()
                .filter(|h| match &f.content_id {
                    Some(Cond::Eq { eq }) => &h.meta.content_id == eq,
                    None => true,
                    other => panic!("unexpected content_id filter {other:?}"),
                })
                .filter(|h| f.version.as_ref().is_none_or(|c| Self::cond_u32(c, h.meta.version)))
                .filter(|h| f.chunk.as_ref().is_none_or(|c| Self::cond_u32(c, h.meta.chunk)))
                .cloned()
                .collect();
            // Similarity order is arbitrary as far as the plan is concerned:
            // put the newest versions and highest chunks first (worst case
            // for crowding out).
            out.sort_by(|a, b| b.meta.version.cmp(&a.meta.version).then(b.meta.chunk.cmp(&a.meta.chunk)));
            out.truncate(o.top_k as usize);
            out
        }
        fn delete(&mut self, ids: &[String]) {
            assert!(ids.len() <= DELETE_IDS_BATCH);
            self.pending.extend(ids.iter().cloned());
        }
        fn settle(&mut self) {
            let p = std::mem::take(&mut self.pending);
            self.rows.retain(|h| !p.contains(&h.id));
        }
        fn count(&self, cid: &str, version: u32) -> usize {
            self.rows.iter().filter(|h| h.meta.content_id == cid && h.meta.version == version).count()
        }
    }

    /// Runs a plan to completion against `ix` without settling deletes in
    /// between (the worst case for eventual consistency).
    fn run(ix: &mut FakeIndex, cid: &str, keep: Option<u32>) -> Result<u32, StageError> {
        let mut plan = DeletePlan::new(cid, keep);
        while let Some(q) = plan.next_query()? {
            assert_eq!(q.top_k, TOP_K_MAX);
            assert_eq!(q.return_metadata, "all");
            let hits = ix.query(&q);
            let ids = plan.apply(&hits);
            ix.delete(&ids);
        }
        ix.settle();
        Ok(plan.removed())
    }

    #[test]
    fn delete_small_content_takes_one_query() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 10);
        ix.add("b", 1, 10);
        let mut plan = DeletePlan::new("a", None);
        let q = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({ "topK": 50, "returnValues": false, "returnMetadata": "all", "filter": { "content_id": { "$eq": "a" } } })
        );
        let ids = plan.apply(&ix.query(&q));
        assert_eq!(ids.len(), 10);
        assert!(plan.next_query().unwrap().is_none());
        assert_eq!(plan.rounds(), 1);
        ix.delete(&ids);
        ix.settle();
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("b", 1), 10, "other content untouched");
    }

    #[test]
    fn delete_keeps_the_current_version_even_when_it_crowds_the_page() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 120);
        ix.add("a", 2, 80);
        let removed = run(&mut ix, "a", Some(2)).unwrap();
        assert_eq!(removed, 120);
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("a", 2), 80);
    }

    #[test]
    fn discovery_filters_exclude_the_kept_and_known_versions() {
        let mut plan = DeletePlan::new("a", Some(3));
        let q = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&q.filter).unwrap()["version"], json!({ "$ne": 3 }));
        // A full page of version 1 hits.
        let hits: Vec<Hit> = (0..50)
            .map(|c| Hit {
                id: format!("a:1:{c}"),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 1, chunk: c, category: None },
            })
            .collect();
        assert_eq!(plan.apply(&hits).len(), 50);
        let w = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&w.filter).unwrap(),
            json!({ "content_id": { "$eq": "a" }, "version": { "$eq": 1 }, "chunk": { "$gte": 0, "$lt": 50 } })
        );
        assert!(plan.apply(&hits).is_empty(), "ids are sent once");
        // Chunk 49 exists, so the next window follows.
        let w = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&w.filter).unwrap()["chunk"], json!({ "$gte": 50, "$lt": 100 }));
        assert!(plan.apply(&[]).is_empty());
        // Chunk 99 does not: probe above it.
        let p = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&p.filter).unwrap(),
            json!({ "content_id": { "$eq": "a" }, "version": { "$eq": 1 }, "chunk": { "$gte": 100 } })
        );
        plan.apply(&[]);
        let d = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&d.filter).unwrap()["version"], json!({ "$nin": [1, 3] }));
        plan.apply(&[]);
        assert!(plan.next_query().unwrap().is_none());
        assert_eq!(plan.rounds(), 5);
    }

    #[test]
    fn delete_all_versions_of_a_large_content() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 260);
        ix.add("a", 2, 75);
        ix.add("a", 3, 3);
        ix.add("z", 1, 60);
        let removed = run(&mut ix, "a", None).unwrap();
        assert_eq!(removed, 338);
        for v in 1..=3 {
            assert_eq!(ix.count("a", v), 0);
        }
        assert_eq!(ix.count("z", 1), 60);
    }

    #[test]
    fn delete_exact_window_multiples() {
        for n in [49, 50, 51, 100, 150] {
            let mut ix = FakeIndex::new();
            ix.add("a", 1, n);
            ix.add("a", 2, 5);
            assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), n, "n = {n}");
            assert_eq!(ix.count("a", 1), 0);
            assert_eq!(ix.count("a", 2), 5);
        }
    }

    #[test]
    fn nothing_to_delete_is_one_query() {
        let mut ix = FakeIndex::new();
        ix.add("a", 4, 70);
        let mut plan = DeletePlan::new("a", Some(4));
        while let Some(q) = plan.next_query().unwrap() {
            let hits = ix.query(&q);
            assert!(plan.apply(&hits).is_empty());
        }
        assert_eq!(plan.rounds(), 1);
        assert_eq!(plan.removed(), 0);
    }

    #[test]
    fn foreign_or_kept_hits_are_never_deleted() {
        // As if the index ignored the filter.
        let mut plan = DeletePlan::new("a", Some(2));
        plan.next_query().unwrap();
        let hits = vec![
            Hit {
                id: "b:1:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "b".into(), version: 1, chunk: 0, category: None },
            },
            Hit {
                id: "a:2:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 2, chunk: 0, category: None },
            },
            Hit {
                id: "a:1:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 1, chunk: 0, category: None },
            },
        ];
        assert_eq!(plan.apply(&hits), vec!["a:1:0".to_string()]);
    }

    #[test]
    fn a_full_page_without_progress_stops() {
        // 50 hits that all belong to someone else: no version to sweep.
        let mut plan = DeletePlan::new("a", None);
        plan.next_query().unwrap();
        let hits: Vec<Hit> = (0..50)
            .map(|c| Hit {
                id: format!("b:1:{c}"),
                score: 0.0,
                meta: VectorMeta { content_id: "b".into(), version: 1, chunk: c, category: None },
            })
            .collect();
        assert!(plan.apply(&hits).is_empty());
        assert!(plan.next_query().unwrap().is_none());
    }

    #[test]
    fn a_gap_left_by_an_interrupted_cleanup_is_crossed() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 300);
        ix.add("a", 2, 10);
        // An earlier cleanup deleted chunks 0..150 and then failed.
        ix.rows.retain(|h| !(h.meta.version == 1 && h.meta.chunk < 150));
        assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), 150);
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("a", 2), 10);
    }

    #[test]
    fn realistic_sizes_finish_in_one_call() {
        // Two old versions of 300 chunks (a 200 KB body) next to the kept one.
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 300);
        ix.add("a", 2, 300);
        ix.add("a", 3, 300);
        assert_eq!(run(&mut ix, "a", Some(3)).unwrap(), 600);
        assert_eq!(ix.count("a", 3), 300);
    }

    #[test]
    fn too_many_rounds_is_transient_and_retries_finish() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 2000);
        let e = run(&mut ix, "a", Some(9)).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.contains("not finished"));
        ix.settle();
        assert!(ix.count("a", 1) < 2000, "progress was made");
        let mut attempts = 0;
        while run(&mut ix, "a", Some(9)).is_err() {
            ix.settle();
            attempts += 1;
            assert!(attempts < 60, "retries converge");
        }
        assert_eq!(ix.count("a", 1), 0);
    }

    #[test]
    fn apply_without_a_query_does_nothing() {
        let mut plan = DeletePlan::new("a", None);
        let hit = Hit {
            id: "a:1:0".into(),
            score: 0.0,
            meta: VectorMeta { content_id: "a".into(), version: 1, chunk: 0, category: None },
        };
        assert!(plan.apply(&[hit]).is_empty());
    }
}
