//! `embed`: one vector per chunk, stored as a compact blob.

use super::artifacts::{CHUNKS, DIM, VECTORS};
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    domain::pipeline::StageError,
    providers::{Embedder, Providers},
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Embed,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[CHUNKS.key],
    writes: &[DIM.key, VECTORS.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let chunks = cx.artifacts.get(CHUNKS)?;
    let vectors = p.embedder.embed(&chunks).await?;
    if vectors.len() != chunks.len() {
        return Err(StageError::transient(format!("embedder returned {} vectors for {} chunks", vectors.len(), chunks.len())).into());
    }
    let dim = vectors.first().map(|v| v.len()).unwrap_or(0);
    if dim == 0 || vectors.iter().any(|v| v.len() != dim) {
        return Err(StageError::transient("embedder returned vectors of mixed dimensions").into());
    }
    let flat: Vec<f32> = vectors.into_iter().flatten().collect();
    cx.artifacts.put(DIM, &dim)?;
    Ok(cx.artifacts.put_blob(VECTORS, &flat)?)
}
