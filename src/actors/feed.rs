//! `FeedActor`: the `feed` topic. Content actors append their content-level
//! events here, and it numbers them in its own dense sequence.
//!
//! It holds the feed's watching sockets itself (`GET /api/topics/feed/ws`,
//! hibernating), so an event reaches a thousand tabs as a thousand sends from
//! this actor, in the turn that commits it, instead of a call per session.
//! Session sockets may still subscribe to `feed`; they get it by push.
//! The rules (who sees what, what each socket is owed) are in
//! `domain::broadcast`.

use std::cell::{Cell, RefCell};

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use super::ops::{Append, Appended, FeedCall, FeedOps, FireAlarm, Inspect, Inspectable};
use super::rpc;
use super::session::{close_back, load_attachment, read_frame, save_attachment, send};
use super::{ActorStorage, TopicActor, REPLAY_PAGE};
use crate::domain::broadcast::{behind, Batch, Watcher, CATCH_UP_MS, MAX_SOCKETS};
use crate::domain::principal::ReadScope;
use crate::domain::event_log::{plan_replay, ReplayPlan};
use crate::domain::faults::PUSH;
use crate::domain::session::admit;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{ClientFrame, EventDraft, EventName, EventRecord, ServerFrame, Topic};
use crate::runtime::{config, now_ms};

/// There is one feed; sharding it by category would be the next step.
pub const FEED_NAME: &str = "feed";

/// The header by which the Worker tells the actor who opens a feed socket
/// (a [`ReadScope`] as JSON). Only the Worker reaches the actor.
pub const READER_HEADER: &str = "x-actorline-reader";

/// The state cell holding the broadcast head: the last seq sent to every
/// live socket.
const HEAD: &str = "broadcast_through";

#[durable_object]
pub struct FeedActor {
    state: State,
    env: Env,
    /// Whether the catch-up alarm is set (in memory: a fresh instance sets it
    /// again on its first append, which is harmless).
    armed: Cell<bool>,
    /// The sockets with their attachments, read once and kept while the
    /// instance lives: a broadcast is then one `send` per socket, not also a
    /// `getWebSockets` and an attachment read. Dropped whenever a socket
    /// opens, closes or sends a frame (the only moments an attachment changes).
    watchers: RefCell<Option<Vec<(WebSocket, Watcher)>>>,
    /// The stored broadcast head, read once: this instance is its only writer.
    head_seq: Cell<Option<u64>>,
    memory: super::ActorMemory,
}

pub async fn append(env: &Env, events: Vec<EventDraft>) -> ApiResult<()> {
    rpc::send(env, FEED_NAME, &Append { events }).await?;
    Ok(())
}

crate::actor_storage!(FeedActor);

fn watcher(ws: &WebSocket) -> Option<Watcher> {
    load_attachment(ws)
}

fn save(ws: &WebSocket, w: &Watcher) {
    save_attachment(ws, w)
}

impl FeedActor {
    /// A socket opened, closed or changed its attachment.
    fn forget_watchers(&self) {
        self.watchers.borrow_mut().take();
    }
}

impl FeedActor {
    fn snapshot(&self) -> Value {
        json!({ "topic": "feed", "last_seq": self.log().last_seq().unwrap_or(0), "recent": self.log().tail(20).unwrap_or_default() })
    }

    /// The broadcast head; a feed that never broadcast starts at its log's
    /// end (no socket of an earlier instance can be owed anything).
    fn head(&self) -> ApiResult<u64> {
        if let Some(h) = self.head_seq.get() {
            return Ok(h);
        }
        crate::store::init_state(&self.state.storage().sql())?;
        let head = match self.cells().load::<u64>(HEAD)? {
            Some(h) => h,
            None => {
                let last = self.log().last_seq()?;
                self.cells().save(HEAD, &last)?;
                last
            }
        };
        self.head_seq.set(Some(head));
        Ok(head)
    }

    fn save_head(&self, head: u64) -> ApiResult<()> {
        self.head_seq.set(None);
        self.cells().save(HEAD, &head)?;
        self.head_seq.set(Some(head));
        Ok(())
    }

