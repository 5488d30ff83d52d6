//! `AnalyzerContainer`: owns the analyzer and the circuit breaker in front of
//! it. In production the class runs a Cloudflare Container: it starts it,
//! waits for its port ([`StartupWait`]) and lets the runtime stop it when
//! idle. Under `--env emulated` the emulator's binding stands in for
//! `ctx.container` through the same [`ContainerHandle`]. With neither
//! (`wrangler dev`), it forwards to `ANALYZER_URL`, the same binary started
//! natively. The breaker lives in this actor's storage, so it holds across
//! isolates.

use std::time::Duration;

use js_sys::{Promise, Reflect};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{durable_object, Delay, DurableObject, Env, Request, Response, State};

use super::ops::{AnalyzerBackend, AnalyzerCall, AnalyzerOps, Done, ExtractPdf, ExtractedText, FireAlarm, ForgetDocument, Inspect, Inspectable, WhichBackend};
use crate::domain::circuit::Breaker;
use crate::domain::container_start::{refusal, ColdStreak, Refusal, StartupWait, Step};
use crate::domain::pipeline::StageError;
use crate::error::{ApiError, ApiResult};
use crate::protocol::ErrorClass;
use crate::providers::analyzer_http::{analyze_over_http, analyzer_reply, ContainerRequest};
use crate::providers::object_store::{ObjectStore, R2Uploads};
use crate::providers::workers_ai::js_error_text;
use crate::providers::AnalyzeRequest;
use crate::runtime::{config, now_ms, var};
use crate::store::events::EventStore;
use crate::store::fingerprints::FingerprintRecords;
use crate::store::{StateCell, StateKey};

/// The state cell naming the container run (`boot` of its `/health`) this
/// actor last gave every fingerprint record to.
const RESTORED_BOOT: StateKey<String> = StateKey::named("restored_boot");
/// The circuit breaker.
const BREAKER: StateKey<Breaker> = StateKey::named("breaker");

/// The port the analyzer image listens on (see containers/analyzer/Dockerfile).
pub const CONTAINER_PORT: u16 = 8080;
/// The runtime stops the container after the actor has been idle this long
/// (`setInactivityTimeout`), so an idle deployment runs no container.
pub const CONTAINER_IDLE_STOP_MS: u32 = 5 * 60 * 1000;
/// The service binding that stands in for `ctx.container` under
/// `wrangler dev --env emulated` (wrangler.toml, tests/emulator).
pub const EMULATED_CONTAINER_BINDING: &str = "ANALYZER_CONTAINER_EMULATOR";

#[wasm_bindgen]
extern "C" {
    /// `ctx.container` as the runtime exposes it, or the emulator's binding
    /// with the same members. Methods are structural so either object works;
    /// every result goes through `Promise.resolve`, because over a binding
    /// each member is asynchronous where the runtime's may be synchronous.
    /// worker 0.8.7's `Container` does not bind `setInactivityTimeout`.
    #[wasm_bindgen(extends = js_sys::Object)]
    #[derive(Debug, Clone)]
    pub type ContainerHandle;

    #[wasm_bindgen(method, structural, getter)]
    fn running(this: &ContainerHandle) -> JsValue;

    #[wasm_bindgen(method, structural, catch)]
    fn start(this: &ContainerHandle) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, structural, catch, js_name = getTcpPort)]
    fn get_tcp_port(this: &ContainerHandle, port: u16) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, structural, catch, js_name = setInactivityTimeout)]
    fn set_inactivity_timeout(this: &ContainerHandle, duration_ms: u32) -> Result<JsValue, JsValue>;

    /// What `getTcpPort` returns: a `Fetcher`, or an RPC stub of one. Called
    /// as `port.fetch(request)`, never through `Function.prototype.call`,
    /// which an RPC stub would take for a remote method named `call`.
    #[wasm_bindgen(extends = js_sys::Object)]
    #[derive(Debug, Clone)]
    type PortFetcher;

    #[wasm_bindgen(method, structural, catch)]
    fn fetch(this: &PortFetcher, request: &worker::web_sys::Request) -> Result<JsValue, JsValue>;
}

