//! Providers: the pipeline's outside help, each behind a trait with an
//! embedded (offline) backend and a Cloudflare one. Vars pick the backend
//! (`AI_BACKEND`, `VECTOR_BACKEND`, `ANALYZER`); `/healthz` reports the choice.
//!
//! Traits use `async fn` without `Send`: a Worker is single-threaded, and
//! dispatch is static (an enum per concern), so no boxing is needed.

pub mod local_ai;
pub mod mapping;
pub mod types;

#[cfg(target_arch = "wasm32")]
pub mod actor_index;
#[cfg(target_arch = "wasm32")]
pub mod analyzer_http;
#[cfg(target_arch = "wasm32")]
pub mod vectorize;
#[cfg(target_arch = "wasm32")]
pub mod workers_ai;

#[cfg(target_arch = "wasm32")]
pub use vectorize::{VectorBackend, Vectorize};
#[cfg(target_arch = "wasm32")]
pub use workers_ai::{AiBackend, WorkersAi};

pub use types::*;

/// The Cloudflare names the deploy steps (README, wrangler.toml) must repeat
/// exactly; `tests/deploy.rs` checks them. Keep these re-exports stable.
pub use mapping::{EMBED_DIM, EMBED_MODEL, METADATA_INDEXES, TEXT_MODEL};

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

    /// Stores one version's vectors, then drops every other version's, so a
    /// search never sees the content without vectors. A backend that can do
    /// both in one call overrides this.
    async fn replace_content(&self, content_id: &str, version: u32, items: Vec<VectorItem>) -> Result<(), StageError> {
        self.upsert(items).await?;
        self.delete_content(content_id, Some(version)).await.map(|_| ())
    }
}

#[allow(async_fn_in_trait)]
pub trait DocumentAnalyzer {
    async fn analyze(&self, req: &AnalyzeRequest) -> Result<serde_json::Value, StageError>;
}

/// The backends chosen for this request, by vars.
#[cfg(target_arch = "wasm32")]
pub struct Providers {
    pub embedder: AiBackend,
    pub text: AiBackend,
    pub vectors: VectorBackend,
    pub analyzer: analyzer_http::AnalyzerActorClient,
}

#[cfg(target_arch = "wasm32")]
impl Providers {
    /// `AI_BACKEND=workers-ai` and `VECTOR_BACKEND=vectorize` pick the
    /// Cloudflare backends; a missing binding falls back to the embedded one
    /// (and `backend()` says so). Vectorize is used only with the 768-d
    /// Workers AI embedder its index is built for.
    pub fn from_config(env: &worker::Env, cfg: &crate::config::Config) -> Self {
        let embedder = AiBackend::from_config(env, cfg);
        let vectors = VectorBackend::from_config(env, cfg, &embedder);
        Providers {
            text: AiBackend::from_config(env, cfg),
            embedder,
            vectors,
            analyzer: analyzer_http::AnalyzerActorClient::new(env.clone()),
        }
    }
}
