//! `/api/content`: submissions, views, versions, deletion and the listing.

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use worker::{Env, Request, Response};

use super::input::{int_param, json_body, param, query, uuid_param};
use crate::actors::rpc::{self, ActorKind};
use crate::catalog::{self, n, s};
use crate::domain::content::ContentDoc;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{Accepted, ContentInput};
use crate::runtime::config;

async fn submit(env: &Env, req: &mut Request, content_id: Uuid, op: &str) -> ApiResult<Response> {
    let cfg = config(env);
    let input: ContentInput = json_body(req, cfg.limits.request_max_bytes).await?;
    let doc = ContentDoc::validate(input, &cfg.limits)?;
    let run_id = Uuid::new_v4();
    let body = json!({ "content_id": content_id, "run_id": run_id, "doc": doc });
    let accepted: Accepted = rpc::call(env, ActorKind::Content, &content_id.to_string(), op, &body).await?;
    let resp = http::json(202, &accepted);
    let _ = resp.headers().set("location", &accepted.links.content);
    Ok(resp)
}

pub async fn create(env: &Env, mut req: Request) -> ApiResult<Response> {
    submit(env, &mut req, Uuid::new_v4(), "create").await
}

pub async fn update(env: &Env, mut req: Request, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    submit(env, &mut req, id, "update").await
}

pub async fn get(env: &Env, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    let view: Value = rpc::call(env, ActorKind::Content, &id.to_string(), "view", &()).await?;
    Ok(http::json(200, &view))
}

pub async fn delete(env: &Env, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    let _: Value = rpc::call(env, ActorKind::Content, &id.to_string(), "delete", &()).await?;
    Ok(http::no_content())
}

#[derive(Deserialize, serde::Serialize)]
struct Row {
    id: String,
    version: f64,
    title: String,
    category: Option<String>,
    tags: String,
    status: String,
    summary: Option<String>,
    run_id: String,
    created_at: f64,
    updated_at: f64,
}

/// Keyset pagination on (created_at, id), newest first. The cursor is opaque
/// to clients: `<created_at>.<id>`.
pub async fn list(env: &Env, req: Request) -> ApiResult<Response> {
    let q = query(&req)?;
    let limit = int_param(&q, "limit", 20, 1, 100)?;
    let status = param(&q, "status").filter(|s| !s.is_empty());
    if let Some(st) = status {
        if !["processing", "indexed", "failed"].contains(&st) {
            return Err(ApiError::invalid("status", "must be processing, indexed or failed"));
        }
    }
    let category = param(&q, "category").filter(|s| !s.is_empty()).map(|c| c.trim().to_lowercase());
    let (c_at, c_id) = match param(&q, "cursor").filter(|c| !c.is_empty()) {
        None => (i64::MAX, String::new()),
        Some(c) => parse_cursor(c)?,
    };
    let stmt = catalog::db(env)?
        .prepare(
            "SELECT id, version, title, category, tags, status, summary, run_id, created_at, updated_at FROM content
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR category = ?2)
               AND (created_at < ?3 OR (created_at = ?3 AND id < ?4))
             ORDER BY created_at DESC, id DESC LIMIT ?5",
        )
        .bind(&[
            catalog::opt(status),
            catalog::opt(category.as_deref()),
            n(c_at.min(9_007_199_254_740_991)),
            s(if c_id.is_empty() { "\u{10FFFF}" } else { &c_id }),
            n(limit as i64 + 1),
        ])?;
    let mut rows: Vec<Row> = stmt.all().await?.results()?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| format!("{}.{}", r.created_at as i64, r.id))
    } else {
        None
    };
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "version": r.version as u32, "title": r.title, "category": r.category,
                "tags": serde_json::from_str::<Value>(&r.tags).unwrap_or(json!([])), "status": r.status,
                "summary": r.summary, "run_id": r.run_id,
                "created_at": crate::domain::time::rfc3339(r.created_at as i64),
                "updated_at": crate::domain::time::rfc3339(r.updated_at as i64),
            })
        })
        .collect();
    let mut body = json!({ "items": items });
    if let Some(c) = next {
        body["next_cursor"] = json!(c);
    }
    Ok(http::json(200, &body))
}

pub fn parse_cursor(c: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::invalid("cursor", "is not a cursor this API returned");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.len() > 64 || id.chars().any(|ch| !(ch.is_ascii_alphanumeric() || ch == '-')) {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}
