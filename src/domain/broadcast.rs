//! A topic whose actor holds the watching sockets itself (the feed, a run).
//!
//! The actor owns the log and the sockets, so a join replays from its own
//! SQLite without an await, and a commit is sent to every socket in the same
//! turn: no per-socket cursor has to move on a broadcast. What a socket has is
//! `max(joined, through)`: `joined` is the log's end when its replay
//! finished, `through` the last seq the actor sent to every live socket. A
//! commit and its broadcast share one turn, so `through` is the log's end
//! unless a broadcast was dropped (the push fault); then the actor stores it
//! as the lag, and its alarm sends the rest (`actors::topic_sockets`).
//!
//! Each event is encoded once, whatever the number of sockets; whether a
//! socket gets it is decided once per reader class (sockets whose principals
//! see the same items), not once per socket.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use super::content::event_ownership;
use super::principal::{Principal, ReadScope};
use super::session::TokenBucket;
use super::time::{fnv1a, Millis};
use crate::protocol::{EventRecord, ServerFrame, Topic};

/// Most sockets one broadcast actor holds. A broadcast costs one send per
/// socket on the actor's single thread (about 10 µs each in workerd), so
/// 10,000 sockets put about 100 ms of CPU behind each event; beyond that
/// the topic needs sharding, not a bigger cap.
pub const MAX_SOCKETS: usize = 10_000;

/// Most sockets anonymous callers hold on one topic, whatever their client
/// addresses: the per-principal cap counts an IPv6 client by its /64, and
/// one home line has many, so without this share one client could take all
/// [`MAX_SOCKETS`] (its sockets never expire) and shut out every signed-in
/// watcher, the operator too.
pub const MAX_ANONYMOUS_SOCKETS: usize = MAX_SOCKETS / 2;

/// The hibernation tag every anonymous caller's socket carries, counted
/// against [`MAX_ANONYMOUS_SOCKETS`].
const ANONYMOUS_TAG: &str = "anonymous";

/// How long after a commit a lost broadcast is sent at the latest (the
/// actor's catch-up alarm).
pub const CATCH_UP_MS: i64 = 1_000;

/// How late a revocation may take effect (DESIGN.md, "Principals and
/// access": a revoked key is refused within 10 s); an open socket or stream
/// is no exception.
pub const REVOCATION_BOUND_MS: Millis = 10_000;

/// How long a Worker isolate trusts a key it looked up (`api::auth`).
pub const KEY_CACHE_MS: Millis = 5_000;

/// How often an actor that holds sockets opened by API keys (or a stream)
/// checks that the keys are still live, closing a revoked key's sockets
/// (4001). A socket may open on a key the Worker looked up
/// [`KEY_CACHE_MS`] before: the two together stay within
/// [`REVOCATION_BOUND_MS`].
pub const KEY_RECHECK_MS: Millis = REVOCATION_BOUND_MS - KEY_CACHE_MS;

/// The class key of a socket: sockets with equal keys see the same events.
pub fn class_key(scope: &ReadScope) -> String {
    serde_json::to_string(scope).unwrap_or_default()
}

/// Whether a reader of `scope` sees `e` on the feed. An event without
/// ownership (none today on the feed) is shown to all.
pub fn sees(scope: &ReadScope, e: &EventRecord) -> bool {
    event_ownership(&e.data).is_none_or(|o| scope.admits(&o))
}

/// Who opens a topic socket, as the Worker works it out for the topic's
/// actor: whom the socket reads as, whose caps it counts against and when it
/// ends. Topic sockets follow the session socket's rules: at most
/// `MAX_SOCKETS_PER_SESSION` per session, closed when the token that opened
/// them expires; and, since a principal needs no session to open one, at most
/// `MAX_TOPIC_SOCKETS_PER_PRINCIPAL` per principal (per client IP for
/// anonymous callers) on each topic, so one caller cannot take a topic's
/// [`MAX_SOCKETS`] from everyone else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketOpener {
    pub principal: Principal,
    /// The principal's rate-limit bucket key; none for the operator, whom no
    /// cap limits.
    pub holder: Option<String>,
    /// The session whose token opened the socket.
    pub session: Option<Uuid>,
    /// When the token that opened it expires (a session's, or a user's
    /// JWT): the socket is closed then (code 4001).
    pub expires_at: Option<Millis>,
}

