//! `/admin/*`: the inspector. Every route needs `Authorization: Bearer
//! <ADMIN_TOKEN>`, compared in constant time. Inspection asks the actor itself,
//! after the registry confirms it exists, so looking never creates an actor.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use worker::{Env, Request, Response};

use super::input::{param, query};
use super::routes::{keyset_page, page_start, ACTORS_LIMIT, RECONCILE_LIMIT};
use crate::actors::ops::{FireAlarm, Inspect, ReconcileContent};
use crate::actors::rpc::{self, ActorKind};
use crate::catalog;
use crate::domain::time::rfc3339;
use crate::runtime::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{
    ActorPage, ActorRow, REGISTERED_ACTOR_KINDS, DeadLetter, DeadLetterPage, Latency, Metrics, MetricsWindow, ReconcileOutcome, ReconcilePage, Reconciled, RunActions, RunCounts,
};

/// Kinds the inspector serves, and whether their ids are UUIDs.
fn kind_of(kind: &str) -> ApiResult<ActorKind> {
    match ActorKind::parse(kind) {
        Some(k) if k.is_registered() => Ok(k),
        Some(k @ (ActorKind::Feed | ActorKind::VectorShard | ActorKind::Analyzer | ActorKind::RateLimit)) => Ok(k),
        _ => Err(ApiError::not_found(format!("actor kind {kind:?}"))),
    }
}

/// The actor an inspector path names, and whether the registry knows it. An
/// actor whose registry row never landed is still inspectable (its own
/// storage answers, marked `registered: false`); asking a UUID that no actor
/// holds answers 404 without creating anything, since inspection only reads.
/// An id no actor of the kind can have (not a UUID, a wrong singleton name)
/// is 404 as well: the path is a name, and that name names nothing.
async fn locate(env: &Env, kind: &str, id: &str) -> ApiResult<(ActorKind, String, bool)> {
    let k = kind_of(kind)?;
    match k {
        k if k.is_registered() => {
            let id = uuid::Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("{kind} {id}")))?.to_string();
            let registered = catalog::actor_exists(env, k.as_str(), &id).await?;
            Ok((k, id, registered))
        }
        ActorKind::Feed if id == crate::actors::feed::FEED_NAME => Ok((k, id.to_string(), true)),
        ActorKind::Analyzer if id == crate::providers::analyzer_http::ANALYZER_ACTOR => Ok((k, id.to_string(), true)),
        // Not in the registry: a bucket's name, `<class>:<principal key>`
        // (one never used answers as a full bucket).
        ActorKind::RateLimit if super::limits::is_bucket_name(id) => Ok((k, id.to_string(), true)),
        // Only a name a shard can have (`shard-7`, not `shard-007`):
        // inspecting wakes the actor, which creates its tables.
        ActorKind::VectorShard if id.strip_prefix("shard-").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n < crate::config::MAX_VECTOR_SHARDS && crate::providers::actor_index::shard_name(n) == id) => {
            Ok((k, id.to_string(), true))
        }
        _ => Err(ApiError::not_found(format!("{kind} {id}"))),
    }
}

/// An inspector route: look at an actor, or run its alarm now and look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Inspect,
    FireAlarm,
}

/// Query parameters are passed on to the actor (a shard, for one, answers
/// `content_id=` with that content's vector ids).
pub async fn inspect(env: &Env, req: &Request, kind: &str, id: &str, look: Look) -> ApiResult<Response> {
    let (k, id, registered) = locate(env, kind, id).await?;
    let q = query(req)?;
    let content_id = param(&q, "content_id").map(str::to_string);
    let mut v: Value = match look {
        Look::Inspect => rpc::send_to(env, k, &id, &Inspect { content_id }).await?,
        Look::FireAlarm => rpc::send_to(env, k, &id, &FireAlarm { content_id }).await?,
    };
    // The name the path gave is the actor's id (a shard does not know its own).
    v["id"] = json!(id);
    v["registered"] = json!(registered);
    Ok(http::json(200, &v))
}

pub async fn list_actors(env: &Env, req: &Request) -> ApiResult<Response> {
    let q = query(req)?;
    let limit = ACTORS_LIMIT.read(&q)?;
    let kind = param(&q, "kind");
    if let Some(k) = kind.filter(|k| !REGISTERED_ACTOR_KINDS.contains(k)) {
        return Err(ApiError::invalid("kind", format!("must be one of {}, not {k:?}", REGISTERED_ACTOR_KINDS.join(", "))));
    }
    let status = param(&q, "status");
    let (c_at, c_key) = page_start(param(&q, "cursor"))?;
    let rows = catalog::list_actors(env, kind, status, (c_at, &c_key), limit).await?;
    let (rows, next_cursor) = keyset_page(rows, limit, |r| (r.updated_at as i64, format!("{}:{}", r.kind, r.id)));
    let items = rows
        .into_iter()
        .map(|r| ActorRow { kind: r.kind, id: r.id, status: r.status, updated_at: rfc3339(r.updated_at as i64) })
        .collect();
    Ok(http::json(200, &ActorPage { items, next_cursor }))
}

