//! The Workers AI backend (`AI_BACKEND=workers-ai`): embeddings from
//! `@cf/baai/bge-base-en-v1.5` (768-d) and summary/extraction from a text
//! model in JSON mode, validated field by field with the local extractor as
//! the fallback for any invalid field or failed call. Payloads and checks
//! live in [`super::workers_ai_embeddings`] and [`super::workers_ai_text`];
//! this file only crosses the JS boundary.
//!
//! `worker::Ai::run` serializes its input with serde-wasm-bindgen's default
//! serializer, which turns maps (the JSON Schema of `response_format`) into
//! JS `Map`s that Workers AI ignores. So the binding's `run` is called here
//! directly, with the input built by `JSON.parse` (plain objects only), on a
//! duck-typed [`AiBinding`] so the emulator's service binding works too.

use js_sys::{Promise, Reflect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use super::local_ai::{extract_local, SUMMARY_SENTENCES};
use super::provider_errors::classify_error;
use super::workers_ai_embeddings::{self as embeddings, EmbeddingResponse};
use super::workers_ai_text as text_model;
use super::{Embedder, Extraction, OnRateLimit, TextModel};
use crate::domain::pipeline::StageError;

#[wasm_bindgen]
extern "C" {
    /// The Workers AI binding, duck-typed: anything with `run(model, inputs,
    /// options)`. `env.ai()` checks the JS class name, which rejects a
    /// service binding with the same API (the emulator's, `--env emulated`).
    #[wasm_bindgen(extends = js_sys::Object)]
    #[derive(Debug, Clone)]
    pub type AiBinding;

    #[wasm_bindgen(method, structural, catch)]
    fn run(this: &AiBinding, model: &str, inputs: &JsValue, options: &JsValue) -> Result<JsValue, JsValue>;
}

impl worker::EnvBinding for AiBinding {
    const TYPE_NAME: &'static str = "Ai";

    fn get(val: JsValue) -> worker::Result<Self> {
        let has_run = Reflect::get(&val, &JsValue::from_str("run")).is_ok_and(|f| f.is_function());
        if val.is_object() && has_run {
            Ok(val.unchecked_into())
        } else {
            Err(worker::Error::JsError("binding is not Workers AI".into()))
        }
    }
}

pub struct WorkersAi {
    ai: AiBinding,
}

/// The text of a JS exception or rejection: `Name: message` for `Error`s,
/// the string itself, or its JSON.
pub(crate) fn js_error_text(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        let name = String::from(err.name());
        let message = String::from(err.message());
        return if name.is_empty() { message } else { format!("{name}: {message}") };
    }
    if let Some(s) = e.as_string() {
        return s;
    }
    js_sys::JSON::stringify(e).ok().map(String::from).unwrap_or_else(|| format!("{e:?}"))
}

/// Moves a request into JS through JSON text (`JSON.parse`): objects arrive
/// as plain objects (never `Map`), and the serde_json code is already in the
/// binary, so this adds less to the Worker than a second serializer would.
pub(crate) fn to_js<T: Serialize + ?Sized>(what: &str, v: &T) -> Result<JsValue, StageError> {
    let text =
        serde_json::to_string(v).map_err(|e| StageError::terminal(format!("{what}: cannot encode request: {e}")))?;
    js_sys::JSON::parse(&text)
        .map_err(|e| StageError::terminal(format!("{what}: cannot encode request: {}", js_error_text(&e))))
}

/// Reads a response back through `JSON.stringify` and serde_json.
pub(crate) fn from_js<T: DeserializeOwned>(what: &str, v: JsValue) -> Result<T, StageError> {
    let text = js_sys::JSON::stringify(&v)
        .map(String::from)
        .map_err(|e| StageError::transient(format!("{what}: unreadable response: {}", js_error_text(&e))))?;
    serde_json::from_str(&text).map_err(|e| StageError::transient(format!("{what}: unexpected response: {e}")))
}

/// Awaits a promise, classifying a rejection.
pub(crate) async fn settle(what: &str, p: Result<Promise, JsValue>) -> Result<JsValue, StageError> {
    let p = p.map_err(|e| classify_error(what, &js_error_text(&e)))?;
    JsFuture::from(p).await.map_err(|e| classify_error(what, &js_error_text(&e)))
}

