use serde_json::json;
use worker::{Env, Response};

use crate::config::Config;
use crate::error::ApiResult;
use crate::http;

pub async fn get(env: &Env) -> ApiResult<Response> {
    let cfg = crate::runtime::config(env);
    Ok(http::json(200, &body(&cfg)))
}

fn body(cfg: &Config) -> serde_json::Value {
    json!({
        "status": "ok",
        "name": "actorline",
        "version": env!("CARGO_PKG_VERSION"),
        "backends": {
            "ai": cfg.ai_backend,
            "vectors": cfg.vector_backend,
            "analyzer": cfg.analyzer,
            "keyword_search": "d1-fts5",
        },
        "faults": cfg.faults.describe(),
    })
}
