//! Uploaded files: `POST /api/uploads`, a file version by
//! `PUT /api/content/{id}/source`, and `GET /api/content/{id}/source`. The original
//! goes to R2 first; the item and its run are then made exactly as for a
//! JSON submission (`content::submit_doc`), with the file as the document's
//! source, whose text the run's `validate` stage extracts.

use uuid::Uuid;
use worker::web_sys::ReadableStream;
use worker::{Env, Headers, Request, Response};

use super::content::{accepted_response, new_ownership, submit_doc, updater, Writer};
use super::input::{param, query, read_capped, uuid_param};
use super::routes::SOURCE_VERSION;
use crate::actors::ops::{AccessNeeded, Authorize, SettleCreate, SourceOf, ViewContent};
use crate::actors::rpc;
use crate::config::Limits;
use crate::domain::content::{category, title, ContentDoc};
use crate::domain::markup;
use crate::domain::FieldError;
use crate::domain::principal::{Principal, Visibility};
use crate::domain::upload::{default_title, disposition_name, object_key, title_prefix, Source, UploadType, TITLE_PREFIX_BYTES};
use crate::error::{ApiError, ApiResult};
use crate::providers::object_store::{ObjectStore, R2Uploads};
use crate::protocol::Accepted;
use crate::providers::streams;
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

/// An upload's body. One of declared length is streamed into R2; one sent
/// without `Content-Length` (chunked) is read whole under the cap, since R2
/// (and a `FixedLengthStream`) must know the length before the first byte,
/// and only the cap bounds what such a body holds.
enum Body {
    Declared { stream: ReadableStream, length: u64 },
    Buffered(Vec<u8>),
}

/// The body, under `MAX_UPLOAD_BYTES`: a declared length past it is a 413
/// before anything is read or stored, an undeclared one a 413 while reading.
/// Its megabytes are spent from `p`'s upload bucket before it is stored
/// (a refused one is read and dropped, as a conflict's is).
async fn take_body(env: &Env, p: &Principal, req: &mut Request) -> ApiResult<Body> {
    let limit = config(env).limits.upload_max_bytes;
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    let body = match (declared, req.inner().body()) {
        (Some(length), _) if length > limit as u64 => return Err(ApiError::PayloadTooLarge { limit }),
        (Some(length), Some(stream)) if length > 0 => Body::Declared { stream, length },
        // An empty file is taken as any other: the schema lets a client
        // send one, and its run fails with "no extractable text".
        _ => Body::Buffered(read_capped(req, limit).await?),
    };
    let bytes = match &body {
        Body::Declared { length, .. } => *length,
        Body::Buffered(b) => b.len() as u64,
    };
    if let Err(refused) = super::limits::spend_upload(env, p, req, bytes).await {
        if matches!(body, Body::Declared { .. }) {
            let _ = read_capped(req, limit).await;
        }
        return Err(refused);
    }
    Ok(body)
}

/// The title an upload gets without `?title=`: the first heading in the
/// file's `head` (its first [`TITLE_PREFIX_BYTES`]), its file name, or
/// "Untitled upload".
fn default_title_of(env: &Env, req: &Request, kind: UploadType, head: Option<&[u8]>) -> String {
    let heading = head.filter(|_| kind.has_headings()).and_then(|h| markup::first_heading(kind, &title_prefix(h)));
    let file_name = req.headers().get("content-disposition").ok().flatten().and_then(|d| disposition_name(&d));
    default_title(heading, file_name, config(env).limits.title_max_chars)
}

/// A file on its way to R2.
struct File {
    key: String,
    content_type: String,
    body: Body,
    /// Whether its first bytes are wanted for a default title.
    wants_head: bool,
}

/// What storing a file learnt: its source, and its first
/// [`TITLE_PREFIX_BYTES`] when they were wanted.
struct Stored {
    source: Source,
    head: Option<Vec<u8>>,
}

/// Stores the file, recording its exact size and SHA-256.
async fn store(env: &Env, file: File) -> ApiResult<Stored> {
    let store = R2Uploads::new(env);
    let File { key, content_type, body, wants_head } = file;
    let content_type = content_type.trim();
    match body {
        Body::Buffered(bytes) => {
            let head = wants_head.then(|| bytes[..bytes.len().min(TITLE_PREFIX_BYTES)].to_vec());
            let source = Source::describe(content_type, &bytes, key.clone());
            store.put(&key, bytes, content_type).await?;
            Ok(Stored { source, head })
        }
        Body::Declared { stream, length } => store_streamed(&store, key, content_type, (stream, length), wants_head).await,
    }
}

