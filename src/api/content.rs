//! `/api/content`: submissions, views, versions, deletion and the listing.

use uuid::Uuid;
use worker::{Env, Request, Response};

use super::auth;
use super::input::{category_filter, json_body, param, query, uuid_param};
use super::routes::{keyset_page, page_start, CONTENT_LIMIT};
use crate::actors::ops::{CreateContent, DeleteContent, SettleCreate, UpdateContent, ViewContent};
use crate::actors::rpc;
use crate::catalog;
use crate::domain::principal::{Ownership, Principal, Scope, Visibility};
use crate::domain::content::{keep_readable_near_duplicates, named_near_duplicates, ContentDoc};
use crate::domain::faults;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{Accepted, ContentInput, ContentListItem, ContentPage, ContentStatus};
use crate::runtime::config;

/// The run spawned for a submission: the new version's body and metadata go
/// to the content actor, which owns versions and checks the writer.
async fn submit(env: &Env, req: &mut Request, ids: (Uuid, Uuid), writer: Writer) -> ApiResult<Response> {
    let cfg = config(env);
    let input: ContentInput = json_body(req, cfg.limits.request_max_bytes).await?;
    let visibility = input.visibility;
    let doc = ContentDoc::validate(input, &cfg.limits)?;
    submit_doc(env, ids, doc, visibility, writer).await
}

/// Who writes a submission: a new item's owner, or a new version's writer
/// with the version it last saw (`If-Match`).
pub(super) enum Writer {
    New(Ownership),
    Version { principal: Principal, if_match: Option<u32> },
}

/// Sends a checked document to the content actor as a new item or a new
/// version: JSON submissions and uploads alike.
pub(super) async fn submit_doc(
    env: &Env,
    (content_id, run_id): (Uuid, Uuid),
    doc: ContentDoc,
    visibility: Option<Visibility>,
    writer: Writer,
) -> ApiResult<Response> {
    let name = content_id.to_string();
    let accepted = match writer {
        Writer::New(ownership) => {
            config(env).faults.check(faults::CREATE, &name, 1)?;
            rpc::send_create(env, &name, &CreateContent { content_id, run_id, doc, ownership, visibility, batch: None }).await?
        }
        Writer::Version { principal, if_match } => {
            let accepted = rpc::send(env, &name, &UpdateContent { content_id, run_id, doc, principal, visibility, if_match }).await;
            // `FAULTS=version_reply=<p>`: the reply lost after the item answered.
            config(env).faults.check(faults::VERSION_REPLY, &name, 1)?;
            accepted?
        }
    };
    Ok(accepted_response(&accepted))
}

/// Who a new item belongs to (`create` sends it as `ownership`); a
/// submission's `visibility` overrides the default.
pub(super) fn new_ownership(env: &Env, p: &Principal) -> ApiResult<Ownership> {
    auth::require(p, Scope::Write)?;
    p.ownership_for_new(Visibility::default(), &config(env).trust.operator_tenant)
        .ok_or_else(|| ApiError::Forbidden("creating content needs content:write in a tenant".into()))
}

pub async fn create(env: &Env, p: &Principal, mut req: Request) -> ApiResult<Response> {
    let ownership = new_ownership(env, p)?;
    let ids = (Uuid::new_v4(), Uuid::new_v4());
    let result = submit(env, &mut req, ids, Writer::New(ownership)).await;
    match result {
        Err(e) if e.status() >= 500 => {
            let made = rpc::settle_lost_create(env, &ids.0.to_string(), &SettleCreate {}).await;
            worker::console_warn!("content {}: create failed on the way ({e}); made: {made:?}", ids.0);
            if made == Some(true) {
                // Made with the ids the Worker chose: accepted, as its
                // reply would have said (a 5xx would make the client's
                // retry a second item).
                return Ok(accepted_response(&Accepted::new(ids.0, 1, ids.1)));
            }
            Err(e)
        }
        result => result,
    }
}

/// The `202` of an accepted submission, with its `Location`.
pub(super) fn accepted_response(accepted: &Accepted) -> Response {
    let resp = http::json(202, accepted);
    let _ = resp.headers().set("location", &accepted.links.content);
    resp
}

