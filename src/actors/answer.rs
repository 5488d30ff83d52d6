//! `AnswerActor`: one answer to one question, on the topic `answer:<id>`. A
//! thin shell over [`crate::domain::answer::Answer`]: `start` stores the
//! question, its asker and the sources the Worker retrieved for that asker,
//! then each alarm emits one step (a delta or the completion), committing the
//! state and its events together before arming the next alarm. An evicted or
//! restarted actor resumes from the last committed step, so no delta is lost
//! or repeated.

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::fanout;
use super::pipeline::to_datetime;
use super::rpc;
use super::ActorStorage;
use crate::catalog;
use crate::domain::answer::{Answer, Source};
use crate::domain::principal::Principal;
use crate::domain::time::Millis;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{EventDraft, Topic};
use crate::runtime::{config, now_ms};

/// A step that keeps failing ends the answer instead of retrying forever.
const MAX_STEP_FAILURES: u32 = 5;

#[durable_object]
pub struct AnswerActor {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct StartRequest {
    id: Uuid,
    question: String,
    asker: Principal,
    sources: Vec<Source>,
}

/// Ops that act for a principal: `view`, `authorize`, `subscribe`.
#[derive(Deserialize)]
struct ForPrincipal {
    principal: Principal,
}

crate::actor_storage!(AnswerActor);

impl AnswerActor {
    fn load(&self) -> ApiResult<Option<Answer>> {
        if !crate::store::has_state(&self.state.storage().sql()) {
            return Ok(None);
        }
        self.cells().load("answer")
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
        self.cells().save("answer", answer)?;
        let records = self.log().append(drafts, now)?;
        let (env, subs, topic) = (self.env.clone(), self.subs(), Topic::Answer(answer.id));
        self.state.wait_until(async move { fanout::push(&env, &subs, topic, &records).await });
        if answer.status.is_terminal() {
            self.register(answer, now);
        }
        Ok(())
    }

    /// The registry row for the admin listing, written in the background.
    fn register(&self, answer: &Answer, now: Millis) {
        let env = self.env.clone();
        let (id, status) = (answer.id.to_string(), serde_json::to_value(answer.status).unwrap_or_default());
        let status = status.as_str().unwrap_or("unknown").to_string();
        self.state.wait_until(async move {
            if let Err(e) = catalog::register_actor(&env, "answer", &id, &status, now).await {
                worker::console_error!("answer registry write failed: {e}");
            }
        });
    }

    /// The next step's alarm, `ANSWER_STEP_MS` after `now` (the pace of the
    /// stream a client sees), or none once the answer has ended.
    async fn arm(&self, answer: &Answer, now: Millis) -> ApiResult<()> {
        let storage = self.state.storage();
        if answer.status.is_terminal() {
            storage.delete_alarm().await?;
        } else {
            storage.set_alarm(to_datetime(now + config(&self.env).answer_step_ms)).await?;
        }
        Ok(())
    }

    async fn start(&self, req: StartRequest) -> ApiResult<Value> {
        if let Some(a) = self.load()? {
            // Idempotent: a retried start gets the same answer back.
            return Ok(json!({ "id": a.id, "status": a.status }));
        }
        let now = now_ms();
        crate::store::init_state(&self.state.storage().sql())?;
        self.subs().init()?;
        let (answer, events) = Answer::new(req.id, req.question, req.asker, req.sources, now);
        self.commit(&answer, events, now)?;
        self.register(&answer, now);
        self.arm(&answer, now).await?;
        Ok(json!({ "id": answer.id, "status": answer.status }))
    }

    /// One alarm: one step.
    async fn tick(&self) -> ApiResult<()> {
        let Some(mut answer) = self.load()? else { return Ok(()) };
        let now = now_ms();
        let events = answer.step(now);
        if !events.is_empty() {
            self.commit(&answer, events, now)?;
            self.cells().save("step_failures", &0u32)?;
        }
        self.arm(&answer, now).await
    }

    /// A tick failed: retry it, or end the answer after too many failures.
    async fn on_tick_error(&self, e: &ApiError) {
        worker::console_error!("answer alarm failed: {e}");
        let Ok(Some(mut answer)) = self.load() else { return };
        let failures = self.cells().load::<u32>("step_failures").ok().flatten().unwrap_or(0) + 1;
        let _ = self.cells().save("step_failures", &failures);
        let now = now_ms();
        if failures >= MAX_STEP_FAILURES {
            let events = answer.fail(&e.to_string(), now);
            let _ = self.commit(&answer, events, now);
        }
        let _ = self.arm(&answer, now + 1_000).await;
    }

    fn snapshot(answer: &Answer) -> Value {
        serde_json::to_value(answer.view()).unwrap_or_default()
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<Value> {
        let (op, body): (String, Value) = rpc::incoming(&mut req).await?;
        match op.as_str() {
            "start" => self.start(serde_json::from_value(body)?).await,
            "view" | "authorize" => {
                let f: ForPrincipal = serde_json::from_value(body)?;
                Ok(serde_json::to_value(self.require_for(&f.principal)?.view())?)
            }
            "fire_alarm" => {
                self.tick().await?;
                self.inspect()
            }
            "inspect" => self.inspect(),
            other => {
                if other == "subscribe" {
                    // Only the asker may follow the answer; anyone else sees no topic.
                    let f: ForPrincipal = serde_json::from_value(body.clone())
                        .map_err(|_| ApiError::not_found("answer"))?;
                    self.require_for(&f.principal)?;
                }
                let topic = self.load()?.map(|a| (Topic::Answer(a.id), Self::snapshot(&a)));
                super::topic_op(other, body, topic, &self.log(), &self.subs())
            }
        }
    }

    fn inspect(&self) -> ApiResult<Value> {
        let a = self.load()?.ok_or_else(|| ApiError::not_found("answer"))?;
        let state = json!({ "view": a.view(), "asker": a.asker, "sources": a.sources.len(), "pieces": a.pieces.len(), "emitted": a.emitted });
        super::inspection(&self.state, "answer", &a.id.to_string(), state, None, &self.log())
    }
}

impl DurableObject for AnswerActor {
    fn new(state: State, env: Env) -> Self {
        AnswerActor { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        rpc::reply(self.dispatch(req).await)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.tick().await {
            self.on_tick_error(&e).await;
        }
        Response::ok("ok")
    }

    crate::unused_handlers!(sockets);
}
