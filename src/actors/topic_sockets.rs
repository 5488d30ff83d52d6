//! Sockets a topic's own actor holds (hibernating), for the feed and for a
//! run: an event reaches every watching tab as one `send` per socket from the
//! actor that commits it, in the same turn, instead of a call per session.
//!
//! The frames are the session socket's for that one topic: `subscribed`, the
//! replay after `after` (or `resync_required`), `ready`, then events. What
//! each socket is owed is in [`crate::domain::broadcast`]: everything after
//! `max(joined, head)`, where the head is the last seq sent to every live
//! socket. A broadcast that is lost (the push fault, an instance dying between
//! commit and send) leaves the head behind the log's end, and the owner's
//! catch-up alarm sends the rest within [`CATCH_UP_MS`].

use std::cell::{Cell, RefCell};

use serde_json::Value;
use worker::{Request, Response, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use super::session::{close_back, load_attachment, read_frame, save_attachment, send};
use super::{ActorStorage, REPLAY_PAGE};
use crate::domain::broadcast::{behind, Batch, Watcher, CATCH_UP_MS, MAX_SOCKETS};
use crate::domain::event_log::{plan_replay, ReplayPlan};
use crate::domain::faults::PUSH;
use crate::domain::principal::ReadScope;
use crate::domain::session::admit;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{ClientFrame, EventRecord, ServerFrame, Topic};
use crate::runtime::{config, now_ms};

/// The state cell holding the broadcast head.
const HEAD: &str = "broadcast_through";

/// The header by which the Worker tells a run actor who opens a socket on its
/// topic (a [`crate::domain::principal::Principal`] as JSON). Only the Worker
/// reaches an actor.
pub const PRINCIPAL_HEADER: &str = "x-actorline-principal";

/// The sockets an actor holds for its topic, and its broadcast head, as this
/// instance knows them.
#[derive(Default)]
pub struct TopicSockets {
    /// The sockets with their attachments, read once and kept while the
    /// instance lives: a broadcast is then one `send` per socket, not also a
    /// `getWebSockets` and an attachment read. Dropped whenever a socket
    /// opens, closes or sends a frame (the only moments an attachment changes).
    watchers: RefCell<Option<Vec<(WebSocket, Watcher)>>>,
    /// The broadcast head: the stored one once read, or the log's end while
    /// no socket is held (nobody is owed anything then, so it is not stored).
    head_seq: Cell<Option<u64>>,
    /// A broadcast of this instance was dropped: the catch-up alarm is due.
    lagging: Cell<bool>,
}

impl TopicSockets {
    /// A socket opened, closed or changed its attachment.
    pub fn forget(&self) {
        self.watchers.borrow_mut().take();
    }

    fn held(&self, host: &impl ActorStorage) -> usize {
        let mut cache = self.watchers.borrow_mut();
        cache
            .get_or_insert_with(|| host.state().get_websockets().into_iter().filter_map(|ws| load_attachment(&ws).map(|w| (ws, w))).collect())
            .len()
    }

    /// The broadcast head; one never stored starts at the log's end (no
    /// socket of an earlier instance can be owed anything).
    pub fn head(&self, host: &impl ActorStorage) -> ApiResult<u64> {
        if let Some(h) = self.head_seq.get() {
            return Ok(h);
        }
        crate::store::init_state(&host.state().storage().sql())?;
        let head = match host.cells().load::<u64>(HEAD)? {
            Some(h) => h,
            None => {
                let last = host.log().last_seq()?;
                host.cells().save(HEAD, &last)?;
                last
            }
        };
        self.head_seq.set(Some(head));
        Ok(head)
    }

    fn save_head(&self, host: &impl ActorStorage, head: u64) -> ApiResult<()> {
        self.head_seq.set(None);
        host.cells().save(HEAD, &head)?;
        self.head_seq.set(Some(head));
        Ok(())
    }

    /// Sends `events` (in seq order, all after `through`) to every socket
    /// owed them, then moves the head. Synchronous: one turn, one commit.
    fn broadcast(&self, host: &impl ActorStorage, topic: Topic, events: &[EventRecord], through: u64) -> ApiResult<u64> {
        let mut batch = Batch::new(topic, events);
        let Some(last) = batch.last_seq() else { return Ok(through) };
        if self.held(host) == 0 {
            self.head_seq.set(Some(last));
            return Ok(last);
        }
        for (ws, w) in self.watchers.borrow().iter().flatten() {
            for frame in batch.frames_for(w, through) {
                let _ = ws.send_with_str(frame);
            }
        }
        self.save_head(host, last)?;
        Ok(last)
    }

    /// After a commit of `records`: sends them to the held sockets (what an
    /// earlier lost broadcast left behind goes first). Returns the log's end
    /// the sockets have, which is behind it when the push fault dropped this
    /// broadcast (the caller's alarm then catches up).
    pub fn publish(&self, host: &impl ActorStorage, topic: Topic, records: &[EventRecord]) -> ApiResult<u64> {
        let Some(last) = records.last().map(|r| r.seq) else { return self.head(host) };
        if self.held(host) == 0 {
            self.head_seq.set(Some(last));
            return Ok(last);
        }
        let through = self.head(host)?;
        // A push the fault drops is as if the actor were evicted right here.
        if config(host.env()).faults.site_strikes(PUSH, &format!("{topic}:{last}"), 1) {
            self.lagging.set(true);
            return Ok(through);
        }
        if records[0].seq == through + 1 {
            self.broadcast(host, topic, records, through)
        } else {
            self.catch_up(host, topic)
        }
    }

    /// Sends whatever a lost broadcast left behind the log's end; returns
    /// the head.
    pub fn catch_up(&self, host: &impl ActorStorage, topic: Topic) -> ApiResult<u64> {
        self.lagging.set(false);
        if self.held(host) == 0 {
            // Nobody is owed anything; a socket that opens starts at the log's end.
            return Ok(self.head_seq.get().unwrap_or_default());
        }
        let last = host.log().last_seq()?;
        let mut through = self.head(host)?;
        while let Some(after) = behind(through, last) {
            let page = host.log().after(after, REPLAY_PAGE)?;
            if page.is_empty() {
                // Retention dropped them: sockets that were owed them resume by `after`.
                self.save_head(host, last)?;
                return Ok(last);
            }
            through = self.broadcast(host, topic, &page, through)?;
        }
        Ok(through)
    }

    /// When the owner's catch-up alarm is due: a broadcast of this instance
    /// was dropped. (A broadcast is sent in its commit's turn, so only the
    /// push fault drops one here; an alarm armed for it survives eviction.)
    pub fn catch_up_due(&self, now: Millis) -> Option<Millis> {
        self.lagging.get().then_some(now + CATCH_UP_MS)
    }

    /// Accepts a socket opened by `scope`, and joins it to the topic at once
    /// when the URL has `after`. 503 past [`MAX_SOCKETS`].
    pub fn accept(&self, host: &impl ActorStorage, topic: Topic, req: &Request, scope: &ReadScope, snapshot: impl Fn() -> Value) -> ApiResult<Response> {
        let url = req.url()?;
        let after = url.query_pairs().find(|(k, _)| k == "after").and_then(|(_, v)| v.parse::<u64>().ok());
        let held = host.state().get_websockets().len();
        if held >= MAX_SOCKETS {
            return Err(ApiError::Unavailable(format!("{topic} holds at most {MAX_SOCKETS} sockets; retry later")));
        }
        if held == 0 {
            // Nobody was owed anything: the head starts at the log's end.
            let last = host.log().last_seq()?;
            crate::store::init_state(&host.state().storage().sql())?;
            self.save_head(host, last)?;
        }
        let pair = WebSocketPair::new()?;
        self.forget();
        host.state().accept_web_socket(&pair.server);
        let w = Watcher::new(scope, now_ms());
        save_attachment(&pair.server, &w);
        if url.query_pairs().any(|(k, _)| k == "after") {
            self.join(host, topic, &pair.server, w, after, &snapshot)?;
        }
        Ok(Response::from_websocket(pair.client)?)
    }

    /// `subscribed`, the replay after `after` (or a resync), `ready`; then the
    /// socket is live from the log's end. All from the actor's own log, with
    /// no await: no broadcast can interleave.
    fn join(&self, host: &impl ActorStorage, topic: Topic, ws: &WebSocket, mut w: Watcher, after: Option<u64>, snapshot: &dyn Fn() -> Value) -> ApiResult<()> {
        let log = host.log();
        let window = log.window()?;
        send(ws, &ServerFrame::Subscribed { topic, seq: window.last });
        match plan_replay(after, window) {
            ReplayPlan::UpToDate => {}
            ReplayPlan::Resync => send(ws, &ServerFrame::ResyncRequired { topic, snapshot: snapshot() }),
            ReplayPlan::Replay { mut after, last } => {
                let replaying = Watcher { c: Some(after), ..w.clone() };
                while after < last {
                    let page = log.after(after, REPLAY_PAGE)?;
                    let Some(end) = page.last().map(|e| e.seq) else { break };
                    for frame in Batch::new(topic, &page).frames_for(&replaying, 0) {
                        let _ = ws.send_with_str(frame);
                    }
                    after = end;
                }
            }
        }
        w.c = Some(window.last);
        save_attachment(ws, &w);
        send(ws, &ServerFrame::Ready { topic });
        Ok(())
    }

    /// A client frame: `ping`, and `subscribe` / `unsubscribe` of this
    /// socket's one topic.
    pub fn on_message(&self, host: &impl ActorStorage, topic: Topic, ws: &WebSocket, message: WebSocketIncomingMessage, snapshot: impl Fn() -> Value) {
        self.forget();
        let text = match message {
            WebSocketIncomingMessage::String(text) => text,
            WebSocketIncomingMessage::Binary(_) => return send(ws, &ServerFrame::error("malformed_frame", "binary frames are not supported")),
        };
        let Some(mut w) = load_attachment::<Watcher>(ws) else { return };
        let admission = admit(&mut w.b, &mut w.strikes, now_ms());
        save_attachment(ws, &w);
        let Some(frame) = read_frame(ws, admission, &text) else { return };
        let name = topic.to_string();
        let result = match frame {
            ClientFrame::Ping => {
                send(ws, &ServerFrame::Pong);
                Ok(())
            }
            ClientFrame::Subscribe { topic: t, after } if t == name => self.join(host, topic, ws, w, after, &snapshot),
            ClientFrame::Unsubscribe { topic: t } if t == name => {
                save_attachment(ws, &Watcher { c: None, ..w });
                send(ws, &ServerFrame::Unsubscribed { topic });
                Ok(())
            }
            ClientFrame::Subscribe { topic: t, .. } | ClientFrame::Unsubscribe { topic: t } => {
                send(ws, &ServerFrame::error("unknown_topic", format!("this socket carries {name} only, not {t}; use a session socket")));
                Ok(())
            }
        };
        if let Err(e) = result {
            send(ws, &crate::http::error_frame(&e, e.code()));
        }
    }

    pub fn on_close(&self, ws: &WebSocket, code: usize) {
        self.forget();
        close_back(ws, code);
    }

    pub fn on_error(&self, ws: &WebSocket) {
        self.forget();
        let _ = ws.close(Some(1011), Some("socket error"));
    }

    /// The stored head, for the admin inspection.
    pub fn stored_head(host: &impl ActorStorage) -> Option<u64> {
        host.cells().load::<u64>(HEAD).ok().flatten()
    }
}
