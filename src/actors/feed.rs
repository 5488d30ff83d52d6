//! `FeedActor`: the `feed` topic. Content actors append their content-level
//! events here, and it numbers them in its own dense sequence.
//!
//! It holds the feed's watching sockets itself (`GET /api/topics/feed/ws`,
//! hibernating), so an event reaches a thousand tabs as a thousand sends from
//! this actor, in the turn that commits it, instead of a call per session.
//! Session sockets may still subscribe to `feed`; they get it by push.
//! The rules (who sees what, what each socket is owed) are in
//! `domain::broadcast`.

use std::cell::Cell;

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage};

use super::ops::{Append, Appended, FeedCall, FeedOps, FireAlarm, Inspect, Inspectable};
use super::rpc;
use super::topic_sockets::{opener, TopicSockets};
use super::{ActorStorage, TopicActor};
use crate::domain::principal::ReadScope;
use crate::error::ApiResult;
use crate::protocol::{EventDraft, EventName, Topic};
use crate::runtime::now_ms;

/// There is one feed; sharding it by category would be the next step.
pub const FEED_NAME: &str = "feed";

/// The header by which the Worker tells the actor who opens a feed socket
/// (a [`ReadScope`] as JSON). Only the Worker reaches the actor.
pub const READER_HEADER: &str = "x-actorline-reader";

#[durable_object]
pub struct FeedActor {
    state: State,
    env: Env,
    /// Whether the catch-up alarm is set (in memory: a fresh instance sets it
    /// again on its first append, which is harmless).
    armed: Cell<bool>,
    sockets: TopicSockets,
    memory: super::ActorMemory,
}

pub async fn append(env: &Env, events: Vec<EventDraft>) -> ApiResult<()> {
    rpc::send(env, FEED_NAME, &Append { events }).await?;
    Ok(())
}

crate::actor_storage!(FeedActor);

impl FeedActor {
    fn snapshot(&self) -> Value {
        json!({ "topic": "feed", "last_seq": self.log().last_seq().unwrap_or(0), "recent": self.log().tail(20).unwrap_or_default() })
    }

    /// Arms the catch-up alarm for `at` after a dropped broadcast, once per window.
    async fn arm(&self, at: crate::domain::time::Millis) {
        if self.armed.replace(true) {
            return;
        }
        if self.state.storage().set_alarm(super::pipeline::to_datetime(at)).await.is_err() {
            self.armed.set(false);
        }
    }

    fn accept(&self, req: &Request) -> ApiResult<Response> {
        let scope: ReadScope = opener(req, READER_HEADER, "/api/topics/feed/ws")?;
        self.sockets.accept(self, Topic::Feed, req, &scope, || self.snapshot())
    }

    fn view(&self) -> Value {
        let mut v = self.snapshot();
        v["broadcast_lag"] = json!(TopicSockets::stored_lag(self));
        v["sockets"] = json!(self.state.get_websockets().len());
        v
    }
}

impl FeedOps for FeedActor {
    async fn append(&self, a: Append) -> ApiResult<Appended> {
        let records = self.log().append(a.events, now_ms())?;
        // A deleted item's earlier events no longer name it, in any replay.
        for r in records.iter().filter(|r| r.event == EventName::ContentDeleted) {
            if let Some(id) = r.data.get("content_id").and_then(Value::as_str) {
                self.log().redact(id)?;
            }
        }
        let Some(last) = records.last().map(|r| r.seq) else { return Ok(Appended { last_seq: self.log().last_seq()? }) };
        self.sockets.publish(self, Topic::Feed, &records)?;
        if let Some(at) = self.sockets.catch_up_due(now_ms()) {
            self.arm(at).await;
        }
        self.push_later(Topic::Feed, records);
        Ok(Appended { last_seq: last })
    }
}

impl Inspectable for FeedActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        super::inspection(&self.state, "feed", FEED_NAME, self.view(), &self.log()).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.sockets.catch_up(self, Topic::Feed)?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl TopicActor for FeedActor {
    fn topic(&self) -> ApiResult<Option<(Topic, Value)>> {
        Ok(Some((Topic::Feed, self.snapshot())))
    }
}

impl DurableObject for FeedActor {
    fn new(state: State, env: Env) -> Self {
        super::session::answer_pings(&state);
        FeedActor { state, env, armed: Cell::new(false), sockets: TopicSockets::default(), memory: Default::default() }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if crate::http::is_websocket_upgrade(&req) {
            return Ok(self.accept(&req).unwrap_or_else(|e| crate::http::error(&e)));
        }
        super::rpc::not_a_call()
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.sockets.on_message(self, Topic::Feed, &ws, message, || self.snapshot());
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        self.sockets.on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.sockets.on_error(&ws);
        Ok(())
    }

    /// The catch-up alarm: a broadcast lost since it was armed goes out now.
    async fn alarm(&self) -> worker::Result<Response> {
        self.armed.set(false);
        match self.sockets.catch_up(self, Topic::Feed) {
            Ok(()) => Response::ok("caught up"),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }
}

crate::rpc_entry!(FeedActor, FeedCall);
