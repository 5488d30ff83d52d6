//! `publish`: hands the run's outputs to the content actor, which makes them
//! the item's current artifacts unless a newer version got there first.

use super::artifacts::{ANALYSIS, CHUNKS, EXTRACTION, SUMMARY};
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    actors::ops::Publish,
    actors::rpc,
    domain::content::Artifacts,
    stages::runtime::superseded_or_transient,
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Publish,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[CHUNKS.key, SUMMARY.key, EXTRACTION.key, ANALYSIS.key],
    writes: &[],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let chunks = cx.artifacts.get(CHUNKS)?;
    let extraction = cx.artifacts.get_opt(EXTRACTION);
    let artifacts = Artifacts {
        version: cx.run.version,
        chunks: chunks.len() as u32,
        summary: cx.artifacts.get_opt(SUMMARY),
        keywords: extraction.as_ref().map(|x| x.keywords.clone()).unwrap_or_default(),
        entities: extraction.as_ref().map(|x| x.entities.clone()).unwrap_or_default(),
        sentiment: extraction.map(|x| x.sentiment),
        analysis: cx.artifacts.get_opt(ANALYSIS),
        text: cx.doc.source.as_ref().map(|_| cx.doc.body.clone()),
    };
    let r = rpc::send(cx.env, &cx.run.content_id.to_string(), &Publish { run_id: cx.run.id, artifacts }).await;
    r.map(|_| ()).map_err(superseded_or_transient)
}
