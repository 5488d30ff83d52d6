//! `extract`: keywords, entities and sentiment of the title and body from
//! the text model.

use super::artifacts::EXTRACTION;
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    providers::{Providers, TextModel},
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Extract,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[],
    writes: &[EXTRACTION.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let x = p.text.extract(&format!("{}.\n{}", cx.doc.title, cx.doc.body), cx.on_rate_limit(Stage::Extract)).await?;
    Ok(cx.artifacts.put(EXTRACTION, &x)?)
}
