//! The backend of each provider, as chosen by [`super::backend_choice`]:
//! one generic enum, dispatched statically. An `Unavailable` backend fails
//! every call terminally with the reason it is unavailable.

use worker::Env;

use super::actor_index::ActorIndex;
use super::backend_choice as choice;
use super::local_ai::LocalAi;
use super::vectorize::Vectorize;
use super::workers_ai::WorkersAi;
use super::{Embedder, Extraction, OnRateLimit, TextModel, VectorIndex, VectorItem, VectorMatch, VectorQuery};
use crate::config::{binding, Config};
use crate::domain::pipeline::StageError;

/// The name `backend()` reports for an unavailable provider.
pub const UNAVAILABLE: &str = "unavailable";

/// A provider's embedded backend `E`, its Cloudflare backend `C`, or why
/// the one asked for cannot be used.
pub enum Backend<E, C> {
    Embedded(E),
    Cloudflare(C),
    Unavailable(String),
}

pub type EmbedBackend = Backend<LocalAi, WorkersAi>;
pub type TextBackend = Backend<LocalAi, WorkersAi>;
pub type VectorBackend = Backend<ActorIndex, Vectorize>;

impl<E, C> Backend<E, C> {
    fn build(choice: Result<Option<C>, String>, embedded: impl FnOnce() -> E) -> Self {
        match choice {
            Ok(None) => Backend::Embedded(embedded()),
            Ok(Some(c)) => Backend::Cloudflare(c),
            Err(why) => Backend::Unavailable(why),
        }
    }

    pub fn problem(&self) -> Option<&str> {
        match self {
            Backend::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    fn unavailable<T>(why: &str) -> Result<T, StageError> {
        Err(StageError::terminal(why.to_string()))
    }
}

impl EmbedBackend {
    /// `EMBED_BACKEND` (default `AI_BACKEND`).
    pub fn embedder(env: &Env, cfg: &Config) -> Self {
        Self::ai("EMBED_BACKEND", &cfg.embed_backend, env)
    }

    /// `TEXT_BACKEND` (default `AI_BACKEND`).
    pub fn text_model(env: &Env, cfg: &Config) -> Self {
        Self::ai("TEXT_BACKEND", &cfg.text_backend, env)
    }

    fn ai(var: &str, value: &str, env: &Env) -> Self {
        let ai = WorkersAi::from_env(env, binding::AI);
        Self::build(choice::choose_ai(var, value, ai.is_some()).resolve(ai), || LocalAi)
    }

    /// `local`, `workers-ai` or `unavailable`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => choice::AI_LOCAL,
            Backend::Cloudflare(_) => choice::AI_WORKERS_AI,
            Backend::Unavailable(_) => UNAVAILABLE,
        }
    }
}

impl VectorBackend {
    /// `VECTOR_BACKEND`. Vectorize is given the embedder's dimension, and is
    /// unavailable unless that is the index's.
    pub fn vectors(env: &Env, cfg: &Config, embedder: &EmbedBackend) -> Self {
        let dim = embedder.problem().is_none().then(|| embedder.dim());
        let index = Vectorize::from_env(env, binding::VECTORIZE, dim.unwrap_or(choice::VECTORIZE_INDEX_DIM));
        let chosen = choice::choose_vectors(&cfg.vector_backend, index.is_some(), dim).resolve(index);
        Self::build(chosen, || ActorIndex::new(env.clone(), cfg.vector_shards))
    }
}

impl<E: Embedder, C: Embedder> Embedder for Backend<E, C> {
    fn backend(&self) -> &'static str {
        match self {
            Backend::Embedded(e) => e.backend(),
            Backend::Cloudflare(c) => c.backend(),
            Backend::Unavailable(_) => UNAVAILABLE,
        }
    }

    fn dim(&self) -> usize {
        match self {
            Backend::Embedded(e) => e.dim(),
            Backend::Cloudflare(c) => c.dim(),
            Backend::Unavailable(_) => 0,
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StageError> {
        match self {
            Backend::Embedded(e) => e.embed(texts).await,
            Backend::Cloudflare(c) => c.embed(texts).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }
}

impl<E: TextModel, C: TextModel> TextModel for Backend<E, C> {
    async fn summarize(&self, text: &str, on_limit: OnRateLimit) -> Result<String, StageError> {
        match self {
            Backend::Embedded(e) => e.summarize(text, on_limit).await,
            Backend::Cloudflare(c) => c.summarize(text, on_limit).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    async fn extract(&self, text: &str, on_limit: OnRateLimit) -> Result<Extraction, StageError> {
        match self {
            Backend::Embedded(e) => e.extract(text, on_limit).await,
            Backend::Cloudflare(c) => c.extract(text, on_limit).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }
}

impl<E: VectorIndex, C: VectorIndex> VectorIndex for Backend<E, C> {
    fn backend(&self) -> &'static str {
        match self {
            Backend::Embedded(e) => e.backend(),
            Backend::Cloudflare(c) => c.backend(),
            Backend::Unavailable(_) => UNAVAILABLE,
        }
    }

    async fn upsert(&self, items: Vec<VectorItem>) -> Result<(), StageError> {
        match self {
            Backend::Embedded(e) => e.upsert(items).await,
            Backend::Cloudflare(c) => c.upsert(items).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    async fn query(&self, q: &VectorQuery) -> Result<Vec<VectorMatch>, StageError> {
        match self {
            Backend::Embedded(e) => e.query(q).await,
            Backend::Cloudflare(c) => c.query(q).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    async fn delete_content(&self, content_id: &str, keep_version: Option<u32>) -> Result<u32, StageError> {
        match self {
            Backend::Embedded(e) => e.delete_content(content_id, keep_version).await,
            Backend::Cloudflare(c) => c.delete_content(content_id, keep_version).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    async fn replace_content(&self, content_id: &str, version: u32, items: Vec<VectorItem>) -> Result<(), StageError> {
        match self {
            Backend::Embedded(e) => e.replace_content(content_id, version, items).await,
            Backend::Cloudflare(c) => c.replace_content(content_id, version, items).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    async fn settle_sent(&self, content_id: &str, version: u32, ids: &[String]) -> Result<(), StageError> {
        match self {
            Backend::Embedded(e) => e.settle_sent(content_id, version, ids).await,
            Backend::Cloudflare(c) => c.settle_sent(content_id, version, ids).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }

    fn fences_writes(&self) -> bool {
        match self {
            Backend::Embedded(e) => e.fences_writes(),
            Backend::Cloudflare(c) => c.fences_writes(),
            Backend::Unavailable(_) => true,
        }
    }

    async fn take_back(&self, ids: &[String]) -> Result<(), StageError> {
        match self {
            Backend::Embedded(e) => e.take_back(ids).await,
            Backend::Cloudflare(c) => c.take_back(ids).await,
            Backend::Unavailable(why) => Self::unavailable(why),
        }
    }
}