impl worker::EnvBinding for ContainerHandle {
    const TYPE_NAME: &'static str = "Container";

    /// Any object with `getTcpPort` and `start` (a service binding's class
    /// name is not the runtime's).
    fn get(val: JsValue) -> worker::Result<Self> {
        let has = |name: &str| Reflect::get(&val, &JsValue::from_str(name)).is_ok_and(|f| f.is_function());
        if val.is_object() && has("getTcpPort") && has("start") {
            Ok(val.unchecked_into())
        } else {
            Err(worker::Error::JsError("binding is not a container".into()))
        }
    }
}

/// Awaits a value that may be a promise (or an RPC promise) or a plain value.
async fn settled(v: Result<JsValue, JsValue>) -> Result<JsValue, String> {
    let v = v.map_err(|e| js_error_text(&e))?;
    JsFuture::from(Promise::resolve(&v)).await.map_err(|e| js_error_text(&e))
}

impl ContainerHandle {
    async fn is_running(&self) -> Result<bool, String> {
        Ok(settled(Ok(self.running())).await?.as_bool().unwrap_or(false))
    }

    async fn start_now(&self) -> Result<(), String> {
        settled(self.start()).await.map(|_| ())
    }

    /// `setInactivityTimeout(ms)`: the runtime stops the container once the
    /// actor has been idle that long.
    async fn stop_when_idle(&self, ms: u32) -> Result<(), String> {
        settled(self.set_inactivity_timeout(ms)).await.map(|_| ())
    }

    /// `getTcpPort(port).fetch(request)`; a rejection comes back as its text.
    async fn send(&self, port: u16, request: Request) -> Result<Response, String> {
        let fetcher: PortFetcher = settled(self.get_tcp_port(port)).await?.unchecked_into();
        let resp = settled(fetcher.fetch(request.inner())).await?;
        Ok(Response::from(resp.unchecked_into::<worker::web_sys::Response>()))
    }
}

/// A failed call, and whether it was only the container still starting
/// (kept out of the circuit breaker).
struct CallFailure {
    error: StageError,
    cold_start: bool,
}

impl CallFailure {
    fn cold(message: String) -> Self {
        CallFailure { error: StageError::transient(message), cold_start: true }
    }
}

/// Why giving a new container its fingerprint records stopped.
enum RestoreStop {
    /// The container's own text (not listening yet, not running): the
    /// startup wait decides.
    Refused(String),
    Failed(CallFailure),
}

/// Where a container this instance started stands with its fingerprint
/// records: no call reaches it until they are all there, or a call on a
/// half-restored index would miss the duplicates among the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restore {
    /// This instance has not sent to the container yet: it may have been
    /// started by an instance that was reset before restoring it, so the
    /// first call asks it whether it holds any fingerprint.
    Unknown,
    /// Nothing owed (it has its records).
    Done,
    /// Started on an empty disk: the next call to reach it restores first.
    Owed,
    /// A call is restoring it; the others wait as for a starting container.
    InFlight,
}

impl From<StageError> for CallFailure {
    fn from(error: StageError) -> Self {
        CallFailure { error, cold_start: false }
    }
}


#[durable_object]
pub struct AnalyzerContainer {
    state: State,
    env: Env,
    /// The state table exists (created once in this instance).
    state_ready: std::cell::Cell<bool>,
    /// The breaker as stored (or its default before the first change). This
    /// actor is its only writer, so the copy stays true while the instance
    /// lives, and a call that changes nothing (the healthy path) writes nothing.
    breaker_memory: std::cell::Cell<Option<Breaker>>,
    /// The fingerprint records a container this instance started is owed.
    restore: std::cell::Cell<Restore>,
    /// Startup waits that gave up in a row.
    cold_streak: std::cell::Cell<ColdStreak>,
    /// The fingerprints table exists (created once in this instance).
    fingerprints_ready: std::cell::Cell<bool>,
}

