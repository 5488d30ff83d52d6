//! Actorline analyzer: the "analyze" stage of the content pipeline.
//!
//! Runs as a Cloudflare Container in production and as a plain native process
//! in dev and tests; both speak the same JSON-over-HTTP API (see `http`).

pub mod analysis;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod index;
pub mod pdf;