/// The caps of [`SocketOpener`], from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SocketCaps {
    pub per_session: u32,
    pub per_principal: u32,
}

impl SocketOpener {
    /// The socket's hibernation tags, by which the actor counts what each
    /// session and principal holds (`getWebSockets(tag)`). Hashed: a tag has
    /// at most 256 characters and a principal's key has no such bound.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = Vec::with_capacity(3);
        if let Some(h) = &self.holder {
            tags.push(format!("p:{:016x}", fnv1a(h.as_bytes())));
        }
        if let Some(s) = self.session {
            tags.push(format!("s:{s}"));
        }
        if super::followers::is_anonymous(&self.holder) {
            tags.push(ANONYMOUS_TAG.to_string());
        }
        tags
    }

    /// The cap one more socket would exceed, given how many sockets each of
    /// this opener's [`Self::tags`] holds already; `None` when it fits.
    pub fn over_cap(&self, caps: SocketCaps, held: impl Fn(&str) -> usize) -> Option<u32> {
        self.tags().iter().find_map(|tag| {
            let max = match tag.as_str() {
                ANONYMOUS_TAG => MAX_ANONYMOUS_SOCKETS as u32,
                t if t.starts_with("s:") => caps.per_session,
                _ => caps.per_principal,
            };
            (held(tag) >= max as usize).then_some(max)
        })
    }
}

/// A broadcast socket's hibernation attachment (one short JSON string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watcher {
    /// [`class_key`] of the socket's principal's read scope.
    pub v: String,
    /// `None` until it subscribes; then the log's end when its replay finished.
    pub c: Option<u64>,
    /// The client's frame budget, as on a session socket.
    pub b: TokenBucket,
    /// Consecutive frames refused by the rate limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strikes: u32,
    /// When the token that opened it expires ([`SocketOpener::expires_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<Millis>,
    /// The API key it rests on ([`Principal::key_id`]): closed if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Watcher {
    pub fn new(scope: &ReadScope, now: Millis) -> Self {
        Watcher { v: class_key(scope), c: None, b: TokenBucket::full(now), strikes: 0, x: None, k: None }
    }

    /// The read scope its class key names. A key that does not parse (an
    /// attachment from another version) reads public items only.
    pub fn scope(&self) -> ReadScope {
        serde_json::from_str::<ReadScope>(&self.v).unwrap_or(ReadScope::PublicOnly)
    }

    /// Whether the token that opened it has expired at `now`: the socket gets
    /// nothing more and is closed.
    pub fn expired(&self, now: Millis) -> bool {
        self.x.is_some_and(|x| x <= now)
    }

    /// Whether `seq` is owed to this socket, given the actor's broadcast head
    /// `through` (everything at or below it already went to live sockets).
    pub fn owes(&self, seq: u64, through: u64) -> bool {
        self.c.is_some_and(|c| seq > c.max(through))
    }

    /// Whether retention dropped events this socket is owed: the log now
    /// starts at `first_kept`, past `through + 1`, and the socket had not
    /// got the seq just before it.
    pub fn missed(&self, through: u64, first_kept: u64) -> bool {
        first_kept > through + 1 && self.owes(first_kept - 1, through)
    }
}

/// When an actor next checks the API keys its sockets (or its session) rest
/// on: at most every [`KEY_RECHECK_MS`], and only when it is about to send.
#[derive(Debug, Default)]
pub struct KeyCheck(std::cell::Cell<Option<Millis>>);

impl KeyCheck {
    /// Whether a check is due at `now` (the first one is, unless
    /// [`Self::checked`] said otherwise). A due check spaces the next one by
    /// the interval whatever it finds, so what comes meanwhile starts none.
    pub fn start(&self, now: Millis) -> bool {
        if self.0.get().is_some_and(|at| at > now) {
            return false;
        }
        self.0.set(Some(now + KEY_RECHECK_MS));
        true
    }

