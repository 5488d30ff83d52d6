//! Every actor's operations: one enum per kind, each variant a typed request
//! with its typed reply, as mini-redis has one `Command` enum every command
//! plugs into. An actor's whole surface reads here; its file implements the
//! kind's trait (`ContentOps`, `RunOps`, ...), so a missing or mistyped
//! handler is a compile error, and callers use [`rpc::send`], whose request
//! type fixes the kind it reaches and the reply it decodes.
//!
//! On the wire an op is a JS RPC, `call(<op>, <request as JSON>)` on the
//! actor's stub (see `rpc`).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::rpc::{self, ActorKind, Op, SharedOp};
use super::TopicActor;
use crate::domain::batch::{BatchView, ItemRef};
use crate::domain::content::{Artifacts, ContentDoc};
/// The messages an outbox duty carries (their types are the domain's, so the
/// duties are typed): a run's start, its end report, a batch item's report.
pub use crate::domain::outbox::{ItemEnded, RunEnded, StartRun};
use crate::domain::principal::{Access, Ownership, Principal, Visibility};
use crate::error::{ApiError, ApiResult};
use crate::protocol::{Accepted, ContentView, EventDraft, EventRecord, RunView, Topic};
use crate::providers::types::{AnalyzeRequest, VectorItem, VectorMatch, VectorQuery};

