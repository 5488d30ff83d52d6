//! The D1 catalog: what is listed or searched across actors. Actors write
//! through to it on the transitions that matter (created, published, ended),
//! never on every stage. Writes that nothing waits for go out in the
//! background (`wait_until`), so every upsert keeps the newest row by time:
//! a late write can never roll a row back.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::domain::fusion::text_version;
use crate::domain::content::ContentState;
use crate::domain::pipeline::PipelineRun;
use crate::domain::principal::{fts_scope_token, Ownership, PrincipalKind, ReadScope, Visibility};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{RunStatus, StageStatus};

pub fn db(env: &Env) -> ApiResult<D1Database> {
    Ok(env.d1(crate::config::binding::DB)?)
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
         WHERE excluded.updated_at >= actors.updated_at AND actors.status != 'deleted'",
    )
    .bind(&[s(kind), s(id), s(status), n(created), n(now)])
    .map_err(ApiError::from)
}

pub async fn register_actor(env: &Env, kind: &str, id: &str, status: &str, now: Millis) -> ApiResult<()> {
    registry_upsert(&db(env)?, kind, id, status, now, now)?.run().await?;
    Ok(())
}

#[derive(Deserialize)]
struct Exists {
    n: f64,
}

/// Removes an actor's registry row (a session past its expiry).
pub async fn forget_actor(env: &Env, kind: &str, id: &str) -> ApiResult<()> {
    registry_delete(&db(env)?, kind, id)?.run().await?;
    Ok(())
}

fn registry_delete(d: &D1Database, kind: &str, id: &str) -> ApiResult<D1PreparedStatement> {
    Ok(d.prepare("DELETE FROM actors WHERE kind = ?1 AND id = ?2").bind(&[s(kind), s(id)])?)
}

// ---------------------------------------------------------------- what answers quote

#[derive(Deserialize)]
struct Quoted {
    id: String,
}

/// Records that answer `answer_id` quotes `content_ids`, for the items the
/// catalog still holds, and returns those (the others were deleted since
/// they were retrieved: the answer must not quote them). Written before the
/// answer starts, so a later deletion finds the answer ([`answers_quoting`]).
pub async fn record_answer_sources(env: &Env, answer_id: &str, content_ids: &[String]) -> ApiResult<Vec<String>> {
    if content_ids.is_empty() {
        return Ok(Vec::new());
    }
    let d = db(env)?;
    let mut stmts = content_ids
        .iter()
        .map(|cid| {
            d.prepare(
                "INSERT OR IGNORE INTO answer_sources (content_id, answer_id)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM content WHERE id = ?1)",
            )
            .bind(&[s(cid), s(answer_id)])
        })
        .collect::<Result<Vec<_>, _>>()?;
    stmts.push(d.prepare("SELECT content_id AS id FROM answer_sources WHERE answer_id = ?1").bind(&[s(answer_id)])?);
    let results = d.batch(stmts).await?;
    let rows: Vec<Quoted> = results.last().map(|r| r.results()).transpose()?.unwrap_or_default();
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The answers that quote item `content_id`, by id after `after` (keyset
/// pages), at most `limit`.
pub async fn answers_quoting(env: &Env, content_id: &str, after: &str, limit: u32) -> ApiResult<Vec<String>> {
    let rows: Vec<Quoted> = db(env)?
        .prepare("SELECT answer_id AS id FROM answer_sources WHERE content_id = ?1 AND answer_id > ?2 ORDER BY answer_id LIMIT ?3")
        .bind(&[s(content_id), s(after), n(limit as i64)])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Forgets that `answer_ids` quote `content_id`: they were told.
pub async fn drop_quotes(env: &Env, content_id: &str, answer_ids: &[String]) -> ApiResult<()> {
    let d = db(env)?;
    let stmts = answer_ids
        .iter()
        .map(|a| d.prepare("DELETE FROM answer_sources WHERE content_id = ?1 AND answer_id = ?2").bind(&[s(content_id), s(a)]))
        .collect::<Result<Vec<_>, _>>()?;
    if !stmts.is_empty() {
        d.batch(stmts).await?;
    }
    Ok(())
}

/// Removes an erased answer's rows: its registry row and what it quoted.
pub async fn forget_answer(env: &Env, answer_id: &str) -> ApiResult<()> {
    let d = db(env)?;
    d.batch(vec![
        registry_delete(&d, "answer", answer_id)?,
        d.prepare("DELETE FROM answer_sources WHERE answer_id = ?1").bind(&[s(answer_id)])?,
    ])
    .await?;
    Ok(())
}

pub async fn actor_exists(env: &Env, kind: &str, id: &str) -> ApiResult<bool> {
    let r: Option<Exists> = db(env)?
        .prepare("SELECT COUNT(*) AS n FROM actors WHERE kind = ?1 AND id = ?2")
        .bind(&[s(kind), s(id)])?
        .first(None)
        .await?;
    Ok(r.is_some_and(|r| r.n > 0.0))
}

/// The run's registry row, its catalog row, and on its end the stage timings.
pub async fn record_run(env: &Env, run: &PipelineRun, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    let id = run.id.to_string();
    if run.purged {
        // Its item was deleted: only the registry row (the inspector's) stays.
        d.batch(vec![
            registry_upsert(&d, "run", &id, run.status.as_str(), run.created_at, now)?,
            d.prepare("DELETE FROM stage_timings WHERE run_id = ?1").bind(&[s(&id)])?,
            d.prepare("DELETE FROM runs WHERE id = ?1").bind(&[s(&id)])?,
        ])
        .await?;
        return Ok(());
    }
    let failed = run.failed_stage();
    // A try that began before its item was deleted may land after the
    // deletion erased the run's rows: the item's tombstone keeps it out.
    let mut stmts = vec![
        registry_upsert(&d, "run", &id, run.status.as_str(), run.created_at, now)?,
        d.prepare(
            "INSERT INTO runs (id, content_id, version, status, failed_stage, error_class, error, attempts, created_at, updated_at, finished_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 WHERE NOT EXISTS (SELECT 1 FROM actors WHERE kind = 'content' AND id = ?2 AND status = 'deleted')
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
        ])?,
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
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM actors WHERE kind = 'content' AND id = ?7 AND status = 'deleted')",
                )
                .bind(&[s(&id), s(r.stage.as_str()), s(status), n(r.attempts as i64), dur, n(r.finished_at.unwrap_or(now)), s(&run.content_id.to_string())])?,
            );
        }
    }
    d.batch(stmts).await?;
    Ok(())
}

