//! Per-socket session state: subscriptions with their cursors, and the rate
//! bucket. It is small on purpose: it travels as the WebSocket's hibernation
//! attachment (about 2 KB), so it survives eviction with the socket itself.
//!
//! Delivery on a session socket is decided here by [`Subscription`], built on
//! the log's [`Cursor`]; the actor only reads attachments, calls the topic,
//! sends the frames it is given and writes attachments back.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::content::readable_by;
use super::event_log::{Cursor, Delivery};
use super::principal::Principal;
use super::time::Millis;
use crate::protocol::EventRecord;

/// Most topics one socket may follow.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// Largest client frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sub {
    /// Topic as printed (`run:<id>`, `content:<id>`, `feed`).
    pub t: String,
    /// Highest seq delivered on this socket.
    pub c: u64,
    /// Replay in progress: live pushes are buffered by the actor meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r: bool,
    /// The topic's last event was delivered ([`EventName::ends_topic`]):
    /// nothing more can come, so the poll no longer asks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketState {
    /// A tab id, so an inspector can tell sockets apart.
    pub tab: String,
    pub subs: Vec<Sub>,
    pub bucket: TokenBucket,
    /// Consecutive frames refused by the rate limit; too many closes the socket.
    pub strikes: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubscribeError {
    #[error("at most {MAX_SUBSCRIPTIONS} subscriptions per socket")]
    TooMany,
}

impl SocketState {
    pub fn new(tab: String, now: Millis) -> Self {
        SocketState { tab, subs: Vec::new(), bucket: TokenBucket::full(now), strikes: 0 }
    }

    pub fn cursor(&self, topic: &str) -> Option<u64> {
        self.subs.iter().find(|s| s.t == topic).map(|s| s.c)
    }

    pub fn is_replaying(&self, topic: &str) -> bool {
        self.subs.iter().any(|s| s.t == topic && s.r)
    }

    /// Adds or restarts a subscription at `cursor`, marked as replaying.
    pub fn subscribe(&mut self, topic: &str, cursor: u64) -> Result<(), SubscribeError> {
        if let Some(s) = self.subs.iter_mut().find(|s| s.t == topic) {
            s.c = cursor;
            s.r = true;
            s.e = false;
            return Ok(());
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        self.subs.push(Sub { t: topic.to_string(), c: cursor, r: true, e: false });
        Ok(())
    }

    pub fn finish_replay(&mut self, topic: &str, cursor: u64) {
        if let Some(s) = self.subs.iter_mut().find(|s| s.t == topic) {
            s.c = s.c.max(cursor);
            s.r = false;
        }
    }

    pub fn advance(&mut self, topic: &str, cursor: u64) {
        if let Some(s) = self.subs.iter_mut().find(|s| s.t == topic) {
            s.c = s.c.max(cursor);
        }
    }

    /// Records where `sub` stands (the cursor only moves forward).
    pub fn record(&mut self, topic: &str, sub: &Subscription) {
        if sub.ended && topic.parse::<crate::protocol::Topic>().is_ok_and(|t| t.ends()) {
            if let Some(s) = self.subs.iter_mut().find(|s| s.t == topic) {
                s.e = true;
            }
        }
        if sub.is_replaying() {
            self.advance(topic, sub.delivered());
        } else {
            self.finish_replay(topic, sub.delivered());
        }
    }

    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.t != topic);
        before != self.subs.len()
    }
}

/// Fetches in a row that move no cursor before a subscription stops asking
/// (the session's poll retries later).
pub const MAX_IDLE_FETCHES: u32 = 3;

/// A frame the actor sends, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Subscribed { seq: u64 },
    /// With the snapshot of the answer or page that caused it.
    ResyncRequired,
    Event(EventRecord),
    Ready,
}

/// What the actor does after an input: send `frames`, then, if `fetch` is
/// set, ask the topic for its events after that seq and hand the answer to
/// [`Subscription::fetched`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub frames: Vec<Frame>,
    pub fetch: Option<u64>,
}

/// The topic's answer to a fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Events(Vec<EventRecord>),
    /// The cursor is older than the retained log: start over at `last_seq`.
    Resync { last_seq: u64 },
    /// Nothing after the cursor.
    Nothing,
    /// The call failed: a replay asks again (up to [`MAX_IDLE_FETCHES`] in a
    /// row, then hands over and leaves the rest to the poll); a live gap is
    /// left to the poll.
    Failed,
}

