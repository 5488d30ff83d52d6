//! Side effects an actor owes after a state change: spawn a run, cancel or
//! purge one, write the D1 catalog, drop an item's vectors or uploaded files. A duty is stored in
//! the actor's own SQLite in the same synchronous step as the change it
//! follows, then tried; one that fails waits with exponential backoff and is
//! retried from the actor's alarm until it lands. Every duty is idempotent, so
//! trying one twice (a crash after it landed) is harmless.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::content::ContentDoc;
use super::principal::Ownership;
use super::retry::RetryPolicy;
use crate::protocol::RunStatus;
use super::time::Millis;

/// Starts a run of one version (idempotent: a redelivered start is done already).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRun {
    pub run_id: Uuid,
    pub content_id: Uuid,
    pub version: u32,
    pub doc: ContentDoc,
    /// The item's ownership for this version: its vectors' namespace.
    #[serde(default = "Ownership::legacy")]
    pub ownership: Ownership,
    /// A newer version superseded this one before its spawn landed: the run
    /// is made ended (`cancelled`, superseded) and runs no stage, so the run
    /// id its `PUT` answered with never reads 404. A run already started
    /// when it lands is superseded as a cancel would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<String>,
}

/// How a run that did not complete ended; or, with a status that is not
/// terminal, that an operator retried it. Both travel as one duty per run
/// (`Duty::ReportEnd`), so the newest report replaces one not yet sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnded {
    #[serde(default)]
    pub run_id: Option<Uuid>,
    pub version: u32,
    pub status: RunStatus,
    #[serde(default)]
    pub reason: Option<String>,
    /// The run's newest event seq when it reported: the item applies only
    /// a report newer than the last (`ContentState::take_report`).
    #[serde(default)]
    pub seq: Option<u64>,
}

/// How an item's first run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEnded {
    pub index: u32,
    pub completed: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "duty", rename_all = "snake_case")]
pub enum Duty {
    /// Send the idempotent `start` to a new run.
    SpawnRun {
        run_id: Uuid,
        start: StartRun,
    },
    CancelRun {
        run_id: Uuid,
        reason: String,
    },
    /// Erase a run actor's copies of a deleted item.
    PurgeRun {
        run_id: Uuid,
    },
    /// Write the actor's current state (or its deletion) to the D1 catalog.
    Catalog,
    /// Erase a deleted item's vectors and fence the index against late writes.
    DropVectors,
    /// Delete exactly these vectors: what a purged run's index stage may
    /// have written to a backend without a fence (Vectorize), whose write
    /// was not yet visible to the deletion's sweep and whose attempt ended
    /// before it could take it back.
    TakeBackVectors {
        ids: Vec<String>,
    },
    /// Erase the vectors of versions older than `keep`, the item's current
    /// version, whose run failed: an item shows its highest version, and
    /// the indexes hold nothing older (DESIGN.md, integrity).
    DropOlderVectors {
        keep: u32,
    },
    /// Make the analyzer forget a deleted item's fingerprint.
    DropFingerprint,
    /// Erase every uploaded original of a deleted item: the objects under
    /// `prefix` in the `UPLOADS` bucket (see `domain::upload::item_prefix`).
    DropUploads {
        prefix: String,
    },
    /// Tell every answer that quotes a deleted item to erase what it quoted
    /// (`forget_source`), after erasing the item's catalog row itself.
    EraseQuotes,
    /// Tell the content actor how a run ended (`run_ended`, body `report`).
    ReportEnd {
        content_id: Uuid,
        report: RunEnded,
    },
    /// Tell a batch how its item's first run ended (`ended`, body `report`).
    ReportBatch {
        batch_id: Uuid,
        report: ItemEnded,
    },
    /// Append a commit's feed events to the feed. `seq` is the item's own
    /// seq of the first of them: the feed appends each announcement once
    /// however often it is tried (a try whose reply was lost is repeated).
    Announce {
        seq: u64,
        events: Vec<crate::protocol::EventDraft>,
    },
}

impl Duty {
    /// The key of run `run_id`'s spawn, to find or forget it.
    pub fn spawn_key(run_id: Uuid) -> String {
        format!("spawn:{run_id}")
    }

    /// The key of run `run_id`'s cancel, to forget it.
    pub fn cancel_key(run_id: Uuid) -> String {
        format!("cancel:{run_id}")
    }

    /// One pending duty per key: a newer duty with the same key replaces the
    /// older one (the catalog is written from the state current when it runs).
    pub fn key(&self) -> String {
        match self {
            Duty::SpawnRun { run_id, .. } => Duty::spawn_key(*run_id),
            Duty::CancelRun { run_id, .. } => Duty::cancel_key(*run_id),
            Duty::PurgeRun { run_id } => format!("purge:{run_id}"),
            Duty::Catalog => "catalog".into(),
            Duty::DropVectors => "vectors".into(),
            Duty::DropOlderVectors { .. } => "older_vectors".into(),
            Duty::TakeBackVectors { .. } => "take_back".into(),
            Duty::DropFingerprint => "fingerprint".into(),
            Duty::DropUploads { .. } => "uploads".into(),
            Duty::EraseQuotes => "quotes".into(),
            Duty::ReportEnd { .. } => "run_ended".into(),
            Duty::ReportBatch { .. } => "batch_report".into(),
            Duty::Announce { seq, .. } => format!("feed:{seq}"),
        }
    }
}

/// The backoff of a failed duty: 200 ms doubling to 10 s, without end (the
/// duty is owed; an outage only delays it).
const BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base_ms: 200,
    max_ms: 10_000,
    timeout_ms: 0,
    optional: false,
};

