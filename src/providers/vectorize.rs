//! The Vectorize backend (`VECTOR_BACKEND=vectorize`). workers-rs has no
//! Vectorize type, so the binding is declared here as a wasm-bindgen extern
//! type and fetched with `env.get_binding`. Payloads and result parsing live
//! in [`super::vectorize_payloads`], the cleanup plan in
//! [`super::vectorize_delete_plan`] (both tested natively).
//!
//! The index must match the embedder: `--dimensions=768 --metric=cosine` for
//! bge-base, with metadata indexes on `content_id`, `category`, `version` and
//! `chunk`, created *before* vectors are written (see the commands in
//! `vectorize_payloads.rs`). Without the `category` index, category-filtered
//! searches return nothing; without `content_id`/`version`/`chunk`, replaced
//! and deleted content leaves its old vectors behind, and since queries ask
//! for `returnMetadata: "indexed"`, matches lack the fields they need and are
//! skipped.
//!
//! Vectorize writes apply asynchronously, so `replace_content` waits until
//! its write is visible (see there): once the index stage completes, a
//! search finds the vectors and a later sweep removes them.

use js_sys::{Array, Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::Env;

use super::vectorize_delete_plan::DeletePlan;
use super::vectorize_payloads as payloads;
use super::workers_ai::{from_js, settle, to_js};
use super::{VectorIndex, VectorItem, VectorMatch, VectorQuery};
use crate::domain::pipeline::StageError;

#[wasm_bindgen]
extern "C" {
    /// A Vectorize (V2) index binding.
    #[wasm_bindgen(extends = js_sys::Object, is_type_of = JsValue::is_object)]
    #[derive(Debug, Clone)]
    pub type VectorizeBinding;

    #[wasm_bindgen(method, structural, catch)]
    fn upsert(this: &VectorizeBinding, vectors: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, structural, catch)]
    fn query(this: &VectorizeBinding, vector: &JsValue, options: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, structural, catch, js_name = deleteByIds)]
    fn delete_by_ids(this: &VectorizeBinding, ids: &JsValue) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, structural, catch, js_name = getByIds)]
    fn get_by_ids(this: &VectorizeBinding, ids: &JsValue) -> Result<Promise, JsValue>;
}

impl worker::EnvBinding for VectorizeBinding {
    /// The runtime class name; not relied upon (see `get`).
    const TYPE_NAME: &'static str = "VectorizeIndexImpl";

    /// Accepts any object with a `query` method: the class behind the binding
    /// differs between the runtime and local or remote-proxy setups, so the
    /// default constructor-name check would reject a working binding.
    fn get(val: JsValue) -> worker::Result<Self> {
        let has_query = js_sys::Reflect::get(&val, &JsValue::from_str("query")).is_ok_and(|f| f.is_function());
        if val.is_object() && has_query {
            Ok(val.unchecked_into())
        } else {
            Err(worker::Error::JsError("binding is not a Vectorize index".into()))
        }
    }
}

pub struct Vectorize {
    index: VectorizeBinding,
    dim: usize,
}

impl Vectorize {
    pub fn new(index: VectorizeBinding, dim: usize) -> Self {
        Vectorize { index, dim }
    }

    pub fn from_env(env: &Env, binding: &str, dim: usize) -> Option<Self> {
        env.get_binding::<VectorizeBinding>(binding).ok().map(|b| Self::new(b, dim))
    }

    async fn query_raw(
        &self,
        vector: &[f32],
        options: &payloads::QueryOptions,
    ) -> Result<Vec<VectorMatch>, StageError> {
        let what = "vectorize query";
        let options = to_js(what, options)?;
        let vector: JsValue = Float32Array::from(vector).into();
        let raw = settle(what, self.index.query(&vector, &options)).await?;
        let value: serde_json::Value = from_js(what, raw)?;
        payloads::parse_query_matches(&value)
    }

    async fn delete_ids(&self, ids: &[String]) -> Result<(), StageError> {
        for batch in ids.chunks(payloads::DELETE_IDS_BATCH) {
            settle("vectorize deleteByIds", self.index.delete_by_ids(&id_array(batch))).await?;
        }
        Ok(())
    }

