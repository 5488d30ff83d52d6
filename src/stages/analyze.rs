//! `analyze`: the analyzer container's report on the document. The one
//! optional stage: the run is published without it when the analyzer is down.

use super::artifacts::{ANALYSIS, NAMESPACE};
use super::StageSpec;
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    domain::principal::PUBLIC_NAMESPACE,
    providers::{AnalyzeRequest, DocumentAnalyzer, Providers},
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Analyze,
    // An external service behind a circuit breaker: a few quick tries, then
    // the run goes on without it.
    optional: true,
    timeout_ms: 10_000,
    max_attempts: Some(3),
    reads: &[NAMESPACE.key],
    writes: &[ANALYSIS.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let req = AnalyzeRequest {
        id: cx.run.content_id.to_string(),
        version: cx.run.version,
        title: cx.doc.title.clone(),
        text: cx.doc.body.clone(),
        scope: cx.artifacts.get_opt(NAMESPACE).unwrap_or_else(|| PUBLIC_NAMESPACE.to_string()),
    };
    let analysis = p.analyzer.analyze(&req).await?;
    Ok(cx.artifacts.put(ANALYSIS, &analysis)?)
}
