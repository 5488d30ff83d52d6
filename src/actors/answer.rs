//! `AnswerActor`: one answer to one question, on the topic `answer:<id>`. A
//! thin shell over [`crate::domain::answer::Answer`]: `start` stores the
//! question, its asker and the sources the Worker retrieved for that asker,
//! then each alarm emits one step (a delta or the completion), committing the
//! state and its events together before arming the next alarm. An evicted or
//! restarted actor resumes from the last committed step, so no delta is lost
//! or repeated.
//!
//! A generated answer (`TEXT_BACKEND=workers-ai`) is written in one alarm:
//! it streams the model's output, commits each coalesced delta and pushes it
//! (in that order, awaited, so pushes stay in order), and keeps a lease
//! alarm armed [`GENERATION_LEASE_MS`] ahead, so an attempt cut off by an
//! eviction or a restart is taken up again by that alarm from the committed
//! text (see `domain::answer`).

use std::collections::BTreeSet;

use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Response, State};

use super::fanout;
use crate::store::subscribers::Subscribers;
use super::ops::{AnswerCall, AnswerOps, Done, FireAlarm, ForgetSource, Inspect, Inspectable, StartAnswer, ViewAnswer};
use super::{ActorStorage, TopicActor};
use crate::protocol::close_code;
use crate::catalog;
use crate::domain::answer::{withhold_unreadable, Answer, AnswerView, Generator, Source, Withheld};
use crate::domain::answer_text::{redact, redact_deltas, Coalescer};
use crate::domain::faults;
use crate::domain::pipeline::StageError;
use crate::config::binding;
use crate::providers::backend_choice::{choose_ai, Choice};
use crate::providers::workers_ai::AiBinding;
use crate::providers::workers_ai_answer::{self as model, ModelStream, RepeatFilter, SseDecoder, StreamItem};
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, EventName, EventRecord, Topic};
use crate::runtime::{config, now_ms};
use crate::store::StateKey;

/// The ids of the items deleted since the answer retrieved them: erased
/// from it at once, and kept until it ends so that a model attempt's own
/// copy is erased again at each commit ([`AnswerActor::erase_forgotten`]).
const FORGOTTEN: StateKey<Vec<String>> = StateKey::named("forgotten");
/// How long an answer told of a deletion before its start waits for it.
const UNSTARTED_TTL_MS: Millis = 3_600_000;
/// The id of an answer told of a deletion before its start.
const UNSTARTED: StateKey<Uuid> = StateKey::named("unstarted");
/// The answer.
const ANSWER: StateKey<Answer> = StateKey::named("answer");
/// While a model attempt runs, the alarm is kept this far ahead: if the
/// attempt is cut off, it fires and the next attempt continues the answer.
/// Longer than the model stream's idle timeout, so a live attempt renews it
/// (at each delta) before it fires.
const GENERATION_LEASE_MS: Millis = 25_000;

#[durable_object]
pub struct AnswerActor {
    state: State,
    env: Env,
    memory: super::ActorMemory,
    /// A model attempt is streaming in this instance. A second one (its
    /// lease alarm firing while a slow stream goes on, the operator's alarm)
    /// would stream its own copy of the answer beside it: deltas twice, two
    /// `answer.completed`.
    generating: std::cell::Cell<bool>,
    /// Whether [`FORGOTTEN`] holds ids, once this instance has read it: an
    /// answer no deletion touched reads it once, not at every commit.
    forgets: std::cell::Cell<Option<bool>>,
}

crate::actor_storage!(AnswerActor, forget_forgets);

impl AnswerActor {
    fn load(&self) -> ApiResult<Option<Answer>> {
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        self.cells().load(ANSWER)
    }

    /// The answer, if `p` may read it (404 otherwise: its existence is not revealed).
    fn require_for(&self, p: &Principal) -> ApiResult<Answer> {
        match self.load()? {
            Some(a) if a.readable_by(p) => Ok(a),
            _ => Err(ApiError::not_found("answer")),
        }
    }