/// The content's catalog row and registry row; on publish also its FTS entry.
/// Fenced: a late write of an older version never wins, the FTS row is
/// written only for the version the row holds, and a deleted item (registry
/// status `deleted`) gets no row back.
pub async fn record_content(env: &Env, c: &ContentState, now: Millis, index_text: bool) -> ApiResult<()> {
    let d = db(env)?;
    let id = c.id.to_string();
    let tags = serde_json::to_string(&c.doc.tags).unwrap_or_else(|_| "[]".into());
    let summary = c.current_artifacts().and_then(|a| a.summary.clone());
    let run_id = c.current_run().map(|r| r.to_string()).unwrap_or_default();
    let mut stmts = vec![
        registry_upsert(&d, "content", &id, c.status.as_str(), c.created_at, now)?,
        d.prepare(
            "INSERT INTO content (id, version, title, category, tags, author, status, summary, run_id, created_at, updated_at, tenant, owner, visibility, owner_kind)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15
             WHERE NOT EXISTS (SELECT 1 FROM actors WHERE kind = 'content' AND id = ?1 AND status = 'deleted')
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title, category = excluded.category,
               tags = excluded.tags, author = excluded.author, status = excluded.status, summary = excluded.summary,
               run_id = excluded.run_id, updated_at = excluded.updated_at, visibility = excluded.visibility,
               owner_kind = CASE content.owner_kind WHEN '' THEN excluded.owner_kind ELSE content.owner_kind END
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
            s(&c.ownership.tenant),
            s(&c.ownership.owner),
            s(c.ownership.visibility.as_str()),
            s(c.ownership.kind_of_owner().map_or("", PrincipalKind::as_str)),
        ])?,
    ];
    if c.status == crate::protocol::ContentStatus::Failed {
        // The current version failed: an older version's text leaves the
        // keyword index, if the row above says so now (not a late write).
        stmts.push(
            d.prepare(format!("{DELETE_FTS_ROW} AND EXISTS (SELECT 1 FROM content WHERE id = ?1 AND version = ?7 AND status = 'failed')"))
                .bind(&[s(&id), JsValue::NULL, JsValue::NULL, JsValue::NULL, JsValue::NULL, JsValue::NULL, n(c.version as i64)])?,
        );
    }
    if index_text {
        // The document keeps one FTS rowid (content_fts_keys) across versions.
        // Each statement runs only while the row holds this version (`?7`).
        let version = n(c.version as i64);
        stmts.push(
            d.prepare(format!(
                "INSERT INTO content_fts_keys (content_id, visibility, version) SELECT ?1, ?2, ?7 WHERE {CURRENT_ROW}
                 ON CONFLICT (content_id) DO UPDATE SET visibility = excluded.visibility, version = excluded.version"
            ))
            .bind(&[
                s(&id),
                s(c.ownership.visibility.as_str()),
                JsValue::NULL,
                JsValue::NULL,
                JsValue::NULL,
                JsValue::NULL,
                version.clone(),
            ])?,
        );
        stmts.push(
            d.prepare(format!("{DELETE_FTS_ROW} AND {CURRENT_ROW}"))
                .bind(&[s(&id), JsValue::NULL, JsValue::NULL, JsValue::NULL, JsValue::NULL, JsValue::NULL, version.clone()])?,
        );
        stmts.push(
            d.prepare(format!(
                "INSERT INTO content_fts (rowid, content_id, title, body, tags, category, scope)
                 SELECT (SELECT fts_rowid FROM content_fts_keys WHERE content_id = ?1), ?1, ?2, ?3, ?4, ?5, ?6 WHERE {CURRENT_ROW}"
            ))
            .bind(&[
                s(&id),
                s(&c.doc.title),
                s(&c.doc.body),
                s(&c.doc.tags.join(" ")),
                opt(c.doc.category.as_deref()),
                s(&fts_scope_token(&c.ownership)),
                version,
            ])?,
        );
    }
    d.batch(stmts).await?;
    Ok(())
}

