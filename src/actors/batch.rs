//! `BatchActor`: one bulk import, on the topic `batch:<id>`. A thin shell over
//! [`crate::domain::batch::Batch`]: `create` stores the items' documents and
//! the batch state; the queue consumer `claim`s each item (spawn, wait for
//! room under the cap, or acknowledge) and reports `spawned` or
//! `spawn_failed`, each for all of one delivery's items of the batch in one
//! call (a delivery holds up to 100 messages); content actors report their runs' ends (`ended`) and the
//! dead-letter consumer the items that exhausted their retries.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
use super::pipeline::to_datetime;
use super::rpc;
use super::ActorStorage;
use crate::catalog;
use crate::domain::batch::{Batch, Claim};
use crate::domain::content::ContentDoc;
use crate::domain::principal::{Ownership, Principal, Visibility};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, Topic};
use crate::runtime::now_ms;

#[durable_object]
pub struct BatchActor {
    state: State,
    env: Env,
}

/// One item as submitted: its validated document and requested visibility.
#[derive(Serialize, Deserialize)]
pub struct BatchDoc {
    pub doc: ContentDoc,
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

#[derive(Deserialize)]
struct Create {
    id: Uuid,
    submitter: Principal,
    ownership: Ownership,
    max_in_flight: u32,
    items: Vec<BatchDoc>,
}

#[derive(Deserialize)]
struct Indexes {
    indexes: Vec<u32>,
}

#[derive(Deserialize)]
struct SpawnFailure {
    index: u32,
    error: String,
}

#[derive(Deserialize)]
struct SpawnFailures {
    failures: Vec<SpawnFailure>,
}

#[derive(Deserialize)]
struct Ended {
    index: u32,
    completed: bool,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ForPrincipal {
    principal: Principal,
}

/// The answer to a `claim`, per item: what the consumer does with its message.
#[derive(Serialize, Deserialize)]
pub struct ClaimAnswer {
    pub index: u32,
    #[serde(flatten)]
    pub claim: Claim,
    /// With a spawn: what to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<BatchDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

#[derive(Deserialize)]
struct DocRow {
    doc: String,
}

crate::actor_storage!(BatchActor);

impl BatchActor {
    fn load(&self) -> ApiResult<Option<Batch>> {
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        self.cells().load("batch")
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

    /// Saves the batch and appends its events in one synchronous step, then
    /// pushes the events to subscribers in the background. When a slot came
    /// free for a deferred item, the alarm puts it back on the queue.
    async fn commit(&self, b: &Batch, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        self.cells().save("batch", b)?;
        if b.release_due() && self.state.storage().get_alarm().await?.is_none() {
            self.state.storage().set_alarm(to_datetime(now)).await?;
        }
        if drafts.is_empty() {
            return Ok(());
        }
        let records = self.log().append(drafts, now)?;
        let (env, subs, topic) = (self.env.clone(), self.subs(), Topic::Batch(b.id));
        self.state.wait_until(async move { fanout::push(&env, &subs, topic, &records).await });
        if b.is_finished() {
            self.register(b, "completed", now);
        }
        Ok(())
    }

    /// The registry row for the admin listing, written in the background.
    fn register(&self, b: &Batch, status: &'static str, now: Millis) {
        let (env, id) = (self.env.clone(), b.id.to_string());
        self.state.wait_until(async move {
            if let Err(e) = catalog::register_actor(&env, "batch", &id, status, now).await {
                worker::console_error!("batch registry write failed: {e}");
            }
        });
    }

    async fn create(&self, c: Create) -> ApiResult<Value> {
        if let Some(b) = self.load()? {
            // Idempotent: a retried create answers with the batch as stored.
            return Ok(json!({ "id": b.id, "accepted": b.items.len() }));
        }
        let sql = self.state.storage().sql();
        crate::store::init_state(&sql)?;
        self.subs().init()?;
        crate::store::exec(&sql, "CREATE TABLE IF NOT EXISTS batch_docs (idx INTEGER PRIMARY KEY, doc TEXT NOT NULL)", vec![])?;
        for (i, item) in c.items.iter().enumerate() {
            let text = serde_json::to_string(item)?;
            crate::store::exec(&sql, "INSERT OR REPLACE INTO batch_docs (idx, doc) VALUES (?, ?)", vec![(i as f64).into(), text.into()])?;
        }
        let now = now_ms();
        let b = Batch::new(c.id, c.submitter, c.ownership, c.items.len() as u32, c.max_in_flight, now);
        self.commit(&b, Vec::new(), now).await?;
        self.register(&b, "running", now);
        Ok(json!({ "id": b.id, "accepted": b.items.len() }))
    }

    fn doc(&self, index: u32) -> ApiResult<BatchDoc> {
        let found: Vec<DocRow> =
            crate::store::rows(&self.state.storage().sql(), "SELECT doc FROM batch_docs WHERE idx = ?", vec![(index as f64).into()])?;
        let row = found.into_iter().next().ok_or_else(|| ApiError::not_found(format!("batch item {index}")))?;
        serde_json::from_str(&row.doc).map_err(crate::store::storage_err)
    }

    /// Claims each item of one delivery, in index order.
    fn claim(&self, op: Indexes) -> ApiResult<Vec<ClaimAnswer>> {
        let mut b = self.require()?;
        let mut answers = Vec::with_capacity(op.indexes.len());
        for index in op.indexes {
            let claim = b.claim(index)?;
            let (item, ownership) = match claim {
                Claim::Spawn { .. } => (Some(self.doc(index)?), Some(b.ownership.clone())),
                _ => (None, None),
            };
            answers.push(ClaimAnswer { index, claim, item, ownership });
        }
        self.cells().save("batch", &b)?;
        Ok(answers)
    }

    async fn spawned(&self, op: Indexes) -> ApiResult<Value> {
        let mut b = self.require()?;
        for index in op.indexes {
            b.spawned(index)?;
        }
        self.commit(&b, Vec::new(), now_ms()).await?;
        Ok(json!({ "ok": true }))
    }

    /// Records failed spawns; answers each one's retry delay in seconds.
    async fn spawn_failed(&self, op: SpawnFailures) -> ApiResult<Value> {
        let mut b = self.require()?;
        let mut delays = Vec::with_capacity(op.failures.len());
        for f in op.failures {
            delays.push(json!({ "index": f.index, "delay_secs": b.spawn_failed(f.index, &f.error)? }));
        }
        self.commit(&b, Vec::new(), now_ms()).await?;
        Ok(json!({ "delays": delays }))
    }

    async fn ended(&self, e: Ended) -> ApiResult<Value> {
        let mut b = self.require()?;
        let now = now_ms();
        let events = b.ended(e.index, e.completed, e.reason, now)?;
        self.commit(&b, events, now).await?;
        Ok(json!({ "ok": true }))
    }

    async fn dead_lettered(&self, op: Indexes) -> ApiResult<Value> {
        let mut b = self.require()?;
        let now = now_ms();
        let mut events = Vec::new();
        for index in op.indexes {
            events.extend(b.dead_lettered(index, now)?);
        }
        self.commit(&b, events, now).await?;
        Ok(json!({ "ok": true }))
    }

    /// Puts the deferred items there is room for back on the queue. Runs
    /// from the alarm, outside any queue consumer's call; items it cannot send
    /// wait again and the alarm retries in a second.
    async fn release(&self) -> ApiResult<()> {
        let Some(mut b) = self.load()? else { return Ok(()) };
        let released = b.release();
        if released.is_empty() {
            return Ok(());
        }
        self.cells().save("batch", &b)?;
        if let Err(e) = crate::ingest::enqueue(&self.env, b.id, released.iter().copied()).await {
            worker::console_error!("batch {}: re-enqueue failed: {e}", b.id);
            let mut b = self.require()?;
            b.defer_again(&released);
            self.cells().save("batch", &b)?;
            self.state.storage().set_alarm(to_datetime(now_ms() + 1_000)).await?;
        }
        Ok(())
    }

    fn snapshot(b: &Batch) -> Value {
        serde_json::to_value(b.view()).unwrap_or_default()
    }

    fn inspect(&self) -> ApiResult<Value> {
        let b = self.require()?;
        let typed = json!({ "view": b.view(), "submitter": b.submitter, "ownership": b.ownership });
        super::inspection(&self.state, "batch", &b.id.to_string(), typed, None, &self.log())
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<Value> {
        let (op, body): (String, Value) = rpc::incoming(&mut req).await?;
        match op.as_str() {
            "create" => self.create(serde_json::from_value(body)?).await,
            "claim" => Ok(serde_json::to_value(self.claim(serde_json::from_value(body)?)?)?),
            "spawned" => self.spawned(serde_json::from_value(body)?).await,
            "spawn_failed" => self.spawn_failed(serde_json::from_value(body)?).await,
            "ended" => self.ended(serde_json::from_value(body)?).await,
            "dead_lettered" => self.dead_lettered(serde_json::from_value(body)?).await,
            "view" => {
                let f: ForPrincipal = serde_json::from_value(body)?;
                Ok(Self::snapshot(&self.require_for(&f.principal)?))
            }
            "authorize" => {
                let f: ForPrincipal = serde_json::from_value(body)?;
                Ok(json!({ "id": self.require_for(&f.principal)?.id }))
            }
            "inspect" => self.inspect(),
            "fire_alarm" => {
                self.release().await?;
                self.inspect()
            }
            other => {
                if other == "subscribe" {
                    // Only the submitter may follow the batch; anyone else sees no topic.
                    let f: ForPrincipal = serde_json::from_value(body.clone()).map_err(|_| ApiError::not_found("batch"))?;
                    self.require_for(&f.principal)?;
                }
                let topic = self.load()?.map(|b| (Topic::Batch(b.id), Self::snapshot(&b)));
                super::topic_op(other, body, topic, &self.log(), &self.subs())
            }
        }
    }
}

impl DurableObject for BatchActor {
    fn new(state: State, env: Env) -> Self {
        BatchActor { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        rpc::reply(self.dispatch(req).await)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.release().await {
            worker::console_error!("batch alarm failed: {e}");
            let _ = self.state.storage().set_alarm(to_datetime(now_ms() + 1_000)).await;
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}
