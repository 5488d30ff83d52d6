//! Internal calls from the Worker to actors and between actors.
//!
//! There is no RPC into a Rust Durable Object, so a call is a POST to
//! `https://actor.internal/<op>` on the actor's stub with a JSON body. These
//! URLs exist only on stubs: the public router never forwards to them, so they
//! cannot be reached from outside the Worker. Errors cross the boundary in the
//! contract's JSON and are rebuilt into the same [`ApiError`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Method, Request, RequestInit, Response, Stub};

use crate::error::ApiError;
use crate::http;

/// Every actor kind: its binding, and the name admins use for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Content,
    Run,
    Session,
    VectorShard,
    Feed,
    Analyzer,
    RateLimit,
    Answer,
    Batch,
}

impl ActorKind {
    pub fn binding(self) -> &'static str {
        match self {
            ActorKind::Content => "CONTENT",
            ActorKind::Run => "PIPELINE",
            ActorKind::Session => "SESSION",
            ActorKind::VectorShard => "VECTOR_INDEX",
            ActorKind::Feed => "FEED",
            ActorKind::Analyzer => "ANALYZER_CONTAINER",
            ActorKind::RateLimit => "RATE_LIMIT",
            ActorKind::Answer => "ANSWER",
            ActorKind::Batch => "BATCH",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Content => "content",
            ActorKind::Run => "run",
            ActorKind::Session => "session",
            ActorKind::VectorShard => "vector_index",
            ActorKind::Feed => "feed",
            ActorKind::Analyzer => "analyzer",
            ActorKind::RateLimit => "rate_limit",
            ActorKind::Answer => "answer",
            ActorKind::Batch => "batch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ActorKind::Content,
            ActorKind::Run,
            ActorKind::Session,
            ActorKind::VectorShard,
            ActorKind::Feed,
            ActorKind::Analyzer,
            ActorKind::RateLimit,
            ActorKind::Answer,
            ActorKind::Batch,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One operation of one actor kind. The request type names its op, the kind
/// that answers it and the reply, so the compiler checks every call: an op
/// cannot reach the wrong kind, and a caller cannot misread the answer.
/// `actor_ops!` (in `ops`) implements it for every op of every kind.
pub trait Op: Serialize {
    const KIND: ActorKind;
    const NAME: &'static str;
    type Reply: DeserializeOwned;
}

/// An op several kinds answer (inspection, topic reads), so the kind is
/// chosen at run time; a kind that does not take it answers 404.
pub trait SharedOp: Serialize {
    const NAME: &'static str;
    type Reply: DeserializeOwned;
}

/// Sends `op` to the actor `name` of its kind and decodes the typed reply.
pub async fn send<O: Op>(env: &Env, name: &str, op: &O) -> Result<O::Reply, ApiError> {
    send_encoded::<O>(env, name, encode(op)?).await
}

/// [`send`] with the request already encoded, for one payload sent to many actors.
pub async fn send_encoded<O: Op>(env: &Env, name: &str, payload: String) -> Result<O::Reply, ApiError> {
    call_encoded(env, O::KIND, name, O::NAME, payload).await
}

/// Sends a shared op to the actor `kind/name`.
pub async fn send_to<O: SharedOp>(env: &Env, kind: ActorKind, name: &str, op: &O) -> Result<O::Reply, ApiError> {
    call_encoded(env, kind, name, O::NAME, encode(op)?).await
}

pub fn encode<Q: Serialize>(body: &Q) -> Result<String, ApiError> {
    serde_json::to_string(body).map_err(|e| ApiError::Internal(e.to_string()))
}

pub fn stub(env: &Env, kind: ActorKind, name: &str) -> Result<Stub, ApiError> {
    let ns = env.durable_object(kind.binding())?;
    Ok(ns.id_from_name(name)?.get_stub()?)
}

/// No headers: only [`incoming`] reads these requests, and it takes the body
/// as JSON whatever it is labelled, so each call skips building them.
fn internal_request(op: &str, payload: String) -> Result<Request, ApiError> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(payload.into()));
    Ok(Request::new_with_init(&format!("https://actor.internal/{op}"), &init)?)
}

/// The generic part of a call is only the reply's decoding: the fetch and
/// the error path are one function for every op, which keeps each op's
/// share of the bundle small.
async fn call_encoded<R: DeserializeOwned>(
    env: &Env,
    kind: ActorKind,
    name: &str,
    op: &str,
    payload: String,
) -> Result<R, ApiError> {
    let bytes = reply_bytes(env, kind, name, op, payload).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(format!("actor reply: {e}")))
}

/// The body of a successful reply (`null` when empty); a refusal is rebuilt
/// into the actor's own error.
async fn reply_bytes(env: &Env, kind: ActorKind, name: &str, op: &str, payload: String) -> Result<Vec<u8>, ApiError> {
    let resp = stub(env, kind, name)?.fetch_with_request(internal_request(op, payload)?).await?;
    let status = resp.status_code();
    let bytes = body_text(resp).await?.into_bytes();
    if status >= 400 {
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(ApiError::from_body(status, &body)
            .unwrap_or_else(|| ApiError::Internal(format!("actor answered {status}"))));
    }
    Ok(if bytes.is_empty() { b"null".to_vec() } else { bytes })
}

/// The whole body of a fetched response. workers-rs reads such a body as a
/// stream, each chunk a round of JS promises; one `text()` is one crossing.
pub async fn body_text(resp: Response) -> Result<String, ApiError> {
    let raw: worker::web_sys::Response = resp.into();
    let text = raw.text().map_err(|e| ApiError::Internal(format!("actor reply: {e:?}")))?;
    let text = worker::wasm_bindgen_futures::JsFuture::from(text)
        .await
        .map_err(|e| ApiError::Internal(format!("actor reply: {e:?}")))?;
    Ok(text.as_string().unwrap_or_default())
}

/// The actor side: the op name (the path) and the body of an internal call.
pub async fn incoming(req: &mut Request) -> Result<(String, Vec<u8>), ApiError> {
    let op = req.path().trim_start_matches('/').to_string();
    Ok((op, req.bytes().await?))
}

/// An op's request decoded from its body (an empty body reads as `{}`, so a
/// request type whose fields all default takes it).
pub fn request<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("internal call {op}: {e}")))
}

pub fn reply<T: Serialize>(r: Result<T, ApiError>) -> worker::Result<Response> {
    Ok(http::result(200, r))
}
