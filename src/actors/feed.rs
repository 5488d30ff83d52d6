//! `FeedActor`: the `feed` topic. Content actors append their content-level
//! events here, and it numbers them in its own dense sequence.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
use super::ActorStorage;
use super::rpc::{self, ActorKind};
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, Topic};
use crate::runtime::now_ms;

/// There is one feed; sharding it by category would be the next step.
pub const FEED_NAME: &str = "feed";

#[durable_object]
pub struct FeedActor {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct Append {
    events: Vec<EventDraft>,
}

pub async fn append(env: &Env, events: Vec<EventDraft>) -> ApiResult<()> {
    let _: Value = rpc::call(env, ActorKind::Feed, FEED_NAME, "append", &json!({ "events": events })).await?;
    Ok(())
}

crate::actor_storage!(FeedActor);

impl FeedActor {
    fn snapshot(&self) -> Value {
        json!({ "topic": "feed", "last_seq": self.log().last_seq().unwrap_or(0), "recent": self.log().tail(20).unwrap_or_default() })
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<Value> {
        let (op, body): (String, Value) = rpc::incoming(&mut req).await?;
        match op.as_str() {
            "append" => {
                let a: Append = serde_json::from_value(body)?;
                crate::store::init_state(&self.state.storage().sql())?;
                self.subs().init()?;
                let records = self.log().append(a.events, now_ms())?;
                let (env, subs) = (self.env.clone(), self.subs());
                let last = records.last().map(|r| r.seq).unwrap_or(0);
                self.state.wait_until(async move { fanout::push(&env, &subs, Topic::Feed, &records).await });
                Ok(json!({ "last_seq": last }))
            }
            "inspect" | "fire_alarm" => super::inspection(&self.state, "feed", FEED_NAME, self.snapshot(), None, &self.log()),
            other => super::topic_op(other, body, Some((Topic::Feed, self.snapshot())), &self.log(), &self.subs()),
        }
        .map_err(|e: ApiError| e)
    }
}

impl DurableObject for FeedActor {
    fn new(state: State, env: Env) -> Self {
        FeedActor { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        rpc::reply(self.dispatch(req).await)
    }

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}
