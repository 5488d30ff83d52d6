//! `PipelineActor`: one pipeline run. A thin shell over
//! [`crate::domain::pipeline::PipelineRun`]: each alarm executes one stage,
//! persists the outcome with its events, and arms the next alarm.

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
use super::outbox::Outbox;
use super::ActorStorage;
use super::rpc::{self, ActorKind};
use crate::catalog;
use crate::domain::content::ContentDoc;
use crate::domain::faults;
use crate::domain::outbox::Duty;
use crate::domain::pipeline::{PipelineRun, Step};
use crate::domain::principal::Ownership;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, EventRecord, RunStatus, RunView, Topic};
use crate::runtime::{config, now_ms};
use crate::stages::{self, ArtifactStore, StageContext, StageFailure};

#[durable_object]
pub struct PipelineActor {
    state: State,
    env: Env,
    /// Read-through copies of the stored run and document. This instance is
    /// their only writer, so a copy stays current for as long as it lives, and
    /// each alarm skips re-reading and re-parsing the whole journal.
    run: RefCell<Option<PipelineRun>>,
    doc: RefCell<Option<ContentDoc>>,
}

#[derive(Deserialize)]
struct StartRequest {
    run_id: Uuid,
    content_id: Uuid,
    version: u32,
    doc: ContentDoc,
    /// The item's ownership for this version: its vectors' namespace.
    #[serde(default = "Ownership::legacy")]
    ownership: Ownership,
}

#[derive(Deserialize, Default)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

/// Marks a run whose item was deleted before its start arrived.
const PURGED_BEFORE_START: &str = "purged_before_start";

/// Watchdog slack beyond a stage's timeout: if the isolate dies mid-stage, this
/// alarm brings the run back.
const WATCHDOG_SLACK_MS: i64 = 5_000;

crate::actor_storage!(PipelineActor);

impl PipelineActor {
    fn load(&self) -> ApiResult<Option<PipelineRun>> {
        if let Some(run) = self.run.borrow().as_ref() {
            return Ok(Some(run.clone()));
        }
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        let run: Option<PipelineRun> = self.cells().load("run")?;
        self.run.replace(run.clone());
        Ok(run)
    }

    fn document(&self) -> ApiResult<ContentDoc> {
        if let Some(doc) = self.doc.borrow().as_ref() {
            return Ok(doc.clone());
        }
        let doc: ContentDoc = self.cells().load("doc")?.ok_or_else(|| ApiError::not_found("run document"))?;
        self.doc.replace(Some(doc.clone()));
        Ok(doc)
    }

    fn require(&self) -> ApiResult<PipelineRun> {
        self.load()?.ok_or_else(|| ApiError::not_found("run"))
    }

    fn topic(run: &PipelineRun) -> Topic {
        Topic::Run(run.id)
    }