impl AnalyzerContainer {
    fn fingerprints(&self) -> FingerprintRecords<'_> {
        FingerprintRecords::new(self.state.storage().sql(), &self.fingerprints_ready)
    }

    /// Gives a container started on an empty disk the fingerprint records
    /// this actor keeps, page by page (a page given twice changes nothing).
    /// With `unless_held`, only to a container that is not the one this
    /// actor last restored in full (its `/health` names its run, `boot`;
    /// an image from before that field: one that holds no fingerprint).
    async fn give_records(&self, container: &ContainerHandle, unless_held: bool) -> Result<(), RestoreStop> {
        // Transient whatever the container answered: a refusal of the
        // records says nothing about the document a call carries.
        let failed = |e: String| RestoreStop::Failed(StageError::transient(format!("container restore: {e}")).into());
        let http = ContainerRequest::Health.request("http://container").map_err(|e| failed(e.to_string()))?;
        let resp = container.send(CONTAINER_PORT, http).await.map_err(RestoreStop::Refused)?;
        let health = analyzer_reply(resp).await.map_err(|e| failed(e.message))?;
        let boot = health["boot"].as_str().map(str::to_string);
        if unless_held {
            let restored = match &boot {
                Some(b) => self.cells().load(RESTORED_BOOT).ok().flatten().as_ref() == Some(b),
                None => health["fingerprints"].as_u64().unwrap_or(0) > 0,
            };
            if restored {
                return Ok(());
            }
        }
        let mut after = String::new();
        let mut pages = 0;
        while let Some((lines, last)) = self.fingerprints().page_after(&after, now_ms()).map_err(|e| failed(e.to_string()))? {
            let http = ContainerRequest::Restore(lines).request("http://container").map_err(|e| failed(e.to_string()))?;
            let resp = container.send(CONTAINER_PORT, http).await.map_err(RestoreStop::Refused)?;
            if matches!(resp.status_code(), 404 | 405) {
                // An image from before the restore route (a rollout in
                // progress): it keeps its own disk's records only.
                worker::console_warn!("analyzer container: no /documents/restore ({}); records not restored", resp.status_code());
                return Ok(());
            }
            analyzer_reply(resp).await.map_err(|e| failed(e.message))?;
            after = last;
            pages += 1;
        }
        if pages > 0 {
            worker::console_log!("analyzer container: {pages} page(s) of fingerprint records restored");
        }
        if let Some(b) = boot {
            // A new instance of this actor then knows this container is whole.
            let kept = crate::store::init_state_once(&self.state.storage().sql(), &self.state_ready).and_then(|_| self.cells().save(RESTORED_BOOT, &b));
            if let Err(e) = kept {
                worker::console_warn!("analyzer container: restored boot not kept: {e}");
            }
        }
        Ok(())
    }

    fn cells(&self) -> StateCell {
        StateCell::new(self.state.storage().sql())
    }

    fn breaker(&self) -> Breaker {
        if let Some(b) = self.breaker_memory.get() {
            return b;
        }
        let threshold = var(&self.env, "ANALYZER_BREAKER_THRESHOLD").and_then(|v| v.parse().ok()).unwrap_or(5);
        let cooldown = var(&self.env, "ANALYZER_BREAKER_COOLDOWN_MS").and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let stored = if crate::store::has_state(&self.state.storage().sql()) { self.cells().load(BREAKER) } else { Ok(None) };
        match stored {
            Ok(b) => {
                let b = b.unwrap_or_else(|| Breaker::new(threshold, cooldown));
                self.breaker_memory.set(Some(b));
                b
            }
            // Not remembered: the next call reads again.
            Err(_) => Breaker::new(threshold, cooldown),
        }
    }

    /// Stores `b` when it differs from what is stored.
    fn save(&self, b: &Breaker) -> ApiResult<()> {
        if self.breaker_memory.get() == Some(*b) {
            return Ok(());
        }
        self.breaker_memory.set(None);
        crate::store::init_state_once(&self.state.storage().sql(), &self.state_ready)?;
        self.cells().save(BREAKER, b)?;
        self.breaker_memory.set(Some(*b));
        Ok(())
    }

    fn runs_on(&self) -> AnalyzerBackend {
        match (self.state.container().is_some(), self.container().is_some()) {
            (true, _) => AnalyzerBackend::Container,
            (false, true) => AnalyzerBackend::EmulatedContainer,
            _ => AnalyzerBackend::Url,
        }
    }

    /// The container, if this actor runs one: the runtime's `ctx.container`
    /// in production, the emulator's binding in `[env.emulated]`.
    fn container(&self) -> Option<ContainerHandle> {
        match self.state.container() {
            Some(c) => Some(JsValue::from(c).unchecked_into()),
            None => self.env.get_binding::<ContainerHandle>(EMULATED_CONTAINER_BINDING).ok(),
        }
    }

    async fn call(&self, req: &ContainerRequest) -> Result<Value, CallFailure> {
        match self.container() {
            Some(container) => self.call_container(&container, req).await,
            None => {
                let base = config(&self.env)
                    .analyzer_url
                    .ok_or_else(|| StageError::terminal("analyzer disabled: no container and no ANALYZER_URL"))?;
                let http = req.request(&base).map_err(|e| StageError::transient(e.to_string()))?;
                Ok(analyze_over_http(http).await?)
            }
        }
    }

    /// Sends to the container, starting it and waiting for its port as
    /// [`StartupWait`] decides. Refusals while it starts are not failures of
    /// the analyzer: a give-up is transient and stays out of the breaker.
    async fn call_container(&self, container: &ContainerHandle, req: &ContainerRequest) -> Result<Value, CallFailure> {
        let running = container.is_running().await.map_err(|e| StageError::transient(format!("container: {e}")))?;
        let (mut wait, mut step) = StartupWait::with_defaults(now_ms(), running);
        loop {
            step = match step {
                Step::Start => {
                    match container.start_now().await {
                        // A new container, on an empty disk.
                        Ok(()) => self.restore.set(Restore::Owed),
                        // Another call may have started it meanwhile (and
                        // owes it its records). A start refused for now (no
                        // instance to be had yet, too many per second) is
                        // asked again as the wait says; any other is a failure.
                        Err(e) if !container.is_running().await.unwrap_or(false) => {
                            wait.started();
                            step = after_refusal(&mut wait, "container start", &e.to_string())?;
                            continue;
                        }
                        Err(_) => {}
                    }
                    if let Err(e) = container.stop_when_idle(CONTAINER_IDLE_STOP_MS).await {
                        worker::console_warn!("analyzer container: setInactivityTimeout failed: {e}");
                    }
                    wait.started()
                }
                Step::Wait(ms) => {
                    Delay::from(Duration::from_millis(ms.max(0) as u64)).await;
                    Step::Send
                }
                Step::Restart(ms) => {
                    Delay::from(Duration::from_millis(ms.max(0) as u64)).await;
                    Step::Start
                }
                Step::GiveUp { waited_ms } => {
                    return Err(CallFailure::cold(format!(
                        "container not listening on port {CONTAINER_PORT} after {waited_ms} ms ({} refusals)",
                        wait.refusals()
                    )));
                }
                Step::Send if self.restore.get() == Restore::InFlight => wait.refused(now_ms(), Refusal::NotListening),
                Step::Send if matches!(self.restore.get(), Restore::Owed | Restore::Unknown) => {
                    let unless_held = self.restore.replace(Restore::InFlight) == Restore::Unknown;
                    let restored = self.give_records(container, unless_held).await;
                    self.restore.set(match (&restored, unless_held) {
                        (Ok(()), _) => Restore::Done,
                        (Err(_), true) => Restore::Unknown,
                        (Err(_), false) => Restore::Owed,
                    });
                    match restored {
                        Ok(()) => Step::Send,
                        Err(RestoreStop::Refused(text)) => after_refusal(&mut wait, "container restore", &text)?,
                        Err(RestoreStop::Failed(f)) => return Err(f),
                    }
                }
                Step::Send => {
                    let http = req.request("http://container").map_err(|e| StageError::transient(e.to_string()))?;
                    match container.send(CONTAINER_PORT, http).await {
                        Ok(resp) => return Ok(analyzer_reply(resp).await?),
                        Err(text) => after_refusal(&mut wait, "container", &text)?,
                    }
                }
            };
        }
    }

    /// One call through the circuit breaker.
    async fn guarded(&self, req: ContainerRequest) -> ApiResult<Value> {
        if !self.configured() {
            return Err(ApiError::AnalyzerDisabled);
        }
        let now = now_ms();
        let mut breaker = self.breaker();
        if let Some(refusal) = circuit_refusal(&mut breaker, now) {
            return Err(refusal);
        }
        self.save(&breaker)?;
        let result = self.call(&req).await;
        let mut breaker = self.breaker();
        let mut streak = self.cold_streak.get();
        match &result {
            Err(f) if f.cold_start => {
                // A container still starting says nothing about the
                // analyzer; one that never comes up does.
                if streak.gave_up(now_ms()) {
                    breaker.on_failure(now_ms());
                }
            }
            Ok(_) => {
                streak.reached();
                breaker.on_success();
            }
            // A document the analyzer rejects says nothing about its health.
            Err(f) if f.error.class == ErrorClass::Terminal => {
                streak.reached();
                breaker.on_success();
            }
            Err(_) => {
                streak.reached();
                breaker.on_failure(now_ms());
            }
        }
        self.cold_streak.set(streak);
        self.save(&breaker)?;
        // A refused document is the caller's input; anything else as any
        // provider's failure.
        result.map_err(|f| f.error).map_err(|e| match e.class {
            ErrorClass::Terminal => ApiError::invalid("text", e.message),
            _ => ApiError::from_provider(e),
        })
    }

    fn configured(&self) -> bool {
        self.container().is_some() || config(&self.env).analyzer_url.is_some()
    }

    fn describe(&self) -> Value {
        json!({ "backend": self.runs_on().as_str(), "breaker": self.breaker(), "analyzer_url": config(&self.env).analyzer_url })
    }
}

