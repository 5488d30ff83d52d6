//! `chunk`: splits the body into overlapping chunks, the unit of embedding
//! and search.

use super::artifacts::CHUNKS;
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    domain::pipeline::StageError,
    nlp,
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Chunk,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[],
    writes: &[CHUNKS.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) fn run(cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let chunks: Vec<String> = nlp::chunk::chunk_text(
        &cx.doc.body,
        nlp::chunk::DEFAULT_CHUNK_CHARS,
        nlp::chunk::DEFAULT_OVERLAP_SENTENCES,
    )
    .into_iter()
    .map(|c| c.text)
    .collect();
    if chunks.is_empty() {
        return Err(StageError::terminal("body produced no chunks").into());
    }
    Ok(cx.artifacts.put(CHUNKS, &chunks)?)
}