/// One socket's subscription to one topic: exactly-once, in-order delivery.
///
/// Live, it is rebuilt from the attachment's cursor for each input. During
/// the replay that follows `subscribe` it lives in the actor's memory, and
/// pushes that arrive meanwhile are buffered in its [`Cursor`] and merged at
/// the hand-over, before `ready`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    cursor: Cursor,
    /// During replay: the log's end the topic reported (once it answered).
    replay_to: Option<u64>,
    /// `ready` goes out once the hand-over's gaps are filled.
    ready_owed: bool,
    idle_fetches: u32,
    /// Events of items this principal may not read (the feed's of other
    /// tenants; a content topic's once its item went private) are withheld;
    /// their seqs still move the cursor.
    reader: Principal,
    /// The topic's last event has gone out (see [`Sub::e`]).
    ended: bool,
}

impl Subscription {
    /// A `subscribe` with `after` was sent to the topic; its answer is awaited.
    pub fn begin(after: Option<u64>, principal: &Principal) -> Self {
        Self::new(Cursor::replaying(after.unwrap_or(0)), principal)
    }

    /// A live subscription at the attachment's cursor.
    pub fn live(cursor: u64, principal: &Principal) -> Self {
        Self::new(Cursor::live(cursor), principal)
    }

    fn new(cursor: Cursor, principal: &Principal) -> Self {
        Subscription { cursor, replay_to: None, ready_owed: false, idle_fetches: 0, reader: principal.clone(), ended: false }
    }

    pub fn delivered(&self) -> u64 {
        self.cursor.delivered
    }

    pub fn is_replaying(&self) -> bool {
        self.cursor.is_replaying()
    }

    /// After an await: another delivery may have moved the socket's cursor.
    pub fn sync(&mut self, attached: u64) {
        self.cursor.skip_to(attached);
    }

    /// A live push (or a poll's page). Buffered while replaying.
    pub fn push(&mut self, events: Vec<EventRecord>) -> Step {
        self.idle_fetches = 0;
        let d = self.cursor.offer(events);
        self.deliver(d, 0)
    }

    /// The topic's answer to `subscribe`: its log's end, whether `after` was
    /// older than retention, and the first page of the replay.
    pub fn answered(&mut self, after: Option<u64>, last_seq: u64, resync: bool, events: Vec<EventRecord>) -> Step {
        let mut frames = vec![Frame::Subscribed { seq: last_seq }];
        if resync {
            frames.push(Frame::ResyncRequired);
        }
        if resync || after.is_none() {
            self.cursor.skip_to(last_seq);
        }
        self.replay_to = Some(last_seq);
        let mut step = self.replay(events);
        frames.append(&mut step.frames);
        step.frames = frames;
        step
    }

    /// The topic's answer to the last step's `fetch`.
    pub fn fetched(&mut self, page: Fetched) -> Step {
        match page {
            Fetched::Events(events) if self.is_replaying() => self.replay(events),
            Fetched::Events(events) => {
                let before = self.delivered();
                let d = self.cursor.accept(events);
                self.deliver(d, before)
            }
            Fetched::Resync { last_seq } => {
                self.cursor.skip_to(last_seq);
                let mut step = if self.is_replaying() { self.hand_over() } else { self.deliver(Delivery::default(), 0) };
                step.frames.insert(0, Frame::ResyncRequired);
                step
            }
            Fetched::Failed if self.is_replaying() => self.replay(Vec::new()),
            Fetched::Nothing if self.is_replaying() => self.hand_over(),
            Fetched::Nothing | Fetched::Failed => self.deliver(Delivery::default(), 0),
        }
    }

    /// A replay page: sent as it comes; the next page is fetched until the
    /// log's end the topic reported, then the hand-over.
    fn replay(&mut self, events: Vec<EventRecord>) -> Step {
        let before = self.delivered();
        let d = self.cursor.accept(events);
        self.note_progress(before);
        let behind = self.replay_to.is_some_and(|to| self.delivered() < to);
        if behind && self.idle_fetches < MAX_IDLE_FETCHES {
            self.idle_fetches += 1;
            return Step { frames: self.frames(d.send), fetch: Some(self.delivered()) };
        }
        let mut frames = self.frames(d.send);
        let mut step = self.hand_over();
        frames.append(&mut step.frames);
        step.frames = frames;
        step
    }