impl AnalyzerOps for AnalyzerContainer {
    async fn backend(&self, _q: WhichBackend) -> ApiResult<AnalyzerBackend> {
        Ok(self.runs_on())
    }

    /// The text of an uploaded PDF, read from the bucket by its key. No
    /// analyzer is a refusal; an open circuit is only a wait.
    async fn extract_pdf(&self, q: ExtractPdf) -> ApiResult<ExtractedText> {
        if !self.configured() {
            return Err(ApiError::BadRequest("PDF uploads need the analyzer: no container and no ANALYZER_URL".into()));
        }
        // Refused now rather than after downloading the file: the breaker is
        // asked again (for real) when the call goes through `guarded`.
        if let Some(refusal) = circuit_refusal(&mut self.breaker(), now_ms()) {
            return Err(refusal);
        }
        let pdf = R2Uploads::new(&self.env)
            .get(&q.key)
            .await?
            .ok_or_else(|| ApiError::BadRequest("the uploaded PDF is missing from the bucket".into()))?;
        // Twice a body's limit: text past it fails validation anyway (NULs
        // and stray controls aside), so more is never worth carrying here.
        let max_text_bytes = config(&self.env).limits.body_max_bytes.saturating_mul(2);
        let pages = self.guarded(ContainerRequest::ExtractPdf { pdf, max_text_bytes }).await?;
        serde_json::from_value(pages).map_err(|e| ApiError::Internal(format!("analyzer reply: {e}")))
    }

