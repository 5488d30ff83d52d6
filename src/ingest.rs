//! Bulk imports on the `INGEST` queue: the producer (a batch's items, in
//! `sendBatch` calls within Queues' limits) and the consumers of the queue
//! and of its dead-letter queue.
//!
//! Each message names one item (batch id, index). The consumer asks the
//! item's `BatchActor` what to do ([`Claim`]): spawn it (create its content
//! actor, which spawns the run, as `POST /api/content` does), wait for room
//! under the batch's in-flight cap (the message is sent again with a delay, so
//! waiting never uses up its retries), or acknowledge it. A failed spawn is
//! retried with backoff by the queue; after `max_retries` the message goes to
//! the dead-letter queue, whose consumer marks the item failed.

use serde_json::json;
use worker::{Env, MessageBuilder, MessageExt, QueueRetryOptionsBuilder, RawMessage};

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

/// Puts items `0..total` of `batch_id` on the queue.
pub async fn enqueue(env: &Env, batch_id: uuid::Uuid, total: u32) -> ApiResult<()> {
    let queue = env.queue(BINDING)?;
    let messages: Vec<IngestMessage> = (0..total).map(|index| IngestMessage { batch_id, index }).collect();
    for chunk in messages.chunks(SEND_BATCH_MAX) {
        queue.send_batch(chunk.to_vec()).await.map_err(|e| ApiError::Unavailable(format!("ingest queue: {e}")))?;
    }
    Ok(())
}

/// One delivery of the queue (`dead`: of its dead-letter queue). Every
/// message is settled (acknowledged or retried) here; nothing is thrown, so
/// one bad message never makes the whole delivery retry.
pub async fn consume(batch: worker::MessageBatch<serde_json::Value>, env: Env) {
    let dead = batch.queue() == crate::config::INGEST_DLQ;
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    futures::future::join_all(messages.iter().map(|m| settle(&env, m, dead))).await;
}

async fn settle(env: &Env, raw: &RawMessage, dead: bool) {
    let Ok(msg) = serde_wasm_bindgen::from_value::<IngestMessage>(raw.body()) else {
        worker::console_error!("ingest: dropped a message that is not an item reference");
        return raw.ack();
    };
    let outcome = if dead { dead_lettered(env, &msg).await } else { deliver(env, &msg).await };
    match outcome {
        Ok(Settled::Ack) => raw.ack(),
        Ok(Settled::Retry { delay_secs }) => raw.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay_secs).build()),
        // The batch is gone (never created, or erased): nothing to do.
        Err(ApiError::NotFound(_)) => raw.ack(),
        Err(e) => {
            worker::console_error!("ingest: batch {} item {}: {e}", msg.batch_id, msg.index);
            raw.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(1).build())
        }
    }
}

enum Settled {
    Ack,
    Retry { delay_secs: u32 },
}

async fn deliver(env: &Env, msg: &IngestMessage) -> ApiResult<Settled> {
    let batch = msg.batch_id.to_string();
    let index = json!({ "index": msg.index });
    let answer: ClaimAnswer = rpc::call(env, ActorKind::Batch, &batch, "claim", &index).await?;
    match answer.claim {
        Claim::Done => Ok(Settled::Ack),
        Claim::Wait { delay_secs } => {
            // A fresh message, so waiting for room does not count as a failed attempt.
            let again = MessageBuilder::new(msg.clone()).delay_seconds(delay_secs).build();
            match env.queue(BINDING)?.send(again).await {
                Ok(()) => Ok(Settled::Ack),
                Err(_) => Ok(Settled::Retry { delay_secs }),
            }
        }
        Claim::Spawn { content_id, run_id } => match spawn(env, msg, content_id, run_id, answer).await {
            Ok(()) => {
                // Best effort: the item's end report settles it anyway.
                let _: ApiResult<serde_json::Value> = rpc::call(env, ActorKind::Batch, &batch, "spawned", &index).await;
                Ok(Settled::Ack)
            }
            Err(e) => {
                let failed = json!({ "index": msg.index, "error": e.to_string() });
                let delay: ApiResult<serde_json::Value> = rpc::call(env, ActorKind::Batch, &batch, "spawn_failed", &failed).await;
                let delay_secs = delay.ok().and_then(|v| v["delay_secs"].as_u64()).unwrap_or(1) as u32;
                Ok(Settled::Retry { delay_secs })
            }
        },
    }
}

/// Creates the item's content actor under the batch's ownership: the same
/// `create` as `POST /api/content`, with ids derived from the item so a
/// second delivery is answered with the first one's result.
async fn spawn(env: &Env, msg: &IngestMessage, content_id: uuid::Uuid, run_id: uuid::Uuid, answer: ClaimAnswer) -> ApiResult<()> {
    let (Some(item), Some(ownership)) = (answer.item, answer.ownership) else {
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

async fn dead_lettered(env: &Env, msg: &IngestMessage) -> ApiResult<Settled> {
    let _: serde_json::Value =
        rpc::call(env, ActorKind::Batch, &msg.batch_id.to_string(), "dead_lettered", &json!({ "index": msg.index })).await?;
    Ok(Settled::Ack)
}
