//! `BatchActor`: one bulk import, on the topic `batch:<id>`. A thin shell over
//! [`crate::domain::batch::Batch`]: `create` stores the items' documents and
//! the batch state; the queue consumer hands over each delivery's items of
//! the batch in one `delivered` call (a delivery holds up to 100 messages);
//! the alarm spawns waiting items under the cap (creates their content
//! actors) and retries failed spawns; content actors report their runs' ends
//! (`ended`) and the dead-letter consumer the items that ran out of attempts.
//!
//! Spawns run in the alarm, never in a queue delivery: a delivery awaiting
//! content actors stalled local deliveries (see docs/benchmarks.md, "Bulk
//! import"), and a delivery bounded to one storage write cannot.

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Response, State};

use super::ops::{BatchCall, BatchOps, CreateBatch, CreateContent, CreateSettled, DeadLettered, Done, FireAlarm, Inspect, Inspectable, ItemEnded, ItemsDelivered, SettleBatch, SettleCreate, ViewBatch};
use super::rpc;
use super::{ActorStorage, TopicActor};
use crate::domain::batch::{Batch, BatchView, ItemRef, SpawnRetry};
use crate::domain::principal::Principal;
use crate::domain::time::Millis;
use crate::domain::faults;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, Topic};
use crate::runtime::{config, now_ms};
use crate::store::batch_docs::BatchDocs;
use crate::store::StateKey;

/// The batch.
const BATCH: StateKey<Batch> = StateKey::named("batch");

#[durable_object]
pub struct BatchActor {
    state: State,
    env: Env,
    memory: super::ActorMemory,
}


crate::actor_storage!(BatchActor);

impl BatchActor {
    fn load(&self) -> ApiResult<Option<Batch>> {
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        self.cells().load(BATCH)
    }

    fn require(&self) -> ApiResult<Batch> {
        self.load()?.ok_or_else(|| ApiError::not_found("batch"))
    }

    fn require_for(&self, p: &Principal) -> ApiResult<Batch> {
        match self.load()? {
            Some(b) if b.readable_by(p) => Ok(b),
            _ => Err(ApiError::not_found("batch")),
        }
    }

    /// Saves the batch and appends its events in one transaction, then
    /// pushes the events to subscribers in the background, and arms the
    /// alarm for the next spawns.
    async fn commit(&self, b: &Batch, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        self.commit_armed(b, drafts, now, false, || Ok(())).await
    }

    /// [`Self::commit`] with `more` writes in the same transaction (the
    /// documents it no longer needs, a new batch's tables and documents);
    /// inside the alarm handler (`firing`) the alarm that fired is spent, so
    /// it is set again without asking.
    async fn commit_armed(&self, b: &Batch, drafts: Vec<EventDraft>, now: Millis, firing: bool, more: impl FnOnce() -> ApiResult<()>) -> ApiResult<()> {
        // Before the alarm's awaits: the state and its events land together
        // (all or none), so an alarm call that fails loses no event.
        let records = self.atomically(|| {
            more()?;
            self.cells().save(BATCH, b)?;
            if drafts.is_empty() { Ok(Vec::new()) } else { self.log().append(drafts, now) }
        })?;
        if let Some(due) = b.next_wake_at(now) {
            self.arm_by(due, firing).await?;
        }
        if records.is_empty() {
            return Ok(());
        }
        self.push_later(Topic::Batch(b.id), records);
        if b.is_finished() {
            self.register(b, "completed", now);
        }
        Ok(())
    }

    /// The registry row for the admin listing, written in the background.
    fn register(&self, b: &Batch, status: &'static str, now: Millis) {
        self.register_later("batch", b.id.to_string(), status.to_string(), now);
    }

    fn docs(&self) -> BatchDocs {
        BatchDocs::new(self.state.storage().sql())
    }