    /// Waits until every `probes` id is found: one id per upsert call, whose
    /// vectors Vectorize applies together. Past [`payloads::VISIBLE_WAIT_MS`]
    /// the write counts as failed for now, and the stage's retry waits for
    /// it again (without sending it again: see `stages::index`).
    async fn until_visible(&self, probes: &[String]) -> Result<(), StageError> {
        let deadline = crate::runtime::now_ms() + payloads::VISIBLE_WAIT_MS;
        loop {
            let mut visible = true;
            for batch in probes.chunks(payloads::GET_IDS_BATCH) {
                let raw = settle("vectorize getByIds", self.index.get_by_ids(&id_array(batch))).await?;
                let found: Vec<serde::de::IgnoredAny> = from_js("vectorize getByIds", raw)?;
                visible &= found.len() >= batch.len();
            }
            if visible {
                return Ok(());
            }
            if crate::runtime::now_ms() >= deadline {
                return Err(StageError::transient(format!(
                    "vectorize: the write is not visible after {} ms",
                    payloads::VISIBLE_WAIT_MS
                )));
            }
            worker::Delay::from(std::time::Duration::from_millis(payloads::VISIBLE_POLL_MS)).await;
        }
    }
}

impl VectorIndex for Vectorize {
    fn backend(&self) -> &'static str {
        "vectorize"
    }

    async fn upsert(&self, items: Vec<VectorItem>) -> Result<(), StageError> {
        for batch in payloads::upsert_batches(&items, self.dim)? {
            let payload = to_js("vectorize upsert", &batch)?;
            settle("vectorize upsert", self.index.upsert(&payload)).await?;
        }
        Ok(())
    }

    async fn query(&self, q: &VectorQuery) -> Result<Vec<VectorMatch>, StageError> {
        let options = payloads::search_query_options(q, self.dim)?;
        let mut hits = self.query_raw(&q.vector, &options).await?;
        hits.truncate(q.top_k as usize);
        Ok(hits)
    }

    /// Writes, waits until the write is visible, then sweeps the other
    /// versions. Vectorize applies writes later and its sweep sees only
    /// applied ones, so once this returns, a later sweep (a newer version's,
    /// or a `DELETE`'s) finds these vectors; the index stage takes back a
    /// write whose version stopped being current before that.
    async fn replace_content(&self, content_id: &str, version: u32, items: Vec<VectorItem>) -> Result<(), StageError> {
        let ids: Vec<String> = items.iter().map(|it| it.id.clone()).collect();
        self.upsert(items).await?;
        self.settle_sent(content_id, version, &ids).await
    }

    /// One probe per upsert call (whose vectors Vectorize applies together)
    /// must be found before the sweep.
    async fn settle_sent(&self, content_id: &str, version: u32, ids: &[String]) -> Result<(), StageError> {
        let probes: Vec<String> = ids.chunks(payloads::UPSERT_BATCH).filter_map(|b| b.first()).cloned().collect();
        self.until_visible(&probes).await?;
        self.delete_content(content_id, Some(version)).await.map(|_| ())
    }

    fn fences_writes(&self) -> bool {
        false
    }

    async fn take_back(&self, ids: &[String]) -> Result<(), StageError> {
        self.delete_ids(ids).await
    }

    async fn delete_content(&self, content_id: &str, keep_version: Option<u32>) -> Result<u32, StageError> {
        let probe = payloads::unit_vector(self.dim);
        let mut plan = DeletePlan::new(content_id, keep_version);
        while let Some(options) = plan.next_query()? {
            let hits = self.query_raw(&probe, &options).await?;
            let ids = plan.apply(&hits);
            if !ids.is_empty() {
                self.delete_ids(&ids).await?;
            }
        }
        Ok(plan.removed())
    }
}

/// Ids as the binding's `deleteByIds` and `getByIds` take them: a JS array of strings.
fn id_array(ids: &[String]) -> JsValue {
    ids.iter().map(|id| JsValue::from_str(id)).collect::<Array>().into()
}
