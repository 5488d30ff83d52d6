//! Bulk imports on the `INGEST` queue: the producer (a batch's items, in
//! `sendBatch` calls within Queues' limits) and the consumers of the queue
//! and of its dead-letter queue.
//!
//! Each message names one item (batch id, index). A delivery only hands its
//! items to their `BatchActor` (one call per batch) and acknowledges them;
//! the batch's alarm spawns them under the in-flight cap and retries failed
//! spawns; an item that still fails ends failed and is parked on the
//! dead-letter queue ([`dead_letter`]) for the operator. A delivery never
//! waits on a content actor, so it stays one small storage write per batch.
//! If the batch cannot be reached the message is retried by the queue, and
//! after `max_retries` the queue itself dead-letters it.

use std::collections::BTreeMap;

use uuid::Uuid;
use worker::{Env, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::actors::ops::{DeadLettered, ItemsDelivered};
use crate::actors::rpc;
use crate::runtime::within;
use crate::domain::batch::IngestMessage;
use crate::config::binding;
use crate::error::{ApiError, ApiResult};

/// Queues' documented cap per `sendBatch` call: 100 messages (and 256 KB;
/// an [`IngestMessage`] is under 100 bytes, so the count is what binds).
const SEND_BATCH_MAX: usize = 100;

/// Puts items `indexes` of `batch_id` on the queue bound as `binding`.
async fn send(env: &Env, binding: &str, batch_id: Uuid, indexes: impl IntoIterator<Item = u32>) -> ApiResult<()> {
    let queue = env.queue(binding)?;
    let messages: Vec<IngestMessage> = indexes.into_iter().map(|index| IngestMessage { batch_id, index }).collect();
    for chunk in messages.chunks(SEND_BATCH_MAX) {
        queue.send_batch(chunk.to_vec()).await.map_err(|e| ApiError::Unavailable(format!("{binding} queue: {e}")))?;
    }
    Ok(())
}

/// Puts items `indexes` of `batch_id` on the `INGEST` queue.
pub async fn enqueue(env: &Env, batch_id: Uuid, indexes: impl IntoIterator<Item = u32>) -> ApiResult<()> {
    if let Some(fault) = crate::runtime::config(env).faults.poisons(crate::domain::faults::ENQUEUE, &batch_id.to_string()) {
        return Err(ApiError::Unavailable(format!("{} queue: {fault}", binding::INGEST)));
    }
    send(env, binding::INGEST, batch_id, indexes).await
}

/// Puts items whose spawns ran out of attempts on the dead-letter queue.
pub async fn dead_letter(env: &Env, batch_id: Uuid, indexes: impl IntoIterator<Item = u32>) -> ApiResult<()> {
    send(env, binding::INGEST_DLQ, batch_id, indexes).await
}

/// How long a delivery waits for its batch to take the items. The local
/// broker sends a queue's next delivery only once this one returns, so a
/// reply that never comes (seen once under heavy load: 800 items left on the
/// queue) would hold the whole import; handing over is idempotent, so the
/// retried messages are simply taken again.
const HANDOVER_TIMEOUT_MS: u64 = 10_000;

/// One delivery of the queue (`dead`: of its dead-letter queue). Every
/// message is settled (acknowledged or retried) here; nothing is thrown, so
/// one bad message never makes the whole delivery retry. Messages are handed
/// over per batch, in one call to its `BatchActor`.
pub async fn consume(batch: worker::MessageBatch<serde_json::Value>, env: Env) {
    let dead = batch.queue() == crate::config::INGEST_DLQ;
    let mut by_batch: BTreeMap<Uuid, Vec<(RawMessage, u32)>> = BTreeMap::new();
    for raw in batch.raw_iter() {
        match serde_wasm_bindgen::from_value::<IngestMessage>(raw.body()) {
            Ok(msg) => by_batch.entry(msg.batch_id).or_default().push((raw, msg.index)),
            Err(_) => {
                worker::console_error!("ingest: dropped a message that is not an item reference");
                raw.ack();
            }
        }
    }
    let env = &env;
    futures::future::join_all(by_batch.into_iter().map(|(id, msgs)| async move {
        let indexes: Vec<u32> = msgs.iter().map(|(_, index)| *index).collect();
        let name = id.to_string();
        let handover = async {
            match dead {
                true => rpc::send(env, &name, &DeadLettered { indexes }).await,
                false => rpc::send(env, &name, &ItemsDelivered { indexes }).await,
            }
        };
        let outcome = within(HANDOVER_TIMEOUT_MS, handover)
            .await
            .unwrap_or_else(|| Err(ApiError::Unavailable(format!("no answer within {HANDOVER_TIMEOUT_MS} ms"))));
        match outcome {
            // Taken, or the batch is gone (never created, or erased): nothing to do.
            Ok(_) | Err(ApiError::NotFound(_)) => msgs.iter().for_each(|(raw, _)| raw.ack()),
            Err(e) => {
                worker::console_error!("ingest: batch {id}: {e}");
                let retry = QueueRetryOptionsBuilder::new().with_delay_seconds(1).build();
                msgs.iter().for_each(|(raw, _)| raw.retry_with_options(&retry));
            }
        }
    }))
    .await;
}