    /// Creates item `index`'s content actor under the batch's ownership: the
    /// same `create` as `POST /api/content`, with ids derived from the item
    /// so a second try is answered with the first one's result.
    async fn spawn(&self, b: &Batch, index: u32) -> ApiResult<()> {
        let item = self.docs().get(index)?;
        if let Some(fault) = config(&self.env).faults.poisons(faults::INGEST, &item.doc.title) {
            return Err(fault.into());
        }
        let (content_id, run_id) = b.ids(index);
        let create = CreateContent {
            content_id,
            run_id,
            doc: item.doc,
            ownership: b.ownership.clone(),
            visibility: item.visibility,
            batch: Some(ItemRef { batch_id: b.id, index }),
        };
        let mut sent = rpc::send(&self.env, &content_id.to_string(), &create).await.map(|_| ());
        if let (Ok(()), Some(fault)) = (&sent, config(&self.env).faults.poisons(faults::ITEM_REPLY, &content_id.to_string())) {
            sent = Err(fault.into());
        }
        match sent {
            Ok(()) => Ok(()),
            // Out of tries, the item would fail: but a try may have made it
            // (its reply lost), and it would then be live while the batch
            // says failed. Its actor settles that: made, it is spawned (its
            // run reports); not made, its id is refused for good and the
            // item fails. A settle that fails too leaves the failure.
            Err(e) if !matches!(e, ApiError::ItemTooLarge(_)) && b.is_last_spawn_attempt(index) => {
                match rpc::settle_lost_create(&self.env, &content_id.to_string(), &SettleCreate {}).await {
                    Some(true) => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Spawns the items there are slots for, all at once, then records
    /// each outcome and arms the alarm for the next ones. Runs from the
    /// alarm (`firing`), or from `fire_alarm`.
    async fn release(&self, firing: bool) -> ApiResult<()> {
        let Some(mut b) = self.load()? else { return Ok(()) };
        let released = b.release(now_ms());
        self.cells().save(BATCH, &b)?;
        let outcomes = futures::future::join_all(released.iter().map(|&index| self.spawn(&b, index))).await;
        // Reloaded: runs' ends were reported while the spawns were awaited.
        let mut b = self.require()?;
        let now = now_ms();
        let mut dead = Vec::new();
        let mut events = Vec::new();
        // Documents the batch no longer needs, dropped in its commit.
        let mut settled = Vec::new();
        for (&index, outcome) in released.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    b.spawned(index)?;
                    // The item's content actor holds the document now, and a
                    // DELETE there must leave no copy here.
                    settled.push(index);
                }
                // Refused by its content actor for what the item is: no try would differ.
                Err(e @ ApiError::ItemTooLarge(_)) => {
                    events.extend(b.spawn_refused(index, &e.to_string(), now)?);
                    settled.push(index);
                }
                Err(e) => {
                    if b.spawn_failed(index, &e.to_string(), now)? == SpawnRetry::DeadLetter {
                        // It fails now, not when the dead-letter consumer
                        // reports: a report the queue drops would leave the
                        // item, and its batch, waiting for ever.
                        events.extend(b.dead_lettered(index, now)?);
                        settled.push(index);
                        dead.push(index);
                    }
                }
            }
        }
        let docs = self.docs();
        self.commit_armed(&b, events, now, firing, || settled.iter().try_for_each(|&index| drop_doc(&docs, &b, index))).await?;
        if !dead.is_empty() {
            // Parked for the operator; the items have failed already.
            if let Err(e) = crate::ingest::dead_letter(&self.env, b.id, dead.iter().copied()).await {
                worker::console_error!("batch {}: dead-letter send failed for items {dead:?}: {e}", b.id);
            }
        }
        Ok(())
    }

    fn snapshot(b: &Batch) -> Value {
        serde_json::to_value(b.view()).unwrap_or_default()
    }

}

/// Deletes an item's document unless the batch still needs it
/// ([`Batch::needs_doc`]: a concurrent release may have settled the item
/// otherwise meanwhile).
fn drop_doc(docs: &BatchDocs, b: &Batch, index: u32) -> ApiResult<()> {
    if b.needs_doc(index) {
        return Ok(());
    }
    docs.delete(index)
}

impl BatchOps for BatchActor {
    async fn create(&self, c: CreateBatch) -> ApiResult<Done> {
        if let Some(b) = self.load()? {
            // Idempotent: a retried create finds the batch as stored, and
            // arms its alarm and lists it, which the first try may not have
            // (the alarm's write failed after the batch's).
            let now = now_ms();
            self.commit(&b, Vec::new(), now).await?;
            if !b.is_finished() {
                self.register(&b, "running", now);
            }
            return Ok(Done {});
        }
        let sql = self.state.storage().sql();
        if crate::store::has_state(&sql) {
            // Settled as never made (`settle_create`): this create came too late.
            return Err(ApiError::AlreadyExists("batch".into()));
        }
        let now = now_ms();
        let b = Batch::new(c.id, c.submitter, c.ownership, c.items.len() as u32, c.max_in_flight, now);
        // Its tables, documents and state: all or none, so a failed create
        // leaves no batch that `settle_create` would call made.
        let more = || {
            crate::store::init_state(&sql)?;
            self.docs().create(&c.items)
        };
        self.commit_armed(&b, Vec::new(), now, false, more).await?;
        self.register(&b, "running", now);
        Ok(Done {})
    }