/// Streams a body of declared length into R2, split three ways at most: into
/// R2, into the runtime's SHA-256 (R2 keeps a SHA-256 only when given one
/// before the put, to verify it; it has none to give back for a stream), and
/// a bounded head for the title. A body that breaks off before its length
/// fails the hash and the put: a 400, and no object.
async fn store_streamed(
    store: &R2Uploads,
    key: String,
    content_type: &str,
    (body, length): (ReadableStream, u64),
    wants_head: bool,
) -> ApiResult<Stored> {
    let (to_store, rest) = streams::tee(&body);
    let (to_hash, to_read) = if wants_head {
        let (to_hash, to_read) = streams::tee(&rest);
        (to_hash, Some(to_read))
    } else {
        (rest, None)
    };
    let head = async {
        match to_read {
            Some(branch) => streams::prefix(branch, TITLE_PREFIX_BYTES).await.map(Some),
            None => Ok(None),
        }
    };
    let (put, digest, head) = futures::join!(store.put_stream(&key, to_store, length, content_type), streams::sha256(to_hash), head);
    match (put, digest.and_then(|d| Ok((d, head?)))) {
        (Ok(()), Ok((digest, head))) => Ok(Stored { source: Source::new(content_type, length, crate::domain::hex(&digest), key), head }),
        (put, Err(e)) => {
            if put.is_ok() {
                discard(store, &key).await;
            }
            // A client that cut its body short has usually gone, so the log
            // is where this refusal shows.
            worker::console_warn!("upload {key}: refused, its body broke off before {length} bytes: {e}");
            Err(ApiError::BadRequest(format!("unreadable body (Content-Length {length}): {e}")))
        }
        (Err(e), Ok(_)) => Err(e),
    }
}

async fn discard(store: &R2Uploads, key: &str) {
    if let Err(e) = store.delete(key).await {
        worker::console_error!("upload {key}: refused, and its object was not deleted: {e}");
    }
}

/// Stores the file as its document's source, then submits the document that
/// `doc_of` makes with it; a refused document or submission leaves no
/// object. Fields are checked before this, so a bad one never stores anything.
/// A submission that failed on the way (5xx: the actor's reply lost, an
/// overload) may have been accepted, and its run will read the object, so
/// that keeps it: a lost object would fail an accepted version for good.
async fn store_and_submit(
    env: &Env,
    ids: (Uuid, Uuid),
    file: File,
    doc_of: impl FnOnce(Stored) -> Result<ContentDoc, FieldError>,
    visibility: Option<Visibility>,
    writer: Writer,
) -> ApiResult<Response> {
    let key = file.key.clone();
    let version_writer = match &writer {
        Writer::Version { principal, .. } => Some(principal.clone()),
        Writer::New(_) => None,
    };
    let stored = store(env, file).await?;
    let result = match doc_of(stored) {
        Ok(doc) => submit_doc(env, ids, doc, visibility, writer).await,
        Err(e) => Err(e.into()),
    };
    match &result {
        Err(e) if refused(e) => discard(&R2Uploads::new(env), &key).await,
        Err(_) if version_writer.is_none() => return settle_create(env, ids, &key, result).await,
        Err(e) => match version_writer {
            // Its item deleted meanwhile (after this upload was authorized,
            // before its version reached the item): the DELETE erased the
            // item's files before this one was stored, and a tombstone takes
            // no version, so nothing would ever erase it.
            Some(principal) if item_gone(env, ids.0, &principal).await => {
                worker::console_warn!("upload {key}: its item is gone ({e}): the object goes");
                discard(&R2Uploads::new(env), &key).await;
            }
            _ => worker::console_warn!("upload {key}: kept, its version may have been accepted: {e}"),
        },
        Ok(_) => {}
    }
    result
}

/// Whether item `content_id` is gone (deleted, or never there) for the
/// writer who just sent it a version; a failed look says it is not.
async fn item_gone(env: &Env, content_id: Uuid, principal: &Principal) -> bool {
    matches!(rpc::send(env, &content_id.to_string(), &ViewContent { principal: principal.clone() }).await, Err(ApiError::NotFound(_)))
}

