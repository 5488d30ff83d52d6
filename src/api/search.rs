//! `GET /api/search`: hybrid search. Vector and FTS5 keyword search run in
//! parallel and are fused with reciprocal rank fusion; chunk hits are grouped
//! by content, and the snippet comes from the best-matching chunk's text.

use serde::Deserialize;
use serde_json::json;
use worker::{Context, Env, Request, Response};

use super::input::{int_param, param, query};
use crate::catalog::{self, n, s};
use crate::domain::fusion::{fts_match, group_by_content, rrf, snippet};
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::providers::{Embedder, Providers, VectorIndex, VectorQuery, DEFAULT_NAMESPACE};
use crate::runtime::{config, now_ms};

pub const MAX_QUERY_CHARS: usize = 500;
pub const MAX_K: u32 = 50;

#[derive(Deserialize)]
struct FtsRow {
    content_id: String,
}

#[derive(Deserialize)]
struct DocRow {
    content_id: String,
    title: String,
    body: String,
}

pub async fn search(env: &Env, ctx: &Context, req: &Request) -> ApiResult<Response> {
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
    let mode = match param(&q, "mode").unwrap_or("hybrid") {
        m @ ("hybrid" | "vector" | "keyword") => m,
        _ => return Err(ApiError::invalid("mode", "must be hybrid, vector or keyword")),
    };
    let cfg = config(env);
    let p = Providers::from_config(env, &cfg);
    let fts = fts_match(text);

    let vector_side = async {
        if mode == "keyword" {
            return Ok(Vec::new());
        }
        let v = p.embedder.embed(&[text.to_string()]).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let vq = VectorQuery {
            vector: v.into_iter().next().unwrap_or_default(),
            top_k: (k * 4).min(200),
            namespace: DEFAULT_NAMESPACE.into(),
            category: category.clone(),
        };
        p.vectors.query(&vq).await.map_err(|e| ApiError::Unavailable(e.to_string()))
    };
    let keyword_side = async {
        let Some(m) = fts.as_deref().filter(|_| mode != "vector") else { return Ok(Vec::<FtsRow>::new()) };
        let rows: Vec<FtsRow> = catalog::db(env)?
            .prepare(
                "SELECT content_id FROM content_fts WHERE content_fts MATCH ?1 AND (?2 IS NULL OR category = ?2)
                 ORDER BY bm25(content_fts, 0.0, 3.0, 1.0, 2.0, 0.0) LIMIT ?3",
            )
            .bind(&[s(m), catalog::opt(category.as_deref()), n((k * 4) as i64)])?
            .all()
            .await?
            .results()?;
        Ok::<_, ApiError>(rows)
    };
    // Each side's own time, so a slow search says which side was slow.
    let ((hits, vector_ms), (kw, keyword_ms)) = futures::join!(timed(vector_side, started), timed(keyword_side, started));
    let hits = hits?;
    let kw = kw?;

    let grouped = group_by_content(&hits);
    let vec_ids: Vec<String> = grouped.iter().map(|(c, _, _)| c.clone()).collect();
    let kw_ids: Vec<String> = kw.into_iter().map(|r| r.content_id).collect();
    let fused = match mode {
        "vector" => rrf(std::slice::from_ref(&vec_ids), k as usize),
        "keyword" => rrf(std::slice::from_ref(&kw_ids), k as usize),
        _ => rrf(&[vec_ids.clone(), kw_ids.clone()], k as usize),
    };

    let ids: Vec<String> = fused.iter().map(|d| d.content_id.clone()).collect();
    let (docs, fetch_ms) = timed(fetch_docs(env, &ids), now_ms()).await;
    let docs = docs?;
    let mut results = Vec::new();
    for d in &fused {
        // A vector may outlive its catalog row briefly during a delete; skip it.
        let Some(doc) = docs.iter().find(|r| r.content_id == d.content_id) else { continue };
        let best_chunk = grouped.iter().find(|(c, _, _)| *c == d.content_id).map(|(_, _, ch)| *ch);
        let source = best_chunk.and_then(|ch| chunk_text(&doc.body, ch)).unwrap_or_else(|| doc.body.clone());
        let snip = snippet(&source, text, 240);
        results.push(json!({
            "content_id": d.content_id, "title": doc.title, "score": d.score,
            "snippet": snip.text, "highlights": snip.highlights,
            "sources": { "vector": vec_ids.contains(&d.content_id), "keyword": kw_ids.contains(&d.content_id) },
        }));
    }
    let took = now_ms() - started;
    let log = catalog::db(env)?
        .prepare("INSERT INTO search_log (q, k, category, mode, results, took_ms, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .bind(&[s(text), n(k as i64), catalog::opt(category.as_deref()), s(mode), n(results.len() as i64), n(took), n(started)])?;
    // The log is not part of the answer: write it after responding.
    ctx.wait_until(async move {
        let _ = log.run().await;
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

async fn fetch_docs(env: &Env, ids: &[String]) -> ApiResult<Vec<DocRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=ids.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT k.content_id AS content_id, f.title AS title, f.body AS body FROM content_fts_keys k
         JOIN content_fts f ON f.rowid = k.fts_rowid JOIN content c ON c.id = k.content_id
         WHERE k.content_id IN ({placeholders})"
    );
    let binds: Vec<wasm_bindgen::JsValue> = ids.iter().map(|i| s(i)).collect();
    Ok(catalog::db(env)?.prepare(sql).bind(&binds)?.all().await?.results()?)
}

