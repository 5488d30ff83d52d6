//! Sequence, retention and replay rules shared by every actor's event log.
//!
//! Each actor owns one topic and numbers its events densely from 1. The
//! storage lives in the actor (see `store::EventStore`); what is decided here is
//! which events a resuming subscriber gets, when it must resync instead, what
//! retention may delete, and how a subscriber merges replay with live pushes
//! without gaps or duplicates.

use crate::config::Retention;
use crate::protocol::EventRecord;

use super::time::Millis;

/// The retained part of a log: events `first..=last` are stored (`first` is
/// `last + 1` when nothing is retained).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWindow {
    pub first: u64,
    pub last: u64,
}

impl LogWindow {
    pub fn empty() -> Self {
        LogWindow { first: 1, last: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPlan {
    /// Nothing to send: the subscriber has everything.
    UpToDate,
    /// Send events with `seq > after`, through `last`.
    Replay { after: u64, last: u64 },
    /// The subscriber's cursor is older than retention: send a snapshot.
    Resync,
}

/// What a subscriber that has seen everything through `after` needs.
/// `None` means "live only": start at the current end without replay.
pub fn plan_replay(after: Option<u64>, w: LogWindow) -> ReplayPlan {
    match after {
        None => ReplayPlan::UpToDate,
        Some(a) if a >= w.last => ReplayPlan::UpToDate,
        Some(a) if a + 1 < w.first => ReplayPlan::Resync,
        Some(a) => ReplayPlan::Replay { after: a, last: w.last },
    }
}

/// What retention deletes after an append that made `last` the newest seq:
/// every seq up to `through`, and every seq below `last` whose event is older
/// than `expired_before`. The newest event is always kept so `last` stays
/// observable in the log itself. Bounds rather than a seq, so a store applies
/// them in one statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prune {
    pub through: u64,
    pub expired_before: Millis,
    pub last: u64,
}

pub fn prune(last: u64, now: Millis, r: &Retention) -> Prune {
    Prune { through: last.saturating_sub(r.max_events), expired_before: now - r.max_age_ms, last }
}

impl Prune {
    /// Whether applying it deletes anything, given the oldest stored event
    /// before the append (its seq and time; `None` for an empty log). Lets a
    /// store skip the delete on the common append that has nothing to prune.
    pub fn has_work(&self, oldest: Option<(u64, Millis)>) -> bool {
        match oldest {
            None => false,
            Some((first, at)) => first <= self.through || (at < self.expired_before && first < self.last),
        }
    }
}

/// A subscriber's view of one topic: delivers each seq once, in order.
///
/// While the replay is in flight (`replaying`), live pushes are buffered and
/// merged afterwards; a push that skips ahead reveals a gap, which the caller
/// fills by fetching `after = gap` from the topic's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub delivered: u64,
    replaying: bool,
    buffer: Vec<EventRecord>,
}

/// What a cursor let through, and what it still lacks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Send these now, in order.
    pub send: Vec<EventRecord>,
    /// Something is missing after this seq: fetch the log's events after it
    /// and `accept` them.
    pub gap: Option<u64>,
}

impl Cursor {
    /// A cursor that starts at `after` and waits for the replay to arrive.
    pub fn replaying(after: u64) -> Self {
        Cursor { delivered: after, replaying: true, buffer: Vec::new() }
    }

    pub fn live(at: u64) -> Self {
        Cursor { delivered: at, replaying: false, buffer: Vec::new() }
    }

    pub fn is_replaying(&self) -> bool {
        self.replaying
    }

    /// Live pushes. During replay they are only buffered.
    pub fn offer(&mut self, events: Vec<EventRecord>) -> Delivery {
        if !self.replaying {
            return self.accept(events);
        }
        for ev in events {
            if ev.seq > self.delivered && !self.buffer.iter().any(|b| b.seq == ev.seq) {
                self.buffer.push(ev);
            }
        }
        Delivery::default()
    }

    /// Moves past everything through `seq` without sending it (a live-only
    /// start, or a resync from a snapshot).
    pub fn skip_to(&mut self, seq: u64) {
        self.delivered = self.delivered.max(seq);
    }

    /// The replay answer (events after the cursor, in order). Ends replay and
    /// merges whatever was buffered meanwhile.
    pub fn finish_replay(&mut self, replay: Vec<EventRecord>) -> Delivery {
        self.replaying = false;
        let mut all = replay;
        all.append(&mut self.buffer);
        self.accept(all)
    }

