//! The analyzer's near-duplicate fingerprints, as the analyzer's actor keeps
//! them. A Container's disk is wiped when it sleeps (and on every host move),
//! so the fingerprint log the analyzer writes there does not last; the actor
//! keeps each analysis's log line (`record` in its answer) here, one per
//! document, and gives them back to every container it starts
//! (`POST /documents/restore`) before its first call.
//!
//! A deleted item's row becomes a tombstone: no later analysis of it (one in
//! flight during the delete) is kept, and the restore tells a new container
//! to forget it (the removal line of the analyzer's log,
//! containers/analyzer/README.md), as the old one's disk did. A tombstone
//! lasts [`TOMBSTONE_TTL_MS`]: past it no analysis of the item can still be
//! in flight, so a fresh container needs no removal line and the row goes.
//! Without that, every deletion ever made would cost every cold start a line.

use std::cell::Cell;

use serde::Deserialize;
use worker::SqlStorage;

use super::{create_table, exec, rows};
use crate::domain::time::Millis;
use crate::error::ApiError;

/// `line` is NULL for a deleted item, whose `forgotten_at` says when;
/// `version` orders analyses that land out of order.
const TABLE: &str = "fingerprints (id TEXT PRIMARY KEY, version INTEGER, line TEXT, forgotten_at INTEGER)";

/// How long a deleted item's tombstone is kept: far longer than an analysis
/// in flight at the deletion can take to land (a purged run tries no stage
/// again, and one analyzer call ends within its timeout).
pub const TOMBSTONE_TTL_MS: Millis = 24 * 3600 * 1000;

/// Lines per restore request: about 1.2 KB each, so a page is about 1.2 MB,
/// well under what the analyzer takes and a Worker's memory.
pub const RESTORE_PAGE: u32 = 1_000;

pub struct FingerprintRecords<'a> {
    sql: SqlStorage,
    /// The instance's memory that the table exists: a kept record costs
    /// one statement, not a `CREATE TABLE IF NOT EXISTS` before it.
    created: &'a Cell<bool>,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    line: Option<String>,
}

impl<'a> FingerprintRecords<'a> {
    pub fn new(sql: SqlStorage, created: &'a Cell<bool>) -> Self {
        FingerprintRecords { sql, created }
    }

    fn create(&self, now: Millis) -> Result<(), ApiError> {
        if !self.created.get() {
            create_table(&self.sql, TABLE)?;
            // A table from before `forgotten_at` (the probe fails on it)
            // gains the column, and its tombstones count from now.
            // Both statements run in this turn, with no await between, so
            // they land together; a tombstone left without a time anyway is
            // kept and restored as before, never dropped.
            if exec(&self.sql, "SELECT forgotten_at FROM fingerprints LIMIT 0", vec![]).is_err() {
                exec(&self.sql, "ALTER TABLE fingerprints ADD COLUMN forgotten_at INTEGER", vec![])?;
                exec(&self.sql, "UPDATE fingerprints SET forgotten_at = ? WHERE line IS NULL", vec![(now as f64).into()])?;
            }
            // The prune at each deletion reads tombstones only.
            exec(&self.sql, "CREATE INDEX IF NOT EXISTS fingerprints_forgotten ON fingerprints (forgotten_at) WHERE line IS NULL", vec![])?;
            self.created.set(true);
        }
        Ok(())
    }

    /// `id`'s record of `version`, unless a newer one is kept or the item
    /// was deleted.
    pub fn keep(&self, id: &str, version: Option<u32>, line: &str, now: Millis) -> Result<(), ApiError> {
        self.create(now)?;
        let version = version.map_or(worker::SqlStorageValue::Null, |v| (v as f64).into());
        exec(
            &self.sql,
            "INSERT INTO fingerprints (id, version, line) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE \
             SET version = excluded.version, line = excluded.line \
             WHERE fingerprints.line IS NOT NULL AND (excluded.version IS NULL OR fingerprints.version IS NULL OR excluded.version >= fingerprints.version)",
            vec![id.into(), version, line.into()],
        )
    }

    /// A deleted item's: its record becomes a tombstone, and tombstones past
    /// [`TOMBSTONE_TTL_MS`] go.
    pub fn forget(&self, id: &str, now: Millis) -> Result<(), ApiError> {
        self.create(now)?;
        exec(
            &self.sql,
            "INSERT OR REPLACE INTO fingerprints (id, version, line, forgotten_at) VALUES (?, NULL, NULL, ?)",
            vec![id.into(), (now as f64).into()],
        )?;
        exec(
            &self.sql,
            "DELETE FROM fingerprints WHERE line IS NULL AND forgotten_at < ?",
            vec![((now - TOMBSTONE_TTL_MS) as f64).into()],
        )
    }

    /// The records after `after` (by id), at most [`RESTORE_PAGE`], as the
    /// analyzer's restore takes them (one per line), and the last id in it.
    /// Tombstones past [`TOMBSTONE_TTL_MS`] are left out: no analysis of
    /// their item can land any more.
    pub fn page_after(&self, after: &str, now: Millis) -> Result<Option<(String, String)>, ApiError> {
        if !self.created.get() {
            if !crate::store::table_exists(&self.sql, "fingerprints") {
                return Ok(None);
            }
            self.create(now)?;
        }
        let page: Vec<Line> = rows(
            &self.sql,
            "SELECT id, line FROM fingerprints WHERE id > ? AND (line IS NOT NULL OR forgotten_at IS NULL OR forgotten_at >= ?) ORDER BY id LIMIT ?",
            vec![after.into(), ((now - TOMBSTONE_TTL_MS) as f64).into(), (RESTORE_PAGE as f64).into()],
        )?;
        let Some(last) = page.last().map(|l| l.id.clone()) else { return Ok(None) };
        let mut body = String::new();
        for l in &page {
            match &l.line {
                Some(line) => body.push_str(line),
                None => body.push_str(&serde_json::json!({ "s": 1, "removed": l.id }).to_string()),
            }
            body.push('\n');
        }
        Ok(Some((body, last)))
    }
}
