//! Who is asking: every request's [`Principal`], worked out here before any
//! actor wakes. No `Authorization` header is the anonymous caller; a header
//! that is present but bad, expired or revoked is `401`, never a silent
//! fall-back to anonymous.
//!
//! API keys are looked up in D1 by their id and compared by SHA-256 hash
//! (only the hash is stored). Each isolate caches a key's verdict for
//! [`KEY_CACHE_MS`] (`domain::key_cache`), so a revoked key is refused within
//! that time everywhere, and a refused one is not looked up again meanwhile.
//! JWTs are verified with WebCrypto (RS256, ES256) or HMAC (HS256, local use).

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{Env, Request};

use crate::catalog;
use crate::config::Trust;
use crate::domain::jwt::{self, Alg, JwtError};
use crate::domain::key_cache::{KeyCache, Verdict};
use crate::domain::principal::{is_key_id, Principal, PrincipalKind, Scope};
use crate::domain::time::Millis;
use crate::domain::token::constant_time_eq;
use crate::error::{ApiError, ApiResult};
use crate::runtime::{config, now_ms};

/// How long an isolate trusts a key it verified: with the actors' rechecks
/// of open sockets, the bound on how late a revocation takes effect.
pub use crate::domain::broadcast::KEY_CACHE_MS;
/// Every API key starts with this, so it is never mistaken for a JWT.
pub const KEY_PREFIX: &str = "alk_";

thread_local! {
    static KEY_CACHE: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(msg.into())
}

pub fn sha256_hex(s: &str) -> String {
    crate::domain::sha256_hex(s.as_bytes())
}

/// The credential of `Authorization: Bearer <credential>`, if the header is there.
fn bearer(header: &str) -> ApiResult<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization must be 'Bearer <credential>'"))
}

fn is_admin_token(trust: &Trust, token: &str) -> bool {
    // Hashes have one length, so the comparison time says nothing.
    trust.admin_token_sha256.as_ref().is_some_and(|admin| constant_time_eq(&Sha256::digest(token.as_bytes()), admin))
}

/// The request's principal, and until when its credential is accepted: a
/// JWT's `exp` (a socket it opens ends then); none for keys (revoked, not
/// expired), the operator and anonymous callers.
pub async fn principal(env: &Env, req: &Request) -> ApiResult<(Principal, Option<Millis>)> {
    let Some(header) = req.headers().get("authorization").ok().flatten() else {
        return Ok((Principal::anonymous(), None));
    };
    let token = bearer(&header)?;
    let trust = config(env).trust;
    if is_admin_token(&trust, token) {
        return Ok((Principal::operator(), None));
    }
    let (p, until) = if token.starts_with(KEY_PREFIX) {
        (api_key(env, token).await?, None)
    } else if let Some(cfg) = trust.jwt.as_ref().filter(|_| jwt::looks_like_jwt(token)) {
        let (user, until) = user(cfg, token).await?;
        (user, Some(until))
    } else {
        return Err(unauthorized("the credential is not an admin token, an API key or an accepted JWT"));
    };
    // A key made before tenants were reserved, or an identity provider's claim.
    if p.tenant.as_deref().is_some_and(|t| trust.reserves(t)) {
        return Err(unauthorized("the credential's tenant is reserved"));
    }
    Ok((p, until))
}

/// `alk_<key id, 32 hex>_<secret>`.
fn key_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_key_id(id) && secret.len() >= 32).then_some(id)
}

async fn api_key(env: &Env, key: &str) -> ApiResult<Principal> {
    let bad = || unauthorized("the API key is not valid or has been revoked");
    let id = key_id_of(key).ok_or_else(bad)?;
    let hash = sha256_hex(key);
    let now = now_ms();
    match KEY_CACHE.with(|c| c.borrow().get(&hash, now)) {
        Some(Verdict::Passed(p)) => return Ok(p),
        Some(Verdict::Refused) => return Err(bad()),
        None => {}
    }
    // A catalog that fails is the caller's 503, not a verdict.
    let row = catalog::find_key(env, id).await?;
    let Some(row) = row.filter(|r| r.revoked_at.is_none() && constant_time_eq(r.key_hash.as_bytes(), hash.as_bytes())) else {
        KEY_CACHE.with(|c| c.borrow_mut().refuse(hash, now));
        return Err(bad());
    };
    let p = Principal {
        kind: PrincipalKind::ApiKey,
        tenant: Some(row.tenant.clone()),
        subject: row.key_id.clone(),
        scopes: row.scopes(),
        rate_per_min: row.rate_per_min.map(|r| r as u32),
    };
    KEY_CACHE.with(|c| c.borrow_mut().pass(hash, p.clone(), now));
    Ok(p)
}

/// A new key: its id and the secret shown once. 244 random bits from two
/// v4 UUIDs (getrandom, i.e. `crypto.getRandomValues` in the Worker).
pub fn new_key() -> (String, String) {
    use base64::Engine;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut secret = Vec::with_capacity(32);
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    (id.clone(), format!("{KEY_PREFIX}{id}_{secret}"))
}

