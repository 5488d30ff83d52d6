//! `index`: writes the run's vectors to the vector index, if its version is
//! still the item's current one.

use super::artifacts::{DIM, INDEX_SENT, NAMESPACE, VECTORS};
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    actors::ops::Fence,
    actors::rpc,
    domain::principal::PUBLIC_NAMESPACE,
    domain::vector::vector_id,
    providers::{Providers, VectorIndex, VectorItem, VectorMeta},
    stages::runtime::superseded_or_transient,
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Index,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    max_attempts: None,
    reads: &[DIM.key, VECTORS.key, NAMESPACE.key],
    writes: &[INDEX_SENT.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let dim = cx.artifacts.get(DIM)?;
    let flat = cx.artifacts.get_blob(VECTORS)?;
    let cid = cx.run.content_id.to_string();
    // Runs started before tenants existed index into the public namespace.
    let namespace = cx.artifacts.get_opt(NAMESPACE).unwrap_or_else(|| PUBLIC_NAMESPACE.to_string());
    let items: Vec<VectorItem> = flat
        .chunks(dim.max(1))
        .enumerate()
        .map(|(i, v)| VectorItem {
            id: vector_id(&cid, cx.run.version, i as u32),
            namespace: namespace.clone(),
            values: v.to_vec(),
            meta: VectorMeta { content_id: cid.clone(), version: cx.run.version, chunk: i as u32, category: cx.doc.category.clone() },
        })
        .collect();
    // A backend without a fence (Vectorize) stores a write whatever became of
    // the version meanwhile, and a `DELETE` or newer version that swept while
    // the write was not yet visible missed it. So this stage asks again once
    // the write is visible, and takes it back if the version stopped being
    // current. An earlier attempt may have written it too: the first ask
    // takes back as well.
    let written = (!p.vectors.fences_writes()).then(|| items.iter().map(|it| it.id.clone()).collect::<Vec<_>>());
    require_current(cx, p, written.as_deref()).await?;
    match &written {
        None => p.vectors.replace_content(&cid, cx.run.version, items).await?,
        Some(ids) => {
            // Such a backend queues a write and applies it later, in
            // batches that can lag far behind under a bulk import: a retry
            // after the wait for it ran out waits again rather than
            // sending the same write once more.
            if cx.artifacts.get_opt(INDEX_SENT) != Some(cx.run.version) {
                p.vectors.upsert(items).await?;
                cx.artifacts.put(INDEX_SENT, &cx.run.version)?;
            }
            p.vectors.settle_sent(&cid, cx.run.version, ids).await?;
        }
    }
    if written.is_some() {
        require_current(cx, p, written.as_deref()).await?;
    }
    Ok(())
}

/// Asks the content actor whether this run's version may still write the
/// indexes (a fencing backend asks again at the write itself). If not, the
/// vectors `written` under that version, if any, are taken back.
#[cfg(target_arch = "wasm32")]
async fn require_current(cx: &StageContext<'_>, p: &Providers, written: Option<&[String]>) -> Result<(), StageFailure> {
    let r = rpc::send(cx.env, &cx.run.content_id.to_string(), &Fence { version: cx.run.version }).await;
    match r.map(|_| ()).map_err(superseded_or_transient) {
        Err(StageFailure::Superseded(reason)) => {
            if let Some(ids) = written {
                p.vectors.take_back(ids).await?;
            }
            Err(StageFailure::Superseded(reason))
        }
        other => other,
    }
}
