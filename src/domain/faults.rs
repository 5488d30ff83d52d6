//! Fault injection (`FAULTS=embed=0.3,analyze=1.0,spawn=0.5,catalog=0.5`).
//!
//! A name is a stage, or a site outside the stages: `spawn` (the content
//! actor's `start` call to a new run), `catalog` (an actor's D1 write) and
//! `ingest` (the queue consumer's spawn of a batch item), `enqueue` (the
//! Worker's send of a new batch's items to the queue), `feed` (a content
//! actor's append of its events to the feed), `push` (a topic's
//! live push of committed events, as if the actor were evicted between commit
//! and push; only the catch-up path delivers them), `stall` (a content
//! actor's duty hangs on its first try, as if its process froze mid-drain:
//! a test kills the process meanwhile), `create` (the Worker's create call
//! to a new item's actor, lost on the way), `reply` (a create's first reply
//! lost after the actor took it), `alarm` (a new answer's first alarm lost,
//! as if the write that armed it failed: only a later wake arms it again),
//! `item_reply` (every reply to a batch item's spawn, lost after its
//! content actor took it), `replies` (every try's reply to a create under a
//! fresh id, lost after the actor took it: the Worker settles the create),
//! `version_reply` (the reply to a new version, whatever it said, lost),
//! `torn` (a content actor's commit fails after its first statement, as a
//! full database or an oversized row fails one mid-way).
//!
//! A fault is decided from a hash of (run, stage, attempt) rather than a global
//! RNG, so an injected failure is reproducible from the journal.

use super::time::{fnv1a, unit};
use crate::protocol::Stage;

/// The content actor's spawn of a run.
pub const SPAWN: &str = "spawn";
/// An actor's write to the D1 catalog.
pub const CATALOG: &str = "catalog";
/// The queue consumer's spawn of a batch item. Keyed by the item's title
/// and decided once for all attempts ([`Faults::poisons`]): a struck item
/// fails every try and ends on the dead-letter queue.
pub const INGEST: &str = "ingest";
/// A topic's live push after a commit.
pub const PUSH: &str = "push";
/// The Worker's send of a new batch's items to the `INGEST` queue. Keyed
/// by the batch: a struck batch's send fails at its first message.
pub const ENQUEUE: &str = "enqueue";
/// A content actor's append of a commit's events to the feed: a struck
/// first try is lost before the feed hears of it, a struck later try after
/// the feed appended (its reply is lost).
pub const FEED: &str = "feed";
/// A content actor's first try of a duty hangs (a test then kills the
/// process, so the duties were committed and never tried).
pub const STALL: &str = "stall";
/// The Worker's create call to a new item's actor, lost on the way before
/// the actor hears of it: the request fails (503) with its outcome unknown
/// to the Worker, as a dropped connection or an overloaded object leaves it.
pub const CREATE: &str = "create";
/// The reply to the first try of a create under a fresh id (an item, a
/// batch, an answer; `rpc::send_create`), lost after the actor took it, as
/// an actor reset mid-call leaves it: the Worker asks again.
pub const REPLY: &str = "reply";
/// A new answer's first alarm, lost (keyed by the answer): only another
/// wake of its actor (a read, a follow) arms it again.
pub const ALARM: &str = "alarm";
/// The reply to a batch item's spawn, lost after the item's content actor
/// took it (keyed by the item's content id, on every try alike).
pub const ITEM_REPLY: &str = "item_reply";
/// Every try's reply to a create under a fresh id (`rpc::send_create`),
/// lost after the actor took it, so the Worker's tries all fail and it
/// settles the create with the actor.
pub const REPLIES: &str = "replies";
/// The reply to a new version of an existing item (a `PUT`), whatever the
/// item answered, lost on its way back to the Worker (keyed by the item).
pub const VERSION_REPLY: &str = "version_reply";
/// A content actor's commit fails after its first statement (the item's
/// state saved, its events and duties not yet), as a full database or a
/// row over the size limit fails one mid-way: nothing of it may land. Keyed by the committed item's title and decided once for all
/// tries ([`Faults::poisons`]), so a test picks titles that strike or not.
pub const TORN: &str = "torn";
const SITES: [&str; 14] = [SPAWN, CATALOG, INGEST, PUSH, ENQUEUE, FEED, STALL, CREATE, REPLY, ALARM, ITEM_REPLY, REPLIES, VERSION_REPLY, TORN];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rates: Vec<(Stage, f64)>,
    sites: Vec<(&'static str, f64)>,
}

fn strikes_at(p: f64, key: &str, site: &str, attempt: u32) -> bool {
    p > 0.0 && unit(fnv1a(format!("{key}/{site}/{attempt}").as_bytes())) < p
}

/// A fault `FAULTS` injected at a site: a failure for now (503 at the edge),
/// which the caller retries as it would a real one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("injected fault ({site}={probability})")]
pub struct InjectedFault {
    pub site: String,
    pub probability: f64,
}

