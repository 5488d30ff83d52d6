//! `ContentActor`: one content item, a thin shell over
//! [`crate::domain::content::ContentState`]. It spawns a run per version,
//! accepts the run's publish, and keeps the catalog and the feed informed.

use std::cell::{Cell, RefCell};

use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Response, State};

use crate::store::outbox::Outbox;
use super::ActorStorage;
use super::ops::{
    Announcer, Authorize, Authorized, CancelRun, ContentCall, ContentOps, CreateContent, DeleteContent, Done, Fence, Fenced, FireAlarm, ForgetSource, Inspect, Inspectable,
    CreateSettled, ItemEnded, Publish, Published, PurgeRun, ReconcileContent, ReconcileReport, ReconcileRun, RunEnded, RunReconciled, SettleCreate, SourceOf, UpdateContent,
    ViewContent,
};
use super::rpc;
use super::TopicActor;
use crate::catalog;
use crate::domain::batch::ItemRef;
use crate::domain::content::{fits_stored, superseded_reason, ContentState};
use crate::domain::faults;
use crate::domain::outbox::{Duty, LEASE_MS};
use crate::domain::principal::{Access, Principal};
use crate::domain::time::Millis;
use crate::domain::upload::Source;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{Accepted, ContentStatus, ContentView, EventDraft, EventRecord, Topic};
use crate::providers::object_store::{ObjectStore, R2Uploads};
use crate::providers::{Providers, VectorIndex};
use crate::runtime::{config, now_ms};
use crate::store::StateKey;

#[durable_object]
pub struct ContentActor {
    state: State,
    env: Env,
    /// Read-through copy of [`Self::load`]'s answer (`None` until first read).
    /// This instance is the only writer of its storage, so the copy stays
    /// current while it lives, and each call skips three statements and a
    /// JSON parse of the whole item.
    live: RefCell<Option<Option<ContentState>>>,
    /// The state table exists (once created it stays): skips the catalog query.
    created: Cell<bool>,
    /// The batch item this item is (`Some(None)`: none; `None`: not read
    /// yet). Set at creation and never changed, so a publish reads it once
    /// per instance at most.
    batch_item: RefCell<Option<Option<ItemRef>>>,
    /// Its tables as this instance knows them; the outbox's part says whether
    /// a duty awaits its alarm check: a call that owes nothing new (a fence,
    /// an authorize) then skips [`Self::arm`].
    memory: super::ActorMemory,
    /// This instance set the alarm for its duties' lease end before trying
    /// them ([`Self::settle_backstopped`]); [`Self::arm`] deletes it once
    /// nothing is owed, so a drain that landed everything costs no wake.
    backstop: Cell<bool>,
}

/// What a create found or made.
enum Made {
    New(Vec<EventRecord>),
    /// The same create again (a redelivered batch item).
    Again,
    /// Another item under this id.
    Exists,
}

/// A deleted item keeps a tombstone so late runs cannot resurrect it.
const TOMBSTONE: StateKey<bool> = StateKey::named("deleted");
/// The cell of a batch item's [`ItemRef`].
const BATCH_ITEM: StateKey<ItemRef> = StateKey::named("batch_item");
/// The item itself.
const CONTENT: StateKey<ContentState> = StateKey::named("content");
/// Answers read from the catalog at once when a deleted item's quotes are
/// erased, and told in one try of that duty.
const QUOTES_PAGE: u32 = 50;
const QUOTES_PER_TRY: usize = 200;

crate::actor_storage!(ContentActor, forget_live);

impl ContentActor {
    fn load(&self) -> ApiResult<Option<ContentState>> {
        self.with_loaded(|c| c.cloned())
    }

    /// `f` of the live item without a copy of it (not across an await:
    /// a commit meanwhile replaces it).
    fn with_loaded<T>(&self, f: impl FnOnce(Option<&ContentState>) -> T) -> ApiResult<T> {
        if self.live.borrow().is_none() {
            let live = if !self.created() || self.cells().load(TOMBSTONE)?.unwrap_or(false) {
                None
            } else {
                self.cells().load(CONTENT)?
            };
            self.live.replace(Some(live));
        }
        Ok(f(self.live.borrow().as_ref().and_then(Option::as_ref)))
    }

