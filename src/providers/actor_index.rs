//! The embedded vector backend: `VectorIndexActor` shards. A content's vectors
//! all live on one shard (chosen by a stable hash of its id), so replacing or
//! deleting them is a single-shard call; a query fans out to every shard and
//! merges the per-shard top-k.

use futures::future::join_all;
use worker::Env;

use super::{VectorIndex, VectorItem, VectorMatch, VectorQuery};
use crate::actors::ops::{DropContent, ReplaceContent, Upsert};
use crate::actors::rpc;
use crate::domain::pipeline::StageError;
use crate::domain::vector::shard_for;

pub struct ActorIndex {
    env: Env,
    shards: u32,
}

pub fn shard_name(n: u32) -> String {
    format!("shard-{n}")
}

impl ActorIndex {
    pub fn new(env: Env, shards: u32) -> Self {
        ActorIndex { env, shards: shards.max(1) }
    }
}

impl VectorIndex for ActorIndex {
    fn backend(&self) -> &'static str {
        "actor"
    }

    async fn upsert(&self, items: Vec<VectorItem>) -> Result<(), StageError> {
        let mut by_shard: Vec<Vec<VectorItem>> = (0..self.shards).map(|_| Vec::new()).collect();
        for it in items {
            let s = shard_for(&it.meta.content_id, self.shards) as usize;
            by_shard[s].push(it);
        }
        for (n, batch) in by_shard.into_iter().enumerate().filter(|(_, b)| !b.is_empty()) {
            rpc::send(&self.env, &shard_name(n as u32), &Upsert { items: batch }).await.map_err(StageError::from)?;
        }
        Ok(())
    }

    async fn query(&self, q: &VectorQuery) -> Result<Vec<VectorMatch>, StageError> {
        let payload = rpc::encode(q).map_err(StageError::from)?;
        let calls = (0..self.shards).map(|n| {
            let (env, payload) = (&self.env, payload.clone());
            async move { rpc::send_encoded::<VectorQuery>(env, &shard_name(n), payload).await }
        });
        let mut all = Vec::new();
        for r in join_all(calls).await {
            all.extend(r.map_err(StageError::from)?);
        }
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        all.truncate(q.top_k as usize);
        Ok(all)
    }

    async fn delete_content(&self, content_id: &str, keep_version: Option<u32>) -> Result<u32, StageError> {
        let shard = shard_for(content_id, self.shards);
        let drop = DropContent { content_id: content_id.to_string(), keep_version };
        rpc::send(&self.env, &shard_name(shard), &drop).await.map_err(StageError::from)
    }

    /// One call: a content's vectors all live on its shard, which applies
    /// the upsert and the removal of other versions in one synchronous step.
    /// Its fence refusal is transient: the next attempt's currency check
    /// ends the run as superseded.
    async fn replace_content(&self, content_id: &str, version: u32, items: Vec<VectorItem>) -> Result<(), StageError> {
        let shard = shard_for(content_id, self.shards);
        if let Some(stray) = items.iter().find(|it| it.meta.content_id != content_id) {
            return Err(StageError::terminal(format!("vector {} belongs to another content", stray.id)));
        }
        let replace = ReplaceContent { content_id: content_id.to_string(), keep_version: version, items };
        rpc::send(&self.env, &shard_name(shard), &replace).await.map_err(StageError::from)?;
        Ok(())
    }
}