    /// Saves the answer and appends its events in one synchronous step, then
    /// pushes the events to subscribers without holding up the caller.
    fn commit(&self, answer: &Answer, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        let records = self.store(answer, drafts, now)?;
        let push = push_checked(self.env.clone(), self.subs(), Topic::Answer(answer.id), Self::check_of(answer, &records), records);
        self.state.wait_until(push);
        if answer.status.is_terminal() {
            self.register(answer, now);
        }
        Ok(())
    }

    /// Saves the answer and appends its events, and erases what they hold
    /// of an item deleted meanwhile, all or none (one transaction). (Pushes are
    /// checked against the catalog, which no longer holds the item.)
    fn store(&self, answer: &Answer, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<Vec<EventRecord>> {
        self.atomically(|| {
            self.cells().save(ANSWER, answer)?;
            let records = self.log().append(drafts, now)?;
            self.erase_forgotten(answer)?;
            Ok(records)
        })
    }

    /// After a rolled-back transaction: whether items were forgotten is read again.
    fn forget_forgets(&self) {
        self.forgets.set(None);
    }

    /// Adds `content_id` to [`FORGOTTEN`].
    fn remember_forgotten(&self, content_id: String) -> ApiResult<()> {
        let mut ids: Vec<String> = self.cells().load(FORGOTTEN)?.unwrap_or_default();
        if !ids.contains(&content_id) {
            ids.push(content_id);
            self.cells().save(FORGOTTEN, &ids)?;
        }
        self.forgets.set(Some(true));
        Ok(())
    }

    /// Erases from the stored answer, and from its logged events, what it
    /// holds of the items deleted since it retrieved them ([`FORGOTTEN`]).
    /// Synchronous: one storage step. The ids are kept until the answer
    /// has ended: a model attempt streams from its own copy, which still
    /// holds the item, and each of its commits is erased again.
    fn erase_forgotten(&self, answer: &Answer) -> ApiResult<()> {
        if self.forgets.get() == Some(false) {
            return Ok(());
        }
        let ids: Vec<String> = self.cells().load(FORGOTTEN)?.unwrap_or_default();
        self.forgets.set(Some(!ids.is_empty()));
        if ids.is_empty() {
            return Ok(());
        }
        let mut answer = answer.clone();
        let erased = answer.forget(&ids);
        if !erased.is_empty() {
            let log = self.log();
            let mut quoting: Vec<EventRecord> = log.after(0, u32::MAX)?.into_iter().filter(names_sources).collect();
            erase_quotes(&mut quoting, &ids, &erased);
            log.rewrite(&quoting)?;
            self.cells().save(ANSWER, &answer)?;
        }
        if answer.status.is_terminal() {
            self.cells().delete(FORGOTTEN)?;
            self.forgets.set(Some(false));
        }
        Ok(())
    }

    /// The registry row for the admin listing, written in the background.
    fn register(&self, answer: &Answer, now: Millis) {
        let status = serde_json::to_value(answer.status).unwrap_or_default();
        let status = status.as_str().unwrap_or("unknown").to_string();
        self.register_later("answer", answer.id.to_string(), status, now);
    }

    /// The next step's alarm, `ANSWER_STEP_MS` after `now` (the pace of the
    /// stream a client sees), or once the answer has ended, its erasure.
    async fn arm(&self, answer: &Answer, now: Millis) -> ApiResult<()> {
        let at = answer.next_wake(now, config(&self.env).answer_step_ms, self.expires_at(answer, now));
        self.state.storage().set_alarm(super::alarm_time(at)).await?;
        Ok(())
    }

    /// At every wake: an answer, under way or waiting to be erased, has an
    /// alarm; one lost (a failed write, a failed retry of a tick) is armed
    /// again by the next read or follow. A failure here is logged, not the
    /// reader's: the alarm is looked at again at the next wake.
    async fn ensure_alarm(&self, answer: &Answer) {
        let armed = match self.state.storage().get_alarm().await {
            Ok(armed) => armed,
            Err(e) => return worker::console_warn!("answer {}: alarm not looked at: {e}", answer.id),
        };
        if armed.is_none() {
            worker::console_warn!("answer {}: no alarm armed; armed again", answer.id);
            if let Err(e) = self.arm(answer, now_ms()).await {
                worker::console_error!("answer {}: alarm not armed again: {e}", answer.id);
            }
        }
    }

    /// When an ended answer is erased: `ANSWER_TTL_SECS` after it ended
    /// (`ANSWER_TTL_ANONYMOUS_SECS` when an anonymous caller asked).
    fn expires_at(&self, answer: &Answer, now: Millis) -> Millis {
        let cfg = config(&self.env);
        let ttl = if answer.asker.kind == PrincipalKind::Anonymous { cfg.answer_ttl_anonymous_secs } else { cfg.answer_ttl_secs };
        answer.finished_at.unwrap_or(now).saturating_add(ttl.saturating_mul(1000))
    }

    /// Past its time to live: the answer's sockets close, its storage and
    /// its registry row go, and it answers 404 from then on.
    /// The registry row goes first: once the storage is gone no alarm is
    /// left to retry it, and the row would list an answer that is not there.
    async fn expire(&self, answer: &Answer) -> ApiResult<()> {
        if let Err(e) = catalog::forget_answer(&self.env, &answer.id.to_string()).await {
            worker::console_error!("answer {}: registry row not removed, erasure retried in a minute: {e}", answer.id);
            self.state.storage().set_alarm(super::alarm_time(now_ms() + 60_000)).await?;
            return Ok(());
        }
        for ws in self.state.get_websockets() {
            let _ = ws.close(Some(close_code::NORMAL), Some("answer expired"));
        }
        self.state.storage().delete_all().await?;
        self.memory.log.forget();
        Ok(())
    }

    /// The generator `TEXT_BACKEND` asks for; an unavailable model is a
    /// fallback with its reason.
    fn generator(&self) -> (Generator, Option<String>) {
        let has_ai = self.env.get_binding::<AiBinding>(binding::AI).is_ok();
        match choose_ai("TEXT_BACKEND", &config(&self.env).text_backend, has_ai) {
            Choice::Embedded => (Generator::Extractive, None),
            Choice::Cloudflare => (Generator::WorkersAi, None),
            Choice::Unavailable(why) => (Generator::Extractive, Some(why)),
        }
    }

    /// Commits and pushes, awaiting the push so deltas reach subscribers in order.
    async fn commit_and_push(&self, answer: &Answer, drafts: Vec<EventDraft>, now: Millis) -> ApiResult<()> {
        let records = self.store(answer, drafts, now)?;
        push_checked(self.env.clone(), self.subs(), Topic::Answer(answer.id), Self::check_of(answer, &records), records).await;
        Ok(())
    }

    /// Whom a push of `records` is checked for, if it names or quotes
    /// sources (every event but the answer's start and failure does).
    fn check_of(answer: &Answer, records: &[EventRecord]) -> Option<(Principal, Vec<Source>)> {
        records.iter().any(names_sources).then(|| (answer.asker.clone(), answer.sources.clone()))
    }

    /// One model attempt: stream, commit each delta, then complete, or
    /// record the failure (retry later or fall back).
    async fn generate(&self, mut answer: Answer) -> ApiResult<()> {
        let now = now_ms();
        answer.begin_attempt();
        self.cells().save(ANSWER, &answer)?;
        self.state.storage().set_alarm(super::alarm_time(now + GENERATION_LEASE_MS)).await?;
        let outcome = self.stream_answer(&mut answer).await?;
        let now = now_ms();
        let events = match outcome {
            Ok(rest) => answer.finish_generated(&rest, now),
            Err(e) => {
                worker::console_warn!("answer {}: model attempt {} failed: {e}", answer.id, answer.attempts);
                answer.model_failed(e.class, &e.message, now)
            }
        };
        self.commit(&answer, events, now)?;
        self.arm(&answer, now).await
    }

    /// Streams the model's answer into `answer`, a committed delta at a
    /// time; `Ok(rest)` is the text still held when the stream ended.
    async fn stream_answer(&self, answer: &mut Answer) -> ApiResult<Result<String, StageError>> {
        // The sources as the asker may read them now: one deleted or
        // narrowed since retrieval is not sent to a later attempt. Unchecked,
        // no attempt is made (it is tried again later).
        let withheld = match withhold_sources(&self.env, &answer.asker, &answer.sources, &mut [], None).await {
            Ok(withheld) => withheld,
            Err(e) => return Ok(Err(StageError::transient(format!("answer sources unchecked: {e}")))),
        };
        let request = model::answer_request(&answer.question, &answer.sources, &withheld, &answer.generated);
        let mut stream = match ModelStream::open(&self.env, model::model(), &request).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let (mut decoder, mut coalescer) = (SseDecoder::default(), Coalescer::default());
        let mut repeat = RepeatFilter::new(&answer.generated);
        loop {
            let items = match stream.next().await {
                Ok(Some(bytes)) => decoder.push(&bytes),
                Ok(None) => decoder.finish().into_iter().collect(),
                Err(e) => return Ok(Err(e)),
            };
            let ended = items.is_empty();
            for item in items {
                let piece = match item {
                    StreamItem::Text(t) => repeat.push(&t),
                    // The whole answer came: what is still held is its end.
                    StreamItem::Done => {
                        let tail = repeat.finish().and_then(|t| coalescer.push(&t)).unwrap_or_default();
                        return Ok(Ok(tail + &coalescer.finish().unwrap_or_default()));
                    }
                };
                let Some(delta) = piece.and_then(|p| coalescer.push(&p)) else { continue };
                let events = answer.emit_generated(&delta);
                if !events.is_empty() {
                    let now = now_ms();
                    self.commit_and_push(answer, events, now).await?;
                    self.state.storage().set_alarm(super::alarm_time(now + GENERATION_LEASE_MS)).await?;
                }
            }
            if ended && stream.is_closed() {
                // Closed before `[DONE]`: cut off. What is held is not
                // committed; the next attempt continues after what was.
                return Ok(Err(StageError::transient("workers ai answer: the stream ended before [DONE]")));
            }
        }
    }

    /// One alarm: one step.
    async fn tick(&self) -> ApiResult<()> {
        let Some(mut answer) = self.load()? else {
            // Told of a deletion before a start that never came: what the
            // Worker recorded of it goes too.
            if crate::store::has_state(&self.state.storage().sql()) {
                if let Some(id) = self.cells().load(UNSTARTED)? {
                    catalog::forget_answer(&self.env, &id.to_string()).await?;
                }
                self.state.storage().delete_all().await?;
            }
            return Ok(());
        };
        let now = now_ms();
        if answer.status.is_terminal() && now >= self.expires_at(&answer, now) {
            return self.expire(&answer).await;
        }
        if answer.status.is_terminal() {
            // An erasure that failed at the end is tried again by the alarm.
            self.erase_forgotten(&answer)?;
        }
        if answer.generator == Generator::WorkersAi && self.generating.get() {
            // An attempt is streaming here, on its own copy: neither a second
            // one nor the fallback (after the last attempt) may write beside
            // it. Looked at again a lease later, should it stall for good.
            self.state.storage().set_alarm(super::alarm_time(now + GENERATION_LEASE_MS)).await?;
            return Ok(());
        }
        if answer.wants_model(now) {
            self.generating.set(true);
            let r = self.generate(answer).await;
            self.generating.set(false);
            return r;
        }
        let events = answer.step(now);
        if !events.is_empty() {
            self.commit(&answer, events, now)?;
        }
        self.arm(&answer, now).await
    }

    /// A tick failed: retry it, or end the answer after too many failures.
    /// An error here (the answer not loaded, its alarm not armed) fails the
    /// alarm, which the runtime then retries.
    async fn on_tick_error(&self, e: &ApiError) -> ApiResult<()> {
        worker::console_error!("answer alarm failed: {e}");
        let Some(mut answer) = self.load()? else { return Ok(()) };
        let now = now_ms();
        let events = answer.tick_failed(&e.to_string(), now);
        let _ = if events.is_empty() { self.cells().save(ANSWER, &answer) } else { self.commit(&answer, events, now) };
        self.arm(&answer, now + 1_000).await
    }

    fn snapshot(answer: &Answer) -> Value {
        serde_json::to_value(answer.view()).unwrap_or_default()
    }
}

impl AnswerOps for AnswerActor {
    async fn start(&self, req: StartAnswer) -> ApiResult<Done> {
        if let Some(answer) = self.load()? {
            // Idempotent: a retried start finds the answer under way, and
            // arms its alarm again in case the first try's write of it
            // failed (an alarm may stand: a told-only state's, an hour out).
            self.arm(&answer, now_ms()).await?;
            return Ok(Done {});
        }
        let now = now_ms();
        crate::store::init_state(&self.state.storage().sql())?;
        // An item deleted after the Worker recorded the quote and before this
        // start told this answer already (see `forget_source`): not quoted.
        let forgotten: Vec<String> = self.cells().load(FORGOTTEN)?.unwrap_or_default();
        self.cells().delete(FORGOTTEN)?;
        self.cells().delete(UNSTARTED)?;
        self.forgets.set(Some(false));
        let sources = req.sources.into_iter().filter(|s| !forgotten.contains(&s.content_id)).zip(1u32..).map(|(s, n)| Source { n, ..s }).collect();
        let (generator, why) = self.generator();
        let (mut answer, events) = Answer::new(req.id, req.question, req.asker, sources, generator, now);
        answer.fallback = why;
        self.commit(&answer, events, now)?;
        self.register(&answer, now);
        if !config(&self.env).faults.site_strikes(faults::ALARM, &answer.id.to_string(), 1) {
            self.arm(&answer, now).await?;
        }
        Ok(Done {})
    }