/// Deletes a document's FTS row by its key (a rowid lookup, not a scan).
const DELETE_FTS_ROW: &str = "DELETE FROM content_fts WHERE rowid = (SELECT fts_rowid FROM content_fts_keys WHERE content_id = ?1)";

/// The FTS fence: the catalog row of `?1` exists and holds version `?7`.
const CURRENT_ROW: &str = "EXISTS (SELECT 1 FROM content WHERE id = ?1 AND version = ?7)";

/// Removes an item from the catalog and leaves its registry row as the
/// tombstone that keeps [`record_content`] from writing it back.
pub async fn delete_content(env: &Env, id: &str, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    d.batch(erase_content(&d, id, now)?).await?;
    Ok(())
}

/// A deleted item's rows: its listing and keyword rows go, and so do its
/// runs' rows and timings (a purged run's own catalog write erases them too,
/// whichever lands last); the registry keeps `deleted`.
fn erase_content(d: &D1Database, id: &str, now: Millis) -> ApiResult<Vec<D1PreparedStatement>> {
    Ok(vec![
        d.prepare("DELETE FROM content WHERE id = ?1").bind(&[s(id)])?,
        d.prepare(DELETE_FTS_ROW).bind(&[s(id)])?,
        d.prepare("DELETE FROM content_fts_keys WHERE content_id = ?1").bind(&[s(id)])?,
        d.prepare("DELETE FROM stage_timings WHERE run_id IN (SELECT id FROM runs WHERE content_id = ?1)").bind(&[s(id)])?,
        d.prepare("DELETE FROM runs WHERE content_id = ?1").bind(&[s(id)])?,
        d.prepare(
            "INSERT INTO actors (kind, id, status, created_at, updated_at) VALUES ('content', ?1, 'deleted', ?2, ?2)
             ON CONFLICT (kind, id) DO UPDATE SET status = 'deleted', updated_at = excluded.updated_at",
        )
        .bind(&[s(id), n(now)])?,
    ])
}

// ---------------------------------------------------------------- API keys

/// An API key's row. Only the SHA-256 of the key is stored.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyRow {
    pub key_id: String,
    pub tenant: String,
    pub name: String,
    /// A JSON array of scope names.
    pub scopes: String,
    pub rate_per_min: Option<f64>,
    pub key_hash: String,
    pub created_at: f64,
    pub revoked_at: Option<f64>,
}

impl KeyRow {
    pub fn scopes(&self) -> Vec<crate::domain::principal::Scope> {
        serde_json::from_str::<Vec<String>>(&self.scopes)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| crate::domain::principal::Scope::parse(s))
            .collect()
    }

    /// The listing and creation view: never the key or its hash.
    pub fn view(&self) -> crate::protocol::KeyView {
        crate::protocol::KeyView {
            key_id: self.key_id.clone(),
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            scopes: self.scopes(),
            rate_per_min: self.rate_per_min.map(|r| r as u32),
            created_at: crate::domain::time::rfc3339(self.created_at as i64),
            revoked_at: self.revoked_at.map(|r| crate::domain::time::rfc3339(r as i64)),
            key: None,
        }
    }
}

pub async fn find_key(env: &Env, key_id: &str) -> ApiResult<Option<KeyRow>> {
    db(env)?
        .prepare("SELECT key_id, tenant, name, scopes, rate_per_min, key_hash, created_at, revoked_at FROM api_keys WHERE key_id = ?1")
        .bind(&[s(key_id)])?
        .first(None)
        .await
        .map_err(ApiError::from)
}

