//! HTTP API: routes, request validation and the one place errors become JSON.
//!
//! Every response, including 404/405 and body-limit rejections, is
//! `application/json`, so the Worker in front of the container can parse
//! whatever comes back without sniffing.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::analysis::keyphrases::Keyphrase;
use crate::analysis::language::Language;
use crate::analysis::readability::Readability;
use crate::analysis::{self};
use crate::index::{Index, Match};

/// Longest accepted document id; ids are keys in the index and echoed in
/// every near-duplicate list, so unbounded ids would bloat both.
pub const MAX_ID_CHARS: usize = 200;

/// Longest accepted scope; the Worker sends its tenant id, and every stored
/// fingerprint keeps a copy of it.
pub const MAX_SCOPE_CHARS: usize = 128;

#[derive(Clone)]
pub struct AppState {
    index: Arc<Index>,
    started: Instant,
    /// Names this run of the process (see [`boot_id`]).
    boot: Arc<str>,
    max_body_bytes: usize,
}

/// A name for this run of the service, different at every start: a caller
/// that restored a container's fingerprints remembers it, and can tell that
/// container from a new one (on a new, empty or half-restored disk) that
/// happens to hold some fingerprints.
fn boot_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

pub fn router(index: Arc<Index>, max_body_bytes: usize) -> Router {
    let state = AppState {
        index,
        started: Instant::now(),
        boot: boot_id().into(),
        max_body_bytes,
    };
    Router::new()
        .route("/analyze", post(analyze))
        .route(
            "/extract/pdf",
            post(extract_pdf).layer(DefaultBodyLimit::max(crate::pdf::MAX_PDF_BYTES)),
        )
        .route(
            "/documents/restore",
            post(restore_documents).layer(DefaultBodyLimit::max(MAX_RESTORE_BYTES)),
        )
        .route("/documents/{id}", delete(delete_document))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("could not read request body: {0}")]
    UnreadableBody(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method {0} is not allowed for this path")]
    MethodNotAllowed(Method),
    #[error("failed to persist fingerprint: {0}")]
    Storage(#[from] io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Storage(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Storage(_) => "storage_error",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            eprintln!("analyzer: {status}: {self}");
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        json_response(status, &body)
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    match serde_json::to_vec(value) {
        Ok(body) => (status, content_type, body).into_response(),
        Err(e) => {
            eprintln!("analyzer: failed to encode response: {e}");
            let body =
                r#"{"error":{"code":"internal_error","message":"failed to encode response"}}"#;
            (StatusCode::INTERNAL_SERVER_ERROR, content_type, body).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AnalyzeRequest {
    pub id: String,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub title: Option<String>,
    pub text: String,
    /// Near duplicates are only looked for (and the fingerprint stored)
    /// within this scope, so tenants never see each other's ids.
    #[serde(default)]
    pub scope: String,
}

#[derive(Debug, Serialize)]
pub struct AnalyzeResponse {
    pub id: String,
    pub version: Option<u32>,
    pub language: Language,
    pub readability: Readability,
    pub reading_time_seconds: u32,
    pub keyphrases: Vec<Keyphrase>,
    pub fingerprint: String,
    pub near_duplicates: Vec<Match>,
    pub took_ms: f64,
    /// The fingerprint's log line when this analysis stored one: the
    /// Worker keeps it and gives it back through `/documents/restore`,
    /// since a container's disk is wiped when it sleeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

async fn analyze(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    require_json(req.headers())?;
    let limit = state.max_body_bytes;
    let body = read_body(req, &state, limit).await?;
    let doc = parse_request(&body)?;

    let index = Arc::clone(&state.index);
    let (doc, analysis, (near_duplicates, record)) = tokio::task::spawn_blocking(move || {
        let analysis = analysis::analyze(doc.title.as_deref(), &doc.text);
        let checked =
            index.check_and_record(&doc.id, &doc.scope, doc.version, &analysis.fingerprint)?;
        Ok::<_, io::Error>((doc, analysis, (checked.matches, checked.record)))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("analysis task failed: {e}")))??;

    let took_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    let response = AnalyzeResponse {
        id: doc.id,
        version: doc.version,
        fingerprint: analysis.fingerprint.simhash_hex(),
        language: analysis.language,
        readability: analysis.readability,
        reading_time_seconds: analysis.reading_time_seconds,
        keyphrases: analysis.keyphrases,
        near_duplicates,
        took_ms,
        record,
    };
    Ok(json_response(StatusCode::OK, &response))
}

/// `DELETE /documents/{id}`: forgets the document's fingerprint, durably,
/// so it is no longer flagged as the original of new copies. 204 whether or
/// not the id was stored, so the Worker can retry safely.
async fn delete_document(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    validate_id(&id)?;
    let index = Arc::clone(&state.index);
    tokio::task::spawn_blocking(move || index.remove(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("removal task failed: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

/// Largest body `/documents/restore` takes: the Worker sends its records in
/// pages well under this.
pub const MAX_RESTORE_BYTES: usize = 8 * 1024 * 1024;

/// `POST /documents/restore`: fingerprint log lines this service wrote
/// before (the `record` of `/analyze` answers), one per line, taken as a
/// replay of its own log would take them. The Worker sends them to a
/// container it has just started, whose disk began empty.
async fn restore_documents(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let body = read_body(req, &state, MAX_RESTORE_BYTES).await?;
    let index = Arc::clone(&state.index);
    let (done, documents) = tokio::task::spawn_blocking(move || index.restore(&body).map(|done| (done, index.len())))
        .await
        .map_err(|e| ApiError::Internal(format!("restore task failed: {e}")))??;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "applied": done.applied, "skipped": done.skipped, "documents": documents }),
    ))
}

/// The request body, refused with 413 past `limit`: at once when the declared
/// length says so, before reading a byte; else when the read passes the
/// route's body limit layer. Any other read failure is unreadable.
async fn read_body(req: Request, state: &AppState, limit: usize) -> Result<Bytes, ApiError> {
    if declared_length(req.headers()).is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::UnreadableBody(rejection.body_text())
        }
    })
}

/// `POST /extract/pdf`: the body is the PDF; the answer is `{"text"}`
/// (empty for a PDF without text). A body that is no readable PDF is 422.
async fn extract_pdf(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let mime = media_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .unwrap_or(&HeaderValue::from_static("")),
    );
    if mime != "application/pdf" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/pdf, got {mime:?}"
        )));
    }
    let max_text = max_text_bytes(req.uri().query())?;
    let body = read_body(req, &state, crate::pdf::MAX_PDF_BYTES).await?;
    let text = tokio::task::spawn_blocking(move || crate::pdf::extract_text(&body, max_text))
        .await
        .map_err(|e| ApiError::Internal(format!("PDF task failed: {e}")))?
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &json!({ "text": text })))
}

