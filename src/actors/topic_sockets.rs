//! Sockets a topic's own actor holds (hibernating), for the feed and for a
//! run: an event reaches every watching tab as one `send` per socket from the
//! actor that commits it, in the same turn, instead of a call per session.
//!
//! The frames are the session socket's for that one topic: `subscribed`, the
//! replay after `after` (or `resync_required`), `ready`, then events. A
//! commit and its broadcast happen in one synchronous turn, so normally every
//! live socket has the log's end and nothing is stored about it. Only a
//! broadcast that is dropped (the push fault: as if the instance died between
//! commit and send) stores the lag, the seq the sockets had; the owner's
//! catch-up alarm then sends the rest within [`CATCH_UP_MS`] (a new instance
//! finds the lag in storage). What each socket is owed is in
//! [`crate::domain::broadcast`]: everything after `max(joined, lag)`.
//!
//! Each socket counts against its opener's caps (hibernation tags), and is
//! closed when the token that opened it (a session's, a user's JWT) expires:
//! at the owner's alarm ([`TopicSockets::due`]), or earlier at a broadcast or
//! a frame that finds it expired.

use std::cell::{Cell, RefCell};

use serde_json::Value;
use worker::{Request, Response, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use super::socket::{close_back, close_expired, close_revoked, load_attachment, read_frame, save_attachment, send};
use super::{ActorStorage, REPLAY_PAGE};
use crate::protocol::close_code;
use crate::domain::broadcast::{keys_held, next_expiry, Batch, KeyCheck, SocketOpener, Watcher, CATCH_UP_MS, MAX_SOCKETS};
use crate::domain::event_log::{plan_replay, ReplayPlan};
use crate::domain::faults::PUSH;
use crate::domain::session::{admit, RESYNC_AS_REPLAYED};
use crate::domain::principal::ReadScope;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{ClientFrame, EventRecord, ServerFrame, Topic};
use crate::runtime::{config, now_ms};
use crate::store::events::EventStore;
use crate::store::StateKey;

/// The state cell holding the lag: present only while a dropped broadcast
/// is owed to the live sockets.
const LAG: StateKey<u64> = StateKey::named("broadcast_lag");

/// The header by which the Worker tells a topic's actor who opens a socket
/// on it (a [`SocketOpener`] as JSON). Only the Worker reaches an actor.
pub const OPENER_HEADER: &str = "x-actorline-opener";

/// Who opens a socket, as the Worker wrote it; only the Worker reaches an
/// actor, so a missing one means the route was bypassed.
pub fn opener(req: &Request) -> ApiResult<SocketOpener> {
    req.headers()
        .get(OPENER_HEADER)
        .ok()
        .flatten()
        .and_then(|h| serde_json::from_str::<SocketOpener>(&h).ok())
        .ok_or_else(|| ApiError::BadRequest("this socket is opened through /api/topics/{topic}/ws".into()))
}

/// Reads the log's events after `after` up to `last`, page by page, and
/// hands each page to `each` with the seq it follows.
fn each_page(log: &EventStore, mut after: u64, last: u64, mut each: impl FnMut(u64, &[EventRecord])) -> ApiResult<()> {
    while after < last {
        let page = log.after(after, REPLAY_PAGE)?;
        let Some(end) = page.last().map(|e| e.seq) else { break };
        each(after, &page);
        after = end;
    }
    Ok(())
}

/// Sends a joining socket the log's events after `after` up to `last`, page
/// by page, as `replaying` may see them; counts into `read` every event
/// read, seen or not (what a subscribe pays for).
fn replay(log: &EventStore, topic: Topic, ws: &WebSocket, replaying: &Watcher, after: u64, last: u64, read: &mut usize) -> ApiResult<()> {
    each_page(log, after, last, |_, page| {
        for frame in Batch::new(topic, page).frames_for(replaying, 0) {
            let _ = ws.send_with_str(frame);
        }
        *read += page.len();
    })
}

/// The sockets an actor holds for its topic, and its lag, as this instance
/// knows them.
#[derive(Default)]
pub struct TopicSockets {
    /// The sockets with their attachments, read once and kept while the
    /// instance lives: a broadcast is then one `send` per socket, not also a
    /// `getWebSockets` and an attachment read. Dropped whenever a socket
    /// opens, closes or sends a frame (the only moments an attachment changes).
    watchers: RefCell<Option<Vec<(WebSocket, Watcher)>>>,
    /// The stored lag once read (`Some(None)`: nothing owed).
    lag: Cell<Option<Option<u64>>>,
    /// When the keys the sockets rest on are next checked. See [`Self::check_keys`].
    key_check: KeyCheck,
}

impl TopicSockets {
    /// A socket opened, closed or changed its attachment.
    pub fn forget(&self) {
        self.watchers.borrow_mut().take();
    }

    /// Remembers that a topic being created has no lag (no socket can have
    /// opened on it yet), so its commits read nothing.
    pub fn none_yet(&self) {
        self.lag.set(Some(None));
    }

    fn held(&self, host: &impl ActorStorage) -> usize {
        let mut cache = self.watchers.borrow_mut();
        cache
            .get_or_insert_with(|| host.state().get_websockets().into_iter().filter_map(|ws| load_attachment(&ws).map(|w| (ws, w))).collect())
            .len()
    }

    /// The seq the live sockets had when a broadcast was dropped, if one is owed.
    fn lag(&self, host: &impl ActorStorage) -> ApiResult<Option<u64>> {
        if let Some(lag) = self.lag.get() {
            return Ok(lag);
        }
        let lag = if crate::store::has_state(&host.state().storage().sql()) { host.cells().load(LAG)? } else { None };
        self.lag.set(Some(lag));
        Ok(lag)
    }

    fn set_lag(&self, host: &impl ActorStorage, lag: Option<u64>) -> ApiResult<()> {
        self.lag.set(None);
        match lag {
            Some(through) => {
                crate::store::init_state(&host.state().storage().sql())?;
                host.cells().save(LAG, &through)?
            }
            None => host.cells().delete(LAG)?,
        }
        self.lag.set(Some(lag));
        Ok(())
    }

    /// Sends `events` (in seq order) to every socket owed them, given that
    /// the sockets had everything through `through`. A socket whose token
    /// has expired gets nothing and is closed.
    fn broadcast(&self, topic: Topic, events: &[EventRecord], through: u64) {
        let now = now_ms();
        let closed = self.close_expired_held(now);
        let mut batch = Batch::new(topic, events);
        for (ws, w) in self.watchers.borrow().iter().flatten().filter(|(_, w)| !w.expired(now)) {
            for frame in batch.frames_for(w, through) {
                let _ = ws.send_with_str(frame);
            }
        }
        if closed {
            self.forget();
        }
    }

    /// Closes the sockets of API keys revoked since they opened (4001), when
    /// a check is due: at most every [`KEY_RECHECK_MS`], and only when there
    /// is something to send (a broadcast, a catch-up, a join), so a quiet
    /// topic costs no check and no wake. Once the first check after a
    /// revocation has ended, the key's sockets get nothing more (what another
    /// turn sends while the check awaits the catalog can still reach them).
    /// One catalog query per check.
    pub async fn check_keys(&self, host: &impl ActorStorage, now: Millis) {
        // A frame or a commit that comes before the next check neither starts
        // one nor reads the sockets again (their list is dropped at every frame).
        if !self.key_check.start(now) || self.held(host) == 0 {
            return;
        }
        // Owned: the list is not borrowed across the catalog's await.
        let keys: Vec<String> = keys_held(self.watchers.borrow().iter().flatten().map(|(_, w)| w)).into_iter().map(str::to_string).collect();
        if keys.is_empty() {
            return;
        }
        let live = match crate::catalog::live_keys(host.env(), &keys).await {
            Ok(live) => live,
            // The catalog is down: the sockets stay, and the next chance checks again.
            Err(e) => return worker::console_error!("socket key check failed: {e}"),
        };
        // Sockets may have opened or closed meanwhile: read them again.
        self.held(host);
        let mut closed = false;
        for (ws, _) in self.watchers.borrow().iter().flatten().filter(|(_, w)| w.k.as_ref().is_some_and(|k| !live.contains(k))) {
            close_revoked(ws);
            closed = true;
        }
        if closed {
            self.forget();
        }
    }

    /// Closes the sockets whose tokens have expired by `now`.
    pub fn sweep(&self, host: &impl ActorStorage, now: Millis) {
        if self.held(host) > 0 && self.close_expired_held(now) {
            self.forget();
        }
    }

    /// Closes the expired sockets among those remembered; whether any were
    /// (the caller then forgets the list, once it is done reading it).
    fn close_expired_held(&self, now: Millis) -> bool {
        let mut closed = false;
        for (ws, _) in self.watchers.borrow().iter().flatten().filter(|(_, w)| w.expired(now)) {
            close_expired(ws);
            closed = true;
        }
        closed
    }

    /// After a commit of `records`, in its turn: sends them to the held
    /// sockets (what a dropped broadcast left behind goes first). When the
    /// push fault drops this broadcast, the lag is stored with the commit and
    /// the caller's alarm catches up ([`Self::catch_up_due`]).
    /// If the lag cannot be read or stored, the live sockets are closed
    /// (1012) rather than left to miss `records` for good: they resume with
    /// `after`, and the replay comes from the log the commit wrote. So the
    /// commit stands either way, and nothing is returned to its caller.
    pub fn publish(&self, host: &impl ActorStorage, topic: Topic, records: &[EventRecord]) {
        if let Err(e) = self.send_or_owe(host, topic, records) {
            worker::console_error!("{topic} broadcast failed after the commit, sockets closed to resume: {e}");
            self.close_all(close_code::RESUME, "events could not be sent: resume with after");
        }
    }

    fn send_or_owe(&self, host: &impl ActorStorage, topic: Topic, records: &[EventRecord]) -> ApiResult<()> {
        let Some(first) = records.first().map(|r| r.seq) else { return Ok(()) };
        if self.held(host) == 0 {
            // Nobody is owed anything; a socket that opens starts at the log's end.
            return Ok(());
        }
        let lag = self.lag(host)?;
        let last = records[records.len() - 1].seq;
        // A push the fault drops is as if the actor were evicted right here.
        if config(host.env()).faults.site_strikes(PUSH, &format!("{topic}:{last}"), 1) {
            if lag.is_none() {
                self.set_lag(host, Some(first - 1))?;
            }
            worker::console_log!("{topic}: socket push through seq {last} dropped (injected fault)");
            return Ok(());
        }
        match lag {
            None => {
                self.broadcast(topic, records, first - 1);
                Ok(())
            }
            Some(_) => self.catch_up(host, topic),
        }
    }

    /// Sends whatever a dropped broadcast left behind the log's end.
    /// With no socket held nobody is owed anything (a socket that opens
    /// starts at the log's end, or replays what it asks for): the lag is
    /// cleared, and the alarm stops looking for it.
    pub fn catch_up(&self, host: &impl ActorStorage, topic: Topic) -> ApiResult<()> {
        let Some(through) = self.lag(host)? else { return Ok(()) };
        if self.held(host) == 0 {
            return self.set_lag(host, None);
        }
        let log = host.log();
        let last = log.last_seq()?;
        each_page(&log, through, last, |through, page| {
            if let Some(first) = page.first().map(|e| e.seq) {
                self.close_missed(through, first);
            }
            // Read again: closing a socket (above, or an expired one in the
            // last page's broadcast) drops the list, and the others are
            // still owed this page.
            self.held(host);
            self.broadcast(topic, page, through);
        })?;
        self.set_lag(host, None)
    }

    /// Closes the sockets owed events retention dropped before the catch-up
    /// came (1012): a silent jump in seq would break "every event > N". The
    /// client reconnects with `after` and gets `resync_required`.
    fn close_missed(&self, through: u64, first_kept: u64) {
        let mut closed = false;
        for (ws, _) in self.watchers.borrow().iter().flatten().filter(|(_, w)| w.missed(through, first_kept)) {
            let _ = ws.close(Some(close_code::RESUME), Some("events were trimmed: resume with after"));
            closed = true;
        }
        if closed {
            self.forget();
        }
    }

    /// Closes every held socket with `code`: each resumes from its `after`.
    fn close_all(&self, code: u16, reason: &str) {
        for (ws, _) in self.watchers.borrow().iter().flatten() {
            let _ = ws.close(Some(code), Some(reason));
        }
        self.forget();
    }

    /// When the owner's catch-up alarm is due: a dropped broadcast is owed.
    pub fn catch_up_due(&self, now: Millis) -> Option<Millis> {
        matches!(self.lag.get(), Some(Some(_))).then_some(now + CATCH_UP_MS)
    }

    /// When the owner's alarm is due for its sockets: a dropped broadcast's
    /// catch-up, or the next socket whose token expires.
    pub fn due(&self, host: &impl ActorStorage, now: Millis) -> Option<Millis> {
        let expiry = if self.held(host) == 0 { None } else { next_expiry(self.watchers.borrow().iter().flatten().map(|(_, w)| w), now) };
        [self.catch_up_due(now), expiry].into_iter().flatten().min()
    }

    /// Accepts a socket for `opener`, and joins it to the topic at once when
    /// the URL has `after`. 503 past [`MAX_SOCKETS`]; 409 `too_many_sockets`
    /// past the opener's session or principal cap. Then arms the owner's
    /// alarm for the socket's expiry.
    pub async fn accept(&self, host: &impl ActorStorage, topic: Topic, req: &Request, opener: &SocketOpener, snapshot: impl Fn(&ReadScope) -> Value) -> ApiResult<Response> {
        let url = req.url()?;
        let after = url.query_pairs().find(|(k, _)| k == "after").and_then(|(_, v)| v.parse::<u64>().ok());
        let state = host.state();
        if state.get_websockets().len() >= MAX_SOCKETS {
            return Err(ApiError::Unavailable(format!("{topic} holds at most {MAX_SOCKETS} sockets; retry later")));
        }
        let caps = config(host.env()).trust.socket_caps();
        if let Some(max) = opener.over_cap(caps, |tag| state.get_websockets_with_tag(tag).len()) {
            return Err(ApiError::TooManySockets { max });
        }
        let pair = WebSocketPair::new()?;
        self.forget();
        let tags = opener.tags();
        state.accept_websocket_with_tags(&pair.server, &tags.iter().map(String::as_str).collect::<Vec<_>>());
        let k = opener.principal.key_id().map(str::to_string);
        if k.is_some() {
            self.key_check.checked(now_ms());
        }
        let w = Watcher { x: opener.expires_at, k, ..Watcher::new(&opener.principal.read_scope(), now_ms()) };
        save_attachment(&pair.server, &w);
        if url.query_pairs().any(|(k, _)| k == "after") {
            // Paid for by the open's read token.
            self.join(host, topic, &pair.server, w, after, &snapshot, false)?;
        }
        if let Some(at) = opener.expires_at {
            // The socket is open (and joined, before this await): a failed arm
            // leaves its close to the next broadcast or frame, and to the
            // owner's next alarm.
            if let Err(e) = host.arm_by(at, false).await {
                worker::console_error!("{topic} socket expiry alarm: {e}");
            }
        }
        Ok(Response::from_websocket(pair.client)?)
    }

    /// `subscribed`, the replay after `after` (or a resync), `ready`; then the
    /// socket is live from the log's end. All from the actor's own log, with
    /// no await: no broadcast can interleave. With `pays`, the replay is
    /// charged to the socket's frame bucket: a `subscribe` frame cannot make
    /// the actor read its log over and over (the bucket goes into debt, and
    /// frames wait for it).
    fn join(&self, host: &impl ActorStorage, topic: Topic, ws: &WebSocket, mut w: Watcher, after: Option<u64>, snapshot: &dyn Fn(&ReadScope) -> Value, pays: bool) -> ApiResult<()> {
        let mut replayed = 0;
        let log = host.log();
        let window = log.window()?;
        send(ws, &ServerFrame::Subscribed { topic, seq: window.last });
        let sent = match plan_replay(after, window) {
            ReplayPlan::UpToDate => Ok(()),
            // The snapshot as the socket's principal may read it.
            ReplayPlan::Resync => {
                send(ws, &ServerFrame::ResyncRequired { topic, snapshot: snapshot(&w.scope()) });
                replayed = RESYNC_AS_REPLAYED;
                Ok(())
            }
            ReplayPlan::Replay { after, last } => replay(&log, topic, ws, &Watcher { c: Some(after), ..w.clone() }, after, last, &mut replayed),
        };
        // What was read is paid for, also when a page failed part way.
        if pays {
            w.b.charge_replay(replayed, now_ms());
        }
        if sent.is_ok() {
            w.c = Some(window.last);
        }
        save_attachment(ws, &w);
        sent?;
        send(ws, &ServerFrame::Ready { topic });
        Ok(())
    }

    /// A client frame: `ping`, and `subscribe` / `unsubscribe` of this
    /// socket's one topic.
    pub fn on_message(&self, host: &impl ActorStorage, topic: Topic, ws: &WebSocket, message: WebSocketIncomingMessage, snapshot: impl Fn(&ReadScope) -> Value) {
        self.forget();
        let text = match message {
            WebSocketIncomingMessage::String(text) => text,
            WebSocketIncomingMessage::Binary(_) => return send(ws, &ServerFrame::error("malformed_frame", "binary frames are not supported")),
        };
        let Some(mut w) = load_attachment::<Watcher>(ws) else { return };
        if w.expired(now_ms()) {
            return close_expired(ws);
        }
        let admission = admit(&mut w.b, &mut w.strikes, now_ms());
        save_attachment(ws, &w);
        let Some(frame) = read_frame(ws, admission, &text) else { return };
        let name = topic.to_string();
        let result = match frame {
            ClientFrame::Ping => {
                send(ws, &ServerFrame::Pong);
                Ok(())
            }
            ClientFrame::Subscribe { topic: t, after } if t == name => self.join(host, topic, ws, w, after, &snapshot, true),
            ClientFrame::Unsubscribe { topic: t } if t == name => {
                save_attachment(ws, &Watcher { c: None, ..w });
                send(ws, &ServerFrame::Unsubscribed { topic });
                Ok(())
            }
            ClientFrame::Subscribe { topic: t, .. } | ClientFrame::Unsubscribe { topic: t } => {
                let refused = ServerFrame::error("unknown_topic", format!("this socket carries {name} only, not {t}; use a session socket"));
                send(ws, &refused.about(Some(t)));
                Ok(())
            }
        };
        if let Err(e) = result {
            // Only a subscribe (its replay) fails: the frame names the topic,
            // so the client knows which subscription to ask for again.
            send(ws, &crate::http::error_frame(&e, e.code()).about(Some(name)));
        }
    }

    pub fn on_close(&self, ws: &WebSocket, code: usize) {
        self.forget();
        close_back(ws, code);
    }

    pub fn on_error(&self, ws: &WebSocket) {
        self.forget();
        let _ = ws.close(Some(close_code::SERVER_ERROR), Some("socket error"));
    }

    /// The stored lag, for the admin inspection.
    pub fn stored_lag(host: &impl ActorStorage) -> Option<u64> {
        host.cells().load(LAG).ok().flatten()
    }
}
