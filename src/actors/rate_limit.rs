//! `RateLimitActor`: one token bucket per principal and limit class (the id
//! is `<class>:<principal key>`), so limits hold across isolates and no one
//! principal's traffic queues behind another's.
//!
//! Why an actor and not the Workers rate-limiting binding: the binding's
//! limit and period are fixed in wrangler.toml, while a key's `rate_per_min`
//! must override the write limit per key, and a refusal must say when to come
//! back (`Retry-After`), which the binding does not tell.
//!
//! The bucket lives in memory, and in storage only while it is low: a
//! bucket that the idle time before an eviction (about 10 s) would refill
//! needs no record, since it comes back full, as it would have been. One
//! below that is recorded on every take, so a caller who spends it and
//! waits for the eviction finds it as it was (refilled by the wait), and
//! the record and this actor's storage are deleted once it is full again.
//! So a caller within its limit costs no storage write.

use std::cell::{Cell, RefCell};

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Response, State};

use super::ops::{FireAlarm, Inspect, Inspectable, RateLimitCall, RateLimitOps, Take, Taken};
use crate::domain::rate::TokenBucket;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::runtime::now_ms;
use crate::store::{self, StateCell};
use crate::store::StateKey;

/// The record's cell.
const BUCKET: StateKey<TokenBucket> = StateKey::named("bucket");

#[durable_object]
pub struct RateLimitActor {
    state: State,
    env: Env,
    bucket: RefCell<Option<TokenBucket>>,
    /// Whether storage holds a record (and the alarm that deletes it).
    recorded: Cell<bool>,
}

impl RateLimitActor {
    fn cells(&self) -> StateCell {
        StateCell::new(self.state.storage().sql())
    }

    /// The record, when this actor's storage has one.
    fn recorded_bucket(&self) -> ApiResult<Option<TokenBucket>> {
        if !store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        let b = self.cells().load(BUCKET)?;
        self.recorded.set(b.is_some());
        Ok(b)
    }

    /// Records `b` while it is low, and deletes the record once it is not.
    async fn keep(&self, b: TokenBucket) -> ApiResult<()> {
        if !b.refills_while_idle() {
            let first = !self.recorded.get();
            if first {
                store::init_state(&self.state.storage().sql())?;
            }
            self.cells().save(BUCKET, &b)?;
            self.recorded.set(true);
            if first {
                self.state.storage().set_alarm(super::alarm_time(b.full_at())).await?;
            }
        } else if self.recorded.get() && b.is_full() {
            self.forget().await?;
        }
        Ok(())
    }

    /// Deletes the record, and with it this actor's storage.
    async fn forget(&self) -> worker::Result<()> {
        self.recorded.set(false);
        self.state.storage().delete_all().await
    }

    /// The bucket as this instance holds it, else as stored, refilled to
    /// `now`; none when neither has one (it is full).
    fn bucket_at(&self, now: Millis) -> ApiResult<Option<TokenBucket>> {
        let held = match *self.bucket.borrow() {
            Some(b) => Some(b),
            None => self.recorded_bucket()?,
        };
        Ok(held.map(|mut b| {
            // A take of nothing refills it to now.
            let _ = b.take(0, b.per_min, now);
            b
        }))
    }

    /// The alarm's work: the record's deletion once the bucket is full again,
    /// or the next check.
    async fn wake(&self) -> worker::Result<()> {
        let now = now_ms();
        let bucket = self.bucket_at(now).map_err(|e| worker::Error::RustError(e.to_string()))?;
        if let Some(b) = bucket {
            if b.is_full() {
                self.bucket.replace(None);
                self.forget().await?;
            } else {
                self.bucket.replace(Some(b));
                self.state.storage().set_alarm(super::alarm_time(b.full_at().max(now + 1_000))).await?;
            }
        }
        Ok(())
    }
}

impl Inspectable for RateLimitActor {
    /// The bucket refilled to now; `null` when full.
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        let typed = json!({ "bucket": self.bucket_at(now_ms())?, "recorded": self.recorded.get() });
        let log = crate::store::events::EventStore::new(self.state.storage().sql(), crate::runtime::config(&self.env).retention, Default::default());
        super::inspection(&self.state, "rate_limit", "rate_limit", typed, &log).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.wake().await?;
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

impl RateLimitOps for RateLimitActor {
    async fn take(&self, t: Take) -> ApiResult<Taken> {
        let now = now_ms();
        let (taken, after) = {
            let mut slot = self.bucket.borrow_mut();
            if slot.is_none() {
                *slot = Some(TokenBucket::restored(self.recorded_bucket()?, t.per_min, now));
            }
            let bucket = slot.get_or_insert_with(|| TokenBucket::full(t.per_min, now));
            (bucket.take(t.cost, t.per_min, now), *bucket)
        };
        // Recorded before the answer: the output gate holds it until the
        // record is durable, so no refusal is forgotten by a restart. A
        // refusal changes nothing a record already says (the record refills
        // to the same tokens), so a caller hammering past its limit costs no
        // write per call.
        if taken.is_ok() || !self.recorded.get() {
            self.keep(after).await?;
        }
        match taken {
            Ok(()) => Ok(Taken { left: after.tokens.floor() }),
            Err(secs) => Err(ApiError::RateLimited { retry_after_secs: secs }),
        }
    }
}

impl DurableObject for RateLimitActor {
    fn new(state: State, env: Env) -> Self {
        RateLimitActor { state, env, bucket: RefCell::new(None), recorded: Cell::new(false) }
    }

    crate::unused_handlers!(fetch);

    /// The record's deletion, once the bucket is full again (re-armed
    /// while takes keep it low).
    async fn alarm(&self) -> worker::Result<Response> {
        self.wake().await?;
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(RateLimitActor, RateLimitCall);