    /// Whether the item was ever created here (its state table exists).
    fn created(&self) -> bool {
        if !self.created.get() && crate::store::has_state(&self.state.storage().sql()) {
            self.created.set(true);
        }
        self.created.get()
    }

    fn require(&self) -> ApiResult<ContentState> {
        self.load()?.ok_or_else(|| ApiError::not_found("content"))
    }

    fn outbox(&self) -> ApiResult<Outbox<'_>> {
        Outbox::open(self.state.storage().sql(), &self.memory.outbox)
    }

    /// After a rolled-back transaction: the item, whether it exists and
    /// its batch item are read again.
    fn forget_live(&self) {
        self.live.replace(None);
        self.created.set(false);
        self.batch_item.replace(None);
    }

    /// Saves the state, its events and the duties it leaves, and then the
    /// `more` writes, all or nothing (one transaction); then pushes the
    /// events. The feed's events are owed too (a [`Duty::Announce`]), so a
    /// lost append is tried again. Callers then [`Self::drain`] (or
    /// [`Self::settle`]).
    fn commit(&self, c: &ContentState, drafts: Vec<EventDraft>, duties: &[Duty], now: Millis, more: impl FnOnce() -> ApiResult<()>) -> ApiResult<()> {
        let stored = encode(c)?;
        let records = self.atomically(|| {
            let records = self.write(c, stored, drafts, duties, now)?;
            more()?;
            Ok(records)
        })?;
        self.push_later(Topic::Content(c.id), records);
        Ok(())
    }

    /// A commit's statements, for a caller's transaction: the item (already
    /// [`encode`]d), its events and its duties.
    fn write(&self, c: &ContentState, stored: String, drafts: Vec<EventDraft>, duties: &[Duty], now: Millis) -> ApiResult<Vec<EventRecord>> {
        // Unknown until every write below has landed: a failed step re-reads.
        self.live.replace(None);
        self.cells().save_json(CONTENT, stored)?;
        // `FAULTS=torn=<p>`: the commit fails after its first statement.
        if let Some(fault) = config(&self.env).faults.poisons(faults::TORN, &c.doc.title) {
            return Err(fault.into());
        }
        let records = self.log().append(drafts, now)?;
        let feed: Vec<&EventRecord> = records.iter().filter(|r| r.event.is_feed_event()).collect();
        let announce = feed.first().map(|first| Duty::Announce {
            seq: first.seq,
            events: feed.iter().map(|r| EventDraft::new(r.event, r.data.clone())).collect(),
        });
        self.outbox()?.put(&[duties, announce.as_slice()].concat(), now)?;
        // A delete commits its tombstone state and then marks the copy gone.
        self.live.replace(Some(Some(c.clone())));
        Ok(records)
    }

    /// Tries every duty that is due; a failed one is rescheduled with backoff
    /// and the alarm is armed for the earliest pending duty.
    async fn drain(&self, firing: bool) -> ApiResult<()> {
        self.outbox()?.drain("content", |duty, tries| self.perform(duty, tries)).await?;
        self.arm(firing).await
    }

    /// After a commit: the change is accepted whatever happens here; a duty
    /// that cannot be tried now is left to the alarm.
    async fn settle(&self) {
        if let Err(e) = self.drain(false).await {
            worker::console_error!("content duties: {e}");
        }
    }

    /// [`Self::settle`] after a PUT or a DELETE. No caller retries such a
    /// call when this instance dies mid-drain (a crash, an eviction, a
    /// deploy), and nothing else wakes the actor: so the alarm is set for
    /// the duties' lease end before they are tried. A run's calls (publish,
    /// end) need none: the run retries them.
    async fn settle_backstopped(&self) {
        match self.state.storage().set_alarm(super::alarm_time(now_ms() + LEASE_MS)).await {
            Ok(()) => self.backstop.set(true),
            Err(e) => worker::console_error!("content backstop alarm: {e}"),
        }
        self.settle().await;
    }

    /// At every wake: an alarm is armed whenever a duty is pending. Inside
    /// the alarm handler (`firing`) the alarm that fired is spent, so it is
    /// set again without asking.
    async fn arm(&self, firing: bool) -> ApiResult<()> {
        // A drain in flight arms when it ends, but not the alarm that fired
        // meanwhile: it is spent, and that drain (a slow try past its lease)
        // may never end if the instance is reset. At worst this wakes once
        // for nothing when the other drain's lease ends.
        if !self.created() || (self.memory.outbox.draining() && !firing) {
            return Ok(());
        }
        let Some(due) = self.outbox()?.next_due()? else {
            if self.backstop.take() && !firing {
                self.state.storage().delete_alarm().await?;
            }
            self.memory.outbox.armed();
            return Ok(());
        };
        self.arm_by(due, firing).await?;
        // The alarm now serves what is owed.
        self.backstop.set(false);
        self.memory.outbox.armed();
        Ok(())
    }

    /// The item's id from its state cell, which a delete keeps (where
    /// `load` answers `None`), so the erasing duties know what to erase.
    fn stored_id(&self) -> ApiResult<Uuid> {
        if let Some(id) = self.with_loaded(|c| c.map(|c| c.id))? {
            return Ok(id);
        }
        Ok(self.cells().load(CONTENT)?.map(|c| c.id).unwrap_or_default())
    }

    async fn perform(&self, duty: Duty, tries: u32) -> ApiResult<()> {
        let cfg = config(&self.env);
        let attempt = tries + 1;
        if attempt == 1 && cfg.faults.site_strikes(faults::STALL, &duty.key(), attempt) {
            // Longer than any test waits: the test kills the process meanwhile.
            worker::Delay::from(std::time::Duration::from_secs(3_600)).await;
        }
        // By value: the drain hands over its own copy of the duty.
        match duty {
            Duty::SpawnRun { run_id, start } => {
                cfg.faults.check(faults::SPAWN, &run_id.to_string(), attempt)?;
                rpc::send(&self.env, &run_id.to_string(), &start).await.map(|_| ())
            }
            Duty::CancelRun { run_id, reason } => {
                settled(rpc::send(&self.env, &run_id.to_string(), &CancelRun { reason: Some(reason), superseded: true }).await)
            }
            Duty::PurgeRun { run_id } => {
                settled(rpc::send(&self.env, &run_id.to_string(), &PurgeRun {}).await)
            }
            Duty::Catalog => {
                let id = self.stored_id()?.to_string();
                cfg.faults.check(faults::CATALOG, &id, attempt)?;
                // Written from the state current now, so a late try never writes an old one.
                match self.load()? {
                    Some(c) => catalog::record_content(&self.env, &c, now_ms(), c.status == ContentStatus::Indexed).await,
                    None => catalog::delete_content(&self.env, &id, now_ms()).await,
                }
            }
            Duty::DropVectors => self.drop_vectors(&cfg, None).await,
            Duty::DropOlderVectors { keep } => {
                // A deleted item's own duty erases them all.
                if self.with_loaded(|c| c.is_none())? {
                    return Ok(());
                }
                self.drop_vectors(&cfg, Some(keep)).await
            }
            Duty::DropFingerprint => {
                let id = self.stored_id()?.to_string();
                Providers::from_config(&self.env, &cfg).analyzer.forget(&id).await
            }
            Duty::DropUploads { prefix } => R2Uploads::new(&self.env).delete_prefix(&prefix).await,
            Duty::EraseQuotes => self.erase_quotes().await,
            Duty::ReportBatch { batch_id, report } => {
                match rpc::send(&self.env, &batch_id.to_string(), &report).await {
                    Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Duty::Announce { seq, events } => {
                let content_id = self.stored_id()?;
                // An injected fault loses the call on a first try and the
                // reply on a later one, so both the retry and the feed's
                // once-only append are exercised.
                let fault = cfg.faults.site_fault(faults::FEED, &format!("{content_id}/{seq}"), attempt);
                if let Some(fault) = fault.clone().filter(|_| attempt == 1) {
                    return Err(fault.into());
                }
                super::feed::append(&self.env, events, Announcer { content_id, seq }).await?;
                fault.map_or(Ok(()), |f| Err(f.into()))
            }
            other @ (Duty::ReportEnd { .. } | Duty::TakeBackVectors { .. }) => {
                Err(ApiError::Internal(format!("content owes no duty {}", other.key())))
            }
        }
    }

    /// Tells the answers that quote this deleted item to erase it, a page
    /// at a time, forgetting each answer once told. Owed until none is
    /// left: a try tells at most [`QUOTES_PER_TRY`] answers (each is a
    /// call), and one that fails holds up none of the others.
    async fn erase_quotes(&self) -> ApiResult<()> {
        let content_id = self.stored_id()?;
        let id = content_id.to_string();
        // The catalog's erasure first (the same as the catalog duty's, which
        // may run beside this one): no answer records the item after it,
        // and the answers recorded before are all listed below.
        catalog::delete_content(&self.env, &id, now_ms()).await?;
        let (mut after, mut asked, mut failed) = (String::new(), 0, None);
        loop {
            let answers = catalog::answers_quoting(&self.env, &id, &after, QUOTES_PAGE).await?;
            let mut told = Vec::with_capacity(answers.len());
            for answer in &answers {
                let Ok(answer_id) = Uuid::parse_str(answer) else {
                    // Not an answer's id: nobody to tell.
                    told.push(answer.clone());
                    continue;
                };
                // An answer past its time to live has nothing left to
                // erase; one not started yet keeps the item out when it starts.
                match rpc::send(&self.env, answer, &ForgetSource { content_id, answer_id }).await {
                    Ok(_) | Err(ApiError::NotFound(_)) => told.push(answer.clone()),
                    Err(e) => failed = Some(e),
                }
            }
            catalog::drop_quotes(&self.env, &id, &told).await?;
            asked += answers.len();
            match answers.last() {
                Some(last) if answers.len() == QUOTES_PAGE as usize && asked < QUOTES_PER_TRY => after = last.clone(),
                Some(_) if answers.len() == QUOTES_PAGE as usize => break,
                _ => return failed.map_or(Ok(()), Err),
            }
        }
        Err(failed.unwrap_or_else(|| ApiError::Unavailable(format!("more than {QUOTES_PER_TRY} answers quote the item: the rest on the next try"))))
    }

    /// Erases the item's vectors: all of them, or those of versions older
    /// than `keep` (the vector index's `delete_content`).
    async fn drop_vectors(&self, cfg: &crate::config::Config, keep: Option<u32>) -> ApiResult<()> {
        let id = self.stored_id()?.to_string();
        Providers::from_config(&self.env, cfg)
            .vectors
            .delete_content(&id, keep)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::Unavailable(format!("vector index: {e}")))
    }

    /// The stored item, if `principal` may act on it as `needed` (404 when it
    /// may not read it, 403 when it may read but not change it).
    fn require_for(&self, principal: &Principal, needed: Access) -> ApiResult<ContentState> {
        let c = self.require()?;
        principal.require(&c.ownership, needed)?;
        Ok(c)
    }

    /// When `run` is the first run of a batch item, owes its batch the
    /// report of how it ended (`failure`: none when it completed).
    fn owe_batch_report(&self, run: Uuid, failure: Option<&str>, now: Millis) -> ApiResult<bool> {
        let known = *self.batch_item.borrow();
        let item = match known {
            Some(item) => item,
            None => {
                let item = self.cells().load(BATCH_ITEM)?;
                self.batch_item.replace(Some(item));
                item
            }
        };
        let Some(item) = item else { return Ok(false) };
        if item.run_id() != run {
            return Ok(false);
        }
        let report = ItemEnded { index: item.index, completed: failure.is_none(), reason: failure.map(str::to_string) };
        self.outbox()?.put(&[Duty::ReportBatch { batch_id: item.batch_id, report }], now)?;
        Ok(true)
    }

    async fn describe(&self) -> ApiResult<Value> {
        if !self.created() {
            return Err(ApiError::not_found("content"));
        }
        let c: Option<ContentState> = self.cells().load(CONTENT)?;
        let deleted = self.cells().load(TOMBSTONE)?.unwrap_or(false);
        let id = c.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
        let typed = json!({ "content": c, "deleted": deleted, "outbox": self.outbox()?.describe()? });
        super::inspection(&self.state, "content", &id, typed, &self.log()).await
    }
}

