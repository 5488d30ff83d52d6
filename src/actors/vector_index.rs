//! `VectorIndexActor`: one shard of the embedded vector index. Rows in DO
//! SQLite (f32 little-endian blobs) are the truth; a [`ShardIndex`] built from
//! them on first use is the cache every query scans, kept in step on writes.
//! Losing the cache (eviction) only costs a reload.

use std::cell::{Cell, RefCell};

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, State};

use super::ops::{DropContent, FireAlarm, Inspect, Inspectable, ReplaceContent, ShardCall, ShardOps, Upsert, Upserted};
use crate::domain::vector::{check_vector, ShardIndex};
use crate::error::{ApiError, ApiResult};
use crate::providers::{VectorItem, VectorMatch, VectorQuery};
use crate::runtime::config;
use crate::store::events::EventStore;
use crate::store::vector_rows::ShardRows;

#[durable_object]
pub struct VectorIndexActor {
    state: State,
    env: Env,
    cache: RefCell<Option<ShardIndex>>,
    /// The tables exist (created or found once in this instance).
    schema_ready: Cell<bool>,
}

/// Largest k one query may ask for.
pub const MAX_TOP_K: u32 = 200;

impl VectorIndexActor {
    /// The shard's rows, its tables made once per instance.
    fn rows(&self) -> ApiResult<ShardRows> {
        let rows = ShardRows::new(self.state.storage().sql());
        if !self.schema_ready.get() {
            rows.init()?;
            self.schema_ready.set(true);
        }
        Ok(rows)
    }

    /// Raises the item's fence to `version`, or refuses (409) a write of an
    /// older version or of a deleted item.
    fn admit(&self, content_id: &str, version: u32) -> ApiResult<()> {
        let rows = self.rows()?;
        let before = rows.fence(content_id)?;
        let after = before.admit(version)?;
        if after != before {
            rows.save_fence(content_id, after)?;
        }
        Ok(())
    }