    /// Takes one delivery's items of the batch: they wait for a slot.
    async fn delivered(&self, op: ItemsDelivered) -> ApiResult<Done> {
        let mut b = self.require()?;
        let mut news = 0;
        for index in op.indexes {
            // An index this batch lacks (no producer of ours writes one) is
            // skipped, not allowed to refuse the delivery's other items.
            match b.delivered(index) {
                Ok(new) => news += u32::from(new),
                Err(e) => worker::console_error!("batch {}: delivered item {index} skipped: {e}", b.id),
            }
        }
        if news > 0 {
            self.commit(&b, Vec::new(), now_ms()).await?;
        }
        Ok(Done {})
    }

    async fn ended(&self, e: ItemEnded) -> ApiResult<Done> {
        let mut b = self.require()?;
        let now = now_ms();
        let events = b.ended(e.index, e.completed, e.reason, now)?;
        // Its run ended, so its spawn landed (a reply lost on the way left
        // the document here): the item holds it, and a DELETE there must
        // leave no copy here.
        self.commit_armed(&b, events, now, false, || drop_doc(&self.docs(), &b, e.index)).await?;
        Ok(Done {})
    }

    async fn dead_lettered(&self, op: DeadLettered) -> ApiResult<Done> {
        let mut b = self.require()?;
        let now = now_ms();
        let mut events = Vec::new();
        let docs = self.docs();
        for index in op.indexes {
            match b.dead_lettered(index, now) {
                Ok(drafts) => events.extend(drafts),
                Err(e) => {
                    worker::console_error!("batch {}: dead-lettered item {index} skipped: {e}", b.id);
                    continue;
                }
            }
            // Failed for good (not one never tried, which waits for a slot): its text is not kept.
            drop_doc(&docs, &b, index)?;
        }
        self.commit(&b, events, now).await?;
        Ok(Done {})
    }

    async fn view(&self, q: ViewBatch) -> ApiResult<BatchView> {
        Ok(self.require_for(&q.principal)?.view())
    }

    async fn settle_create(&self, _q: SettleBatch) -> ApiResult<CreateSettled> {
        if self.load()?.is_some() {
            return Ok(CreateSettled { made: true });
        }
        // Never made: its tables now stand, so a create still on its way is
        // refused (409) and every other call finds no batch (404).
        crate::store::init_state(&self.state.storage().sql())?;
        Ok(CreateSettled { made: false })
    }
}

impl Inspectable for BatchActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        let b = self.require()?;
        let typed = json!({ "view": b.view(), "submitter": b.submitter, "ownership": b.ownership });
        super::inspection(&self.state, "batch", &b.id.to_string(), typed, &self.log()).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.release(false).await?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl TopicActor for BatchActor {
    fn topic(&self) -> ApiResult<Option<Topic>> {
        Ok(self.load()?.map(|b| Topic::Batch(b.id)))
    }

    fn resync_snapshot(&self) -> ApiResult<Value> {
        Ok(self.load()?.map(|b| Self::snapshot(&b)).unwrap_or_default())
    }

    /// Only the submitter may follow the batch; anyone else sees no topic.
    async fn admit(&self, principal: &Principal) -> ApiResult<()> {
        self.require_for(principal).map(|_| ())
    }
}

impl DurableObject for BatchActor {
    fn new(state: State, env: Env) -> Self {
        BatchActor { state, env, memory: Default::default() }
    }

    crate::unused_handlers!(fetch);

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.release(true).await {
            worker::console_error!("batch alarm failed: {e}");
            let _ = self.state.storage().set_alarm(super::alarm_time(now_ms() + 1_000)).await;
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(BatchActor, BatchCall);