impl ContentOps for ContentActor {
    async fn create(&self, s: CreateContent) -> ApiResult<Accepted> {
        let mut ownership = s.ownership;
        if let Some(v) = s.visibility {
            ownership.visibility = v;
        }
        let now = now_ms();
        let (c, events) = ContentState::create(s.content_id, s.doc, ownership, s.run_id, now);
        // Before any write: an item refused for its size leaves no tables
        // behind, so a second try is refused the same way, not as existing.
        let stored = encode(&c)?;
        // The tables are made in the item's transaction: a failed create
        // leaves none, and its retry is a create, not an item that exists.
        let made = self.atomically(|| {
            // Creating the tables is the existence check: it fails when the
            // item exists, so a new item asks the catalog nothing.
            let new = !self.created.get() && self.create_new_tables(&[]);
            if !new {
                if self.created() {
                    // A redelivered batch item: the same create (same run)
                    // gets the same answer. Either way nothing was written:
                    // an answer, not a rollback.
                    let again = self.load()?.is_some_and(|c| c.history.first().is_some_and(|v| v.run_id == s.run_id));
                    return Ok(if again { Made::Again } else { Made::Exists });
                }
                crate::store::init_state(&self.state.storage().sql())?;
            }
            self.created.set(true);
            // A subscription needs the item to exist: its first pushes read no list.
            self.memory.subscribers.none_yet();
            if let Some(item) = &s.batch {
                self.cells().save(BATCH_ITEM, item)?;
            }
            self.batch_item.replace(Some(s.batch));
            self.write(&c, stored, events, &[c.spawn(s.run_id), Duty::Catalog], now).map(Made::New)
        })?;
        let records = match made {
            Made::New(records) => records,
            Made::Again => return Ok(Accepted::new(c.id, 1, s.run_id)),
            Made::Exists => return Err(ApiError::AlreadyExists("content".into())),
        };
        self.push_later(Topic::Content(c.id), records);
        // No backstop alarm: it would cost every submission two alarm
        // writes (a quarter of a run's CPU in local workerd). A create cut
        // off mid-drain is armed by the next call that reaches the item.
        self.settle().await;
        Ok(Accepted::new(c.id, c.version, s.run_id))
    }