    /// Saves the run and appends its events in one synchronous step, then
    /// pushes the events to subscribers without holding up the caller.
    fn commit(&self, run: &PipelineRun, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<Vec<EventRecord>> {
        self.cells().save("run", run)?;
        self.run.replace(Some(run.clone()));
        let records = self.log().append(drafts, now)?;
        let (env, subs, topic, recs) = (self.env.clone(), self.subs(), Self::topic(run), records.clone());
        self.state.wait_until(async move { fanout::push(&env, &subs, topic, &recs).await });
        Ok(records)
    }

    fn outbox(&self) -> ApiResult<Outbox> {
        Outbox::open(self.state.storage().sql())
    }

    /// The next wake: the run's next step or the earliest pending duty.
    fn next_wake(&self, run: &PipelineRun, now: Millis) -> ApiResult<Option<Millis>> {
        let duty = self.outbox()?.next_due()?.map(|at| at.max(now));
        Ok(match (run.next_alarm(now), duty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn arm(&self, run: &PipelineRun, now: Millis) -> ApiResult<()> {
        let storage = self.state.storage();
        match self.next_wake(run, now)? {
            Some(at) => storage.set_alarm(to_datetime(at)).await?,
            None => storage.delete_alarm().await?,
        }
        Ok(())
    }

    /// At every wake: an alarm must be armed whenever work remains.
    async fn ensure_alarm(&self, run: &PipelineRun) -> ApiResult<()> {
        let now = now_ms();
        if self.next_wake(run, now)?.is_some() && self.state.storage().get_alarm().await?.is_none() {
            self.arm(run, now).await?;
        }
        Ok(())
    }

    /// Tries every duty that is due (catalog rows, the end report); a failed
    /// one waits with backoff for a later alarm.
    async fn drain(&self) -> ApiResult<()> {
        self.outbox()?.drain("run", |duty, tries| self.perform(duty, tries)).await
    }

    async fn perform(&self, duty: Duty, tries: u32) -> ApiResult<()> {
        let run = self.require()?;
        match &duty {
            Duty::Catalog => {
                let cfg = config(&self.env);
                if let Some(fault) = cfg.faults.site_fault(faults::CATALOG, &run.id.to_string(), tries + 1) {
                    return Err(ApiError::Unavailable(fault));
                }
                // Written from the run as it is now, never an older copy.
                catalog::record_run(&self.env, &run, now_ms()).await
            }
            Duty::ReportEnd { content_id, report } => {
                let r: ApiResult<serde_json::Value> =
                    rpc::call(&self.env, ActorKind::Content, &content_id.to_string(), "run_ended", report).await;
                match r {
                    // A deleted item needs no report.
                    Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            other => Err(ApiError::Internal(format!("a run owes no duty {}", other.key()))),
        }
    }

    /// Records the run's catalog row as owed and tries it now.
    async fn catalog_now(&self, now: Millis) -> ApiResult<()> {
        self.outbox()?.put(&Duty::Catalog, now)?;
        self.drain().await
    }

    /// Erases this run's copies of a deleted item: document, artifacts
    /// (chunks, vectors, stage outputs) and alarm; a live run ends cancelled.
    async fn purge(&self) -> ApiResult<serde_json::Value> {
        let Some(mut run) = self.load()? else {
            // Purged before its start landed (a spawn in flight): the start is refused.
            let sql = self.state.storage().sql();
            crate::store::init_state(&sql)?;
            self.cells().save(PURGED_BEFORE_START, &true)?;
            return Ok(json!({ "purged": true }));
        };
        let now = now_ms();
        let events = run.purge(stages::CONTENT_DELETED, now);
        self.erase()?;
        self.commit(&run, events, now)?;
        self.outbox()?.put(&Duty::Catalog, now)?;
        let _ = self.drain().await;
        self.arm(&run, now_ms()).await?;
        Ok(json!({ "purged": true }))
    }

    /// Deletes the document and every artifact (synchronous, one step).
    fn erase(&self) -> ApiResult<()> {
        self.cells().delete("doc")?;
        self.doc.replace(None);
        crate::store::exec(&self.state.storage().sql(), "DELETE FROM artifacts", vec![])
    }

    async fn start(&self, req: StartRequest) -> ApiResult<RunView> {
        if let Some(run) = self.load()? {
            // Idempotent: a retried spawn gets the same run back.
            return Ok(run.view(None));
        }
        if crate::store::has_state(&self.state.storage().sql()) && self.cells().load::<bool>(PURGED_BEFORE_START)?.unwrap_or(false) {
            return Err(ApiError::Superseded(stages::CONTENT_DELETED.into()));
        }
        let cfg = config(&self.env);
        let now = now_ms();
        let sql = self.state.storage().sql();
        crate::store::init_state(&sql)?;
        let artifacts = ArtifactStore::new(sql.clone());
        artifacts.init()?;
        artifacts.put(stages::NAMESPACE_ARTIFACT, &req.ownership.namespace()).map_err(|e| ApiError::Internal(e.message))?;
        self.subs().init()?;
        let (run, events) = PipelineRun::new(req.run_id, req.content_id, req.version, cfg.retry, now);
        self.cells().save("doc", &req.doc)?;
        self.doc.replace(Some(req.doc.clone()));
        self.commit(&run, events, now)?;
        self.outbox()?.put(&Duty::Catalog, now)?;
        self.arm(&run, now).await?;
        // The registry row: nothing waits on it; the alarm retries it if it fails.
        let _ = self.drain().await;
        Ok(run.view(Some(now + 1)))
    }

    /// One alarm: at most one stage.
    async fn tick(&self) -> ApiResult<()> {
        let Some(mut run) = self.load()? else { return Ok(()) };
        let now = now_ms();
        let stage = match run.next_step(now) {
            Step::Idle => return Ok(()),
            Step::WaitUntil(_) => return self.arm(&run, now).await,
            Step::Execute(stage) => stage,
        };
        let events = run.start_stage(stage, now)?;
        self.commit(&run, events, now)?;
        let timeout = run.policy(stage).timeout_ms;
        self.state.storage().set_alarm(to_datetime(now + timeout as i64 + WATCHDOG_SLACK_MS)).await?;

        let cfg = config(&self.env);
        let attempt = run.record(stage).attempts;
        let outcome = if cfg.faults.strikes(&run.id.to_string(), stage, attempt) {
            Err(StageFailure::Error(crate::domain::pipeline::StageError::transient(format!(
                "injected fault ({stage}={})",
                cfg.faults.probability(stage)
            ))))
        } else {
            let doc = self.document()?;
            let artifacts = ArtifactStore::new(self.state.storage().sql());
            let cx = StageContext { env: &self.env, cfg: &cfg, run: &run, doc: &doc, artifacts: &artifacts };
            with_timeout(timeout, stages::execute(stage, &cx)).await
        };

        // Another request may have cancelled the run while the stage awaited.
        let mut run = self.require()?;
        let now = now_ms();
        if run.status.is_terminal() {
            if run.purged {
                // The stage may have written an artifact after the purge.
                self.erase()?;
            }
            return self.arm(&run, now).await;
        }
        let events = match outcome {
            Ok(()) => run.finish_stage(stage, Ok(()), now),
            Err(StageFailure::Error(e)) => run.finish_stage(stage, Err(e), now),
            Err(StageFailure::Superseded(why)) => run.cancel(&why, now),
        }?;
        self.commit(&run, events, now)?;
        self.arm(&run, now).await?;
        if run.status.is_terminal() {
            self.on_terminal(&run, now).await;
        }
        Ok(())
    }

    /// Catalog row, dead letter and content status once a run has ended, as
    /// owed duties tried before the alarm returns (so the dead-letter list has
    /// a failure as soon as the run says `failed`) and retried until they land.
    async fn on_terminal(&self, run: &PipelineRun, now: Millis) {
        let outbox = match self.outbox() {
            Ok(o) => o,
            Err(e) => return worker::console_error!("run outbox: {e}"),
        };
        let mut owed = vec![Duty::Catalog];
        if run.status != RunStatus::Completed {
            let report = json!({ "run_id": run.id, "version": run.version, "status": run.status, "reason": run.reason });
            owed.push(Duty::ReportEnd { content_id: run.content_id, report });
        }
        for d in &owed {
            if let Err(e) = outbox.put(d, now) {
                worker::console_error!("run outbox: {e}");
            }
        }
        if let Err(e) = self.drain().await {
            worker::console_error!("run duties: {e}");
        }
        let _ = self.arm(run, now_ms()).await;
    }

    async fn cancel(&self, reason: &str) -> ApiResult<RunView> {
        let mut run = self.require()?;
        let now = now_ms();
        let events = run.cancel(reason, now)?;
        self.commit(&run, events, now)?;
        self.arm(&run, now).await?;
        self.on_terminal(&run, now).await;
        Ok(run.view(None))
    }

    async fn retry(&self) -> ApiResult<RunView> {
        let mut run = self.require()?;
        let now = now_ms();
        let events = run.retry(now)?;
        self.commit(&run, events, now)?;
        self.arm(&run, now).await?;
        self.catalog_now(now).await?;
        Ok(run.view(run.next_alarm(now)))
    }

    async fn view(&self) -> ApiResult<RunView> {
        let run = self.require()?;
        self.ensure_alarm(&run).await?;
        let alarm = self.state.storage().get_alarm().await?;
        Ok(run.view(alarm))
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<serde_json::Value> {
        let (op, body): (String, serde_json::Value) = rpc::incoming(&mut req).await?;
        let to_json = |v: RunView| serde_json::to_value(v).map_err(ApiError::from);
        match op.as_str() {
            "start" => to_json(self.start(serde_json::from_value(body)?).await?),
            "view" => to_json(self.view().await?),
            "cancel" => {
                let r: Reason = serde_json::from_value(body).unwrap_or_default();
                to_json(self.cancel(r.reason.as_deref().unwrap_or("cancelled by operator")).await?)
            }
            "retry" => to_json(self.retry().await?),
            "purge" => self.purge().await,
            // The operator's reconciliation: the catalog row is owed again.
            "reconcile" => {
                let run = self.require()?;
                self.catalog_now(now_ms()).await?;
                Ok(json!({ "run_id": run.id }))
            }
            "fire_alarm" => {
                self.require()?;
                self.tick().await?;
                self.inspect().await
            }
            "inspect" => self.inspect().await,
            other => {
                if other == "subscribe" {
                    self.authorize_subscriber(&body).await?;
                }
                let topic = self.load()?.map(|r| (Self::topic(&r), serde_json::to_value(r.view(None)).unwrap_or_default()));
                super::topic_op(other, body, topic, &self.log(), &self.subs())
            }
        }
    }

    /// A run's topic is readable by whoever may read its content: the content
    /// actor owns that answer (404 when the subscriber may not read it).
    async fn authorize_subscriber(&self, body: &serde_json::Value) -> ApiResult<()> {
        let run = self.require()?;
        let ask = serde_json::json!({ "principal": body.get("principal"), "needed": "read" });
        let _: serde_json::Value =
            rpc::call(&self.env, ActorKind::Content, &run.content_id.to_string(), "authorize", &ask).await?;
        Ok(())
    }

    async fn inspect(&self) -> ApiResult<serde_json::Value> {
        let run = self.require()?;
        let alarm = self.state.storage().get_alarm().await?;
        let mut typed = serde_json::to_value(run.view(alarm))?;
        typed["purged"] = json!(run.purged);
        typed["has_document"] = json!(self.cells().load::<ContentDoc>("doc")?.is_some());
        typed["outbox"] = self.outbox()?.describe()?;
        super::inspection(&self.state, "run", &run.id.to_string(), typed, alarm, &self.log())
    }
}

impl DurableObject for PipelineActor {
    fn new(state: State, env: Env) -> Self {
        PipelineActor { state, env, run: RefCell::new(None), doc: RefCell::new(None) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let r = self.dispatch(req).await;
        if let Ok(Some(run)) = self.load() {
            let _ = self.ensure_alarm(&run).await;
        }
        rpc::reply(r)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.drain().await {
            worker::console_error!("run duties failed: {e}");
        }
        match self.tick().await {
            // The alarm that fired is spent: arm the next wake (a step or an owed duty).
            Ok(()) => {
                if let Ok(Some(run)) = self.load() {
                    if let Err(e) = self.arm(&run, now_ms()).await {
                        worker::console_error!("pipeline re-arm failed: {e}");
                    }
                }
            }
            Err(e) => {
                // Re-arm so a failed tick (storage hiccup, crashed call) is retried.
                worker::console_error!("pipeline alarm failed: {e}");
                if matches!(self.load(), Ok(Some(run)) if !run.status.is_terminal()) {
                    let _ = self.state.storage().set_alarm(to_datetime(now_ms() + 1_000)).await;
                }
            }
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}

pub fn to_datetime(ms: Millis) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

async fn with_timeout<F>(ms: u64, f: F) -> Result<(), StageFailure>
where
    F: std::future::Future<Output = Result<(), StageFailure>>,
{
    use futures::future::{select, Either};
    let timer = Box::pin(worker::Delay::from(std::time::Duration::from_millis(ms)));
    match select(Box::pin(f), timer).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(StageFailure::Error(crate::domain::pipeline::StageError::transient(format!(
            "timed out after {ms} ms"
        )))),
    }
}
