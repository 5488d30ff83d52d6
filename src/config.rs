//! Runtime configuration read from Worker vars.
//!
//! Parsing is pure (a lookup closure instead of `worker::Env`) so limits and
//! their defaults are tested natively, and a bad var falls back to the default
//! instead of failing requests.

use crate::domain::faults::Faults;
use crate::domain::jwt::JwtConfig;
use crate::domain::retry::RetryTuning;

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub title_max_chars: usize,
    pub body_max_bytes: usize,
    pub tags_max: usize,
    pub tag_max_chars: usize,
    pub category_max_chars: usize,
    pub author_max_chars: usize,
    /// Largest accepted request body; bigger is 413 before parsing.
    pub request_max_bytes: usize,
    /// Largest accepted `POST /api/answers` body (a question and a category).
    pub ask_max_bytes: usize,
    /// `MAX_UPLOAD_BYTES`: the largest uploaded file (`POST /api/uploads`).
    pub upload_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            title_max_chars: 300,
            body_max_bytes: 200 * 1024,
            tags_max: 20,
            tag_max_chars: 40,
            category_max_chars: 64,
            author_max_chars: 200,
            // These two are set from the field caps by `Config::from_lookup`.
            request_max_bytes: 256 * 1024,
            ask_max_bytes: 16 * 1024,
            upload_max_bytes: 10 * 1024 * 1024,
        }
    }
}

/// How long and how many events each actor's log keeps for replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub max_events: u64,
    pub max_age_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_events: 1000, max_age_ms: 24 * 3600 * 1000 }
    }
}

/// Principals, rate limits and caps ("Principals and access", "Rate limits
/// and caps" in DESIGN.md).
/// Most vector shards `VECTOR_SHARDS` may name; also the bound on the shard
/// names an inspector path may ask for (a shard left by a larger setting
/// stays inspectable).
pub const MAX_VECTOR_SHARDS: u32 = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    /// JWT users, when `JWT_ISSUER` is set.
    pub jwt: Option<JwtConfig>,
    pub rate_write_per_min: u32,
    pub rate_read_per_min: u32,
    pub rate_sessions_per_min: u32,
    /// `RATE_BATCH_ITEMS_PER_MIN`: items one principal may import a minute
    /// through batches. A batch is one write, but each of its items is a run:
    /// without this, the write limit alone lets one caller start 1,000 runs
    /// per write.
    pub rate_batch_items_per_min: u32,
    /// `RATE_UPLOAD_MB_PER_MIN`: megabytes of files one principal may upload
    /// a minute. An upload is one write, but up to 10 MB kept in R2 with
    /// every version: without this, 600 MB a minute per key.
    pub rate_upload_mb_per_min: u32,
    pub max_sockets_per_session: u32,
    /// Sockets one principal (one client IP, when anonymous) may hold on
    /// each topic actor (`/api/topics/{topic}/ws`).
    pub max_topic_sockets_per_principal: u32,
    /// Sessions of one principal (one client IP, when anonymous) that may
    /// follow one topic through their session sockets: each costs the topic
    /// a call per push (`domain::followers`).
    pub max_topic_sessions_per_principal: u32,
    /// The tenant that content created by the operator joins.
    pub operator_tenant: String,
    /// SHA-256 of `ADMIN_TOKEN` (a secret of at least 32 characters), hashed
    /// once per isolate: every request's bearer is compared with it.
    pub admin_token_sha256: Option<Vec<u8>>,
}

impl Trust {
    /// Tenants no key or user may belong to: the operator's content joins
    /// `operator_tenant`, and items from before tenants existed sit in
    /// `legacy`. A principal of either would read those items and, with
    /// `content:manage`, change or delete them, private ones included.
    pub fn reserves(&self, tenant: &str) -> bool {
        tenant == self.operator_tenant || tenant == crate::domain::principal::LEGACY_TENANT
    }

