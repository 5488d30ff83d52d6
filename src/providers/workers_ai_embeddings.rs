//! Workers AI embeddings: the model, its limits, the request and the checks on
//! its answer. Swapping the embedding model is a change to this file (and a
//! re-created Vectorize index of the new dimension).

use serde::{Deserialize, Serialize};

use super::provider_errors::truncate_chars;
use super::token_estimate::token_prefix;
use crate::domain::pipeline::StageError;

pub const EMBED_MODEL: &str = "@cf/baai/bge-base-en-v1.5";
/// Output dimension of bge-base; the Vectorize index is created with it.
pub const EMBED_DIM: usize = 768;
/// The model accepts at most 100 texts per call.
pub const EMBED_BATCH: usize = 100;
/// A cheap first cut before the token estimate reads the text.
pub const EMBED_MAX_CHARS: usize = 2000;
/// bge-base reads "Maximum Input Tokens 512", [CLS] and [SEP] included, and
/// has no truncate option (only bge-m3 has one), so each text is cut to this
/// many *estimated* tokens (see [`super::token_estimate`], which errs high).
/// English chunks of 800 characters estimate at about 250; CJK or code
/// chunks can reach 800+, and only those are cut.
pub const EMBED_MAX_TOKENS: usize = 510;
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
/// [`EMBED_MAX_TOKENS`] estimated tokens. An empty (or all-whitespace) text is malformed input:
/// the model rejects strings shorter than one character.
pub fn embedding_requests(texts: &[String]) -> Result<Vec<EmbeddingRequest<'_>>, StageError> {
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(StageError::terminal(format!("cannot embed text #{i}: it is empty")));
    }
    Ok(texts
        .chunks(EMBED_BATCH)
        .map(|batch| EmbeddingRequest {
            text: batch.iter().map(|t| embedding_input(t)).collect(),
            pooling: EMBED_POOLING,
        })
        .collect())
}

/// The part of `text` the model reads: at most [`EMBED_MAX_TOKENS`]
/// estimated tokens.
pub fn embedding_input(text: &str) -> &str {
    token_prefix(truncate_chars(text, EMBED_MAX_CHARS), EMBED_MAX_TOKENS).0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorClass;
    use serde_json::json;

    #[test]
    fn embedding_requests_batch_by_100_and_cut_long_texts() {
        let texts: Vec<String> = (0..250).map(|i| format!("text {i}")).collect();
        let reqs = embedding_requests(&texts).unwrap();
        assert_eq!(reqs.iter().map(|r| r.text.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
        assert_eq!(reqs[2].text[49], "text 249");

        let long = vec!["word ".repeat(EMBED_MAX_CHARS)];
        let reqs = embedding_requests(&long).unwrap();
        assert!(reqs[0].text[0].chars().count() <= EMBED_MAX_CHARS);

        let v = serde_json::to_value(&reqs[0]).unwrap();
        assert!(v["text"].is_array());
        assert_eq!(v["pooling"], "cls");
    }

    #[test]
    fn long_cjk_and_code_inputs_are_cut_to_the_token_cap() {
        use crate::providers::token_estimate::estimate_tokens;
        // 1,600 characters: the longest chunk the chunker makes.
        let cjk = "東京は日本の首都であり、人口は約一千四百万人です。".repeat(64);
        let code = "fn main() { let xs: Vec<u32> = (0..10).map(|x| x * 2).collect(); }\n".repeat(24);
        let english = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(12);
        for (name, text) in [("cjk", &cjk), ("code", &code)] {
            assert!(estimate_tokens(text) > EMBED_MAX_TOKENS, "{name} is over the cap");
            let cut = embedding_input(text);
            assert!(estimate_tokens(cut) <= EMBED_MAX_TOKENS, "{name}");
            assert!(estimate_tokens(cut) > EMBED_MAX_TOKENS - 40, "{name}: the cut keeps most of the budget");
            assert!(text.starts_with(cut));
        }
        // Each CJK character is one token at least: 510 of them at most.
        assert!(embedding_input(&cjk).chars().count() <= EMBED_MAX_TOKENS);
        // An ordinary English chunk passes whole.
        assert_eq!(embedding_input(&english), english.as_str());
        let reqs = embedding_requests(std::slice::from_ref(&cjk)).unwrap();
        assert_eq!(reqs[0].text[0], embedding_input(&cjk));
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
}
