//! The work of each pipeline stage. The run actor calls [`execute`] once per
//! stage attempt (several stages per activation); outputs go to the run's
//! `artifacts` table so a later stage (or a retried one) reads them back after
//! any restart.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, SqlStorage};

use crate::actors::ops::{Fence, Publish};
use crate::actors::rpc;
use crate::config::Config;
use crate::domain::content::{Artifacts, ContentDoc};
use crate::domain::pipeline::{PipelineRun, StageError};
use crate::domain::principal::PUBLIC_NAMESPACE;
use crate::domain::upload::{Source, UploadType};
use crate::domain::vector::{decode_f32_le, encode_f32_le, vector_id};
use crate::error::ApiError;
use crate::nlp;
use crate::protocol::Stage;
use crate::providers::object_store::{ObjectStore, R2Uploads};
use crate::providers::{
    AnalyzeRequest, DocumentAnalyzer, Embedder, Extraction, Providers, TextModel, VectorIndex, VectorItem, VectorMeta,
};
use crate::store::{exec, rows};

/// How a stage attempt ended, beyond plain success or error.
pub enum StageFailure {
    Error(StageError),
    /// A newer version exists or the item was deleted: the run stops as
    /// cancelled (with this reason), not failed, and writes nothing more.
    Superseded(String),
}

impl From<StageError> for StageFailure {
    fn from(e: StageError) -> Self {
        StageFailure::Error(e)
    }
}

/// The artifact holding the vector namespace of the run's item (set at start).
pub const NAMESPACE_ARTIFACT: &str = "namespace";

pub struct StageContext<'a> {
    pub env: &'a Env,
    pub cfg: &'a Config,
    pub run: &'a PipelineRun,
    pub doc: &'a ContentDoc,
    pub artifacts: &'a ArtifactStore,
}

/// The run's stage outputs, as JSON text or compact blobs.
#[derive(Clone)]
pub struct ArtifactStore {
    sql: SqlStorage,
}

#[derive(serde::Deserialize)]
struct TextRow {
    v: String,
}

impl ArtifactStore {
    pub fn new(sql: SqlStorage) -> Self {
        ArtifactStore { sql }
    }

    pub fn init(&self) -> Result<(), ApiError> {
        exec(&self.sql, "CREATE TABLE IF NOT EXISTS artifacts (k TEXT PRIMARY KEY, v TEXT, b BLOB)", vec![])
    }

    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StageError> {
        let v = serde_json::to_string(value).map_err(|e| StageError::terminal(e.to_string()))?;
        exec(&self.sql, "INSERT OR REPLACE INTO artifacts (k, v) VALUES (?, ?)", vec![key.into(), v.into()])
            .map_err(|e| StageError::transient(e.to_string()))
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, StageError> {
        let r: Vec<TextRow> = rows(&self.sql, "SELECT v FROM artifacts WHERE k = ? AND v IS NOT NULL", vec![key.into()])
            .map_err(|e| StageError::transient(e.to_string()))?;
        let row = r.into_iter().next().ok_or_else(|| StageError::terminal(format!("missing artifact {key}")))?;
        serde_json::from_str(&row.v).map_err(|e| StageError::terminal(format!("artifact {key}: {e}")))
    }

    pub fn get_opt<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key).ok()
    }

    pub fn put_blob(&self, key: &str, bytes: Vec<u8>) -> Result<(), StageError> {
        exec(&self.sql, "INSERT OR REPLACE INTO artifacts (k, b) VALUES (?, ?)", vec![key.into(), bytes.into()])
            .map_err(|e| StageError::transient(e.to_string()))
    }

    pub fn get_blob(&self, key: &str) -> Result<Vec<u8>, StageError> {
        let cursor = self
            .sql
            .exec("SELECT b FROM artifacts WHERE k = ?", vec![key.into()])
            .map_err(|e| StageError::transient(e.to_string()))?;
        for values in cursor.raw().flatten() {
            if let Some(worker::SqlStorageValue::Blob(b)) = values.into_iter().next() {
                return Ok(b);
            }
        }
        Err(StageError::terminal(format!("missing artifact {key}")))
    }
}

/// The artifact holding an upload's extracted text: from `validate` on, the
/// run's body, so later stages and retries never extract again.
pub const EXTRACTED_TEXT_ARTIFACT: &str = "extracted_text";