    async fn update(&self, s: UpdateContent) -> ApiResult<Accepted> {
        let mut c = self.require_for(&s.principal, Access::Change)?;
        if let Some(expected) = s.if_match.filter(|v| *v != c.version) {
            return Err(ApiError::VersionConflict { expected, current: c.version });
        }
        if let Some(v) = s.visibility {
            c.ownership.visibility = v;
        }
        let now = now_ms();
        let (superseded, events) = c.new_version(s.doc, s.run_id, now)?;
        let reason = superseded_reason(c.version);
        // A replaced spawn goes in with the commit's duties (same key, new
        // seq: an in-flight try's `done` cannot remove it), so a refused
        // commit (too large) leaves the owed spawns as they were.
        let outbox = self.outbox()?;
        let owed = superseded
            .iter()
            .map(|run| match outbox.pending(&Duty::spawn_key(*run))? {
                Some(Duty::SpawnRun { start, .. }) => Ok((*run, Some(start))),
                _ => Ok((*run, None)),
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let duties = c.new_version_duties(owed, s.run_id);
        self.commit(&c, events, &duties, now, || {
            for run in &superseded {
                // A batch's item whose first run it was ends here (the run's
                // own report comes later, and the batch ignores a second one).
                self.owe_batch_report(*run, Some(&reason), now)?;
            }
            Ok(())
        })?;
        self.settle_backstopped().await;
        Ok(Accepted::new(c.id, c.version, s.run_id))
    }

    async fn publish(&self, p: Publish) -> ApiResult<Published> {
        let mut c = self.require()?;
        if c.history.iter().all(|v| v.run_id != p.run_id) {
            return Err(ApiError::InvalidTransition(format!("run {} is not a run of this content", p.run_id)));
        }
        let now = now_ms();
        // Idempotent for a retried publish of the version already indexed.
        let already = c.artifacts.as_ref().is_some_and(|a| a.version == p.artifacts.version) && c.status == ContentStatus::Indexed;
        if !already {
            let events = c.publish(p.artifacts, now)?;
            self.commit(&c, events, &[Duty::Catalog], now, || self.owe_batch_report(p.run_id, None, now).map(|_| ()))?;
        } else {
            self.owe_batch_report(p.run_id, None, now)?;
        }
        // The duties (the feed's append among them) are taken in the
        // commit's own turn: one commit, not two.
        self.drain(false).await?;
        Ok(Published { version: c.version, status: c.status })
    }

    async fn run_ended(&self, r: RunEnded) -> ApiResult<Done> {
        let mut c = self.require()?;
        let now = now_ms();
        if !c.take_report(r.version, r.seq) {
            return Ok(Done {});
        }
        let (events, duties, report) = if !r.status.is_terminal() {
            // Not an end: an operator retried the run (see `RunEnded`).
            let events = match r.run_id {
                Some(run) => c.run_retried(r.version, run, now),
                None => Vec::new(),
            };
            (events, vec![Duty::Catalog], None)
        } else {
            let reason = r.reason.unwrap_or_else(|| r.status.as_str().to_string());
            let events = c.run_failed(r.version, &reason, now);
            // The current version failed: nothing older stays in the vector
            // index (the catalog's write drops its keyword row).
            (events, vec![Duty::Catalog, Duty::DropOlderVectors { keep: r.version }], r.run_id.map(|run| (run, reason)))
        };
        let owe_report = || match &report {
            Some((run, reason)) => self.owe_batch_report(*run, Some(reason), now),
            None => Ok(false),
        };
        let changed = !events.is_empty();
        // The report's order is kept even when it changes nothing else.
        let reported = if changed || r.seq.is_some() {
            let mut reported = false;
            self.commit(&c, events, if changed { &duties } else { &[] }, now, || {
                reported = owe_report()?;
                Ok(())
            })?;
            reported
        } else {
            owe_report()?
        };
        if changed || reported {
            self.settle().await;
        }
        Ok(Done {})
    }

    /// Whether a run of `version` may still write the indexes: only the
    /// current version of a live item may.
    async fn fence(&self, f: Fence) -> ApiResult<Fenced> {
        let version = self.with_loaded(|c| c.map(|c| c.version))?.ok_or_else(|| ApiError::not_found("content (deleted)"))?;
        if version != f.version {
            return Err(ApiError::Superseded(superseded_reason(version)));
        }
        Ok(Fenced { version })
    }

    async fn delete(&self, a: DeleteContent) -> ApiResult<Done> {
        let c = self.require_for(&a.principal, Access::Change)?;
        let now = now_ms();
        let tomb = c.tombstone(now);
        let events = tomb.delete();
        let duties = c.deletion_duties();
        let stored = encode(&tomb)?;
        let records = self.atomically(|| {
            // A purge takes the place of each run's owed spawn or cancel.
            let outbox = self.outbox()?;
            for run in c.runs() {
                outbox.forget(&Duty::spawn_key(run))?;
                outbox.forget(&Duty::cancel_key(run))?;
            }
            // A batch's item whose first run did not publish ends here: its
            // run (still going, or cancelled by a PUT and not yet reported)
            // is purged and could not report, and the batch would wait for
            // it. A batch ignores the report of an item that has ended already.
            if let Some(first) = c.history.first().filter(|v| v.status != ContentStatus::Indexed) {
                self.owe_batch_report(first.run_id, Some("content deleted"), now)?;
            }
            // The tombstone lands before any await: a PUT or publish after this sees 404.
            self.cells().save(TOMBSTONE, &true)?;
            let records = self.write(&tomb, stored, events, &duties, now)?;
            // Before any await, so no replay of the topic shows the item again.
            self.log().redact(&c.id.to_string())?;
            Ok(records)
        })?;
        self.live.replace(Some(None));
        self.push_later(Topic::Content(c.id), records);
        self.settle_backstopped().await;
        Ok(Done {})
    }

    /// The operator's reconciliation: the catalog row is owed again, written
    /// from this actor's state (or its deletion), and each run writes its own
    /// row again. Nothing here changes the item.
    async fn reconcile(&self, _q: ReconcileContent) -> ApiResult<ReconcileReport> {
        if !self.created() {
            return Err(ApiError::not_found("content"));
        }
        let c: ContentState = self.cells().load(CONTENT)?.ok_or_else(|| ApiError::not_found("content"))?;
        let deleted = self.with_loaded(|c| c.is_none())?;
        self.outbox()?.put(&[Duty::Catalog], now_ms())?;
        self.drain(false).await?;
        let mut runs = Vec::new();
        if !deleted {
            for run in c.runs() {
                let r = rpc::send(&self.env, &run.to_string(), &ReconcileRun {}).await;
                runs.push(RunReconciled { run_id: run, ok: r.is_ok(), error: r.err().map(|e| e.to_string()) });
            }
        }
        let pending = self.outbox()?.next_due()?.is_some();
        let catalog = if pending { "pending" } else { "written" }.to_string();
        Ok(ReconcileReport { deleted, catalog, runs })
    }

    async fn view(&self, q: ViewContent) -> ApiResult<ContentView> {
        Ok(self.require_for(&q.principal, Access::Read)?.view_for(&q.principal))
    }

    async fn source(&self, q: SourceOf) -> ApiResult<Source> {
        let c = self.require_for(&q.principal, Access::Read)?;
        let readable = c.version_readable_by(&q.principal, q.version.unwrap_or(c.version));
        c.source(q.version).filter(|_| readable).cloned().ok_or_else(|| ApiError::not_found("source file of that version"))
    }

    async fn authorize(&self, a: Authorize) -> ApiResult<Authorized> {
        // A version its caller may not read is 404 whatever it asks to do
        // with it (a cancel as much as a read), and only then is the rest
        // of what it asks checked.
        let c = self.require_for(&a.principal, Access::Read)?;
        if a.version.is_some_and(|v| !c.version_readable_by(&a.principal, v)) {
            return Err(ApiError::not_found("content"));
        }
        a.principal.require(&c.ownership, a.needed.into())?;
        Ok(Authorized { content_id: c.id, version: c.version, tenant: c.ownership.tenant, title: c.doc.title, category: c.doc.category })
    }

    async fn settle_create(&self, _q: SettleCreate) -> ApiResult<CreateSettled> {
        if self.created() {
            // Made (live, or deleted since), or settled before.
            return Ok(CreateSettled { made: self.cells().load(CONTENT)?.is_some() });
        }
        // Never made: its tables now stand, so a create still on its way is
        // refused as existing (409, nothing written), and every other call
        // finds no item (404).
        crate::store::init_state(&self.state.storage().sql())?;
        self.created.set(true);
        Ok(CreateSettled { made: false })
    }
}

impl Inspectable for ContentActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        self.describe().await
    }