/// `?max_text_bytes=N`: the most text the caller takes (the Worker's body
/// limit, with room); at most [`crate::pdf::MAX_TEXT_BYTES`], which is also
/// the cap when none is named.
fn max_text_bytes(query: Option<&str>) -> Result<usize, ApiError> {
    let named = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("max_text_bytes="));
    match named {
        None => Ok(crate::pdf::MAX_TEXT_BYTES),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(crate::pdf::MAX_TEXT_BYTES))
            .map_err(|_| ApiError::InvalidRequest(format!("max_text_bytes must be a number of bytes, got {v:?}"))),
    }
}

/// Syntax errors are the client's encoding bug (400); well-formed JSON of
/// the wrong shape is a contract violation (422), as are semantic checks.
pub fn parse_request(body: &[u8]) -> Result<AnalyzeRequest, ApiError> {
    let doc: AnalyzeRequest = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    validate_id(&doc.id)?;
    if doc.text.trim().is_empty() {
        return Err(ApiError::InvalidRequest("`text` must not be empty".into()));
    }
    if doc.scope.chars().count() > MAX_SCOPE_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "`scope` must be at most {MAX_SCOPE_CHARS} characters"
        )));
    }
    Ok(doc)
}

/// The same id rule for analyzing and deleting: an id that could never be
/// stored is the caller's bug, not an unknown document.
fn validate_id(id: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() {
        return Err(ApiError::InvalidRequest("`id` must not be empty".into()));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "`id` must be at most {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

/// Accepts `application/json` and `application/*+json`, any parameters.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "missing Content-Type; expected application/json".into(),
        ));
    };
    let mime = media_type(value);
    let is_json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got {:?}",
            String::from_utf8_lossy(value.as_bytes())
        )))
    }
}

/// A Content-Type's essence, lowercase, without parameters.
fn media_type(value: &HeaderValue) -> String {
    value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn health(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "fingerprints": state.index.len(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "boot": &*state.boot,
        }),
    )
}

