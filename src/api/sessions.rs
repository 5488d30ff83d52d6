//! `/api/sessions`: minting a session and upgrading its WebSocket. The token
//! is checked here, statelessly, so a bad upgrade never wakes an actor.

use uuid::Uuid;
use worker::{Env, Request, Response};

use super::input::{param, query, uuid_param};
use crate::actors::ops::{SessionInfo, SessionPrincipal};
use crate::actors::rpc::{self, ActorKind};
use crate::domain::principal::Principal;
use crate::domain::time::{rfc3339, Millis};
use crate::domain::token;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::SessionGrant;
use crate::runtime::{config, now_ms, var};

pub(super) fn secret(env: &Env) -> ApiResult<Vec<u8>> {
    var(env, "SESSION_SECRET")
        .filter(|s| s.len() >= 16)
        .map(String::into_bytes)
        .ok_or_else(|| ApiError::Unavailable("SESSION_SECRET is not configured".into()))
}

/// A session bound to its creator: the principal is stored in the session
/// actor, and every subscription made through its token is checked against it
/// and counts against `holder`'s caps. It ends no later than the credential
/// that made it (`until`: a user's JWT's `exp`), so a session cannot extend
/// an expiring credential.
pub async fn create(env: &Env, who: &Principal, holder: Option<String>, until: Option<Millis>) -> ApiResult<Response> {
    let cfg = config(env);
    let id = Uuid::new_v4();
    let now = now_ms();
    let expires_ms = until.unwrap_or(i64::MAX).min(now + cfg.session_ttl_secs * 1000);
    let token = token::sign(&secret(env)?, id, expires_ms / 1000);
    let info = SessionInfo { id, created_at: now, expires_at: expires_ms, principal: who.clone(), holder };
    rpc::send(env, &id.to_string(), &info).await?;
    let grant = SessionGrant { session_id: id, token, expires_at: rfc3339(expires_ms) };
    Ok(http::json(200, &grant))
}

pub async fn socket(env: &Env, req: Request, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "session")?;
    let q = query(&req)?;
    check_token(env, id, param(&q, "token"))?;
    require_upgrade(&req)?;
    let stub = rpc::stub(env, ActorKind::Session, &id.to_string())?;
    Ok(stub.fetch_with_request(req).await?)
}

pub fn require_upgrade(req: &Request) -> ApiResult<()> {
    if !crate::http::is_websocket_upgrade(req) {
        return Err(ApiError::BadRequest("expected a WebSocket upgrade (Upgrade: websocket)".into()));
    }
    Ok(())
}

/// A session's principal, after checking the token it was given: the
/// session's id, its principal and when that token expires.
pub async fn principal(env: &Env, id: &str, tok: Option<&str>) -> ApiResult<(Uuid, Principal, Millis)> {
    let id = uuid_param(id, "session")?;
    let expires_unix = check_token(env, id, tok)?;
    let principal = rpc::send(env, &id.to_string(), &SessionPrincipal {}).await?;
    Ok((id, principal, expires_unix * 1000))
}

/// Checks a session token statelessly (a bad one never wakes an actor);
/// answers when it expires, in Unix seconds.
fn check_token(env: &Env, id: Uuid, tok: Option<&str>) -> ApiResult<i64> {
    let tok = tok.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::Unauthorized("token is required".into()))?;
    // A present but bad token is 401 (DESIGN.md, "Principals and access").
    Ok(token::verify(&secret(env)?, id, tok, now_ms() / 1000)?)
}