pub async fn execute(stage: Stage, cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let p = Providers::from_config(cx.env, cx.cfg);
    let extracted;
    let with_text;
    // Only an upload has extracted text: a JSON item's stages skip the lookup.
    let text = cx.doc.source.as_ref().and_then(|_| cx.artifacts.get_opt::<String>(EXTRACTED_TEXT_ARTIFACT));
    let cx = match text {
        Some(text) => {
            extracted = ContentDoc { body: text, ..cx.doc.clone() };
            with_text = StageContext { doc: &extracted, ..*cx };
            &with_text
        }
        _ => cx,
    };
    match stage {
        Stage::Validate => validate(cx, &p).await,
        Stage::Chunk => chunk(cx),
        Stage::Embed => embed(cx, &p).await,
        Stage::Index => index(cx, &p).await,
        Stage::Summarize => {
            let summary = p.text.summarize(&cx.doc.body).await?;
            Ok(cx.artifacts.put("summary", &summary)?)
        }
        Stage::Extract => {
            let x = p.text.extract(&format!("{}.\n{}", cx.doc.title, cx.doc.body)).await?;
            Ok(cx.artifacts.put("extraction", &x)?)
        }
        Stage::Analyze => {
            let req = AnalyzeRequest {
                id: cx.run.content_id.to_string(),
                version: cx.run.version,
                title: cx.doc.title.clone(),
                text: cx.doc.body.clone(),
            };
            let analysis = p.analyzer.analyze(&req).await?;
            Ok(cx.artifacts.put("analysis", &analysis)?)
        }
        Stage::Publish => publish(cx).await,
    }
}

/// Checks the document; an upload's file is first turned into its text.
async fn validate(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let upload_text = match &cx.doc.source {
        Some(source) if cx.doc.body.is_empty() => Some(upload_text(cx, p, source).await?),
        _ => None,
    };
    let body = upload_text.as_ref().unwrap_or(&cx.doc.body);
    let input = crate::protocol::ContentInput {
        title: cx.doc.title.clone(),
        body: body.clone(),
        category: cx.doc.category.clone(),
        tags: Some(cx.doc.tags.clone()),
        author: cx.doc.author.clone(),
        visibility: None,
    };
    ContentDoc::validate(input, &cx.cfg.limits).map_err(|e| StageError::terminal(e.to_string()))?;
    // An upload's text was already checked for words, with a clearer reason.
    if upload_text.is_none() && nlp::tokenize::tokens(body).is_empty() {
        return Err(StageError::terminal("body has no words to index").into());
    }
    match upload_text {
        Some(text) => Ok(cx.artifacts.put(EXTRACTED_TEXT_ARTIFACT, &text)?),
        None => Ok(()),
    }
}

/// The text of an uploaded file: Markdown, HTML and plain text here, PDF in
/// the analyzer. A file without words fails the run for good.
async fn upload_text(cx: &StageContext<'_>, p: &Providers, source: &Source) -> Result<String, StageFailure> {
    let kind = source
        .upload_type()
        .ok_or_else(|| StageError::terminal(format!("uploads of type {} cannot be read", source.content_type)))?;
    let text = match kind {
        UploadType::Pdf => p.analyzer.extract_pdf(&source.key).await?,
        _ => {
            let object = R2Uploads::new(cx.env)
                .get(&source.key)
                .await
                .map_err(|e| StageError::transient(e.to_string()))?
                .ok_or_else(|| StageError::terminal("the uploaded file is missing from the bucket"))?;
            let raw = String::from_utf8_lossy(&object);
            crate::domain::markup::to_text(kind, raw.trim_start_matches('\u{feff}')).unwrap_or_default()
        }
    };
    let text = text.replace('\0', "");
    if nlp::tokenize::tokens(&text).is_empty() {
        return Err(StageError::terminal(format!("no extractable text in {} upload", kind.label())).into());
    }
    let limit = cx.cfg.limits.body_max_bytes;
    if text.len() > limit {
        let why = format!("the {} upload's text is {} bytes, more than a body may hold ({limit}, LIMIT_BODY_BYTES)", kind.label(), text.len());
        return Err(StageError::terminal(why).into());
    }
    Ok(text)
}

