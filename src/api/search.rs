//! `GET /api/search`: hybrid search. Vector and FTS5 keyword search run in
//! parallel and are fused with reciprocal rank fusion; chunk hits are grouped
//! by content, and the snippet comes from the best-matching chunk's text.

use serde_json::json;
use worker::{Context, Env, Request, Response};

use super::input::{int_param, param, query};
use crate::catalog::{self, n, s};
use crate::domain::fusion::{fts_match, group_by_content, rrf, snippet};
use crate::domain::principal::Principal;
use crate::domain::vector::merge_hits;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::providers::{Embedder, Providers, VectorIndex, VectorQuery};
use crate::runtime::{config, now_ms};

pub const MAX_QUERY_CHARS: usize = 500;
pub const MAX_K: u32 = 50;

pub async fn search(env: &Env, ctx: &Context, p: &Principal, req: &Request) -> ApiResult<Response> {
    let started = now_ms();
    let q = query(req)?;
    let text = param(&q, "q").map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Err(ApiError::invalid("q", "is required"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid("q", format!("must be at most {MAX_QUERY_CHARS} characters")));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid("q", "must not contain control characters"));
    }
    let k = int_param(&q, "k", 10, 1, MAX_K)?;
    let category = param(&q, "category").map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty());
    if let Some(c) = &category {
        let max = config(env).limits.category_max_chars;
        if c.chars().count() > max || !c.chars().all(|ch| ch.is_alphanumeric() || matches!(ch, '-' | '_' | ' ')) {
            return Err(ApiError::invalid("category", format!("must be up to {max} letters, digits, spaces, '-' or '_'")));
        }
    }
    let mode = match param(&q, "mode").unwrap_or("hybrid") {
        m @ ("hybrid" | "vector" | "keyword") => m,
        _ => return Err(ApiError::invalid("mode", "must be hybrid, vector or keyword")),
    };
    let cfg = config(env);
    let providers = Providers::from_config(env, &cfg);
    let scope = p.read_scope();
    let fts = fts_match(text).map(|m| catalog::scoped_match(&m, scope.fts_tokens().as_deref()));
    // The caller's namespaces only: its tenant's and the public one ("" = all).
    let namespaces = p.namespaces().unwrap_or_else(|| vec![String::new()]);

    let vector_side = async {
        if mode == "keyword" {
            return Ok(Vec::new());
        }
        let v = providers.embedder.embed(&[text.to_string()]).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let vector = v.into_iter().next().unwrap_or_default();
        let top_k = (k * 4).min(200);
        let queries = namespaces.iter().map(|ns| {
            let vq = VectorQuery { vector: vector.clone(), top_k, namespace: ns.clone(), category: category.clone() };
            let vectors = &providers.vectors;
            async move { vectors.query(&vq).await }
        });
        let lists = futures::future::join_all(queries).await;
        let lists = lists.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok::<_, ApiError>(merge_hits(lists, top_k as usize))
    };
    let keyword_side = async {
        let Some(m) = fts.as_deref().filter(|_| mode != "vector") else { return Ok(Vec::new()) };
        catalog::keyword_search(env, m, category.as_deref(), k * 4).await
    };
    // Each side's own time, so a slow search says which side was slow.
    let ((hits, vector_ms), (kw, keyword_ms)) = futures::join!(timed(vector_side, started), timed(keyword_side, started));
    let hits = hits?;
    let kw_ids = kw?;

    let grouped = group_by_content(&hits);
    let vec_ids: Vec<String> = grouped.iter().map(|(c, _, _)| c.clone()).collect();
    // Over-fetch: a few fused hits may be dropped below as not readable.
    let fused = match mode {
        "vector" => rrf(std::slice::from_ref(&vec_ids), k as usize * 2),
        "keyword" => rrf(std::slice::from_ref(&kw_ids), k as usize * 2),
        _ => rrf(&[vec_ids.clone(), kw_ids.clone()], k as usize * 2),
    };

    let ids: Vec<String> = fused.iter().map(|d| d.content_id.clone()).collect();
    let (docs, fetch_ms) = timed(catalog::fetch_docs(env, &ids), now_ms()).await;
    let docs = docs?;
    let mut results = Vec::new();
    for d in &fused {
        // A vector may outlive its catalog row briefly during a delete, and an
        // item's visibility may have narrowed since it was indexed: the
        // catalog row is the authority on both.
        let Some(doc) = docs.iter().find(|r| r.content_id == d.content_id) else { continue };
        if !scope.admits(&doc.ownership()) {
            continue;
        }
        let best_chunk = grouped.iter().find(|(c, _, _)| *c == d.content_id).map(|(_, _, ch)| *ch);
        let source = best_chunk.and_then(|ch| chunk_text(&doc.body, ch)).unwrap_or_else(|| doc.body.clone());
        let snip = snippet(&source, text, 240);
        results.push(json!({
            "content_id": d.content_id, "title": doc.title, "score": d.score,
            "snippet": snip.text, "highlights": snip.highlights,
            "sources": { "vector": vec_ids.contains(&d.content_id), "keyword": kw_ids.contains(&d.content_id) },
        }));
        if results.len() == k as usize {
            break;
        }
    }
    let took = now_ms() - started;
    let row = [s(text), n(k as i64), catalog::opt(category.as_deref()), s(mode), n(results.len() as i64), n(took), n(started)];
    let log = catalog::log_search_statements(env, row, started)?;
    // The log is not part of the answer: write it after responding.
    let env2 = env.clone();
    ctx.wait_until(async move {
        let _ = catalog::run_batch(&env2, log).await;
    });
    let timings = json!({ "vector_ms": vector_ms, "keyword_ms": keyword_ms, "fetch_ms": fetch_ms });
    Ok(http::json(200, &json!({ "query": text, "mode": mode, "k": k, "took_ms": took, "timings": timings, "results": results })))
}

/// `f`'s output and the milliseconds from `since` to its end.
async fn timed<T>(f: impl std::future::Future<Output = T>, since: i64) -> (T, i64) {
    let out = f.await;
    (out, now_ms() - since)
}

/// The text of chunk `n` as the chunk stage cut it (deterministic).
fn chunk_text(body: &str, n: u32) -> Option<String> {
    crate::nlp::chunk::chunk_text(body, crate::nlp::chunk::DEFAULT_CHUNK_CHARS, crate::nlp::chunk::DEFAULT_OVERLAP_SENTENCES)
        .into_iter()
        .nth(n as usize)
        .map(|c| c.text)
}
