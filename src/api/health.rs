//! `GET /healthz`: version, and the backend each provider actually uses (a
//! missing production binding shows up here as its fallback).

use serde_json::json;
use worker::{Env, Response};

use crate::error::ApiResult;
use crate::http;
use crate::providers::{Embedder, Providers, VectorIndex};
use crate::runtime::config;

pub async fn get(env: &Env) -> ApiResult<Response> {
    let cfg = config(env);
    let p = Providers::from_config(env, &cfg);
    Ok(http::json(
        200,
        &json!({
            "status": "ok",
            "name": "actorline",
            "version": env!("CARGO_PKG_VERSION"),
            "backends": {
                "ai": p.embedder.backend(),
                "vectors": p.vectors.backend(),
                "analyzer": cfg.analyzer,
                "keyword_search": "d1-fts5",
            },
            "faults": cfg.faults.describe(),
        }),
    ))
}
