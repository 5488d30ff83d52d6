//! The event log every actor keeps: one topic per actor, dense seqs from 1.

use std::cell::Cell;
use std::rc::Rc;

use worker::SqlStorage;

use super::{exec, rows, storage_err};
use crate::config::Retention;
use crate::domain::event_log::{prune, LogWindow};
use crate::domain::item_labels::ERASED;
use crate::domain::time::{rfc3339, Millis};
use crate::error::ApiError;
use crate::protocol::{EventDraft, EventName, EventRecord};

/// The log's table (see [`super::create_table`]).
pub const TABLE: &str = "events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL, data TEXT NOT NULL, ts TEXT NOT NULL, at INTEGER NOT NULL)";

#[derive(Clone)]
pub struct EventStore {
    sql: SqlStorage,
    retention: Retention,
    memory: LogMemory,
}

/// What an actor instance knows of its own log's ends. The actor is the log's
/// only writer, so once read (or written) they stay true for as long as the
/// instance lives, and an append costs one statement. A new instance starts
/// knowing nothing and reads them once.
#[derive(Clone, Default)]
pub struct LogMemory(Rc<Cell<Option<Ends>>>);

impl LogMemory {
    /// The log's table was just created with the actor (see
    /// [`super::create_new_tables`]): it holds no event.
    pub fn created_empty(&self) {
        self.0.set(Some(Ends { last: 0, oldest: Oldest::Empty }));
    }

    /// The log's table is gone (the actor erased its storage): read again.
    pub fn forget(&self) {
        self.0.set(None);
    }
}

#[derive(Clone, Copy)]
struct Ends {
    /// The newest seq (0 for a log with no event yet). Retention always keeps
    /// the newest event, so the log itself says what it is.
    last: u64,
    oldest: Oldest,
}

/// The oldest stored event, which retention looks at.
#[derive(Clone, Copy)]
enum Oldest {
    Empty,
    At(u64, Millis),
    /// A prune just deleted from the front: read it again when needed.
    Unknown,
}

impl Oldest {
    /// From the first row's seq and time as read (`None`: no row).
    fn read(seq: Option<f64>, at: Option<f64>) -> Self {
        seq.zip(at).map_or(Oldest::Empty, |(seq, at)| Oldest::At(seq as u64, at as Millis))
    }
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

#[derive(serde::Deserialize)]
struct EndsRow {
    last: Option<f64>,
    first: Option<f64>,
    first_at: Option<f64>,
}

#[derive(serde::Deserialize)]
struct First {
    seq: Option<f64>,
    at: Option<f64>,
}

impl EventStore {
    /// Reads work on a log that was never created (they see it empty);
    /// the first append creates the table.
    pub fn new(sql: SqlStorage, retention: Retention, memory: LogMemory) -> Self {
        EventStore { sql, retention, memory }
    }

    fn exists(&self) -> bool {
        super::table_exists(&self.sql, "events")
    }

    fn num(&self, q: &str, params: Vec<worker::SqlStorageValue>) -> Result<Option<u64>, ApiError> {
        let r: Vec<Num> = rows(&self.sql, q, params)?;
        Ok(r.into_iter().next().and_then(|n| n.n).map(|n| n as u64))
    }

    fn oldest(&self) -> Result<Oldest, ApiError> {
        let r: Vec<First> = rows(&self.sql, "SELECT seq, at FROM events ORDER BY seq LIMIT 1", vec![])?;
        Ok(r.first().map_or(Oldest::Empty, |f| Oldest::read(f.seq, f.at)))
    }

    /// The log's ends, from memory or (once per instance) from the table,
    /// which is created here when missing: only an append asks.
    fn ends(&self) -> Result<Ends, ApiError> {
        if let Some(e) = self.memory.0.get() {
            return Ok(e);
        }
        super::create_table(&self.sql, TABLE)?;
        let r: Vec<EndsRow> = rows(
            &self.sql,
            "SELECT MAX(seq) AS last, (SELECT seq FROM events ORDER BY seq LIMIT 1) AS first, \
             (SELECT at FROM events ORDER BY seq LIMIT 1) AS first_at FROM events",
            vec![],
        )?;
        let r = r.into_iter().next();
        let oldest = r.as_ref().map_or(Oldest::Empty, |r| Oldest::read(r.first, r.first_at));
        Ok(Ends { last: r.and_then(|r| r.last).map_or(0, |n| n as u64), oldest })
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
        if let Some(e) = self.memory.0.get() {
            return Ok(e.last);
        }
        self.read(0, || Ok(self.num("SELECT MAX(seq) AS n FROM events", vec![])?.unwrap_or(0)))
    }

    pub fn window(&self) -> Result<LogWindow, ApiError> {
        let last = self.last_seq()?;
        let first = match self.memory.0.get().map(|e| e.oldest) {
            Some(Oldest::Empty) => None,
            Some(Oldest::At(seq, _)) => Some(seq),
            Some(Oldest::Unknown) | None => self.read(None, || self.num("SELECT MIN(seq) AS n FROM events", vec![]))?,
        };
        Ok(LogWindow { first: first.unwrap_or(last + 1), last })
    }