/// A new item's create that failed on the way (`failed`, a 5xx): its actor
/// settles it ([`rpc::settle_lost_create`]). Made, the object stays (its run
/// reads it) and the upload is accepted, as the lost reply would have said;
/// never made, the object goes, since no item will ever name it (nor a
/// DELETE erase it). A version of an existing item needs none of this: the
/// item's DELETE erases all of its objects.
async fn settle_create(env: &Env, (content_id, run_id): (Uuid, Uuid), key: &str, failed: ApiResult<Response>) -> ApiResult<Response> {
    let e = match &failed {
        Err(e) => e.to_string(),
        Ok(_) => return failed,
    };
    match rpc::settle_lost_create(env, &content_id.to_string(), &SettleCreate {}).await {
        Some(false) => {
            worker::console_warn!("upload {key}: its item was never made ({e}): the object goes");
            discard(&R2Uploads::new(env), key).await;
            failed
        }
        Some(true) => {
            worker::console_warn!("upload {key}: kept, its item was made: {e}");
            Ok(accepted_response(&Accepted::new(content_id, 1, run_id)))
        }
        None => {
            worker::console_warn!("upload {key}: kept, its create's outcome is unknown ({e})");
            failed
        }
    }
}

/// Whether a submission's error says it was refused for good (a 4xx), as
/// opposed to failing on the way with its outcome unknown.
fn refused(e: &ApiError) -> bool {
    e.status() < 500
}

/// A `?title=`, checked before anything is stored.
fn title_param(q: &[(String, String)], limits: &Limits) -> ApiResult<Option<String>> {
    param(q, "title").filter(|t| !t.trim().is_empty()).map(|t| title(t, limits)).transpose().map_err(ApiError::from)
}

fn visibility_param(q: &[(String, String)]) -> ApiResult<Option<Visibility>> {
    match param(q, "visibility") {
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
    let category = category(param(&q, "category"), limits)?;
    let title = title_param(&q, limits)?;
    let (content_id, run_id) = (Uuid::new_v4(), Uuid::new_v4());
    let body = take_body(env, p, &mut req).await?;
    let key = object_key(&ownership.tenant, content_id, run_id);
    let file = File { key, content_type, body, wants_head: title.is_none() && kind.has_headings() };
    let doc_of = |stored: Stored| {
        let title = title.unwrap_or_else(|| default_title_of(env, &req, kind, stored.head.as_deref()));
        ContentDoc::upload(&title, category.as_deref(), stored.source, limits)
    };
    store_and_submit(env, (content_id, run_id), file, doc_of, visibility, Writer::New(ownership)).await
}

/// `PUT /api/content/{id}` with a file: a new version whose source is that
/// file; each version keeps its own object. Title and category follow the
/// query, else the current version's.
pub async fn update(env: &Env, p: &Principal, mut req: Request, id: &str) -> ApiResult<Response> {
    let content_id = uuid_param(id, "content")?;
    let (_, content_type) = upload_type(env, &mut req).await?;
    let writer = updater(p, &req)?;
    // 404/403 (and a stale If-Match) before anything is stored; the actor
    // checks both again when the version is made.
    let auth = Authorize { principal: p.clone(), needed: AccessNeeded::Change, version: None };
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
    let category = category(param(&q, "category"), limits)?.or(item.category);
    let title = title_param(&q, limits)?.unwrap_or(item.title);
    let run_id = Uuid::new_v4();
    let body = take_body(env, p, &mut req).await?;
    let file = File { key: object_key(&item.tenant, content_id, run_id), content_type, body, wants_head: false };
    let doc_of = |stored: Stored| ContentDoc::upload(&title, category.as_deref(), stored.source, limits);
    store_and_submit(env, (content_id, run_id), file, doc_of, visibility, writer).await
}

/// `GET /api/content/{id}/source[?version=N]`: the original, byte for byte,
/// to whoever may read the item (404 otherwise).
pub async fn source(env: &Env, p: &Principal, req: &Request, id: &str) -> ApiResult<Response> {
    let content_id = uuid_param(id, "content")?;
    let q = query(req)?;
    let version = SOURCE_VERSION.read_opt(&q)?;
    let source = rpc::send(env, &content_id.to_string(), &SourceOf { principal: p.clone(), version }).await?;
    // Streamed from R2 to the client by the runtime, never read into the Worker.
    let object = R2Uploads::new(env).open(&source.key).await?.ok_or_else(|| ApiError::not_found("source file"))?;
    let headers = Headers::new();
    headers.set("content-type", &source.content_type)?;
    headers.set("etag", &format!("\"{}\"", source.sha256))?;
    headers.set("cache-control", "private, no-store")?;
    headers.set("x-content-type-options", "nosniff")?;
    // An uploaded HTML file must never run as a page of this origin.
    headers.set("content-security-policy", "sandbox")?;
    headers.set("content-disposition", "attachment")?;
    Ok(Response::from_body(object)?.with_headers(headers))
}
