//! `ContentActor`: one content item, a thin shell over
//! [`crate::domain::content::ContentState`]. It spawns a run per version,
//! accepts the run's publish, and keeps the catalog and the feed informed.

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
use super::ActorStorage;
use super::rpc::{self, ActorKind};
use crate::catalog;
use crate::domain::content::{Artifacts, ContentDoc, ContentState};
use crate::domain::principal::{Access, Ownership, Principal, Visibility};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{Accepted, EventDraft, RunStatus, Topic};
use crate::providers::{Providers, VectorIndex};
use crate::runtime::{config, now_ms};

#[durable_object]
pub struct ContentActor {
    state: State,
    env: Env,
}

/// `create` carries the new item's ownership (worked out in the Worker);
/// `update` carries the principal, checked here against the stored owner.
#[derive(Deserialize)]
struct Submit {
    content_id: Uuid,
    run_id: Uuid,
    doc: ContentDoc,
    #[serde(default)]
    ownership: Option<Ownership>,
    #[serde(default)]
    principal: Option<Principal>,
    #[serde(default)]
    visibility: Option<Visibility>,
    /// `If-Match`: the version the writer last saw.
    #[serde(default)]
    if_match: Option<u32>,
}

/// Ops that act for a principal: view, delete, authorize, subscribe.
#[derive(Deserialize)]
struct Acting {
    principal: Principal,
    #[serde(default = "read_access")]
    needed: AccessNeeded,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum AccessNeeded {
    Read,
    Change,
}

fn read_access() -> AccessNeeded {
    AccessNeeded::Read
}

impl From<AccessNeeded> for Access {
    fn from(a: AccessNeeded) -> Access {
        match a {
            AccessNeeded::Read => Access::Read,
            AccessNeeded::Change => Access::Change,
        }
    }
}

#[derive(Deserialize)]
struct Publish {
    run_id: Uuid,
    artifacts: Artifacts,
}

#[derive(Deserialize)]
struct RunEnded {
    version: u32,
    status: RunStatus,
    #[serde(default)]
    reason: Option<String>,
}

/// A deleted item keeps a tombstone so late runs cannot resurrect it.
const TOMBSTONE: &str = "deleted";

crate::actor_storage!(ContentActor);

impl ContentActor {
    fn load(&self) -> ApiResult<Option<ContentState>> {
        let sql = self.state.storage().sql();
        if !crate::store::has_state(&sql) || self.cells().load::<bool>(TOMBSTONE)?.unwrap_or(false) {
            return Ok(None);
        }
        self.cells().load("content")
    }

    fn require(&self) -> ApiResult<ContentState> {
        self.load()?.ok_or_else(|| ApiError::not_found("content"))
    }

    /// Saves state and events together, then informs subscribers and the feed.
    async fn commit(&self, c: &ContentState, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        self.cells().save("content", c)?;
        let feed_drafts: Vec<EventDraft> = drafts.iter().filter(|d| d.event.is_feed_event()).cloned().collect();
        let records = self.log().append(drafts, now)?;
        let (env, subs, topic) = (self.env.clone(), self.subs(), Topic::Content(c.id));
        self.state.wait_until(async move { fanout::push(&env, &subs, topic, &records).await });
        if !feed_drafts.is_empty() {
            if let Err(e) = super::feed::append(&self.env, feed_drafts).await {
                worker::console_error!("feed append failed: {e}");
            }
        }
        Ok(())
    }

    async fn spawn_run(&self, c: &ContentState, run_id: Uuid) -> ApiResult<Accepted> {
        let body = json!({ "run_id": run_id, "content_id": c.id, "version": c.version, "doc": c.doc, "ownership": c.ownership });
        let _: Value = rpc::call(&self.env, ActorKind::Run, &run_id.to_string(), "start", &body).await?;
        Ok(Accepted::new(c.id, c.version, run_id))
    }

    async fn create(&self, s: Submit) -> ApiResult<Accepted> {
        let mut ownership = s.ownership.ok_or_else(|| ApiError::BadRequest("create needs the item's ownership".into()))?;
        if let Some(v) = s.visibility {
            ownership.visibility = v;
        }
        let sql = self.state.storage().sql();
        if crate::store::has_state(&sql) {
            return Err(ApiError::Conflict("content already exists".into()));
        }
        crate::store::init_state(&sql)?;
        self.subs().init()?;
        let now = now_ms();
        let (c, events) = ContentState::create(s.content_id, s.doc, ownership, s.run_id, now);
        self.commit(&c, events, now).await?;
        self.catalog_later(&c, now);
        self.spawn_run(&c, s.run_id).await
    }

    /// The catalog row of a new version: listings may lag by a moment, the
    /// submission does not wait for D1.
    fn catalog_later(&self, c: &ContentState, now: Millis) {
        let (env, c) = (self.env.clone(), c.clone());
        self.state.wait_until(async move {
            if let Err(e) = catalog::record_content(&env, &c, now, false).await {
                worker::console_error!("catalog write failed: {e}");
            }
        });
    }

    /// The stored item, if `principal` may act on it as `needed` (404 when it
    /// may not read it, 403 when it may read but not change it).
    fn require_for(&self, principal: &Principal, needed: Access) -> ApiResult<ContentState> {
        let c = self.require()?;
        principal.require(&c.ownership, needed)?;
        Ok(c)
    }

