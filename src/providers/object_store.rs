//! Uploaded originals in R2 (binding `UPLOADS`; local R2 under `wrangler
//! dev`). Keys come from `domain::upload` (`uploads/<tenant>/<id>/<run>`).

use worker::{Bucket, Env, HttpMetadata};

use crate::error::ApiError;

/// The R2 binding that holds uploaded files.
pub const UPLOADS_BINDING: &str = "UPLOADS";

#[allow(async_fn_in_trait)]
pub trait ObjectStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ApiError>;
    /// The object's bytes; `None` when no object has that key. (Its content
    /// type is kept by the item's source, not read back.)
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError>;
    async fn delete(&self, key: &str) -> Result<(), ApiError>;
    /// Deletes every object under `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError>;
}

pub struct R2Uploads {
    bucket: Result<Bucket, String>,
}

impl R2Uploads {
    pub fn new(env: &Env) -> Self {
        R2Uploads { bucket: env.bucket(UPLOADS_BINDING).map_err(|e| format!("R2 binding {UPLOADS_BINDING}: {e}")) }
    }

    fn bucket(&self) -> Result<&Bucket, ApiError> {
        self.bucket.as_ref().map_err(|e| ApiError::Unavailable(e.clone()))
    }
}

fn unavailable(what: &str, e: worker::Error) -> ApiError {
    ApiError::Unavailable(format!("R2 {what}: {e}"))
}

/// R2 lists at most 1,000 keys a page and deletes at most 1,000 per call.
const PAGE: u32 = 1000;

impl ObjectStore for R2Uploads {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ApiError> {
        let meta = HttpMetadata { content_type: Some(content_type.to_string()), ..Default::default() };
        self.bucket()?.put(key, bytes).http_metadata(meta).execute().await.map_err(|e| unavailable("put", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(object) = self.bucket()?.get(key).execute().await.map_err(|e| unavailable("get", e))? else {
            return Ok(None);
        };
        let Some(body) = object.body() else { return Ok(None) };
        Ok(Some(body.bytes().await.map_err(|e| unavailable("read", e))?))
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        self.bucket()?.delete(key).await.map_err(|e| unavailable("delete", e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        let bucket = self.bucket()?;
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
