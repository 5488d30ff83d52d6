//! Which backend serves each provider, from the settings and the bindings
//! present. Pure, so the rules are tested natively; `Providers::from_config`
//! builds what this decides.
//!
//! No silent fallback: a Cloudflare backend asked for but not usable (its
//! binding missing, or Vectorize without an embedder of the index's
//! dimension) is `Unavailable` with the reason. `/healthz` reports it as
//! degraded, and every call to it fails terminally with that reason, so runs
//! dead-letter saying why instead of writing to a second, local store.

use super::workers_ai_embeddings::EMBED_DIM;
use crate::config::binding;

/// `EMBED_BACKEND`, `TEXT_BACKEND` (and `AI_BACKEND`) values.
pub const AI_LOCAL: &str = "local";
pub const AI_WORKERS_AI: &str = "workers-ai";
/// `VECTOR_BACKEND` values.
pub const VECTORS_ACTOR: &str = "actor";
pub const VECTORS_VECTORIZE: &str = "vectorize";


/// The dimension the Vectorize index is created with (README deploy steps):
/// the Workers AI embedder's.
pub const VECTORIZE_INDEX_DIM: usize = EMBED_DIM;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The embedded backend (`local` AI, `actor` shards).
    Embedded,
    /// The Cloudflare backend (Workers AI, Vectorize).
    Cloudflare,
    /// Asked for, but not usable: why.
    Unavailable(String),
}

impl Choice {
    pub fn problem(&self) -> Option<&str> {
        match self {
            Choice::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// Resolves the choice against the Cloudflare backend built from its
    /// binding: `Ok(None)` for the embedded backend, `Ok(Some(_))` for the
    /// Cloudflare one, `Err(why)` when unavailable.
    pub fn resolve<T>(self, cloudflare: Option<T>) -> Result<Option<T>, String> {
        match self {
            Choice::Embedded => Ok(None),
            Choice::Cloudflare => cloudflare.map(Some).ok_or_else(|| "the binding is missing".to_string()),
            Choice::Unavailable(why) => Err(why),
        }
    }
}

/// The AI backend a setting (`EMBED_BACKEND` or `TEXT_BACKEND`) asks for,
/// given whether the `AI` binding is present.
pub fn choose_ai(var: &str, value: &str, has_ai: bool) -> Choice {
    match value.trim() {
        AI_LOCAL => Choice::Embedded,
        AI_WORKERS_AI if has_ai => Choice::Cloudflare,
        AI_WORKERS_AI => Choice::Unavailable(format!("{var}={AI_WORKERS_AI}, but the {} binding is missing", binding::AI)),
        other => Choice::Unavailable(format!("{var}={other:?} is not a backend (use {AI_LOCAL} or {AI_WORKERS_AI})")),
    }
}

/// The vector backend `VECTOR_BACKEND` asks for, given whether the
/// `VECTORIZE` binding is present and the dimension of the embedder's
/// vectors (`None` when the embedder is unavailable).
pub fn choose_vectors(value: &str, has_vectorize: bool, embed_dim: Option<usize>) -> Choice {
    match value.trim() {
        VECTORS_ACTOR => Choice::Embedded,
        VECTORS_VECTORIZE if !has_vectorize => Choice::Unavailable(format!(
            "VECTOR_BACKEND={VECTORS_VECTORIZE}, but the {} binding is missing",
            binding::VECTORIZE
        )),
        VECTORS_VECTORIZE => match embed_dim {
            Some(VECTORIZE_INDEX_DIM) => Choice::Cloudflare,
            Some(d) => Choice::Unavailable(format!(
                "VECTOR_BACKEND={VECTORS_VECTORIZE} needs {VECTORIZE_INDEX_DIM}-d vectors (EMBED_BACKEND={AI_WORKERS_AI}), \
                 but the embedder makes {d}-d ones"
            )),
            None => Choice::Unavailable(format!(
                "VECTOR_BACKEND={VECTORS_VECTORIZE} needs the {VECTORIZE_INDEX_DIM}-d embedder, which is unavailable"
            )),
        },
        other => Choice::Unavailable(format!(
            "VECTOR_BACKEND={other:?} is not a backend (use {VECTORS_ACTOR} or {VECTORS_VECTORIZE})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: bool = true;
    const NONE: bool = false;

    #[test]
    fn the_offline_defaults_need_no_binding() {
        assert_eq!(choose_ai("EMBED_BACKEND", "local", NONE), Choice::Embedded);
        assert_eq!(choose_vectors("actor", NONE, Some(384)), Choice::Embedded);
    }

    #[test]
    fn production_with_its_bindings_uses_cloudflare() {
        assert_eq!(choose_ai("EMBED_BACKEND", "workers-ai", ALL), Choice::Cloudflare);
        assert_eq!(choose_vectors("vectorize", ALL, Some(EMBED_DIM)), Choice::Cloudflare);
    }

    #[test]
    fn a_missing_binding_is_unavailable_never_local() {
        let c = choose_ai("TEXT_BACKEND", "workers-ai", NONE);
        assert_eq!(c.problem(), Some("TEXT_BACKEND=workers-ai, but the AI binding is missing"));
        let c = choose_vectors("vectorize", NONE, Some(EMBED_DIM));
        assert_eq!(c.problem(), Some("VECTOR_BACKEND=vectorize, but the VECTORIZE binding is missing"));
    }

    #[test]
    fn vectorize_needs_an_embedder_of_the_index_dimension() {
        let c = choose_vectors("vectorize", ALL, Some(384));
        assert!(c.problem().unwrap().contains("768-d"), "{c:?}");
        assert!(c.problem().unwrap().contains("384-d"), "{c:?}");
        let c = choose_vectors("vectorize", ALL, None);
        assert!(c.problem().unwrap().contains("unavailable"), "{c:?}");
        // The actor shards take any dimension.
        assert_eq!(choose_vectors("actor", ALL, None), Choice::Embedded);
    }

    #[test]
    fn unknown_values_are_reported() {
        assert!(choose_ai("EMBED_BACKEND", "openai", ALL).problem().unwrap().contains("not a backend"));
        assert!(choose_vectors("pinecone", ALL, Some(768)).problem().unwrap().contains("not a backend"));
        assert_eq!(choose_ai("EMBED_BACKEND", " local ", NONE), Choice::Embedded, "whitespace is ignored");
    }

    #[test]
    fn resolving_builds_only_what_was_chosen() {
        assert_eq!(Choice::Embedded.resolve(Some(1)), Ok(None));
        assert_eq!(Choice::Cloudflare.resolve(Some(1)), Ok(Some(1)));
        assert!(Choice::Cloudflare.resolve::<u8>(None).is_err());
        assert_eq!(Choice::Unavailable("why".into()).resolve(Some(1)), Err("why".to_string()));
    }
}
