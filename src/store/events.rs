//! The event log every actor keeps: one topic per actor, dense seqs from 1.

use worker::SqlStorage;

use super::{exec, rows, storage_err};
use crate::config::Retention;
use crate::domain::event_log::{prune, LogWindow};
use crate::domain::time::{rfc3339, Millis};
use crate::error::ApiError;
use crate::protocol::{EventDraft, EventName, EventRecord};

#[derive(Clone)]
pub struct EventStore {
    sql: SqlStorage,
    retention: Retention,
}

#[derive(serde::Deserialize)]
struct Row {
    seq: f64,
    event: String,
    data: String,
    ts: String,
}

#[derive(serde::Deserialize)]
struct Num {
    n: Option<f64>,
}

/// What reserving seqs answers: the new last seq, and when the oldest stored
/// event was appended (so retention runs only when it has work).
#[derive(serde::Deserialize)]
struct Reserved {
    n: Option<f64>,
    first: Option<f64>,
    first_at: Option<f64>,
}

impl EventStore {
    /// Reads work on a log that was never created (they see it empty);
    /// the first append creates the tables.
    pub fn new(sql: SqlStorage, retention: Retention) -> Self {
        EventStore { sql, retention }
    }

    fn init(&self) -> Result<(), ApiError> {
        exec(
            &self.sql,
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL, data TEXT NOT NULL, ts TEXT NOT NULL, at INTEGER NOT NULL)",
            vec![],
        )?;
        exec(&self.sql, "CREATE TABLE IF NOT EXISTS event_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)", vec![])?;
        exec(&self.sql, "INSERT OR IGNORE INTO event_meta (k, v) VALUES ('last', 0)", vec![])
    }

    /// Reserves `n` seqs: the new last one, and the oldest stored event (its
    /// seq and time) for retention, in the same statement.
    fn reserve(&self, n: u64) -> Result<Option<(u64, Option<(u64, Millis)>)>, ApiError> {
        let r: Vec<Reserved> = rows(
            &self.sql,
            "UPDATE event_meta SET v = v + ? WHERE k = 'last' RETURNING v AS n, \
             (SELECT seq FROM events ORDER BY seq LIMIT 1) AS first, (SELECT at FROM events ORDER BY seq LIMIT 1) AS first_at",
            vec![(n as i64).into()],
        )?;
        Ok(r.into_iter().next().and_then(|r| {
            let oldest = r.first.zip(r.first_at).map(|(seq, at)| (seq as u64, at as Millis));
            Some((r.n? as u64, oldest))
        }))
    }

    fn exists(&self) -> bool {
        rows::<Num>(&self.sql, "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'event_meta'", vec![])
            .ok()
            .and_then(|r| r.into_iter().next())
            .and_then(|n| n.n)
            .is_some_and(|n| n > 0.0)
    }

    fn num(&self, q: &str, params: Vec<worker::SqlStorageValue>) -> Result<Option<u64>, ApiError> {
        let r: Vec<Num> = rows(&self.sql, q, params)?;
        Ok(r.into_iter().next().and_then(|n| n.n).map(|n| n as u64))
    }

    /// Runs a read on the log; a log that was never created reads as `empty`.
    /// The catalog is only consulted when the read fails, so the common path
    /// costs one statement.
    fn read<T>(&self, empty: T, f: impl Fn() -> Result<T, ApiError>) -> Result<T, ApiError> {
        match f() {
            Ok(v) => Ok(v),
            Err(_) if !self.exists() => Ok(empty),
            Err(e) => Err(e),
        }
    }

    pub fn last_seq(&self) -> Result<u64, ApiError> {
        self.read(0, || Ok(self.num("SELECT v AS n FROM event_meta WHERE k = 'last'", vec![])?.unwrap_or(0)))
    }

    pub fn window(&self) -> Result<LogWindow, ApiError> {
        self.read(LogWindow::empty(), || {
            let last = self.last_seq()?;
            let first = self.num("SELECT MIN(seq) AS n FROM events", vec![])?.unwrap_or(last + 1);
            Ok(LogWindow { first, last })
        })
    }

    /// Numbers and stores the drafts, then applies retention: two statements
    /// whatever the batch size, three when retention has something to delete,
    /// since every append sits on a hot path (each stage of a run, each feed
    /// event).
    pub fn append(&self, drafts: Vec<EventDraft>, now: Millis) -> Result<Vec<EventRecord>, ApiError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let n = drafts.len() as u64;
        let (reserved, oldest) = match self.reserve(n) {
            Ok(Some(v)) => v,
            // The first append creates the log.
            _ => {
                self.init()?;
                self.reserve(n)?.ok_or_else(|| storage_err("event log has no sequence row"))?
            }
        };
        let last = reserved - n;
        let ts = rfc3339(now);
        let mut out = Vec::with_capacity(drafts.len());
        let mut params: Vec<worker::SqlStorageValue> = Vec::with_capacity(drafts.len() * 5);
        for (i, d) in drafts.into_iter().enumerate() {
            let seq = last + 1 + i as u64;
            let data = serde_json::to_string(&d.data).map_err(storage_err)?;
            params.extend([(seq as i64).into(), d.event.as_str().into(), data.into(), ts.clone().into(), now.into()]);
            out.push(EventRecord { seq, event: d.event, data: d.data, ts: ts.clone() });
        }
        let values = vec!["(?, ?, ?, ?, ?)"; out.len()].join(", ");
        exec(&self.sql, &format!("INSERT INTO events (seq, event, data, ts, at) VALUES {values}"), params)?;
        // Deleting through a single seq keeps the log contiguous; the age scan
        // only runs once the oldest kept event has expired.
        let p = prune(reserved, now, &self.retention);
        if !p.has_work(oldest) {
            return Ok(out);
        }
        exec(
            &self.sql,
            "DELETE FROM events WHERE seq <= MAX(?, CASE WHEN (SELECT at FROM events ORDER BY seq LIMIT 1) < ? \
             THEN (SELECT COALESCE(MAX(seq), 0) FROM events WHERE at < ? AND seq < ?) ELSE 0 END)",
            vec![(p.through as i64).into(), p.expired_before.into(), p.expired_before.into(), (p.last as i64).into()],
        )?;
        Ok(out)
    }

    /// Erases what earlier events said of a deleted item (its title, summary
    /// and category) and keeps each event's seq and name, so a replay still
    /// numbers densely and nothing a client is owed goes missing.
    pub fn redact(&self, content_id: &str) -> Result<(), ApiError> {
        self.read((), || {
            exec(
                &self.sql,
                "UPDATE events SET data = json_replace(data, '$.title', '', '$.summary', json('null'), '$.category', json('null')) \
                 WHERE json_extract(data, '$.content_id') = ?",
                vec![content_id.into()],
            )
        })
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    pub fn after(&self, after: u64, limit: u32) -> Result<Vec<EventRecord>, ApiError> {
        self.read(Vec::new(), || {
            let r: Vec<Row> = rows(
                &self.sql,
                "SELECT seq, event, data, ts FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![(after as i64).into(), (limit as i64).into()],
            )?;
            Ok(r.into_iter().filter_map(to_record).collect())
        })
    }

    /// The newest `n` events, oldest first.
    pub fn tail(&self, n: u32) -> Result<Vec<EventRecord>, ApiError> {
        let last = self.last_seq()?;
        self.after(last.saturating_sub(n as u64), n)
    }
}

fn to_record(r: Row) -> Option<EventRecord> {
    let event: EventName = serde_json::from_value(serde_json::Value::String(r.event)).ok()?;
    Some(EventRecord { seq: r.seq as u64, event, data: serde_json::from_str(&r.data).ok()?, ts: r.ts })
}
