//! The contract's rate limits, per principal (per client IP for anonymous
//! callers): content writes, reads (searches and answers) and session
//! creation, and the items imported through batches and the megabytes
//! uploaded. The operator is not limited.

use worker::{Env, Request};

use crate::actors::ops::Take;
use crate::actors::rpc;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::error::ApiResult;
use crate::runtime::config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitClass {
    Write,
    Read,
    Sessions,
    /// Items imported through batches: a batch is one write, and each of
    /// its items one token here.
    BatchItems,
    /// Megabytes of uploaded files (each stored in R2 with every version).
    UploadMegabytes,
}

impl LimitClass {
    fn as_str(self) -> &'static str {
        match self {
            LimitClass::Write => "write",
            LimitClass::Read => "read",
            LimitClass::Sessions => "sessions",
            LimitClass::BatchItems => "items",
            LimitClass::UploadMegabytes => "upload_mb",
        }
    }

    const ALL: [LimitClass; 5] = [LimitClass::Write, LimitClass::Read, LimitClass::Sessions, LimitClass::BatchItems, LimitClass::UploadMegabytes];
}

/// Whether `name` is one a rate-limit actor can have (`<class>:<key>`), so
/// the inspector wakes no actor for another.
pub fn is_bucket_name(name: &str) -> bool {
    name.split_once(':').is_some_and(|(class, key)| {
        LimitClass::ALL.iter().any(|c| c.as_str() == class) && !key.is_empty() && name.len() <= 300
    })
}

/// Whose bucket a request spends from; also whose socket caps a topic
/// socket counts against.
pub fn bucket_key(p: &Principal, req: &Request) -> String {
    match p.kind {
        PrincipalKind::Anonymous => crate::domain::rate::client_key(req.headers().get("cf-connecting-ip").ok().flatten().as_deref()),
        _ => principal_bucket(p),
    }
}

/// A signed-in principal's bucket key (an anonymous caller's is its address).
fn principal_bucket(p: &Principal) -> String {
    format!("{}:{}:{}", p.tenant.as_deref().unwrap_or("-"), p.subject, matches!(p.kind, PrincipalKind::User) as u8)
}

/// Whose caps a topic socket or a following session counts against: the
/// principal's bucket, marked when anonymous (a topic gives anonymous
/// sessions only a share); none for the operator, whom no cap limits.
pub fn holder(p: &Principal, req: &Request) -> Option<String> {
    match p.kind {
        _ if p.is_operator() => None,
        PrincipalKind::Anonymous => Some(crate::domain::followers::anonymous_holder(&bucket_key(p, req))),
        _ => Some(bucket_key(p, req)),
    }
}

/// Spends `cost` from the principal's bucket of `class`: `429 rate_limited`
/// with `Retry-After` when it is empty.
pub async fn spend(env: &Env, p: &Principal, req: &Request, class: LimitClass, cost: u32) -> ApiResult<()> {
    if p.is_operator() {
        return Ok(());
    }
    spend_from(env, p, &bucket_key(p, req), class, cost).await
}

/// [`spend`] for a principal whose request has gone: from the bucket of
/// the `holder` recorded with it ([`holder`]; a session keeps its own).
/// A session made before holders were recorded has none: a signed-in
/// principal's bucket is its own all the same; an anonymous caller's
/// address is not known, and that session runs out within its TTL.
pub async fn spend_held(env: &Env, p: &Principal, holder: Option<&str>, class: LimitClass, cost: u32) -> ApiResult<()> {
    if p.is_operator() {
        return Ok(());
    }
    match holder {
        Some(holder) => spend_from(env, p, crate::domain::followers::holder_bucket(holder), class, cost).await,
        None if p.kind != PrincipalKind::Anonymous => spend_from(env, p, &principal_bucket(p), class, cost).await,
        None => Ok(()),
    }
}

async fn spend_from(env: &Env, p: &Principal, bucket: &str, class: LimitClass, cost: u32) -> ApiResult<()> {
    let t = config(env).trust;
    let per_min = match class {
        LimitClass::Write => p.rate_per_min.unwrap_or(t.rate_write_per_min),
        LimitClass::Read => t.rate_read_per_min,
        LimitClass::Sessions => t.rate_sessions_per_min,
        LimitClass::BatchItems => scaled_by_key(p, &t, t.rate_batch_items_per_min),
        LimitClass::UploadMegabytes => scaled_by_key(p, &t, t.rate_upload_mb_per_min),
    };
    let name = format!("{}:{bucket}", class.as_str());
    rpc::send(env, &name, &Take { cost, per_min }).await?;
    Ok(())
}

/// A limit that follows the write limit (a batch's items, uploaded
/// megabytes): `base`, scaled by a key's own `rate_per_min` as that scales
/// its writes (a key the operator slowed to a write a minute imports and
/// uploads as slowly; one allowed more, more).
fn scaled_by_key(p: &Principal, t: &crate::config::Trust, base: u32) -> u32 {
    match p.rate_per_min {
        Some(own) if own != t.rate_write_per_min => {
            let scaled = base as u64 * own as u64 / t.rate_write_per_min.max(1) as u64;
            scaled.clamp(1, MAX_SCALED_PER_MIN) as u32
        }
        _ => base,
    }
}

/// Spends an upload of `bytes` from the principal's upload bucket, a token
/// per started megabyte. A file larger than a minute's is taken from a full
/// bucket into debt (see `TokenBucket::take`): it waits, it is not refused.
pub async fn spend_upload(env: &Env, p: &Principal, req: &Request, bytes: u64) -> ApiResult<()> {
    let megabytes = bytes.div_ceil(1 << 20).clamp(1, u32::MAX as u64) as u32;
    spend(env, p, req, LimitClass::UploadMegabytes, megabytes).await
}

/// The most any principal is given a minute of a scaled limit (as the
/// limits themselves are clamped).
const MAX_SCALED_PER_MIN: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::Scope;

    #[test]
    fn a_keys_own_write_limit_scales_its_items() {
        let t = crate::config::Config::from_lookup(|_| None).trust;
        let batch_items_per_min = |p: &Principal, t: &crate::config::Trust| scaled_by_key(p, t, t.rate_batch_items_per_min);
        let key = |rate: Option<u32>| Principal { rate_per_min: rate, ..Principal::api_key("t", "k", &[Scope::Write]) };
        assert_eq!(batch_items_per_min(&key(None), &t), 1000);
        assert_eq!(batch_items_per_min(&key(Some(60)), &t), 1000);
        assert_eq!(batch_items_per_min(&key(Some(3)), &t), 50, "a key slowed to 3 writes a minute");
        assert_eq!(batch_items_per_min(&key(Some(120)), &t), 2000);
        assert_eq!(batch_items_per_min(&key(Some(0)), &t), 1, "never none: a batch of one waits its turn");
        assert_eq!(batch_items_per_min(&key(Some(100_000_000)), &t), 1_000_000);
    }
}
