//! `GET /api/search`: hybrid search. Retrieval (vector and FTS5 keyword
//! search fused, over what the caller may read) lives in
//! [`super::retrieve`], shared with answers; this handler validates the query,
//! cuts snippets from each document's best chunk, and logs the search.


use worker::{Context, Env, Request, Response};

use super::input::{category_filter, param, query, query_text};
use super::routes::SEARCH_K;
use crate::retrieval::{retrieve, Mode, RetrieveQuery};
use crate::catalog::{self, n, s};
use crate::domain::fusion::snippet;
use crate::domain::principal::Principal;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{HitSources, SearchHit, SearchResponse, SearchTimings};
use crate::runtime::now_ms;

pub async fn search(env: &Env, ctx: &Context, p: &Principal, req: &Request) -> ApiResult<Response> {
    let started = now_ms();
    let q = query(req)?;
    let text = query_text(param(&q, "q").unwrap_or(""), "q")?;
    let k = SEARCH_K.read(&q)?;
    let category = category_filter(env, param(&q, "category"))?;
    let mode_text = param(&q, "mode").unwrap_or("hybrid");
    let mode = Mode::parse(mode_text).ok_or_else(|| ApiError::invalid("mode", "must be hybrid, vector or keyword"))?;
    let found = retrieve(env, p, &RetrieveQuery { text, k, category: category.clone(), mode }).await?;
    let results: Vec<SearchHit> = found
        .docs
        .iter()
        .map(|d| {
            let snip = snippet(&d.text, text, 240);
            SearchHit {
                content_id: d.content_id.clone(),
                title: d.title.clone(),
                score: d.score,
                snippet: snip.text,
                highlights: snip.highlights,
                sources: HitSources { vector: d.by_vector, keyword: d.by_keyword },
            }
        })
        .collect();
    let took = now_ms() - started;
    let served = found.mode.as_str();
    let row = [s(text), n(k as i64), catalog::opt(category.as_deref()), s(served), n(results.len() as i64), n(took), n(started)];
    let log = catalog::log_search_statements(env, row, started)?;
    // The log is not part of the answer: write it after responding.
    let env2 = env.clone();
    ctx.wait_until(async move {
        let _ = catalog::run_batch(&env2, log).await;
    });
    let timings = SearchTimings { vector_ms: found.vector_ms, keyword_ms: found.keyword_ms, fetch_ms: found.fetch_ms };
    let answer = SearchResponse { query: text.to_string(), mode: served.to_string(), degraded: found.degraded, k, took_ms: took, timings, results };
    Ok(http::json(200, &answer))
}
