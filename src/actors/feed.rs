//! `FeedActor`: the `feed` topic. Content actors append their content-level
//! events here, and it numbers them in its own dense sequence.
//!
//! It holds the feed's watching sockets itself (`GET /api/topics/feed/ws`,
//! hibernating), so an event reaches a thousand tabs as a thousand sends from
//! this actor, in the turn that commits it, instead of a call per session.
//! Session sockets may still subscribe to `feed`; they get it by push.
//! The rules (who sees what, what each socket is owed) are in
//! `domain::broadcast`.

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage};

use super::ops::{Announcer, Append, Appended, FeedCall, FeedOps, FireAlarm, Inspect, Inspectable};
use super::rpc;
use super::topic_sockets::{opener, TopicSockets};
use super::{ActorStorage, TopicActor};
use crate::error::ApiResult;
use crate::domain::broadcast::sees;
use crate::domain::item_labels::{ItemLabel, ItemLabels};
use crate::store::feed_ledger::{Claim, FeedLedger, LedgerMemory};
use crate::domain::principal::{Principal, ReadScope};
use crate::protocol::{EventDraft, EventRecord, Topic};
use crate::domain::time::Millis;
use crate::runtime::now_ms;

/// An announcement's drafts, labelled, and the labels they changed.
type Placed = (Vec<EventDraft>, Vec<(String, ItemLabel)>);

/// There is one feed; sharding it by category would be the next step.
pub const FEED_NAME: &str = "feed";

#[durable_object]
pub struct FeedActor {
    state: State,
    env: Env,
    sockets: TopicSockets,
    memory: super::ActorMemory,
    ledger: LedgerMemory,
}

/// Appends an item's announcement (see `Duty::Announce`): once, however
/// often it is tried, and not after a later one of the item.
pub async fn append(env: &Env, events: Vec<EventDraft>, from: Announcer) -> ApiResult<()> {
    rpc::send(env, FEED_NAME, &Append { events, from: Some(from) }).await?;
    Ok(())
}

crate::actor_storage!(FeedActor, forget_ledger);

impl FeedActor {
    fn forget_ledger(&self) {
        self.ledger.forget();
    }

    /// The feed as a reader of `scope` may see it: its last seq and its
    /// latest events of items the reader may read (a resync's snapshot).
    fn snapshot(&self, scope: &ReadScope) -> Value {
        let mut recent = self.log().tail(20).unwrap_or_default();
        recent.retain(|e| sees(scope, e));
        json!({ "topic": "feed", "last_seq": self.log().last_seq().unwrap_or(0), "recent": recent })
    }

    /// Arms the alarm for `at` (a dropped broadcast's catch-up, a socket's
    /// expiry) unless an earlier one is armed.
    async fn arm(&self, at: crate::domain::time::Millis) {
        if let Err(e) = self.arm_by(at, false).await {
            worker::console_error!("feed alarm: {e}");
        }
    }

    async fn accept(&self, req: &Request) -> ApiResult<Response> {
        self.sockets.accept(self, Topic::Feed, req, &opener(req)?, |scope| self.snapshot(scope)).await
    }

    /// Takes an announcement: `None` when it was appended before (a try
    /// whose reply was lost); else its drafts, labelled as their items are
    /// now (see `domain::item_labels`), and the labels they changed, saved.
    /// Items that never had a second version or a deletion cost no label read.
    fn place(&self, ledger: &FeedLedger, mut drafts: Vec<EventDraft>, from: Option<&Announcer>, now: Millis) -> ApiResult<Option<Placed>> {
        let claim = match from {
            Some(a) => ledger.claim(a.content_id, a.seq, now)?,
            None => Claim::Append,
        };
        if claim == Claim::Repeat {
            return Ok(None);
        }
        let mut labels = ledger.labels(&ItemLabels::items(&drafts))?;
        let changed = labels.learn(&drafts, now);
        ledger.save(&labels, &changed)?;
        labels.apply(&mut drafts);
        let changed = changed.into_iter().filter_map(|id| labels.get(&id).cloned().map(|l| (id, l))).collect();
        if claim == Claim::Overtaken {
            // Not shown, but a PUT that narrowed the item still narrows its
            // earlier events (its successor, `content.indexed`, teaches nothing).
            drafts.clear();
        }
        Ok(Some((drafts, changed)))
    }

    fn view(&self) -> Value {
        let mut v = self.snapshot(&ReadScope::All);
        v["broadcast_lag"] = json!(TopicSockets::stored_lag(self));
        v["sockets"] = json!(self.state.get_websockets().len());
        v
    }
}