/// Declares one kind's operations: the call enum, its decoding and serving,
/// an [`Op`] impl per own request type, and the trait the actor implements.
/// A kind may also take the shared ops: `with inspection` (served by
/// [`Inspectable`]) and `with inspection and topic` (also [`TopicActor`]).
macro_rules! actor_ops {
    ($(#[$m:meta])* enum $call:ident for $kind:ident, trait $ops:ident { $($own:tt)* } with inspection and topic) => {
        actor_ops! { @emit $(#[$m])* enum $call for $kind, trait $ops: Inspectable, TopicActor { $($own)* } also {
            Inspect(Inspect), inspect;
            FireAlarm(FireAlarm), fire_alarm;
            Subscribe(Subscribe), subscribe;
            Unsubscribe(Unsubscribe), unsubscribe;
            Events(Events), events;
            Admit(Admit), admits;
        } }
    };
    ($(#[$m:meta])* enum $call:ident for $kind:ident, trait $ops:ident { $($own:tt)* } with inspection) => {
        actor_ops! { @emit $(#[$m])* enum $call for $kind, trait $ops: Inspectable { $($own)* } also {
            Inspect(Inspect), inspect;
            FireAlarm(FireAlarm), fire_alarm;
        } }
    };
    ($(#[$m:meta])* enum $call:ident for $kind:ident, trait $ops:ident { $($own:tt)* }) => {
        actor_ops! { @emit $(#[$m])* enum $call for $kind, trait $ops { $($own)* } also {} }
    };
    (@reply $reply:ty) => { $reply };
    (@reply $reply:ty, passed) => { Passed<$reply> };
    (
        @emit
        $(#[$m:meta])*
        enum $call:ident for $kind:ident, trait $ops:ident $(: $($sup:path),+)? {
            $( $(#[$vm:meta])* $op:literal => $variant:ident($req:ty) -> $reply:ty $(as $passed:ident)?, $method:ident; )*
        }
        also { $( $svariant:ident($sreq:ty), $smethod:ident; )* }
    ) => {
        $(#[$m])*
        pub enum $call {
            $( $(#[$vm])* $variant($req), )*
            $( $svariant($sreq), )*
        }

        impl $call {
            /// The call an internal request names (404 for an op this kind lacks).
            pub fn decode(op: &str, body: &[u8]) -> ApiResult<Self> {
                match op {
                    $( $op => Ok(Self::$variant(rpc::request(op, body)?)), )*
                    // A shared op's name is its `SharedOp::NAME`, declared once.
                    $( name if name == <$sreq as SharedOp>::NAME => Ok(Self::$svariant(rpc::request(op, body)?)), )*
                    other => Err(ApiError::not_found(format!("{} op {other}", ActorKind::$kind.as_str()))),
                }
            }

            /// An internal call to `actor` by op name, decoded, served and answered.
            pub async fn answer<A: $ops>(actor: &A, op: &str, body: &[u8]) -> rpc::Reply {
                match Self::decode(op, body) {
                    Ok(call) => call.serve(actor).await,
                    Err(e) => rpc::Reply::of::<()>(Err(e)),
                }
            }

            /// Runs the call on `actor` and encodes its typed reply.
            pub async fn serve<A: $ops>(self, actor: &A) -> rpc::Reply {
                match self {
                    $( Self::$variant(q) => rpc::Reply::of(actor.$method(q).await), )*
                    $( Self::$svariant(q) => rpc::Reply::of(actor.$smethod(q).await), )*
                }
            }
        }

        $(
            impl Op for $req {
                const KIND: ActorKind = ActorKind::$kind;
                const NAME: &'static str = $op;
                type Reply = actor_ops!(@reply $reply $(, $passed)?);
            }
        )*

        #[allow(async_fn_in_trait)]
        pub trait $ops: $($($sup +)+)? Sized {
            $( async fn $method(&self, q: $req) -> ApiResult<$reply>; )*
        }
    };
}

/// A reply the Worker hands on to its client as the actor encoded it: `T`
/// names what it holds, but it is not parsed on the way (a view is neither
/// decoded nor encoded again), and [`Passed::read`] takes out what a caller
/// needs. Ops declare it with `-> T as passed`.
pub struct Passed<T> {
    raw: Box<RawValue>,
    holds: PhantomData<T>,
}

impl<T> Passed<T> {
    /// Reads the reply, or the part of it `F` names.
    pub fn read<F: DeserializeOwned>(&self) -> ApiResult<F> {
        serde_json::from_str(self.raw.get()).map_err(|e| ApiError::Internal(format!("actor reply: {e}")))
    }
}

impl<'de, T> Deserialize<'de> for Passed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Passed { raw: Box::<RawValue>::deserialize(d)?, holds: PhantomData })
    }
}

impl<T> Serialize for Passed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

/// A reply that says only that the op was done.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Done {}

// ---- Shared ops -----------------------------------------------------------

/// The admin inspection of any kind (`GET /admin/actors/{kind}/{id}`).
/// A shard also lists one content's vectors when asked.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inspect {
    #[serde(default)]
    pub content_id: Option<String>,
}

/// The operator's "run the alarm now", answered with the inspection after it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FireAlarm {
    #[serde(default)]
    pub content_id: Option<String>,
}

impl SharedOp for Inspect {
    const NAME: &'static str = "inspect";
    type Reply = Value;
}

impl SharedOp for FireAlarm {
    const NAME: &'static str = "fire_alarm";
    type Reply = Value;
}

/// The inspection and alarm every kind but the rate limiter answers.
#[allow(async_fn_in_trait)]
pub trait Inspectable {
    async fn inspect(&self, q: Inspect) -> ApiResult<Value>;
    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value>;
}

/// A session follows a topic from `after` (its principal is checked by the
/// topic's owner: a topic it may not read does not exist for it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Subscribe {
    pub session: String,
    #[serde(default)]
    pub after: Option<u64>,
    pub principal: Principal,
    /// The session's holder and expiry, for the topic's caps on following
    /// sessions (`domain::followers`).
    #[serde(default)]
    pub holder: Option<String>,
    #[serde(default)]
    pub until: Option<crate::domain::time::Millis>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Unsubscribe {
    pub session: String,
}

/// A page of a topic's log after `after` (a session's gap fetch, SSE).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Events {
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub limit: Option<u32>,
    /// Who reads the page: a resync's snapshot shows only what it may read
    /// (none: what anyone may read).
    #[serde(default)]
    pub reader: Option<Principal>,
}

/// How a subscription starts: live from the head, by replaying the log, or
/// from a snapshot when the cursor is older than the retained log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Live,
    Replay,
    Resync,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscribeAnswer {
    pub topic: Topic,
    pub last_seq: u64,
    pub plan: Plan,
    pub events: Vec<EventRecord>,
    #[serde(default)]
    pub snapshot: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EventsPage {
    pub topic: Topic,
    pub last_seq: u64,
    pub events: Vec<EventRecord>,
    /// The cursor is older than the retained log: start over from `snapshot`.
    #[serde(default)]
    pub resync: bool,
    #[serde(default)]
    pub snapshot: Option<Value>,
}

/// Whether `principal` may follow the topic: `subscribe`'s check without
/// subscribing, which an SSE stream asks before it polls `events`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Admit {
    pub principal: Principal,
}

impl SharedOp for Admit {
    const NAME: &'static str = "admit";
    type Reply = Done;
}

impl SharedOp for Subscribe {
    const NAME: &'static str = "subscribe";
    type Reply = SubscribeAnswer;
}

impl SharedOp for Unsubscribe {
    const NAME: &'static str = "unsubscribe";
    type Reply = Done;
}

impl SharedOp for Events {
    const NAME: &'static str = "events";
    type Reply = EventsPage;
}

// ---- Content --------------------------------------------------------------

/// A new item; its ownership was worked out in the Worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateContent {
    pub content_id: Uuid,
    pub run_id: Uuid,
    pub doc: ContentDoc,
    pub ownership: Ownership,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// Set when the item is one of a bulk import's.
    #[serde(default)]
    pub batch: Option<ItemRef>,
}

/// A new version, by `principal`, checked against the stored owner.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateContent {
    pub content_id: Uuid,
    pub run_id: Uuid,
    pub doc: ContentDoc,
    pub principal: Principal,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// `If-Match`: the version the writer last saw.
    #[serde(default)]
    pub if_match: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ViewContent {
    pub principal: Principal,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteContent {
    pub principal: Principal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessNeeded {
    #[default]
    Read,
    Change,
}

impl From<AccessNeeded> for Access {
    fn from(a: AccessNeeded) -> Access {
        match a {
            AccessNeeded::Read => Access::Read,
            AccessNeeded::Change => Access::Change,
        }
    }
}

/// Whether a principal may read or change the item (for its runs' routes,
/// topics and file uploads).
#[derive(Debug, Serialize, Deserialize)]
pub struct Authorize {
    pub principal: Principal,
    #[serde(default)]
    pub needed: AccessNeeded,
    /// The version whose data the caller is about to show (a run's): it
    /// must be one the principal could read too (404 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Authorized {
    pub content_id: Uuid,
    pub version: u32,
    pub tenant: String,
    pub title: String,
    #[serde(default)]
    pub category: Option<String>,
}

/// The uploaded original of a version the principal may read.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceOf {
    pub principal: Principal,
    #[serde(default)]
    pub version: Option<u32>,
}

/// A run's artifacts for its version, to show as the item's current ones.
#[derive(Debug, Serialize, Deserialize)]
pub struct Publish {
    pub run_id: Uuid,
    pub artifacts: Artifacts,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub version: u32,
    pub status: crate::protocol::ContentStatus,
}

/// Whether a run of `version` may still write the indexes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fence {
    pub version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Fenced {
    pub version: u32,
}

/// A create the Worker sent without learning its outcome (it failed on the
/// way, 5xx), settled before the Worker drops what it stored for it: an
/// item that was made keeps it; one that was not is made never to exist, so
/// a create still on its way is refused (409) rather than made without its
/// file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SettleCreate {}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateSettled {
    /// The item (or batch) was made; an item may be deleted since (its
    /// deletion erases its files).
    pub made: bool,
}

/// The operator's reconciliation of one item: its catalog row and its runs'.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReconcileContent {}

pub use crate::protocol::{ReconcileReport, RunReconciled};

actor_ops! {
    /// The content actor: an item's versions, owner and published artifacts.
    enum ContentCall for Content, trait ContentOps {
        "create" => Create(CreateContent) -> Accepted, create;
        "update" => Update(UpdateContent) -> Accepted, update;
        "view" => View(ViewContent) -> ContentView as passed, view;
        "source" => Source(SourceOf) -> crate::domain::upload::Source, source;
        "authorize" => Authorize(Authorize) -> Authorized, authorize;
        "publish" => Publish(Publish) -> Published, publish;
        "run_ended" => RunEnded(RunEnded) -> Done, run_ended;
        "fence" => Fence(Fence) -> Fenced, fence;
        "delete" => Delete(DeleteContent) -> Done, delete;
        "reconcile" => Reconcile(ReconcileContent) -> ReconcileReport, reconcile;
        "settle_create" => SettleCreate(SettleCreate) -> CreateSettled, settle_create;
    }
    with inspection and topic
}

// ---- Run ------------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ViewRun {}

/// The fields of a run's view a caller reads before passing the view on.
#[derive(Debug, Deserialize)]
pub struct RunOf {
    pub content_id: Uuid,
    #[serde(default)]
    pub version: Option<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CancelRun {
    #[serde(default)]
    pub reason: Option<String>,
    /// Its item's actor cancels it for a newer version: it may not be
    /// retried (an operator's cancel may).
    #[serde(default)]
    pub superseded: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RetryRun {}

/// Erases a deleted item's copies in the run (document, chunks, vectors).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PurgeRun {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReconcileRun {}

actor_ops! {
    /// The pipeline run: one version through the stages.
    enum RunCall for Run, trait RunOps {
        "start" => Start(StartRun) -> Done, start;
        "view" => View(ViewRun) -> RunView as passed, view;
        "cancel" => Cancel(CancelRun) -> RunView as passed, cancel;
        "retry" => Retry(RetryRun) -> RunView as passed, retry;
        "purge" => Purge(PurgeRun) -> Done, purge;
        "reconcile" => Reconcile(ReconcileRun) -> Done, reconcile;
    }
    with inspection and topic
}

// ---- Session --------------------------------------------------------------

/// A new session: who opened it and until when its token holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: crate::domain::time::Millis,
    pub expires_at: crate::domain::time::Millis,
    /// Who created the session: every subscription is checked against it,
    /// and the feed shows it only what it may read.
    #[serde(default = "Principal::anonymous")]
    pub principal: Principal,
    /// Whose caps its topic follows count against (`api::limits::holder`).
    #[serde(default)]
    pub holder: Option<String>,
}

/// Committed events of a topic the session follows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Deliver {
    pub topic: Topic,
    pub events: Vec<EventRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Delivered {
    /// False when no socket follows the topic any more: drop the subscriber.
    pub subscribed: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SessionPrincipal {}

actor_ops! {
    /// A client session: its sockets and what each follows.
    enum SessionCall for Session, trait SessionOps {
        "init" => Init(SessionInfo) -> Done, init;
        "deliver" => Deliver(Deliver) -> Delivered, deliver;
        "principal" => Principal(SessionPrincipal) -> Principal, principal;
    }
    with inspection
}

// ---- Vector shard ---------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub struct Upsert {
    pub items: Vec<VectorItem>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Upserted {
    pub upserted: usize,
}

/// Drops one content's vectors (all, or all but `keep_version`'s); with no
/// version kept the content is fenced as deleted.
#[derive(Debug, Serialize, Deserialize)]
pub struct DropContent {
    pub content_id: String,
    #[serde(default)]
    pub keep_version: Option<u32>,
}

/// A version's vectors in place of the content's older ones, refused when a
/// newer version (or the deletion) is fenced in.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplaceContent {
    pub content_id: String,
    pub keep_version: u32,
    pub items: Vec<VectorItem>,
}

actor_ops! {
    /// A vector shard: exact search over its part of the vectors.
    enum ShardCall for VectorShard, trait ShardOps {
        "upsert" => Upsert(Upsert) -> Upserted, upsert;
        "query" => Query(VectorQuery) -> Vec<VectorMatch>, query;
        "delete_content" => DropContent(DropContent) -> u32, drop_content;
        "replace_content" => ReplaceContent(ReplaceContent) -> u32, replace_content;
    }
    with inspection
}

// ---- Feed -----------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub struct Append {
    pub events: Vec<EventDraft>,
    /// Which item's announcement this is (see [`crate::domain::outbox::Duty::Announce`]):
    /// the feed appends it once, however often it is tried.
    #[serde(default)]
    pub from: Option<Announcer>,
}

/// An item and its own seq of the first event it announces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announcer {
    pub content_id: Uuid,
    pub seq: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Appended {
    pub last_seq: u64,
}

actor_ops! {
    /// The feed: every item's public-facing events, in one ordered log.
    enum FeedCall for Feed, trait FeedOps {
        "append" => Append(Append) -> Appended, append;
    }
    with inspection and topic
}

// ---- Analyzer -------------------------------------------------------------

/// A PDF in the uploads bucket, read to text by the analyzer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExtractPdf {
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExtractedText {
    pub text: String,
}

/// A deleted item: the analyzer forgets its fingerprint.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForgetDocument {
    pub id: String,
}

/// `/healthz` asks which backend the analyzer's actor runs: `ANALYZER`
/// says what was configured, not whether a container was provisioned.
#[derive(Debug, Serialize, Deserialize)]
pub struct WhichBackend {}

/// What the analyzer's actor runs its calls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalyzerBackend {
    /// The runtime's `ctx.container`.
    Container,
    /// The production-mode suite's stand-in for one.
    EmulatedContainer,
    /// `ANALYZER_URL`, or nothing (every call refused).
    Url,
}

impl AnalyzerBackend {
    /// As `/healthz` and the inspection print it.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalyzerBackend::Container => "container",
            AnalyzerBackend::EmulatedContainer => "container (emulated)",
            AnalyzerBackend::Url => "url",
        }
    }
}