    async fn fire_alarm(&self, _q: FireAlarm) -> ApiResult<Value> {
        if self.created() {
            self.drain(false).await?;
        }
        self.describe().await
    }
}

impl ContentActor {
    /// A deleted item's tombstone (its ownership, no text): its topic stays,
    /// since a follower is still owed `content.deleted` and what came before
    /// it (redacted), by a replay or a stream as much as by a push.
    fn tombstone(&self) -> ApiResult<Option<ContentState>> {
        if !self.created() || !self.cells().load(TOMBSTONE)?.unwrap_or(false) {
            return Ok(None);
        }
        self.cells().load(CONTENT)
    }

    /// The item, live or deleted, as its topic sees it.
    fn followed<T>(&self, f: impl Fn(&ContentState) -> T) -> ApiResult<Option<T>> {
        match self.with_loaded(|c| c.map(&f))? {
            Some(t) => Ok(Some(t)),
            None => Ok(self.tombstone()?.as_ref().map(f)),
        }
    }
}

impl TopicActor for ContentActor {
    fn topic(&self) -> ApiResult<Option<Topic>> {
        self.followed(|c| Topic::Content(c.id))
    }

    fn resync_snapshot(&self) -> ApiResult<Value> {
        Ok(self.followed(|c| serde_json::to_value(c.view()).unwrap_or_default())?.unwrap_or_default())
    }

