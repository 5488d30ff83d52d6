//! Hybrid retrieval over what a principal may read, shared by `/api/search`
//! and `/api/answers`. Vector and FTS5 keyword search run in parallel over
//! the caller's namespaces and scope tokens; each side keeps only what the
//! catalog (the authority on ownership) says the caller may read, and then
//! they are fused with reciprocal rank fusion, so an unreadable match never
//! moves a readable one's rank. The keyword side filters inside its query;
//! the vector index knows no owners, so when unreadable items' chunks took
//! the places of readable ones, the vector side asks once more for as many
//! as the index gives (200 chunks per namespace; 100 on Vectorize).

use worker::Env;

use crate::catalog;
use crate::domain::fusion::{chunk_passage, fts_match, group_by_content, keyword_passage, rrf};
use crate::domain::principal::{Principal, ReadScope};
use crate::domain::vector::merge_hits;
use crate::error::{ApiError, ApiResult};
use crate::providers::{Embedder, Providers, VectorIndex, VectorQuery};
use crate::runtime::{config, now_ms};

/// The most vector hits a search asks each namespace for (the embedded
/// shards' cap; Vectorize caps a query at 100).
const VECTOR_TOP_K_MAX: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hybrid,
    Vector,
    Keyword,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Vector => "vector",
            Mode::Keyword => "keyword",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Hybrid, Mode::Vector, Mode::Keyword].into_iter().find(|m| m.as_str() == s)
    }
}

pub struct RetrieveQuery<'a> {
    pub text: &'a str,
    pub k: u32,
    pub category: Option<String>,
    pub mode: Mode,
}

/// One readable document, in fused order.
pub struct Retrieved {
    pub content_id: String,
    pub title: String,
    pub score: f32,
    /// The best-matching chunk's text: the vector side's best chunk, else
    /// the chunk that best matches the query's words.
    pub text: String,
    pub by_vector: bool,
    pub by_keyword: bool,
}

pub struct Retrieval {
    pub docs: Vec<Retrieved>,
    /// The mode served: keyword when a hybrid search's vector side was
    /// unavailable (`degraded` says why).
    pub mode: Mode,
    pub degraded: Option<String>,
    pub vector_ms: i64,
    pub keyword_ms: i64,
    pub fetch_ms: i64,
}

