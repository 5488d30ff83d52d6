//! `/admin/*`: the inspector. Every route needs `Authorization: Bearer
//! <ADMIN_TOKEN>`, compared in constant time. Inspection asks the actor itself,
//! after the registry confirms it exists, so looking never creates an actor.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Request, Response};

use super::input::{int_param, param, query, uuid_param};
use crate::actors::rpc::{self, ActorKind};
use crate::catalog::{self, n, s};
use crate::domain::time::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::http;

/// Kinds the inspector serves, and whether their ids are UUIDs.
fn kind_of(kind: &str) -> ApiResult<ActorKind> {
    match ActorKind::parse(kind) {
        Some(k @ (ActorKind::Content | ActorKind::Run | ActorKind::Session | ActorKind::Feed | ActorKind::VectorShard | ActorKind::Analyzer)) => Ok(k),
        _ => Err(ApiError::not_found(format!("actor kind {kind:?}"))),
    }
}

async fn locate(env: &Env, kind: &str, id: &str) -> ApiResult<(ActorKind, String)> {
    let k = kind_of(kind)?;
    match k {
        ActorKind::Content | ActorKind::Run | ActorKind::Session => {
            let id = uuid_param(id, kind)?.to_string();
            if !catalog::actor_exists(env, k.as_str(), &id).await? {
                return Err(ApiError::not_found(format!("{kind} {id}")));
            }
            Ok((k, id))
        }
        ActorKind::Feed if id == crate::actors::feed::FEED_NAME => Ok((k, id.to_string())),
        ActorKind::Analyzer if id == crate::providers::analyzer_http::ANALYZER_ACTOR => Ok((k, id.to_string())),
        ActorKind::VectorShard if id.strip_prefix("shard-").and_then(|n| n.parse::<u32>().ok()).is_some() => Ok((k, id.to_string())),
        _ => Err(ApiError::not_found(format!("{kind} {id}"))),
    }
}

/// Query parameters are passed on to the actor (a shard, for one, answers
/// `content_id=` with that content's vector ids).
pub async fn inspect(env: &Env, req: &Request, kind: &str, id: &str, op: &str) -> ApiResult<Response> {
    let (k, id) = locate(env, kind, id).await?;
    let q = query(req)?;
    let body = json!({ "content_id": param(&q, "content_id") });
    let v: Value = rpc::call(env, k, &id, op, &body).await?;
    Ok(http::json(200, &v))
}

#[derive(Deserialize)]
struct ActorRow {
    kind: String,
    id: String,
    status: String,
    updated_at: f64,
}

pub async fn list_actors(env: &Env, req: &Request) -> ApiResult<Response> {
    let q = query(req)?;
    let limit = int_param(&q, "limit", 50, 1, 200)?;
    let kind = param(&q, "kind").filter(|k| !k.is_empty());
    if let Some(k) = kind {
        kind_of(k).map_err(|_| ApiError::invalid("kind", "must be content, run or session"))?;
    }
    let status = param(&q, "status").filter(|k| !k.is_empty());
    let (c_at, c_key) = match param(&q, "cursor").filter(|c| !c.is_empty()) {
        None => (i64::MAX, String::new()),
        Some(c) => parse_cursor(c)?,
    };
    let rows: Vec<ActorRow> = catalog::db(env)?
        .prepare(
            "SELECT kind, id, status, updated_at FROM actors
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)
               AND (updated_at < ?3 OR (updated_at = ?3 AND kind || ':' || id < ?4))
             ORDER BY updated_at DESC, kind || ':' || id DESC LIMIT ?5",
        )
        .bind(&[
            catalog::opt(kind),
            catalog::opt(status),
            n(c_at.min(9_007_199_254_740_991)),
            s(if c_key.is_empty() { "\u{10FFFF}" } else { &c_key }),
            n(limit as i64 + 1),
        ])?
        .all()
        .await?
        .results()?;
    let more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    let items: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "kind": r.kind, "id": r.id, "status": r.status, "updated_at": rfc3339(r.updated_at as i64) }))
        .collect();
    let mut body = json!({ "items": items });
    if more {
        if let Some(last) = rows.last() {
            body["next_cursor"] = json!(format!("{}.{}:{}", last.updated_at as i64, last.kind, last.id));
        }
    }
    Ok(http::json(200, &body))
}

#[derive(Deserialize, serde::Serialize)]
struct DeadRow {
    id: String,
    content_id: String,
    version: f64,
    failed_stage: Option<String>,
    error_class: Option<String>,
    error: Option<String>,
    attempts: Option<f64>,
    updated_at: f64,
}