    /// Ends the replay: merges the pushes buffered meanwhile; `ready` follows
    /// once their gaps are filled.
    fn hand_over(&mut self) -> Step {
        self.ready_owed = true;
        self.idle_fetches = 0;
        let before = self.delivered();
        let d = self.cursor.finish_replay(Vec::new());
        self.deliver(d, before)
    }

    fn deliver(&mut self, d: Delivery, before: u64) -> Step {
        self.note_progress(before);
        let fetch = match d.gap {
            Some(after) if self.idle_fetches < MAX_IDLE_FETCHES => {
                self.idle_fetches += 1;
                Some(after)
            }
            _ => None,
        };
        let mut frames = self.frames(d.send);
        if fetch.is_none() && std::mem::take(&mut self.ready_owed) {
            frames.push(Frame::Ready);
        }
        Step { frames, fetch }
    }

    fn note_progress(&mut self, before: u64) {
        if self.delivered() > before {
            self.idle_fetches = 0;
        }
    }

    /// The frames of events the cursor released, in order.
    fn frames(&mut self, events: Vec<EventRecord>) -> Vec<Frame> {
        self.ended |= events.iter().any(|e| e.event.ends_topic());
        events.into_iter().filter(|e| self.visible(e)).map(Frame::Event).collect()
    }

    fn visible(&self, e: &EventRecord) -> bool {
        readable_by(&self.reader, e)
    }
}

/// Each topic the sockets follow live and that has not ended, once, with the
/// lowest of their cursors (what the session's poll asks the topic for).
pub fn followed<'a>(sockets: impl IntoIterator<Item = &'a SocketState>) -> Vec<(String, u64)> {
    let mut lowest: HashMap<&str, u64> = HashMap::new();
    for sub in sockets.into_iter().flat_map(|st| st.subs.iter()).filter(|s| !s.r && !s.e) {
        let c = lowest.entry(sub.t.as_str()).or_insert(sub.c);
        *c = (*c).min(sub.c);
    }
    lowest.into_iter().map(|(t, c)| (t.to_string(), c)).collect()
}

/// Events a `subscribe`'s replay sends per token of the socket's frame
/// bucket ([`TokenBucket::charge`]). A whole retained log of 1,000 costs 20,
/// two seconds of frames: a frame can no longer make a topic's actor send
/// its log ten times a second (50 times less), and a tab that resubscribes
/// its 16 topics after a drop, a hundred events behind on each, is in debt
/// for a fraction of a second.
pub const REPLAYED_PER_TOKEN: f64 = 50.0;

/// What a `resync_required` costs a subscribe, in replayed events: its
/// snapshot is a listing the topic's actor builds, about a page's work.
/// Charged by what the actor reads, not by what the socket is shown, since
/// a reader who sees few of a topic's events would otherwise pay nothing.
pub const RESYNC_AS_REPLAYED: usize = 500;

/// A token bucket: `CAPACITY` frames at once, refilled at `RATE_PER_SEC`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenBucket {
    pub tokens: f64,
    pub at: Millis,
}

impl TokenBucket {
    pub const CAPACITY: f64 = 30.0;
    pub const RATE_PER_SEC: f64 = 10.0;

    pub fn full(now: Millis) -> Self {
        TokenBucket { tokens: Self::CAPACITY, at: now }
    }

    /// Spends `tokens` for work a frame asked for (a replay), without
    /// refusing it: the bucket may go below zero, and the socket's next
    /// frames are refused until it has refilled. One frame cannot make a
    /// topic's actor send its whole log over and over.
    pub fn charge(&mut self, tokens: f64, now: Millis) {
        self.refill(now);
        // At most a full bucket's worth of debt: a client whose retries are
        // refused meanwhile is slowed, not struck out and closed.
        self.tokens = (self.tokens - tokens).max(-Self::CAPACITY);
    }

    /// [`Self::charge`] for a replay of `events` events
    /// ([`REPLAYED_PER_TOKEN`]).
    pub fn charge_replay(&mut self, events: usize, now: Millis) {
        self.charge(events as f64 / REPLAYED_PER_TOKEN, now);
    }