pub async fn create_key(env: &Env, row: &KeyRow) -> ApiResult<()> {
    db(env)?
        .prepare(
            "INSERT INTO api_keys (key_id, tenant, name, scopes, rate_per_min, key_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&[
            s(&row.key_id),
            s(&row.tenant),
            s(&row.name),
            s(&row.scopes),
            row.rate_per_min.map(JsValue::from_f64).unwrap_or(JsValue::NULL),
            s(&row.key_hash),
            n(row.created_at as i64),
        ])?
        .run()
        .await?;
    Ok(())
}

pub async fn list_keys(env: &Env, tenant: Option<&str>) -> ApiResult<Vec<KeyRow>> {
    Ok(db(env)?
        .prepare(
            "SELECT key_id, tenant, name, scopes, rate_per_min, key_hash, created_at, revoked_at FROM api_keys
             WHERE (?1 IS NULL OR tenant = ?1) ORDER BY created_at DESC, key_id LIMIT 1000",
        )
        .bind(&[opt(tenant)])?
        .all()
        .await?
        .results()?)
}

/// Most parameters one D1 statement may bind
/// (developers.cloudflare.com/d1/platform/limits/).
const MAX_D1_PARAMS: usize = 100;

/// Which of `key_ids` are live (exist and are not revoked): what an actor
/// holding sockets of those keys checks (`domain::broadcast::KEY_RECHECK_MS`).
pub async fn live_keys(env: &Env, key_ids: &[impl AsRef<str>]) -> ApiResult<std::collections::HashSet<String>> {
    #[derive(serde::Deserialize)]
    struct Live {
        key_id: String,
    }
    let mut live = std::collections::HashSet::new();
    for ids in key_ids.chunks(MAX_D1_PARAMS) {
        let marks = vec!["?"; ids.len()].join(", ");
        let rows: Vec<Live> = db(env)?
            .prepare(format!("SELECT key_id FROM api_keys WHERE revoked_at IS NULL AND key_id IN ({marks})"))
            .bind(&ids.iter().map(|id| s(id.as_ref())).collect::<Vec<_>>())?
            .all()
            .await?
            .results()?;
        live.extend(rows.into_iter().map(|r| r.key_id));
    }
    Ok(live)
}

/// Marks a key revoked; `false` when there is no such live key.
pub async fn revoke_key(env: &Env, key_id: &str, now: Millis) -> ApiResult<bool> {
    let r = db(env)?
        .prepare("UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL")
        .bind(&[s(key_id), n(now)])?
        .run()
        .await?;
    Ok(r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) > 0)
}

// ---------------------------------------------------------------- reads

/// The SQL condition (over a `content` row aliased `c`) and its binds that
/// keep a listing or search to what a [`ReadScope`] admits; the same rule as
/// `ReadScope::admits`. Binds start at `?{first}`.
fn scope_sql(scope: &ReadScope, first: usize) -> (String, Vec<JsValue>) {
    scope_sql_on(scope, first, "c.visibility")
}

/// [`scope_sql`] with the visibility read from `visibility` (a column or
/// [`SHOWN_VISIBILITY`]).
fn scope_sql_on(scope: &ReadScope, first: usize, visibility: &str) -> (String, Vec<JsValue>) {
    match scope {
        ReadScope::All => ("1 = 1".into(), Vec::new()),
        ReadScope::PublicOnly => (format!("({visibility}) = 'public'"), Vec::new()),
        ReadScope::Tenant { .. } => {
            let (own, binds) = own_tenant_sql(scope, first, visibility);
            (format!("(({visibility}) = 'public' OR ({own}))"), binds)
        }
    }
}

/// A catalog row's owner kind as `Ownership::kind_of_owner` reads it: as
/// recorded, or for a row from before kinds were, a key's when the owner has
/// a key id's form (`principal::is_key_id`), else `''` (not known).
const OWNER_KIND: &str = "COALESCE(NULLIF(c.owner_kind, ''),
      CASE WHEN length(c.owner) = 32 AND c.owner NOT GLOB '*[^0-9a-f]*' THEN 'api_key' ELSE '' END)";

/// The part of a tenant's scope that is its own tenant's items (not the
/// public ones), and its binds from `?{first}`; `1 = 0` for other scopes.
fn own_tenant_sql(scope: &ReadScope, first: usize, visibility: &str) -> (String, Vec<JsValue>) {
    let ReadScope::Tenant { tenant, subject, kind, read, manage } = scope else { return ("1 = 0".into(), Vec::new()) };
    // The owner is its subject of its kind (`''`: a scope from before kinds
    // were recorded, or an owner of no known kind), as `Ownership::owned_by`
    // says.
    (
        format!(
            "c.tenant = ?{a} AND ((c.owner <> '' AND c.owner = ?{b} AND (?{k} = '' OR {OWNER_KIND} IN ('', ?{k})))
               OR ?{m} = 1 OR (?{r} = 1 AND ({v}) = 'tenant'))",
            v = visibility,
            a = first,
            b = first + 1,
            m = first + 2,
            r = first + 3,
            k = first + 4
        ),
        vec![s(tenant), s(subject), n(*manage as i64), n(*read as i64), s(kind.map_or("", PrincipalKind::as_str))],
    )
}