    async fn view(&self, q: ViewAnswer) -> ApiResult<AnswerView> {
        let answer = self.require_for(&q.principal)?;
        self.ensure_alarm(&answer).await;
        Ok(answer.view())
    }

    /// A deleted item is erased from the answer now, or, while a model
    /// attempt streams from its own copy, at that attempt's next commit (the
    /// catalog check hides the item from every read and push meanwhile).
    async fn forget_source(&self, q: ForgetSource) -> ApiResult<Done> {
        let id = q.content_id.to_string();
        let Some(answer) = self.load()? else {
            // Not started yet: its start (on its way from the Worker, which
            // recorded the quote first) leaves the item out. Kept an hour if
            // the start never comes.
            crate::store::init_state(&self.state.storage().sql())?;
            self.remember_forgotten(id)?;
            self.cells().save(UNSTARTED, &q.answer_id)?;
            self.state.storage().set_alarm(super::alarm_time(now_ms() + UNSTARTED_TTL_MS)).await?;
            return Ok(Done {});
        };
        if !answer.sources.iter().any(|s| s.content_id == id) {
            return Ok(Done {});
        }
        self.remember_forgotten(id)?;
        // A model attempt streaming from its own copy is erased at its
        // next commit; otherwise now, so no later step quotes the item.
        if !self.generating.get() {
            self.erase_forgotten(&answer)?;
        }
        Ok(Done {})
    }
}

impl Inspectable for AnswerActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        let a = self.load()?.ok_or_else(|| ApiError::not_found("answer"))?;
        let state = json!({ "view": a.view(), "asker": a.asker, "sources": a.sources.len(), "pieces": a.pieces.len(), "emitted": a.emitted, "attempts": a.attempts, "retry_at": a.retry_at });
        super::inspection(&self.state, "answer", &a.id.to_string(), state, &self.log()).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.tick().await?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl TopicActor for AnswerActor {
    fn topic(&self) -> ApiResult<Option<Topic>> {
        Ok(self.load()?.map(|a| Topic::Answer(a.id)))
    }

    fn resync_snapshot(&self) -> ApiResult<Value> {
        Ok(self.load()?.map(|a| Self::snapshot(&a)).unwrap_or_default())
    }

    /// Only the asker may follow the answer; anyone else sees no topic.
    async fn admit(&self, principal: &Principal) -> ApiResult<()> {
        let answer = self.require_for(principal)?;
        self.ensure_alarm(&answer).await;
        Ok(())
    }

    /// A replay (and a resync snapshot) checks its sources and citations
    /// against the catalog as `GET` does: the logged events stay as they
    /// were pushed, but content since deleted, or narrowed so the reader can
    /// no longer read it, is replayed as `{n, removed: true}`, and the text's
    /// claims that cite it (deltas, the completed text) are left out. The
    /// reader is the follower as it is now (the asker's identity, perhaps
    /// with fewer scopes than when it asked, or the operator), as for `GET`.
    async fn withhold(&self, reader: &Principal, events: &mut [EventRecord], mut snapshot: Option<&mut Value>) -> ApiResult<()> {
        // Only an answer's events name sources or quote them: a page of
        // none (a live subscribe) costs no catalog read.
        if snapshot.is_none() && !events.iter().any(names_sources) {
            return Ok(());
        }
        let Some(answer) = self.load()? else { return Ok(()) };
        let withheld = withhold_sources(&self.env, reader, &answer.sources, events, snapshot.as_deref_mut()).await?;
        if withheld.is_empty() {
            return Ok(());
        }
        // Deltas as the text they join to (a claim may span two): all of the
        // answer's deltas, as the page may hold only some.
        if events.iter().any(|e| e.event == EventName::AnswerDelta) {
            let redacted = redacted_deltas(&self.log().after(0, u32::MAX)?, &withheld);
            set_delta_texts(events, &redacted);
        }
        let texts = events.iter_mut().filter(|e| e.event == EventName::AnswerCompleted).map(|e| &mut e.data);
        for holder in texts.chain(snapshot) {
            redact_text(holder, &withheld);
        }
        Ok(())
    }
}

/// Checks the sources that `events` and `snapshot` name (and the answer's
/// own, `sources`) against the catalog as `reader` may read it now, marking
/// the lists' unreadable entries removed, and redacts the completed text
/// (and the snapshot's) of claims that cite them. Returns the numbers
/// withheld; deltas are the caller's (they need the whole log).
async fn withhold_sources(env: &Env, reader: &Principal, sources: &[Source], events: &mut [EventRecord], mut snapshot: Option<&mut Value>) -> ApiResult<BTreeSet<u32>> {
    // The answer's own sources, checked with the lists in the same
    // catalog read: the numbers its text may no longer show.
    let mut own: Vec<Value> = sources.iter().map(|s| json!({ "n": s.n, "content_id": s.content_id })).collect();
    let mut lists: Vec<&mut Vec<Value>> = vec![&mut own];
    for e in events.iter_mut() {
        let key = match e.event {
            EventName::AnswerCompleted => "citations",
            EventName::AnswerRetrieved => "sources",
            _ => continue,
        };
        if let Some(list) = e.data.get_mut(key).and_then(Value::as_array_mut) {
            lists.push(list);
        }
    }
    if let Some(list) = snapshot.as_deref_mut().and_then(|s| s.get_mut("citations")).and_then(Value::as_array_mut) {
        lists.push(list);
    }
    withhold_for(env, reader, lists).await?;
    Ok(removed_numbers(&own))
}

/// Pushes an answer's new events to its followers. Its retrieval, its
/// deltas and its completion name sources or quote them: those pushes are
/// checked as a replay is (one catalog read each), so content deleted or
/// narrowed while the answer was being written is not pushed. (Only the
/// asker's sessions follow an answer; a push that cannot be checked is left
/// to their fetch, which checks.)
async fn push_checked(env: Env, subs: Subscribers, topic: Topic, check: Option<(Principal, Vec<Source>)>, mut records: Vec<EventRecord>) {
    if let Some((asker, sources)) = check {
        match withhold_sources(&env, &asker, &sources, &mut records, None).await {
            // A claim may run on from one delta into the next, so a delta is
            // redacted only against the whole text: the followers fetch these
            // seqs (the gap the next push shows, or their poll), and that
            // read redacts them so.
            Ok(withheld) if !withheld.is_empty() && records.iter().any(|e| e.event == EventName::AnswerDelta) => return,
            Ok(withheld) => {
                for e in records.iter_mut().filter(|e| e.event == EventName::AnswerCompleted) {
                    redact_text(&mut e.data, &withheld);
                }
            }
            Err(e) => return worker::console_warn!("{topic}: push left to the followers' poll, its sources unchecked: {e}"),
        }
    }
    fanout::push(&env, &subs, topic, &records).await;
}

/// Whether an answer's event names or quotes its sources (every event but
/// its failure does).
fn names_sources(e: &EventRecord) -> bool {
    matches!(e.event, EventName::AnswerCompleted | EventName::AnswerRetrieved | EventName::AnswerDelta)
}

/// Erases from an answer's logged events what they said of the items
/// `content_ids`, sources `erased`: their entries in the source and citation
/// lists keep only their number, and the claims citing them leave the
/// deltas (redacted as the text they join to) and the completed text.
fn erase_quotes(events: &mut [EventRecord], content_ids: &[String], erased: &BTreeSet<u32>) {
    let kept = |cid: &str| !content_ids.iter().any(|c| c == cid);
    let redacted = redacted_deltas(events, erased);
    set_delta_texts(events, &redacted);
    for e in events.iter_mut() {
        let list = match e.event {
            EventName::AnswerRetrieved => "sources",
            EventName::AnswerCompleted => {
                redact_text(&mut e.data, erased);
                "citations"
            }
            _ => continue,
        };
        if let Some(list) = e.data.get_mut(list).and_then(Value::as_array_mut) {
            withhold_unreadable(list, kept);
        }
    }
}

/// The texts of the deltas among `all` (by their index) as
/// [`redact_deltas`] leaves them: a claim may run from one delta into the
/// next, so they are redacted together, as the text they join to.
fn redacted_deltas(all: &[EventRecord], withheld: &BTreeSet<u32>) -> Vec<(u64, String)> {
    let logged: Vec<(u64, &str)> = all
        .iter()
        .filter(|e| e.event == EventName::AnswerDelta)
        .filter_map(|e| Some((e.data["index"].as_u64()?, e.data["text"].as_str()?)))
        .collect();
    let texts: Vec<&str> = logged.iter().map(|(_, t)| *t).collect();
    logged.iter().map(|(i, _)| *i).zip(redact_deltas(&texts, withheld)).collect()
}

/// Puts the `redacted` texts into the deltas among `events` they name.
fn set_delta_texts(events: &mut [EventRecord], redacted: &[(u64, String)]) {
    for e in events.iter_mut().filter(|e| e.event == EventName::AnswerDelta) {
        let text = e.data["index"].as_u64().and_then(|i| redacted.iter().find(|(n, _)| *n == i));
        if let Some((_, text)) = text {
            e.data["text"] = Value::String(text.clone());
        }
    }
}

/// The numbers of the entries [`withhold_for`] marked removed.
pub fn removed_numbers(list: &[Value]) -> BTreeSet<u32> {
    list.iter().filter(|c| Withheld::is(c)).filter_map(|c| c["n"].as_u64()).filter_map(|n| u32::try_from(n).ok()).collect()
}

/// Leaves out of `holder["text"]` the claims that cite a withheld source.
pub fn redact_text(holder: &mut Value, withheld: &BTreeSet<u32>) {
    if withheld.is_empty() {
        return;
    }
    if let Some(text) = holder.get("text").and_then(Value::as_str) {
        holder["text"] = Value::String(redact(text, withheld));
    }
}

/// Checks citation (or source) lists against the catalog as `reader` may
/// read it now: an entry whose content was deleted, or narrowed past the
/// reader, keeps only its number. One catalog read for all the lists; the
/// answer view (`GET /api/answers/{id}`) and replays both go through here.
pub async fn withhold_for(env: &Env, reader: &Principal, lists: Vec<&mut Vec<Value>>) -> ApiResult<()> {
    let mut ids: Vec<String> =
        lists.iter().flat_map(|l| l.iter().filter_map(|c| c["content_id"].as_str().map(str::to_string))).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let rows = catalog::fetch_docs(env, &ids).await?;
    let readable = |cid: &str| rows.iter().any(|r| r.content_id == cid && reader.can_read(&r.ownership()));
    for list in lists {
        withhold_unreadable(list, readable);
    }
    Ok(())
}

impl DurableObject for AnswerActor {
    fn new(state: State, env: Env) -> Self {
        AnswerActor { state, env, memory: Default::default(), generating: Default::default(), forgets: Default::default() }
    }

    crate::unused_handlers!(fetch);

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.tick().await {
            self.on_tick_error(&e).await.map_err(|e| worker::Error::RustError(format!("answer alarm not retried: {e}")))?;
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(AnswerActor, AnswerCall);
