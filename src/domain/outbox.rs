//! Side effects an actor owes after a state change: spawn a run, cancel or
//! purge one, write the D1 catalog, drop an item's vectors or uploaded files. A duty is stored in
//! the actor's own SQLite in the same synchronous step as the change it
//! follows, then tried; one that fails waits with exponential backoff and is
//! retried from the actor's alarm until it lands. Every duty is idempotent, so
//! trying one twice (a crash after it landed) is harmless.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::retry::RetryPolicy;
use super::time::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "duty", rename_all = "snake_case")]
pub enum Duty {
    /// Send the idempotent `start` (body `start`) to a new run.
    SpawnRun {
        run_id: Uuid,
        start: Value,
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
    /// Make the analyzer forget a deleted item's fingerprint.
    DropFingerprint,
    /// Erase every uploaded original of a deleted item: the objects under
    /// `prefix` in the `UPLOADS` bucket (see `domain::upload::item_prefix`).
    DropUploads {
        prefix: String,
    },
    /// Tell the content actor how a run ended (`run_ended`, body `report`).
    ReportEnd {
        content_id: Uuid,
        report: Value,
    },
    /// Tell a batch how its item's first run ended (`ended`, body `report`).
    ReportBatch {
        batch_id: Uuid,
        report: Value,
    },
}

impl Duty {
    /// One pending duty per key: a newer duty with the same key replaces the
    /// older one (the catalog is written from the state current when it runs).
    pub fn key(&self) -> String {
        match self {
            Duty::SpawnRun { run_id, .. } => format!("spawn:{run_id}"),
            Duty::CancelRun { run_id, .. } => format!("cancel:{run_id}"),
            Duty::PurgeRun { run_id } => format!("purge:{run_id}"),
            Duty::Catalog => "catalog".into(),
            Duty::DropVectors => "vectors".into(),
            Duty::DropFingerprint => "fingerprint".into(),
            Duty::DropUploads { .. } => "uploads".into(),
            Duty::ReportEnd { .. } => "run_ended".into(),
            Duty::ReportBatch { .. } => "batch_report".into(),
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

/// When a duty that has now failed `attempts` times is tried again.
pub fn retry_at(attempts: u32, now: Millis) -> Millis {
    now + BACKOFF.cap_ms(attempts.max(1)) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let d = Duty::SpawnRun {
            run_id: a,
            start: serde_json::json!({ "version": 1 }),
        };
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
