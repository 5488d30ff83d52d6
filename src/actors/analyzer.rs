//! `AnalyzerContainer`: owns the analyzer and the circuit breaker in front of
//! it. In production the class runs a Cloudflare Container; with containers
//! disabled (`wrangler dev`) `state.container()` is `None` and it forwards to
//! `ANALYZER_URL`, the same binary started natively. The breaker lives in this
//! actor's storage, so it holds across isolates.

use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::rpc;
use crate::domain::circuit::Breaker;
use crate::domain::pipeline::StageError;
use crate::error::{ApiError, ApiResult};
use crate::protocol::ErrorClass;
use crate::providers::analyzer_http::{analyze_over_http, analyze_request};
use crate::providers::AnalyzeRequest;
use crate::runtime::{config, now_ms, var};
use crate::store::events::EventStore;
use crate::store::StateCell;

/// The port the analyzer image listens on (see containers/analyzer/Dockerfile).
pub const CONTAINER_PORT: u16 = 8080;

#[durable_object]
pub struct AnalyzerContainer {
    state: State,
    env: Env,
}

impl AnalyzerContainer {
    fn cells(&self) -> StateCell {
        StateCell::new(self.state.storage().sql())
    }

    fn breaker(&self) -> Breaker {
        let threshold = var(&self.env, "ANALYZER_BREAKER_THRESHOLD").and_then(|v| v.parse().ok()).unwrap_or(5);
        let cooldown = var(&self.env, "ANALYZER_BREAKER_COOLDOWN_MS").and_then(|v| v.parse().ok()).unwrap_or(10_000);
        self.cells().load("breaker").ok().flatten().unwrap_or_else(|| Breaker::new(threshold, cooldown))
    }

    fn save(&self, b: &Breaker) -> ApiResult<()> {
        crate::store::init_state(&self.state.storage().sql())?;
        self.cells().save("breaker", b)
    }

    fn backend(&self) -> &'static str {
        if self.state.container().is_some() { "container" } else { "url" }
    }

    async fn call(&self, req: &AnalyzeRequest) -> Result<Value, StageError> {
        match self.state.container() {
            Some(container) => {
                if !container.running() {
                    container.start(None).map_err(|e| StageError::transient(format!("container start: {e}")))?;
                }
                let fetcher = container
                    .get_tcp_port(CONTAINER_PORT)
                    .map_err(|e| StageError::transient(format!("container port: {e}")))?;
                let http = analyze_request("http://container", req).map_err(|e| StageError::transient(e.to_string()))?;
                let resp = fetcher
                    .fetch_request(http)
                    .await
                    .map_err(|e| StageError::transient(format!("container not ready: {e}")))?;
                let status = resp.status_code();
                let text = crate::actors::rpc::body_text(resp).await.unwrap_or_default();
                if (200..300).contains(&status) {
                    serde_json::from_str(&text).map_err(|e| StageError::transient(e.to_string()))
                } else if (400..500).contains(&status) && status != 429 {
                    Err(StageError::terminal(format!("analyzer refused ({status}): {text}")))
                } else {
                    Err(StageError::transient(format!("analyzer answered {status}")))
                }
            }
            None => {
                let base = config(&self.env)
                    .analyzer_url
                    .ok_or_else(|| StageError::terminal("analyzer disabled: no container and no ANALYZER_URL"))?;
                let http = analyze_request(&base, req).map_err(|e| StageError::transient(e.to_string()))?;
                analyze_over_http(http).await
            }
        }
    }

    async fn analyze(&self, req: AnalyzeRequest) -> ApiResult<Value> {
        if !self.configured() {
            return Err(ApiError::Conflict("analyzer disabled: no container and no ANALYZER_URL".into()));
        }
        let now = now_ms();
        let mut breaker = self.breaker();
        if !breaker.allow(now) {
            let wait = breaker.retry_after_ms(now).unwrap_or(0);
            // Conflict, not Unavailable: retrying cannot help while the circuit
            // is open, so the optional stage skips at once instead of backing off.
            return Err(ApiError::Conflict(format!("analyzer circuit is open for another {wait} ms")));
        }
        self.save(&breaker)?;
        let result = self.call(&req).await;
        let mut breaker = self.breaker();
        match &result {
            Ok(_) => breaker.on_success(),
            // A document the analyzer rejects says nothing about its health.
            Err(e) if e.class == ErrorClass::Terminal => breaker.on_success(),
            Err(_) => breaker.on_failure(now_ms()),
        }
        self.save(&breaker)?;
        result.map_err(|e| match e.class {
            ErrorClass::Terminal => ApiError::invalid("text", e.message),
            _ => ApiError::Unavailable(e.message),
        })
    }

    fn configured(&self) -> bool {
        self.state.container().is_some() || config(&self.env).analyzer_url.is_some()
    }

    fn status(&self) -> Value {
        json!({ "backend": self.backend(), "breaker": self.breaker(), "analyzer_url": config(&self.env).analyzer_url })
    }

    async fn dispatch(&self, mut req: Request) -> ApiResult<Value> {
        let (op, body): (String, Value) = rpc::incoming(&mut req).await?;
        match op.as_str() {
            "analyze" => self.analyze(serde_json::from_value(body)?).await,
            "status" => Ok(self.status()),
            "inspect" | "fire_alarm" => {
                let log = EventStore::new(self.state.storage().sql(), config(&self.env).retention);
                super::inspection(&self.state, "analyzer", "analyzer", self.status(), None, &log)
            }
            other => Err(ApiError::not_found(format!("analyzer op {other}"))),
        }
    }
}

impl DurableObject for AnalyzerContainer {
    fn new(state: State, env: Env) -> Self {
        AnalyzerContainer { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        rpc::reply(self.dispatch(req).await)
    }

    crate::unused_handlers!(alarm);
    crate::unused_handlers!(sockets);
}