    pub fn socket_caps(&self) -> crate::domain::broadcast::SocketCaps {
        crate::domain::broadcast::SocketCaps { per_session: self.max_sockets_per_session, per_principal: self.max_topic_sockets_per_principal }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub limits: Limits,
    pub retention: Retention,
    pub retry: RetryTuning,
    pub faults: Faults,
    /// `AI_BACKEND`: the default of the two settings below.
    pub ai_backend: String,
    /// `EMBED_BACKEND` (`local` or `workers-ai`), default `AI_BACKEND`.
    pub embed_backend: String,
    /// `TEXT_BACKEND` (`local` or `workers-ai`), default `AI_BACKEND`.
    pub text_backend: String,
    pub vector_backend: String,
    pub analyzer: String,
    pub analyzer_url: Option<String>,
    pub vector_shards: u32,
    pub session_ttl_secs: i64,
    /// `ANSWER_STEP_MS`: the pause between two steps of an answer's stream.
    pub answer_step_ms: i64,
    /// `ANSWER_TTL_SECS`: how long an ended answer is kept; then its actor
    /// erases itself and its registry row (anyone may ask, so answers must
    /// not pile up for good).
    pub answer_ttl_secs: i64,
    /// `ANSWER_TTL_ANONYMOUS_SECS`: the same for an anonymous caller's
    /// answer (default an hour, never longer than `ANSWER_TTL_SECS`): anyone
    /// may ask 60 a minute, and a week of them would be 600,000 actors and
    /// their catalog rows per client address.
    pub answer_ttl_anonymous_secs: i64,
    /// `RUN_BUDGET_MS`: the wall time one activation of a run (an alarm, or
    /// its start) may spend starting further ready stages.
    pub run_budget_ms: i64,
    pub trust: Trust,
    pub ingest: Ingest,
}

/// Bulk imports (`POST /api/content/batch`, the `INGEST` queue).
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    /// `INGEST_MAX_IN_FLIGHT`: most items of one batch being spawned or
    /// running at once; the consumer delays the rest.
    pub max_in_flight: u32,
    /// `INGEST_MAX_BYTES`: the batch route's body cap (the single-item cap
    /// would refuse most batches), at most [`INGEST_MAX_BYTES_CEILING`].
    pub request_max_bytes: usize,
}

/// The highest `INGEST_MAX_BYTES` taken. A batch's documents travel to its
/// actor in one call, whose payload V8 may carry as UTF-16 (two bytes a
/// character, once any is past Latin-1) against the 32 MiB limit of a call,
/// and the Worker holds a few copies of it within its 128 MB meanwhile.
pub const INGEST_MAX_BYTES_CEILING: u64 = 12 * 1024 * 1024;

/// The names the Worker reads its bindings under, declared once: the code
/// takes them from here, and tests/deploy.rs checks that every environment
/// of wrangler.toml binds each one ([`binding::ALL`]).
pub mod binding {
    pub const AI: &str = "AI";
    pub const VECTORIZE: &str = "VECTORIZE";
    pub const DB: &str = "DB";
    /// The R2 bucket that holds uploaded files.
    pub const UPLOADS: &str = "UPLOADS";
    /// The bulk-import queue's producer.
    pub const INGEST: &str = "INGEST";
    /// The producer of the dead-letter queue ([`super::INGEST_DLQ`]), for
    /// items whose spawns ran out of attempts.
    pub const INGEST_DLQ: &str = "INGEST_DLQ";
    /// Durable Object namespaces, one per actor kind.
    pub const CONTENT: &str = "CONTENT";
    pub const PIPELINE: &str = "PIPELINE";
    pub const SESSION: &str = "SESSION";
    pub const VECTOR_INDEX: &str = "VECTOR_INDEX";
    pub const FEED: &str = "FEED";
    pub const ANALYZER_CONTAINER: &str = "ANALYZER_CONTAINER";
    pub const RATE_LIMIT: &str = "RATE_LIMIT";
    pub const ANSWER: &str = "ANSWER";
    pub const BATCH: &str = "BATCH";
    /// Every name above. AI and VECTORIZE are the Cloudflare path's: the
    /// default (local) environment may leave them out.
    pub const ALL: &[&str] = &[
        AI, VECTORIZE, DB, UPLOADS, INGEST, INGEST_DLQ, CONTENT, PIPELINE, SESSION, VECTOR_INDEX, FEED, ANALYZER_CONTAINER, RATE_LIMIT, ANSWER, BATCH,
    ];
}

/// The dead-letter queue's name, as wrangler.toml spells it in every env:
/// the consumer tells its two queues apart by it.
pub const INGEST_DLQ: &str = "actorline-ingest-dlq";

/// A request cap that follows the field caps, with room for JSON escaping at
/// its worst: a byte of a field capped in bytes can be sent as `\u0001` (6
/// bytes), a character of one capped in characters as a surrogate pair (12),
/// plus room for the rest of the object. A client's encoder may escape all
/// non-ASCII (Python's `json` does): the fields' caps are on the decoded
/// text, so a valid request must not be refused as too large.
fn escaped_json_cap(bytes: usize, chars: usize) -> usize {
    bytes.saturating_mul(6).saturating_add(chars.saturating_mul(12)).saturating_add(4096)
}

