//! Actorline: a Durable Object-centric actor system on Cloudflare Workers.
//!
//! Layout: `protocol` (wire types), `error` (the one error type), `config`,
//! `domain` (pure state machines), `nlp` (offline text processing),
//! `providers` (AI, vectors, analyzer behind traits), `api` (HTTP routes) and
//! `actors` (thin Durable Object shells). Only the runtime modules (`actors`,
//! `store`, `catalog`, `http`) and the stages' work touch the Workers
//! runtime, so everything else (the stages' specs too) is tested natively.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod nlp;
pub mod protocol;
pub mod providers;
pub mod stages;

#[cfg(target_arch = "wasm32")]
pub mod actors;
#[cfg(target_arch = "wasm32")]
pub mod catalog;
#[cfg(target_arch = "wasm32")]
mod entry;
#[cfg(target_arch = "wasm32")]
pub mod http;
#[cfg(target_arch = "wasm32")]
pub mod ingest;
#[cfg(target_arch = "wasm32")]
pub mod retrieval;
#[cfg(target_arch = "wasm32")]
pub mod runtime;
#[cfg(target_arch = "wasm32")]
pub mod store;