/// The third argument of every `AI.run`: `{rejectIfBusy: true}`. Without it
/// a busy model queues the call (developers.cloudflare.com/workers-ai/
/// features/reject-if-busy), which a stage or a search would wait out to its
/// timeout and then send again; with it the call fails at once with 3040, a
/// rate limit the retry engine backs off from.
pub(crate) fn run_options() -> JsValue {
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &JsValue::from_str("rejectIfBusy"), &JsValue::TRUE);
    options.into()
}

impl WorkersAi {
    pub fn new(ai: AiBinding) -> Self {
        WorkersAi { ai }
    }

    pub fn from_env(env: &Env, binding: &str) -> Option<Self> {
        env.get_binding::<AiBinding>(binding).ok().map(Self::new)
    }

    /// `env.AI.run(model, inputs, {rejectIfBusy: true})`.
    async fn run<T: Serialize>(&self, model: &str, input: &T) -> Result<JsValue, StageError> {
        let what = "workers ai";
        let input = to_js(what, input)?;
        let promise = self.ai.run(model, &input, &run_options()).map(|v| Promise::resolve(&v));
        settle(what, promise).await
    }
}

impl WorkersAi {
    /// One text-model call, abandoned after [`text_model::TEXT_MODEL_TIMEOUT_MS`].
    async fn generate(&self, input: &text_model::TextRequest) -> Result<serde_json::Value, StageError> {
        match crate::runtime::within(text_model::TEXT_MODEL_TIMEOUT_MS, self.run(text_model::TEXT_MODEL, input)).await {
            Some(out) => from_js("workers ai", out?),
            None => Err(StageError::transient(format!(
                "workers ai: {} did not answer within {} ms",
                text_model::TEXT_MODEL,
                text_model::TEXT_MODEL_TIMEOUT_MS
            ))),
        }
    }
}

fn warn_model_failure(what: &str, reason: &str) {
    worker::console_warn!("workers ai: {what} failed ({reason}); used the local extractor");
}

fn warn_fallback(what: &str, fields: &[&str]) {
    if !fields.is_empty() {
        worker::console_warn!("workers ai: invalid {what} output for {fields:?}; used the local extractor");
    }
}

impl Embedder for WorkersAi {
    fn backend(&self) -> &'static str {
        "workers-ai"
    }

    fn dim(&self) -> usize {
        embeddings::EMBED_DIM
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StageError> {
        let mut out = Vec::with_capacity(texts.len());
        for req in embeddings::embedding_requests(texts)? {
            let n = req.text.len();
            let raw = self.run(embeddings::EMBED_MODEL, &req).await?;
            let resp: EmbeddingResponse = from_js("workers ai embeddings", raw)?;
            out.extend(embeddings::parse_embeddings(resp, n, embeddings::EMBED_DIM)?);
        }
        Ok(out)
    }
}

impl TextModel for WorkersAi {
    async fn summarize(&self, text: &str, on_limit: OnRateLimit) -> Result<String, StageError> {
        let local = || crate::nlp::summarize::summarize(text, SUMMARY_SENTENCES);
        if text.trim().is_empty() {
            return Ok(local());
        }
        match self.generate(&text_model::summary_request(text)).await {
            Ok(out) => {
                let checked = text_model::summary_or_fallback(&out, local);
                warn_fallback("summary", &checked.fallbacks);
                Ok(checked.value)
            }
            Err(e) => {
                warn_model_failure("summary", &text_model::fallback_reason(e, on_limit)?);
                Ok(local())
            }
        }
    }

    async fn extract(&self, text: &str, on_limit: OnRateLimit) -> Result<Extraction, StageError> {
        if text.trim().is_empty() {
            return Ok(extract_local(text));
        }
        match self.generate(&text_model::extraction_request(text)).await {
            Ok(out) => {
                let checked = text_model::extraction_or_fallback(&out, || extract_local(text));
                warn_fallback("extraction", &checked.fallbacks);
                Ok(checked.value)
            }
            Err(e) => {
                warn_model_failure("extraction", &text_model::fallback_reason(e, on_limit)?);
                Ok(extract_local(text))
            }
        }
    }
}
