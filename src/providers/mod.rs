//! Providers: the pipeline's outside help, each behind a trait with an
//! embedded (offline) backend and a Cloudflare one. Vars pick the backend
//! (`AI_BACKEND`, `VECTOR_BACKEND`, `ANALYZER`); `/healthz` reports the choice.
//!
//! Traits use `async fn` without `Send`: a Worker is single-threaded, and
//! dispatch is static (an enum per concern), so no boxing is needed.

pub mod local_ai;
pub mod types;

#[cfg(target_arch = "wasm32")]
pub mod actor_index;
#[cfg(target_arch = "wasm32")]
pub mod analyzer_http;

pub use types::*;

use crate::domain::pipeline::StageError;

#[allow(async_fn_in_trait)]
pub trait Embedder {
    fn backend(&self) -> &'static str;
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StageError>;
}

#[allow(async_fn_in_trait)]
pub trait TextModel {
    async fn summarize(&self, text: &str) -> Result<String, StageError>;
    async fn extract(&self, text: &str) -> Result<Extraction, StageError>;
}

#[allow(async_fn_in_trait)]
pub trait VectorIndex {
    fn backend(&self) -> &'static str;
    async fn upsert(&self, items: Vec<VectorItem>) -> Result<(), StageError>;
    async fn query(&self, q: &VectorQuery) -> Result<Vec<VectorMatch>, StageError>;
    /// Removes a content's vectors, keeping `keep_version` when given: a new
    /// version replaces the old one's vectors instead of adding to them.
    async fn delete_content(&self, content_id: &str, keep_version: Option<u32>) -> Result<u32, StageError>;
}

#[allow(async_fn_in_trait)]
pub trait DocumentAnalyzer {
    async fn analyze(&self, req: &AnalyzeRequest) -> Result<serde_json::Value, StageError>;
}

/// The backends chosen for this request, by vars.
#[cfg(target_arch = "wasm32")]
pub struct Providers {
    pub embedder: local_ai::LocalAi,
    pub text: local_ai::LocalAi,
    pub vectors: actor_index::ActorIndex,
    pub analyzer: analyzer_http::AnalyzerActorClient,
}

#[cfg(target_arch = "wasm32")]
impl Providers {
    pub fn from_config(env: &worker::Env, cfg: &crate::config::Config) -> Self {
        Providers {
            embedder: local_ai::LocalAi,
            text: local_ai::LocalAi,
            vectors: actor_index::ActorIndex::new(env.clone(), cfg.vector_shards),
            analyzer: analyzer_http::AnalyzerActorClient::new(env.clone()),
        }
    }
}
