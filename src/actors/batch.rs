//! `BatchActor`: one bulk import, on the topic `batch:<id>`. A thin shell over
//! [`crate::domain::batch::Batch`]: `create` stores the items' documents and
//! the batch state; the queue consumer `claim`s each item (spawn, wait for
//! room under the cap, or acknowledge) and reports `spawned` or
//! `spawn_failed`; content actors report their runs' ends (`ended`) and the
//! dead-letter consumer the items that exhausted their retries.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
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
struct ItemOp {
    index: u32,
    #[serde(default)]
    error: Option<String>,
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

/// The answer to a `claim`: what the consumer does with the message.
#[derive(Serialize, Deserialize)]
pub struct ClaimAnswer {
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
    /// pushes the events to subscribers in the background.
    fn commit(&self, b: &Batch, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        self.cells().save("batch", b)?;
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

    fn create(&self, c: Create) -> ApiResult<Value> {
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
        self.commit(&b, Vec::new(), now)?;
        self.register(&b, "running", now);
        Ok(json!({ "id": b.id, "accepted": b.items.len() }))
    }

    fn doc(&self, index: u32) -> ApiResult<BatchDoc> {
        let found: Vec<DocRow> =
            crate::store::rows(&self.state.storage().sql(), "SELECT doc FROM batch_docs WHERE idx = ?", vec![(index as f64).into()])?;
        let row = found.into_iter().next().ok_or_else(|| ApiError::not_found(format!("batch item {index}")))?;
        serde_json::from_str(&row.doc).map_err(crate::store::storage_err)
    }

    fn claim(&self, op: ItemOp) -> ApiResult<ClaimAnswer> {
        let mut b = self.require()?;
        let claim = b.claim(op.index)?;
        self.cells().save("batch", &b)?;
        let (item, ownership) = match claim {
            Claim::Spawn { .. } => (Some(self.doc(op.index)?), Some(b.ownership.clone())),
            _ => (None, None),
        };
        Ok(ClaimAnswer { claim, item, ownership })
    }

    fn spawned(&self, op: ItemOp) -> ApiResult<Value> {
        let mut b = self.require()?;
        b.spawned(op.index)?;
        self.commit(&b, Vec::new(), now_ms())?;
        Ok(json!({ "ok": true }))
    }

    fn spawn_failed(&self, op: ItemOp) -> ApiResult<Value> {
        let mut b = self.require()?;
        let delay = b.spawn_failed(op.index, op.error.as_deref().unwrap_or("spawn failed"))?;
        self.commit(&b, Vec::new(), now_ms())?;
        Ok(json!({ "delay_secs": delay }))
    }

    fn ended(&self, e: Ended) -> ApiResult<Value> {
        let mut b = self.require()?;
        let now = now_ms();
        let events = b.ended(e.index, e.completed, e.reason, now)?;
        self.commit(&b, events, now)?;
        Ok(json!({ "ok": true }))
    }

    fn dead_lettered(&self, op: ItemOp) -> ApiResult<Value> {
        let mut b = self.require()?;
        let now = now_ms();
        let events = b.dead_lettered(op.index, now)?;
        self.commit(&b, events, now)?;
        Ok(json!({ "ok": true }))
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
            "create" => self.create(serde_json::from_value(body)?),
            "claim" => Ok(serde_json::to_value(self.claim(serde_json::from_value(body)?)?)?),
            "spawned" => self.spawned(serde_json::from_value(body)?),
            "spawn_failed" => self.spawn_failed(serde_json::from_value(body)?),
            "ended" => self.ended(serde_json::from_value(body)?),
            "dead_lettered" => self.dead_lettered(serde_json::from_value(body)?),
            "view" => {
                let f: ForPrincipal = serde_json::from_value(body)?;
                Ok(Self::snapshot(&self.require_for(&f.principal)?))
            }
            "authorize" => {
                let f: ForPrincipal = serde_json::from_value(body)?;
                Ok(json!({ "id": self.require_for(&f.principal)?.id }))
            }
            "inspect" | "fire_alarm" => self.inspect(),
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

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}
