//! What the feed keeps besides its log to place content actors'
//! announcements: the ones it has appended, so one tried again (its reply
//! was lost) is appended once and one overtaken by a later one of its item
//! (tried again after a failure while the later one landed) is not appended
//! at all, and the labels of items changed lately
//! (`domain::item_labels`), so a late one shows what the item is now. Both
//! are kept [`LATE_ANNOUNCE_MS`].

use serde::de::IgnoredAny;
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

use super::{exec, rows};
use crate::domain::item_labels::{ItemLabel, ItemLabels, LATE_ANNOUNCE_MS};
use crate::domain::time::Millis;
use crate::error::ApiError;

const TABLES: &str = "CREATE TABLE IF NOT EXISTS announced (content_id TEXT NOT NULL, seq INTEGER NOT NULL, \
     at INTEGER NOT NULL, PRIMARY KEY (content_id, seq)) WITHOUT ROWID; \
     CREATE TABLE IF NOT EXISTS labels (content_id TEXT PRIMARY KEY, version INTEGER NOT NULL, visibility TEXT, \
     deleted INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID";

/// How many announcements an instance takes between two sweeps of old rows.
const SWEEP_EVERY: u32 = 1024;

/// This instance's memory of the tables: whether they exist here, the calls
/// since the last sweep, and whether `labels` is known to be empty (then a
/// batch's labels cost no statement, as for items that never had a second
/// version or a deletion).
#[derive(Default)]
pub struct LedgerMemory {
    created: std::cell::Cell<bool>,
    since_sweep: std::cell::Cell<u32>,
    no_labels: std::cell::Cell<Option<bool>>,
}

impl LedgerMemory {
    /// A transaction was rolled back (the tables may be gone with it).
    pub fn forget(&self) {
        self.created.set(false);
        self.no_labels.set(None);
        self.since_sweep.set(0);
    }
}

/// What the feed does with an announcement ([`FeedLedger::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// New and the item's latest: appended.
    Append,
    /// Appended already (a try whose reply was lost): nothing to do.
    Repeat,
    /// A later one of the item was appended first: not appended, but what
    /// it says of the item (a new version's visibility) is still learned,
    /// so the item's earlier events are narrowed as they would have been.
    Overtaken,
}

pub struct FeedLedger<'a> {
    sql: SqlStorage,
    memory: &'a LedgerMemory,
}

#[derive(Deserialize)]
struct LabelRow {
    content_id: String,
    version: f64,
    visibility: Option<String>,
    deleted: f64,
    at: f64,
}

#[derive(Deserialize)]
struct Count {
    n: f64,
}

impl<'a> FeedLedger<'a> {
    /// Opens the ledger, creating its tables at an instance's first call and
    /// sweeping rows older than [`LATE_ANNOUNCE_MS`] then and every
    /// [`SWEEP_EVERY`] calls after it.
    pub fn open(sql: SqlStorage, memory: &'a LedgerMemory, now: Millis) -> Result<Self, ApiError> {
        if !memory.created.get() {
            exec(&sql, TABLES, vec![])?;
            memory.created.set(true);
        }
        let ledger = FeedLedger { sql, memory };
        let n = memory.since_sweep.get();
        memory.since_sweep.set(n.wrapping_add(1));
        if n % SWEEP_EVERY == 0 {
            ledger.sweep(now)?;
        }
        Ok(ledger)
    }

    fn sweep(&self, now: Millis) -> Result<(), ApiError> {
        self.memory.no_labels.set(None);
        // One statement each: only the last statement of a multi-statement
        // `exec` may take parameters.
        let before: SqlStorageValue = (now - LATE_ANNOUNCE_MS).into();
        exec(&self.sql, "DELETE FROM announced WHERE at < ?", vec![before.clone()])?;
        exec(&self.sql, "DELETE FROM labels WHERE at < ?", vec![before])?;
        let left: Vec<Count> = rows(&self.sql, "SELECT COUNT(*) AS n FROM labels", vec![])?;
        self.memory.no_labels.set(Some(left.first().is_none_or(|c| c.n == 0.0)));
        Ok(())
    }

    /// Records an announcement if it is to be appended: neither it nor a
    /// later one of its item (a higher `seq`) was appended. An item's
    /// announcements are tried independently, so a retried one can arrive
    /// after its successors; appended then, the feed would show an indexed
    /// item as processing, or a deleted one as indexed. One statement, and a
    /// second only for one not appended.
    pub fn claim(&self, content_id: uuid::Uuid, seq: u64, now: Millis) -> Result<Claim, ApiError> {
        let id: SqlStorageValue = content_id.to_string().into();
        let seq: SqlStorageValue = (seq as i64).into();
        let added: Vec<IgnoredAny> = rows(
            &self.sql,
            "INSERT INTO announced (content_id, seq, at) SELECT ?, ?, ? \
             WHERE NOT EXISTS (SELECT 1 FROM announced WHERE content_id = ? AND seq >= ?) RETURNING seq",
            vec![id.clone(), seq.clone(), now.into(), id.clone(), seq.clone()],
        )?;
        if !added.is_empty() {
            return Ok(Claim::Append);
        }
        let repeat: Vec<IgnoredAny> = rows(&self.sql, "SELECT seq FROM announced WHERE content_id = ? AND seq = ?", vec![id, seq])?;
        Ok(if repeat.is_empty() { Claim::Overtaken } else { Claim::Repeat })
    }

    /// The stored labels of `ids`' items.
    pub fn labels(&self, ids: &[String]) -> Result<ItemLabels, ApiError> {
        let mut labels = ItemLabels::default();
        if ids.is_empty() || self.memory.no_labels.get() == Some(true) {
            return Ok(labels);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let found: Vec<LabelRow> = rows(
            &self.sql,
            &format!("SELECT content_id, version, visibility, deleted, at FROM labels WHERE content_id IN ({marks})"),
            ids.iter().map(|i| i.as_str().into()).collect(),
        )?;
        for r in found {
            let label = ItemLabel { version: r.version as u64, visibility: r.visibility, deleted: r.deleted != 0.0, at: r.at as Millis };
            labels.insert(r.content_id, label);
        }
        Ok(labels)
    }

    /// Saves the labels of `ids` (those [`ItemLabels::learn`] changed).
    pub fn save(&self, labels: &ItemLabels, ids: &[String]) -> Result<(), ApiError> {
        for id in ids {
            let Some(l) = labels.get(id) else { continue };
            self.memory.no_labels.set(Some(false));
            exec(
                &self.sql,
                "INSERT OR REPLACE INTO labels (content_id, version, visibility, deleted, at) VALUES (?, ?, ?, ?, ?)",
                vec![
                    id.as_str().into(),
                    (l.version as i64).into(),
                    l.visibility.clone().into(),
                    (l.deleted as i64).into(),
                    l.at.into(),
                ],
            )?;
        }
        Ok(())
    }
}