pub async fn dead_letters(env: &Env) -> ApiResult<Response> {
    let rows = catalog::dead_letters(env, 500, now_ms()).await?;
    let items = rows
        .into_iter()
        .map(|r| DeadLetter {
            actions: RunActions { retry: format!("/api/runs/{}/retry", r.id), cancel: format!("/api/runs/{}/cancel", r.id) },
            failed_at: rfc3339(r.finished_at as i64),
            run_id: r.id,
            content_id: r.content_id,
            version: r.version as u32,
            stage: r.failed_stage,
            error_class: r.error_class,
            error: r.error,
            attempts: r.attempts.map(|a| a as u32),
        })
        .collect();
    Ok(http::json(200, &DeadLetterPage { items }))
}

/// Counters come from the D1 catalog that actors already write through to, so
/// no single Durable Object sits on every request's path.
pub async fn metrics(env: &Env) -> ApiResult<Response> {
    let catalog::MetricSamples { counts, stages: timings, searches_ms: mut searches, dead_letters } = catalog::metric_samples(env, now_ms()).await?;
    searches.sort_by(|a, b| a.total_cmp(b));
    let mut actors: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for c in &counts {
        actors.entry(c.kind.clone()).or_default().insert(c.status.clone(), c.n as u64);
    }
    let run_count = |st: &str| counts.iter().filter(|c| c.kind == "run" && c.status == st).map(|c| c.n as u64).sum::<u64>();
    let stage_latency = crate::protocol::Stage::ALL
        .iter()
        .map(|stage| {
            let mut d: Vec<f64> = timings.iter().filter(|t| t.stage == stage.as_str()).filter_map(|t| t.duration_ms).collect();
            d.sort_by(|a, b| a.total_cmp(b));
            (stage.as_str().to_string(), latency(&d))
        })
        .collect();
    Ok(http::json(
        200,
        &Metrics {
            actors,
            runs: RunCounts {
                completed: run_count("completed"),
                failed: run_count("failed"),
                cancelled: run_count("cancelled"),
                in_flight: run_count("queued") + run_count("running"),
            },
            retries: timings.iter().map(|t| (t.attempts as u64).saturating_sub(1)).sum(),
            dead_letters,
            sessions: counts.iter().filter(|c| c.kind == "session").map(|c| c.n as u64).sum(),
            stage_latency,
            search_latency: latency(&searches),
            window: MetricsWindow { stage_samples: timings.len(), search_samples: searches.len() },
        },
    ))
}

/// The percentiles of sorted durations.
fn latency(sorted: &[f64]) -> Latency {
    Latency { count: sorted.len(), p50_ms: percentile(sorted, 0.50), p95_ms: percentile(sorted, 0.95), p99_ms: percentile(sorted, 0.99) }
}

pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).copied()
}

/// How many content actors one reconciliation request asks: each costs a call
/// to the actor and one per run, well inside a request's subrequest budget.
const RECONCILE_MAX: u32 = RECONCILE_LIMIT.max;

/// `POST /admin/reconcile?cursor&limit&ids`: after a D1 outage or restore,
/// asks content actors to write their catalog rows again from their own state
/// (and their runs theirs). Without `ids` it walks every content id the
/// catalog knows of in any table, one page per request; `ids` (comma
/// separated UUIDs) names actors the catalog has lost entirely. A catalog
/// row whose actor holds nothing is removed.
pub async fn reconcile(env: &Env, req: &Request) -> ApiResult<Response> {
    let q = query(req)?;
    let limit = RECONCILE_LIMIT.read(&q)?;
    let named: Vec<String> = match param(&q, "ids") {
        Some(list) => {
            let ids: Vec<&str> = list.split(',').collect();
            if ids.len() > RECONCILE_MAX as usize {
                return Err(ApiError::invalid("ids", format!("at most {RECONCILE_MAX} ids per request")));
            }
            ids.into_iter()
                .map(|id| uuid::Uuid::parse_str(id).map(|u| u.to_string()).map_err(|_| ApiError::invalid("ids", "must be UUIDs, comma separated")))
                .collect::<ApiResult<_>>()?
        }
        None => Vec::new(),
    };
    let walking = named.is_empty();
    let ids = if walking {
        let after = param(&q, "cursor").unwrap_or("");
        if !after.is_empty() && uuid::Uuid::parse_str(after).is_err() {
            return Err(ApiError::invalid("cursor", "is not a cursor this API returned"));
        }
        catalog::known_content_ids(env, after, limit).await?
    } else {
        named
    };
    let now = crate::runtime::now_ms();
    let mut items = Vec::with_capacity(ids.len());
    for id in &ids {
        let r = rpc::send(env, id, &ReconcileContent {}).await;
        let done = |outcome, error: Option<String>| Reconciled { content_id: id.clone(), outcome, actor: None, error };
        items.push(match r {
            Ok(report) => Reconciled { actor: Some(report), ..done(ReconcileOutcome::Rewritten, None) },
            // Only a walk removes rows: a named id may simply be a typo.
            Err(ApiError::NotFound(_)) if walking => match catalog::drop_orphan_content(env, id, now).await {
                Ok(()) => done(ReconcileOutcome::OrphanRemoved, None),
                Err(e) => done(ReconcileOutcome::Failed, Some(e.to_string())),
            },
            Err(ApiError::NotFound(_)) => done(ReconcileOutcome::NotFound, None),
            Err(e) => done(ReconcileOutcome::Failed, Some(e.to_string())),
        });
    }
    let next_cursor = ids.last().filter(|_| walking && ids.len() == limit as usize).cloned();
    Ok(http::json(200, &ReconcilePage { checked: items.len(), items, next_cursor }))
}
