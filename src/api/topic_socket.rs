//! `GET /api/topics/{topic}/ws`: a WebSocket held by a broadcast topic's own
//! actor. Only `feed` is one (run, content and answer topics are followed on
//! the session socket). It carries the session socket's frames for that one
//! topic: `?after=N` (or a `subscribe` frame) replays, then `ready`.
//!
//! Who opens it is checked here, as for a subscription: a session's token
//! (`?session=<id>&token=<t>`, what a browser can send) reads as the session's
//! principal, otherwise the request's own credential (or anonymous).

use worker::{Env, Headers, Method, Request, RequestInit, Response};

use super::input::{param, query};
use super::sessions;
use crate::actors::feed::{FEED_NAME, READER_HEADER};
use crate::actors::rpc::{self, ActorKind};
use crate::domain::broadcast::class_key;
use crate::domain::principal::Principal;
use crate::error::{ApiError, ApiResult};

pub async fn socket(env: &Env, who: &Principal, req: Request, topic: &str) -> ApiResult<Response> {
    let topic = super::sse::decode_segment(topic).unwrap_or_default();
    if topic != "feed" {
        return Err(ApiError::not_found(format!("broadcast topic {topic} (only feed has its own socket; use a session socket)")));
    }
    let q = query(&req)?;
    let scope = match param(&q, "session") {
        Some(id) => sessions::principal(env, id, param(&q, "token")).await?.read_scope(),
        None => who.read_scope(),
    };
    sessions::require_upgrade(&req)?;
    let after = match param(&q, "after") {
        Some(a) => Some(super::sse::seq(a).ok_or_else(|| ApiError::invalid("after", "must be a sequence number"))?),
        None => None,
    };
    // A fresh request: nothing the client sent reaches the actor but the upgrade.
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    headers.set(READER_HEADER, &class_key(&scope))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let url = match after {
        Some(a) => format!("https://actor.internal/ws?after={a}"),
        None => "https://actor.internal/ws".to_string(),
    };
    let stub = rpc::stub(env, ActorKind::Feed, FEED_NAME)?;
    Ok(stub.fetch_with_request(Request::new_with_init(&url, &init)?).await?)
}