    /// The Worker has just checked the key (a socket's open, a session's
    /// creation): the first check can wait the interval. One already armed
    /// stays, since it is due within the interval anyway.
    pub fn checked(&self, now: Millis) {
        if self.0.get().is_none() {
            self.0.set(Some(now + KEY_RECHECK_MS));
        }
    }
}

/// The keys `watchers` rest on, each once: what a key check asks the catalog.
pub fn keys_held<'w>(watchers: impl IntoIterator<Item = &'w Watcher>) -> Vec<&'w str> {
    let mut keys: Vec<&str> = watchers.into_iter().filter_map(|w| w.k.as_deref()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The earliest expiry among `watchers` still open at `now`: when the
/// actor's alarm must close sockets. Expired ones are left out, since they
/// are being closed and one in the past would re-arm the alarm at once.
pub fn next_expiry<'w>(watchers: impl IntoIterator<Item = &'w Watcher>, now: Millis) -> Option<Millis> {
    watchers.into_iter().filter_map(|w| w.x).filter(|x| *x > now).min()
}

/// One batch of events, encoded once, with the per-class visibility worked
/// out on first use.
pub struct Batch<'a> {
    events: &'a [EventRecord],
    frames: Vec<String>,
    classes: HashMap<String, Vec<bool>>,
}

impl<'a> Batch<'a> {
    /// `events` must be in seq order (as the log returns them).
    pub fn new(topic: Topic, events: &'a [EventRecord]) -> Self {
        let frames = events.iter().map(|e| ServerFrame::event(topic, e).to_json()).collect();
        Batch { events, frames, classes: HashMap::new() }
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.events.last().map(|e| e.seq)
    }

    /// The frames `w` is owed, in order. A class key that does not parse
    /// (an attachment from another version) sees public events only.
    pub fn frames_for(&mut self, w: &Watcher, through: u64) -> Vec<&str> {
        let events = self.events;
        if !self.classes.contains_key(&w.v) {
            let scope = w.scope();
            self.classes.insert(w.v.clone(), events.iter().map(|e| sees(&scope, e)).collect());
        }
        let visible = &self.classes[&w.v];
        events
            .iter()
            .zip(&self.frames)
            .zip(visible.iter())
            .filter(|((e, _), vis)| **vis && w.owes(e.seq, through))
            .map(|((_, f), _)| f.as_str())
            .collect()
    }

    /// Reader classes seen so far (the tests count visibility passes).
    #[cfg(test)]
    pub fn classes(&self) -> usize {
        self.classes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::{Principal, Scope};
    use crate::protocol::EventName;
    use serde_json::json;

    /// Whether the actor must send events after `through` (a dropped broadcast).
    fn behind(through: u64, last: u64) -> Option<u64> {
        (through < last).then_some(through)
    }

    fn ev(seq: u64, tenant: &str, owner: &str, vis: &str) -> EventRecord {
        EventRecord {
            seq,
            event: EventName::ContentIndexed,
            data: json!({ "tenant": tenant, "owner": owner, "visibility": vis, "title": "t" }),
            ts: String::new(),
        }
    }

    fn seqs(frames: &[&str]) -> Vec<u64> {
        frames.iter().map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap()["seq"].as_u64().unwrap()).collect()
    }