/// How long a duty being tried is hidden from other drains: if the isolate
/// dies mid-try, the alarm tries it again after this.
pub const LEASE_MS: Millis = 30_000;

/// How long a new run's catalog row waits. A run that ends sooner writes one
/// row (its end replaces the owed start row) instead of two D1 batches; a
/// longer one shows as running in the catalog once this has passed.
pub const START_ROW_DELAY_MS: Millis = 10_000;

/// A new row's `seq`: random, so a replaced duty's older try never removes
/// the newer row (53 bits: it round-trips through a JS number exactly).
pub fn new_seq() -> i64 {
    (Uuid::new_v4().as_u128() & ((1u128 << 53) - 1)) as i64
}

/// When a duty that has now failed `attempts` times is tried again.
pub fn retry_at(attempts: u32, now: Millis) -> Millis {
    now + BACKOFF.cap_ms(attempts.max(1)) as Millis
}

/// The outbox's rows as the actor that owns them wrote or read them: each
/// duty's key, its row's `seq` and when it is due. The actor is the table's
/// only writer, so once known the copy stays true for as long as the instance
/// lives, and a drain or an alarm check that finds nothing due costs no
/// statement.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OwedDuties {
    rows: BTreeMap<String, Owed>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Owed {
    seq: i64,
    due_at: Millis,
}

impl OwedDuties {
    /// A row was written (put, replaced or leased): `key` is now `seq`, due at `due_at`.
    pub fn stored(&mut self, key: String, seq: i64, due_at: Millis) {
        self.rows.insert(key, Owed { seq, due_at });
    }

    /// Row `seq` of `key` was deleted (a duty done). A newer row under the
    /// same key (the duty replaced while it was tried) stays.
    pub fn done(&mut self, key: &str, seq: i64) {
        if self.rows.get(key).is_some_and(|o| o.seq == seq) {
            self.rows.remove(key);
        }
    }

    /// Every row of `key` was deleted (a duty no longer owed).
    pub fn forgotten(&mut self, key: &str) {
        self.rows.remove(key);
    }

    /// Row `seq` of `key` failed and waits until `due_at`, unless it was replaced.
    pub fn rescheduled(&mut self, key: &str, seq: i64, due_at: Millis) {
        if let Some(o) = self.rows.get_mut(key).filter(|o| o.seq == seq) {
            o.due_at = due_at;
        }
    }

    /// Whether any duty is due at `now` (a leased one is due when its lease ends).
    pub fn any_due(&self, now: Millis) -> bool {
        self.rows.values().any(|o| o.due_at <= now)
    }

    /// When the earliest duty is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.rows.values().map(|o| o.due_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_duties_follow_the_rows_and_keep_a_replacement() {
        let mut owed = OwedDuties::default();
        assert_eq!(owed.next_due(), None);
        assert!(!owed.any_due(0));
        // Put leased at once (due when the lease ends), and one deferred.
        owed.stored("spawn:a".into(), 1, 1_000 + LEASE_MS);
        owed.stored("catalog".into(), 2, 1_000 + START_ROW_DELAY_MS);
        assert_eq!(owed.next_due(), Some(1_000 + START_ROW_DELAY_MS));
        assert!(!owed.any_due(1_000), "a leased or deferred duty is not due yet");
        assert!(owed.any_due(1_000 + START_ROW_DELAY_MS));
        // The catalog row is replaced while its older row is tried: the
        // older row's end leaves the newer one owed.
        owed.stored("catalog".into(), 3, 2_000 + LEASE_MS);
        owed.done("catalog", 2);
        owed.rescheduled("catalog", 2, 5_000);
        // A failure waits with backoff; success and forgetting remove.
        owed.rescheduled("spawn:a", 1, 1_200);
        assert_eq!(owed.next_due(), Some(1_200));
        assert!(owed.any_due(1_200));
        owed.done("spawn:a", 1);
        assert_eq!(owed.next_due(), Some(2_000 + LEASE_MS), "the newer catalog row is owed as written");
        owed.forgotten("catalog");
        assert_eq!(owed, OwedDuties::default());
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let waits: Vec<Millis> = (1..=8).map(|a| retry_at(a, 1_000) - 1_000).collect();
        assert_eq!(waits, [200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000]);
        assert_eq!(retry_at(500, 0), 10_000, "no overflow after many failures");
    }

    #[test]
    fn keys_dedupe_per_run_and_per_kind() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_ne!(
            Duty::PurgeRun { run_id: a }.key(),
            Duty::PurgeRun { run_id: b }.key()
        );
        assert_ne!(
            Duty::PurgeRun { run_id: a }.key(),
            Duty::CancelRun {
                run_id: a,
                reason: "x".into()
            }
            .key()
        );
        assert_eq!(Duty::Catalog.key(), "catalog");
        let start: StartRun = serde_json::from_value(serde_json::json!({
            "run_id": a, "content_id": a, "version": 1, "doc": { "title": "T", "body": "B", "category": null, "tags": [], "author": null }
        }))
        .unwrap();
        let d = Duty::SpawnRun { run_id: a, start };
        let back: Duty = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn dropping_uploads_is_one_duty_per_item_and_survives_storage() {
        let d = Duty::DropUploads { prefix: "uploads/acme/x/".into() };
        assert_eq!(d.key(), "uploads");
        assert_ne!(d.key(), Duty::DropVectors.key());
        let stored = serde_json::to_string(&d).unwrap();
        assert!(stored.contains("\"duty\":\"drop_uploads\""), "{stored}");
        assert_eq!(serde_json::from_str::<Duty>(&stored).unwrap(), d);
    }
}