    /// Refills for the time since the last look.
    fn refill(&mut self, now: Millis) {
        let elapsed = (now - self.at).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * Self::RATE_PER_SEC).min(Self::CAPACITY);
        self.at = now;
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Millis) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Late is bounded: while a session has sockets with subscriptions, its alarm
/// asks each topic for events after the socket's cursor, so an event whose
/// push was lost (actor evicted between commit and push, `waitUntil` cut off,
/// a `deliver` that timed out) arrives at the next poll. Polls are fast while
/// the session is active (a delivery or subscription in the last
/// [`POLL_ACTIVE_MS`]), then back off to [`POLL_IDLE_MAX_MS`]: a few seconds,
/// because a lost push of a quiet topic's last event has no later push to
/// reveal the gap. Only topics still open are asked (see [`followed`]), so a
/// tab left on finished runs costs no poll.
pub const POLL_FAST_MS: i64 = 1_500;
pub const POLL_ACTIVE_MS: i64 = 60_000;
pub const POLL_IDLE_MAX_MS: i64 = 5_000;

/// The session's poll rhythm (kept in the session's storage).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// Last delivery, subscription, or poll that found events.
    pub active_at: Millis,
    /// The wait before the next poll.
    pub interval: i64,
}

impl Watch {
    pub fn new(now: Millis) -> Self {
        Watch { active_at: now, interval: POLL_FAST_MS }
    }

    pub fn touch(&mut self, now: Millis) {
        self.active_at = now;
        self.interval = POLL_FAST_MS;
    }

    /// After a poll at `now`: when to poll next.
    pub fn next_poll(&mut self, now: Millis, found: bool) -> Millis {
        if found {
            self.touch(now);
        } else if now - self.active_at >= POLL_ACTIVE_MS {
            self.interval = (self.interval * 2).min(POLL_IDLE_MAX_MS);
        }
        now + self.interval
    }
}

/// Frames refused in a row before the socket is closed as abusive.
pub const MAX_STRIKES: u32 = 20;

/// What to do with a client frame, by the socket's rate bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Take,
    /// Answer `rate_limited` and drop it.
    Refuse,
    /// Too many refused in a row: close the socket (1008).
    Close,
}

