//! The contract's rate limits, per principal (per client IP for anonymous
//! callers): content writes, reads (searches and answers) and session
//! creation, and the items imported through batches. The operator is not
//! limited.

use worker::{Env, Request};

use crate::actors::ops::Take;
use crate::actors::rpc;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::FieldError;
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
}

impl LimitClass {
    fn as_str(self) -> &'static str {
        match self {
            LimitClass::Write => "write",
            LimitClass::Read => "read",
            LimitClass::Sessions => "sessions",
            LimitClass::BatchItems => "items",
        }
    }

    const ALL: [LimitClass; 4] = [LimitClass::Write, LimitClass::Read, LimitClass::Sessions, LimitClass::BatchItems];
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
        _ => format!("{}:{}:{}", p.tenant.as_deref().unwrap_or("-"), p.subject, matches!(p.kind, PrincipalKind::User) as u8),
    }
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
    let t = config(env).trust;
    let per_min = match class {
        LimitClass::Write => p.rate_per_min.unwrap_or(t.rate_write_per_min),
        LimitClass::Read => t.rate_read_per_min,
        LimitClass::Sessions => t.rate_sessions_per_min,
        LimitClass::BatchItems => t.rate_batch_items_per_min,
    };
    let name = format!("{}:{}", class.as_str(), bucket_key(p, req));
    rpc::send(env, &name, &Take { cost, per_min }).await?;
    Ok(())
}


/// Spends a batch's `items` from the principal's import bucket. A batch
/// larger than a minute's items is refused as invalid (422), not as
/// rate-limited: waiting would never let it through.
pub async fn spend_items(env: &Env, p: &Principal, req: &Request, items: u32) -> ApiResult<()> {
    if p.is_operator() {
        return Ok(());
    }
    let per_min = config(env).trust.rate_batch_items_per_min;
    if items > per_min {
        return Err(FieldError::new("items", format!("at most {per_min} items a minute may be imported by one caller, so a batch holds at most that many, not {items}")).into());
    }
    spend(env, p, req, LimitClass::BatchItems, items).await
}