/// One listing row.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct ContentRow {
    pub id: String,
    pub version: f64,
    pub title: String,
    pub category: Option<String>,
    pub tags: String,
    pub status: String,
    pub summary: Option<String>,
    pub run_id: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub tenant: String,
    pub owner: String,
    pub visibility: String,
}

pub struct ListQuery<'a> {
    pub scope: &'a ReadScope,
    pub status: Option<&'a str>,
    pub category: Option<&'a str>,
    /// Keyset cursor: rows strictly before (created_at, id).
    pub before: (i64, &'a str),
    pub limit: u32,
}

/// The listing's columns.
const LIST_COLUMNS: &str = "id, version, title, category, tags, status, summary, run_id, created_at, updated_at, tenant, owner, visibility";

/// The content listing, newest first, `limit + 1` rows (the extra one says
/// whether there is a next page).
///
/// A tenant's scope is two disjoint parts, the public items and its own
/// tenant's others, each read in order along its own index (`visibility`,
/// `tenant`) for at most a page and then merged: one condition with `OR`
/// over both read every row of both and sorted them for every page (about
/// 280 ms a page at 300,000 rows in SQLite, against 0.2 ms so).
pub async fn list_content(env: &Env, q: &ListQuery<'_>) -> ApiResult<Vec<ContentRow>> {
    let page = |cond: &str| {
        format!(
            "SELECT {LIST_COLUMNS} FROM content c
             WHERE (?1 IS NULL OR c.status = ?1) AND (?2 IS NULL OR c.category = ?2)
               AND (c.created_at < ?3 OR (c.created_at = ?3 AND c.id < ?4)) AND {cond}
             ORDER BY c.created_at DESC, c.id DESC LIMIT ?5"
        )
    };
    let mut binds = vec![
        opt(q.status),
        opt(q.category),
        n(q.before.0.min(9_007_199_254_740_991)),
        s(if q.before.1.is_empty() { "\u{10FFFF}" } else { q.before.1 }),
        n(q.limit as i64 + 1),
    ];
    let sql = match q.scope {
        ReadScope::Tenant { .. } => {
            let (own, scope_binds) = own_tenant_sql(q.scope, 6, "c.visibility");
            binds.extend(scope_binds);
            let public = page("c.visibility = 'public'");
            let own = page(&format!("c.visibility <> 'public' AND {own}"));
            format!(
                "SELECT {LIST_COLUMNS} FROM ({public}) UNION ALL SELECT {LIST_COLUMNS} FROM ({own})
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            )
        }
        other => {
            let (cond, scope_binds) = scope_sql(other, 6);
            binds.extend(scope_binds);
            page(&cond)
        }
    };
    Ok(db(env)?.prepare(sql).bind(&binds)?.all().await?.results()?)
}

/// The FTS5 expression for `user_match` (from `fusion::fts_match`) limited to
/// the text columns and, unless `tokens` is `None`, to the given scopes.
pub fn scoped_match(user_match: &str, tokens: Option<&[String]>) -> String {
    let text = format!("{{title body tags}} : ({user_match})");
    match tokens {
        None => text,
        Some(t) => {
            let any = t.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR ");
            format!("{text} AND scope : ({any})")
        }
    }
}

#[derive(Deserialize)]
struct FtsRow {
    content_id: String,
}

/// Keyword side of search: the ids of documents `scope` may read, by bm25,
/// at most `limit`. Readability is decided here, before the ranks are
/// fused: a filter after the cut would let unreadable matches (another
/// member's private items, which share the tenant's scope token) push
/// readable ones out, and the missing results would say they exist.
pub async fn keyword_search(env: &Env, fts: &str, category: Option<&str>, scope: &ReadScope, limit: u32) -> ApiResult<Vec<String>> {
    let (cond, scope_binds) = scope_sql_on(scope, 4, SHOWN_VISIBILITY);
    let sql = format!(
        "SELECT k.content_id AS content_id FROM content_fts
           JOIN content_fts_keys k ON k.fts_rowid = content_fts.rowid JOIN content c ON c.id = k.content_id
         WHERE content_fts MATCH ?1 AND (?2 IS NULL OR content_fts.category = ?2) AND {cond}
         ORDER BY bm25(content_fts, 0.0, 3.0, 1.0, 2.0, 0.0, 0.0) LIMIT ?3"
    );
    let mut binds = vec![s(fts), opt(category), n(limit as i64)];
    binds.extend(scope_binds);
    let rows: Vec<FtsRow> = db(env)?.prepare(sql).bind(&binds)?.all().await?.results()?;
    Ok(rows.into_iter().map(|r| r.content_id).collect())
}

