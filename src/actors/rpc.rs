//! Internal calls from the Worker to actors and between actors.
//!
//! A call is a JS RPC: `call(op, body)` on the actor's stub, with the op's
//! name and its JSON body, answered by a string holding the status (three
//! digits) and the JSON reply. Every actor class exports `call`
//! ([`rpc_entry!`](crate::rpc_entry)), and the Worker's entry, which
//! `scripts/actor_shim.mjs` writes at build time, exports each class as a
//! `DurableObject` subclass: the runtime takes RPC only on those, and
//! workers-rs does not make its Rust classes one. An RPC skips the
//! `Request`, `Response` and `Headers` a fetch builds on both sides, the
//! largest runtime cost per call in the profile.
//!
//! An actor's `fetch` takes only WebSocket upgrades, which the public router
//! forwards for sockets; `call` exists only on stubs, so no request from
//! outside the Worker reaches an operation. Errors cross the boundary in the
//! contract's JSON and are rebuilt into the same [`ApiError`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::{Env, Response, Stub};

use super::ops::CreateSettled;
use crate::config::binding;
use crate::error::ApiError;
use crate::http;
use crate::protocol::{CallReply, Topic};

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
    /// Whether the registry lists actors of this kind
    /// ([`crate::protocol::REGISTERED_ACTOR_KINDS`]), which the inspector
    /// then finds by UUID.
    pub fn is_registered(self) -> bool {
        crate::protocol::REGISTERED_ACTOR_KINDS.contains(&self.as_str())
    }

    pub fn binding(self) -> &'static str {
        match self {
            ActorKind::Content => binding::CONTENT,
            ActorKind::Run => binding::PIPELINE,
            ActorKind::Session => binding::SESSION,
            ActorKind::VectorShard => binding::VECTOR_INDEX,
            ActorKind::Feed => binding::FEED,
            ActorKind::Analyzer => binding::ANALYZER_CONTAINER,
            ActorKind::RateLimit => binding::RATE_LIMIT,
            ActorKind::Answer => binding::ANSWER,
            ActorKind::Batch => binding::BATCH,
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

/// Tries of [`send_create`].
const CREATE_TRIES: u32 = 3;

/// [`send`] for a create under a fresh id, which the actor takes once
/// however often it is asked. A 5xx leaves its outcome unknown (a reply lost
/// after the actor stored it, an actor reset): asked again, rather than
/// answering 5xx for something stored that then goes on, while the client's
/// retry makes a second one. `FAULTS=reply=<p>` loses the first try's reply
/// after the actor took it, `FAULTS=replies=<p>` every try's.
pub async fn send_create<O: Op>(env: &Env, name: &str, op: &O) -> Result<O::Reply, ApiError> {
    let payload = encode(op)?;
    let mut tried = 0;
    loop {
        tried += 1;
        let mut sent = send_encoded::<O>(env, name, payload.clone()).await;
        if sent.is_ok() {
            use crate::domain::faults::{REPLIES, REPLY};
            let faults = crate::runtime::config(env).faults;
            let lost = if tried == 1 { faults.site_fault(REPLY, name, 1) } else { None };
            if let Some(fault) = lost.or_else(|| faults.site_fault(REPLIES, name, tried)) {
                sent = Err(fault.into());
            }
        }
        match sent {
            Err(e) if e.status() >= 500 && tried < CREATE_TRIES => worker::console_error!("{} {name}: create try {tried} failed, asking again: {e}", O::KIND.as_str()),
            sent => return sent,
        }
    }
}

/// Settles a create under a fresh id whose outcome is unknown (a 5xx after
/// [`send_create`]'s tries, or a batch item's spawn out of tries): `op`
/// (`SettleCreate`, `SettleBatch`) asks the actor whether it was made.
/// Made, the call also wakes it, and a wake arms the alarm for what it owes
/// (a new item's run spawn and catalog row), which nothing else would do
/// for a create cut off mid-drain; never made, the actor refuses the id for
/// good, so a create still on its way cannot make it. `None`: settling
/// failed too (logged).
pub async fn settle_lost_create<O: Op<Reply = CreateSettled>>(env: &Env, name: &str, op: &O) -> Option<bool> {
    match send(env, name, op).await {
        Ok(CreateSettled { made }) => Some(made),
        Err(e) => {
            worker::console_warn!("{} {name}: settling a lost create failed: {e}", O::KIND.as_str());
            None
        }
    }
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

#[wasm_bindgen]
extern "C" {
    /// A stub seen through the one RPC method every actor class exports.
    type ActorStub;
    #[wasm_bindgen(method, catch, js_name = call)]
    fn call(this: &ActorStub, op: &str, body: &str) -> Result<js_sys::Promise, JsValue>;
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
/// into the actor's own error. A call the runtime could not deliver (the
/// actor reset, overloaded, its isolate gone) fails as a fetch would.
async fn reply_bytes(env: &Env, kind: ActorKind, name: &str, op: &str, payload: String) -> Result<Vec<u8>, ApiError> {
    let stub: ActorStub = stub(env, kind, name)?.into_rpc();
    let answer = stub.call(op, &payload).map_err(worker::Error::from)?;
    let answer = JsFuture::from(answer).await.map_err(worker::Error::from)?;
    let text = answer.as_string().ok_or_else(|| ApiError::Internal(format!("{} answered {op} without a string", kind.as_str())))?;
    let CallReply { status, body } = CallReply::parse(&text).ok_or_else(|| ApiError::Internal(format!("{} answered {op} with no status", kind.as_str())))?;
    if status >= 400 {
        let body: serde_json::Value = serde_json::from_slice(body.as_bytes()).unwrap_or_default();
        return Err(ApiError::from_body(status, &body)
            .unwrap_or_else(|| ApiError::Internal(format!("actor answered {status}"))));
    }
    Ok(if body.is_empty() { b"null".to_vec() } else { body.as_bytes().to_vec() })
}

/// An actor's answer to an internal call: status and JSON body.
pub type Reply = CallReply;

impl CallReply {
    pub fn of<T: Serialize>(r: Result<T, ApiError>) -> Reply {
        let (status, body) = http::encoded(r);
        CallReply { status, body }
    }
}

/// How an actor answers an internal call (its `call`, which [`send`] uses).
/// Besides decoding and serving the op, an actor may do its after-call work
/// here (arming an alarm for what the call left owed).
#[allow(async_fn_in_trait)]
pub trait Answer {
    async fn answer(&self, op: &str, body: &[u8]) -> Reply;
}

/// An actor's `fetch` for anything but a WebSocket upgrade: calls come by
/// RPC only, so there is one way into an actor's operations.
pub fn not_a_call() -> worker::Result<Response> {
    Ok(http::error(&ApiError::not_found("actor operations are called by RPC, not fetch")))
}

/// Exports `call(op, body)`, the JS RPC method, on an actor class: the op is
/// answered by the actor's [`Answer`] and sent back as [`CallReply::to_wire`].
/// `rpc_entry!(Actor, ActorCall)` also implements [`Answer`] as the call
/// enum's own `answer`, for an actor with no after-call work.
#[macro_export]
macro_rules! rpc_entry {
    ($actor:ident, $call:ident) => {
        impl $crate::actors::rpc::Answer for $actor {
            async fn answer(&self, op: &str, body: &[u8]) -> $crate::actors::rpc::Reply {
                $call::answer(self, op, body).await
            }
        }

        $crate::rpc_entry!($actor);
    };
    ($actor:ident) => {
        #[::worker::wasm_bindgen::prelude::wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
        impl $actor {
            #[wasm_bindgen(js_name = call)]
            pub async fn rpc_call(
                &self,
                op: String,
                body: String,
            ) -> ::std::result::Result<::worker::wasm_bindgen::JsValue, ::worker::wasm_bindgen::JsValue> {
                // As workers-rs does for its own handlers: under `panic = "unwind"`
                // an exported future must be unwind-safe.
                ::std::panic::AssertUnwindSafe(async move {
                    let reply = <Self as $crate::actors::rpc::Answer>::answer(self, &op, body.as_bytes()).await;
                    Ok(::worker::wasm_bindgen::JsValue::from_str(&reply.to_wire()))
                })
                .await
            }
        }
    };
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

/// An op's request decoded from its body (an empty body reads as `{}`, so a
/// request type whose fields all default takes it).
pub fn request<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("internal call {op}: {e}")))
}

/// The actor that owns a topic's log.
pub fn topic_actor(topic: Topic) -> (ActorKind, String) {
    match topic {
        Topic::Run(id) => (ActorKind::Run, id.to_string()),
        Topic::Content(id) => (ActorKind::Content, id.to_string()),
        Topic::Answer(id) => (ActorKind::Answer, id.to_string()),
        Topic::Batch(id) => (ActorKind::Batch, id.to_string()),
        Topic::Feed => (ActorKind::Feed, super::feed::FEED_NAME.to_string()),
    }
}