    /// Delivers the contiguous run starting at `delivered + 1`; drops
    /// duplicates; reports a gap when an event is known beyond a missing one.
    pub fn accept(&mut self, mut events: Vec<EventRecord>) -> Delivery {
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        let mut out = Delivery::default();
        for ev in events {
            if ev.seq <= self.delivered {
                continue;
            }
            if ev.seq != self.delivered + 1 {
                out.gap = Some(self.delivered);
                break;
            }
            self.delivered = ev.seq;
            out.send.push(ev);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventName;
    use serde_json::json;

    fn ev(seq: u64) -> EventRecord {
        EventRecord { seq, event: EventName::StageStarted, data: json!({}), ts: String::new() }
    }

    fn seqs(d: Delivery) -> Vec<u64> {
        assert_eq!(d.gap, None);
        d.send.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn replay_plans() {
        let w = LogWindow { first: 5, last: 10 };
        assert_eq!(plan_replay(None, w), ReplayPlan::UpToDate);
        assert_eq!(plan_replay(Some(10), w), ReplayPlan::UpToDate);
        assert_eq!(plan_replay(Some(12), w), ReplayPlan::UpToDate);
        assert_eq!(plan_replay(Some(4), w), ReplayPlan::Replay { after: 4, last: 10 });
        assert_eq!(plan_replay(Some(7), w), ReplayPlan::Replay { after: 7, last: 10 });
        assert_eq!(plan_replay(Some(3), w), ReplayPlan::Resync);
        assert_eq!(plan_replay(Some(0), LogWindow { first: 1, last: 3 }), ReplayPlan::Replay { after: 0, last: 3 });
        assert_eq!(plan_replay(Some(0), LogWindow::empty()), ReplayPlan::UpToDate);
        // A client's cursor (SSE's `Last-Event-ID`) may be anything.
        assert_eq!(plan_replay(Some(u64::MAX), w), ReplayPlan::UpToDate);
    }

    #[test]
    fn retention_by_count_and_age_keeps_the_newest() {
        let r = Retention { max_events: 100, max_age_ms: 1000 };
        assert_eq!(prune(50, 5000, &r).through, 0);
        assert_eq!(prune(250, 5000, &r), Prune { through: 150, expired_before: 4000, last: 250 });
    }

    #[test]
    fn live_pushes_during_replay_are_merged_once_in_order() {
        let mut c = Cursor::replaying(3);
        assert_eq!(seqs(c.offer(vec![ev(9)])), Vec::<u64>::new());
        assert_eq!(seqs(c.offer(vec![ev(8)])), Vec::<u64>::new());
        // Replay answered through 8 (9 happened after the log was read).
        assert_eq!(seqs(c.finish_replay((4..=8).map(ev).collect())), vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(seqs(c.offer(vec![ev(9)])), Vec::<u64>::new(), "duplicate dropped");
        assert_eq!(seqs(c.offer(vec![ev(10)])), vec![10]);
    }

    #[test]
    fn a_skipped_push_reveals_a_gap() {
        let mut c = Cursor::live(10);
        assert_eq!(c.offer(vec![ev(12)]), Delivery { send: vec![], gap: Some(10) });
        assert_eq!(seqs(c.accept(vec![ev(11), ev(12)])), vec![11, 12]);
        assert_eq!(c.delivered, 12);
        let d = c.accept(vec![ev(13), ev(15)]);
        assert_eq!((d.send.len(), d.gap), (1, Some(13)), "delivered some, then a gap after 13");
    }

    #[test]
    fn prune_has_work_only_past_the_count_or_the_age() {
        let r = Retention { max_events: 5, max_age_ms: 1_000 };
        let young = |first: u64| Some((first, 9_500));
        assert!(!prune(3, 10_000, &r).has_work(young(1)), "under the count, nothing expired");
        assert!(!prune(3, 10_000, &r).has_work(None), "an empty log");
        assert!(prune(6, 10_000, &r).has_work(young(1)), "seq 1 is past the count");
        assert!(!prune(6, 10_000, &r).has_work(young(2)), "already pruned through 1");
        assert!(prune(3, 10_000, &r).has_work(Some((1, 8_999))), "the oldest expired");
        assert!(!prune(3, 10_000, &r).has_work(Some((3, 8_999))), "the newest event is always kept");
    }
}
