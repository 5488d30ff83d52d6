//! `validate`: checks the document; an upload's file is first turned into
//! its text, which becomes the run's body from here on.

use super::artifacts::EXTRACTED_TEXT;
use super::{StageSpec, DEFAULT_TIMEOUT_MS};
use crate::protocol::Stage;
#[cfg(target_arch = "wasm32")]
use crate::{
    domain::content::{is_stray_control, ContentDoc},
    domain::pipeline::StageError,
    domain::upload::{Source, UploadType},
    nlp,
    providers::object_store::{ObjectStore, R2Uploads},
    providers::{DocumentAnalyzer, Providers},
    stages::{StageContext, StageFailure},
};

pub(super) const SPEC: StageSpec = StageSpec {
    stage: Stage::Validate,
    optional: false,
    timeout_ms: DEFAULT_TIMEOUT_MS,
    // A bad document is refused as permanent at its first attempt; what is
    // retried is the analyzer (a PDF's text) and R2 (the file), which come
    // back after an outage like any provider: the run's full policy.
    max_attempts: None,
    reads: &[],
    writes: &[EXTRACTED_TEXT.key],
};

#[cfg(target_arch = "wasm32")]
pub(super) async fn run(cx: &StageContext<'_>, p: &Providers) -> Result<(), StageFailure> {
    let upload_text = match &cx.doc.source {
        Some(source) if cx.doc.body.is_empty() => Some(upload_text(cx, p, source).await?),
        _ => None,
    };
    let body = upload_text.as_ref().unwrap_or(&cx.doc.body);
    let input = crate::protocol::ContentInput {
        title: cx.doc.title.clone(),
        // Checked as the edge checks it, but for stray control characters:
        // a document accepted before the edge refused them (a batch's item
        // spawned later) must not fail now for a rule it met when accepted.
        body: without_stray_controls(body),
        category: cx.doc.category.clone(),
        tags: Some(cx.doc.tags.clone()),
        author: cx.doc.author.clone(),
        visibility: None,
    };
    ContentDoc::validate(input, &cx.cfg.limits).map_err(|e| StageError::terminal(e.to_string()))?;
    // An upload's text was already checked for words, with a clearer reason.
    if upload_text.is_none() && !nlp::tokenize::has_words(body) {
        return Err(StageError::terminal("body has no words to index").into());
    }
    match upload_text {
        Some(text) => Ok(cx.artifacts.put(EXTRACTED_TEXT, &text)?),
        None => Ok(()),
    }
}

/// The text of an uploaded file: Markdown, HTML and plain text here, PDF in
/// the analyzer. A file without words fails the run for good.
#[cfg(target_arch = "wasm32")]
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
    // NUL goes (UTF-16 read as UTF-8 leaves one between letters).
    let text = without_stray_controls(&text.replace('\0', ""));
    // The size first: an upload may be many times a body's limit.
    let limit = cx.cfg.limits.body_max_bytes;
    if text.len() > limit {
        let why = format!("the {} upload's text is {} bytes, more than a body may hold ({limit}, LIMIT_BODY_BYTES)", kind.label(), text.len());
        return Err(StageError::terminal(why).into());
    }
    if !nlp::tokenize::has_words(&text) {
        return Err(StageError::terminal(format!("no extractable text in {} upload", kind.label())).into());
    }
    Ok(text)
}

/// `text` with its stray control characters as spaces, so the words beside
/// them stay apart.
#[cfg(target_arch = "wasm32")]
fn without_stray_controls(text: &str) -> String {
    text.chars().map(|c| if is_stray_control(c) { ' ' } else { c }).collect()
}
