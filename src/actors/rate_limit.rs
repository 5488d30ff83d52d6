//! `RateLimitActor`: one token bucket per principal and limit class (the id
//! is `<class>:<principal key>`), so limits hold across isolates and no one
//! principal's traffic queues behind another's.
//!
//! Why an actor and not the Workers rate-limiting binding: the binding's
//! limit and period are fixed in wrangler.toml, while a key's `rate_per_min`
//! must override the write limit per key, and a refusal must say when to come
//! back (`Retry-After`), which the binding does not tell.
//!
//! The bucket lives in memory only, on purpose: it is recreated full after an
//! eviction (about 10 s idle locally), which can only be lenient by what 10 s
//! of refill would have given back anyway, and it spares a storage write on
//! every request. So no storage is ever created for a caller, however many
//! IPs call.

use std::cell::RefCell;

use worker::{durable_object, DurableObject, Env, State};

use super::ops::{RateLimitCall, RateLimitOps, Take, Taken};
use crate::domain::rate::TokenBucket;
use crate::error::{ApiError, ApiResult};
use crate::runtime::now_ms;

#[durable_object]
pub struct RateLimitActor {
    #[allow(dead_code)]
    state: State,
    bucket: RefCell<Option<TokenBucket>>,
}

impl RateLimitOps for RateLimitActor {
    async fn take(&self, t: Take) -> ApiResult<Taken> {
        let now = now_ms();
        let mut slot = self.bucket.borrow_mut();
        let bucket = slot.get_or_insert_with(|| TokenBucket::full(t.per_min, now));
        match bucket.take(t.cost, t.per_min, now) {
            Ok(()) => Ok(Taken { left: bucket.tokens.floor() }),
            Err(secs) => Err(ApiError::RateLimited { retry_after_secs: secs }),
        }
    }
}

impl DurableObject for RateLimitActor {
    fn new(state: State, _env: Env) -> Self {
        RateLimitActor { state, bucket: RefCell::new(None) }
    }

    crate::unused_handlers!(fetch);

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(RateLimitActor, RateLimitCall);