/// Of `ids` (the vector side's documents, in rank order), those `scope` may
/// read, in the same order: the vector side's readability, decided before
/// the fusion as [`keyword_search`] decides the keyword side's.
pub async fn readable_ids(env: &Env, scope: &ReadScope, ids: &[String]) -> ApiResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (cond, scope_binds) = scope_sql_on(scope, 2, SHOWN_VISIBILITY);
    // One JSON array bound once: a vector side may name up to 200 ids, past
    // D1's 100 bound parameters per statement.
    let sql = format!(
        "SELECT k.content_id AS content_id FROM json_each(?1) j
           JOIN content_fts_keys k ON k.content_id = j.value JOIN content c ON c.id = k.content_id
         WHERE {cond} ORDER BY j.key"
    );
    let mut binds = vec![s(&serde_json::to_string(ids).map_err(|e| ApiError::Internal(e.to_string()))?)];
    binds.extend(scope_binds);
    let rows: Vec<FtsRow> = db(env)?.prepare(sql).bind(&binds)?.all().await?.results()?;
    Ok(rows.into_iter().map(|r| r.content_id).collect())
}

/// A search hit's document: indexed text and the item's current ownership.
#[derive(Deserialize)]
pub struct DocRow {
    pub content_id: String,
    pub title: String,
    pub body: String,
    pub tenant: String,
    pub owner: String,
    #[serde(default)]
    pub owner_kind: String,
    pub visibility: String,
    #[serde(default)]
    pub category: Option<String>,
    /// The item's current version and status: when it is `indexed`, the
    /// keyword row's text is that version's.
    #[serde(default)]
    pub version: Option<f64>,
    #[serde(default)]
    pub status: Option<String>,
    /// The version whose text `body` is, as its keyword row recorded it
    /// (migrations/0007); none for rows indexed before.
    #[serde(default)]
    pub text_version: Option<f64>,
}

impl DocRow {
    /// The version whose text `body` is (`fusion::text_version`).
    pub fn indexed_version(&self) -> Option<u32> {
        let indexed = self.status.as_deref() == Some("indexed");
        text_version(self.text_version.map(|v| v as u32), self.version.map(|v| v as u32), indexed)
    }

    pub fn ownership(&self) -> Ownership {
        Ownership {
            tenant: self.tenant.clone(),
            owner: self.owner.clone(),
            visibility: Visibility::parse(&self.visibility).unwrap_or(Visibility::Private),
            owner_kind: PrincipalKind::parse(&self.owner_kind),
        }
    }
}

/// Whom an indexed text may be shown to: the stricter of the visibility of
/// the version it is (`content_fts_keys.visibility`) and the item's current
/// one, so widening an item shows no reader an older version's text it could
/// not read (see migrations/0004).
const SHOWN_VISIBILITY: &str = "CASE WHEN 'private' IN (k.visibility, c.visibility) THEN 'private'
      WHEN 'tenant' IN (k.visibility, c.visibility) THEN 'tenant' ELSE c.visibility END";

/// The documents of `ids` that are in the catalog (a deleted item is not),
/// each with the visibility its indexed text is shown under ([`SHOWN_VISIBILITY`]).
pub async fn fetch_docs(env: &Env, ids: &[String]) -> ApiResult<Vec<DocRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=ids.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT k.content_id AS content_id, f.title AS title, f.body AS body, c.tenant AS tenant, c.owner AS owner, c.owner_kind AS owner_kind,
                {SHOWN_VISIBILITY} AS visibility, c.category AS category, c.version AS version, c.status AS status,
                k.version AS text_version
         FROM content_fts_keys k JOIN content_fts f ON f.rowid = k.fts_rowid JOIN content c ON c.id = k.content_id
         WHERE k.content_id IN ({placeholders})"
    );
    let binds: Vec<JsValue> = ids.iter().map(|i| s(i)).collect();
    Ok(db(env)?.prepare(sql).bind(&binds)?.all().await?.results()?)
}

