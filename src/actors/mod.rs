//! Durable Object shells. Each one turns storage, alarm and WebSocket
//! callbacks into calls on a pure state machine in `crate::domain`, persists
//! the result, and sends the events it produced. No state lives only in
//! memory: an actor may be evicted between any two awaits.

pub mod analyzer;
pub mod answer;
pub mod batch;
pub mod content;
pub mod fanout;
pub mod feed;
pub mod outbox;
pub mod pipeline;
pub mod rate_limit;
pub mod rpc;
pub mod session;
pub mod vector_index;

/// Handlers an actor does not use. workers-rs's defaults panic, and a panic
/// traps the whole isolate, so every class gets these explicit answers.
#[macro_export]
macro_rules! unused_handlers {
    (alarm) => {
        async fn alarm(&self) -> worker::Result<worker::Response> {
            worker::Response::ok("no alarm work")
        }
    };
    (sockets) => {
        async fn websocket_message(
            &self,
            ws: worker::WebSocket,
            _m: worker::WebSocketIncomingMessage,
        ) -> worker::Result<()> {
            let _ = ws.close(Some(1003), Some("this actor takes no socket messages"));
            Ok(())
        }
        async fn websocket_close(&self, _ws: worker::WebSocket, _c: usize, _r: String, _w: bool) -> worker::Result<()> {
            Ok(())
        }
        async fn websocket_error(&self, _ws: worker::WebSocket, _e: worker::Error) -> worker::Result<()> {
            Ok(())
        }
    };
}

use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::event_log::{plan_replay, ReplayPlan};
use crate::error::{ApiError, ApiResult};
use crate::protocol::Topic;
use crate::store::events::EventStore;
use fanout::Subscribers;

/// The storage views of an actor's own SQLite. Every actor reaches its state,
/// event log and subscriber list the same way through this trait.
pub trait ActorStorage {
    fn state(&self) -> &worker::State;
    fn env(&self) -> &worker::Env;

    fn cells(&self) -> crate::store::StateCell {
        crate::store::StateCell::new(self.state().storage().sql())
    }

    fn log(&self) -> EventStore {
        EventStore::new(self.state().storage().sql(), crate::runtime::config(self.env()).retention)
    }

    fn subs(&self) -> Subscribers {
        Subscribers::new(self.state().storage().sql())
    }

    /// Pushes committed `records` of `topic` to its subscribed sessions after
    /// this request (best effort: a lost push is late, never lost).
    fn push_later(&self, topic: Topic, records: Vec<crate::protocol::EventRecord>) {
        let (env, subs) = (self.env().clone(), self.subs());
        self.state().wait_until(async move { fanout::push(&env, &subs, topic, &records).await });
    }

    /// Writes this actor's registry row (the admin listing) after this request.
    fn register_later(&self, kind: &'static str, id: String, status: String, now: crate::domain::time::Millis) {
        let env = self.env().clone();
        self.state().wait_until(async move {
            if let Err(e) = crate::catalog::register_actor(&env, kind, &id, &status, now).await {
                worker::console_error!("{kind} registry write failed: {e}");
            }
        });
    }
}

/// Implements [`ActorStorage`] for an actor struct with `state` and `env` fields.
#[macro_export]
macro_rules! actor_storage {
    ($t:ty) => {
        impl $crate::actors::ActorStorage for $t {
            fn state(&self) -> &worker::State {
                &self.state
            }
            fn env(&self) -> &worker::Env {
                &self.env
            }
        }
    };
}

/// Most events one replay answer carries; a session pages for the rest.
pub const REPLAY_PAGE: u32 = 500;

#[derive(Deserialize)]
struct SubscribeBody {
    session: String,
    #[serde(default)]
    after: Option<u64>,
}

#[derive(Deserialize)]
struct EventsBody {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// The answer of a topic actor's `events` op.
#[derive(Deserialize)]
pub struct EventsPage {
    pub last_seq: u64,
    pub events: Vec<crate::protocol::EventRecord>,
    /// The cursor is older than the retained log: start over from `snapshot`.
    #[serde(default)]
    pub resync: bool,
    #[serde(default)]
    pub snapshot: Option<Value>,
}

/// The ops every topic actor answers: `subscribe`, `unsubscribe`, `events`.
/// `topic` is `None` when the actor was never created.
pub fn topic_op(
    op: &str,
    body: Value,
    topic: Option<(Topic, Value)>,
    log: &EventStore,
    subs: &Subscribers,
) -> ApiResult<Value> {
    let Some((topic, snapshot)) = topic else {
        return Err(ApiError::not_found("actor"));
    };
    match op {
        "subscribe" => {
            let b: SubscribeBody = serde_json::from_value(body)?;
            subs.add(&b.session, crate::runtime::now_ms())?;
            let window = log.window()?;
            match plan_replay(b.after, window) {
                ReplayPlan::UpToDate => Ok(json!({ "topic": topic, "last_seq": window.last, "plan": "live", "events": [] })),
                ReplayPlan::Replay { after, .. } => {
                    let events = log.after(after, REPLAY_PAGE)?;
                    Ok(json!({ "topic": topic, "last_seq": window.last, "plan": "replay", "events": events }))
                }
                ReplayPlan::Resync => {
                    Ok(json!({ "topic": topic, "last_seq": window.last, "plan": "resync", "events": [], "snapshot": snapshot }))
                }
            }
        }
        "unsubscribe" => {
            let b: SubscribeBody = serde_json::from_value(body)?;
            subs.remove(&b.session)?;
            Ok(json!({ "ok": true }))
        }
        "events" => {
            let b: EventsBody = serde_json::from_value(body)?;
            let window = log.window()?;
            if b.after + 1 < window.first {
                return Ok(json!({ "topic": topic, "last_seq": window.last, "resync": true, "snapshot": snapshot, "events": [] }));
            }
            let events = log.after(b.after, b.limit.unwrap_or(REPLAY_PAGE).min(REPLAY_PAGE))?;
            Ok(json!({ "topic": topic, "last_seq": window.last, "events": events }))
        }
        other => Err(ApiError::not_found(format!("actor op {other}"))),
    }
}

/// The admin inspection every actor kind answers with.
pub fn inspection(
    state: &worker::State,
    kind: &str,
    id: &str,
    typed: Value,
    alarm_at: Option<i64>,
    log: &EventStore,
) -> ApiResult<Value> {
    let sockets: Vec<Value> = state
        .get_websockets()
        .iter()
        .map(|ws| json!({ "tags": state.get_tags(ws) }))
        .collect();
    let sql = state.storage().sql();
    Ok(json!({
        "kind": kind,
        "id": id,
        "state": typed,
        "alarm_at": alarm_at.map(crate::domain::time::rfc3339),
        "websockets": { "count": sockets.len(), "sockets": sockets },
        "events": { "last_seq": log.last_seq().unwrap_or(0), "tail": log.tail(50).unwrap_or_default() },
        "storage": crate::store::describe_tables(&sql, 5),
    }))
}
