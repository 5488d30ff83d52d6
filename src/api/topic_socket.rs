//! `GET /api/topics/{topic}/ws`: a WebSocket held by the topic's own actor,
//! for `feed` and for `run:<id>` (content, answer and batch topics are
//! followed on the session socket). It carries the session socket's frames
//! for that one topic: `?after=N` (or a `subscribe` frame) replays, then
//! `ready`.
//!
//! Who opens it is worked out here: a session's token (`?session=<id>&token=<t>`,
//! what a browser can send) reads as the session's principal, otherwise the
//! request's own credential (or anonymous). The feed filters each event by
//! that principal's read scope; a run admits the principal as it admits a
//! session's subscription, and refuses with 404 before the upgrade.
//!
//! Opening one spends a read from the principal's rate limit. The topic's
//! actor caps the sockets each session and each principal holds on it, and
//! closes a socket when the token that opened it (a session's, or a user's
//! JWT) expires ([`crate::domain::broadcast::SocketOpener`]).

use worker::{Env, Headers, Method, Request, RequestInit, Response};

use super::input::{param, query};
use super::limits::{self, LimitClass};
use super::sessions;
use crate::actors::feed::FEED_NAME;
use crate::actors::rpc::{self, ActorKind};
use crate::actors::topic_sockets::OPENER_HEADER;
use crate::domain::broadcast::SocketOpener;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::Topic;

/// `who` is the request's principal and until when its credential is
/// accepted (a JWT's); a session's token, when given, takes their place.
pub async fn socket(env: &Env, (who, until): (&Principal, Option<Millis>), req: Request, topic: &str) -> ApiResult<Response> {
    let name = super::sse::decode_segment(topic).unwrap_or_default();
    let topic = match name.parse::<Topic>() {
        Ok(t @ (Topic::Feed | Topic::Run(_))) => t,
        _ => return Err(ApiError::not_found(format!("socket topic {name} (feed and run topics have their own socket; use a session socket)"))),
    };
    let q = query(&req)?;
    let (principal, session, expires_at) = match param(&q, "session") {
        Some(id) => {
            let (id, principal, expires_at) = sessions::principal(env, id, param(&q, "token")).await?;
            (principal, Some(id), Some(expires_at))
        }
        // An anonymous socket lasts as long as an anonymous session would:
        // the anonymous share of a topic's sockets is not held for good by
        // a few callers (a key's and a user's end with their credential).
        None if who.kind == PrincipalKind::Anonymous => (who.clone(), None, Some(crate::runtime::now_ms() + crate::runtime::config(env).session_ttl_secs * 1000)),
        None => (who.clone(), None, until),
    };
    sessions::require_upgrade(&req)?;
    let after = match param(&q, "after") {
        Some(a) => Some(super::sse::seq(a).ok_or_else(|| ApiError::invalid("after", "must be a sequence number"))?),
        None => None,
    };
    // A socket held open is a read, as an SSE connection is.
    limits::spend(env, &principal, &req, LimitClass::Read, 1).await?;
    let holder = limits::holder(&principal, &req);
    let opener = SocketOpener { principal, holder, session, expires_at };
    // A fresh request: nothing the client sent reaches the actor but the upgrade.
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    headers.set(OPENER_HEADER, &serde_json::to_string(&opener)?)?;
    let stub = match topic {
        Topic::Run(id) => rpc::stub(env, ActorKind::Run, &id.to_string())?,
        _ => rpc::stub(env, ActorKind::Feed, FEED_NAME)?,
    };
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let url = match after {
        Some(a) => format!("https://actor.internal/ws?after={a}"),
        None => "https://actor.internal/ws".to_string(),
    };
    Ok(stub.fetch_with_request(Request::new_with_init(&url, &init)?).await?)
}
