//! The outbox table in an actor's own SQLite: the duties
//! ([`crate::domain::outbox::Duty`]) it still owes. Writes are synchronous, so
//! an actor records a duty in the same step as the state change it follows.

use std::cell::{Cell, RefCell};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::SqlStorage;

use crate::domain::outbox::{new_seq, retry_at, Duty, OwedDuties, LEASE_MS};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::store::{rows, storage_err, MAX_BOUND_PARAMS};

/// How many duties one drain has in flight at once (a deleted item with many
/// versions owes a purge per run).
pub const DRAIN_PARALLEL: usize = 8;

/// The outbox table's columns (see [`crate::store::create_table`]): one row
/// per key, so one b-tree (`WITHOUT ROWID`). Tables made before this layout
/// (`seq` the rowid, `key` unique) take the same statements.
pub const TABLE: &str = "outbox (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, duty TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL, last_error TEXT) WITHOUT ROWID";

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
    /// Duties put to be tried now, leased to this instance by their insert:
    /// the next drain tries them without reading them back.
    fresh: RefCell<Vec<Taken>>,
    /// The table's rows as this instance knows them (`None`: not read yet,
    /// or a write failed). Known, a drain with nothing else due and the alarm
    /// check read no table.
    owed: RefCell<Option<OwedDuties>>,
}

