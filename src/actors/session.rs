//! `SessionActor`: one user session and its WebSockets (several tabs), held
//! through the hibernation API. Per-socket subscriptions and cursors live in
//! the socket attachment, so an evicted session wakes with everything it needs.
//!
//! Delivery (exactly-once, in order per socket and topic) is decided by
//! `domain::session::Subscription`; this shell reads and writes attachments,
//! calls the topic and sends the frames it is given. A subscription that is
//! replaying lives in memory for the few awaits of its hand-over, so pushes
//! that arrive meanwhile reach it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use super::ops::{Deliver, Delivered, Done, Events, EventsPage, FireAlarm, Inspect, Inspectable, Plan, SessionCall, SessionInfo, SessionOps, SessionPrincipal, Subscribe, Unsubscribe};
use super::rpc::{self, topic_actor};
use super::socket::{answer_pings, close_back, close_expired, close_revoked, key_revoked, load_attachment, read_frame, revoked, save_attachment, send};
use crate::protocol::close_code;
use crate::api::limits::{self, LimitClass};
use crate::catalog;
use crate::domain::broadcast::KeyCheck;
use crate::domain::principal::Principal;
use crate::domain::session::{admit, followed, Fetched, Frame, SocketState, Step, Subscription, Watch, POLL_FAST_MS, RESYNC_AS_REPLAYED};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{ClientFrame, ServerFrame, Topic};
use crate::runtime::{config, now_ms};
use crate::store::events::EventStore;
use crate::store::{StateCell, StateKey};

/// The session: its principal and expiry.
const SESSION: StateKey<SessionInfo> = StateKey::named("session");
/// What its sockets follow, and when it polls next.
const WATCH: StateKey<Watch> = StateKey::named("watch");

#[durable_object]
pub struct SessionActor {
    state: State,
    env: Env,
    /// (tab, topic) → the subscription being replayed, under the number of
    /// the `subscribe` that started it (a later one supersedes it).
    replays: RefCell<HashMap<(String, String), (u64, Subscription)>>,
    subscribes: Cell<u64>,
    /// Last delivery or subscription (in memory; the alarm persists it).
    active_at: Cell<Millis>,
    /// When the alarm is set for, if this instance set it.
    armed_at: Cell<Option<Millis>>,
    /// The session's record, which never changes once written: every frame,
    /// delivery and poll reads it, so an instance reads it once.
    info: RefCell<Option<SessionInfo>>,
    /// When the API key the session rests on is next checked. See
    /// [`SessionActor::key_holds`].
    key_check: KeyCheck,
}


/// A subscription being carried out, under the number of the `subscribe`
/// that started it (0 for a live delivery).
struct Run {
    sub: Subscription,
    subscribe: u64,
    /// What the topic read for the step being sent (its events, whether or
    /// not the reader sees them; a resync's snapshot): a subscribe pays it.
    read: usize,
}

/// What a topic's answer cost it to read, in replayed events: a resync's
/// snapshot counts as [`RESYNC_AS_REPLAYED`].
fn read_for(events: usize, resync: bool) -> usize {
    if resync { RESYNC_AS_REPLAYED } else { events }
}

/// Charges a subscribe's socket for `read` events that it will not be sent
/// (its replay was superseded or dropped after the topic read them).
fn charge_read(ws: &WebSocket, read: usize) {
    if let Some(mut st) = attachment(ws).filter(|_| read > 0) {
        st.bucket.charge_replay(read, now_ms());
        save(ws, &st);
    }
}

/// Event frames encoded once per delivery, whatever the number of sockets.
#[derive(Default)]
struct Encoded(HashMap<u64, String>);

