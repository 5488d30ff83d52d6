//! Actorline: a Durable Object-centric actor system on Cloudflare Workers.
//!
//! Layout: `protocol` (wire types), `error` (the one error type), `config`,
//! `domain` (pure state machines), `nlp` (offline text processing),
//! `providers` (AI, vectors, analyzer behind traits), `api` (HTTP routes) and
//! `actors` (thin Durable Object shells). Only the last three touch the
//! Workers runtime, so everything else is tested natively.

pub mod config;
pub mod domain;
pub mod error;
pub mod protocol;