impl Default for OutboxMemory {
    fn default() -> Self {
        OutboxMemory {
            created: Cell::new(false),
            unarmed: Cell::new(true),
            draining: Cell::new(0),
            fresh: RefCell::new(Vec::new()),
            owed: RefCell::new(None),
        }
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

    /// The table was just created with the actor (see
    /// [`crate::store::create_tables`]): it exists and holds nothing.
    pub fn created_empty(&self) {
        self.created.set(true);
        self.owed.replace(Some(OwedDuties::default()));
    }

    /// Applies a landed write to the known rows, if they are known.
    fn note(&self, change: impl FnOnce(&mut OwedDuties)) {
        if let Some(owed) = self.owed.borrow_mut().as_mut() {
            change(owed);
        }
    }

    /// A statement failed: what the table holds is read again.
    fn forget_rows(&self) {
        self.owed.replace(None);
    }

    /// A transaction was rolled back (its table may be gone with it): all
    /// of it is read again, and the alarm checked. The duties put to be
    /// tried now are left to the alarm once their lease ends; the drains in
    /// flight still count.
    pub fn forget(&self) {
        self.created.set(false);
        self.unarmed.set(true);
        self.fresh.borrow_mut().clear();
        self.forget_rows();
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
    key: String,
    duty: String,
    attempts: f64,
    due_at: f64,
}

#[derive(Deserialize)]
struct Owed {
    key: String,
    seq: f64,
    due_at: f64,
}

impl<'a> Outbox<'a> {
    /// The outbox, creating its table on the first open in this instance.
    pub fn open(sql: SqlStorage, memory: &'a OutboxMemory) -> ApiResult<Self> {
        if !memory.created.get() {
            crate::store::create_table(&sql, TABLE)?;
            memory.created.set(true);
        }
        Ok(Outbox { sql, memory })
    }

    /// Runs a write; a failed one leaves the known rows unknown.
    fn write<T: serde::de::DeserializeOwned>(&self, q: &str, params: Vec<worker::SqlStorageValue>) -> ApiResult<Vec<T>> {
        rows(&self.sql, q, params).inspect_err(|_| self.memory.forget_rows())
    }

    /// Stores `duties` due at `due_at`, each replacing a pending duty with the
    /// same key under a new [`new_seq`] (so a try of the older one no longer
    /// removes it): one statement for up to a quarter of [`MAX_BOUND_PARAMS`]
    /// duties. Answers each duty as taken, the last of a repeated key only.
    fn store(&self, duties: &[Duty], due_at: Millis) -> ApiResult<Vec<Taken>> {
        self.memory.unarmed.set(true);
        let mut stored: Vec<Taken> = Vec::with_capacity(duties.len());
        for group in duties.chunks(MAX_BOUND_PARAMS / 4) {
            let keys: Vec<String> = group.iter().map(Duty::key).collect();
            self.memory.fresh.borrow_mut().retain(|t| !keys.contains(&t.duty.key()));
            let mut params = Vec::with_capacity(group.len() * 4);
            let mut taken = Vec::with_capacity(group.len());
            for (duty, key) in group.iter().zip(&keys) {
                let seq = new_seq();
                params.push(key.as_str().into());
                params.push((seq as f64).into());
                params.push(serde_json::to_string(duty).map_err(storage_err)?.into());
                params.push((due_at as f64).into());
                taken.push(Taken { seq, duty: duty.clone(), attempts: 0 });
            }
            let q = format!(
                "INSERT OR REPLACE INTO outbox (key, seq, duty, attempts, due_at) VALUES {}",
                vec!["(?, ?, ?, 0, ?)"; group.len()].join(", ")
            );
            self.write::<IgnoredAny>(&q, params)?;
            for (t, key) in taken.into_iter().zip(keys) {
                stored.retain(|s| s.duty.key() != key);
                self.memory.note(|o| o.stored(key, t.seq, due_at));
                stored.push(t);
            }
        }
        Ok(stored)
    }

    /// Owes `duties` from now on. Their rows are written leased to this
    /// instance, and the next [`Self::drain`] here tries them without reading
    /// them back: a duty that lands on its first try costs its share of one
    /// insert, and its delete. If the instance dies first, the alarm tries
    /// them when the lease ends.
    pub fn put(&self, duties: &[Duty], now: Millis) -> ApiResult<()> {
        let taken = self.store(duties, now + LEASE_MS)?;
        self.memory.fresh.borrow_mut().extend(taken);
        Ok(())
    }

    /// Owes `duty` from `due_at` on (the alarm tries it then).
    pub fn put_at(&self, duty: &Duty, due_at: Millis) -> ApiResult<()> {
        self.store(std::slice::from_ref(duty), due_at).map(|_| ())
    }

    /// The pending duty stored under `key`, if any.
    pub fn pending(&self, key: &str) -> ApiResult<Option<Duty>> {
        #[derive(serde::Deserialize)]
        struct Row {
            duty: String,
        }
        let found: Vec<Row> = rows(&self.sql, "SELECT duty FROM outbox WHERE key = ?", vec![key.into()])?;
        found.into_iter().next().map(|r| serde_json::from_str(&r.duty).map_err(storage_err)).transpose()
    }

    /// Drops a pending duty (e.g. the spawn of a run whose item was deleted).
    pub fn forget(&self, key: &str) -> ApiResult<()> {
        self.memory.fresh.borrow_mut().retain(|t| t.duty.key() != key);
        self.write::<IgnoredAny>("DELETE FROM outbox WHERE key = ?", vec![key.into()])?;
        self.memory.note(|o| o.forgotten(key));
        Ok(())
    }

    /// The duties due at `now`, oldest first, each leased for [`LEASE_MS`] so
    /// a concurrent drain does not try it too: one statement for them all,
    /// and none when the known rows say nothing is due.
    pub fn take_due(&self, now: Millis) -> ApiResult<Vec<Taken>> {
        let nothing_due = self.memory.owed.borrow().as_ref().is_some_and(|o| !o.any_due(now));
        if nothing_due {
            return Ok(Vec::new());
        }
        let leased_until = now + LEASE_MS;
        let mut found: Vec<Row> = self.write(
            "UPDATE outbox SET due_at = ? WHERE due_at <= ? RETURNING seq, key, duty, attempts, due_at",
            vec![(leased_until as f64).into(), (now as f64).into()],
        )?;
        // Oldest due first (RETURNING promises no order).
        found.sort_by(|a, b| a.due_at.total_cmp(&b.due_at));
        found
            .into_iter()
            .map(|r| {
                self.memory.note(|o| o.stored(r.key, r.seq as i64, leased_until));
                let duty: Duty = serde_json::from_str(&r.duty).map_err(storage_err)?;
                Ok(Taken { seq: r.seq as i64, duty, attempts: r.attempts as u32 })
            })
            .collect()
    }

    /// Tries the duties put in this instance and every other due duty with
    /// `perform(duty, failed tries so far)`; a failure is logged and
    /// rescheduled with backoff as it lands. Duties are independent (each is
    /// keyed and idempotent), so up to [`DRAIN_PARALLEL`] are in flight at
    /// once: a submission's run spawn and catalog row are awaited side by
    /// side, not one after the other, before the 202 is sent. The rows of
    /// the duties that landed are deleted together at the end, in one
    /// statement: if the instance dies first, they are tried again when
    /// their lease ends, which an idempotent duty allows.
    pub async fn drain<F, Fut>(&self, actor: &str, perform: F) -> ApiResult<()>
    where
        F: Fn(Duty, u32) -> Fut,
        Fut: std::future::Future<Output = ApiResult<()>>,
    {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let _draining = Draining::start(&self.memory.draining);
        let mut taken = self.memory.fresh.take();
        taken.extend(self.take_due(crate::runtime::now_ms())?);
        let landed = RefCell::new(Vec::new());
        let tried = stream::iter(taken)
            .map(|t| {
                let tried = perform(t.duty.clone(), t.attempts);
                async move { (tried.await, t) }
            })
            .buffer_unordered(DRAIN_PARALLEL)
            .map(Ok)
            .try_for_each(|(tried, t)| {
                futures::future::ready(match tried {
                    Ok(()) => {
                        landed.borrow_mut().push(t);
                        Ok(())
                    }
                    Err(e) => {
                        worker::console_error!("{actor} duty {} failed (try {}): {e}", t.duty.key(), t.attempts + 1);
                        self.failed(&t, &e, crate::runtime::now_ms())
                    }
                })
            })
            .await;
        self.done(&landed.into_inner())?;
        tried
    }

    /// Deletes the rows of duties that landed: one statement per
    /// [`MAX_BOUND_PARAMS`] / 2 of them.
    pub fn done(&self, landed: &[Taken]) -> ApiResult<()> {
        for group in landed.chunks(MAX_BOUND_PARAMS / 2) {
            let q = format!("DELETE FROM outbox WHERE {}", vec!["(key = ? AND seq = ?)"; group.len()].join(" OR "));
            let params = group.iter().flat_map(|t| [t.duty.key().into(), (t.seq as f64).into()]).collect();
            self.write::<IgnoredAny>(&q, params)?;
            for t in group {
                self.memory.note(|o| o.done(&t.duty.key(), t.seq));
            }
        }
        Ok(())
    }

    pub fn failed(&self, t: &Taken, error: &ApiError, now: Millis) -> ApiResult<()> {
        let attempts = t.attempts + 1;
        let due_at = retry_at(attempts, now);
        self.write::<IgnoredAny>(
            "UPDATE outbox SET attempts = ?, due_at = ?, last_error = ? WHERE key = ? AND seq = ?",
            vec![
                (attempts as f64).into(),
                (due_at as f64).into(),
                crate::providers::provider_errors::truncate_chars(&error.to_string(), 300)
                    .to_string()
                    .into(),
                t.duty.key().into(),
                (t.seq as f64).into(),
            ],
        )?;
        self.memory.note(|o| o.rescheduled(&t.duty.key(), t.seq, due_at));
        Ok(())
    }

    /// When the earliest pending duty is due (a leased one: when its lease
    /// ends). The rows are read once per instance, then known.
    pub fn next_due(&self) -> ApiResult<Option<Millis>> {
        if let Some(owed) = self.memory.owed.borrow().as_ref() {
            return Ok(owed.next_due());
        }
        let found: Vec<Owed> = rows(&self.sql, "SELECT key, seq, due_at FROM outbox", vec![])?;
        let mut owed = OwedDuties::default();
        for r in found {
            owed.stored(r.key, r.seq as i64, r.due_at as Millis);
        }
        let next = owed.next_due();
        self.memory.owed.replace(Some(owed));
        Ok(next)
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
            "SELECT key, attempts, due_at, last_error FROM outbox ORDER BY due_at, key",
            vec![],
        )?;
        Ok(json!(p))
    }
}
