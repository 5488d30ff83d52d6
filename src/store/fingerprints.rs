//! The analyzer's near-duplicate fingerprints, as the analyzer's actor keeps
//! them. A Container's disk is wiped when it sleeps (and on every host move),
//! so the fingerprint log the analyzer writes there does not last; the actor
//! keeps each analysis's log line (`record` in its answer) here, one per
//! document, and gives them back to every container it starts
//! (`POST /documents/restore`) before its first call.

use serde::Deserialize;
use worker::SqlStorage;

use super::{create_table, exec, rows};
use crate::error::ApiError;

const TABLE: &str = "fingerprints (id TEXT PRIMARY KEY, line TEXT NOT NULL)";

/// Lines per restore request: about 1.2 KB each, so a page is about 1.2 MB,
/// well under what the analyzer takes and a Worker's memory.
pub const RESTORE_PAGE: u32 = 1_000;

pub struct FingerprintRecords {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    line: String,
}

impl FingerprintRecords {
    pub fn new(sql: SqlStorage) -> Self {
        FingerprintRecords { sql }
    }

    /// `id`'s current record (a newer analysis replaces the older).
    pub fn keep(&self, id: &str, line: &str) -> Result<(), ApiError> {
        create_table(&self.sql, TABLE)?;
        exec(&self.sql, "INSERT OR REPLACE INTO fingerprints (id, line) VALUES (?, ?)", vec![id.into(), line.into()])
    }

    /// A deleted item's: no container gets it back.
    pub fn forget(&self, id: &str) -> Result<(), ApiError> {
        if !crate::store::table_exists(&self.sql, "fingerprints") {
            return Ok(());
        }
        exec(&self.sql, "DELETE FROM fingerprints WHERE id = ?", vec![id.into()])
    }

    /// The records after `after` (by id), at most [`RESTORE_PAGE`], as the
    /// analyzer's restore takes them (one per line), and the last id in it.
    pub fn page_after(&self, after: &str) -> Result<Option<(String, String)>, ApiError> {
        if !crate::store::table_exists(&self.sql, "fingerprints") {
            return Ok(None);
        }
        let page: Vec<Line> = rows(
            &self.sql,
            "SELECT id, line FROM fingerprints WHERE id > ? ORDER BY id LIMIT ?",
            vec![after.into(), (RESTORE_PAGE as f64).into()],
        )?;
        let Some(last) = page.last().map(|l| l.id.clone()) else { return Ok(None) };
        let mut body = String::new();
        for l in &page {
            body.push_str(&l.line);
            body.push('\n');
        }
        Ok(Some((body, last)))
    }
}
