//! Actorline's stage work (`src/nlp`, unchanged) exported to JavaScript.
//!
//! The functions mirror what Actorline's stages call with the embedded
//! providers (`src/stages/`, `src/providers/local_ai.rs`): the same
//! functions, the same parameters, and JSON serialization of the outputs
//! where Actorline serializes them into its artifact store.

#[allow(dead_code)]
#[path = "../../../../src/nlp/mod.rs"]
mod nlp;

use serde_json::json;
use wasm_bindgen::prelude::*;

/// `SUMMARY_SENTENCES` in `src/providers/local_ai.rs`.
const SUMMARY_SENTENCES: usize = 3;
/// `extract_local` in `src/providers/local_ai.rs`.
const KEYWORDS: usize = 10;
const ENTITIES: usize = 20;

/// Number of words in `text` (the validate stage rejects a body with none).
#[wasm_bindgen]
pub fn word_count(text: &str) -> u32 {
    nlp::tokenize::tokens(text).len() as u32
}

/// The chunk stage: sentence-aware chunks with Actorline's defaults, as a
/// JSON array of strings.
#[wasm_bindgen]
pub fn chunk(text: &str) -> String {
    let chunks: Vec<String> = nlp::chunk::chunk_text(
        text,
        nlp::chunk::DEFAULT_CHUNK_CHARS,
        nlp::chunk::DEFAULT_OVERLAP_SENTENCES,
    )
    .into_iter()
    .map(|c| c.text)
    .collect();
    serde_json::to_string(&chunks).unwrap_or_else(|_| "[]".into())
}

/// The embed stage, one chunk: the 384-d feature-hashing embedding.
#[wasm_bindgen]
pub fn embed(text: &str) -> Vec<f32> {
    nlp::embed::embed(text)
}

/// Embedding dimension.
#[wasm_bindgen]
pub fn embed_dim() -> u32 {
    nlp::embed::EMBED_DIM as u32
}

/// The summarize stage: an extractive summary of three sentences.
#[wasm_bindgen]
pub fn summarize(text: &str) -> String {
    nlp::summarize::summarize(text, SUMMARY_SENTENCES)
}

/// The extract stage: `{keywords:[{term,score}], entities:[{text,kind,count}],
/// sentiment:{score,label}}`, as Actorline's `Extraction`.
#[wasm_bindgen]
pub fn extract(text: &str) -> String {
    let s = nlp::sentiment::analyze(text);
    let keywords: Vec<_> = nlp::extract::keywords(text, KEYWORDS)
        .into_iter()
        .map(|k| json!({ "term": k.term, "score": k.score }))
        .collect();
    let entities: Vec<_> = nlp::extract::entities(text, ENTITIES)
        .into_iter()
        .map(|e| json!({ "text": e.text, "kind": e.kind.as_str(), "count": e.count }))
        .collect();
    json!({
        "keywords": keywords,
        "entities": entities,
        "sentiment": { "score": s.score, "label": s.label },
    })
    .to_string()
}