    /// A topic the subscriber may not read does not exist for it (a deleted
    /// item's, by the ownership it had).
    async fn admit(&self, principal: &Principal) -> ApiResult<()> {
        match self.followed(|c| principal.require(&c.ownership, Access::Read))? {
            Some(r) => r.map_err(ApiError::from),
            None => Ok(()),
        }
    }

    /// A page for a reader who may no longer read the item (it went private
    /// after the subscribe) is refused as `admit` would refuse it: no
    /// snapshot, and no event, not even of versions it could read then. A
    /// snapshot names only the versions the reader could read.
    async fn withhold(&self, reader: &Principal, _events: &mut [EventRecord], snapshot: Option<&mut Value>) -> ApiResult<()> {
        self.admit(reader).await?;
        if let Some(snapshot) = snapshot {
            if let Some(view) = self.with_loaded(|c| c.map(|c| c.view_for(reader)))? {
                *snapshot = serde_json::to_value(view).unwrap_or_default();
            }
        }
        Ok(())
    }
}

/// The item as its state cell stores it: refused (413) when it would not
/// fit the one value a Durable Object's SQLite holds.
fn encode(c: &ContentState) -> ApiResult<String> {
    let stored = serde_json::to_string(c).map_err(crate::store::storage_err)?;
    fits_stored(stored.len())?;
    Ok(stored)
}

