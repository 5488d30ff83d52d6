//! `GET /healthz`: version, and the backend each provider actually uses. A
//! provider asked for but unusable (a missing production binding) makes the
//! answer `503` with `status: "degraded"` and the reason in `problems`.
//! Only the operator sees that detail; anyone else gets `{status}` alone, so
//! the backends and the `FAULTS` setting are not public.

use serde_json::json;
use worker::{Env, Response};

use crate::error::ApiResult;
use crate::http;
use crate::providers::backend_choice::AI_WORKERS_AI;
use crate::providers::{Embedder, Providers, VectorIndex, EMBED_MODEL, TEXT_MODEL};
use crate::runtime::config;

pub async fn get(env: &Env, operator: bool) -> ApiResult<Response> {
    let cfg = config(env);
    let p = Providers::from_config(env, &cfg);
    let problems: serde_json::Map<String, serde_json::Value> =
        p.problems().into_iter().map(|(name, why)| (name.to_string(), why.into())).collect();
    let (code, status) = if problems.is_empty() { (200, "ok") } else { (503, "degraded") };
    if !operator {
        return Ok(http::json(code, &json!({ "status": status })));
    }
    Ok(http::json(
        code,
        &json!({
            "status": status,
            "name": "actorline",
            "version": env!("CARGO_PKG_VERSION"),
            "backends": {
                // `ai` is the embedder, as before the text model had its own setting.
                "ai": p.embedder.backend(),
                "embedder": p.embedder.backend(),
                "text": p.text.name(),
                "vectors": p.vectors.backend(),
                "analyzer": cfg.analyzer,
                "keyword_search": "d1-fts5",
            },
            // The Workers AI models in use (null for the local backend).
            "models": {
                "embedder": (p.embedder.name() == AI_WORKERS_AI).then_some(EMBED_MODEL),
                "text": (p.text.name() == AI_WORKERS_AI).then_some(TEXT_MODEL),
            },
            "problems": problems,
            "faults": cfg.faults.describe(),
        }),
    ))
}