    /// Builds the cache from storage once per isolate lifetime.
    fn with_index<T>(&self, f: impl FnOnce(&mut ShardIndex) -> T) -> ApiResult<T> {
        let mut slot = self.cache.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.load()?);
        }
        match slot.as_mut() {
            Some(ix) => Ok(f(ix)),
            None => Err(ApiError::Internal("vector cache".into())),
        }
    }

    fn load(&self) -> ApiResult<ShardIndex> {
        self.rows()?.load()
    }

    /// Refuses a batch with any vector the index cannot hold, before the
    /// fence is raised or anything is cached: a bad batch changes nothing.
    /// An empty index takes the first vector's dimensions (see `store`).
    fn check(&self, items: &[VectorItem]) -> ApiResult<()> {
        let dim = self.with_index(|ix| if ix.is_empty() { items.first().map_or(ix.dim(), |it| it.values.len()) } else { ix.dim() })?;
        items.iter().try_for_each(|it| check_vector(dim, &it.values)).map_err(|e| ApiError::invalid("items", e.to_string()))
    }

    fn write(&self, u: Upsert) -> ApiResult<Upserted> {
        self.check(&u.items)?;
        // All items are checked before any is written: a refused batch writes
        // nothing. Each item's (content, version) is admitted once.
        let mut admitted: Vec<(&str, u32)> = Vec::new();
        for it in &u.items {
            let key = (it.meta.content_id.as_str(), it.meta.version);
            if !admitted.contains(&key) {
                self.admit(key.0, key.1)?;
                admitted.push(key);
            }
        }
        self.store(&u.items)?;
        Ok(Upserted { upserted: u.items.len() })
    }

    /// Writes admitted items: the cache first (so a bad vector is never
    /// stored), then their rows, several to a statement.
    fn store(&self, items: &[VectorItem]) -> ApiResult<()> {
        for it in items {
            self.with_index(|ix| {
                if ix.is_empty() && ix.dim() != it.values.len() {
                    *ix = ShardIndex::new(it.values.len());
                }
                ix.upsert(&it.id, &it.namespace, &it.values, it.meta.clone())
            })?
            .map_err(|e| ApiError::invalid("items", e.to_string()))?;
        }
        self.rows()?.put(items)
    }

    fn search(&self, q: VectorQuery) -> ApiResult<Vec<VectorMatch>> {
        let k = q.top_k.min(MAX_TOP_K) as usize;
        // An empty namespace searches every namespace (the operator's search).
        let ns = Some(q.namespace.as_str()).filter(|n| !n.is_empty());
        self.with_index(|ix| ix.query(&q.vector, k, ns, q.category.as_deref()))
    }

    fn remove(&self, d: DropContent) -> ApiResult<u32> {
        match d.keep_version {
            // Keeping one version makes it current; deleting all is a tombstone.
            Some(v) => match self.admit(&d.content_id, v) {
                // A newer version's write (a replace keeps its version only)
                // or the delete already removed all this drop would: nothing
                // is left to do, and a refusal would be retried for ever.
                Err(ApiError::Fenced(_)) => return Ok(0),
                admitted => admitted?,
            },
            None => {
                let rows = self.rows()?;
                let f = rows.fence(&d.content_id)?.tombstone();
                rows.save_fence(&d.content_id, f)?;
            }
        }
        self.remove_admitted(&d.content_id, d.keep_version)
    }

    /// Drops the item's vectors but `keep_version`'s, its fence already moved.
    fn remove_admitted(&self, content_id: &str, keep_version: Option<u32>) -> ApiResult<u32> {
        let removed = self.with_index(|ix| ix.remove_content(content_id, keep_version))?;
        self.rows()?.remove_content(content_id, keep_version)?;
        Ok(removed.len() as u32)
    }

    fn shard_stats(&self) -> ApiResult<Value> {
        self.with_index(|ix| json!({ "vectors": ix.len(), "dim": ix.dim(), "memory_bytes": ix.memory_bytes() }))
    }

    fn count_content(&self, content_id: &str) -> ApiResult<Value> {
        let fence = self.rows()?.fence(content_id)?;
        self.with_index(|ix| json!({ "content_id": content_id, "vectors": ix.ids_of_content(content_id), "fence": fence }))
    }
}

impl ShardOps for VectorIndexActor {
    async fn upsert(&self, u: Upsert) -> ApiResult<Upserted> {
        self.write(u)
    }

    async fn query(&self, q: VectorQuery) -> ApiResult<Vec<VectorMatch>> {
        self.search(q)
    }

    async fn drop_content(&self, d: DropContent) -> ApiResult<u32> {
        self.remove(d)
    }

    async fn replace_content(&self, r: ReplaceContent) -> ApiResult<u32> {
        if r.items.iter().any(|it| it.meta.content_id != r.content_id || it.meta.version != r.keep_version) {
            return Err(ApiError::invalid("items", "every item must be of the replaced content and version"));
        }
        self.check(&r.items)?;
        self.admit(&r.content_id, r.keep_version)?;
        self.store(&r.items)?;
        self.remove_admitted(&r.content_id, Some(r.keep_version))
    }
}

impl Inspectable for VectorIndexActor {
    async fn inspect(&self, q: Inspect) -> ApiResult<Value> {
        let log = EventStore::new(self.state.storage().sql(), config(&self.env).retention, Default::default());
        let mut typed = self.shard_stats()?;
        if let Some(cid) = q.content_id.filter(|c| !c.is_empty()) {
            typed["content"] = self.count_content(&cid)?;
        }
        super::inspection(&self.state, "vector_index", "shard", typed, &log).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}


impl DurableObject for VectorIndexActor {
    fn new(state: State, env: Env) -> Self {
        VectorIndexActor { state, env, cache: RefCell::new(None), schema_ready: Cell::new(false) }
    }

    crate::unused_handlers!(fetch);

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(VectorIndexActor, ShardCall);