/// A cancel or purge is done when the run took it, has already ended (a
/// refused transition), or never existed (404).
fn settled<T>(r: ApiResult<T>) -> ApiResult<()> {
    match r {
        Ok(_) | Err(ApiError::InvalidTransition(_)) | Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl DurableObject for ContentActor {
    fn new(state: State, env: Env) -> Self {
        ContentActor { state, env, live: RefCell::new(None), created: Cell::new(false), batch_item: RefCell::new(None), memory: Default::default(), backstop: Cell::new(false) }
    }

    crate::unused_handlers!(fetch);

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.drain(true).await {
            // Re-arm so a failed drain (storage hiccup) is retried.
            worker::console_error!("content alarm failed: {e}");
            let _ = self.state.storage().set_alarm(super::alarm_time(now_ms() + 1_000)).await;
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}

impl super::rpc::Answer for ContentActor {
    /// A call that left duties owed arms the alarm that retries them.
    async fn answer(&self, op: &str, body: &[u8]) -> super::rpc::Reply {
        let r = ContentCall::answer(self, op, body).await;
        if self.memory.outbox.unarmed() {
            if let Err(e) = self.arm(false).await {
                worker::console_error!("content alarm check failed: {e}");
            }
        }
        r
    }
}

crate::rpc_entry!(ContentActor);