/// Spends a token for one frame; counts consecutive refusals in `strikes`.
pub fn admit(bucket: &mut TokenBucket, strikes: &mut u32, now: Millis) -> Admission {
    if bucket.take(now) {
        *strikes = 0;
        return Admission::Take;
    }
    *strikes += 1;
    if *strikes > MAX_STRIKES {
        Admission::Close
    } else {
        Admission::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Topic;

    #[test]
    fn subscriptions_are_capped_and_cursors_only_move_forward() {
        let mut s = SocketState::new("t".into(), 0);
        for i in 0..MAX_SUBSCRIPTIONS {
            s.subscribe(&format!("topic{i}"), 0).unwrap();
        }
        assert_eq!(s.subscribe("one-more", 0), Err(SubscribeError::TooMany));
        s.subscribe("topic0", 5).unwrap();
        assert!(s.is_replaying("topic0"));
        s.finish_replay("topic0", 9);
        assert_eq!(s.cursor("topic0"), Some(9));
        s.advance("topic0", 3);
        assert_eq!(s.cursor("topic0"), Some(9));
        assert!(s.unsubscribe("topic0"));
        assert!(!s.unsubscribe("topic0"));
    }

    #[test]
    fn attachment_fits_the_budget() {
        let mut s = SocketState::new(uuid::Uuid::new_v4().to_string(), 0);
        for _ in 0..MAX_SUBSCRIPTIONS {
            s.subscribe(&format!("content:{}", uuid::Uuid::new_v4()), u64::MAX / 2).unwrap();
        }
        // Every flag set: the longest each subscription gets.
        s.subs.iter_mut().for_each(|sub| (sub.r, sub.e) = (true, true));
        assert!(serde_json::to_string(&s).unwrap().len() < 2048);
    }

    #[test]
    fn polls_are_fast_while_active_then_back_off() {
        let mut w = Watch::new(0);
        assert_eq!(w.next_poll(1_500, false), 3_000, "fast within the active window");
        assert_eq!(w.next_poll(59_000, false), 60_500);
        let mut t = 60_000;
        let waits: Vec<i64> = (0..6).map(|_| { let at = w.next_poll(t, false); let d = at - t; t = at; d }).collect();
        assert_eq!(waits, vec![3_000, 5_000, 5_000, 5_000, 5_000, 5_000]);
        assert_eq!(w.next_poll(t, true) - t, POLL_FAST_MS, "found events: fast again");
        w.touch(t + 5);
        assert_eq!(w.interval, POLL_FAST_MS);
    }

    #[test]
    fn a_replay_is_charged_past_zero_and_refuses_frames_until_refilled() {
        let mut b = TokenBucket::full(0);
        assert!(b.take(0));
        // A full log of 1,000: 29 - 20 = 9 left.
        b.charge_replay(1_000, 0);
        assert!(b.take(0));
        // Another: 8 - 20 = -12, refused until it has refilled (1.3 s at 10 a second).
        b.charge_replay(1_000, 0);
        assert!(!b.take(0), "in debt: refused");
        assert!(!b.take(1_100));
        assert!(b.take(1_300));
        // Never more than a full bucket in debt.
        b.charge(1e9, 2_000);
        assert!(!b.take(4_900));
        assert!(b.take(6_100));
    }

    #[test]
    fn refused_frames_in_a_row_close_the_socket() {
        let (mut b, mut strikes) = (TokenBucket::full(0), 0);
        let verdicts: Vec<Admission> = (0..30 + MAX_STRIKES + 1).map(|_| admit(&mut b, &mut strikes, 0)).collect();
        assert!(verdicts[..30].iter().all(|v| *v == Admission::Take));
        assert!(verdicts[30..30 + MAX_STRIKES as usize].iter().all(|v| *v == Admission::Refuse));
        assert_eq!(verdicts.last(), Some(&Admission::Close));
        assert_eq!(admit(&mut b, &mut strikes, 1_000), Admission::Take);
        assert_eq!(strikes, 0);
    }

    #[test]
    fn bucket_limits_bursts_and_refills() {
        let mut b = TokenBucket::full(0);
        let burst = (0..100).filter(|_| b.take(0)).count();
        assert_eq!(burst, 30);
        assert!(!b.take(50));
        assert!(b.take(150), "refilled after 100 ms at 10/s");
    }

    fn event(seq: u64, visibility: &str) -> EventRecord {
        let data = serde_json::json!({ "tenant": "a", "owner": "k", "visibility": visibility });
        EventRecord { seq, event: crate::protocol::EventName::ContentIndexed, data, ts: String::new() }
    }

    fn shown(step: &Step) -> Vec<u64> {
        step.frames.iter().filter_map(|f| if let Frame::Event(e) = f { Some(e.seq) } else { None }).collect()
    }

    #[test]
    fn a_deletion_on_the_feed_does_not_end_the_feed() {
        let mut deleted = event(1, "public");
        deleted.event = crate::protocol::EventName::ContentDeleted;
        let topic = format!("content:{}", uuid::Uuid::nil());
        let mut st = SocketState::new("tab".into(), 0);
        for t in ["feed", topic.as_str()] {
            st.subscribe(t, 0).unwrap();
            st.finish_replay(t, 0);
            let mut live = Subscription::live(0, &Principal::operator());
            live.push(vec![deleted.clone()]);
            st.record(t, &live);
        }
        // The feed is still polled; the deleted item's own topic is not.
        assert_eq!(followed([&st]), vec![("feed".to_string(), 1)]);
    }

    #[test]
    fn a_resync_restarts_at_the_logs_end_then_ready() {
        let mut sub = Subscription::begin(Some(2), &Principal::operator());
        assert_eq!(sub.push(vec![event(9, "public"), event(12, "public")]), Step::default(), "buffered during replay");
        let step = sub.answered(Some(2), 10, true, Vec::new());
        assert_eq!(step.frames[..2], [Frame::Subscribed { seq: 10 }, Frame::ResyncRequired]);
        assert_eq!(step.fetch, Some(10), "12 was pushed: 11 is missing between the snapshot and it");
        let step = sub.fetched(Fetched::Events(vec![event(11, "public"), event(12, "public")]));
        assert_eq!((shown(&step), step.frames.last(), step.fetch), (vec![11, 12], Some(&Frame::Ready), None));
        // Live: a fetch the topic answers with a resync jumps ahead.
        let step = sub.push(vec![event(14, "public")]);
        assert_eq!(step.fetch, Some(12));
        assert_eq!(sub.fetched(Fetched::Resync { last_seq: 20 }).frames, vec![Frame::ResyncRequired]);
        assert_eq!(sub.delivered(), 20);
    }

    #[test]
    fn events_of_unreadable_items_are_withheld_but_move_the_cursor() {
        let mut sub = Subscription::live(0, &Principal::anonymous());
        let step = sub.push((1..=3).map(|s| event(s, if s == 2 { "private" } else { "public" })).collect());
        assert_eq!((shown(&step), sub.delivered()), (vec![1, 3], 3));
        // A content topic's too: its item went private after the subscribe.
        let mut other = Subscription::live(0, &Principal::anonymous());
        assert_eq!(shown(&other.push(vec![event(1, "public"), event(2, "private")])), vec![1]);
        assert_eq!(other.delivered(), 2);
    }

    #[test]
    fn a_topic_whose_last_event_went_out_is_no_longer_polled() {
        use crate::protocol::EventName;
        let topic = Topic::Run(uuid::Uuid::nil());
        let key = topic.to_string();
        let mut st = SocketState::new("tab".into(), 0);
        st.subscribe(&key, 0).unwrap();
        st.subscribe("feed", 0).unwrap();
        let mut sub = Subscription::begin(Some(0), &Principal::operator());
        let step = sub.answered(Some(0), 1, false, vec![event(1, "public")]);
        st.record(&key, &sub);
        st.finish_replay("feed", 0);
        assert_eq!(shown(&step), vec![1]);
        assert_eq!(followed([&st]).len(), 2, "a running run is still followed");
        let mut done = event(2, "public");
        done.event = EventName::RunCompleted;
        let mut live = Subscription::live(1, &Principal::operator());
        assert_eq!(shown(&live.push(vec![done])), vec![2]);
        st.record(&key, &live);
        assert_eq!(followed([&st]), vec![("feed".to_string(), 0)], "run.completed ends run:<id>");
        assert_eq!(st.cursor(&key), Some(2));
        // Subscribing again replays from `after`: followed until it ends again.
        st.subscribe(&key, 0).unwrap();
        st.finish_replay(&key, 0);
        assert_eq!(followed([&st]).len(), 2);
    }

    #[test]
    fn a_replay_retries_failed_calls_then_hands_over() {
        let mut sub = Subscription::begin(Some(0), &Principal::operator());
        let mut step = sub.answered(Some(0), 5, false, vec![event(1, "public")]);
        for _ in 0..MAX_IDLE_FETCHES {
            assert_eq!(step.fetch, Some(1));
            step = sub.fetched(Fetched::Failed);
        }
        assert_eq!((step.fetch, step.frames), (None, vec![Frame::Ready]), "the poll fills in the rest");
        assert!(!sub.is_replaying());
    }

    /// The session actor's IO around [`Subscription`], step for step (see
    /// `actors::session`: `subscribe`, `deliver`, `drive`, `poll`), against
    /// one topic whose calls and pushes resolve in any order.
    mod exactly_once {
        use super::super::*;
        use crate::protocol::EventName;
        use proptest::prelude::*;
        use serde_json::json;

        const KEY: &str = "feed";
        /// The topic answers at most this many events per call.
        const PAGE: usize = 4;

        #[derive(Debug, Clone)]
        enum Op {
            /// The topic commits `n` events and pushes them (unless lost).
            Commit { n: u8, lost: bool },
            /// A queued push arrives (late, out of order; `again`: it stays queued, to arrive twice).
            Arrive { pick: u8, again: bool },
            /// One awaited call (subscribe answer or fetch) returns (`fail`: the call failed).
            Answer { pick: u8, fail: bool },
            /// The tab reconnects with `after` = what it has.
            Reconnect,
            /// The tab subscribes again on the same socket.
            Resubscribe,
            Poll,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (1u8..4, prop::bool::weighted(0.3)).prop_map(|(n, lost)| Op::Commit { n, lost }),
                3 => (any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(pick, again)| Op::Arrive { pick, again }),
                4 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(pick, fail)| Op::Answer { pick, fail }),
                1 => Just(Op::Reconnect),
                1 => Just(Op::Resubscribe),
                1 => Just(Op::Poll),
            ]
        }

        enum Wait {
            Subscribe { after: Option<u64> },
            Fetch { after: u64 },
        }

        /// An await in flight: a replaying subscription waits in `replays`
        /// under `n`; a live one travels with the task.
        struct Task {
            sock: usize,
            n: u64,
            live: Option<Subscription>,
            wait: Wait,
            /// Calls of this chain that failed in a row.
            failed: u32,
        }

        struct Sock {
            st: SocketState,
            open: bool,
        }

        /// What the tab has seen on its current socket.
        #[derive(Default)]
        struct Tab {
            position: u64,
            subscribed: u64,
            /// The first subscription is live only (`after` = none).
            live_only: bool,
            ready: bool,
        }

        struct World {
            log: Vec<EventRecord>,
            pushes: Vec<Vec<EventRecord>>,
            sockets: Vec<Sock>,
            replays: HashMap<(String, String), (u64, Subscription)>,
            tasks: Vec<Task>,
            subscribes: u64,
            tab: Tab,
        }

        fn ev(seq: u64) -> EventRecord {
            EventRecord { seq, event: EventName::ContentIndexed, data: json!({}), ts: String::new() }
        }

        impl World {
            fn page(&self, after: u64) -> Vec<EventRecord> {
                self.log.iter().filter(|e| e.seq > after).take(PAGE).cloned().collect()
            }

            fn current(&self) -> usize {
                self.sockets.len() - 1
            }

            fn receive(&mut self, sock: usize, frames: Vec<Frame>) {
                if !self.sockets[sock].open {
                    return;
                }
                for f in frames {
                    let t = &mut self.tab;
                    match f {
                        Frame::Subscribed { seq } => {
                            t.subscribed = seq;
                            t.ready = false;
                            if std::mem::take(&mut t.live_only) {
                                t.position = seq;
                            }
                        }
                        Frame::Event(e) => {
                            assert_eq!(e.seq, t.position + 1, "each seq once, in order");
                            t.position = e.seq;
                        }
                        Frame::Ready => {
                            assert!(t.position >= t.subscribed, "ready after the replay through {}", t.subscribed);
                            t.ready = true;
                        }
                        Frame::ResyncRequired => panic!("nothing is pruned here"),
                    }
                }
            }

            /// `drive`'s synchronous part: send, record, and await a fetch.
            fn run(&mut self, sock: usize, n: u64, sub: Subscription, step: Step, failed: u32) {
                if self.sockets[sock].st.cursor(KEY).is_none() {
                    return;
                }
                self.receive(sock, step.frames);
                self.sockets[sock].st.record(KEY, &sub);
                let Some(after) = step.fetch else { return };
                let live = if sub.is_replaying() {
                    self.replays.insert((self.sockets[sock].st.tab.clone(), KEY.into()), (n, sub));
                    None
                } else {
                    Some(sub)
                };
                self.tasks.push(Task { sock, n, live, wait: Wait::Fetch { after }, failed });
            }

            fn take_replay(&mut self, sock: usize, n: u64) -> Option<Subscription> {
                let key = (self.sockets[sock].st.tab.clone(), KEY.to_string());
                match self.replays.get(&key) {
                    Some((m, _)) if *m == n => self.replays.remove(&key).map(|(_, sub)| sub),
                    _ => None,
                }
            }

            fn answer(&mut self, task: Task, fail: bool) {
                let sock = task.sock;
                match task.wait {
                    Wait::Subscribe { after } => {
                        let Some(mut sub) = self.take_replay(sock, task.n) else { return };
                        if fail {
                            self.sockets[sock].st.unsubscribe(KEY);
                            return;
                        }
                        let step = sub.answered(after, self.log.len() as u64, false, self.page(after.unwrap_or(0)));
                        self.run(sock, task.n, sub, step, 0);
                    }
                    Wait::Fetch { after } => {
                        let page = self.page(after);
                        let mut sub = match task.live {
                            None => match self.take_replay(sock, task.n) {
                                Some(sub) => sub,
                                None => return,
                            },
                            Some(mut sub) => {
                                let st = &self.sockets[sock].st;
                                if st.is_replaying(KEY) || st.cursor(KEY).is_none() {
                                    return;
                                }
                                sub.sync(st.cursor(KEY).unwrap_or(0));
                                sub
                            }
                        };
                        // Calls fail fewer times in a row than a replay retries.
                        let fail = fail && task.failed + 1 < MAX_IDLE_FETCHES;
                        let fetched = match () {
                            _ if fail => Fetched::Failed,
                            _ if page.is_empty() => Fetched::Nothing,
                            _ => Fetched::Events(page),
                        };
                        let step = sub.fetched(fetched);
                        self.run(sock, task.n, sub, step, if fail { task.failed + 1 } else { 0 });
                    }
                }
            }

            fn deliver(&mut self, events: Vec<EventRecord>) {
                for sock in 0..self.sockets.len() {
                    let (open, tab, cursor) = {
                        let s = &self.sockets[sock];
                        (s.open, s.st.tab.clone(), s.st.cursor(KEY))
                    };
                    let Some(cursor) = cursor.filter(|_| open) else { continue };
                    if let Some((_, sub)) = self.replays.get_mut(&(tab, KEY.into())) {
                        assert_eq!(sub.push(events.clone()), Step::default(), "buffered while replaying");
                        continue;
                    }
                    let mut sub = Subscription::live(cursor, &Principal::anonymous());
                    let step = sub.push(events.clone());
                    self.run(sock, 0, sub, step, 0);
                }
            }

            fn subscribe(&mut self, after: Option<u64>) {
                let sock = self.current();
                self.tab.live_only = after.is_none();
                self.sockets[sock].st.subscribe(KEY, after.unwrap_or(0)).unwrap();
                self.subscribes += 1;
                let n = self.subscribes;
                let sub = Subscription::begin(after, &Principal::anonymous());
                self.replays.insert((self.sockets[sock].st.tab.clone(), KEY.into()), (n, sub));
                self.tasks.push(Task { sock, n, live: None, wait: Wait::Subscribe { after }, failed: 0 });
            }

            fn connect(&mut self, after: Option<u64>) {
                if let Some(s) = self.sockets.last_mut() {
                    s.open = false;
                }
                let tab = format!("tab{}", self.sockets.len());
                self.sockets.push(Sock { st: SocketState::new(tab, 0), open: true });
                self.subscribe(after);
            }

            fn poll(&mut self) {
                let open: Vec<SocketState> = self.sockets.iter().filter(|s| s.open).map(|s| s.st.clone()).collect();
                for (_, cursor) in followed(&open) {
                    let page = self.page(cursor);
                    if !page.is_empty() {
                        self.deliver(page);
                    }
                }
            }

            fn apply(&mut self, op: Op) {
                match op {
                    Op::Commit { n, lost } => {
                        let first = self.log.len() as u64 + 1;
                        let batch: Vec<EventRecord> = (first..first + n as u64).map(ev).collect();
                        self.log.extend(batch.iter().cloned());
                        if !lost {
                            self.pushes.push(batch);
                        }
                    }
                    Op::Arrive { pick, again } if !self.pushes.is_empty() => {
                        let i = pick as usize % self.pushes.len();
                        let push = if again { self.pushes[i].clone() } else { self.pushes.remove(i) };
                        self.deliver(push);
                    }
                    Op::Answer { pick, fail } if !self.tasks.is_empty() => {
                        let task = self.tasks.remove(pick as usize % self.tasks.len());
                        self.answer(task, fail);
                    }
                    Op::Reconnect => self.connect(Some(self.tab.position)),
                    Op::Resubscribe => self.subscribe(Some(self.tab.position)),
                    Op::Poll => self.poll(),
                    _ => {}
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Whatever the interleaving of pushes (late, duplicated, out of
            /// order, lost), calls, gap fetches, replays and reconnects with
            /// `after`, the tab sees each seq once and in order (checked
            /// frame by frame), `ready` only after its replay, and, once
            /// the calls settle, everything the topic committed.
            #[test]
            fn each_seq_is_delivered_once_in_order(live_only: bool, ops in prop::collection::vec(op(), 1..120)) {
                let mut w = World { log: Vec::new(), pushes: Vec::new(), sockets: Vec::new(), replays: HashMap::new(), tasks: Vec::new(), subscribes: 0, tab: Tab::default() };
                w.connect(if live_only { None } else { Some(0) });
                for op in ops {
                    w.apply(op);
                }
                for _ in 0..64 {
                    // A refused `subscribe` answered the tab with an error: it asks again.
                    if w.sockets[w.current()].st.cursor(KEY).is_none() {
                        w.subscribe(Some(w.tab.position));
                    }
                    while !w.tasks.is_empty() {
                        let task = w.tasks.remove(0);
                        w.answer(task, false);
                    }
                    if w.tab.position == w.log.len() as u64 {
                        break;
                    }
                    w.poll();
                }
                prop_assert_eq!(w.tab.position, w.log.len() as u64, "the poll catches up");
                prop_assert!(w.tab.ready, "the last subscription is ready");
            }
        }
    }

}