pub async fn dead_letters(env: &Env) -> ApiResult<Response> {
    let rows: Vec<DeadRow> = catalog::db(env)?
        .prepare(
            "SELECT id, content_id, version, failed_stage, error_class, error, attempts, updated_at FROM runs
             WHERE status = 'failed' ORDER BY updated_at DESC LIMIT 500",
        )
        .all()
        .await?
        .results()?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "run_id": r.id, "content_id": r.content_id, "version": r.version as u32,
                "stage": r.failed_stage, "error_class": r.error_class, "error": r.error,
                "attempts": r.attempts.map(|a| a as u32), "failed_at": rfc3339(r.updated_at as i64),
                "actions": { "retry": format!("/api/runs/{}/retry", r.id), "cancel": format!("/api/runs/{}/cancel", r.id) },
            })
        })
        .collect();
    Ok(http::json(200, &json!({ "items": items })))
}

#[derive(Deserialize)]
struct CountRow {
    kind: String,
    status: String,
    n: f64,
}

#[derive(Deserialize)]
struct TimingRow {
    stage: String,
    duration_ms: Option<f64>,
    attempts: f64,
}

#[derive(Deserialize)]
struct SearchRow {
    took_ms: f64,
}

/// Counters come from the D1 catalog that actors already write through to, so
/// no single Durable Object sits on every request's path.
pub async fn metrics(env: &Env) -> ApiResult<Response> {
    let db = catalog::db(env)?;
    let counts: Vec<CountRow> =
        db.prepare("SELECT kind, status, COUNT(*) AS n FROM actors GROUP BY kind, status").all().await?.results()?;
    let timings: Vec<TimingRow> = db
        .prepare("SELECT stage, duration_ms, attempts FROM stage_timings ORDER BY finished_at DESC LIMIT 5000")
        .all()
        .await?
        .results()?;
    let mut searches: Vec<f64> = db
        .prepare("SELECT took_ms FROM search_log ORDER BY id DESC LIMIT 1000")
        .all()
        .await?
        .results::<SearchRow>()?
        .into_iter()
        .map(|r| r.took_ms)
        .collect();
    searches.sort_by(|a, b| a.total_cmp(b));
    let mut actors = serde_json::Map::new();
    for c in &counts {
        let entry = actors.entry(c.kind.clone()).or_insert_with(|| json!({}));
        entry[&c.status] = json!(c.n as u64);
    }
    let run_count = |st: &str| counts.iter().filter(|c| c.kind == "run" && c.status == st).map(|c| c.n as u64).sum::<u64>();
    let retries: u64 = timings.iter().map(|t| (t.attempts as u64).saturating_sub(1)).sum();
    let mut stages = serde_json::Map::new();
    for stage in crate::protocol::Stage::ALL {
        let mut d: Vec<f64> = timings.iter().filter(|t| t.stage == stage.as_str()).filter_map(|t| t.duration_ms).collect();
        d.sort_by(|a, b| a.total_cmp(b));
        stages.insert(stage.as_str().into(), latency(&d));
    }
    Ok(http::json(200, &json!({
        "actors": actors,
        "runs": { "completed": run_count("completed"), "failed": run_count("failed"), "cancelled": run_count("cancelled"),
                  "in_flight": run_count("queued") + run_count("running") },
        "retries": retries,
        "dead_letters": run_count("failed"),
        "sessions": counts.iter().filter(|c| c.kind == "session").map(|c| c.n as u64).sum::<u64>(),
        "stage_latency": stages,
        "search_latency": latency(&searches),
        "window": { "stage_samples": timings.len(), "search_samples": searches.len() },
    })))
}

/// `{count, p50_ms, p95_ms, p99_ms}` of sorted durations.
fn latency(sorted: &[f64]) -> serde_json::Value {
    json!({
        "count": sorted.len(),
        "p50_ms": percentile(sorted, 0.50), "p95_ms": percentile(sorted, 0.95), "p99_ms": percentile(sorted, 0.99),
    })
}

pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).copied()
}

/// `<updated_at>.<kind>:<id>`, as `list_actors` hands out.
fn parse_cursor(c: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::invalid("cursor", "is not a cursor this API returned");
    let (at, key) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if key.len() > 80 || !key.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | ':')) {
        return Err(bad());
    }
    Ok((at, key.to_string()))
}