    async fn analyze(&self, req: AnalyzeRequest) -> ApiResult<Value> {
        let mut answer = self.guarded(ContainerRequest::Analyze(req)).await?;
        // The fingerprint's log line, kept where a container's sleep does
        // not wipe it (a service at ANALYZER_URL keeps its own disk).
        if let (Some(Value::String(line)), Some(id)) = (answer.as_object_mut().and_then(|o| o.remove("record")), answer["id"].as_str()) {
            if self.container().is_some() {
                let version = answer["version"].as_u64().and_then(|v| u32::try_from(v).ok());
                if let Err(e) = self.fingerprints().keep(id, version, &line, now_ms()) {
                    worker::console_error!("analyzer: fingerprint record of {id} not kept: {e}");
                }
            }
        }
        Ok(answer)
    }

    /// A deleted item's fingerprint. No analyzer stored none; a stopped
    /// container comes back with a fresh disk (Containers' disk is
    /// ephemeral) and this actor's records, the item's tombstone among
    /// them, so it is not started just to forget.
    async fn forget(&self, q: ForgetDocument) -> ApiResult<Done> {
        if !self.configured() {
            return Ok(Done {});
        }
        if let Some(container) = self.container() {
            // Before the container is asked: a stopped one is not started to
            // forget, and its next start is told by the restore.
            self.fingerprints().forget(&q.id, now_ms())?;
            if !container.is_running().await.unwrap_or(true) {
                return Ok(Done {});
            }
        }
        self.guarded(ContainerRequest::Forget(q.id)).await.map(|_| Done {})
    }
}

