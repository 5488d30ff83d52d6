//! Bulk imports on the `INGEST` queue: the producer (a batch's items, in
//! `sendBatch` calls within Queues' limits) and the consumers of the queue
//! and of its dead-letter queue.
//!
//! Each message names one item (batch id, index). The consumer asks the
//! item's `BatchActor` what to do ([`Claim`]): spawn it (create its content
//! actor, which spawns the run, as `POST /api/content` does), or acknowledge
//! it (already settled, or deferred: the batch is at its in-flight cap and
//! puts the item back on the queue itself when a run ends). A failed spawn is
//! retried with backoff by the queue; after `max_retries` the message goes to
//! the dead-letter queue, whose consumer marks the item failed.

use std::collections::BTreeMap;

use serde_json::json;
use uuid::Uuid;
use worker::{Env, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::actors::batch::ClaimAnswer;
use crate::actors::rpc::{self, ActorKind};
use crate::domain::batch::{Claim, IngestMessage, ItemRef};
use crate::domain::faults;
use crate::error::{ApiError, ApiResult};
use crate::protocol::Accepted;
use crate::runtime::config;

/// The producer binding.
pub const BINDING: &str = "INGEST";
/// Queues' documented cap per `sendBatch` call: 100 messages (and 256 KB;
/// an [`IngestMessage`] is under 100 bytes, so the count is what binds).
const SEND_BATCH_MAX: usize = 100;

/// Puts items `indexes` of `batch_id` on the queue.
pub async fn enqueue(env: &Env, batch_id: Uuid, indexes: impl IntoIterator<Item = u32>) -> ApiResult<()> {
    let queue = env.queue(BINDING)?;
    let messages: Vec<IngestMessage> = indexes.into_iter().map(|index| IngestMessage { batch_id, index }).collect();
    for chunk in messages.chunks(SEND_BATCH_MAX) {
        queue.send_batch(chunk.to_vec()).await.map_err(|e| ApiError::Unavailable(format!("ingest queue: {e}")))?;
    }
    Ok(())
}

/// One delivery of the queue (`dead`: of its dead-letter queue). Every
/// message is settled (acknowledged or retried) here; nothing is thrown, so
/// one bad message never makes the whole delivery retry. Messages are handled
/// per batch, with one call to its `BatchActor` per step for all of them.
pub async fn consume(batch: worker::MessageBatch<serde_json::Value>, env: Env) {
    let dead = batch.queue() == crate::config::INGEST_DLQ;
    let mut by_batch: BTreeMap<Uuid, Vec<Delivered>> = BTreeMap::new();
    for raw in batch.raw_iter() {
        match serde_wasm_bindgen::from_value::<IngestMessage>(raw.body()) {
            Ok(msg) => by_batch.entry(msg.batch_id).or_default().push(Delivered { raw, msg }),
            Err(_) => {
                worker::console_error!("ingest: dropped a message that is not an item reference");
                raw.ack();
            }
        }
    }
    let env = &env;
    futures::future::join_all(by_batch.into_iter().map(|(id, msgs)| async move {
        let outcome = if dead { dead_lettered(env, id, &msgs).await } else { deliver(env, id, &msgs).await };
        match outcome {
            Ok(()) => {}
            // The batch is gone (never created, or erased): nothing to do.
            Err(ApiError::NotFound(_)) => msgs.iter().for_each(|m| m.raw.ack()),
            Err(e) => {
                worker::console_error!("ingest: batch {id}: {e}");
                msgs.iter().for_each(|m| retry(&m.raw, 1));
            }
        }
    }))
    .await;
}

struct Delivered {
    raw: RawMessage,
    msg: IngestMessage,
}

fn retry(raw: &RawMessage, delay_secs: u32) {
    raw.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay_secs).build());
}

async fn deliver(env: &Env, batch_id: Uuid, msgs: &[Delivered]) -> ApiResult<()> {
    let name = batch_id.to_string();
    let indexes: Vec<u32> = msgs.iter().map(|m| m.msg.index).collect();
    let answers: Vec<ClaimAnswer> = rpc::call(env, ActorKind::Batch, &name, "claim", &json!({ "indexes": indexes })).await?;
    let mut spawns = Vec::new();
    for (answer, m) in answers.into_iter().zip(msgs) {
        match answer.claim {
            // Deferred: the batch puts the item back on the queue when there is room.
            Claim::Done | Claim::Defer => m.raw.ack(),
            Claim::Spawn { content_id, run_id } => spawns.push((m, content_id, run_id, answer)),
        }
    }
    if spawns.is_empty() {
        return Ok(());
    }
    let results = futures::future::join_all(spawns.iter().map(|(m, cid, rid, a)| spawn(env, &m.msg, *cid, *rid, a))).await;
    let mut spawned = Vec::new();
    let mut failures = Vec::new();
    for ((m, ..), r) in spawns.iter().zip(results) {
        match r {
            Ok(()) => spawned.push(m),
            Err(e) => failures.push((m, e.to_string())),
        }
    }
    if !spawned.is_empty() {
        // Best effort: each item's end report settles it anyway.
        let indexes: Vec<u32> = spawned.iter().map(|m| m.msg.index).collect();
        let _: ApiResult<serde_json::Value> = rpc::call(env, ActorKind::Batch, &name, "spawned", &json!({ "indexes": indexes })).await;
        spawned.iter().for_each(|m| m.raw.ack());
    }
    if !failures.is_empty() {
        let body = json!({ "failures": failures.iter().map(|(m, e)| json!({ "index": m.msg.index, "error": e })).collect::<Vec<_>>() });
        let delays: ApiResult<serde_json::Value> = rpc::call(env, ActorKind::Batch, &name, "spawn_failed", &body).await;
        let delays = delays.unwrap_or_default();
        for (i, (m, _)) in failures.iter().enumerate() {
            let delay = delays["delays"][i]["delay_secs"].as_u64().unwrap_or(1) as u32;
            // Counted by the queue: after max_retries it goes to the dead-letter queue.
            retry(&m.raw, delay);
        }
    }
    Ok(())
}

/// Creates the item's content actor under the batch's ownership: the same
/// `create` as `POST /api/content`, with ids derived from the item so a
/// second delivery is answered with the first one's result.
async fn spawn(env: &Env, msg: &IngestMessage, content_id: Uuid, run_id: Uuid, answer: &ClaimAnswer) -> ApiResult<()> {
    let (Some(item), Some(ownership)) = (&answer.item, &answer.ownership) else {
        return Err(ApiError::Internal("a spawn claim without its item".into()));
    };
    if let Some(fault) = config(env).faults.poisons(faults::INGEST, &item.doc.title) {
        return Err(ApiError::Unavailable(fault));
    }
    let body = json!({
        "content_id": content_id, "run_id": run_id, "doc": item.doc, "ownership": ownership,
        "visibility": item.visibility, "batch": ItemRef { batch_id: msg.batch_id, index: msg.index },
    });
    let _: Accepted = rpc::call(env, ActorKind::Content, &content_id.to_string(), "create", &body).await?;
    Ok(())
}

/// Items whose messages exhausted their retries fail, with their last error.
async fn dead_lettered(env: &Env, batch_id: Uuid, msgs: &[Delivered]) -> ApiResult<()> {
    let indexes: Vec<u32> = msgs.iter().map(|m| m.msg.index).collect();
    let _: serde_json::Value = rpc::call(env, ActorKind::Batch, &batch_id.to_string(), "dead_lettered", &json!({ "indexes": indexes })).await?;
    msgs.iter().for_each(|m| m.raw.ack());
    Ok(())
}
