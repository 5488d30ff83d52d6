//! Pure state machines. Nothing here touches the Workers runtime: time comes in
//! as milliseconds, randomness as seeds, storage as plain values. That is what
//! lets `cargo test` drive restarts, retries and replays with a fake clock.

pub mod answer;
pub mod answer_text;
pub mod batch;
pub mod broadcast;
pub mod circuit;
pub mod container_start;
pub mod content;
pub mod fusion;
pub mod event_log;
pub mod faults;
pub mod followers;
pub mod item_labels;
pub mod jwt;
pub mod key_cache;
pub mod markup;
pub mod outbox;
pub mod pipeline;
pub mod principal;
pub mod rate;
pub mod retry;
pub mod session;
pub mod time;
pub mod token;
pub mod upload;
pub mod vector;

/// Input that breaks a rule of the domain, named by the field it is in.
/// The HTTP layer makes it a 422 `invalid_field` (`error.rs`); the domain
/// knows nothing of statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Lowercase hex SHA-256 of `bytes`: API key hashes and uploads' checksums.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes` (a digest the runtime computed, say).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary: what a byte-limited store keeps of a string.
pub fn byte_prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
