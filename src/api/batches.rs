//! `/api/content/batch` and `/api/batches/{id}`: bulk imports. The Worker
//! validates every item (all or nothing), hands the documents to a new
//! `BatchActor` and puts one small message per item on the `INGEST` queue;
//! the queue consumer (`crate::ingest`) spawns them with backpressure.


use uuid::Uuid;
use worker::{Env, Request, Response};

use super::input::{json_body, uuid_param};
use crate::actors::ops::{BatchDoc, CreateBatch, ItemsDelivered, SettleBatch, ViewBatch};
use crate::actors::rpc;
use crate::domain::batch::validate_items;
use crate::domain::principal::Principal;
use crate::error::ApiResult;
use crate::http;
use crate::protocol::{BatchAccepted, BatchInput};
use crate::runtime::config;

pub async fn create(env: &Env, p: &Principal, mut req: Request) -> ApiResult<Response> {
    let cfg = config(env);
    let input: BatchInput = json_body(&mut req, cfg.ingest.request_max_bytes).await?;
    let items = validate_items(input.items, &cfg.limits)?;
    // The whole batch was one write; each of its items is a run. A batch
    // larger than a minute's items is taken from a full bucket into debt.
    super::limits::spend(env, p, &req, super::limits::LimitClass::BatchItems, items.len() as u32).await?;
    // Each item's own `visibility` overrides this default, as on POST /api/content.
    let ownership = super::content::new_ownership(env, p)?;
    let id = Uuid::new_v4();
    let total = items.len() as u32;
    let items: Vec<BatchDoc> = items.into_iter().map(|(doc, visibility)| BatchDoc { doc, visibility }).collect();
    let create = CreateBatch { id, submitter: p.clone(), ownership, max_in_flight: cfg.ingest.max_in_flight, items };
    if let Err(e) = rpc::send_create(env, &id.to_string(), &create).await {
        if e.status() < 500 {
            return Err(e);
        }
        // Its outcome unknown: the batch settles it. Made, it goes on (a 5xx
        // now would make the client's retry a second import of the items);
        // not made, or not settled, the 5xx stands.
        if rpc::settle_lost_create(env, &id.to_string(), &SettleBatch {}).await != Some(true) {
            return Err(e);
        }
        worker::console_warn!("batch {id}: create failed on the way ({e}), but was made: going on");
    }
    if let Err(e) = crate::ingest::enqueue(env, id, 0..total).await {
        // The batch is stored: items the queue did not take would wait for
        // it forever, and a client's retry would make a second batch. The
        // batch takes them all directly instead (taking one twice is a
        // no-op), and its own in-flight cap still paces their spawns.
        worker::console_error!("batch {id}: enqueue failed, handing its items over directly: {e}");
        if let Err(e) = rpc::send(env, &id.to_string(), &ItemsDelivered { indexes: (0..total).collect() }).await {
            // Still accepted: the batch's own alarm takes every item the
            // queue has not delivered after its hand-over grace (see
            // `domain::batch`), and a 5xx here would make the client's
            // retry a second batch of the same items.
            worker::console_error!("batch {id}: hand-over failed too, its alarm takes the items: {e}");
        }
    }
    let accepted = BatchAccepted::new(id, total);
    let resp = http::json(202, &accepted);
    let _ = resp.headers().set("location", &accepted.links.batch);
    Ok(resp)
}

pub async fn get(env: &Env, p: &Principal, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "batch")?.to_string();
    let view = rpc::send(env, &id, &ViewBatch { principal: p.clone() }).await?;
    Ok(http::json(200, &view))
}