async fn user(cfg: &jwt::JwtConfig, token: &str) -> Result<(Principal, Millis), JwtError> {
    let parsed = jwt::parse(token)?;
    match parsed.alg {
        Alg::Hs256 => {
            let secret = cfg.hs256_secret.as_deref().ok_or_else(|| JwtError::UnsupportedAlg("HS256".into()))?;
            jwt::verify_hs256(&parsed, secret)?;
        }
        Alg::Rs256 | Alg::Es256 => {
            let key = jwt::select_key(cfg, &parsed)?;
            let ok = webcrypto_verify(parsed.alg, key, parsed.signing_input.as_bytes(), &parsed.signature)
                .await
                .map_err(|_| JwtError::BadSignature)?;
            if !ok {
                return Err(JwtError::BadSignature);
            }
        }
    }
    let user = jwt::principal(cfg, &parsed.claims, now_ms() / 1000)?;
    // principal() has checked that `exp` is there.
    let until = jwt::accepted_until(&parsed.claims).ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
    Ok((user, until))
}

fn js_obj(v: &Value) -> Result<JsValue, JsValue> {
    js_sys::JSON::parse(&v.to_string())
}

async fn call_subtle(method: &str, args: &Array) -> Result<JsValue, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let subtle = Reflect::get(&crypto, &"subtle".into())?;
    let f: Function = Reflect::get(&subtle, &method.into())?.dyn_into()?;
    let p: Promise = f.apply(&subtle, args)?.dyn_into()?;
    JsFuture::from(p).await
}

/// RS256 (RSASSA-PKCS1-v1_5 / SHA-256) or ES256 (ECDSA P-256 / SHA-256; the
/// JWT signature is r‖s, the form WebCrypto takes) with the JWK as given.
async fn webcrypto_verify(alg: Alg, jwk: &Value, data: &[u8], sig: &[u8]) -> Result<bool, JsValue> {
    let (import, verify) = match alg {
        Alg::Rs256 => (json!({"name": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"}), json!({"name": "RSASSA-PKCS1-v1_5"})),
        Alg::Es256 => (json!({"name": "ECDSA", "namedCurve": "P-256"}), json!({"name": "ECDSA", "hash": "SHA-256"})),
        Alg::Hs256 => return Ok(false),
    };
    // Only the public parts: a JWK's `key_ops`/`use` must not veto "verify".
    let mut public = serde_json::Map::new();
    if let Some(map) = jwk.as_object() {
        for k in ["kty", "n", "e", "crv", "x", "y", "alg"] {
            if let Some(v) = map.get(k) {
                public.insert(k.to_string(), v.clone());
            }
        }
    }
    let public = Value::Object(public);
    let key = imported_key(alg, &public, &import).await?;
    let args = Array::of4(&js_obj(&verify)?, &key, &Uint8Array::from(sig), &Uint8Array::from(data));
    Ok(call_subtle("verify", &args).await?.as_bool().unwrap_or(false))
}

thread_local! {
    /// Imported verification keys, by algorithm and public JWK. The keys come
    /// from the configuration, so there are a handful, and importing one costs
    /// more than a verify (docs/benchmarks.md, the auth block).
    static IMPORTED: RefCell<HashMap<String, JsValue>> = RefCell::new(HashMap::new());
}

/// Most imported keys kept; past it the map starts over.
const IMPORTED_MAX: usize = 64;

/// The `CryptoKey` of `public` for `alg`, imported once per isolate.
async fn imported_key(alg: Alg, public: &Value, import: &Value) -> Result<JsValue, JsValue> {
    let id = format!("{alg:?}:{public}");
    if let Some(key) = IMPORTED.with(|m| m.borrow().get(&id).cloned()) {
        return Ok(key);
    }
    let usages = Array::of1(&"verify".into());
    let args = Array::of5(&"jwk".into(), &js_obj(public)?, &js_obj(import)?, &JsValue::FALSE, &usages);
    let key = call_subtle("importKey", &args).await?;
    IMPORTED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= IMPORTED_MAX {
            m.clear();
        }
        m.insert(id, key.clone());
    });
    Ok(key)
}

/// `401` for anonymous callers, `403` for a principal without `scope`.
pub fn require(p: &Principal, scope: Scope) -> ApiResult<()> {
    if p.has(scope) {
        Ok(())
    } else if p.kind == PrincipalKind::Anonymous {
        Err(unauthorized(format!("this route needs a credential with {}", scope.as_str())))
    } else {
        Err(ApiError::Forbidden(format!("this route needs {}", scope.as_str())))
    }
}

/// `401` for anonymous callers; anyone else may try, and the actor decides
/// (a change to an item is its owner's, whatever the credential's scopes).
pub fn require_known(p: &Principal) -> ApiResult<()> {
    if p.kind == PrincipalKind::Anonymous {
        return Err(unauthorized("this route needs a credential"));
    }
    Ok(())
}

/// Admin routes: the operator only.
pub fn require_operator(p: &Principal) -> ApiResult<()> {
    match p.kind {
        PrincipalKind::Operator => Ok(()),
        PrincipalKind::Anonymous => Err(unauthorized("admin routes need Authorization: Bearer <ADMIN_TOKEN>")),
        _ => Err(ApiError::Forbidden("admin routes are for the operator".into())),
    }
}