impl Encoded {
    fn send(&mut self, ws: &WebSocket, topic: Topic, frames: Vec<Frame>, snapshot: &mut Option<Value>) {
        for frame in frames {
            match frame {
                Frame::Event(e) => {
                    let text = self.0.entry(e.seq).or_insert_with(|| ServerFrame::event(topic, &e).to_json());
                    let _ = ws.send_with_str(text.as_str());
                }
                Frame::Subscribed { seq } => send(ws, &ServerFrame::Subscribed { topic, seq }),
                Frame::ResyncRequired => send(ws, &ServerFrame::ResyncRequired { topic, snapshot: snapshot.take().unwrap_or(Value::Null) }),
                Frame::Ready => send(ws, &ServerFrame::Ready { topic }),
            }
        }
    }
}

/// A session that is gone, asked for with a valid token (the Worker checked
/// it, and only a created session has one): it expired or its key was
/// revoked, so the token no longer holds (401), as the contract has it.
fn ended(e: ApiError) -> ApiError {
    match e {
        ApiError::NotFound(_) => ApiError::Unauthorized("the session has ended".into()),
        e => e,
    }
}

fn attachment(ws: &WebSocket) -> Option<SocketState> {
    load_attachment(ws)
}

fn save(ws: &WebSocket, st: &SocketState) {
    save_attachment(ws, st)
}

/// The socket no longer follows `topic` (its subscribe was refused).
fn unfollow(ws: &WebSocket, topic: &str) {
    if let Some(mut st) = attachment(ws) {
        st.unsubscribe(topic);
        save(ws, &st);
    }
}

impl SessionActor {
    fn cells(&self) -> StateCell {
        StateCell::new(self.state.storage().sql())
    }