/// Bounded retention for logs that hold user text: the search log keeps
/// `SEARCH_LOG_DAYS` days and at most `SEARCH_LOG_ROWS` rows; dead letters
/// (failed runs' rows, with their error text) keep `DEAD_LETTER_DAYS` days.
pub const SEARCH_LOG_DAYS: i64 = 7;
pub const SEARCH_LOG_ROWS: i64 = 100_000;
pub const DEAD_LETTER_DAYS: i64 = 30;
const DEAD_LETTER_PRUNE: &str = "DELETE FROM runs WHERE status = 'failed' AND finished_at < ?1";
/// The dead letters kept as of `?1`, the start of their window ([`dead_letters_since`]).
const DEAD_LETTERS_KEPT: &str = "FROM runs WHERE status = 'failed' AND finished_at >= ?1";

/// Where the dead-letter window starts as of `now`: `DEAD_LETTER_DAYS` back.
fn dead_letters_since(now: Millis) -> Millis {
    now - DEAD_LETTER_DAYS * 24 * 3600 * 1000
}

/// How often one isolate's searches apply the retention: at most once a
/// minute, not with every search (two D1 writes more per search, which a
/// flood of anonymous searches would turn into D1's one writer's work).
const SEARCH_PRUNE_EVERY_MS: Millis = 60_000;

thread_local! {
    /// When this isolate's searches last applied the retention.
    static SEARCH_PRUNED_AT: std::cell::Cell<Millis> = const { std::cell::Cell::new(Millis::MIN) };
}

