//! The D1 catalog: what is listed or searched across actors. Actors write
//! through to it on the transitions that matter (created, published, ended),
//! never on every stage. Writes that nothing waits for go out in the
//! background (`wait_until`), so every upsert keeps the newest row by time:
//! a late write can never roll a row back.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::domain::content::ContentState;
use crate::domain::pipeline::PipelineRun;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{RunStatus, StageStatus};

pub fn db(env: &Env) -> ApiResult<D1Database> {
    Ok(env.d1("DB")?)
}

fn d1_err(e: worker::Error) -> ApiError {
    ApiError::Internal(format!("catalog: {e}"))
}

pub fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

pub fn n(v: i64) -> JsValue {
    JsValue::from_f64(v as f64)
}

pub fn opt(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

/// The registry row of an actor: created once, status and time kept current.
fn registry_upsert(d: &D1Database, kind: &str, id: &str, status: &str, created: Millis, now: Millis) -> ApiResult<D1PreparedStatement> {
    d.prepare(
        "INSERT INTO actors (kind, id, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
         WHERE excluded.updated_at >= actors.updated_at",
    )
    .bind(&[s(kind), s(id), s(status), n(created), n(now)])
    .map_err(d1_err)
}

pub async fn register_actor(env: &Env, kind: &str, id: &str, status: &str, now: Millis) -> ApiResult<()> {
    registry_upsert(&db(env)?, kind, id, status, now, now)?.run().await.map_err(d1_err)?;
    Ok(())
}

#[derive(Deserialize)]
struct Exists {
    n: f64,
}

pub async fn actor_exists(env: &Env, kind: &str, id: &str) -> ApiResult<bool> {
    let r: Option<Exists> = db(env)?
        .prepare("SELECT COUNT(*) AS n FROM actors WHERE kind = ?1 AND id = ?2")
        .bind(&[s(kind), s(id)])
        .map_err(d1_err)?
        .first(None)
        .await
        .map_err(d1_err)?;
    Ok(r.is_some_and(|r| r.n > 0.0))
}

/// The run's registry row, its catalog row, and on its end the stage timings.
pub async fn record_run(env: &Env, run: &PipelineRun, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    let id = run.id.to_string();
    let failed = run.failed_stage();
    let mut stmts = vec![
        registry_upsert(&d, "run", &id, run.status.as_str(), run.created_at, now)?,
        d.prepare(
            "INSERT INTO runs (id, content_id, version, status, failed_stage, error_class, error, attempts, created_at, updated_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, failed_stage = excluded.failed_stage,
               error_class = excluded.error_class, error = excluded.error, attempts = excluded.attempts,
               updated_at = excluded.updated_at, finished_at = excluded.finished_at
             WHERE excluded.updated_at >= runs.updated_at",
        )
        .bind(&[
            s(&id),
            s(&run.content_id.to_string()),
            n(run.version as i64),
            s(run.status.as_str()),
            opt(failed.map(|f| f.stage.as_str())),
            opt(failed.and_then(|f| f.error.as_ref()).map(|e| e.class.name())),
            opt(failed.and_then(|f| f.error.as_ref()).map(|e| e.message.as_str()).or(run.reason.as_deref())),
            failed.map(|f| n(f.attempts as i64)).unwrap_or(JsValue::NULL),
            n(run.created_at),
            n(now),
            run.finished_at.map(n).unwrap_or(JsValue::NULL),
        ])
        .map_err(d1_err)?,
    ];
    if run.status == RunStatus::Completed {
        for r in run.stages.iter().filter(|r| matches!(r.status, StageStatus::Completed | StageStatus::Skipped)) {
            let dur = match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => n(b - a),
                _ => JsValue::NULL,
            };
            let status = if r.status == StageStatus::Completed { "completed" } else { "skipped" };
            stmts.push(
                d.prepare(
                    "INSERT OR REPLACE INTO stage_timings (run_id, stage, status, attempts, duration_ms, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(&[s(&id), s(r.stage.as_str()), s(status), n(r.attempts as i64), dur, n(r.finished_at.unwrap_or(now))])
                .map_err(d1_err)?,
            );
        }
    }
    d.batch(stmts).await.map_err(d1_err)?;
    Ok(())
}

/// The content's catalog row and registry row; on publish also its FTS entry.
/// Guarded by version so a late write of an older version never wins.
pub async fn record_content(env: &Env, c: &ContentState, now: Millis, index_text: bool) -> ApiResult<()> {
    let d = db(env)?;
    let id = c.id.to_string();
    let tags = serde_json::to_string(&c.doc.tags).unwrap_or_else(|_| "[]".into());
    let summary = c.artifacts.as_ref().and_then(|a| a.summary.clone());
    let run_id = c.current_run().map(|r| r.to_string()).unwrap_or_default();
    let mut stmts = vec![
        registry_upsert(&d, "content", &id, c.status.as_str(), c.created_at, now)?,
        d.prepare(
            "INSERT INTO content (id, version, title, category, tags, author, status, summary, run_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title, category = excluded.category,
               tags = excluded.tags, author = excluded.author, status = excluded.status, summary = excluded.summary,
               run_id = excluded.run_id, updated_at = excluded.updated_at
             WHERE excluded.version > content.version
                OR (excluded.version = content.version AND excluded.updated_at >= content.updated_at)",
        )
        .bind(&[
            s(&id),
            n(c.version as i64),
            s(&c.doc.title),
            opt(c.doc.category.as_deref()),
            s(&tags),
            opt(c.doc.author.as_deref()),
            s(c.status.as_str()),
            opt(summary.as_deref()),
            s(&run_id),
            n(c.created_at),
            n(now),
        ])
        .map_err(d1_err)?,
    ];
    if index_text {
        // The document keeps one FTS rowid (content_fts_keys) across versions.
        stmts.push(
            d.prepare("INSERT INTO content_fts_keys (content_id) VALUES (?1) ON CONFLICT (content_id) DO NOTHING")
                .bind(&[s(&id)])
                .map_err(d1_err)?,
        );
        stmts.push(d.prepare(DELETE_FTS_ROW).bind(&[s(&id)]).map_err(d1_err)?);
        stmts.push(
            d.prepare(
                "INSERT INTO content_fts (rowid, content_id, title, body, tags, category)
                 VALUES ((SELECT fts_rowid FROM content_fts_keys WHERE content_id = ?1), ?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&[s(&id), s(&c.doc.title), s(&c.doc.body), s(&c.doc.tags.join(" ")), opt(c.doc.category.as_deref())])
            .map_err(d1_err)?,
        );
    }
    d.batch(stmts).await.map_err(d1_err)?;
    Ok(())
}

/// Deletes a document's FTS row by its key (a rowid lookup, not a scan).
const DELETE_FTS_ROW: &str = "DELETE FROM content_fts WHERE rowid = (SELECT fts_rowid FROM content_fts_keys WHERE content_id = ?1)";

pub async fn delete_content(env: &Env, id: &str, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    let stmts = vec![
        d.prepare("DELETE FROM content WHERE id = ?1").bind(&[s(id)]).map_err(d1_err)?,
        d.prepare(DELETE_FTS_ROW).bind(&[s(id)]).map_err(d1_err)?,
        d.prepare("DELETE FROM content_fts_keys WHERE content_id = ?1").bind(&[s(id)]).map_err(d1_err)?,
        d.prepare("UPDATE actors SET status = 'deleted', updated_at = ?2 WHERE kind = 'content' AND id = ?1")
            .bind(&[s(id), n(now)])
            .map_err(d1_err)?,
    ];
    d.batch(stmts).await.map_err(d1_err)?;
    Ok(())
}
