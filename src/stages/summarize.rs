//! `summarize`: a short summary of the body from the text model.

use super::artifacts::SUMMARY;
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    providers::{Providers, TextModel},
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Summarize,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[],
    writes: &[SUMMARY.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let summary = p.text.summarize(&cx.doc.body, cx.on_rate_limit(Stage::Summarize)).await?;
    Ok(cx.artifacts.put(SUMMARY, &summary)?)
}