/// The search's log row, and the retention with it when this isolate has
/// not applied it for [`SEARCH_PRUNE_EVERY_MS`] (the log may then pass
/// [`SEARCH_LOG_ROWS`] by a minute's searches until the next).
pub fn log_search_statements(env: &Env, row: [JsValue; 7], now: Millis) -> ApiResult<Vec<D1PreparedStatement>> {
    let d = db(env)?;
    let mut stmts = vec![d
        .prepare("INSERT INTO search_log (q, k, category, mode, results, took_ms, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .bind(&row)?];
    let due = SEARCH_PRUNED_AT.with(|at| {
        let due = now.saturating_sub(at.get()) >= SEARCH_PRUNE_EVERY_MS;
        if due {
            at.set(now);
        }
        due
    });
    if due {
        stmts.extend(retention_statements(&d, now)?);
    }
    Ok(stmts)
}

/// What [`SEARCH_LOG_DAYS`], [`SEARCH_LOG_ROWS`] and [`DEAD_LETTER_DAYS`]
/// drop as of `now`.
fn retention_statements(d: &D1Database, now: Millis) -> ApiResult<Vec<D1PreparedStatement>> {
    let day = 24 * 3600 * 1000;
    Ok(vec![
        d.prepare("DELETE FROM search_log WHERE at < ?1 OR id <= (SELECT MAX(id) FROM search_log) - ?2")
            .bind(&[n(now - SEARCH_LOG_DAYS * day), n(SEARCH_LOG_ROWS)])?,
        d.prepare(DEAD_LETTER_PRUNE).bind(&[n(dead_letters_since(now))])?,
    ])
}

/// The logs' retention applied now: the Worker's daily cron trigger, so it
/// holds on a deployment nobody searches (searches and the dead-letter
/// listing apply it too).
pub async fn prune_logs(env: &Env, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    d.batch(retention_statements(&d, now)?).await?;
    Ok(())
}

pub async fn run_batch(env: &Env, stmts: Vec<D1PreparedStatement>) -> ApiResult<()> {
    db(env)?.batch(stmts).await?;
    Ok(())
}

// ---------------------------------------------------------------- operator queries

/// A registry row, as the inspector lists it.
#[derive(Debug, Deserialize)]
pub struct ActorRow {
    pub kind: String,
    pub id: String,
    pub status: String,
    pub updated_at: f64,
}

/// Registry rows newest first, after the cursor `(updated_at, "kind:id")`;
/// one more than `limit` when there is a next page.
pub async fn list_actors(
    env: &Env,
    kind: Option<&str>,
    status: Option<&str>,
    after: (i64, &str),
    limit: u32,
) -> ApiResult<Vec<ActorRow>> {
    Ok(db(env)?
        .prepare(
            "SELECT kind, id, status, updated_at FROM actors
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)
               AND (updated_at < ?3 OR (updated_at = ?3 AND kind || ':' || id < ?4))
             ORDER BY updated_at DESC, kind || ':' || id DESC LIMIT ?5",
        )
        .bind(&[
            opt(kind),
            opt(status),
            n(after.0.min(9_007_199_254_740_991)),
            s(if after.1.is_empty() { "\u{10FFFF}" } else { after.1 }),
            n(limit as i64 + 1),
        ])?
        .all()
        .await?
        .results()?)
}

/// A failed run's catalog row: one dead letter.
#[derive(Debug, Deserialize)]
pub struct DeadLetterRow {
    pub id: String,
    pub content_id: String,
    pub version: f64,
    pub failed_stage: Option<String>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<f64>,
    pub finished_at: f64,
}

/// The failed runs of the last `DEAD_LETTER_DAYS` days, newest failure
/// first. Ordered by when the run failed, not when its row was last
/// written (a reconciliation rewrites rows), with the id breaking ties.
/// Older ones are pruned here too, so retention holds without searches
/// (the search log's writes prune them as well).
pub async fn dead_letters(env: &Env, limit: u32, now: Millis) -> ApiResult<Vec<DeadLetterRow>> {
    let d = db(env)?;
    let since = dead_letters_since(now);
    let mut results = d
        .batch(vec![
            d.prepare(DEAD_LETTER_PRUNE).bind(&[n(since)])?,
            d.prepare(format!(
                "SELECT id, content_id, version, failed_stage, error_class, error, attempts, finished_at {DEAD_LETTERS_KEPT}
                 ORDER BY finished_at DESC, id DESC LIMIT ?2"
            ))
            .bind(&[n(since), n(limit as i64)])?,
        ])
        .await?;
    Ok(results.pop().map(|r| r.results()).transpose()?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
pub struct ActorCount {
    pub kind: String,
    pub status: String,
    pub n: f64,
}

#[derive(Debug, Deserialize)]
pub struct StageSample {
    pub stage: String,
    pub duration_ms: Option<f64>,
    pub attempts: f64,
}

#[derive(Deserialize)]
struct SearchSample {
    took_ms: f64,
}

/// What `/admin/metrics` is computed from: actor counts by kind and status,
/// the latest stage timings and the latest search latencies, and how many
/// dead letters `GET /admin/dead-letters` holds.
pub struct MetricSamples {
    pub counts: Vec<ActorCount>,
    pub stages: Vec<StageSample>,
    pub searches_ms: Vec<f64>,
    pub dead_letters: u64,
}

#[derive(Deserialize)]
struct Count {
    n: f64,
}

pub async fn metric_samples(env: &Env, now: Millis) -> ApiResult<MetricSamples> {
    let d = db(env)?;
    // The dead-letter list's own rows and window, not the registry's failed
    // runs (which no retention prunes).
    let dead_letters = d
        .prepare(format!("SELECT COUNT(*) AS n {DEAD_LETTERS_KEPT}"))
        .bind(&[n(dead_letters_since(now))])?
        .first::<Count>(None)
        .await?
        .map_or(0, |c| c.n as u64);
    let counts = d.prepare("SELECT kind, status, COUNT(*) AS n FROM actors GROUP BY kind, status").all().await?.results()?;
    let stages = d
        .prepare("SELECT stage, duration_ms, attempts FROM stage_timings ORDER BY finished_at DESC LIMIT 5000")
        .all()
        .await?
        .results()?;
    let searches_ms = d
        .prepare("SELECT took_ms FROM search_log ORDER BY id DESC LIMIT 1000")
        .all()
        .await?
        .results::<SearchSample>()?
        .into_iter()
        .map(|r| r.took_ms)
        .collect();
    Ok(MetricSamples { counts, stages, searches_ms, dead_letters })
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// Content ids the catalog knows of in any form (a registry row, a listing
/// row, or both), in id order after `after`: the ones a reconciliation sweep
/// asks their actors about. A row in only one table is exactly the drift the
/// sweep repairs.
pub async fn known_content_ids(env: &Env, after: &str, limit: u32) -> ApiResult<Vec<String>> {
    let rows: Vec<IdRow> = db(env)?
        .prepare(
            "SELECT id FROM actors WHERE kind = 'content' AND id > ?1
             UNION SELECT id FROM content WHERE id > ?1
             UNION SELECT content_id AS id FROM runs WHERE content_id > ?1
             ORDER BY id LIMIT ?2",
        )
        .bind(&[s(after), n(limit as i64)])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Removes what the catalog holds for a content id whose actor holds nothing
/// (no state, no tombstone): its listing and keyword rows and its runs' rows.
/// The registry row becomes `deleted`, as after a delete.
pub async fn drop_orphan_content(env: &Env, id: &str, now: Millis) -> ApiResult<()> {
    let d = db(env)?;
    // One batch (one round trip, all or nothing); the runs' registry rows go
    // before the runs rows that name them.
    let mut stmts =
        vec![d.prepare("DELETE FROM actors WHERE kind = 'run' AND id IN (SELECT id FROM runs WHERE content_id = ?1)").bind(&[s(id)])?];
    stmts.extend(erase_content(&d, id, now)?);
    d.batch(stmts).await?;
    Ok(())
}
