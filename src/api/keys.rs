//! `/admin/keys`: API keys for tenants. The key itself is shown once, in the
//! `201` of its creation; only its SHA-256 is stored.

use worker::{Env, Request, Response};

use super::auth::{new_key, sha256_hex};
use super::input::{json_body, param, query};
use crate::catalog::{self, KeyRow};
use crate::domain::content::{is_plain_label, PLAIN_LABEL};
use crate::domain::principal::{valid_tenant, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{KeyInput, KeyPage, KeyView, KEY_NAME_MAX_CHARS, KEY_RATE_MAX};
use crate::runtime::now_ms;

pub async fn create(env: &Env, mut req: Request) -> ApiResult<Response> {
    let body: KeyInput = json_body(&mut req, 4096).await?;
    if !valid_tenant(&body.tenant) {
        return Err(ApiError::invalid("tenant", "must be 1 to 40 of a-z, 0-9 and '-'"));
    }
    if crate::runtime::config(env).trust.reserves(&body.tenant) {
        return Err(ApiError::invalid("tenant", "is reserved: the operator's content, or content from before tenants, is in it"));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > KEY_NAME_MAX_CHARS {
        return Err(ApiError::invalid("name", format!("must be 1 to {KEY_NAME_MAX_CHARS} characters")));
    }
    if !is_plain_label(name) {
        return Err(ApiError::invalid("name", PLAIN_LABEL));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for s in &body.scopes {
        let scope = Scope::parse(s).ok_or_else(|| {
            ApiError::invalid("scopes", format!("{s:?} is not content:read, content:write or content:manage"))
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "must name at least one scope"));
    }
    if body.rate_per_min.is_some_and(|r| r == 0 || r > KEY_RATE_MAX) {
        return Err(ApiError::invalid("rate_per_min", format!("must be from 1 to {KEY_RATE_MAX}")));
    }
    let (key_id, key) = new_key();
    let row = KeyRow {
        key_id,
        tenant: body.tenant,
        name: name.to_string(),
        scopes: serde_json::to_string(&scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>())?,
        rate_per_min: body.rate_per_min.map(f64::from),
        key_hash: sha256_hex(&key),
        created_at: now_ms() as f64,
        revoked_at: None,
    };
    catalog::create_key(env, &row).await?;
    let view = KeyView { key: Some(key), ..row.view() };
    Ok(http::json(201, &view))
}

pub async fn list(env: &Env, req: &Request) -> ApiResult<Response> {
    let q = query(req)?;
    let tenant = param(&q, "tenant");
    if tenant.is_some_and(|t| !valid_tenant(t)) {
        return Err(ApiError::invalid("tenant", "must be 1 to 40 of a-z, 0-9 and '-'"));
    }
    let items: Vec<_> = catalog::list_keys(env, tenant).await?.iter().map(KeyRow::view).collect();
    Ok(http::json(200, &KeyPage { items }))
}

pub async fn revoke(env: &Env, key_id: &str) -> ApiResult<Response> {
    let id = uuid::Uuid::parse_str(key_id).map_err(|_| ApiError::BadRequest("key id must be a UUID".into()))?;
    if !catalog::revoke_key(env, &id.simple().to_string(), now_ms()).await? {
        return Err(ApiError::not_found(format!("key {key_id}")));
    }
    Ok(http::no_content())
}
