//! Durable Object shells. Each one turns storage, alarm and WebSocket
//! callbacks into calls on a pure state machine in `crate::domain`, persists
//! the result, and sends the events it produced. No state lives only in
//! memory: an actor may be evicted between any two awaits.

pub mod analyzer;
pub mod answer;
pub mod batch;
pub mod content;
pub mod fanout;
pub mod feed;
pub mod ops;
pub mod pipeline;
pub mod rate_limit;
pub mod rpc;
pub mod session;
pub mod socket;
pub mod topic_sockets;
pub mod vector_index;

/// Handlers an actor does not use. workers-rs's defaults panic, and a panic
/// traps the whole isolate, so every class gets these explicit answers.
#[macro_export]
macro_rules! unused_handlers {
    (fetch) => {
        /// Operations come by RPC (`actors::rpc`), and this actor holds no sockets.
        async fn fetch(&self, _req: worker::Request) -> worker::Result<worker::Response> {
            $crate::actors::rpc::not_a_call()
        }
    };
    (alarm) => {
        async fn alarm(&self) -> worker::Result<worker::Response> {
            worker::Response::ok("no alarm work")
        }
    };
    (sockets) => {
        async fn websocket_message(
            &self,
            ws: worker::WebSocket,
            _m: worker::WebSocketIncomingMessage,
        ) -> worker::Result<()> {
            let _ = ws.close(Some($crate::protocol::close_code::UNSUPPORTED), Some("this actor takes no socket messages"));
            Ok(())
        }
        async fn websocket_close(&self, _ws: worker::WebSocket, _c: usize, _r: String, _w: bool) -> worker::Result<()> {
            Ok(())
        }
        async fn websocket_error(&self, _ws: worker::WebSocket, _e: worker::Error) -> worker::Result<()> {
            Ok(())
        }
    };
}

use serde_json::{json, Value};

use crate::domain::event_log::{plan_replay, ReplayPlan};
use crate::domain::followers::Follower;
use crate::domain::principal::Principal;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventRecord, Topic};
use ops::{Admit, Done, Events, EventsPage, Plan, Subscribe, SubscribeAnswer, Unsubscribe};
use crate::store::events::{EventStore, LogMemory};
use crate::store::subscribers::{SubscriberMemory, Subscribers};
use crate::store::outbox::{self, OutboxMemory};

/// The storage views of an actor's own SQLite. Every actor reaches its state,
/// event log and subscriber list the same way through this trait.
#[allow(async_fn_in_trait)]
pub trait ActorStorage {
    fn state(&self) -> &worker::State;
    fn env(&self) -> &worker::Env;
    fn memory(&self) -> &ActorMemory;

    /// Drops the actor's own copies of its storage (beyond [`ActorMemory`])
    /// after a rolled-back transaction, so they are read again.
    fn forget_copies(&self) {}

    /// Runs `writes` (synchronous statements, no await) as one transaction:
    /// all of them land, or none. On failure what this instance remembers
    /// of its tables is forgotten, since the body may have noted writes that
    /// were rolled back. Effects outside storage (pushes, socket sends) go
    /// after it, never inside.
    fn atomically<T>(&self, writes: impl FnOnce() -> ApiResult<T>) -> ApiResult<T> {
        crate::store::transaction::atomically(self.state(), writes).inspect_err(|_| {
            self.memory().forget();
            self.forget_copies();
        })
    }

    fn cells(&self) -> crate::store::StateCell {
        crate::store::StateCell::new(self.state().storage().sql())
    }

    fn log(&self) -> EventStore {
        EventStore::new(self.state().storage().sql(), crate::runtime::config(self.env()).retention, self.memory().log.clone())
    }

    /// Creates a new actor's tables, `more` and its event log, outbox and
    /// state, in one statement, and remembers the log and outbox as empty
    /// (see [`crate::store::create_new_tables`]). `false`: one existed, and
    /// the caller creates each table unless it exists. The state table comes
    /// last, so when it exists (`has_state`) every other one was created new.
    fn create_new_tables(&self, more: &[&str]) -> bool {
        let tables = [more, &[crate::store::events::TABLE, outbox::TABLE, crate::store::STATE_TABLE]].concat();
        let created = crate::store::create_new_tables(&self.state().storage().sql(), &tables);
        if created {
            self.memory().log.created_empty();
            self.memory().outbox.created_empty();
        }
        created
    }