impl Inspectable for AnalyzerContainer {
    async fn inspect(&self, _q: Inspect) -> ApiResult<Value> {
        let log = EventStore::new(self.state.storage().sql(), config(&self.env).retention, Default::default());
        super::inspection(&self.state, "analyzer", "analyzer", self.describe(), &log).await
    }

    async fn fire_alarm(&self, q: FireAlarm) -> ApiResult<Value> {
        self.inspect(Inspect { content_id: q.content_id }).await
    }
}

/// The startup wait's next step after the container's own text for a
/// request it did not take (`what` was sent), or the failure that text is
/// when it is no refusal.
fn after_refusal(wait: &mut StartupWait, what: &str, text: &str) -> Result<Step, CallFailure> {
    match refusal(text) {
        Some(why) => Ok(wait.refused(now_ms(), why)),
        None => Err(StageError::transient(format!("{what}: {text}")).into()),
    }
}

/// `CircuitOpen` when `breaker` lets no call through at `now` (open, or
/// half-open with a trial in flight: ask again after a cool-down).
fn circuit_refusal(breaker: &mut Breaker, now: i64) -> Option<ApiError> {
    if breaker.allow(now) {
        return None;
    }
    let wait = breaker.retry_after_ms(now).unwrap_or(breaker.cooldown_ms).max(0);
    Some(ApiError::CircuitOpen { retry_after_ms: wait as u64 })
}

impl DurableObject for AnalyzerContainer {
    fn new(state: State, env: Env) -> Self {
        AnalyzerContainer {
            state,
            env,
            state_ready: std::cell::Cell::new(false),
            breaker_memory: std::cell::Cell::new(None),
            fingerprints_ready: std::cell::Cell::new(false),
            restore: std::cell::Cell::new(Restore::Unknown),
            cold_streak: std::cell::Cell::new(ColdStreak::default()),
        }
    }

    crate::unused_handlers!(fetch);

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}

crate::rpc_entry!(AnalyzerContainer, AnalyzerCall);
