//! The outbox table in an actor's own SQLite: the duties
//! ([`crate::domain::outbox::Duty`]) it still owes. Writes are synchronous, so
//! an actor records a duty in the same step as the state change it follows.

use std::cell::Cell;

use serde::Deserialize;
use serde_json::{json, Value};
use worker::SqlStorage;

use crate::domain::outbox::{retry_at, Duty, LEASE_MS};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::store::{exec, rows, storage_err};

/// How many duties one drain has in flight at once (a deleted item with many
/// versions owes a purge per run).
pub const DRAIN_PARALLEL: usize = 8;

pub struct Outbox<'a> {
    sql: SqlStorage,
    memory: &'a OutboxMemory,
}

/// What an actor instance remembers of its outbox between calls.
pub struct OutboxMemory {
    /// The table exists (created or found once in this instance), so later
    /// opens cost no statement.
    created: Cell<bool>,
    /// A duty was owed since the alarm was last checked. A new instance
    /// starts unarmed: its predecessor may have died between a put and its
    /// alarm. Calls that owe nothing new then skip the outbox and alarm reads.
    unarmed: Cell<bool>,
    /// Drains in flight in this instance. Their duties are leased, not due:
    /// each drain arms the alarm when it ends, so a call that lands meanwhile
    /// must not arm one for the lease (an alarm that would wake the actor
    /// 30 s later to find nothing owed).
    draining: Cell<u32>,
}

impl Default for OutboxMemory {
    fn default() -> Self {
        OutboxMemory { created: Cell::new(false), unarmed: Cell::new(true), draining: Cell::new(0) }
    }
}

/// Counts a drain in flight for as long as it lives, however it ends.
struct Draining<'a>(&'a Cell<u32>);

impl<'a> Draining<'a> {
    fn start(count: &'a Cell<u32>) -> Self {
        count.set(count.get() + 1);
        Draining(count)
    }
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl OutboxMemory {
    /// Whether a drain is in flight in this instance (it arms when it ends).
    pub fn draining(&self) -> bool {
        self.draining.get() > 0
    }

    /// Whether a duty may be owed without its alarm.
    pub fn unarmed(&self) -> bool {
        self.unarmed.get()
    }

    /// The alarm was checked (or set) for every duty owed so far.
    pub fn armed(&self) {
        self.unarmed.set(false);
    }
}

/// A duty taken for a try. `seq` changes when the duty is replaced, so a try
/// of the older duty never removes the newer one.
pub struct Taken {
    pub seq: i64,
    pub duty: Duty,
    /// Failed tries before this one.
    pub attempts: u32,
}

#[derive(Deserialize)]
struct Row {
    seq: f64,
    duty: String,
    attempts: f64,
}

#[derive(Deserialize)]
struct Due {
    at: Option<f64>,
}

impl<'a> Outbox<'a> {
    /// The outbox, creating its table on the first open in this instance.
    pub fn open(sql: SqlStorage, memory: &'a OutboxMemory) -> ApiResult<Self> {
        if memory.created.get() {
            return Ok(Outbox { sql, memory });
        }
        exec(
            &sql,
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
               duty TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL, last_error TEXT)",
            vec![],
        )?;
        memory.created.set(true);
        Ok(Outbox { sql, memory })
    }

    /// Owes `duty` from now on, replacing a pending duty with the same key.
    pub fn put(&self, duty: &Duty, now: Millis) -> ApiResult<()> {
        self.memory.unarmed.set(true);
        let text = serde_json::to_string(duty).map_err(storage_err)?;
        exec(
            &self.sql,
            "INSERT OR REPLACE INTO outbox (key, duty, attempts, due_at) VALUES (?, ?, 0, ?)",
            vec![duty.key().into(), text.into(), (now as f64).into()],
        )
    }

    /// Drops a pending duty (e.g. the spawn of a run that was superseded).
    pub fn forget(&self, key: &str) -> ApiResult<()> {
        exec(
            &self.sql,
            "DELETE FROM outbox WHERE key = ?",
            vec![key.into()],
        )
    }

