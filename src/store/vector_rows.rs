//! One vector shard's rows in its own SQLite: the vectors (f32
//! little-endian blobs) and each item's write fence. The shard actor
//! (`actors::vector_index`) keeps its in-memory index in step with them.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

use super::{exec, rows, storage_err, MAX_BOUND_PARAMS};
use crate::domain::vector::{encode_f32_le, Fence, ShardIndex, VectorMeta};
use crate::error::ApiError;
use crate::providers::VectorItem;

pub struct ShardRows {
    sql: SqlStorage,
}

impl ShardRows {
    pub fn new(sql: SqlStorage) -> Self {
        ShardRows { sql }
    }

    pub fn init(&self) -> Result<(), ApiError> {
        exec(
            &self.sql,
            "CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, content_id TEXT NOT NULL,
               version INTEGER NOT NULL, chunk INTEGER NOT NULL, category TEXT, dim INTEGER NOT NULL, v BLOB NOT NULL)",
            vec![],
        )?;
        exec(&self.sql, "CREATE INDEX IF NOT EXISTS vectors_by_content ON vectors (content_id)", vec![])?;
        exec(
            &self.sql,
            "CREATE TABLE IF NOT EXISTS fences (content_id TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL)",
            vec![],
        )
    }

    pub fn fence(&self, content_id: &str) -> Result<Fence, ApiError> {
        #[derive(Deserialize)]
        struct Row {
            version: f64,
            deleted: f64,
        }
        let r: Vec<Row> = rows(&self.sql, "SELECT version, deleted FROM fences WHERE content_id = ?", vec![content_id.into()])?;
        Ok(r.first().map(|r| Fence { version: r.version as u32, deleted: r.deleted != 0.0 }).unwrap_or_default())
    }

    pub fn save_fence(&self, content_id: &str, f: Fence) -> Result<(), ApiError> {
        exec(
            &self.sql,
            "INSERT OR REPLACE INTO fences (content_id, version, deleted) VALUES (?, ?, ?)",
            vec![content_id.into(), (f.version as i64).into(), (f.deleted as i64).into()],
        )
    }

    /// Every stored vector, as an index (an empty one of the embedder's
    /// dimensions when there is none).
    pub fn load(&self) -> Result<ShardIndex, ApiError> {
        let cursor = self
            .sql
            .exec("SELECT id, namespace, content_id, version, chunk, category, dim, v FROM vectors", None)
            .map_err(storage_err)?;
        let mut ix: Option<ShardIndex> = None;
        for row in cursor.raw() {
            let Ok(cols) = row else { continue };
            let mut it = cols.into_iter();
            let (Some(SqlStorageValue::String(id)), Some(SqlStorageValue::String(ns)), Some(SqlStorageValue::String(cid))) =
                (it.next(), it.next(), it.next())
            else {
                continue;
            };
            let version = as_int(it.next()) as u32;
            let chunk = as_int(it.next()) as u32;
            let category = match it.next() {
                Some(SqlStorageValue::String(c)) => Some(c),
                _ => None,
            };
            let dim = as_int(it.next()) as usize;
            let Some(SqlStorageValue::Blob(blob)) = it.next() else { continue };
            let ix = ix.get_or_insert_with(|| ShardIndex::new(dim));
            let meta = VectorMeta { content_id: cid, version, chunk, category };
            let _ = ix.upsert_blob(&id, &ns, &blob, meta);
        }
        Ok(ix.unwrap_or_else(|| ShardIndex::new(crate::nlp::embed::EMBED_DIM)))
    }

    /// Writes `items`' rows, several to a statement.
    pub fn put(&self, items: &[VectorItem]) -> Result<(), ApiError> {
        for batch in items.chunks(MAX_BOUND_PARAMS / 8) {
            let mut params: Vec<SqlStorageValue> = Vec::with_capacity(batch.len() * 8);
            for it in batch {
                params.extend([
                    it.id.clone().into(),
                    it.namespace.clone().into(),
                    it.meta.content_id.clone().into(),
                    (it.meta.version as i64).into(),
                    (it.meta.chunk as i64).into(),
                    it.meta.category.clone().into(),
                    (it.values.len() as i64).into(),
                    encode_f32_le(&it.values).into(),
                ]);
            }
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; batch.len()].join(", ");
            exec(
                &self.sql,
                &format!("INSERT OR REPLACE INTO vectors (id, namespace, content_id, version, chunk, category, dim, v) VALUES {values}"),
                params,
            )?;
        }
        Ok(())
    }

    /// Deletes the item's rows but `keep_version`'s.
    pub fn remove_content(&self, content_id: &str, keep_version: Option<u32>) -> Result<(), ApiError> {
        match keep_version {
            Some(v) => exec(&self.sql, "DELETE FROM vectors WHERE content_id = ? AND version != ?", vec![content_id.into(), (v as i64).into()]),
            None => exec(&self.sql, "DELETE FROM vectors WHERE content_id = ?", vec![content_id.into()]),
        }
    }
}

fn as_int(v: Option<SqlStorageValue>) -> i64 {
    match v {
        Some(SqlStorageValue::Integer(i)) => i,
        Some(SqlStorageValue::Float(f)) => f as i64,
        _ => 0,
    }
}
