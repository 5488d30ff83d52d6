//! `GET /healthz`: version, and the backend each provider actually uses. A
//! provider asked for but unusable (a missing production binding), or a
//! secret missing or too short, makes the answer `503` with
//! `status: "degraded"` and the reason in `problems`; the operator's answer
//! also asks the analyzer's actor whether it has its container.
//! Only the operator sees that detail; anyone else gets `{status}` alone, so
//! the backends and the `FAULTS` setting are not public.

use std::collections::BTreeMap;

use worker::{Env, Response};

use crate::actors::ops::{AnalyzerBackend, WhichBackend};
use crate::actors::rpc;
use crate::providers::analyzer_http::ANALYZER_ACTOR;
use crate::error::ApiResult;
use crate::http;
use crate::protocol::{Health, HealthDetail};
use crate::providers::backend_choice::AI_WORKERS_AI;
use crate::providers::{Embedder, Providers, VectorIndex, EMBED_MODEL, TEXT_MODEL};
use crate::runtime::config;

/// How long the operator's look waits for the analyzer's actor.
const PROBE_MS: u64 = 2_000;

pub async fn get(env: &Env, operator: bool) -> ApiResult<Response> {
    let cfg = config(env);
    let p = Providers::from_config(env, &cfg);
    let mut problems: BTreeMap<String, String> = p.problems().into_iter().map(|(name, why)| (name.to_string(), why.to_string())).collect();
    // Secrets a deploy can leave out or cut short: nothing else says so
    // until an operator cannot sign in or a client cannot open a session.
    if cfg.trust.admin_token_sha256.is_none() {
        problems.insert("admin_token".into(), "ADMIN_TOKEN is unset or shorter than 32 characters: no request is the operator's".into());
    }
    if super::sessions::secret(env).is_err() {
        problems.insert("session_secret".into(), "SESSION_SECRET is unset or shorter than 16 bytes: POST /api/sessions answers 503".into());
    }
    // Only the operator's look asks the analyzer's actor: an anonymous
    // monitor's would keep that one actor (and its container) awake.
    let analyzer = if operator { analyzer_backend(env, &cfg.analyzer).await } else { Ok(cfg.analyzer.clone()) };
    if let Err(why) = &analyzer {
        problems.insert("analyzer".into(), why.clone());
    }
    let (code, status) = if problems.is_empty() { (200, "ok") } else { (503, "degraded") };
    let workers_ai = |name: &str, model: &str| (name == AI_WORKERS_AI).then(|| model.to_string());
    let detail = operator.then(|| HealthDetail {
        name: "actorline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backends: [
            ("ai", p.embedder.backend()),
            ("embedder", p.embedder.backend()),
            ("text", p.text.name()),
            ("vectors", p.vectors.backend()),
            ("analyzer", analyzer.as_deref().unwrap_or(cfg.analyzer.as_str())),
            ("keyword_search", "d1-fts5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        models: [("embedder", workers_ai(p.embedder.name(), EMBED_MODEL)), ("text", workers_ai(p.text.name(), TEXT_MODEL))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        problems,
        faults: cfg.faults.describe(),
    });
    Ok(http::json(code, &Health { status: status.into(), detail }))
}

/// The analyzer as its actor runs it. Asked (one call, within
/// [`PROBE_MS`]) only where a container is configured: a deploy is not
/// transactional, and a Worker that went live while its image or rollout
/// failed has no container to give the actor, which `ANALYZER` alone would
/// not show.
async fn analyzer_backend(env: &Env, configured: &str) -> Result<String, String> {
    if configured != "container" {
        return Ok(configured.to_string());
    }
    let asked = crate::runtime::within(PROBE_MS, rpc::send(env, ANALYZER_ACTOR, &WhichBackend {})).await;
    match asked {
        Some(Ok(backend @ (AnalyzerBackend::Container | AnalyzerBackend::EmulatedContainer))) => Ok(backend.as_str().to_string()),
        Some(Ok(other)) => Err(format!("ANALYZER=container, but the analyzer's actor runs {}: no container was provisioned for it", other.as_str())),
        Some(Err(e)) => Err(format!("the analyzer's actor did not answer: {e}")),
        None => Err(format!("the analyzer's actor did not answer within {PROBE_MS} ms")),
    }
}