    /// Sends `events` (in seq order, all after `through`) to every socket
    /// owed them, then moves the head. Synchronous: one turn, one commit.
    fn broadcast(&self, events: &[EventRecord], through: u64) -> ApiResult<u64> {
        let mut batch = Batch::new(Topic::Feed, events);
        let Some(last) = batch.last_seq() else { return Ok(through) };
        let mut cache = self.watchers.borrow_mut();
        let watchers = cache.get_or_insert_with(|| {
            self.state.get_websockets().into_iter().filter_map(|ws| watcher(&ws).map(|w| (ws, w))).collect()
        });
        for (ws, w) in watchers.iter() {
            for frame in batch.frames_for(w, through) {
                let _ = ws.send_with_str(frame);
            }
        }
        self.save_head(last)?;
        Ok(last)
    }

    /// Sends whatever a lost broadcast left behind the log's end.
    fn catch_up(&self) -> ApiResult<u64> {
        let mut through = self.head()?;
        let last = self.log().last_seq()?;
        while let Some(after) = behind(through, last) {
            let page = self.log().after(after, REPLAY_PAGE)?;
            if page.is_empty() {
                // Retention dropped them: sockets that were owed them resume by `after`.
                self.save_head(last)?;
                return Ok(last);
            }
            through = self.broadcast(&page, through)?;
        }
        Ok(through)
    }

    /// Arms the catch-up alarm once per window, not per append: under load it
    /// costs one `setAlarm` a second.
    async fn arm(&self) {
        if self.armed.replace(true) {
            return;
        }
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms() + CATCH_UP_MS).unwrap_or_default();
        if self.state.storage().set_alarm(at).await.is_err() {
            self.armed.set(false);
        }
    }

    fn accept(&self, req: &Request) -> ApiResult<Response> {
        let scope = req
            .headers()
            .get(READER_HEADER)
            .ok()
            .flatten()
            .and_then(|h| serde_json::from_str::<ReadScope>(&h).ok())
            .ok_or_else(|| ApiError::BadRequest("a feed socket is opened through /api/topics/feed/ws".into()))?;
        let url = req.url()?;
        let after = url.query_pairs().find(|(k, _)| k == "after").and_then(|(_, v)| v.parse::<u64>().ok());
        if self.state.get_websockets().len() >= MAX_SOCKETS {
            return Err(ApiError::Unavailable(format!("the feed holds at most {MAX_SOCKETS} sockets; retry later")));
        }
        let pair = WebSocketPair::new()?;
        self.forget_watchers();
        self.state.accept_web_socket(&pair.server);
        let w = Watcher::new(&scope, now_ms());
        save(&pair.server, &w);
        if url.query_pairs().any(|(k, _)| k == "after") {
            self.join(&pair.server, w, after)?;
        }
        Ok(Response::from_websocket(pair.client)?)
    }

    /// `subscribed`, the replay after `after` (or a resync), `ready`; then the
    /// socket is live from the log's end. All from this actor's own log, with
    /// no await: no broadcast can interleave.
    fn join(&self, ws: &WebSocket, mut w: Watcher, after: Option<u64>) -> ApiResult<()> {
        let window = self.log().window()?;
        send(ws, &ServerFrame::Subscribed { topic: Topic::Feed, seq: window.last });
        match plan_replay(after, window) {
            ReplayPlan::UpToDate => {}
            ReplayPlan::Resync => send(ws, &ServerFrame::ResyncRequired { topic: Topic::Feed, snapshot: self.snapshot() }),
            ReplayPlan::Replay { mut after, last } => {
                let replaying = Watcher { c: Some(after), ..w.clone() };
                while after < last {
                    let page = self.log().after(after, REPLAY_PAGE)?;
                    let Some(end) = page.last().map(|e| e.seq) else { break };
                    for frame in Batch::new(Topic::Feed, &page).frames_for(&replaying, 0) {
                        let _ = ws.send_with_str(frame);
                    }
                    after = end;
                }
            }
        }
        w.c = Some(window.last);
        save(ws, &w);
        send(ws, &ServerFrame::Ready { topic: Topic::Feed });
        Ok(())
    }

    fn on_frame(&self, ws: &WebSocket, text: &str) {
        let Some(mut w) = watcher(ws) else { return };
        let admission = admit(&mut w.b, &mut w.strikes, now_ms());
        save(ws, &w);
        let Some(frame) = read_frame(ws, admission, text) else { return };
        let result = match frame {
            ClientFrame::Ping => {
                send(ws, &ServerFrame::Pong);
                Ok(())
            }
            ClientFrame::Subscribe { topic, after } if topic == "feed" => self.join(ws, w, after),
            ClientFrame::Unsubscribe { topic } if topic == "feed" => {
                save(ws, &Watcher { c: None, ..w });
                send(ws, &ServerFrame::Unsubscribed { topic: Topic::Feed });
                Ok(())
            }
            ClientFrame::Subscribe { topic, .. } | ClientFrame::Unsubscribe { topic } => {
                send(ws, &ServerFrame::error("unknown_topic", format!("this socket carries the feed only, not {topic}; use a session socket")));
                Ok(())
            }
        };
        if let Err(e) = result {
            send(ws, &crate::http::error_frame(&e, e.code()));
        }
    }

    fn view(&self) -> Value {
        let mut v = self.snapshot();
        v["broadcast_through"] = json!(self.cells().load::<u64>(HEAD).ok().flatten());
        v["sockets"] = json!(self.state.get_websockets().len());
        v
    }
}

