//! A bulk import's documents, kept by its batch actor from the import until
//! each item's content actor holds its own (or the item fails for good):
//! one row per item, so a spawn reads one document, not the whole batch.

use serde::Deserialize;
use worker::SqlStorage;

use super::{create_table, exec, rows, storage_err};
use crate::actors::ops::BatchDoc;
use crate::error::{ApiError, ApiResult};

const TABLE: &str = "batch_docs (idx INTEGER PRIMARY KEY, doc TEXT NOT NULL)";

#[derive(Deserialize)]
struct DocRow {
    doc: String,
}

pub struct BatchDocs {
    sql: SqlStorage,
}

impl BatchDocs {
    pub fn new(sql: SqlStorage) -> Self {
        BatchDocs { sql }
    }

    /// Keeps a new batch's documents, item `i` under index `i`.
    pub fn create(&self, docs: &[BatchDoc]) -> ApiResult<()> {
        create_table(&self.sql, TABLE)?;
        for (i, doc) in docs.iter().enumerate() {
            let text = serde_json::to_string(doc)?;
            exec(&self.sql, "INSERT OR REPLACE INTO batch_docs (idx, doc) VALUES (?, ?)", vec![(i as f64).into(), text.into()])?;
        }
        Ok(())
    }

    /// Item `index`'s document; gone once the item no longer needs it.
    pub fn get(&self, index: u32) -> ApiResult<BatchDoc> {
        let found: Vec<DocRow> = rows(&self.sql, "SELECT doc FROM batch_docs WHERE idx = ?", vec![(index as f64).into()])?;
        let row = found.into_iter().next().ok_or_else(|| ApiError::not_found(format!("batch item {index}")))?;
        serde_json::from_str(&row.doc).map_err(storage_err)
    }

    pub fn delete(&self, index: u32) -> ApiResult<()> {
        exec(&self.sql, "DELETE FROM batch_docs WHERE idx = ?", vec![(index as f64).into()])
    }
}
