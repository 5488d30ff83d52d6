//! What stages hand each other: typed artifacts in the run's `artifacts`
//! table. A key names its value's type once, here, so a stage cannot mistype
//! a key or read a value as another type. The keys are the stored row keys:
//! changing one would orphan the artifacts of runs already in storage.

use std::marker::PhantomData;

use crate::domain::vector::{decode_f32_le, encode_f32_le};
use crate::providers::Extraction;

/// The row key of a stored artifact, untyped: what a [`super::StageSpec`]
/// lists as read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactKey(pub &'static str);

/// An artifact stored as JSON text (the `v` column) and read back as a `T`.
pub struct Artifact<T> {
    pub key: ArtifactKey,
    value: PhantomData<fn() -> T>,
}

/// An artifact stored as compact bytes (the `b` column), encoded by [`Blob`].
pub struct BlobArtifact<T> {
    pub key: ArtifactKey,
    value: PhantomData<fn() -> T>,
}

// Copy whatever `T` is (a derive would ask `T: Copy`): they are only a key.
impl<T> Clone for Artifact<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Artifact<T> {}
impl<T> Clone for BlobArtifact<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for BlobArtifact<T> {}

impl<T> Artifact<T> {
    const fn named(key: &'static str) -> Self {
        Artifact { key: ArtifactKey(key), value: PhantomData }
    }
}

impl<T: Blob> BlobArtifact<T> {
    const fn named(key: &'static str) -> Self {
        BlobArtifact { key: ArtifactKey(key), value: PhantomData }
    }
}

/// A value kept as bytes rather than JSON.
pub trait Blob: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    /// `None` when the bytes are not a valid encoding.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Vectors as little-endian f32s: JSON would be 3-4x larger and slow to parse.
impl Blob for Vec<f32> {
    fn to_bytes(&self) -> Vec<u8> {
        encode_f32_le(self)
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        decode_f32_le(bytes)
    }
}

/// The vector namespace of the run's item, written by the run's start.
pub const NAMESPACE: Artifact<String> = Artifact::named("namespace");
/// An upload's extracted text: from `validate` on, the run's body, so later
/// stages and retries never extract again.
pub const EXTRACTED_TEXT: Artifact<String> = Artifact::named("extracted_text");
pub const CHUNKS: Artifact<Vec<String>> = Artifact::named("chunks");
/// The length of each vector in [`VECTORS`].
pub const DIM: Artifact<usize> = Artifact::named("dim");
/// One vector per chunk, back to back.
pub const VECTORS: BlobArtifact<Vec<f32>> = BlobArtifact::named("vectors");
/// The version whose vectors an index attempt sent to a backend that applies
/// writes later (Vectorize): a retry waits for that write instead of
/// sending it again, which would only lengthen the backend's queue.
pub const INDEX_SENT: Artifact<u32> = Artifact::named("index_sent");
pub const SUMMARY: Artifact<String> = Artifact::named("summary");
pub const EXTRACTION: Artifact<Extraction> = Artifact::named("extraction");
pub const ANALYSIS: Artifact<serde_json::Value> = Artifact::named("analysis");

/// What the run's start writes before any stage runs.
pub const RUN_START_WRITES: &[ArtifactKey] = &[NAMESPACE.key];

#[cfg(target_arch = "wasm32")]
pub use store::{ArtifactMemory, ArtifactStore, TABLE};

#[cfg(target_arch = "wasm32")]
mod store {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use worker::SqlStorage;

    use super::{Artifact, Blob, BlobArtifact};
    use crate::domain::pipeline::StageError;
    use crate::error::ApiError;
    use crate::store::{exec, rows, MAX_VALUE_BYTES};

    /// The artifacts' table (see [`crate::store::create_table`]): one b-tree,
    /// as the state table (`WITHOUT ROWID`).
    pub const TABLE: &str = "artifacts (k TEXT PRIMARY KEY, v TEXT, b BLOB) WITHOUT ROWID";

    /// The run's stage outputs, as JSON text or compact blobs.
    #[derive(Clone)]
    pub struct ArtifactStore {
        sql: SqlStorage,
        memory: ArtifactMemory,
    }

