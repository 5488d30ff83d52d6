//! `PipelineActor`: one pipeline run. A thin shell over
//! [`crate::domain::pipeline::PipelineRun`]: each activation (an alarm, or
//! the start request) runs the ready stages back to back within a budget
//! ([`Activation`]), commits each stage's outcome with its events before the
//! next starts, pushes what it committed once at its end, and arms one alarm.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage};

use crate::store::outbox::Outbox;
use super::ActorStorage;
use super::ops::{AccessNeeded, Authorize, CancelRun, Done, FireAlarm, Inspect, Inspectable, PurgeRun, ReconcileRun, RetryRun, RunCall, RunEnded, RunOps, StartRun, ViewRun};
use super::rpc;
use super::topic_sockets::{opener, TopicSockets};
use super::TopicActor;
use crate::catalog;
use crate::domain::content::ContentDoc;
use crate::domain::faults;
use crate::domain::outbox::{Duty, START_ROW_DELAY_MS};
use crate::domain::pipeline::{Activation, PipelineRun, StageError};
use crate::domain::principal::Principal;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, EventRecord, RunStatus, RunView, Topic};
use crate::providers::{Providers, VectorIndex};
use crate::runtime::{config, now_ms};
use crate::stages::artifacts::ArtifactMemory;
use crate::stages::{self, ArtifactStore, StageContext, StageFailure};
use crate::store::StateKey;

#[durable_object]
pub struct PipelineActor {
    shell: Rc<RunShell>,
}

/// The actor's state and logic, shared (`Rc`) so the start request can hand
/// its first activation to `wait_until` and answer at once.
struct RunShell {
    state: State,
    env: Env,
    /// Read-through copies of the stored run and document. This instance is
    /// their only writer, so a copy stays current for as long as it lives, and
    /// each activation skips re-reading and re-parsing the whole journal.
    run: RefCell<Option<PipelineRun>>,
    doc: RefCell<Option<Rc<ContentDoc>>>,
    /// An activation is running stages in this instance. Only it runs stages;
    /// an alarm arriving meanwhile (its watchdog) just moves the watchdog on.
    /// Memory only on purpose: the activation dies with the instance, and the
    /// watchdog alarm resumes the run from its last committed stage.
    active: Cell<bool>,
    /// Its tables as this instance knows them; the outbox's part says whether
    /// a duty awaits its alarm check: a call that changes nothing (a
    /// subscribe, a view) then skips the check.
    memory: super::ActorMemory,
    artifact_memory: ArtifactMemory,
    /// Sockets opened on this run's topic (`GET /api/topics/run:<id>/ws`):
    /// each commit is sent to them in its own turn, with no session between.
    sockets: TopicSockets,
}

/// Marks a run whose item was deleted before its start arrived.
const PURGED_BEFORE_START: StateKey<bool> = StateKey::named("purged_before_start");
/// The run.
const RUN: StateKey<PipelineRun> = StateKey::named("run");
/// The run's copy of its version's document.
const DOC: StateKey<ContentDoc> = StateKey::named("doc");
/// How long a stage may await before the events committed ahead of it are
/// pushed without waiting for the activation's end.
const PUSH_WHILE_WAITING_MS: u64 = 1_000;

crate::actor_storage!(RunShell, forget_copies_of_storage);

impl RunShell {
    fn load(&self) -> ApiResult<Option<PipelineRun>> {
        if let Some(run) = self.run.borrow().as_ref() {
            return Ok(Some(run.clone()));
        }
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        let run: Option<PipelineRun> = self.cells().load(RUN)?.map(PipelineRun::with_every_stage);
        self.run.replace(run.clone());
        Ok(run)
    }

    fn document(&self) -> ApiResult<Rc<ContentDoc>> {
        if let Some(doc) = self.doc.borrow().as_ref() {
            return Ok(Rc::clone(doc));
        }
        let doc: ContentDoc = self.cells().load(DOC)?.ok_or_else(|| ApiError::not_found("run document"))?;
        let doc = Rc::new(doc);
        self.doc.replace(Some(Rc::clone(&doc)));
        Ok(doc)
    }

    fn artifacts(&self) -> ArtifactStore {
        ArtifactStore::new(self.state.storage().sql(), self.artifact_memory.clone())
    }