    #[test]
    fn class_keys_read_as_the_attachments_already_held() {
        // Sockets accepted before the key was a ReadScope keep working.
        let tenant = ReadScope::Tenant { tenant: "a".into(), subject: "k1".into(), kind: None, read: true, manage: false };
        assert_eq!(serde_json::from_str::<ReadScope>(r#"{"k":"tenant","t":"a","s":"k1","r":true,"m":false}"#).unwrap(), tenant);
        assert_eq!(serde_json::from_str::<ReadScope>(r#"{"k":"public"}"#).unwrap(), ReadScope::PublicOnly);
        for scope in [ReadScope::All, ReadScope::PublicOnly, tenant] {
            assert_eq!(serde_json::from_str::<ReadScope>(&class_key(&scope)).unwrap(), scope);
        }
    }

    #[test]
    fn readers_see_what_their_principal_may_read() {
        let events = vec![ev(1, "a", "k1", "public"), ev(2, "a", "k1", "tenant"), ev(3, "a", "k1", "private"), ev(4, "b", "k9", "tenant")];
        let cases = [
            (Principal::anonymous(), vec![1]),
            (Principal::operator(), vec![1, 2, 3, 4]),
            (Principal::api_key("a", "k2", &[Scope::Read]), vec![1, 2]),
            (Principal::api_key("a", "k1", &[Scope::Read]), vec![1, 2, 3]),
            (Principal::api_key("a", "k2", &[Scope::Manage]), vec![1, 2, 3]),
            (Principal::api_key("b", "k9", &[]), vec![1, 4]),
        ];
        for (p, want) in cases {
            let scope = p.read_scope();
            let got: Vec<u64> = events.iter().filter(|e| sees(&scope, e)).map(|e| e.seq).collect();
            assert_eq!(got, want, "{p:?}");
            // The rule is the principal's own, whichever form it takes.
            let direct: Vec<u64> = events.iter().filter(|e| p.can_read(&event_ownership(&e.data).unwrap())).map(|e| e.seq).collect();
            assert_eq!(got, direct);
        }
    }

    #[test]
    fn frames_are_encoded_once_and_filtered_per_class_and_cursor() {
        let events: Vec<EventRecord> = (1..=6).map(|s| ev(s, "a", "k1", if s % 2 == 0 { "tenant" } else { "public" })).collect();
        let mut batch = Batch::new(Topic::Feed, &events);
        let anon = Watcher { c: Some(0), ..Watcher::new(&Principal::anonymous().read_scope(), 0) };
        let member = Watcher { c: Some(0), ..Watcher::new(&Principal::api_key("a", "k2", &[Scope::Read]).read_scope(), 0) };
        let late_member = Watcher { c: Some(4), ..member.clone() };
        let not_subscribed = Watcher::new(&ReadScope::PublicOnly, 0);
        assert_eq!(seqs(&batch.frames_for(&anon, 0)), vec![1, 3, 5]);
        assert_eq!(seqs(&batch.frames_for(&member, 0)), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(&batch.frames_for(&late_member, 0)), vec![5, 6], "joined after 4: its replay had them");
        assert_eq!(seqs(&batch.frames_for(&member, 2)), vec![3, 4, 5, 6], "the head went through 2 already");
        assert!(batch.frames_for(&not_subscribed, 0).is_empty());
        assert_eq!(batch.classes(), 2, "one visibility pass per reader class, not per socket");
        let same: Vec<*const u8> = batch.frames_for(&anon, 0).iter().map(|f| f.as_ptr()).collect();
        let again: Vec<*const u8> = batch.frames_for(&anon, 0).iter().map(|f| f.as_ptr()).collect();
        assert_eq!(same, again, "frames are shared, not re-encoded");
    }

    fn opener(holder: Option<&str>, session: Option<Uuid>) -> SocketOpener {
        SocketOpener { principal: Principal::anonymous(), holder: holder.map(str::to_string), session, expires_at: None }
    }

    #[test]
    fn an_opener_counts_against_its_session_and_its_principal() {
        let caps = SocketCaps { per_session: 2, per_principal: 3 };
        let s = Uuid::new_v4();
        let both = opener(Some("ip:10.0.0.1"), Some(s));
        let tags = both.tags();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1], format!("s:{s}"));
        assert!(tags.iter().all(|t| t.len() <= 256));
        let held = |counts: [usize; 2]| {
            let tags = tags.clone();
            move |t: &str| if t == tags[0] { counts[0] } else { counts[1] }
        };
        assert_eq!(both.over_cap(caps, held([0, 0])), None);
        assert_eq!(both.over_cap(caps, held([2, 1])), None);
        assert_eq!(both.over_cap(caps, held([2, 2])), Some(2), "the session's cap");
        assert_eq!(both.over_cap(caps, held([3, 0])), Some(3), "the principal's cap, whatever its sessions");
        // Another principal's sockets are not counted against this one.
        assert_ne!(opener(Some("ip:10.0.0.2"), None).tags()[0], tags[0]);
        // A long key still makes a short tag.
        assert!(opener(Some(&"x".repeat(5000)), None).tags()[0].len() <= 256);
        // The operator (no holder) without a session has no cap at all.
        assert_eq!(opener(None, None).over_cap(caps, |_| usize::MAX), None);
        assert_eq!(opener(None, Some(s)).over_cap(caps, |_| 2), Some(2));
    }

    #[test]
    fn anonymous_callers_share_half_of_a_topics_sockets() {
        let caps = SocketCaps { per_session: 8, per_principal: 64 };
        let anonymous = |ip: &str| opener(Some(&crate::domain::followers::anonymous_holder(ip)), None);
        let (a, b) = (anonymous("ip6:2001:db8:0:1"), anonymous("ip6:2001:db8:0:2"));
        // Two /64s of one line: each under its own cap, and counted together.
        assert_ne!(a.tags()[0], b.tags()[0]);
        assert!(a.tags().contains(&ANONYMOUS_TAG.to_string()) && b.tags().contains(&ANONYMOUS_TAG.to_string()));
        let full = |t: &str| if t == ANONYMOUS_TAG { MAX_ANONYMOUS_SOCKETS } else { 1 };
        assert_eq!(b.over_cap(caps, full), Some(MAX_ANONYMOUS_SOCKETS as u32), "the anonymous share is full");
        assert_eq!(b.over_cap(caps, |t| if t == ANONYMOUS_TAG { MAX_ANONYMOUS_SOCKETS - 1 } else { 1 }), None);
        // A signed-in principal is not counted in it.
        let keyed = opener(Some("acme:key-1"), None);
        assert!(!keyed.tags().contains(&ANONYMOUS_TAG.to_string()));
        assert_eq!(keyed.over_cap(caps, full), None);
    }

    #[test]
    fn a_socket_misses_only_what_retention_dropped_before_it_had_it() {
        let at = |c: Option<u64>| Watcher { c, ..Watcher::new(&ReadScope::All, 0) };
        assert!(at(Some(3)).missed(3, 6), "4 and 5 are gone");
        assert!(!at(Some(3)).missed(3, 4), "nothing dropped");
        assert!(!at(Some(5)).missed(3, 6), "it joined after them");
        assert!(!at(None).missed(3, 6), "not subscribed");
    }

    #[test]
    fn key_checks_are_spaced_by_the_interval() {
        let check = KeyCheck::default();
        assert!(check.start(1_000), "a new instance checks at the first chance");
        assert!(!check.start(1_000 + KEY_RECHECK_MS - 1), "not again within the interval");
        assert!(check.start(1_000 + KEY_RECHECK_MS));
        let opened = KeyCheck::default();
        opened.checked(5_000);
        assert!(!opened.start(5_000), "a key the Worker just checked waits");
        opened.checked(9_000);
        assert!(opened.start(5_000 + KEY_RECHECK_MS), "an armed check keeps its time");
    }

    #[test]
    fn a_key_check_asks_for_each_key_once() {
        let key = |k: Option<&str>| Watcher { k: k.map(str::to_string), ..Watcher::new(&ReadScope::PublicOnly, 0) };
        let held = [key(Some("k2")), key(None), key(Some("k1")), key(Some("k2"))];
        assert_eq!(keys_held(&held), ["k1", "k2"]);
        assert!(keys_held(&[key(None)]).is_empty(), "no key socket: no check");
        // Only an API key's principal rests on a key.
        assert_eq!(Principal::api_key("a", "k9", &[Scope::Read]).key_id(), Some("k9"));
        assert_eq!(Principal::anonymous().key_id(), None);
        assert_eq!(Principal::operator().key_id(), None);
        // The key travels in the attachment, and an old attachment has none.
        let stored = serde_json::to_string(&key(Some("k1"))).unwrap();
        assert_eq!(serde_json::from_str::<Watcher>(&stored).unwrap().k.as_deref(), Some("k1"));
        let old = serde_json::to_string(&key(None)).unwrap();
        assert!(!old.contains("\"k\""), "{old}");
    }

    #[test]
    fn expired_sockets_are_due_no_more() {
        let w = |x: Option<Millis>| Watcher { x, ..Watcher::new(&ReadScope::PublicOnly, 0) };
        let ws = [w(None), w(Some(500)), w(Some(900)), w(Some(300))];
        assert!(!ws[0].expired(i64::MAX));
        assert!(ws[1].expired(500) && !ws[1].expired(499));
        assert_eq!(next_expiry(&ws, 0), Some(300));
        assert_eq!(next_expiry(&ws, 300), Some(500), "one expired at now is being closed");
        assert_eq!(next_expiry(&ws, 900), None);
        // An attachment written before expiry existed reads as never expiring.
        let mut old = serde_json::to_value(w(Some(1))).unwrap();
        old.as_object_mut().unwrap().remove("x");
        assert_eq!(serde_json::from_value::<Watcher>(old).unwrap().x, None);
        assert!(!serde_json::to_string(&w(None)).unwrap().contains("\"x\""), "no expiry, no field");
    }

    #[test]
    fn a_garbled_class_sees_public_events_only() {
        let events = vec![ev(1, "a", "k1", "public"), ev(2, "a", "k1", "tenant")];
        let mut batch = Batch::new(Topic::Feed, &events);
        let w = Watcher { v: "{not json".into(), c: Some(0), ..Watcher::new(&ReadScope::PublicOnly, 0) };
        assert_eq!(seqs(&batch.frames_for(&w, 0)), vec![1]);
    }

    #[test]
    fn every_socket_gets_each_seq_once_across_lost_broadcasts_and_joins() {
        // The actor's rule: a broadcast goes to watchers owed it, then moves
        // the head; a lost one leaves the head behind until catch-up. Sockets
        // join (replaying the log to its end) at any point in between.
        let log: Vec<EventRecord> = (1..=40).map(|s| ev(s, "a", "k", "public")).collect();
        for seed in 0..300u64 {
            let mut through = 0u64;
            let mut last = 0u64;
            let mut watchers: Vec<(Watcher, Vec<u64>)> = Vec::new();
            let roll = |i: u64, k: u64| crate::domain::time::mix64(seed.wrapping_mul(0x9E37) ^ (i << 8) ^ k) % 100;
            let send = |through: u64, upto: u64, watchers: &mut Vec<(Watcher, Vec<u64>)>| {
                let page: Vec<EventRecord> = log.iter().filter(|e| e.seq > through && e.seq <= upto).cloned().collect();
                let mut batch = Batch::new(Topic::Feed, &page);
                for (w, got) in watchers.iter_mut() {
                    got.extend(seqs(&batch.frames_for(w, through)));
                }
            };
            for i in 0..120u64 {
                match roll(i, 1) {
                    0..=39 if last < 40 => {
                        last += 1;
                        if roll(i, 2) < 40 {
                            continue; // broadcast lost
                        }
                        send(through, last, &mut watchers);
                        through = last;
                    }
                    40..=59 => {
                        // Join: replay the log after 0, then live from `last`.
                        let got: Vec<u64> = (1..=last).collect();
                        watchers.push((Watcher { c: Some(last), ..Watcher::new(&ReadScope::PublicOnly, 0) }, got));
                    }
                    60..=79 => {
                        if let Some(after) = behind(through, last) {
                            send(after, last, &mut watchers);
                            through = last;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(after) = behind(through, last) {
                send(after, last, &mut watchers);
            }
            for (w, got) in &watchers {
                assert_eq!(got, &(1..=last).collect::<Vec<_>>(), "seed {seed}, joined at {:?}", w.c);
            }
        }
    }
}