    /// Arms the alarm for `at` unless an earlier one is armed. Inside the
    /// alarm handler (`firing`) the alarm that fired is spent, so it is set
    /// without asking.
    async fn arm_by(&self, at: crate::domain::time::Millis, firing: bool) -> ApiResult<()> {
        let storage = self.state().storage();
        let armed = if firing { None } else { storage.get_alarm().await? };
        if armed.is_none_or(|armed| armed > at) {
            storage.set_alarm(self::alarm_time(at)).await?;
        }
        Ok(())
    }

    fn subs(&self) -> Subscribers {
        Subscribers::new(self.state().storage().sql(), self.memory().subscribers.clone())
    }

    /// Pushes committed `records` of `topic` to its subscribed sessions after
    /// this request (best effort: a lost push is late, never lost).
    fn push_later(&self, topic: Topic, records: Vec<crate::protocol::EventRecord>) {
        let (env, subs) = (self.env().clone(), self.subs());
        self.state().wait_until(async move { fanout::push(&env, &subs, topic, &records).await });
    }

    /// Writes this actor's registry row (the admin listing) after this request.
    fn register_later(&self, kind: &'static str, id: String, status: String, now: crate::domain::time::Millis) {
        let env = self.env().clone();
        self.state().wait_until(async move {
            if let Err(e) = crate::catalog::register_actor(&env, kind, &id, &status, now).await {
                worker::console_error!("{kind} registry write failed: {e}");
            }
        });
    }
}

/// What an actor instance remembers of its own tables between calls. An actor
/// is the only writer of its SQLite, so these copies stay true for as long as
/// the instance lives; a new instance starts empty and reads once. They save
/// statements on every commit and push, not correctness: storage stays the
/// truth.
#[derive(Default)]
pub struct ActorMemory {
    pub log: LogMemory,
    pub subscribers: SubscriberMemory,
    pub outbox: OutboxMemory,
}

impl ActorMemory {
    /// A transaction was rolled back: every copy is read again.
    pub fn forget(&self) {
        self.log.forget();
        self.subscribers.forget();
        self.outbox.forget();
    }
}

/// Implements [`ActorStorage`] for an actor struct with `state`, `env` and
/// `memory` fields; a second argument names its method that drops its own
/// copies (see [`ActorStorage::forget_copies`]).
#[macro_export]
macro_rules! actor_storage {
    ($t:ty) => {
        $crate::actor_storage!($t, forget_nothing);
    };
    ($t:ty, $forget:ident) => {
        impl $crate::actors::ActorStorage for $t {
            fn state(&self) -> &worker::State {
                &self.state
            }
            fn env(&self) -> &worker::Env {
                &self.env
            }
            fn memory(&self) -> &$crate::actors::ActorMemory {
                &self.memory
            }
            fn forget_copies(&self) {
                $crate::actor_storage!(@forget self, $forget);
            }
        }
    };
    (@forget $self:ident, forget_nothing) => {};
    (@forget $self:ident, $forget:ident) => {
        $self.$forget()
    };
}

/// The time to arm an alarm for `at`: never before 1 ms from now, since an
/// alarm re-armed for "now" inside `alarm()` is lost (DESIGN.md: "use now +
/// 1 ms or later"). Every actor arms through this, so a wake computed from
/// an overdue duty or expiry cannot be "now".
pub fn alarm_time(at: crate::domain::time::Millis) -> chrono::DateTime<chrono::Utc> {
    let at = crate::domain::time::alarm_after(at, crate::runtime::now_ms());
    chrono::DateTime::from_timestamp_millis(at).unwrap_or_default()
}

/// Most events one replay answer carries; a session pages for the rest.
pub const REPLAY_PAGE: u32 = 500;

/// A topic's owner (content, run, answer, batch, feed): its log, its
/// subscriber list, and who may follow it. The topic ops are served here
/// once for every kind.
#[allow(async_fn_in_trait)]
pub trait TopicActor: ActorStorage {
    /// The topic; `None` when the actor was never created.
    fn topic(&self) -> ApiResult<Option<Topic>>;

    /// The topic's snapshot now, for a `resync_required`: built only then,
    /// since an item's is its whole view (body and version history) and
    /// every follow, poll and unsubscribe asks for the topic.
    fn resync_snapshot(&self) -> ApiResult<Value>;

