//! Durable Object SQLite access shared by every actor.
//!
//! `StateCell` keeps an actor's typed state as JSON rows; `EventStore` is the
//! one event log all actors use. Both are synchronous (DO SQLite is), so a
//! state change and the events it caused are written without an `await` in
//! between and land together.

pub mod batch_docs;
pub mod feed_ledger;
pub mod events;
pub mod fingerprints;
pub mod outbox;
pub mod subscribers;
pub mod transaction;
pub mod vector_rows;

use std::marker::PhantomData;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{SqlStorage, SqlStorageValue};

use crate::error::ApiError;

/// Most parameters one statement may bind in Durable Object SQLite
/// (developers.cloudflare.com/durable-objects/platform/limits/): multi-row
/// inserts split their rows to stay under it.
pub const MAX_BOUND_PARAMS: usize = 100;

/// Most bytes one string or BLOB (and one row) may hold in Durable Object
/// SQLite (the same limits page): 2 MB.
pub const MAX_VALUE_BYTES: usize = 2_000_000;

pub fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("storage: {e}"))
}

/// Runs a statement and deserializes every row.
pub fn rows<T: DeserializeOwned>(sql: &SqlStorage, q: &str, params: Vec<SqlStorageValue>) -> Result<Vec<T>, ApiError> {
    sql.exec(q, params).and_then(|c| c.to_array::<T>()).map_err(storage_err)
}

pub fn exec(sql: &SqlStorage, q: &str, params: Vec<SqlStorageValue>) -> Result<(), ApiError> {
    sql.exec(q, params).map(|_| ()).map_err(storage_err)
}

/// The key of one value in an actor's `state` table, with the type it
/// holds, so a load and a save of one key cannot disagree on its type and
/// a mistyped key does not compile. Each actor declares its cells once.
pub struct StateKey<T> {
    pub name: &'static str,
    value: PhantomData<fn() -> T>,
}

// Copy whatever `T` is (a derive would ask `T: Copy`): it is only a key.
impl<T> Clone for StateKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for StateKey<T> {}

impl<T> StateKey<T> {
    pub const fn named(name: &'static str) -> Self {
        StateKey { name, value: PhantomData }
    }
}

/// Typed JSON values by [`StateKey`], in table `state`.
#[derive(Clone)]
pub struct StateCell {
    sql: SqlStorage,
}

#[derive(serde::Deserialize)]
struct Row {
    v: String,
}

impl StateCell {
    /// Does not create the table: see [`init_state`].
    pub fn new(sql: SqlStorage) -> Self {
        StateCell { sql }
    }

    pub fn load<T: DeserializeOwned>(&self, key: StateKey<T>) -> Result<Option<T>, ApiError> {
        let found: Vec<Row> = rows(&self.sql, "SELECT v FROM state WHERE k = ?", vec![key.name.into()])?;
        match found.into_iter().next() {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.v).map(Some).map_err(storage_err),
        }
    }

    pub fn save<T: Serialize>(&self, key: StateKey<T>, value: &T) -> Result<(), ApiError> {
        self.save_json(key, serde_json::to_string(value).map_err(storage_err)?)
    }

    /// Saves a value its caller already encoded (to check its size first).
    pub fn save_json<T>(&self, key: StateKey<T>, json: String) -> Result<(), ApiError> {
        exec(&self.sql, "INSERT OR REPLACE INTO state (k, v) VALUES (?, ?)", vec![key.name.into(), json.into()])
    }

    pub fn delete<T>(&self, key: StateKey<T>) -> Result<(), ApiError> {
        exec(&self.sql, "DELETE FROM state WHERE k = ?", vec![key.name.into()])
    }
}

/// A raw view of an actor's tables for the inspector: name, row count, first rows.
pub fn describe_tables(sql: &SqlStorage, sample: usize) -> serde_json::Value {
    #[derive(serde::Deserialize)]
    struct Name {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Count {
        n: f64,
    }
    let names: Vec<Name> = rows(
        sql,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name",
        vec![],
    )
    .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for Name { name } in names {
        let count = rows::<Count>(sql, &format!("SELECT COUNT(*) AS n FROM \"{name}\""), vec![])
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|c| c.n as u64)
            .unwrap_or(0);
        let first: Vec<serde_json::Value> = sql
            .exec(&format!("SELECT * FROM \"{name}\" LIMIT {sample}"), None)
            .and_then(|c| c.to_array::<serde_json::Value>())
            .unwrap_or_default()
            .into_iter()
            .map(truncate_value)
            .collect();
        out.insert(name, serde_json::json!({ "rows": count, "first": first }));
    }
    out.insert("database_size".into(), serde_json::json!(sql.database_size()));
    serde_json::Value::Object(out)
}

/// Long strings (bodies, blobs) are cut so an inspection stays readable.
fn truncate_value(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() > 300 => {
            Value::String(format!("{}… ({} bytes)", crate::domain::byte_prefix(&s, 300), s.len()))
        }
        Value::Array(a) if a.len() > 16 => Value::String(format!("[{} items]", a.len())),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, truncate_value(v))).collect()),
        other => other,
    }
}

/// Whether this actor was ever created: its `state` table exists. Checked
/// before any read so that looking at an unknown id writes nothing.
pub fn has_state(sql: &SqlStorage) -> bool {
    table_exists(sql, "state")
}

/// Whether this actor's SQLite has table `name` (a read of a missing table
/// fails; this tells that apart from a real failure).
pub fn table_exists(sql: &SqlStorage, name: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct N {
        n: f64,
    }
    rows::<N>(sql, "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?", vec![name.into()])
        .is_ok_and(|r| r.first().is_some_and(|n| n.n > 0.0))
}

/// The `state` table's columns (see [`create_table`]): keyed by name, so one
/// b-tree (`WITHOUT ROWID`) where a rowid table would keep two (the table and
/// its key's index) to create and to write on every save. Tables made before
/// (with a rowid) take the same statements.
pub const STATE_TABLE: &str = "state (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID";

pub fn init_state(sql: &SqlStorage) -> Result<(), ApiError> {
    create_table(sql, STATE_TABLE)
}

/// Creates `table` (its name and columns, as the modules' `TABLE`
/// constants give them) unless it exists.
pub fn create_table(sql: &SqlStorage, table: &str) -> Result<(), ApiError> {
    exec(sql, &format!("CREATE TABLE IF NOT EXISTS {table}"), vec![])
}

/// Creates a new actor's `tables` in one statement, and answers whether it
/// did. `false` when one of them already existed (or the write failed): then
/// the caller assumes nothing, creates each table unless it exists and reads
/// what they hold, as for any actor it finds. `true` tells the actor that
/// all of them are new and empty, so it need not read them. (One `exec` runs
/// every statement of its query: developers.cloudflare.com/durable-objects/api/sql-storage.)
pub fn create_new_tables(sql: &SqlStorage, tables: &[&str]) -> bool {
    let q: Vec<String> = tables.iter().map(|t| format!("CREATE TABLE {t}")).collect();
    exec(sql, &q.join("; "), vec![]).is_ok()
}

/// [`init_state`] once per actor instance: `created` is the instance's
/// memory that the table exists, so later calls cost no statement.
pub fn init_state_once(sql: &SqlStorage, created: &std::cell::Cell<bool>) -> Result<(), ApiError> {
    if !created.get() {
        init_state(sql)?;
        created.set(true);
    }
    Ok(())
}