/// The server only starts listening after the index is replayed, so being
/// able to answer at all means ready.
async fn ready() -> Response {
    json_response(StatusCode::OK, &json!({ "ready": true }))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("{method} {}", uri.path()))
}

/// axum adds the `Allow` header to this response itself.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fingerprint::tests::{edited_copy, ARTICLE};
    use crate::index::tests_support::TempDir;
    use axum::body::Body;
    use serde_json::Value;
    use tower::ServiceExt;

    struct TestApp {
        router: Router,
        _dir: TempDir,
    }

    fn app(max_body_bytes: usize) -> TestApp {
        let dir = TempDir::new("http");
        let (index, _) = Index::open(&dir.0, false).expect("open index");
        TestApp {
            router: router(Arc::new(index), max_body_bytes),
            _dir: dir,
        }
    }

    async fn send_raw(
        app: &TestApp,
        req: axum::http::Request<Body>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let resp = app.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, bytes)
    }

    async fn send(app: &TestApp, req: axum::http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, bytes) = send_raw(app, req).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(
            headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        (status, headers, value)
    }

    fn post_json(body: impl Into<Body>) -> axum::http::Request<Body> {
        axum::http::Request::post("/analyze")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("request")
    }

    fn error_code(v: &Value) -> &str {
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {v}"))
    }

    /// The Worker keeps each analysis's `record` and gives the records to a
    /// container started on an empty disk: it flags copies again.
    #[tokio::test]
    async fn records_given_back_to_a_fresh_container_restore_its_duplicates() {
        let first = app(1 << 20);
        let doc = |id: &str, text: &str| json!({ "id": id, "version": 1, "text": text, "scope": "t" }).to_string();
        let (status, _, v) = send(&first, post_json(doc("orig", ARTICLE))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let record = v["record"].as_str().expect("a stored fingerprint's record").to_string();
        // Analyzed again at the same version: the record is the same.
        let (_, _, again) = send(&first, post_json(doc("orig", ARTICLE))).await;
        assert_eq!(again["record"].as_str(), Some(record.as_str()));

        let fresh = app(1 << 20);
        let restore = |body: String| {
            axum::http::Request::post("/documents/restore")
                .body(Body::from(body))
                .expect("request")
        };
        let (status, _, v) = send(&fresh, restore(format!("{record}\n"))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!((v["applied"].as_u64(), v["documents"].as_u64()), (Some(1), Some(1)));
        let (_, _, v) = send(&fresh, post_json(doc("copy", &edited_copy()))).await;
        assert_eq!(v["near_duplicates"][0]["id"], "orig", "{v}");
        // A stale analysis (an older version than the one held) stores nothing.
        let stale = json!({ "id": "copy", "version": 0, "text": ARTICLE, "scope": "t" }).to_string();
        let (_, _, v) = send(&fresh, post_json(stale)).await;
        assert!(v.get("record").is_none(), "{v}");
    }

    #[tokio::test]
    async fn extract_pdf_answers_text_and_refuses_other_bodies() {
        // The route's own cap, not the (smaller) JSON cap of /analyze.
        let app = app(16);
        let pdf = |ct: &str, body: Vec<u8>| {
            axum::http::Request::post("/extract/pdf")
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body))
                .expect("request")
        };
        let generated = crate::pdf::tests::generated(&["A sample sentence from a PDF."]);
        let (status, _, v) = send(&app, pdf("application/pdf", generated)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["text"], "A sample sentence from a PDF.");
        let (status, _, v) = send(&app, pdf("application/pdf", b"not a pdf".to_vec())).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        );
        let (status, _, v) = send(&app, pdf("text/plain", b"%PDF-".to_vec())).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        // A caller's cap on the text: past it, a refusal (terminal for the
        // Worker), not the text.
        let capped = |uri: &str| {
            axum::http::Request::post(uri)
                .header(header::CONTENT_TYPE, "application/pdf")
                .body(Body::from(crate::pdf::tests::generated(&["A sample sentence from a PDF."])))
                .expect("request")
        };
        let (status, _, v) = send(&app, capped("/extract/pdf?max_text_bytes=10")).await;
        assert_eq!((status, error_code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("10 bytes")), "{v}");
        let (status, _, v) = send(&app, capped("/extract/pdf?max_text_bytes=1000")).await;
        assert_eq!((status, v["text"].as_str()), (StatusCode::OK, Some("A sample sentence from a PDF.")), "{v}");
        let (status, _, v) = send(&app, capped("/extract/pdf?max_text_bytes=lots")).await;
        assert_eq!((status, error_code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{v}");
    }

    #[tokio::test]
    async fn analyze_returns_full_shape_and_flags_copies() {
        let app = app(1 << 20);
        let body =
            json!({ "id": "doc-1", "version": 3, "title": "Library renovation", "text": ARTICLE });
        let (status, _, v) = send(&app, post_json(body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["id"], "doc-1");
        assert_eq!(v["version"], 3);
        assert_eq!(v["language"]["code"], "en");
        assert!(v["language"]["confidence"]
            .as_f64()
            .is_some_and(|c| c > 0.5 && c <= 1.0));
        for key in [
            "flesch_reading_ease",
            "flesch_kincaid_grade",
            "sentences",
            "words",
            "syllables",
        ] {
            assert!(v["readability"][key].is_number(), "readability.{key}: {v}");
        }
        assert!(v["reading_time_seconds"].as_u64().is_some_and(|s| s >= 1));
        let phrases = v["keyphrases"].as_array().expect("keyphrases");
        assert!(!phrases.is_empty() && phrases.len() <= 10);
        assert!(phrases
            .iter()
            .all(|p| p["phrase"].is_string() && p["score"].is_number()));
        assert_eq!(v["fingerprint"].as_str().map(str::len), Some(16));
        assert_eq!(v["near_duplicates"], json!([]));
        assert!(v["took_ms"].is_number());

        let body = json!({ "id": "doc-2", "text": edited_copy() });
        let (status, _, v) = send(&app, post_json(body.to_string())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["version"], Value::Null);
        let dups = v["near_duplicates"].as_array().expect("array");
        assert_eq!(dups.len(), 1, "{v}");
        assert_eq!(dups[0]["id"], "doc-1");
        assert!(dups[0]["similarity"]
            .as_f64()
            .is_some_and(|s| (0.5..=1.0).contains(&s)));

        let req = axum::http::Request::get("/health")
            .body(Body::empty())
            .expect("request");
        let (status, _, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["fingerprints"], 2);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["uptime_seconds"].is_u64());
        let boot = v["boot"].as_str().expect("a boot id").to_string();
        // The same run of the service answers the same name; a new one another.
        let req = axum::http::Request::get("/health")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, req).await.2["boot"], boot.as_str());
        assert_ne!(boot_id(), boot);

        let req = axum::http::Request::get("/ready")
            .body(Body::empty())
            .expect("request");
        let (status, _, v) = send(&app, req).await;
        assert_eq!((status, v), (StatusCode::OK, json!({ "ready": true })));
    }

    #[tokio::test]
    async fn malformed_json_is_400() {
        let app = app(1 << 20);
        for body in ["{\"id\": \"x\", \"text\": ", "not json", ""] {
            let (status, _, v) = send(&app, post_json(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(error_code(&v), "malformed_json");
        }
    }

    #[tokio::test]
    async fn invalid_fields_are_422() {
        let app = app(1 << 20);
        let long_id = "x".repeat(MAX_ID_CHARS + 1);
        let cases = [
            json!({ "id": "a" }),
            json!({ "text": "hello" }),
            json!({ "id": "a", "text": "   " }),
            json!({ "id": "", "text": "hello" }),
            json!({ "id": long_id, "text": "hello" }),
            json!({ "id": "a", "text": 5 }),
            json!({ "id": "a", "version": -1, "text": "hello" }),
            json!({ "id": "a", "text": "hello", "scope": 7 }),
            json!([1, 2, 3]),
        ];
        for body in cases {
            let (status, _, v) = send(&app, post_json(body.to_string())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
            assert_eq!(error_code(&v), "invalid_request");
        }
        let long_scope =
            json!({ "id": "a", "text": "hello", "scope": "s".repeat(MAX_SCOPE_CHARS + 1) });
        let (status, _, v) = send(&app, post_json(long_scope.to_string())).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("`scope`")),
            "{v}"
        );
        // Exactly at the limits is fine.
        for body in [
            json!({ "id": "y".repeat(MAX_ID_CHARS), "text": "hello" }),
            json!({ "id": "z", "text": "hello", "scope": "s".repeat(MAX_SCOPE_CHARS) }),
        ] {
            assert_eq!(
                send(&app, post_json(body.to_string())).await.0,
                StatusCode::OK,
                "{body}"
            );
        }
    }

    fn delete_document(id: &str) -> axum::http::Request<Body> {
        axum::http::Request::delete(format!("/documents/{id}"))
            .body(Body::empty())
            .expect("request")
    }

    async fn near_duplicate_ids(app: &TestApp, body: Value) -> Vec<Value> {
        let (status, _, v) = send(app, post_json(body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["near_duplicates"]
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["id"].clone())
            .collect()
    }

    #[tokio::test]
    async fn analyze_only_flags_documents_of_the_same_scope() {
        let app = app(1 << 20);
        let doc = |id: &str, scope: Option<&str>| match scope {
            Some(scope) => json!({ "id": id, "text": ARTICLE, "scope": scope }),
            None => json!({ "id": id, "text": ARTICLE }),
        };
        assert!(near_duplicate_ids(&app, doc("a", Some("tenant-1")))
            .await
            .is_empty());
        assert!(near_duplicate_ids(&app, doc("b", Some("tenant-2")))
            .await
            .is_empty());
        assert_eq!(
            near_duplicate_ids(&app, doc("c", Some("tenant-1"))).await,
            [json!("a")]
        );
        // No scope is the empty scope, apart from both tenants.
        assert!(near_duplicate_ids(&app, doc("d", None)).await.is_empty());
        assert_eq!(
            near_duplicate_ids(&app, doc("e", Some(""))).await,
            [json!("d")]
        );
    }

    #[tokio::test]
    async fn delete_document_forgets_it_idempotently() {
        let app = app(1 << 20);
        let original = json!({ "id": "doc-1", "version": 2, "text": ARTICLE, "scope": "t" });
        near_duplicate_ids(&app, original).await;
        let copy = json!({ "id": "doc-2", "text": edited_copy(), "scope": "t" });
        assert_eq!(
            near_duplicate_ids(&app, copy.clone()).await,
            [json!("doc-1")]
        );

        for _ in 0..2 {
            let (status, headers, body) = send_raw(&app, delete_document("doc-1")).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert!(body.is_empty() && headers.get(header::CONTENT_TYPE).is_none());
        }
        assert_eq!(
            send_raw(&app, delete_document("never-seen")).await.0,
            StatusCode::NO_CONTENT
        );
        assert!(near_duplicate_ids(&app, copy).await.is_empty());

        let req = axum::http::Request::get("/health")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, req).await.2["fingerprints"], 1);
    }

    #[tokio::test]
    async fn delete_document_refuses_bad_ids_and_other_methods() {
        let app = app(1 << 20);
        let long_id = "x".repeat(MAX_ID_CHARS + 1);
        let (status, _, v) = send(&app, delete_document(&long_id)).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        );
        let (status, _, v) = send(&app, delete_document("%FF")).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        );

        let req = axum::http::Request::get("/documents/doc-1")
            .body(Body::empty())
            .expect("req");
        let (status, headers, v) = send(&app, req).await;
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        assert_eq!(
            headers.get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"DELETE"[..])
        );
        let req = axum::http::Request::delete("/documents/")
            .body(Body::empty())
            .expect("req");
        assert_eq!(send(&app, req).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let app = app(64);
        let big = json!({ "id": "a", "text": "word ".repeat(100) }).to_string();
        // Streamed (no Content-Length) and declared.
        let (status, _, v) = send(&app, post_json(big.clone())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&v), "payload_too_large");
        let req = axum::http::Request::post("/analyze")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, big.len())
            .body(Body::from(big))
            .expect("request");
        assert_eq!(send(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn non_json_content_type_is_415() {
        let app = app(1 << 20);
        let body = json!({ "id": "a", "text": "hello" }).to_string();
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let mut req = axum::http::Request::post("/analyze");
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let (status, _, v) = send(&app, req.body(Body::from(body.clone())).expect("req")).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            assert_eq!(error_code(&v), "unsupported_media_type");
        }
        let req = axum::http::Request::post("/analyze")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(body))
            .expect("req");
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_wrong_method_is_405() {
        let app = app(1 << 20);
        let req = axum::http::Request::get("/nope")
            .body(Body::empty())
            .expect("req");
        let (status, _, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&v), "not_found");

        let req = axum::http::Request::get("/analyze")
            .body(Body::empty())
            .expect("req");
        let (status, headers, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error_code(&v), "method_not_allowed");
        assert_eq!(
            headers.get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );

        let req = axum::http::Request::delete("/health")
            .body(Body::empty())
            .expect("req");
        assert_eq!(send(&app, req).await.0, StatusCode::METHOD_NOT_ALLOWED);
    }
}