impl Config {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |name: &str, default: u64| -> u64 {
            get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
        };
        let answer_ttl_secs = num("ANSWER_TTL_SECS", 7 * 24 * 3600).clamp(1, 365 * 24 * 3600);
        let d = Limits::default();
        let limits = Limits {
            title_max_chars: num("LIMIT_TITLE_CHARS", d.title_max_chars as u64) as usize,
            body_max_bytes: num("LIMIT_BODY_BYTES", d.body_max_bytes as u64) as usize,
            tags_max: num("LIMIT_TAGS", d.tags_max as u64) as usize,
            tag_max_chars: num("LIMIT_TAG_CHARS", d.tag_max_chars as u64) as usize,
            category_max_chars: d.category_max_chars,
            author_max_chars: d.author_max_chars,
            request_max_bytes: 0,
            ask_max_bytes: 0,
            upload_max_bytes: num("MAX_UPLOAD_BYTES", d.upload_max_bytes as u64).max(1) as usize,
        };
        let labels = limits.title_max_chars
            + limits.tags_max * limits.tag_max_chars
            + limits.category_max_chars
            + limits.author_max_chars;
        let limits = Limits {
            request_max_bytes: escaped_json_cap(limits.body_max_bytes, labels),
            ask_max_bytes: escaped_json_cap(0, crate::protocol::MAX_QUERY_CHARS + limits.category_max_chars),
            ..limits
        };
        let r = Retention::default();
        let t = RetryTuning::default();
        let ai_backend = get("AI_BACKEND").unwrap_or_else(|| "local".into());
        Config {
            limits,
            retention: Retention {
                max_events: num("EVENT_RETENTION_COUNT", r.max_events).max(1),
                max_age_ms: num("EVENT_RETENTION_SECS", (r.max_age_ms / 1000) as u64) as i64 * 1000,
            },
            retry: RetryTuning {
                base_ms: num("RETRY_BASE_MS", t.base_ms),
                max_ms: num("RETRY_MAX_MS", t.max_ms),
                max_attempts: num("RETRY_MAX_ATTEMPTS", t.max_attempts as u64).clamp(1, 100) as u32,
            },
            faults: get("FAULTS").map(|f| Faults::parse(&f)).unwrap_or_default(),
            embed_backend: get("EMBED_BACKEND").unwrap_or_else(|| ai_backend.clone()),
            text_backend: get("TEXT_BACKEND").unwrap_or_else(|| ai_backend.clone()),
            ai_backend,
            vector_backend: get("VECTOR_BACKEND").unwrap_or_else(|| "actor".into()),
            analyzer: get("ANALYZER").unwrap_or_else(|| "url".into()),
            analyzer_url: get("ANALYZER_URL").filter(|u| !u.trim().is_empty()),
            vector_shards: num("VECTOR_SHARDS", 4).clamp(1, MAX_VECTOR_SHARDS as u64) as u32,
            session_ttl_secs: num("SESSION_TTL_SECS", 3600).clamp(10, 7 * 24 * 3600) as i64,
            answer_step_ms: num("ANSWER_STEP_MS", 60).min(10_000) as i64,
            answer_ttl_secs: answer_ttl_secs as i64,
            answer_ttl_anonymous_secs: num("ANSWER_TTL_ANONYMOUS_SECS", 3600).clamp(1, answer_ttl_secs) as i64,
            ingest: Ingest {
                max_in_flight: num("INGEST_MAX_IN_FLIGHT", 32).clamp(1, 1000) as u32,
                request_max_bytes: num("INGEST_MAX_BYTES", 8 * 1024 * 1024).clamp(64 * 1024, INGEST_MAX_BYTES_CEILING) as usize,
            },
            run_budget_ms: num("RUN_BUDGET_MS", 200).min(60_000) as i64,
            trust: Trust {
                jwt: JwtConfig::from_lookup(&get),
                rate_write_per_min: num("RATE_WRITE_PER_MIN", 60).min(1_000_000) as u32,
                rate_read_per_min: num("RATE_READ_PER_MIN", 600).min(1_000_000) as u32,
                rate_sessions_per_min: num("RATE_SESSIONS_PER_MIN", 30).min(1_000_000) as u32,
                rate_batch_items_per_min: num("RATE_BATCH_ITEMS_PER_MIN", 1000).clamp(1, 1_000_000) as u32,
                rate_upload_mb_per_min: num("RATE_UPLOAD_MB_PER_MIN", 100).clamp(1, 1_000_000) as u32,
                max_sockets_per_session: num("MAX_SOCKETS_PER_SESSION", 8).clamp(1, 1000) as u32,
                max_topic_sockets_per_principal: num("MAX_TOPIC_SOCKETS_PER_PRINCIPAL", 64)
                    .clamp(1, crate::domain::broadcast::MAX_SOCKETS as u64) as u32,
                max_topic_sessions_per_principal: num("MAX_TOPIC_SESSIONS_PER_PRINCIPAL", 16)
                    .clamp(1, crate::domain::followers::MAX_FOLLOWERS as u64) as u32,
                operator_tenant: get("OPERATOR_TENANT")
                    .filter(|t| crate::domain::principal::valid_tenant(t))
                    .unwrap_or_else(|| crate::domain::principal::DEFAULT_OPERATOR_TENANT.into()),
                admin_token_sha256: get("ADMIN_TOKEN")
                    .filter(|t| t.len() >= 32)
                    .map(|t| <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()).to_vec()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let m: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract_limits() {
        let c = cfg(&[]);
        assert_eq!(c.limits.title_max_chars, 300);
        assert_eq!(c.limits.body_max_bytes, 200 * 1024);
        assert_eq!(c.limits.tags_max, 20);
        assert_eq!(c.limits.tag_max_chars, 40);
        // A largest valid item, every byte of it escaped, is not too large.
        assert!(c.limits.request_max_bytes >= c.limits.body_max_bytes * 6 + c.limits.title_max_chars * 12);
        assert_eq!(c.limits.upload_max_bytes, 10 * 1024 * 1024);
        assert_eq!(cfg(&[("MAX_UPLOAD_BYTES", "4096")]).limits.upload_max_bytes, 4096);
        assert!(c.faults.is_empty());
        assert_eq!(c.ai_backend, "local");
        assert_eq!((c.trust.rate_write_per_min, c.trust.rate_read_per_min, c.trust.rate_sessions_per_min), (60, 600, 30));
        assert_eq!((c.trust.rate_batch_items_per_min, c.trust.rate_upload_mb_per_min), (1000, 100));
        assert_eq!((c.answer_ttl_secs, c.answer_ttl_anonymous_secs), (7 * 24 * 3600, 3600));
        assert_eq!(cfg(&[("ANSWER_TTL_SECS", "60")]).answer_ttl_anonymous_secs, 60, "never longer than a signed-in caller's");
        assert_eq!(cfg(&[("RATE_BATCH_ITEMS_PER_MIN", "0")]).trust.rate_batch_items_per_min, 1);
        assert_eq!(c.trust.max_sockets_per_session, 8);
        assert_eq!(c.trust.max_topic_sockets_per_principal, 64);
        assert_eq!(c.trust.max_topic_sessions_per_principal, 16);
        assert!(c.trust.jwt.is_none());
        assert_eq!(c.trust.operator_tenant, "operator");
        assert!(c.trust.reserves("operator") && c.trust.reserves("legacy") && !c.trust.reserves("acme"));
        let moved = cfg(&[("OPERATOR_TENANT", "ops-team")]).trust;
        assert!(moved.reserves("ops-team") && moved.reserves("legacy") && !moved.reserves("operator"));
        assert!(c.trust.admin_token_sha256.is_none());
        assert!(cfg(&[("ADMIN_TOKEN", "short")]).trust.admin_token_sha256.is_none(), "under 32 characters is no token");
        assert_eq!(cfg(&[("ADMIN_TOKEN", &"a".repeat(32))]).trust.admin_token_sha256.map(|h| h.len()), Some(32));
        assert_eq!((c.embed_backend.as_str(), c.text_backend.as_str()), ("local", "local"));
        assert_eq!(c.ingest, Ingest { max_in_flight: 32, request_max_bytes: 8 * 1024 * 1024 });
        // Past the ceiling a valid batch would fail its one call to its actor.
        assert_eq!(cfg(&[("INGEST_MAX_BYTES", "33554432")]).ingest.request_max_bytes as u64, INGEST_MAX_BYTES_CEILING);
        assert_eq!(cfg(&[("INGEST_MAX_IN_FLIGHT", "0")]).ingest.max_in_flight, 1);
    }

    #[test]
    fn embedder_and_text_model_default_to_ai_backend_and_can_differ() {
        let c = cfg(&[("AI_BACKEND", "workers-ai")]);
        assert_eq!((c.embed_backend.as_str(), c.text_backend.as_str()), ("workers-ai", "workers-ai"));
        let c = cfg(&[("AI_BACKEND", "workers-ai"), ("TEXT_BACKEND", "local")]);
        assert_eq!((c.embed_backend.as_str(), c.text_backend.as_str()), ("workers-ai", "local"));
        let c = cfg(&[("EMBED_BACKEND", "workers-ai")]);
        assert_eq!((c.embed_backend.as_str(), c.text_backend.as_str()), ("workers-ai", "local"));
    }

    #[test]
    fn vars_override_and_garbage_falls_back() {
        let c = cfg(&[("LIMIT_TITLE_CHARS", "10"), ("LIMIT_TAGS", "x"), ("FAULTS", "embed=1.0")]);
        assert_eq!(c.limits.title_max_chars, 10);
        assert_eq!(c.limits.tags_max, 20);
        assert_eq!(c.faults.probability(crate::protocol::Stage::Embed), 1.0);
    }
}