    fn require(&self) -> ApiResult<PipelineRun> {
        self.load()?.ok_or_else(|| ApiError::not_found("run"))
    }

    fn topic(run: &PipelineRun) -> Topic {
        Topic::Run(run.id)
    }

    /// After a rolled-back transaction: the run, its document and its
    /// artifacts are read again.
    fn forget_copies_of_storage(&self) {
        self.run.replace(None);
        self.doc.replace(None);
        self.artifact_memory.forget();
    }

    /// Saves the run and appends its events, all or none (one
    /// transaction), then sends them to the sockets this run holds. The
    /// caller pushes the records to sessions: see [`Self::push`].
    fn commit(&self, run: &PipelineRun, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<Vec<EventRecord>> {
        self.commit_with(run, drafts, now, || Ok(()))
    }

    /// [`Self::commit`] with `more` writes in the same transaction, after
    /// the events (so a report there reads their last seq).
    fn commit_with(&self, run: &PipelineRun, drafts: Vec<EventDraft>, now: Millis, more: impl FnOnce() -> ApiResult<()>) -> ApiResult<Vec<EventRecord>> {
        let records = self.atomically(|| {
            self.cells().save(RUN, run)?;
            let records = self.log().append(drafts, now)?;
            more()?;
            Ok(records)
        })?;
        self.run.replace(Some(run.clone()));
        self.sockets.publish(self, Self::topic(run), &records);
        Ok(records)
    }

    /// [`Self::commit`] of an activation's step: a step that ended the run
    /// commits with what it owes ([`Self::owe_end`]).
    fn commit_step(&self, run: &PipelineRun, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<Vec<EventRecord>> {
        let ended = run.status.is_terminal();
        self.commit_with(run, drafts, now, || if ended { self.owe_end(run, now) } else { Ok(()) })
    }

    /// What an ended run owes, put in the transaction of the commit that
    /// ends it: its catalog row, and the item's report unless the run
    /// completed (its publish told the item). See [`Self::on_terminal`].
    fn owe_end(&self, run: &PipelineRun, now: Millis) -> ApiResult<()> {
        let mut owed = vec![Duty::Catalog];
        if run.status != RunStatus::Completed {
            owed.push(self.report(run));
        }
        self.outbox()?.put(&owed, now)
    }

    /// Sends committed events to subscribers without holding up the caller:
    /// once per request or activation. A lost push is late, never lost: the
    /// events are in the log and sessions catch up by cursor.
    fn push(&self, run: &PipelineRun, records: Vec<EventRecord>) {
        if records.is_empty() {
            return;
        }
        self.push_later(Self::topic(run), records);
    }

    /// Commits (with `more`) and pushes: for requests that make one change.
    fn commit_and_push(&self, run: &PipelineRun, drafts: Vec<EventDraft>, now: Millis, more: impl FnOnce() -> ApiResult<()>) -> ApiResult<()> {
        let records = self.commit_with(run, drafts, now, more)?;
        self.push(run, records);
        Ok(())
    }

    fn outbox(&self) -> ApiResult<Outbox<'_>> {
        Outbox::open(self.state.storage().sql(), &self.memory.outbox)
    }

    /// The next wake: the run's next step, the earliest pending duty, a
    /// dropped broadcast's catch-up or a socket's expiry.
    fn next_wake(&self, run: &PipelineRun, now: Millis) -> ApiResult<Option<Millis>> {
        let duty = self.outbox()?.next_due()?.map(|at| at.max(now));
        Ok([run.next_alarm(now), duty, self.sockets.due(self, now)].into_iter().flatten().min())
    }

    /// Opens a socket on this run's topic for the principal the Worker names,
    /// if it may follow the run (the same rule as a session's subscription).
    async fn accept(&self, actor: &PipelineActor, req: &Request) -> ApiResult<Response> {
        let opener = opener(req)?;
        actor.admit(&opener.principal).await?;
        let run = self.require()?;
        self.sockets.accept(self, Self::topic(&run), req, &opener, |_| Self::snapshot(&run)).await
    }

    /// The run's view, which a `resync_required` frame carries.
    fn snapshot(run: &PipelineRun) -> serde_json::Value {
        serde_json::to_value(run.view(None)).unwrap_or_default()
    }

    /// The run, for its sockets' frames (none before the run exists).
    fn loaded(&self) -> Option<PipelineRun> {
        self.load().ok().flatten()
    }

    async fn arm(&self, run: &PipelineRun, now: Millis) -> ApiResult<()> {
        let storage = self.state.storage();
        match self.next_wake(run, now)? {
            Some(at) => storage.set_alarm(super::alarm_time(at)).await?,
            None => storage.delete_alarm().await?,
        }
        self.memory.outbox.armed();
        Ok(())
    }

    /// At every wake: an alarm must be armed whenever work remains.
    async fn ensure_alarm(&self, run: &PipelineRun) -> ApiResult<()> {
        let now = now_ms();
        if self.next_wake(run, now)?.is_some() && self.state.storage().get_alarm().await?.is_none() {
            self.arm(run, now).await?;
        }
        self.memory.outbox.armed();
        Ok(())
    }

    /// Tries every duty that is due (catalog rows, the end report); a failed
    /// one waits with backoff for a later alarm.
    async fn drain(&self) -> ApiResult<()> {
        self.outbox()?.drain("run", |duty, tries| self.perform(duty, tries)).await
    }

    async fn perform(&self, duty: Duty, tries: u32) -> ApiResult<()> {
        let run = self.require()?;
        // By value: the drain hands over its own copy of the duty.
        match duty {
            Duty::Catalog => {
                let cfg = config(&self.env);
                cfg.faults.check(faults::CATALOG, &run.id.to_string(), tries + 1)?;
                // Written from the run as it is now, never an older copy.
                catalog::record_run(&self.env, &run, now_ms()).await
            }
            Duty::ReportEnd { content_id, report } => {
                match rpc::send(&self.env, &content_id.to_string(), &report).await {
                    // A deleted item needs no report.
                    Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Duty::TakeBackVectors { ids } => Providers::from_config(&self.env, &config(&self.env))
                .vectors
                .take_back(&ids)
                .await
                .map_err(|e| ApiError::Unavailable(format!("vector index: {e}"))),
            other => Err(ApiError::Internal(format!("a run owes no duty {}", other.key()))),
        }
    }

    /// The ids this run's index stage may have written where no fence keeps
    /// a late write out (Vectorize): every chunk of its version, once the
    /// stage has been tried. None for a fencing backend, or before the stage.
    fn unfenced_writes(&self, run: &PipelineRun) -> Vec<String> {
        let cfg = config(&self.env);
        if !run.record(crate::protocol::Stage::Index).was_tried() || Providers::from_config(&self.env, &cfg).vectors.fences_writes() {
            return Vec::new();
        }
        let artifacts = self.artifacts();
        let (Some(dim), Ok(flat)) = (artifacts.get_opt(stages::artifacts::DIM), artifacts.get_blob(stages::artifacts::VECTORS)) else {
            return Vec::new();
        };
        let cid = run.content_id.to_string();
        (0..flat.len() / dim.max(1)).map(|i| crate::domain::vector::vector_id(&cid, run.version, i as u32)).collect()
    }

    /// Tries the duties just committed, and arms the alarm that retries
    /// what is still owed after an ended run.
    async fn try_owed(&self, run: &PipelineRun) -> ApiResult<()> {
        let _ = self.drain().await;
        self.arm(run, now_ms()).await
    }

    /// Records the run's catalog row as owed and tries it now.
    async fn catalog_now(&self, now: Millis) -> ApiResult<()> {
        self.outbox()?.put(&[Duty::Catalog], now)?;
        self.drain().await
    }

    /// Erases this run's copies of a deleted item: document, artifacts
    /// (chunks, vectors, stage outputs) and alarm; a live run ends cancelled.
    async fn purge(&self) -> ApiResult<Done> {
        let Some(mut run) = self.load()? else {
            // Purged before its start landed (a spawn in flight): the start is refused.
            let sql = self.state.storage().sql();
            crate::store::init_state(&sql)?;
            self.cells().save(PURGED_BEFORE_START, &true)?;
            return Ok(Done {});
        };
        let now = now_ms();
        // Read before the erase takes the vectors it counts.
        let written = self.unfenced_writes(&run);
        let events = run.purge(stages::CONTENT_DELETED, now);
        let mut owed = vec![Duty::Catalog];
        if !written.is_empty() {
            owed.push(Duty::TakeBackVectors { ids: written });
        }
        // The purged run, its erasure and what it owes: all or none.
        self.commit_and_push(&run, events, now, || {
            self.erase()?;
            self.outbox()?.put(&owed, now)
        })?;
        self.try_owed(&run).await?;
        Ok(Done {})
    }

    /// Deletes the document and every artifact (synchronous, one step).
    fn erase(&self) -> ApiResult<()> {
        self.cells().delete(DOC)?;
        self.doc.replace(None);
        self.artifacts().clear()
    }

    async fn start(self: &Rc<Self>, req: StartRun) -> ApiResult<()> {
        let sql = self.state.storage().sql();
        let artifacts = self.artifacts();
        // Creating the tables is the existence check: it fails when the run's
        // actor exists, so a new run asks the catalog nothing.
        let new = self.run.borrow().is_none() && self.create_new_tables(&[stages::artifacts::TABLE]);
        if !new {
            if self.load()?.is_some() {
                // Idempotent: a retried spawn finds the run under way. One
                // that says its version was superseded overtook an earlier
                // try that started it: it ends as a superseding cancel would.
                if let Some(reason) = req.superseded.as_deref() {
                    self.cancel(reason, true).await?;
                }
                return Ok(());
            }
            if crate::store::has_state(&sql) && self.cells().load(PURGED_BEFORE_START)?.unwrap_or(false) {
                return Err(ApiError::Superseded(stages::CONTENT_DELETED.into()));
            }
            crate::store::init_state(&sql)?;
            artifacts.init()?;
        }
        let cfg = config(&self.env);
        let now = now_ms();
        let namespace = || artifacts.put(stages::artifacts::NAMESPACE, &req.ownership.namespace()).map_err(|e| ApiError::Internal(e.message));
        let (run, mut events) = PipelineRun::new(req.run_id, req.content_id, req.version, cfg.retry, now);
        let mut run = run.owned_by(&req.ownership);
        self.memory.subscribers.none_yet();
        self.sockets.none_yet();
        if let Some(reason) = req.superseded.as_deref() {
            // Superseded before it started: made ended, with no document and
            // no stage; it reports its end as any cancelled run does.
            events.extend(run.supersede(reason, now));
            self.commit_and_push(&run, events, now, || {
                namespace()?;
                self.owe_end(&run, now)
            })?;
            self.on_terminal(&run).await;
            return Ok(());
        }
        // The run, its document and its catalog row owed: all or none.
        self.commit_and_push(&run, events, now, || {
            namespace()?;
            self.cells().save(DOC, &req.doc)?;
            self.outbox()?.put_at(&Duty::Catalog, now + START_ROW_DELAY_MS)
        })?;
        self.doc.replace(Some(Rc::new(req.doc)));
        // The first stages run in this invocation, right after the answer, not
        // an alarm round trip later. The watchdog resumes the run if this
        // instance dies first.
        let watchdog = Activation::watchdog_from(now, cfg.run_budget_ms);
        self.state.storage().set_alarm(super::alarm_time(watchdog)).await?;
        let shell = Rc::clone(self);
        self.state.wait_until(async move { shell.activate_or_retry_later(true).await });
        Ok(())
    }

    /// One activation: runs the ready stages back to back (see
    /// [`Activation`]), pushes every event it committed once, then arms the
    /// next wake. `watchdog_armed` says the caller already set the watchdog.
    async fn activate(&self, watchdog_armed: bool) -> ApiResult<()> {
        if self.active.replace(true) {
            // Another activation drives the run and arms the next wake when it
            // ends; until then a watchdog stays armed.
            let at = Activation::watchdog_from(now_ms(), config(&self.env).run_budget_ms);
            return Ok(self.state.storage().set_alarm(super::alarm_time(at)).await?);
        }
        // Before the stages' broadcasts, so a revoked key's socket gets none of them.
        self.sockets.check_keys(self, now_ms()).await;
        let mut committed = Vec::new();
        let outcome = self.run_stages(watchdog_armed, &mut committed).await;
        self.active.set(false);
        if let Some(run) = self.load()? {
            self.push(&run, committed);
        }
        match outcome? {
            None => Ok(()),
            Some((run, true)) => {
                self.on_terminal(&run).await;
                Ok(())
            }
            Some((run, false)) => self.arm(&run, now_ms()).await,
        }
    }

    /// [`Self::activate`], and when it fails (a storage hiccup, a crashed
    /// call) an alarm a second later tries again: while the run goes on, or
    /// an ended run still owes a duty (its catalog row, its report).
    async fn activate_or_retry_later(&self, watchdog_armed: bool) {
        if let Err(e) = self.activate(watchdog_armed).await {
            worker::console_error!("pipeline activation failed: {e}");
            let owes = !matches!(self.outbox().and_then(|o| o.next_due()), Ok(None));
            if owes || matches!(self.load(), Ok(Some(run)) if !run.status.is_terminal()) {
                let _ = self.state.storage().set_alarm(super::alarm_time(now_ms() + 1_000)).await;
            }
        }
    }

    /// The stages of one activation, each committed with its events (into
    /// `committed`) before the next starts: a stage's outcome and the next
    /// stage's start are one commit. Returns the run as it stands and whether
    /// a stage of this activation ended it.
    async fn run_stages(&self, mut watchdog_armed: bool, committed: &mut Vec<EventRecord>) -> ApiResult<Option<(PipelineRun, bool)>> {
        let cfg = config(&self.env);
        let mut activation = Activation::new(now_ms(), cfg.run_budget_ms);
        let Some(mut run) = self.load()? else { return Ok(None) };
        let mut now = now_ms();
        // No activation of this instance is running (`active`): a stage still
        // marked running was cut off with its isolate.
        let recovered = run.recover_interrupted(now);
        if !recovered.is_empty() {
            committed.extend(self.commit_step(&run, recovered, now)?);
            if run.status.is_terminal() {
                return Ok(Some((run, true)));
            }
        }
        let Some(mut stage) = activation.next(&mut run, now) else { return Ok(Some((run, false))) };
        let mut events = run.start_stage(stage, now).map_err(refused)?;
        loop {
            committed.extend(self.commit(&run, events, now)?);
            if !watchdog_armed {
                self.state.storage().set_alarm(super::alarm_time(activation.watchdog_at())).await?;
                watchdog_armed = true;
            }
            let outcome = self.execute_pushing_if_long(&cfg, &run, stage, committed).await;
            // A purge that landed while the stage awaited erased the run's
            // copies, and the stage may have written an artifact since: it
            // goes in this same turn, before any other await (an instance
            // lost in one would keep it, with no wake left to erase it).
            if self.require()?.purged {
                self.erase()?;
            }

            // The keys the run's sockets rest on, again when due: the
            // watchdog alarms that fire while a stage awaits check them
            // only every 5 s, so one that came due meanwhile is checked
            // before this commit's events go out.
            self.sockets.check_keys(self, now_ms()).await;
            // Read again: a cancel or purge may have landed while the stage
            // awaited (a purge meanwhile erased all itself).
            run = self.require()?;
            now = now_ms();
            if run.status.is_terminal() {
                return Ok(Some((run, false)));
            }
            events = match outcome {
                Ok(()) => run.finish_stage(stage, Ok(()), now),
                Err(StageFailure::Error(e)) => run.finish_stage(stage, Err(e), now),
                Err(StageFailure::Superseded(why)) => Ok(run.supersede(&why, now)),
            }
            .map_err(refused)?;
            let ended = run.status.is_terminal();
            match activation.next(&mut run, now) {
                Some(next) if !ended => {
                    events.extend(run.start_stage(next, now).map_err(refused)?);
                    stage = next;
                }
                _ => {
                    committed.extend(self.commit_step(&run, events, now)?);
                    if ended && run.status == RunStatus::Completed {
                        // Its copies (document, chunks, vectors, stage
                        // outputs) are never read again: the item holds what
                        // was published, a completed run is never retried,
                        // and its index write is visible, so a DELETE's sweep
                        // finds it. Erased in the commit's turn; a failure
                        // only leaves them stored.
                        if let Err(e) = self.erase() {
                            worker::console_error!("run {}: copies kept after completion: {e}", run.id);
                        }
                    }
                    return Ok(Some((run, ended)));
                }
            }
        }
    }

    /// [`Self::execute`], and when the stage is still awaiting (a model
    /// call, the analyzer) after [`PUSH_WHILE_WAITING_MS`], what the
    /// activation committed so far goes to the following sessions then, not
    /// at its end: a long stage does not hold back the events before it.
    /// A run no session follows costs no timer.
    async fn execute_pushing_if_long(
        &self,
        cfg: &crate::config::Config,
        run: &PipelineRun,
        stage: crate::protocol::Stage,
        committed: &mut Vec<EventRecord>,
    ) -> Result<(), StageFailure> {
        let attempt = self.execute(cfg, run, stage);
        if committed.is_empty() || self.subs().list().is_empty() {
            return attempt.await;
        }
        let attempt = std::pin::pin!(attempt);
        let waited = std::pin::pin!(worker::Delay::from(std::time::Duration::from_millis(PUSH_WHILE_WAITING_MS)));
        match futures::future::select(attempt, waited).await {
            futures::future::Either::Left((outcome, _)) => outcome,
            futures::future::Either::Right(((), attempt)) => {
                self.push(run, std::mem::take(committed));
                attempt.await
            }
        }
    }

    /// One attempt of `stage`, within its timeout (or an injected fault).
    async fn execute(&self, cfg: &crate::config::Config, run: &PipelineRun, stage: crate::protocol::Stage) -> Result<(), StageFailure> {
        let attempt = run.record(stage).attempts;
        if cfg.faults.strikes(&run.id.to_string(), stage, attempt) {
            let why = format!("injected fault ({stage}={})", cfg.faults.probability(stage));
            return Err(StageFailure::Error(StageError::transient(why)));
        }
        let doc = self.document().map_err(|e| StageFailure::Error(StageError::transient(e.to_string())))?;
        let artifacts = self.artifacts();
        let cx = StageContext { env: &self.env, cfg, run, doc: &doc, artifacts: &artifacts };
        with_timeout(run.policy(stage).timeout_ms, stages::execute(stage, &cx)).await
    }

    /// The item's report of how `run` stands: how it ended, or (a status
    /// that is not terminal) that an operator retried it. Ordered by the
    /// run's newest event, committed just before (see `RunEnded::seq`).
    fn report(&self, run: &PipelineRun) -> Duty {
        let seq = self.log().last_seq().ok();
        let report = RunEnded { run_id: Some(run.id), version: run.version, status: run.status, reason: run.reason.clone(), seq };
        Duty::ReportEnd { content_id: run.content_id, report }
    }

    /// Tries what an ended run owes (its catalog row, dead letter and the
    /// item's report, put with the commit that ended it: [`Self::owe_end`])
    /// before the alarm returns, so the dead-letter list has a failure as
    /// soon as the run says `failed`; the alarm retries them until they land.
    async fn on_terminal(&self, run: &PipelineRun) {
        if let Err(e) = self.drain().await {
            worker::console_error!("run duties: {e}");
        }
        // Armed for the run as stored now: a retry may have committed while
        // the duties were awaited, and its alarm must not be deleted.
        let stored = self.load().ok().flatten();
        if let Err(e) = self.arm(stored.as_ref().unwrap_or(run), now_ms()).await {
            // The alarm a second later retries the duties still owed.
            worker::console_error!("run alarm after its end: {e}");
            let _ = self.state.storage().set_alarm(super::alarm_time(now_ms() + 1_000)).await;
        }
    }

    async fn cancel(&self, reason: &str, superseded: bool) -> ApiResult<RunView> {
        let mut run = self.require()?;
        let now = now_ms();
        let take_back = |written: &Vec<String>| match written.is_empty() {
            true => Ok(()),
            false => self.outbox()?.put(&[Duty::TakeBackVectors { ids: written.clone() }], now),
        };
        if superseded && matches!(run.status, RunStatus::Completed | RunStatus::Cancelled) {
            // It has ended (and reported so): only its retry is closed now
            // (a completed run has none). A failed run goes on below: it
            // ends cancelled and leaves the dead-letter list.
            if run.status != RunStatus::Completed && !run.superseded {
                // An operator's cancel cut its index stage short: what it
                // wrote unfenced is taken back as a superseding cancel's is.
                let written = self.unfenced_writes(&run);
                run.supersede(reason, now);
                self.commit_and_push(&run, Vec::new(), now, || take_back(&written))?;
                if !written.is_empty() {
                    self.try_owed(&run).await?;
                }
            }
            return Ok(run.view(None));
        }
        // A superseded version's index writes where no fence keeps a late
        // one out (Vectorize) are taken back: one not yet visible escapes the
        // newer version's sweep, and this run is never tried again.
        let written = if superseded { self.unfenced_writes(&run) } else { Vec::new() };
        let events = if superseded { run.supersede(reason, now) } else { run.cancel(reason, now)? };
        // Its end's duties (the item's report, the catalog) commit with the
        // cancel; on_terminal tries them and arms the alarm after.
        self.commit_and_push(&run, events, now, || {
            take_back(&written)?;
            self.owe_end(&run, now)
        })?;
        self.on_terminal(&run).await;
        Ok(run.view(None))
    }

    async fn retry(&self) -> ApiResult<RunView> {
        let mut run = self.require()?;
        let now = now_ms();
        let events = run.retry(now)?;
        // The item said `failed`; it says `processing` again, told as its
        // end was (committed with the retry, tried by the next alarm).
        self.commit_and_push(&run, events, now, || self.outbox()?.put(&[self.report(&run)], now))?;
        self.arm(&run, now).await?;
        // The retry is committed: a catalog write that fails now is the
        // outbox's to retry, not the caller's error.
        if let Err(e) = self.catalog_now(now).await {
            worker::console_error!("run {}: catalog row after retry is owed: {e}", run.id);
        }
        Ok(run.view(run.next_alarm(now)))
    }

    async fn view(&self) -> ApiResult<RunView> {
        let run = self.require()?;
        self.ensure_alarm(&run).await?;
        let alarm = self.state.storage().get_alarm().await?;
        Ok(run.view(alarm))
    }

    async fn inspect(&self) -> ApiResult<serde_json::Value> {
        let run = self.require()?;
        let alarm = self.state.storage().get_alarm().await?;
        let mut typed = serde_json::to_value(run.view(alarm))?;
        typed["purged"] = json!(run.purged);
        typed["activations"] = json!(run.activations);
        typed["has_document"] = json!(self.cells().load(DOC)?.is_some());
        typed["outbox"] = self.outbox()?.describe()?;
        typed["broadcast_lag"] = json!(TopicSockets::stored_lag(self));
        super::inspection(&self.state, "run", &run.id.to_string(), typed, &self.log()).await
    }
}

impl ActorStorage for PipelineActor {
    fn state(&self) -> &State {
        &self.shell.state
    }
    fn env(&self) -> &Env {
        &self.shell.env
    }
    fn memory(&self) -> &super::ActorMemory {
        &self.shell.memory
    }
    fn forget_copies(&self) {
        self.shell.forget_copies_of_storage();
    }
}

impl RunOps for PipelineActor {
    async fn start(&self, q: StartRun) -> ApiResult<Done> {
        self.shell.start(q).await.map(|()| Done {})
    }

    async fn view(&self, _q: ViewRun) -> ApiResult<RunView> {
        self.shell.view().await
    }

    async fn cancel(&self, q: CancelRun) -> ApiResult<RunView> {
        self.shell.cancel(q.reason.as_deref().unwrap_or("cancelled by operator"), q.superseded).await
    }

    async fn retry(&self, _q: RetryRun) -> ApiResult<RunView> {
        self.shell.retry().await
    }

    async fn purge(&self, _q: PurgeRun) -> ApiResult<Done> {
        self.shell.purge().await
    }

    /// The operator's reconciliation: the catalog row is owed again.
    async fn reconcile(&self, _q: ReconcileRun) -> ApiResult<Done> {
        self.shell.require()?;
        self.shell.catalog_now(now_ms()).await?;
        Ok(Done {})
    }
}

impl Inspectable for PipelineActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<serde_json::Value> {
        self.shell.inspect().await
    }

    /// What the alarm does ([`PipelineActor::wake`]).
    async fn fire_alarm(&self, _q: FireAlarm) -> ApiResult<serde_json::Value> {
        self.shell.require()?;
        self.wake().await;
        self.shell.inspect().await
    }
}

impl PipelineActor {
    /// The alarm's work: expired sockets close and a broadcast dropped
    /// before this wake goes out, then the owed duties (a failed run's dead
    /// letter), then an activation, retried a second later if it fails.
    async fn wake(&self) {
        let shell = &self.shell;
        shell.sockets.sweep(&**shell, now_ms());
        shell.sockets.check_keys(&**shell, now_ms()).await;
        if let Some(run) = shell.loaded() {
            if let Err(e) = shell.sockets.catch_up(&**shell, RunShell::topic(&run)) {
                worker::console_error!("run socket catch-up failed: {e}");
            }
        }
        if let Err(e) = shell.drain().await {
            worker::console_error!("run duties failed: {e}");
        }
        // The alarm that fired is spent: the activation arms the next wake.
        shell.activate_or_retry_later(false).await;
    }
}

impl TopicActor for PipelineActor {
    fn topic(&self) -> ApiResult<Option<Topic>> {
        Ok(self.shell.load()?.map(|r| RunShell::topic(&r)))
    }

    fn resync_snapshot(&self) -> ApiResult<serde_json::Value> {
        Ok(self.shell.load()?.map(|r| RunShell::snapshot(&r)).unwrap_or_default())
    }

    /// A run's topic is readable by whoever may read its content. Its owner,
    /// a manager of its tenant and the operator may read it whatever its
    /// visibility, which the run knows; for anyone else the content actor
    /// owns the answer (404 when the subscriber may not read it).
    async fn admit(&self, principal: &Principal) -> ApiResult<()> {
        let run = self.shell.require()?;
        if run.followable_by(principal) {
            return Ok(());
        }
        let ask = Authorize { principal: principal.clone(), needed: AccessNeeded::Read, version: Some(run.version) };
        rpc::send(&self.shell.env, &run.content_id.to_string(), &ask).await.map(|_| ())
    }
}

impl DurableObject for PipelineActor {
    fn new(state: State, env: Env) -> Self {
        super::socket::answer_pings(&state);
        let shell = RunShell {
            state,
            env,
            run: RefCell::new(None),
            doc: RefCell::new(None),
            active: Cell::new(false),
            memory: Default::default(),
            artifact_memory: Default::default(),
            sockets: TopicSockets::default(),
        };
        PipelineActor { shell: Rc::new(shell) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if crate::http::is_websocket_upgrade(&req) {
            return Ok(self.shell.accept(self, &req).await.unwrap_or_else(|e| crate::http::error(&e)));
        }
        super::rpc::not_a_call()
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.wake().await;
        Response::ok("ok")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        let shell = &self.shell;
        // A frame may ask for a replay: a revoked key's socket is closed first.
        shell.sockets.check_keys(&**shell, now_ms()).await;
        match shell.loaded() {
            Some(run) => shell.sockets.on_message(&**shell, RunShell::topic(&run), &ws, message, |_| RunShell::snapshot(&run)),
            None => shell.sockets.on_error(&ws),
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        self.shell.sockets.on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.shell.sockets.on_error(&ws);
        Ok(())
    }
}

/// A transition the activation itself asked for was refused: a broken
/// invariant (only one activation runs stages), not a client's conflict.
fn refused(e: crate::domain::pipeline::TransitionError) -> ApiError {
    ApiError::Internal(format!("pipeline transition refused: {e}"))
}

async fn with_timeout<F>(ms: u64, f: F) -> Result<(), StageFailure>
where
    F: std::future::Future<Output = Result<(), StageFailure>>,
{
    crate::runtime::within(ms, f)
        .await
        .unwrap_or_else(|| Err(StageFailure::Error(StageError::transient(format!("timed out after {ms} ms")))))
}

impl super::rpc::Answer for PipelineActor {
    /// Before a call (a cancel, a retry or a purge broadcasts what it
    /// commits), the keys of the run's sockets are checked when due, as an
    /// activation does. A call that left duties owed makes sure an alarm will
    /// retry them.
    async fn answer(&self, op: &str, body: &[u8]) -> super::rpc::Reply {
        let shell = &self.shell;
        shell.sockets.check_keys(&**shell, now_ms()).await;
        let r = RunCall::answer(self, op, body).await;
        if shell.memory.outbox.unarmed() {
            if let Ok(Some(run)) = shell.load() {
                let _ = shell.ensure_alarm(&run).await;
            }
        }
        r
    }
}

crate::rpc_entry!(PipelineActor);
