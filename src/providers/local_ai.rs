//! The embedded AI backend: deterministic, offline, and cheap enough to run
//! inside the Worker (see `crate::nlp`). It is the default, not a mock: search
//! quality figures in docs/benchmarks.md are measured with it.

use super::{Embedder, Extraction, OnRateLimit, TextModel};
use crate::domain::pipeline::StageError;
use crate::nlp;
use crate::protocol::{Entity, Keyword, Sentiment};

#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAi;

pub const SUMMARY_SENTENCES: usize = 3;

impl Embedder for LocalAi {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn dim(&self) -> usize {
        nlp::embed::EMBED_DIM
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StageError> {
        Ok(texts.iter().map(|t| nlp::embed::embed(t)).collect())
    }
}

impl TextModel for LocalAi {
    async fn summarize(&self, text: &str, _: OnRateLimit) -> Result<String, StageError> {
        Ok(nlp::summarize::summarize(text, SUMMARY_SENTENCES))
    }

    async fn extract(&self, text: &str, _: OnRateLimit) -> Result<Extraction, StageError> {
        Ok(extract_local(text))
    }
}

pub fn extract_local(text: &str) -> Extraction {
    let s = nlp::sentiment::analyze(text);
    Extraction {
        keywords: nlp::extract::keywords(text, 10)
            .into_iter()
            .map(|k| Keyword { term: k.term, score: k.score })
            .collect(),
        entities: nlp::extract::entities(text, 20)
            .into_iter()
            .map(|e| Entity { text: e.text, kind: e.kind.as_str().to_string(), count: e.count })
            .collect(),
        sentiment: Sentiment { score: s.score, label: s.label.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_is_filled_for_real_text() {
        let x = extract_local(
            "Marie Curie worked at the University of Paris. Her research on radioactivity was brilliant and won praise.",
        );
        assert!(!x.keywords.is_empty());
        assert!(x.entities.iter().any(|e| e.text.contains("Curie")));
        assert!(x.sentiment.score > 0.0);
    }
}