impl Faults {
    /// Unknown stages and unparsable rates are ignored: faults are a test aid
    /// and must never take the Worker down.
    pub fn parse(spec: &str) -> Self {
        let mut f = Faults::default();
        for part in spec.split(',') {
            let Some((name, rate)) = part.split_once('=') else { continue };
            let Some(rate) = rate.trim().parse::<f64>().ok().filter(|r| r.is_finite()).map(|r| r.clamp(0.0, 1.0)) else {
                continue;
            };
            let name = name.trim();
            if let Ok(stage) = name.parse::<Stage>() {
                f.rates.push((stage, rate));
            } else if let Some(site) = SITES.iter().find(|s| **s == name) {
                f.sites.push((site, rate));
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.rates.iter().all(|(_, r)| *r == 0.0) && self.sites.iter().all(|(_, r)| *r == 0.0)
    }

    pub fn site_probability(&self, site: &str) -> f64 {
        self.sites.iter().rev().find(|(s, _)| *s == site).map(|(_, r)| *r).unwrap_or(0.0)
    }

    /// Whether this attempt at a site (`SPAWN`, `CATALOG`) for `key` fails.
    pub fn site_strikes(&self, site: &str, key: &str, attempt: u32) -> bool {
        strikes_at(self.site_probability(site), key, site, attempt)
    }

    pub fn probability(&self, stage: Stage) -> f64 {
        self.rates.iter().rev().find(|(s, _)| *s == stage).map(|(_, r)| *r).unwrap_or(0.0)
    }

    /// The injected fault at a site, if this attempt of `key` meets it.
    pub fn site_fault(&self, site: &str, key: &str, attempt: u32) -> Option<InjectedFault> {
        self.site_strikes(site, key, attempt).then(|| InjectedFault { site: site.to_string(), probability: self.site_probability(site) })
    }

    /// [`Self::site_fault`] as a result, for `?` where the fault fails the call.
    pub fn check(&self, site: &str, key: &str, attempt: u32) -> Result<(), InjectedFault> {
        self.site_fault(site, key, attempt).map_or(Ok(()), Err)
    }

    /// The site fault that strikes `key` on every attempt alike.
    pub fn poisons(&self, site: &str, key: &str) -> Option<InjectedFault> {
        self.site_fault(site, key, 0)
    }

    /// Whether this attempt of this stage of this run fails.
    pub fn strikes(&self, run_id: &str, stage: Stage, attempt: u32) -> bool {
        strikes_at(self.probability(stage), run_id, stage.as_str(), attempt)
    }

    pub fn describe(&self) -> String {
        let stages = self.rates.iter().map(|(s, r)| format!("{s}={r}"));
        stages.chain(self.sites.iter().map(|(s, r)| format!("{s}={r}"))).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_garbage() {
        let f = Faults::parse("embed=0.3, index=1.0,bogus=1,analyze=x,chunk=7");
        assert_eq!(f.probability(Stage::Embed), 0.3);
        assert_eq!(f.probability(Stage::Index), 1.0);
        assert_eq!(f.probability(Stage::Analyze), 0.0);
        assert_eq!(f.probability(Stage::Chunk), 1.0);
        assert!(Faults::parse("").is_empty());
        let sites = Faults::parse("spawn=0.5,catalog=1,nowhere=1");
        assert_eq!(sites.site_probability(SPAWN), 0.5);
        assert_eq!(sites.site_probability(CATALOG), 1.0);
        assert!(!sites.is_empty());
        let push = Faults::parse("push=1.0");
        assert!((1..50).all(|a| push.site_strikes(PUSH, "feed", a)));
        assert_eq!(sites.describe(), "spawn=0.5,catalog=1");
        assert!((1..50).all(|a| sites.site_strikes(CATALOG, "x", a)));
        assert_eq!(sites.site_fault(CATALOG, "x", 1).map(|f| f.to_string()).as_deref(), Some("injected fault (catalog=1)"));
        let hits = (0..10_000).filter(|i| sites.site_strikes(SPAWN, &format!("run-{i}"), 1)).count();
        let ingest = Faults::parse("ingest=0.1");
        let poisoned = (0..1_000).filter(|i| ingest.poisons(INGEST, &format!("title {i}")).is_some()).count();
        assert!((60..140).contains(&poisoned), "{poisoned}");
        assert!(Faults::default().poisons(INGEST, "anything").is_none());
        assert!((4700..5300).contains(&hits), "{hits}");
    }

    #[test]
    fn strike_rate_follows_probability() {
        let f = Faults::parse("embed=0.3");
        let hits = (0..10_000).filter(|i| f.strikes(&format!("run-{i}"), Stage::Embed, 1)).count();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(!f.strikes("run", Stage::Index, 1));
        let always = Faults::parse("embed=1.0");
        assert!((1..50).all(|a| always.strikes("r", Stage::Embed, a)));
    }
}
