//! Uploaded files: `POST /api/uploads`, a file version by
//! `PUT /api/content/{id}`, and `GET /api/content/{id}/source`. The original
//! goes to R2 first; the item and its run are then made exactly as for a
//! JSON submission (`content::submit_doc`), with the file as the document's
//! source, whose text the run's `validate` stage extracts.

use uuid::Uuid;
use worker::{Env, Headers, Request, Response};

use super::content::{new_ownership, submit_doc, updater, Writer};
use super::input::{int_param, param, query, read_capped, uuid_param};
use crate::actors::ops::{AccessNeeded, Authorize, SourceOf};
use crate::actors::rpc;
use crate::domain::content::ContentDoc;
use crate::domain::principal::{Principal, Visibility};
use crate::domain::upload::{default_title, disposition_name, object_key, Source, UploadType};
use crate::error::{ApiError, ApiResult};
use crate::domain::markup;
use crate::providers::object_store::{ObjectStore, R2Uploads};
use crate::runtime::config;

/// The upload type a request's `Content-Type` names, if any.
pub fn file_type(req: &Request) -> Option<(UploadType, String)> {
    let content_type = req.headers().get("content-type").ok().flatten().unwrap_or_default();
    UploadType::parse(&content_type).map(|kind| (kind, content_type))
}

/// The upload type of the request's body, or a 415 (after draining the body,
/// so the connection stays usable).
async fn upload_type(env: &Env, req: &mut Request) -> ApiResult<(UploadType, String)> {
    match file_type(req) {
        Some(t) => Ok(t),
        None => {
            let _ = read_capped(req, config(env).limits.upload_max_bytes).await;
            Err(ApiError::UnsupportedMediaType(UploadType::refusal()))
        }
    }
}

/// The body, under `MAX_UPLOAD_BYTES` (413 past it).
async fn read_file(env: &Env, req: &mut Request) -> ApiResult<Vec<u8>> {
    read_capped(req, config(env).limits.upload_max_bytes).await
}

/// The title an upload gets without `?title=`: the file's first heading, its
/// file name, or "Untitled upload".
fn default_title_of(env: &Env, req: &Request, kind: UploadType, bytes: &[u8]) -> String {
    let heading = match kind {
        UploadType::Markdown | UploadType::Html => markup::first_heading(kind, &String::from_utf8_lossy(bytes)),
        UploadType::Plain | UploadType::Pdf => None,
    };
    let file_name = req.headers().get("content-disposition").ok().flatten().and_then(|d| disposition_name(&d));
    default_title(heading, file_name, config(env).limits.title_max_chars)
}

/// Stores the file as its document's source, then submits the document; a
/// refused submission leaves no object. The document is already valid, so a
/// bad field never stores anything.
async fn store_and_submit(
    env: &Env,
    ids: (Uuid, Uuid),
    doc: ContentDoc,
    bytes: Vec<u8>,
    visibility: Option<Visibility>,
    writer: Writer,
) -> ApiResult<Response> {
    let source = doc.source.as_ref().ok_or_else(|| ApiError::Internal("an upload's document has no source".into()))?;
    let (key, content_type) = (source.key.clone(), source.content_type.clone());
    R2Uploads::new(env).put(&key, bytes, &content_type).await?;
    let result = submit_doc(env, ids, doc, visibility, writer).await;
    if result.is_err() {
        if let Err(e) = R2Uploads::new(env).delete(&key).await {
            worker::console_error!("upload {key}: refused, and its object was not deleted: {e}");
        }
    }
    result
}

fn visibility_param(q: &[(String, String)]) -> ApiResult<Option<Visibility>> {
    match param(q, "visibility").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Visibility::parse(v).map(Some).ok_or_else(|| ApiError::invalid("visibility", "must be private, tenant or public")),
    }
}