impl FeedOps for FeedActor {
    async fn append(&self, a: Append) -> ApiResult<Appended> {
        // `head` creates the state table; the subscriber list needs none to be read.
        let through = self.head()?;
        let records = self.log().append(a.events, now_ms())?;
        // A deleted item's earlier events no longer name it, in any replay.
        for r in records.iter().filter(|r| r.event == EventName::ContentDeleted) {
            if let Some(id) = r.data.get("content_id").and_then(Value::as_str) {
                self.log().redact(id)?;
            }
        }
        let Some(last) = records.last().map(|r| r.seq) else { return Ok(Appended { last_seq: through }) };
        // A push the fault drops is as if the actor were evicted right here.
        if !config(&self.env).faults.site_strikes(PUSH, &format!("feed:{last}"), 1) {
            if records[0].seq == through + 1 {
                self.broadcast(&records, through)?;
            } else {
                // An earlier broadcast was lost: its events go first.
                self.catch_up()?;
            }
        }
        self.arm().await;
        self.push_later(Topic::Feed, records);
        Ok(Appended { last_seq: last })
    }
}

impl Inspectable for FeedActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        super::inspection(&self.state, "feed", FEED_NAME, self.view(), &self.log()).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.catch_up()?;
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
        // Pings are answered by the runtime without waking a hibernated actor.
        if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new(r#"{"type":"ping"}"#, r#"{"type":"pong"}"#) {
            state.set_websocket_auto_response(&pair);
        }
        FeedActor { state, env, armed: Cell::new(false), watchers: RefCell::new(None), head_seq: Cell::new(None), memory: Default::default() }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let upgrade = req.headers().get("upgrade").ok().flatten().unwrap_or_default();
        if upgrade.eq_ignore_ascii_case("websocket") {
            return Ok(self.accept(&req).unwrap_or_else(|e| crate::http::error(&e)));
        }
        super::rpc::not_a_call()
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.forget_watchers();
        match message {
            WebSocketIncomingMessage::String(text) => self.on_frame(&ws, &text),
            WebSocketIncomingMessage::Binary(_) => send(&ws, &ServerFrame::error("malformed_frame", "binary frames are not supported")),
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        self.forget_watchers();
        close_back(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.forget_watchers();
        let _ = ws.close(Some(1011), Some("socket error"));
        Ok(())
    }

    /// The catch-up alarm: a broadcast lost since it was armed goes out now.
    async fn alarm(&self) -> worker::Result<Response> {
        self.armed.set(false);
        match self.catch_up() {
            Ok(through) => Response::ok(format!("through {through}")),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }
}

crate::rpc_entry!(FeedActor, FeedCall);