    /// Refuses (404) a subscriber that may not read the topic.
    async fn admit(&self, _principal: &Principal) -> ApiResult<()> {
        Ok(())
    }

    /// Hides from a replay, and from a resync's snapshot, what `reader` may
    /// not see (the feed's items of other tenants; answers cite content that
    /// may since be deleted); the log keeps what was pushed.
    async fn withhold(&self, _reader: &Principal, _events: &mut [EventRecord], _snapshot: Option<&mut Value>) -> ApiResult<()> {
        Ok(())
    }

    /// The `admit` op: 404 unless the topic exists and `principal` may follow it.
    async fn admits(&self, q: Admit) -> ApiResult<Done> {
        self.admit(&q.principal).await?;
        self.topic()?.ok_or_else(|| ApiError::not_found("actor"))?;
        Ok(Done {})
    }

    async fn subscribe(&self, q: Subscribe) -> ApiResult<SubscribeAnswer> {
        self.admit(&q.principal).await?;
        let topic = self.topic()?.ok_or_else(|| ApiError::not_found("actor"))?;
        let log = self.log();
        let cap = crate::runtime::config(self.env()).trust.max_topic_sessions_per_principal;
        let follower = Follower { session: q.session, holder: q.holder, until: q.until, since: 0 };
        self.subs().add(follower, cap, crate::runtime::now_ms())?;
        let window = log.window()?;
        let mut answer = match plan_replay(q.after, window) {
            ReplayPlan::UpToDate => SubscribeAnswer { topic, last_seq: window.last, plan: Plan::Live, events: vec![], snapshot: None },
            ReplayPlan::Replay { after, .. } => {
                let events = log.after(after, REPLAY_PAGE)?;
                SubscribeAnswer { topic, last_seq: window.last, plan: Plan::Replay, events, snapshot: None }
            }
            ReplayPlan::Resync => SubscribeAnswer { topic, last_seq: window.last, plan: Plan::Resync, events: vec![], snapshot: Some(self.resync_snapshot()?) },
        };
        self.withhold(&q.principal, &mut answer.events, answer.snapshot.as_mut()).await?;
        Ok(answer)
    }

    async fn unsubscribe(&self, q: Unsubscribe) -> ApiResult<Done> {
        self.topic()?.ok_or_else(|| ApiError::not_found("actor"))?;
        self.subs().remove(&q.session)?;
        Ok(Done {})
    }

    async fn events(&self, q: Events) -> ApiResult<EventsPage> {
        let topic = self.topic()?.ok_or_else(|| ApiError::not_found("actor"))?;
        let log = self.log();
        let window = log.window()?;
        // The same decision as a subscribe's: a cursor older than the log
        // gets a snapshot, any other a page (empty when up to date).
        let mut page = if plan_replay(Some(q.after), window) == ReplayPlan::Resync {
            EventsPage { topic, last_seq: window.last, events: vec![], resync: true, snapshot: Some(self.resync_snapshot()?) }
        } else {
            let events = log.after(q.after, q.limit.unwrap_or(REPLAY_PAGE).min(REPLAY_PAGE))?;
            EventsPage { topic, last_seq: window.last, events, resync: false, snapshot: None }
        };
        // A caller that names no reader gets what anyone may read.
        let reader = q.reader.unwrap_or_else(Principal::anonymous);
        self.withhold(&reader, &mut page.events, page.snapshot.as_mut()).await?;
        Ok(page)
    }
}

/// The admin inspection every actor kind answers with, its alarm included.
pub async fn inspection(state: &worker::State, kind: &str, id: &str, typed: Value, log: &EventStore) -> ApiResult<Value> {
    let alarm_at = state.storage().get_alarm().await?;
    let sockets: Vec<Value> = state
        .get_websockets()
        .iter()
        .map(|ws| json!({ "tags": state.get_tags(ws) }))
        .collect();
    let sql = state.storage().sql();
    Ok(json!({
        "kind": kind,
        "id": id,
        "state": typed,
        "alarm_at": alarm_at.map(crate::domain::time::rfc3339),
        "websockets": { "count": sockets.len(), "sockets": sockets },
        "events": { "last_seq": log.last_seq().unwrap_or(0), "tail": log.tail(50).unwrap_or_default() },
        "storage": crate::store::describe_tables(&sql, 5),
    }))
}