    /// Numbers and stores the drafts, then applies retention: one statement
    /// whatever the batch size, two when retention has something to delete,
    /// since every append sits on a hot path (each stage of a run, each feed
    /// event).
    pub fn append(&self, drafts: Vec<EventDraft>, now: Millis) -> Result<Vec<EventRecord>, ApiError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ends = self.ends()?;
        // Unknown until every write below has landed: a failed step re-reads.
        self.memory.0.set(None);
        if let Oldest::Unknown = ends.oldest {
            ends.oldest = self.oldest()?;
        }
        let last = ends.last;
        let ts = rfc3339(now);
        let mut out = Vec::with_capacity(drafts.len());
        let mut params: Vec<worker::SqlStorageValue> = Vec::with_capacity(drafts.len() * 5);
        for (i, d) in drafts.into_iter().enumerate() {
            let seq = last + 1 + i as u64;
            let data = serde_json::to_string(&d.data).map_err(storage_err)?;
            params.extend([(seq as i64).into(), d.event.as_str().into(), data.into(), ts.clone().into(), now.into()]);
            out.push(EventRecord { seq, event: d.event, data: d.data, ts: ts.clone() });
        }
        for rows in params.chunks(super::MAX_BOUND_PARAMS / 5 * 5) {
            let values = vec!["(?, ?, ?, ?, ?)"; rows.len() / 5].join(", ");
            exec(&self.sql, &format!("INSERT INTO events (seq, event, data, ts, at) VALUES {values}"), rows.to_vec())?;
        }
        let reserved = last + out.len() as u64;
        let oldest = match ends.oldest {
            Oldest::At(seq, at) => Some((seq, at)),
            _ => None,
        };
        // Deleting through a single seq keeps the log contiguous; the age scan
        // only runs once the oldest kept event has expired.
        let p = prune(reserved, now, &self.retention);
        let oldest_after = if !p.has_work(oldest) {
            oldest.map_or(Oldest::At(last + 1, now), |(seq, at)| Oldest::At(seq, at))
        } else {
            exec(
                &self.sql,
                "DELETE FROM events WHERE seq <= MAX(?, CASE WHEN (SELECT at FROM events ORDER BY seq LIMIT 1) < ? \
                 THEN (SELECT COALESCE(MAX(seq), 0) FROM events WHERE at < ? AND seq < ?) ELSE 0 END)",
                vec![(p.through as i64).into(), p.expired_before.into(), p.expired_before.into(), (p.last as i64).into()],
            )?;
            Oldest::Unknown
        };
        self.memory.0.set(Some(Ends { last: reserved, oldest: oldest_after }));
        Ok(out)
    }

    /// Narrows every event of an item that is wider than `visibility`, its
    /// newest version's (see `domain::item_labels`): a reader who lost access
    /// by a `PUT` sees none of them again. Never widens: one who gained
    /// access by a `PUT` does not read the older versions (the item's view
    /// and search keep them at their own visibility), so neither does the feed.
    pub fn reown(&self, content_id: &str, visibility: &str) -> Result<(), ApiError> {
        // Ranked as `Visibility` orders them; no label is anyone's (widest).
        const RANK: &str = "CASE {} WHEN 'private' THEN 0 WHEN 'tenant' THEN 1 WHEN 'public' THEN 2 ELSE 3 END";
        let rank = |of: &str| RANK.replace("{}", of);
        let q = format!(
            "UPDATE events SET data = json_set(data, '$.visibility', ?1) \
             WHERE json_extract(data, '$.content_id') = ?2 AND {} > {}",
            rank("json_extract(data, '$.visibility')"),
            rank("?1")
        );
        self.read((), || exec(&self.sql, &q, vec![visibility.into(), content_id.into()]))
    }

    /// Erases what earlier events said of a deleted item (its title, summary
    /// and category) and keeps each event's seq and name, so a replay still
    /// numbers densely and nothing a client is owed goes missing.
    pub fn redact(&self, content_id: &str) -> Result<(), ApiError> {
        let erase: Vec<String> = ERASED.iter().map(|(field, to)| format!("'$.{field}', {}", to.sql())).collect();
        let statement = format!(
            "UPDATE events SET data = json_replace(data, {}) WHERE json_extract(data, '$.content_id') = ?",
            erase.join(", ")
        );
        self.read((), || exec(&self.sql, &statement, vec![content_id.into()]))
    }

    /// Replaces the data of the events `records` name by seq (what an
    /// answer quoted of an item since deleted); their seqs, names and times
    /// stay, so a replay still numbers densely.
    pub fn rewrite(&self, records: &[EventRecord]) -> Result<(), ApiError> {
        for r in records {
            let data = serde_json::to_string(&r.data)?;
            let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
            exec(&self.sql, "UPDATE events SET data = ? WHERE seq = ?", vec![data.into(), seq.into()])?;
        }
        Ok(())
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    pub fn after(&self, after: u64, limit: u32) -> Result<Vec<EventRecord>, ApiError> {
        self.read(Vec::new(), || {
            let r: Vec<Row> = rows(
                &self.sql,
                "SELECT seq, event, data, ts FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                // A client's cursor past i64 is past every seq, not negative.
                vec![i64::try_from(after).unwrap_or(i64::MAX).into(), (limit as i64).into()],
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