actor_ops! {
    /// The analyzer container's front: a circuit breaker over the container.
    enum AnalyzerCall for Analyzer, trait AnalyzerOps {
        "analyze" => Analyze(AnalyzeRequest) -> Value, analyze;
        "extract_pdf" => ExtractPdf(ExtractPdf) -> ExtractedText, extract_pdf;
        "forget" => Forget(ForgetDocument) -> Done, forget;
        "backend" => Backend(WhichBackend) -> AnalyzerBackend, backend;
    }
    with inspection
}

// ---- Rate limit -----------------------------------------------------------

/// Takes `cost` tokens from a bucket refilled at `per_min` a minute.
#[derive(Debug, Serialize, Deserialize)]
pub struct Take {
    pub cost: u32,
    pub per_min: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Taken {
    pub left: f64,
}

actor_ops! {
    /// One principal's token bucket for one class of request.
    enum RateLimitCall for RateLimit, trait RateLimitOps {
        "take" => Take(Take) -> Taken, take;
    } with inspection
}

// ---- Answer ---------------------------------------------------------------

/// A question and the sources retrieved for its asker.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartAnswer {
    pub id: Uuid,
    pub question: String,
    pub asker: Principal,
    pub sources: Vec<crate::domain::answer::Source>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ViewAnswer {
    pub principal: Principal,
}

/// An item the answer retrieved was deleted: nothing of its text may stay
/// in the answer (DESIGN.md, integrity: only a tombstone remains).
#[derive(Debug, Serialize, Deserialize)]
pub struct ForgetSource {
    pub content_id: Uuid,
    /// The answer's own id, which an answer told before its start has not
    /// stored yet (its told-only state is erased with its catalog rows).
    pub answer_id: Uuid,
}

actor_ops! {
    /// One answer: generated into committed deltas, for its asker only.
    enum AnswerCall for Answer, trait AnswerOps {
        "start" => Start(StartAnswer) -> Done, start;
        "view" => View(ViewAnswer) -> crate::domain::answer::AnswerView as passed, view;
        "forget_source" => ForgetSource(ForgetSource) -> Done, forget_source;
    }
    with inspection and topic
}

// ---- Batch ----------------------------------------------------------------

/// One item of a bulk import: a checked document and its visibility.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchDoc {
    pub doc: ContentDoc,
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateBatch {
    pub id: Uuid,
    pub submitter: Principal,
    pub ownership: Ownership,
    pub max_in_flight: u32,
    pub items: Vec<BatchDoc>,
}

/// Items the queue handed over (`delivered`) or gave up on (`dead_lettered`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ItemsDelivered {
    pub indexes: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLettered {
    pub indexes: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ViewBatch {
    pub principal: Principal,
}

/// A batch's create the Worker sent without learning its outcome (a 5xx
/// after its tries), settled as [`SettleCreate`] settles an item's: made, the
/// Worker goes on with it (its items to the queue, 202); never made, a create
/// still on its way is refused, so no batch the client never heard of
/// imports its items later beside the client's retry.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SettleBatch {}

actor_ops! {
    /// A bulk import: its items from queued to terminal under the in-flight cap.
    enum BatchCall for Batch, trait BatchOps {
        "create" => Create(CreateBatch) -> Done, create;
        "delivered" => Delivered(ItemsDelivered) -> Done, delivered;
        "ended" => Ended(ItemEnded) -> Done, ended;
        "dead_lettered" => DeadLettered(DeadLettered) -> Done, dead_lettered;
        "view" => View(ViewBatch) -> BatchView as passed, view;
        "settle_create" => SettleCreate(SettleBatch) -> CreateSettled, settle_create;
    }
    with inspection and topic
}
