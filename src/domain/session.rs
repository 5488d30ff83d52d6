//! Per-socket session state: subscriptions with their cursors, and the rate
//! bucket. It is small on purpose: it travels as the WebSocket's hibernation
//! attachment (about 2 KB), so it survives eviction with the socket itself.

use serde::{Deserialize, Serialize};

use super::time::Millis;

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
            return Ok(());
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        self.subs.push(Sub { t: topic.to_string(), c: cursor, r: true });
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

    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.t != topic);
        before != self.subs.len()
    }
}

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

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Millis) -> bool {
        let elapsed = (now - self.at).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * Self::RATE_PER_SEC).min(Self::CAPACITY);
        self.at = now;
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
/// [`POLL_ACTIVE_MS`]), then back off to [`POLL_IDLE_MAX_MS`].
pub const POLL_FAST_MS: i64 = 1_500;
pub const POLL_ACTIVE_MS: i64 = 60_000;
pub const POLL_IDLE_MAX_MS: i64 = 30_000;

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
        assert!(serde_json::to_string(&s).unwrap().len() < 2048);
    }

    #[test]
    fn polls_are_fast_while_active_then_back_off() {
        let mut w = Watch::new(0);
        assert_eq!(w.next_poll(1_500, false), 3_000, "fast within the active window");
        assert_eq!(w.next_poll(59_000, false), 60_500);
        let mut t = 60_000;
        let waits: Vec<i64> = (0..6).map(|_| { let at = w.next_poll(t, false); let d = at - t; t = at; d }).collect();
        assert_eq!(waits, vec![3_000, 6_000, 12_000, 24_000, 30_000, 30_000]);
        assert_eq!(w.next_poll(t, true) - t, POLL_FAST_MS, "found events: fast again");
        w.touch(t + 5);
        assert_eq!(w.interval, POLL_FAST_MS);
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
}