    fn info(&self) -> ApiResult<SessionInfo> {
        if let Some(info) = self.info.borrow().as_ref() {
            return Ok(info.clone());
        }
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Err(ApiError::not_found("session"));
        }
        let info: SessionInfo = self.cells().load(SESSION)?.ok_or_else(|| ApiError::not_found("session"))?;
        self.info.replace(Some(info.clone()));
        Ok(info)
    }

    async fn start(&self, info: SessionInfo) -> ApiResult<Done> {
        crate::store::init_state(&self.state.storage().sql())?;
        self.cells().save(SESSION, &info)?;
        self.info.replace(Some(info.clone()));
        // The Worker has just checked the key that creates it.
        self.key_check.checked(now_ms());
        // The token dies at `expires_at`; so do the sockets it opened.
        self.state.storage().set_alarm(super::alarm_time(info.expires_at)).await?;
        catalog::register_actor(&self.env, "session", &info.id.to_string(), "active", info.created_at).await?;
        Ok(Done {})
    }

    /// Whether the API key the session rests on (if a key created it) still
    /// holds. Checked at most every [`KEY_RECHECK_MS`], and only when the
    /// session is about to send or answer something, so an idle session
    /// costs nothing. A revoked key ends the session as expiry does, its
    /// sockets closed with 4001 ("key revoked"). A session that is gone has
    /// nothing to check.
    async fn key_holds(&self, now: Millis) -> bool {
        let Ok(info) = self.info() else { return true };
        if !key_revoked(&self.env, &self.key_check, &info.principal, now).await {
            return true;
        }
        if let Err(e) = self.end(&info, "revoked", close_revoked).await {
            worker::console_error!("session end failed: {e}");
        }
        false
    }

    /// Ends the session (`status` says why): `close` each socket, drop its
    /// registry row and erase it.
    async fn end(&self, info: &SessionInfo, status: &str, close: fn(&WebSocket)) -> worker::Result<()> {
        for ws in self.state.get_websockets() {
            close(&ws);
        }
        // Its row goes with it: anonymous callers make up to 30 sessions a
        // minute each, and an ended one has nothing left to inspect.
        if let Err(e) = catalog::forget_actor(&self.env, "session", &info.id.to_string()).await {
            worker::console_error!("session {} ({status}): registry row not removed: {e}", info.id);
        }
        self.info.replace(None);
        self.state.storage().delete_all().await
    }

    async fn accept(&self) -> ApiResult<Response> {
        let info = self.info().map_err(ended)?;
        if info.expires_at <= now_ms() {
            return Err(ApiError::Unauthorized("the session has expired".into()));
        }
        if !self.key_holds(now_ms()).await {
            return Err(revoked());
        }
        let max = config(&self.env).trust.max_sockets_per_session;
        if self.state.get_websockets().len() >= max as usize {
            return Err(ApiError::TooManySockets { max });
        }
        // A read, as a topic's own socket or an SSE stream is: a socket's
        // frame budget starts full, so a free reconnect would be a free budget.
        limits::spend_held(&self.env, &info.principal, info.holder.as_deref(), LimitClass::Read, 1).await?;
        let pair = WebSocketPair::new()?;
        let tab = Uuid::new_v4().to_string();
        self.state.accept_websocket_with_tags(&pair.server, &[tab.as_str()]);
        save(&pair.server, &SocketState::new(tab, now_ms()));
        Ok(Response::from_websocket(pair.client)?)
    }

    fn sockets_on(&self, topic: &str) -> Vec<(WebSocket, SocketState)> {
        self.state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| attachment(&ws).map(|st| (ws, st)))
            .filter(|(_, st)| st.cursor(topic).is_some())
            .collect()
    }

    /// Carries out `step` on one socket and the fetches that follow it, until
    /// the subscription needs nothing more. A replaying subscription is kept
    /// in `replays` across each await; `snapshot` is the one the next
    /// `resync_required` frame carries.
    async fn drive(&self, ws: &WebSocket, topic: Topic, mut run: Run, mut step: Step, mut snapshot: Option<Value>, encoded: &mut Encoded) {
        let key = topic.to_string();
        loop {
            let mut st = match attachment(ws) {
                Some(st) if st.cursor(&key).is_some() => st,
                _ => return,
            };
            encoded.send(ws, topic, std::mem::take(&mut step.frames), &mut snapshot);
            st.record(&key, &run.sub);
            if run.subscribe != 0 && run.read > 0 {
                // A subscribe's replay is paid for by the socket's own frames.
                st.bucket.charge_replay(std::mem::take(&mut run.read), now_ms());
            }
            save(ws, &st);
            let Some(after) = step.fetch else { return };
            let replay_key = (st.tab.clone(), key.clone());
            if run.sub.is_replaying() {
                self.replays.borrow_mut().insert(replay_key.clone(), (run.subscribe, run.sub.clone()));
            }
            let page = self.fetch_events(topic, after).await;
            run.read = page.as_ref().map_or(0, |p| read_for(p.events.len(), p.resync));
            let went_on = if run.sub.is_replaying() {
                // None: superseded by a later `subscribe`, or unsubscribed.
                self.take_replay(&replay_key, run.subscribe).map(|sub| run.sub = sub).is_some()
            } else {
                match attachment(ws) {
                    Some(st) if !st.is_replaying(&key) => {
                        run.sub.sync(st.cursor(&key).unwrap_or(0));
                        true
                    }
                    _ => false,
                }
            };
            if !went_on {
                if run.subscribe != 0 {
                    // The topic read the page all the same.
                    charge_read(ws, run.read);
                }
                return;
            }
            step = run.sub.fetched(match page {
                Ok(p) if p.resync => {
                    snapshot = p.snapshot;
                    Fetched::Resync { last_seq: p.last_seq }
                }
                Ok(p) if !p.events.is_empty() => Fetched::Events(p.events),
                Ok(_) => Fetched::Nothing,
                Err(_) => Fetched::Failed,
            });
        }
    }

    /// The replaying subscription `subscribe` number `n` started, unless a
    /// later one replaced it or the topic was unsubscribed.
    fn take_replay(&self, key: &(String, String), n: u64) -> Option<Subscription> {
        let mut replays = self.replays.borrow_mut();
        match replays.get(key) {
            Some((m, _)) if *m == n => replays.remove(key).map(|(_, sub)| sub),
            _ => None,
        }
    }

    async fn fetch_events(&self, topic: Topic, after: u64) -> ApiResult<EventsPage> {
        let (kind, name) = topic_actor(topic);
        let reader = self.info()?.principal;
        rpc::send_to(&self.env, kind, &name, &Events { after, limit: None, reader: Some(reader) }).await
    }

    /// Sets the alarm for `at` unless this instance already set it sooner;
    /// never past the session's expiry (the same alarm ends the session).
    async fn arm(&self, at: Millis, expires_at: Millis) -> ApiResult<()> {
        let at = at.min(expires_at);
        if self.armed_at.get().is_some_and(|a| a <= at && a > now_ms()) {
            return Ok(());
        }
        self.set_alarm(at).await
    }

    async fn set_alarm(&self, at: Millis) -> ApiResult<()> {
        self.state.storage().set_alarm(super::alarm_time(at)).await?;
        self.armed_at.set(Some(at));
        Ok(())
    }

    /// Something was delivered or subscribed: poll soon (see `Watch`). When
    /// every topic the sockets follow has ended, nothing more can be owed, so
    /// a pending poll is moved to the session's expiry instead: a tab that
    /// just got its run's `run.completed` costs no wake.
    async fn touch(&self, expires_at: Millis) {
        let now = now_ms();
        self.active_at.set(now);
        let _ = if !self.open_topics().is_empty() {
            self.arm(now + POLL_FAST_MS, expires_at).await
        } else if self.armed_at.get() != Some(expires_at) {
            self.set_alarm(expires_at).await
        } else {
            Ok(())
        };
    }

    /// The topics the sockets follow live that have not ended, each with the
    /// lowest cursor on it: what a poll asks for.
    fn open_topics(&self) -> Vec<(Topic, u64)> {
        let states: Vec<SocketState> = self.state.get_websockets().iter().filter_map(attachment).collect();
        followed(&states).into_iter().filter_map(|(t, c)| t.parse().ok().map(|t| (t, c))).collect()
    }

    /// The bounded-late poll: asks each followed topic for what its sockets
    /// lack and delivers it; returns when to poll next (`None`: nothing followed).
    async fn poll(&self, now: Millis) -> ApiResult<Option<Millis>> {
        let followed = self.open_topics();
        if followed.is_empty() {
            return Ok(None);
        }
        let mut found = false;
        for (topic, cursor) in followed {
            match self.fetch_events(topic, cursor).await {
                Ok(page) if page.resync => {
                    found = true;
                    self.resync(topic, cursor, page.last_seq, page.snapshot).await?;
                }
                Ok(page) if !page.events.is_empty() => {
                    found = true;
                    self.push(Deliver { topic, events: page.events }).await?;
                }
                // The item behind it is no longer the session's to read
                // (made private, or deleted): its subscriptions end here.
                Err(ApiError::NotFound(_)) => self.end_unreadable(topic),
                _ => {}
            }
        }
        let mut watch: Watch = self.cells().load(WATCH)?.unwrap_or_else(|| Watch::new(now));
        watch.active_at = watch.active_at.max(self.active_at.get());
        let next = watch.next_poll(now, found);
        self.cells().save(WATCH, &watch)?;
        Ok(Some(next))
    }

    /// Ends every live subscription to `topic` (the topic refused this
    /// session's principal): each socket is told as a refused subscribe is
    /// (`unknown_topic`, naming the topic), so its view reloads what it may
    /// still see, and the poll stops asking a topic that will only refuse.
    /// The topic drops the session at its next push.
    fn end_unreadable(&self, topic: Topic) {
        let key = topic.to_string();
        let e = ApiError::not_found(format!("topic {key}"));
        for (ws, mut st) in self.sockets_on(&key) {
            if st.is_replaying(&key) {
                continue;
            }
            st.unsubscribe(&key);
            save(&ws, &st);
            send(&ws, &crate::http::error_frame(&e, e.frame_code()).about(Some(key.clone())));
        }
    }

    /// A poll found the log trimmed past `cursor`: the sockets live at that
    /// cursor get `resync_required` (with the snapshot) and go on from
    /// `last_seq`. Sockets further on are asked for by the next poll.
    async fn resync(&self, topic: Topic, cursor: u64, last_seq: u64, snapshot: Option<Value>) -> ApiResult<()> {
        let key = topic.to_string();
        let info = self.info()?;
        let mut encoded = Encoded::default();
        for (ws, _) in self.sockets_on(&key) {
            // Re-read: an earlier socket's frames may have awaited.
            if !attachment(&ws).is_some_and(|st| !st.is_replaying(&key) && st.cursor(&key) == Some(cursor)) {
                continue;
            }
            let mut sub = Subscription::live(cursor, &info.principal);
            let step = sub.fetched(Fetched::Resync { last_seq });
            self.drive(&ws, topic, Run { sub, subscribe: 0, read: 0 }, step, snapshot.clone(), &mut encoded).await;
        }
        Ok(())
    }

    async fn push(&self, d: Deliver) -> ApiResult<Delivered> {
        let key = d.topic.to_string();
        let targets = self.sockets_on(&key);
        // Nothing here follows the topic, or the session has ended (no
        // sockets, no record): the topic drops it from its list.
        if targets.is_empty() {
            return Ok(Delivered { subscribed: false });
        }
        let info = self.info()?;
        let mut encoded = Encoded::default();
        for (ws, st) in &targets {
            let replay_key = (st.tab.clone(), key.clone());
            if let Some((_, sub)) = self.replays.borrow_mut().get_mut(&replay_key) {
                // Replaying: the subscription buffers it for its hand-over.
                sub.push(d.events.clone());
                continue;
            }
            // Re-read: an earlier socket's fetch may have awaited.
            let Some(cursor) = attachment(ws).and_then(|st| st.cursor(&key)) else { continue };
            let mut sub = Subscription::live(cursor, &info.principal);
            let step = sub.push(d.events.clone());
            self.drive(ws, d.topic, Run { sub, subscribe: 0, read: 0 }, step, None, &mut encoded).await;
        }
        self.touch(info.expires_at).await;
        Ok(Delivered { subscribed: true })
    }

    async fn subscribe(&self, ws: &WebSocket, topic_text: &str, after: Option<u64>) -> ApiResult<()> {
        let topic: Topic = topic_text.parse().map_err(|e: String| ApiError::invalid("topic", e))?;
        let key = topic.to_string();
        let info = self.info()?;
        let mut st = attachment(ws).unwrap_or_else(|| SocketState::new(Uuid::new_v4().to_string(), now_ms()));
        st.subscribe(&key, after.unwrap_or(0))?;
        save(ws, &st);
        let n = self.subscribes.get() + 1;
        self.subscribes.set(n);
        let replay_key = (st.tab.clone(), key.clone());
        self.replays.borrow_mut().insert(replay_key.clone(), (n, Subscription::begin(after, &info.principal)));
        // Each subscribe is a call to the topic's actor and a write there: a
        // read from the principal's bucket, whichever socket sends it. Paid
        // once recorded, so a frame handled meanwhile (an unsubscribe, a later
        // subscribe) finds it, and the client's last word stands.
        let paid = limits::spend_held(&self.env, &info.principal, info.holder.as_deref(), LimitClass::Read, 1).await;
        let current = self.replays.borrow().get(&replay_key).is_some_and(|(m, _)| *m == n);
        if !current {
            // Unsubscribed or subscribed again meanwhile: that frame decides.
            return Ok(());
        }
        if let Err(refused) = paid {
            // As a topic that refuses it: the socket does not follow the topic.
            self.replays.borrow_mut().remove(&replay_key);
            unfollow(ws, &key);
            return Err(refused);
        }

        let (kind, name) = topic_actor(topic);
        let ask = Subscribe { session: info.id.to_string(), after, principal: info.principal.clone(), holder: info.holder.clone(), until: Some(info.expires_at) };
        let answer = rpc::send_to(&self.env, kind, &name, &ask).await;
        let read = answer.as_ref().map_or(0, |a| read_for(a.events.len(), a.plan == Plan::Resync));
        let Some(mut sub) = self.take_replay(&replay_key, n) else {
            // Superseded by a later `subscribe`: the topic read its answer all the same.
            charge_read(ws, read);
            return Ok(());
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                unfollow(ws, &key);
                return Err(match e {
                    ApiError::NotFound(_) => ApiError::not_found(format!("topic {key}")),
                    other => other,
                });
            }
        };
        let step = sub.answered(after, answer.last_seq, answer.plan == Plan::Resync, answer.events);
        self.drive(ws, topic, Run { sub, subscribe: n, read }, step, answer.snapshot, &mut Encoded::default()).await;
        self.touch(info.expires_at).await;
        Ok(())
    }

    async fn unsubscribe(&self, ws: &WebSocket, topic_text: &str) -> ApiResult<()> {
        let topic: Topic = topic_text.parse().map_err(|e: String| ApiError::invalid("topic", e))?;
        let key = topic.to_string();
        let mut followed = false;
        if let Some(mut st) = attachment(ws) {
            followed = st.unsubscribe(&key);
            save(ws, &st);
            self.replays.borrow_mut().remove(&(st.tab, key.clone()));
        }
        send(ws, &ServerFrame::Unsubscribed { topic });
        // Only a topic this socket followed is told, and only when no other
        // socket of the session still does: an unsubscribe of any topic name
        // would otherwise be a free call to that topic's actor.
        if followed && self.sockets_on(&key).is_empty() {
            let info = self.info()?;
            let (kind, name) = topic_actor(topic);
            let _ = rpc::send_to(&self.env, kind, &name, &Unsubscribe { session: info.id.to_string() }).await;
        }
        Ok(())
    }

    /// Tells the topics that only the closed socket followed that this
    /// session no longer does: they stop pushing here now rather than at
    /// their next push, and the session's place in their caps is free
    /// (`domain::followers`). Best effort: a topic not told drops the session
    /// at its next push or at the session's expiry.
    async fn leave(&self, closed: &WebSocket) {
        let Some(gone) = attachment(closed) else { return };
        let Ok(info) = self.info() else { return };
        let others: Vec<SocketState> = self.state.get_websockets().iter().filter_map(attachment).filter(|st| st.tab != gone.tab).collect();
        let session = info.id.to_string();
        let calls = gone
            .subs
            .iter()
            .filter(|sub| !others.iter().any(|st| st.cursor(&sub.t).is_some()))
            .filter_map(|sub| sub.t.parse::<Topic>().ok())
            .map(|topic| {
                let (kind, name) = topic_actor(topic);
                let ask = Unsubscribe { session: session.clone() };
                async move {
                    let _ = rpc::send_to(&self.env, kind, &name, &ask).await;
                }
            });
        futures::future::join_all(calls).await;
    }

    async fn on_frame(&self, ws: &WebSocket, text: &str) {
        let now = now_ms();
        let Some(mut st) = attachment(ws) else { return };
        let admission = admit(&mut st.bucket, &mut st.strikes, now);
        save(ws, &st);
        let Some(frame) = read_frame(ws, admission, text) else { return };
        let (result, topic) = match frame {
            ClientFrame::Ping => {
                send(ws, &ServerFrame::Pong);
                (Ok(()), None)
            }
            ClientFrame::Subscribe { topic, after } => (self.subscribe(ws, &topic, after).await, Some(topic)),
            ClientFrame::Unsubscribe { topic } => (self.unsubscribe(ws, &topic).await, Some(topic)),
        };
        if let Err(e) = result {
            send(ws, &crate::http::error_frame(&e, e.frame_code()).about(topic));
        }
    }

    fn view(&self) -> ApiResult<Value> {
        let info = self.info()?;
        let sockets: Vec<Value> = self
            .state
            .get_websockets()
            .iter()
            .map(|ws| json!({ "tags": self.state.get_tags(ws), "state": attachment(ws) }))
            .collect();
        Ok(json!({ "session": info, "sockets": sockets }))
    }
}