    async fn update(&self, s: Submit) -> ApiResult<Accepted> {
        let principal = s.principal.ok_or_else(|| ApiError::BadRequest("update needs a principal".into()))?;
        let mut c = self.require_for(&principal, Access::Change)?;
        if let Some(expected) = s.if_match.filter(|v| *v != c.version) {
            return Err(ApiError::VersionConflict { expected, current: c.version });
        }
        if let Some(v) = s.visibility {
            c.ownership.visibility = v;
        }
        let now = now_ms();
        let (superseded, events) = c.new_version(s.doc, s.run_id, now);
        self.commit(&c, events, now).await?;
        self.catalog_later(&c, now);
        for run in superseded {
            let _: ApiResult<Value> = rpc::call(
                &self.env,
                ActorKind::Run,
                &run.to_string(),
                "cancel",
                &json!({ "reason": format!("superseded by version {}", c.version) }),
            )
            .await;
        }
        self.spawn_run(&c, s.run_id).await
    }

    async fn publish(&self, p: Publish) -> ApiResult<Value> {
        let mut c = self.require()?;
        if c.history.iter().all(|v| v.run_id != p.run_id) {
            return Err(ApiError::Conflict(format!("run {} is not a run of this content", p.run_id)));
        }
        let now = now_ms();
        // Idempotent for a retried publish of the version already indexed.
        let already = c.artifacts.as_ref().is_some_and(|a| a.version == p.artifacts.version)
            && c.status == crate::protocol::ContentStatus::Indexed;
        let events = if already {
            Vec::new()
        } else {
            c.publish(p.artifacts, now).map_err(|e| ApiError::Conflict(e.to_string()))?
        };
        // Catalog first: if it fails the run retries publish and nothing was announced.
        catalog::record_content(&self.env, &c, now, true).await?;
        self.commit(&c, events, now).await?;
        Ok(json!({ "version": c.version, "status": c.status }))
    }

    async fn run_ended(&self, r: RunEnded) -> ApiResult<Value> {
        let mut c = self.require()?;
        let now = now_ms();
        let reason = r.reason.unwrap_or_else(|| r.status.as_str().to_string());
        let events = c.run_failed(r.version, &reason, now);
        if !events.is_empty() {
            self.commit(&c, events, now).await?;
            catalog::record_content(&self.env, &c, now, false).await?;
        }
        Ok(json!({ "status": c.status }))
    }

    async fn delete(&self, a: Acting) -> ApiResult<Value> {
        let c = self.require_for(&a.principal, Access::Change)?;
        let now = now_ms();
        let cfg = config(&self.env);
        let id = c.id.to_string();
        Providers::from_config(&self.env, &cfg)
            .vectors
            .delete_content(&id, None)
            .await
            .map_err(|e| ApiError::Unavailable(format!("vector index: {e}")))?;
        catalog::delete_content(&self.env, &id, now).await?;
        if let Some(run) = c.current_run() {
            let _: ApiResult<Value> =
                rpc::call(&self.env, ActorKind::Run, &run.to_string(), "cancel", &json!({ "reason": "content deleted" })).await;
        }
        let events = c.delete();
        // Keep only what replay and inspection need: no body, no artifacts.
        let mut tomb = c.clone();
        tomb.doc.body = String::new();
        tomb.artifacts = None;
        self.commit(&tomb, events, now).await?;
        self.cells().save(TOMBSTONE, &true)?;
        Ok(json!({ "deleted": id }))
    }

    async fn inspect(&self) -> ApiResult<Value> {
        let sql = self.state.storage().sql();
        if !crate::store::has_state(&sql) {
            return Err(ApiError::not_found("content"));
        }
        let c: Option<ContentState> = self.cells().load("content")?;
        let deleted = self.cells().load::<bool>(TOMBSTONE)?.unwrap_or(false);
        let id = c.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
        let typed = json!({ "content": c, "deleted": deleted });
        super::inspection(&self.state, "content", &id, typed, None, &self.log())
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<Value> {
        let (op, body): (String, Value) = rpc::incoming(&mut req).await?;
        let to_json = |v: Accepted| serde_json::to_value(v).map_err(ApiError::from);
        match op.as_str() {
            "create" => to_json(self.create(serde_json::from_value(body)?).await?),
            "update" => to_json(self.update(serde_json::from_value(body)?).await?),
            "view" => {
                let a: Acting = serde_json::from_value(body)?;
                Ok(serde_json::to_value(self.require_for(&a.principal, Access::Read)?.view())?)
            }
            // Whether a principal may read or change this item (for its runs' routes and topics).
            "authorize" => {
                let a: Acting = serde_json::from_value(body)?;
                let c = self.require_for(&a.principal, a.needed.into())?;
                Ok(json!({ "content_id": c.id, "version": c.version }))
            }
            "publish" => self.publish(serde_json::from_value(body)?).await,
            "run_ended" => self.run_ended(serde_json::from_value(body)?).await,
            "delete" => self.delete(serde_json::from_value(body)?).await,
            "inspect" | "fire_alarm" => self.inspect().await,
            other => {
                let current = self.load()?;
                if other == "subscribe" {
                    // A topic the subscriber may not read does not exist for it.
                    let a: Acting = serde_json::from_value(body.clone())?;
                    if let Some(c) = &current {
                        a.principal.require(&c.ownership, Access::Read)?;
                    }
                }
                let topic = current.map(|c| (Topic::Content(c.id), serde_json::to_value(c.view()).unwrap_or_default()));
                super::topic_op(other, body, topic, &self.log(), &self.subs())
            }
        }
    }
}

impl DurableObject for ContentActor {
    fn new(state: State, env: Env) -> Self {
        ContentActor { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        rpc::reply(self.dispatch(req).await)
    }

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}