impl FeedOps for FeedActor {
    async fn append(&self, a: Append) -> ApiResult<Appended> {
        // Before the broadcast, so a revoked key's socket gets none of it.
        self.sockets.check_keys(self, now_ms()).await;
        let now = now_ms();
        // Placed, relabelled and appended in one transaction: all or none,
        // so a failed try leaves no claim and the next one is placed.
        let placed = self.atomically(|| {
            let ledger = FeedLedger::open(self.state.storage().sql(), &self.ledger, now)?;
            let Some((drafts, changed)) = self.place(&ledger, a.events, a.from.as_ref(), now)? else { return Ok(None) };
            // The events the feed holds of an item changed now: a deleted
            // item's no longer name it, in any replay; a new version's follow
            // its visibility where it is narrower (a first version has no
            // earlier events, and costs no statement). Before the append:
            // once appended, the events must go out.
            for (id, label) in changed {
                if label.deleted {
                    self.log().redact(&id)?;
                } else if let Some(visibility) = &label.visibility {
                    self.log().reown(&id, visibility)?;
                }
            }
            self.log().append(drafts, now).map(Some)
        })?;
        // A repeat, or nothing to show: the log as it stands.
        let records = placed.unwrap_or_default();
        let Some(last) = records.last().map(|r| r.seq) else { return Ok(Appended { last_seq: self.log().last_seq()? }) };
        // Appended: the events go out to the sessions whatever happens to
        // the sockets' broadcast (a failed read of their lag cell closes
        // the sockets, which resume from the log), and a retry of this call
        // would find them placed and send nothing.
        self.sockets.publish(self, Topic::Feed, &records);
        if let Some(at) = self.sockets.catch_up_due(now_ms()) {
            self.arm(at).await;
        }
        self.push_later(Topic::Feed, records);
        Ok(Appended { last_seq: last })
    }
}

impl FeedActor {
    /// The alarm's work: a broadcast lost since it was armed goes out now,
    /// and sockets whose tokens expired (or whose keys were revoked) are
    /// closed; then the next of either is armed.
    async fn wake(&self) -> ApiResult<()> {
        let now = now_ms();
        self.sockets.sweep(self, now);
        self.sockets.check_keys(self, now).await;
        self.sockets.catch_up(self, Topic::Feed)?;
        if let Some(at) = self.sockets.due(self, now) {
            self.arm(at).await;
        }
        Ok(())
    }
}

impl Inspectable for FeedActor {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        super::inspection(&self.state, "feed", FEED_NAME, self.view(), &self.log()).await
    }

    /// What the alarm does ([`FeedActor::wake`]).
    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.wake().await?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl TopicActor for FeedActor {
    /// The snapshot shows public items only, until [`Self::withhold`] makes
    /// it the reader's.
    fn topic(&self) -> ApiResult<Option<Topic>> {
        Ok(Some(Topic::Feed))
    }

    fn resync_snapshot(&self) -> ApiResult<Value> {
        Ok(self.snapshot(&ReadScope::PublicOnly))
    }

    /// The events a reader may not read are filtered out where they are
    /// sent (by the session, the SSE stream); the snapshot is made here.
    async fn withhold(&self, reader: &Principal, _events: &mut [EventRecord], snapshot: Option<&mut Value>) -> ApiResult<()> {
        if let Some(s) = snapshot {
            *s = self.snapshot(&reader.read_scope());
        }
        Ok(())
    }
}

impl DurableObject for FeedActor {
    fn new(state: State, env: Env) -> Self {
        super::socket::answer_pings(&state);
        FeedActor { state, env, sockets: TopicSockets::default(), memory: Default::default(), ledger: LedgerMemory::default() }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if crate::http::is_websocket_upgrade(&req) {
            return Ok(self.accept(&req).await.unwrap_or_else(|e| crate::http::error(&e)));
        }
        super::rpc::not_a_call()
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        // A frame may ask for a replay: a revoked key's socket is closed first.
        self.sockets.check_keys(self, now_ms()).await;
        self.sockets.on_message(self, Topic::Feed, &ws, message, |scope| self.snapshot(scope));
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        self.sockets.on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.sockets.on_error(&ws);
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Thrown, so the runtime retries the alarm: the catch-up is still owed.
        self.wake().await.map_err(|e| worker::Error::RustError(format!("feed catch-up: {e}")))?;
        Response::ok("caught up")
    }
}

crate::rpc_entry!(FeedActor, FeedCall);