impl SessionOps for SessionActor {
    async fn init(&self, info: SessionInfo) -> ApiResult<Done> {
        self.start(info).await
    }

    async fn deliver(&self, d: Deliver) -> ApiResult<Delivered> {
        if !self.key_holds(now_ms()).await {
            return Ok(Delivered { subscribed: false });
        }
        self.push(d).await
    }

    /// Who the session acts for: the feed socket opened with its token reads
    /// as it. A revoked key's session is refused (401), as the key is.
    async fn principal(&self, _q: SessionPrincipal) -> ApiResult<Principal> {
        let info = self.info().map_err(ended)?;
        if !self.key_holds(now_ms()).await {
            return Err(revoked());
        }
        Ok(info.principal)
    }
}

impl SessionActor {
    /// The alarm's work: the bounded-late poll while sockets follow topics,
    /// and the session's expiry (then it closes its sockets and forgets it).
    async fn wake(&self) -> ApiResult<&'static str> {
        self.armed_at.set(None);
        let info = match self.info() {
            Ok(info) => info,
            Err(ApiError::NotFound(_)) => return Ok("gone"),
            // A read that failed: the alarm throws, and the runtime retries it.
            Err(e) => return Err(e),
        };
        let now = now_ms();
        if info.expires_at > now && !self.key_holds(now).await {
            return Ok("revoked");
        }
        if info.expires_at > now {
            let next = match self.poll(now).await {
                Ok(next) => next,
                Err(e) => {
                    worker::console_error!("session poll failed: {e}");
                    Some(now + POLL_FAST_MS)
                }
            };
            self.arm(next.unwrap_or(info.expires_at), info.expires_at).await?;
            return Ok("polled");
        }
        self.end(&info, "expired", close_expired).await?;
        Ok("expired")
    }
}

