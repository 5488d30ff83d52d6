//! Providers: the pipeline's outside help, each behind a trait with an
//! embedded (offline) backend and a Cloudflare one. Vars pick the backend
//! (`EMBED_BACKEND`, `TEXT_BACKEND`, both defaulting to `AI_BACKEND`;
//! `VECTOR_BACKEND`; `ANALYZER`); `/healthz` reports the choice.
//!
//! Traits use `async fn` without `Send`: a Worker is single-threaded, and
//! dispatch is static (an enum per concern), so no boxing is needed.

pub mod backend_choice;
pub mod local_ai;
pub mod provider_errors;
pub mod token_estimate;
pub mod types;
pub mod vectorize_delete_plan;
pub mod vectorize_payloads;
pub mod workers_ai_answer;
pub mod workers_ai_embeddings;
pub mod workers_ai_text;

#[cfg(target_arch = "wasm32")]
pub mod actor_index;
#[cfg(target_arch = "wasm32")]
pub mod backends;
#[cfg(target_arch = "wasm32")]
pub mod analyzer_http;
#[cfg(target_arch = "wasm32")]
pub mod object_store;
#[cfg(target_arch = "wasm32")]
pub mod streams;
#[cfg(target_arch = "wasm32")]
pub mod vectorize;
#[cfg(target_arch = "wasm32")]
pub mod workers_ai;

#[cfg(target_arch = "wasm32")]
pub use backends::{Backend, EmbedBackend, TextBackend, VectorBackend};
#[cfg(target_arch = "wasm32")]
pub use vectorize::Vectorize;
#[cfg(target_arch = "wasm32")]
pub use workers_ai::WorkersAi;

pub use types::*;

/// The Cloudflare names the deploy steps (README, wrangler.toml) must repeat
/// exactly; `tests/deploy.rs` checks them. Keep these re-exports stable.
pub use vectorize_payloads::METADATA_INDEXES;
pub use workers_ai_embeddings::{EMBED_DIM, EMBED_MODEL};
pub use workers_ai_text::TEXT_MODEL;

use crate::domain::pipeline::StageError;

#[allow(async_fn_in_trait)]
pub trait Embedder {
    fn backend(&self) -> &'static str;
    /// Dimension of the vectors `embed` returns; the vector backend is
    /// built for it.
    fn dim(&self) -> usize;
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StageError>;
}

/// What a text model does when its service is rate limited or out of
/// capacity: the stage waits it out while it has attempts left, and on its
/// last one takes the local result instead of failing the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRateLimit {
    Retry,
    Fallback,
}

#[allow(async_fn_in_trait)]
pub trait TextModel {
    async fn summarize(&self, text: &str, on_limit: OnRateLimit) -> Result<String, StageError>;
    async fn extract(&self, text: &str, on_limit: OnRateLimit) -> Result<Extraction, StageError>;
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

    /// After `ids` (one version's vectors) were sent with [`Self::upsert`]:
    /// waits until the backend applied them, where it applies writes later,
    /// then drops every other version's. [`Self::replace_content`] is an
    /// upsert and this; the index stage calls them apart on such a backend,
    /// so that a retry does not send the same write again.
    async fn settle_sent(&self, content_id: &str, version: u32, _ids: &[String]) -> Result<(), StageError> {
        self.delete_content(content_id, Some(version)).await.map(|_| ())
    }

    /// Whether a write of a deleted or superseded version is refused by the
    /// backend itself (the embedded shards fence it). If not (Vectorize), the
    /// index stage asks again after its write and, if the version is no
    /// longer current, [`Self::take_back`]s it.
    fn fences_writes(&self) -> bool {
        true
    }

    /// Removes exactly these vectors: a write the index stage takes back. A
    /// fencing backend never stored one to take back.
    async fn take_back(&self, _ids: &[String]) -> Result<(), StageError> {
        Ok(())
    }
}

#[allow(async_fn_in_trait)]
pub trait DocumentAnalyzer {
    async fn analyze(&self, req: &AnalyzeRequest) -> Result<serde_json::Value, StageError>;
    /// The text of the uploaded PDF stored under `key` (object store).
    async fn extract_pdf(&self, key: &str) -> Result<String, StageError>;
}

/// The backends chosen for this request, by vars (see [`backend_choice`]).
#[cfg(target_arch = "wasm32")]
pub struct Providers {
    pub embedder: EmbedBackend,
    pub text: TextBackend,
    pub vectors: VectorBackend,
    pub analyzer: analyzer_http::AnalyzerActorClient,
}

#[cfg(target_arch = "wasm32")]
impl Providers {
    /// `EMBED_BACKEND` / `TEXT_BACKEND` (default `AI_BACKEND`) and
    /// `VECTOR_BACKEND` pick each backend, built once. A Cloudflare backend
    /// whose binding is missing is unavailable, never replaced by a local
    /// one: see [`Providers::problems`].
    pub fn from_config(env: &worker::Env, cfg: &crate::config::Config) -> Self {
        let embedder = EmbedBackend::embedder(env, cfg);
        let vectors = VectorBackend::vectors(env, cfg, &embedder);
        Providers {
            text: TextBackend::text_model(env, cfg),
            embedder,
            vectors,
            analyzer: analyzer_http::AnalyzerActorClient::new(env.clone()),
        }
    }

    /// Each unavailable provider with the reason, for `/healthz`.
    pub fn problems(&self) -> Vec<(&'static str, &str)> {
        [("embedder", self.embedder.problem()), ("text", self.text.problem()), ("vectors", self.vectors.problem())]
            .into_iter()
            .filter_map(|(name, why)| why.map(|w| (name, w)))
            .collect()
    }
}