pub async fn update(env: &Env, p: &Principal, mut req: Request, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    if super::uploads::file_type(&req).is_some() {
        // Its own operation, so each has one request schema.
        return Err(ApiError::UnsupportedMediaType("a file version goes to PUT /api/content/{id}/source".into()));
    }
    let writer = updater(p, &req)?;
    submit(env, &mut req, (id, Uuid::new_v4()), writer).await
}

/// The writer of a new version and the version it last saw (`If-Match`).
pub(super) fn updater(p: &Principal, req: &Request) -> ApiResult<Writer> {
    Ok(Writer::Version { principal: p.clone(), if_match: if_match(req)? })
}

/// `If-Match: "3"` (an entity tag holding the version), `3`, or `*` (any).
fn if_match(req: &Request) -> ApiResult<Option<u32>> {
    let Some(raw) = req.headers().get("if-match").ok().flatten() else { return Ok(None) };
    let tag = raw.trim().trim_start_matches("W/").trim_matches('"');
    if tag == "*" {
        return Ok(None);
    }
    tag.parse::<u32>().map(Some).map_err(|_| ApiError::BadRequest("If-Match must be a version number, e.g. \"3\"".into()))
}

pub async fn get(env: &Env, p: &Principal, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    let passed = rpc::send(env, &id.to_string(), &ViewContent { principal: p.clone() }).await?;
    let head: ViewHead = passed.read()?;
    let named = head.analysis.as_ref().map(named_near_duplicates).unwrap_or_default();
    // Most views name no near duplicate and pass through as the actor wrote them.
    let resp = if named.is_empty() {
        http::json(200, &passed)
    } else {
        let readable = catalog::readable_ids(env, &p.read_scope(), &named).await?.into_iter().collect();
        let mut view: serde_json::Value = passed.read()?;
        if let Some(analysis) = view.get_mut("analysis") {
            keep_readable_near_duplicates(analysis, &readable);
        }
        http::json(200, &view)
    };
    let _ = resp.headers().set("etag", &format!("\"{}\"", head.version));
    Ok(resp)
}

/// What `get` reads of a view before passing it on.
#[derive(serde::Deserialize)]
struct ViewHead {
    version: u32,
    #[serde(default)]
    analysis: Option<serde_json::Value>,
}

pub async fn delete(env: &Env, p: &Principal, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "content")?;
    rpc::send(env, &id.to_string(), &DeleteContent { principal: p.clone() }).await?;
    Ok(http::no_content())
}

/// Keyset pagination on (created_at, id), newest first. The cursor is opaque
/// to clients: `<created_at>.<id>`. Only what the caller may read is listed.
pub async fn list(env: &Env, p: &Principal, req: Request) -> ApiResult<Response> {
    let q = query(&req)?;
    let limit = CONTENT_LIMIT.read(&q)?;
    let status = match param(&q, "status") {
        None => None,
        Some(st) => Some(ContentStatus::parse(st).ok_or_else(|| {
            let names: Vec<&str> = ContentStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid("status", format!("must be one of {}", names.join(", ")))
        })?),
    };
    let category = category_filter(env, param(&q, "category"))?;
    let (c_at, c_id) = page_start(param(&q, "cursor"))?;
    let scope = p.read_scope();
    let list = catalog::ListQuery { scope: &scope, status: status.map(ContentStatus::as_str), category: category.as_deref(), before: (c_at, &c_id), limit };
    let rows = catalog::list_content(env, &list).await?;
    let (rows, next) = keyset_page(rows, limit, |r| (r.created_at as i64, r.id.clone()));
    let items = rows
        .into_iter()
        .map(|r| ContentListItem {
            id: r.id,
            version: r.version as u32,
            title: r.title,
            category: r.category,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            status: r.status,
            summary: r.summary,
            run_id: r.run_id,
            tenant: r.tenant,
            owner: r.owner,
            visibility: r.visibility,
            created_at: crate::domain::time::rfc3339(r.created_at as i64),
            updated_at: crate::domain::time::rfc3339(r.updated_at as i64),
        })
        .collect();
    let body = ContentPage { items, next_cursor: next };
    Ok(http::json(200, &body))
}
