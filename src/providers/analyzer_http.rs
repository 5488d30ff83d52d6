//! The analyzer: an HTTP service (`containers/analyzer`). The pipeline reaches
//! it through the `AnalyzerContainer` actor, which owns the circuit breaker and,
//! in production, the container; in dev it forwards to `ANALYZER_URL`.

use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use super::{AnalyzeRequest, DocumentAnalyzer};
use crate::actors::ops::{ExtractPdf, ForgetDocument};
use crate::actors::rpc;
use crate::domain::pipeline::StageError;
use crate::error::ApiError;

/// The one analyzer actor every run talks to; its circuit state is global.
pub const ANALYZER_ACTOR: &str = "analyzer";

pub struct AnalyzerActorClient {
    env: Env,
}

impl AnalyzerActorClient {
    pub fn new(env: Env) -> Self {
        AnalyzerActorClient { env }
    }
}

/// What the analyzer actor forwards to the analyzer service.
pub enum ContainerRequest {
    /// `POST /analyze`, JSON.
    Analyze(AnalyzeRequest),
    /// `POST /extract/pdf?max_text_bytes=N`, the PDF's bytes as the body: a
    /// PDF whose text passes `max_text_bytes` is refused (422), so a small
    /// file that inflates to megabytes of text is never handed back whole.
    ExtractPdf { pdf: Vec<u8>, max_text_bytes: usize },
    /// `DELETE /documents/{id}`: forget a deleted item's fingerprint.
    Forget(String),
    /// `POST /documents/restore`: fingerprint records, one per line, for a
    /// container that started on an empty disk.
    Restore(String),
    /// `GET /health`: how many fingerprints the service holds.
    Health,
}

impl ContainerRequest {
    pub fn request(&self, base: &str) -> Result<Request, ApiError> {
        match self {
            ContainerRequest::Analyze(req) => analyze_request(base, req),
            ContainerRequest::ExtractPdf { pdf, max_text_bytes } => {
                let headers = Headers::new();
                headers.set("content-type", "application/pdf")?;
                let mut init = RequestInit::new();
                let body = js_sys::Uint8Array::from(pdf.as_slice());
                init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
                Ok(Request::new_with_init(&format!("{}/extract/pdf?max_text_bytes={max_text_bytes}", base.trim_end_matches('/')), &init)?)
            }
            ContainerRequest::Forget(id) => {
                let mut init = RequestInit::new();
                init.with_method(Method::Delete);
                Ok(Request::new_with_init(&format!("{}/documents/{id}", base.trim_end_matches('/')), &init)?)
            }
            ContainerRequest::Health => Ok(Request::new(&format!("{}/health", base.trim_end_matches('/')), Method::Get)?),
            ContainerRequest::Restore(lines) => {
                let headers = Headers::new();
                headers.set("content-type", "application/x-ndjson")?;
                let mut init = RequestInit::new();
                init.with_method(Method::Post).with_headers(headers).with_body(Some(lines.as_str().into()));
                Ok(Request::new_with_init(&format!("{}/documents/restore", base.trim_end_matches('/')), &init)?)
            }
        }
    }
}

impl DocumentAnalyzer for AnalyzerActorClient {
    /// Unlike `analyze` (an optional stage), an analyzer that is down or
    /// behind an open circuit is worth waiting for here: only a refused
    /// document or a missing analyzer ends the run.
    async fn extract_pdf(&self, key: &str) -> Result<String, StageError> {
        let r = rpc::send(&self.env, ANALYZER_ACTOR, &ExtractPdf { key: key.to_string() }).await;
        // An unreadable PDF or no analyzer is terminal; an open circuit waits.
        r.map(|x| x.text).map_err(StageError::from)
    }

    async fn analyze(&self, req: &AnalyzeRequest) -> Result<serde_json::Value, StageError> {
        // A refused document ends the (optional) stage now; an open circuit
        // waits for its cool-down, a rate limit for its Retry-After.
        rpc::send(&self.env, ANALYZER_ACTOR, req).await.map_err(StageError::from)
    }
}

impl AnalyzerActorClient {
    /// Forgets a deleted item's fingerprint, so no later analysis names it.
    pub async fn forget(&self, content_id: &str) -> Result<(), ApiError> {
        rpc::send(&self.env, ANALYZER_ACTOR, &ForgetDocument { id: content_id.to_string() }).await.map(|_| ())
    }
}

/// Builds the analyzer's `POST /analyze` request for a base URL.
pub fn analyze_request(base: &str, req: &AnalyzeRequest) -> Result<Request, ApiError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let body = serde_json::to_string(req).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    Ok(Request::new_with_init(&format!("{}/analyze", base.trim_end_matches('/')), &init)?)
}

/// Calls the analyzer over plain HTTP and classifies its failures.
pub async fn analyze_over_http(req: Request) -> Result<serde_json::Value, StageError> {
    let resp = Fetch::Request(req).send().await.map_err(|e| StageError::transient(format!("analyzer unreachable: {e}")))?;
    analyzer_reply(resp).await
}

/// The largest reply taken from the analyzer: an analysis is a few KB, a
/// PDF's text at most its cap (`ExtractPdf`) JSON-escaped. A larger one is
/// not read into the actor's memory.
const REPLY_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The analyzer's answer: its JSON (`null` for a `204`), or its refusal classified.
pub async fn analyzer_reply(resp: worker::Response) -> Result<serde_json::Value, StageError> {
    let status = resp.status_code();
    let length = resp.headers().get("content-length").ok().flatten().and_then(|l| l.parse::<u64>().ok());
    if let Some(length) = length.filter(|l| *l > REPLY_MAX_BYTES) {
        return Err(StageError::terminal(format!("the analyzer's reply is {length} bytes, more than {REPLY_MAX_BYTES}")));
    }
    let text = crate::actors::rpc::body_text(resp).await.unwrap_or_default();
    match status {
        204 => Ok(serde_json::Value::Null),
        200..=299 => serde_json::from_str(&text).map_err(|e| StageError::transient(format!("analyzer answer: {e}"))),
        _ => Err(super::provider_errors::analyzer_refusal(status, &text)),
    }
}