    /// The artifacts this run instance wrote or read, by key. The run is
    /// their only writer, so a later stage of the same instance reads them
    /// here instead of from SQLite (and across the wasm boundary again).
    #[derive(Clone, Default)]
    pub struct ArtifactMemory(Rc<RefCell<HashMap<&'static str, Stored>>>);

    impl ArtifactMemory {
        /// A transaction was rolled back: each artifact is read again.
        pub fn forget(&self) {
            self.0.borrow_mut().clear();
        }
    }

    #[derive(Clone)]
    enum Stored {
        Text(Rc<String>),
        Blob(Rc<Vec<u8>>),
    }

    #[derive(serde::Deserialize)]
    struct TextRow {
        v: String,
    }

    /// An artifact past what SQLite stores in one value fails its stage for
    /// good, saying so: a retry would make the same one.
    fn fits(key: &str, bytes: usize) -> Result<(), StageError> {
        // With room for the row's own header beside the key and the value.
        if key.len() + bytes > MAX_VALUE_BYTES - 4096 {
            return Err(StageError::terminal(format!("artifact {key} is {bytes} bytes, more than one stored value holds ({MAX_VALUE_BYTES})")));
        }
        Ok(())
    }

    impl ArtifactStore {
        pub fn new(sql: SqlStorage, memory: ArtifactMemory) -> Self {
            ArtifactStore { sql, memory }
        }

        fn remembered(&self, key: &'static str) -> Option<Stored> {
            self.memory.0.borrow().get(key).cloned()
        }

        fn remember(&self, key: &'static str, value: Stored) {
            self.memory.0.borrow_mut().insert(key, value);
        }

        /// Deletes every artifact (a purged run keeps none).
        pub fn clear(&self) -> Result<(), ApiError> {
            self.memory.0.borrow_mut().clear();
            exec(&self.sql, "DELETE FROM artifacts", vec![])
        }

        pub fn init(&self) -> Result<(), ApiError> {
            crate::store::create_table(&self.sql, TABLE)
        }

        pub fn put<T: Serialize>(&self, artifact: Artifact<T>, value: &T) -> Result<(), StageError> {
            let key = artifact.key.0;
            let v = serde_json::to_string(value).map_err(|e| StageError::terminal(e.to_string()))?;
            fits(key, v.len())?;
            exec(&self.sql, "INSERT OR REPLACE INTO artifacts (k, v) VALUES (?, ?)", vec![key.into(), v.clone().into()])
                .map_err(|e| StageError::transient(e.to_string()))?;
            self.remember(key, Stored::Text(Rc::new(v)));
            Ok(())
        }

        pub fn get<T: DeserializeOwned>(&self, artifact: Artifact<T>) -> Result<T, StageError> {
            let key = artifact.key.0;
            let text = match self.remembered(key) {
                Some(Stored::Text(t)) => t,
                _ => {
                    let r: Vec<TextRow> = rows(&self.sql, "SELECT v FROM artifacts WHERE k = ? AND v IS NOT NULL", vec![key.into()])
                        .map_err(|e| StageError::transient(e.to_string()))?;
                    let row = r.into_iter().next().ok_or_else(|| StageError::terminal(format!("missing artifact {key}")))?;
                    let t = Rc::new(row.v);
                    self.remember(key, Stored::Text(Rc::clone(&t)));
                    t
                }
            };
            serde_json::from_str(&text).map_err(|e| StageError::terminal(format!("artifact {key}: {e}")))
        }

        pub fn get_opt<T: DeserializeOwned>(&self, artifact: Artifact<T>) -> Option<T> {
            self.get(artifact).ok()
        }

        pub fn put_blob<T: Blob>(&self, artifact: BlobArtifact<T>, value: &T) -> Result<(), StageError> {
            let key = artifact.key.0;
            let bytes = value.to_bytes();
            fits(key, bytes.len())?;
            exec(&self.sql, "INSERT OR REPLACE INTO artifacts (k, b) VALUES (?, ?)", vec![key.into(), bytes.clone().into()])
                .map_err(|e| StageError::transient(e.to_string()))?;
            self.remember(key, Stored::Blob(Rc::new(bytes)));
            Ok(())
        }

        pub fn get_blob<T: Blob>(&self, artifact: BlobArtifact<T>) -> Result<T, StageError> {
            let key = artifact.key.0;
            let bytes = match self.remembered(key) {
                Some(Stored::Blob(b)) => b,
                _ => {
                    let cursor = self
                        .sql
                        .exec("SELECT b FROM artifacts WHERE k = ?", vec![key.into()])
                        .map_err(|e| StageError::transient(e.to_string()))?;
                    let Some(b) = cursor.raw().flatten().find_map(|values| match values.into_iter().next() {
                        Some(worker::SqlStorageValue::Blob(b)) => Some(b),
                        _ => None,
                    }) else {
                        return Err(StageError::terminal(format!("missing artifact {key}")));
                    };
                    let b = Rc::new(b);
                    self.remember(key, Stored::Blob(Rc::clone(&b)));
                    b
                }
            };
            T::from_bytes(&bytes).ok_or_else(|| StageError::terminal(format!("{key} blob is corrupt")))
        }
    }
}