fn chunk(cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let chunks: Vec<String> = nlp::chunk::chunk_text(
        &cx.doc.body,
        nlp::chunk::DEFAULT_CHUNK_CHARS,
        nlp::chunk::DEFAULT_OVERLAP_SENTENCES,
    )
    .into_iter()
    .map(|c| c.text)
    .collect();
    if chunks.is_empty() {
        return Err(StageError::terminal("body produced no chunks").into());
    }
    Ok(cx.artifacts.put("chunks", &chunks)?)
}

async fn embed(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let chunks: Vec<String> = cx.artifacts.get("chunks")?;
    let vectors = p.embedder.embed(&chunks).await?;
    if vectors.len() != chunks.len() {
        return Err(StageError::transient(format!("embedder returned {} vectors for {} chunks", vectors.len(), chunks.len())).into());
    }
    let dim = vectors.first().map(|v| v.len()).unwrap_or(0);
    if dim == 0 || vectors.iter().any(|v| v.len() != dim) {
        return Err(StageError::transient("embedder returned vectors of mixed dimensions").into());
    }
    let flat: Vec<f32> = vectors.into_iter().flatten().collect();
    cx.artifacts.put("dim", &dim)?;
    Ok(cx.artifacts.put_blob("vectors", encode_f32_le(&flat))?)
}

/// Asks the content actor whether this run's version may still write the
/// indexes (the index backend fences again at the write itself).
async fn require_current(cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let r = rpc::send(cx.env, &cx.run.content_id.to_string(), &Fence { version: cx.run.version }).await;
    r.map(|_| ()).map_err(superseded_or_transient)
}

/// The content actor's `superseded` (a newer version) and 404 (deleted) end
/// the run as cancelled; anything else keeps its retry class.
fn superseded_or_transient(e: ApiError) -> StageFailure {
    match e {
        ApiError::Superseded(reason) => StageFailure::Superseded(reason),
        ApiError::NotFound(_) => StageFailure::Superseded(CONTENT_DELETED.into()),
        e => StageError::from(e).into(),
    }
}

/// The cancel reason of a run whose item was deleted.
pub const CONTENT_DELETED: &str = "content deleted";

async fn index(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    require_current(cx).await?;
    let dim: usize = cx.artifacts.get("dim")?;
    let flat = decode_f32_le(&cx.artifacts.get_blob("vectors")?)
        .ok_or_else(|| StageError::terminal("vectors blob is corrupt"))?;
    let cid = cx.run.content_id.to_string();
    // Runs started before tenants existed index into the public namespace.
    let namespace: String = cx.artifacts.get_opt(NAMESPACE_ARTIFACT).unwrap_or_else(|| PUBLIC_NAMESPACE.to_string());
    let items: Vec<VectorItem> = flat
        .chunks(dim.max(1))
        .enumerate()
        .map(|(i, v)| VectorItem {
            id: vector_id(&cid, cx.run.version, i as u32),
            namespace: namespace.clone(),
            values: v.to_vec(),
            meta: VectorMeta { content_id: cid.clone(), version: cx.run.version, chunk: i as u32, category: cx.doc.category.clone() },
        })
        .collect();
    Ok(p.vectors.replace_content(&cid, cx.run.version, items).await?)
}

async fn publish(cx: &StageContext<'_>) -> Result<(), StageFailure> {
    let chunks: Vec<String> = cx.artifacts.get("chunks")?;
    let extraction: Option<Extraction> = cx.artifacts.get_opt("extraction");
    let artifacts = Artifacts {
        version: cx.run.version,
        chunks: chunks.len() as u32,
        summary: cx.artifacts.get_opt("summary"),
        keywords: extraction.as_ref().map(|x| x.keywords.clone()).unwrap_or_default(),
        entities: extraction.as_ref().map(|x| x.entities.clone()).unwrap_or_default(),
        sentiment: extraction.map(|x| x.sentiment),
        analysis: cx.artifacts.get_opt("analysis"),
        text: cx.doc.source.as_ref().map(|_| cx.doc.body.clone()),
    };
    let r = rpc::send(cx.env, &cx.run.content_id.to_string(), &Publish { run_id: cx.run.id, artifacts }).await;
    r.map(|_| ()).map_err(superseded_or_transient)
}