/// `POST /api/uploads?title&category&visibility`.
pub async fn create(env: &Env, p: &Principal, mut req: Request) -> ApiResult<Response> {
    let ownership = new_ownership(env, p)?;
    let (kind, content_type) = upload_type(env, &mut req).await?;
    let q = query(&req)?;
    let visibility = visibility_param(&q)?;
    let limits = &config(env).limits;
    // Checked before the file is stored, so a bad field stores nothing.
    let category = crate::domain::content::category(param(&q, "category"), limits)?;
    let (content_id, run_id) = (Uuid::new_v4(), Uuid::new_v4());
    let bytes = read_file(env, &mut req).await?;
    let title = match param(&q, "title").filter(|t| !t.trim().is_empty()) {
        Some(t) => t.to_string(),
        None => default_title_of(env, &req, kind, &bytes),
    };
    let source = Source::describe(&content_type, &bytes, object_key(&ownership.tenant, content_id, run_id));
    let doc = ContentDoc::upload(&title, category.as_deref(), source, limits)?;
    store_and_submit(env, (content_id, run_id), doc, bytes, visibility, Writer::New(ownership)).await
}

/// `PUT /api/content/{id}` with a file: a new version whose source is that
/// file; each version keeps its own object. Title and category follow the
/// query, else the current version's.
pub async fn update(env: &Env, p: &Principal, mut req: Request, id: &str, file: (UploadType, String)) -> ApiResult<Response> {
    let content_id = uuid_param(id, "content")?;
    let (_, content_type) = file;
    let writer = updater(p, &req)?;
    // 404/403 (and a stale If-Match) before anything is stored; the actor
    // checks both again when the version is made.
    let auth = Authorize { principal: p.clone(), needed: AccessNeeded::Change };
    let item = rpc::send(env, &content_id.to_string(), &auth).await?;
    if let Writer::Version { if_match: Some(expected), .. } = writer {
        if expected != item.version {
            let _ = read_capped(&mut req, config(env).limits.upload_max_bytes).await;
            return Err(ApiError::VersionConflict { expected, current: item.version });
        }
    }
    let q = query(&req)?;
    let visibility = visibility_param(&q)?;
    let limits = &config(env).limits;
    let category = crate::domain::content::category(param(&q, "category"), limits)?;
    let run_id = Uuid::new_v4();
    let bytes = read_file(env, &mut req).await?;
    let title = param(&q, "title").filter(|t| !t.trim().is_empty()).map_or(item.title, str::to_string);
    let category = category.or(item.category);
    let source = Source::describe(&content_type, &bytes, object_key(&item.tenant, content_id, run_id));
    let doc = ContentDoc::upload(&title, category.as_deref(), source, limits)?;
    store_and_submit(env, (content_id, run_id), doc, bytes, visibility, writer).await
}

/// `GET /api/content/{id}/source[?version=N]`: the original, byte for byte,
/// to whoever may read the item (404 otherwise).
pub async fn source(env: &Env, p: &Principal, req: &Request, id: &str) -> ApiResult<Response> {
    let content_id = uuid_param(id, "content")?;
    let q = query(req)?;
    let version = match param(&q, "version") {
        None | Some("") => None,
        Some(_) => Some(int_param(&q, "version", 1, 1, u32::MAX)?),
    };
    let source = rpc::send(env, &content_id.to_string(), &SourceOf { principal: p.clone(), version }).await?;
    let object = R2Uploads::new(env).get(&source.key).await?.ok_or_else(|| ApiError::not_found("source file"))?;
    let headers = Headers::new();
    headers.set("content-type", &source.content_type)?;
    headers.set("etag", &format!("\"{}\"", source.sha256))?;
    headers.set("cache-control", "private, no-store")?;
    headers.set("x-content-type-options", "nosniff")?;
    // An uploaded HTML file must never run as a page of this origin.
    headers.set("content-security-policy", "sandbox")?;
    headers.set("content-disposition", "attachment")?;
    Ok(Response::from_bytes(object)?.with_headers(headers))
}
