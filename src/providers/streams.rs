//! Web streams the Workers runtime handles without copying them into wasm:
//! a request body split in two (`tee`), its SHA-256 taken by the runtime's
//! `crypto.DigestStream` (a WritableStream whose `digest` resolves once the
//! stream ends: developers.cloudflare.com/workers/runtime-apis/web-crypto/),
//! and only a bounded prefix read into wasm. The bindings are the worker
//! crate's (`worker::crypto::DigestStream`, `worker_sys::FixedLengthStream`)
//! and web_sys's.

use futures::StreamExt;
use worker::crypto::{DigestStream, DigestStreamAlgorithm};
use worker::js_sys::Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::ReadableStream;
use worker::ByteStream;

/// Two branches that each yield every chunk of `stream`. A branch read more
/// slowly queues what the other has pulled, so a branch no longer wanted must
/// be cancelled (dropping a [`ByteStream`] over it does).
pub fn tee(stream: &ReadableStream) -> (ReadableStream, ReadableStream) {
    let pair: Array = stream.tee();
    (pair.get(0).unchecked_into(), pair.get(1).unchecked_into())
}

/// The SHA-256 of all `stream` yields, hashed by the runtime; an error when
/// the stream fails (a body cut short, say). The digest is awaited either
/// way: a failed stream rejects it too, and a rejection nobody awaits is
/// logged as uncaught.
pub async fn sha256(stream: ReadableStream) -> Result<Vec<u8>, String> {
    let digest = DigestStream::new(DigestStreamAlgorithm::Sha256);
    let (piped, hash) = futures::join!(JsFuture::from(stream.pipe_to(digest.raw())), digest.digest());
    piped.map_err(|e| js_error(&e))?;
    Ok(hash.map_err(|e| e.to_string())?.to_vec())
}

/// The first `max` bytes of `stream` (fewer if it is shorter), then cancels it.
pub async fn prefix(stream: ReadableStream, max: usize) -> Result<Vec<u8>, String> {
    let mut chunks = ByteStream::from(stream);
    let mut head = Vec::new();
    while head.len() < max {
        match chunks.next().await {
            Some(chunk) => head.extend(chunk.map_err(|e| e.to_string())?),
            None => break,
        }
    }
    head.truncate(max);
    Ok(head)
}

/// A JS rejection reason as text.
pub fn js_error(e: &JsValue) -> String {
    worker::Error::from(e.clone()).to_string()
}
