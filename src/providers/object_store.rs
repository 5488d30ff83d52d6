//! Uploaded originals in R2 (binding `UPLOADS`; local R2 under `wrangler
//! dev`). Keys come from `domain::upload` (`uploads/<tenant>/<id>/<run>`).

use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::ReadableStream;
use worker::worker_sys::FixedLengthStream;
use worker::{Bucket, Data, Env, HttpMetadata, ResponseBody};

use super::streams::js_error;
use crate::config::binding;
use crate::error::ApiError;


#[allow(async_fn_in_trait)]
pub trait ObjectStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ApiError>;
    /// Stores exactly `length` bytes read from `body` without holding them;
    /// a body of any other length fails the put, which then stores nothing.
    async fn put_stream(&self, key: &str, body: ReadableStream, length: u64, content_type: &str) -> Result<(), ApiError>;
    /// The object's bytes; `None` when no object has that key. (Its content
    /// type is kept by the item's source, not read back.)
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError>;
    /// The object's body handed to the runtime as a stream, for a response
    /// that passes it on without the Worker reading it.
    async fn open(&self, key: &str) -> Result<Option<ResponseBody>, ApiError>;
    async fn delete(&self, key: &str) -> Result<(), ApiError>;
    /// Deletes every object under `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError>;
}

pub struct R2Uploads {
    bucket: Result<Bucket, String>,
}

impl R2Uploads {
    pub fn new(env: &Env) -> Self {
        R2Uploads { bucket: env.bucket(binding::UPLOADS).map_err(|e| format!("R2 binding {}: {e}", binding::UPLOADS)) }
    }

    fn bucket(&self) -> Result<&Bucket, ApiError> {
        self.bucket.as_ref().map_err(|e| ApiError::Unavailable(e.clone()))
    }
}

fn metadata(content_type: &str) -> HttpMetadata {
    HttpMetadata { content_type: Some(content_type.to_string()), ..Default::default() }
}

fn unavailable(what: &str, e: worker::Error) -> ApiError {
    ApiError::Unavailable(format!("R2 {what}: {e}"))
}

/// R2 lists at most 1,000 keys a page and deletes at most 1,000 per call.
const PAGE: u32 = 1000;

impl ObjectStore for R2Uploads {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ApiError> {
        self.bucket()?.put(key, bytes).http_metadata(metadata(content_type)).execute().await.map_err(|e| unavailable("put", e))?;
        Ok(())
    }

    /// R2's `put` takes a ReadableStream only of known length ("Provided
    /// readable stream must have a known length (request/response body or
    /// readable half of FixedLengthStream)", workerd's R2 binding; see
    /// cloudflare/miniflare#712). A branch of a tee'd request body has none,
    /// so it goes through a `FixedLengthStream(length)`, which also errors
    /// if more or fewer bytes pass than declared.
    async fn put_stream(&self, key: &str, body: ReadableStream, length: u64, content_type: &str) -> Result<(), ApiError> {
        let bucket = self.bucket()?;
        let fixed = match u32::try_from(length) {
            Ok(n) => FixedLengthStream::new(n),
            Err(_) => FixedLengthStream::new_big_int(length.into()),
        }
        .map_err(|e| ApiError::Internal(format!("FixedLengthStream: {}", js_error(&e))))?;
        let piped = JsFuture::from(body.pipe_to(&fixed.writable()));
        let put = bucket.put(key, Data::ReadableStream(fixed.readable())).http_metadata(metadata(content_type)).execute();
        let (piped, put) = futures::join!(piped, put);
        let size = put.map_err(|e| unavailable("put", e))?.map(|o| o.size());
        // Not expected once the put succeeded, but a stored object must be
        // the whole body or nothing.
        let mismatch = match (piped, size) {
            (Err(e), _) => format!("the body failed: {}", js_error(&e)),
            (Ok(_), Some(size)) if size != length => format!("{size} bytes stored of {length}"),
            (Ok(_), _) => return Ok(()),
        };
        self.delete(key).await?;
        Err(ApiError::Internal(format!("R2 put of {key}: {mismatch}")))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(object) = self.bucket()?.get(key).execute().await.map_err(|e| unavailable("get", e))? else {
            return Ok(None);
        };
        let Some(body) = object.body() else { return Ok(None) };
        Ok(Some(body.bytes().await.map_err(|e| unavailable("read", e))?))
    }

    async fn open(&self, key: &str) -> Result<Option<ResponseBody>, ApiError> {
        let Some(object) = self.bucket()?.get(key).execute().await.map_err(|e| unavailable("get", e))? else {
            return Ok(None);
        };
        let Some(body) = object.body() else { return Ok(None) };
        Ok(Some(body.response_body().map_err(|e| unavailable("read", e))?))
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        self.bucket()?.delete(key).await.map_err(|e| unavailable("delete", e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        // Without the bucket nothing was ever stored: a deletion owes nothing.
        let Ok(bucket) = self.bucket.as_ref() else { return Ok(()) };
        loop {
            // Deleted keys drop out of the listing, so each page starts afresh.
            let page = bucket.list().prefix(prefix).limit(PAGE).execute().await.map_err(|e| unavailable("list", e))?;
            let keys: Vec<String> = page.objects().iter().map(|o| o.key()).collect();
            if keys.is_empty() {
                return Ok(());
            }
            bucket.delete_multiple(keys).await.map_err(|e| unavailable("delete", e))?;
        }
    }
}