    /// The duties due at `now`, oldest first, each leased for [`LEASE_MS`] so
    /// a concurrent drain does not try it too: one statement for them all.
    pub fn take_due(&self, now: Millis) -> ApiResult<Vec<Taken>> {
        let mut found: Vec<Row> = rows(
            &self.sql,
            "UPDATE outbox SET due_at = ? WHERE due_at <= ? RETURNING seq, duty, attempts",
            vec![((now + LEASE_MS) as f64).into(), (now as f64).into()],
        )?;
        // RETURNING promises no order.
        found.sort_by(|a, b| a.seq.total_cmp(&b.seq));
        found
            .into_iter()
            .map(|r| {
                let duty: Duty = serde_json::from_str(&r.duty).map_err(storage_err)?;
                Ok(Taken { seq: r.seq as i64, duty, attempts: r.attempts as u32 })
            })
            .collect()
    }

    /// Tries every due duty with `perform(duty, failed tries so far)`; a
    /// failure is logged and rescheduled with backoff. Duties are independent
    /// (each is keyed and idempotent), so up to [`DRAIN_PARALLEL`] are in
    /// flight at once: a submission's run spawn and catalog row are awaited
    /// side by side, not one after the other, before the 202 is sent.
    pub async fn drain<F, Fut>(&self, actor: &str, perform: F) -> ApiResult<()>
    where
        F: Fn(Duty, u32) -> Fut,
        Fut: std::future::Future<Output = ApiResult<()>>,
    {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let _draining = Draining::start(&self.memory.draining);
        let taken = self.take_due(crate::runtime::now_ms())?;
        stream::iter(taken)
            .map(|t| {
                let tried = perform(t.duty.clone(), t.attempts);
                async move { (tried.await, t) }
            })
            .buffer_unordered(DRAIN_PARALLEL)
            .map(Ok)
            // Each outcome is recorded as it lands, not after the slowest.
            .try_for_each(|(tried, t)| futures::future::ready(self.record(&t, tried, actor)))
            .await
    }

    fn record(&self, t: &Taken, tried: ApiResult<()>, actor: &str) -> ApiResult<()> {
        match tried {
            Ok(()) => self.done(t),
            Err(e) => {
                worker::console_error!("{actor} duty {} failed (try {}): {e}", t.duty.key(), t.attempts + 1);
                self.failed(t, &e, crate::runtime::now_ms())
            }
        }
    }

    pub fn done(&self, t: &Taken) -> ApiResult<()> {
        exec(
            &self.sql,
            "DELETE FROM outbox WHERE seq = ?",
            vec![(t.seq as f64).into()],
        )
    }

    pub fn failed(&self, t: &Taken, error: &ApiError, now: Millis) -> ApiResult<()> {
        let attempts = t.attempts + 1;
        exec(
            &self.sql,
            "UPDATE outbox SET attempts = ?, due_at = ?, last_error = ? WHERE seq = ?",
            vec![
                (attempts as f64).into(),
                (retry_at(attempts, now) as f64).into(),
                crate::providers::provider_errors::truncate_chars(&error.to_string(), 300)
                    .to_string()
                    .into(),
                (t.seq as f64).into(),
            ],
        )
    }

    /// When the earliest pending duty is due (a leased one: when its lease ends).
    pub fn next_due(&self) -> ApiResult<Option<Millis>> {
        let d: Vec<Due> = rows(&self.sql, "SELECT MIN(due_at) AS at FROM outbox", vec![])?;
        Ok(d.into_iter()
            .next()
            .and_then(|d| d.at)
            .map(|at| at as Millis))
    }

    /// The pending duties, for the inspector.
    pub fn describe(&self) -> ApiResult<Value> {
        #[derive(Deserialize, serde::Serialize)]
        struct Pending {
            key: String,
            attempts: f64,
            due_at: f64,
            last_error: Option<String>,
        }
        let p: Vec<Pending> = rows(
            &self.sql,
            "SELECT key, attempts, due_at, last_error FROM outbox ORDER BY seq",
            vec![],
        )?;
        Ok(json!(p))
    }
}