impl Inspectable for SessionActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        let info = self.info()?;
        let log = EventStore::new(self.state.storage().sql(), config(&self.env).retention, Default::default());
        super::inspection(&self.state, "session", &info.id.to_string(), self.view()?, &log).await
    }

    /// Runs the alarm's work now (the poll, the key check, the expiry) and
    /// shows the session after it; an ended session is gone (404).
    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.info()?;
        self.wake().await?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl DurableObject for SessionActor {
    fn new(state: State, env: Env) -> Self {
        answer_pings(&state);
        SessionActor { state, env, replays: RefCell::new(HashMap::new()), subscribes: Cell::new(0), active_at: Cell::new(0), armed_at: Cell::new(None), info: RefCell::new(None), key_check: KeyCheck::default() }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if crate::http::is_websocket_upgrade(&req) {
            return Ok(self.accept().await.unwrap_or_else(|e| crate::http::error(&e)));
        }
        super::rpc::not_a_call()
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        // A frame may ask for a replay: a revoked key's session ends first.
        if !self.key_holds(now_ms()).await {
            return Ok(());
        }
        match message {
            WebSocketIncomingMessage::String(text) => self.on_frame(&ws, &text).await,
            WebSocketIncomingMessage::Binary(_) => send(&ws, &ServerFrame::error("malformed_frame", "binary frames are not supported")),
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        // Subscriptions of a closed socket end with it.
        close_back(&ws, code);
        self.leave(&ws).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        let _ = ws.close(Some(close_code::SERVER_ERROR), Some("socket error"));
        // No close event follows an error: leave as a close would.
        self.leave(&ws).await;
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // A failure is thrown, so the runtime retries the alarm.
        let outcome = self.wake().await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        Response::ok(outcome)
    }
}

crate::rpc_entry!(SessionActor, SessionCall);