/// The top `q.k` documents `p` may read for `q.text`.
pub async fn retrieve(env: &Env, p: &Principal, q: &RetrieveQuery<'_>) -> ApiResult<Retrieval> {
    let started = now_ms();
    let (text, k, mode, category) = (q.text, q.k, q.mode, &q.category);
    let cfg = config(env);
    let providers = Providers::from_config(env, &cfg);
    let scope = p.read_scope();
    let fts = fts_match(text).map(|m| catalog::scoped_match(&m, scope.fts_tokens().as_deref()));
    // The caller's namespaces only: its tenant's and the public one ("" = all).
    let namespaces = p.namespaces().unwrap_or_else(|| vec![String::new()]);

    let vector_side = async {
        if mode == Mode::Keyword {
            return Ok::<_, ApiError>(Vec::new());
        }
        let v = providers.embedder.embed(&[text.to_string()]).await.map_err(ApiError::from_provider)?;
        let vector = v.into_iter().next().unwrap_or_default();
        let query = |top_k: u32| {
            let (vector, providers, namespaces) = (&vector, &providers, &namespaces);
            async move {
                let queries = namespaces.iter().map(|ns| {
                    let vq = VectorQuery { vector: vector.clone(), top_k, namespace: ns.clone(), category: category.clone() };
                    async move { providers.vectors.query(&vq).await }
                });
                let lists = futures::future::join_all(queries).await;
                let lists = lists.into_iter().collect::<Result<Vec<_>, _>>().map_err(ApiError::from_provider)?;
                // Full: the namespace holds more than was asked for.
                let full = lists.iter().any(|l| l.len() >= top_k as usize);
                Ok::<_, ApiError>((group_by_content(&merge_hits(lists, top_k as usize)), full))
            }
        };
        let mut top_k = (k * 4).min(VECTOR_TOP_K_MAX);
        loop {
            let (grouped, full) = query(top_k).await?;
            // The operator reads everything: no query for it.
            if scope == ReadScope::All {
                return Ok(grouped);
            }
            // Readable ones only, before the fusion ranks them (see `catalog::keyword_search`).
            let ids: Vec<String> = grouped.iter().map(|h| h.content_id.clone()).collect();
            let readable: std::collections::HashSet<String> = catalog::readable_ids(env, &scope, &ids).await?.into_iter().collect();
            let unread = grouped.len() - readable.len();
            let kept: Vec<_> = grouped.into_iter().filter(|h| readable.contains(&h.content_id)).collect();
            // Chunks of items the caller may not read (a colleague's long
            // private document) took places readable ones would have had:
            // asked once more for as many as the index gives.
            if unread > 0 && kept.len() < k as usize && full && top_k < VECTOR_TOP_K_MAX {
                top_k = VECTOR_TOP_K_MAX;
                continue;
            }
            return Ok(kept);
        }
    };
    let keyword_side = async {
        let Some(m) = fts.as_deref().filter(|_| mode != Mode::Vector) else { return Ok(Vec::new()) };
        catalog::keyword_search(env, m, category.as_deref(), &scope, k * 4).await
    };
    // Each side's own time, so a slow search says which side was slow.
    let ((hits, vector_ms), (kw, keyword_ms)) = futures::join!(timed(vector_side, started), timed(keyword_side, started));
    let kw_ids = kw?;
    let (grouped, mode, degraded) = match hits {
        Ok(grouped) => (grouped, mode, None),
        // The embedder or the vector index is busy or down (a Workers AI
        // capacity refusal, a Vectorize throttle): a hybrid search still
        // answers with its keyword side, and says so.
        Err(e @ (ApiError::Unavailable(_) | ApiError::RateLimited { .. })) if mode == Mode::Hybrid => {
            worker::console_warn!("search: vector side unavailable, keyword results only: {e}");
            (Vec::new(), Mode::Keyword, Some(format!("vector search unavailable ({e}); keyword results only")))
        }
        Err(e) => return Err(e),
    };

    let vec_ids: Vec<String> = grouped.iter().map(|h| h.content_id.clone()).collect();
    // Over-fetch: a few fused hits may be dropped below, as narrowed or
    // deleted since the sides read the catalog, or indexed under another
    // category.
    let fused = match mode {
        Mode::Vector => rrf(std::slice::from_ref(&vec_ids), k as usize * 2),
        Mode::Keyword => rrf(std::slice::from_ref(&kw_ids), k as usize * 2),
        Mode::Hybrid => rrf(&[vec_ids.clone(), kw_ids.clone()], k as usize * 2),
    };

    let ids: Vec<String> = fused.iter().map(|d| d.content_id.clone()).collect();
    let (rows, fetch_ms) = timed(catalog::fetch_docs(env, &ids), now_ms()).await;
    let rows = rows?;
    let mut docs = Vec::new();
    for d in &fused {
        let Some(row) = rows.iter().find(|r| r.content_id == d.content_id) else { continue };
        if !scope.admits(&row.ownership()) {
            continue;
        }
        // Vectorize filters on a string's first 64 bytes only, and a
        // vector keeps the category its version was indexed under.
        if category.as_ref().is_some_and(|want| row.category.as_ref() != Some(want)) {
            continue;
        }
        let best_chunk = grouped.iter().find(|h| h.content_id == d.content_id).and_then(|h| h.chunk_of(row.indexed_version()));
        let text = best_chunk.and_then(|ch| chunk_passage(&row.body, ch)).unwrap_or_else(|| keyword_passage(&row.body, text));
        docs.push(Retrieved {
            content_id: d.content_id.clone(),
            title: row.title.clone(),
            score: d.score,
            text,
            by_vector: vec_ids.contains(&d.content_id),
            by_keyword: kw_ids.contains(&d.content_id),
        });
        if docs.len() == k as usize {
            break;
        }
    }
    Ok(Retrieval { docs, mode, degraded, vector_ms, keyword_ms, fetch_ms })
}

/// `f`'s output and the milliseconds from `since` to its end.
async fn timed<T>(f: impl std::future::Future<Output = T>, since: i64) -> (T, i64) {
    let out = f.await;
    (out, now_ms() - since)
}
