//! JWT users: parsing, claim checks and key selection, pure and tested
//! natively. Signatures: HS256 here (HMAC, local use only), RS256 and ES256
//! through WebCrypto in `api::auth`, which imports the selected JWK.
//!
//! The token's `alg` is checked against the selected key (its `kty`, and its
//! `alg` when the JWK names one), so a token cannot pick a weaker algorithm
//! than the key was issued for, and `none` is never accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::principal::{valid_tenant, Principal, PrincipalKind, Scope};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: Option<String>,
    pub tenant_claim: String,
    pub hs256_secret: Option<Vec<u8>>,
    /// The `keys` of `JWT_JWKS`.
    pub jwks: Vec<Value>,
}

impl JwtConfig {
    /// `None` unless `JWT_ISSUER` is set: JWT users are off by default.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Option<JwtConfig> {
        let issuer = get("JWT_ISSUER").map(|s| s.trim().to_string()).filter(|s| !s.is_empty())?;
        let jwks = get("JWT_JWKS")
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        Some(JwtConfig {
            issuer,
            audience: get("JWT_AUDIENCE").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            tenant_claim: get("JWT_TENANT_CLAIM").filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "tenant".into()),
            hs256_secret: get("JWT_HS256_SECRET").filter(|s| s.len() >= 32).map(String::into_bytes),
            jwks,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    UnsupportedAlg(String),
    #[error("no configured key verifies this token")]
    NoKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's tenant is not a tenant slug")]
    BadTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Value,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

fn b64(s: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)
}

/// Whether a bearer credential has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.split('.').all(|p| !p.is_empty())
}

pub fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    let mut parts = token.splitn(3, '.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s)) if !h.is_empty() && !p.is_empty() && !s.is_empty() => (h, p, s),
        _ => return Err(JwtError::Malformed),
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Malformed)?;
    let claims: Value = serde_json::from_slice(&b64(p)?).map_err(|_| JwtError::Malformed)?;
    if !claims.is_object() {
        return Err(JwtError::Malformed);
    }
    let alg = match header.alg.as_str() {
        "HS256" => Alg::Hs256,
        "RS256" => Alg::Rs256,
        "ES256" => Alg::Es256,
        other => return Err(JwtError::UnsupportedAlg(other.to_string())),
    };
    Ok(Parsed { alg, kid: header.kid, claims, signing_input: &token[..h.len() + 1 + p.len()], signature: b64(s)? })
}

/// HS256, only when `JWT_HS256_SECRET` is configured (local use).
pub fn verify_hs256(t: &Parsed<'_>, secret: &[u8]) -> Result<(), JwtError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::NoKey)?;
    mac.update(t.signing_input.as_bytes());
    mac.verify_slice(&t.signature).map_err(|_| JwtError::BadSignature)
}

/// The JWK that must verify an RS256 or ES256 token: by `kid` when the token
/// names one, else the only key of the right type.
pub fn select_key<'c>(cfg: &'c JwtConfig, t: &Parsed<'_>) -> Result<&'c Value, JwtError> {
    let (kty, alg) = match t.alg {
        Alg::Rs256 => ("RSA", "RS256"),
        Alg::Es256 => ("EC", "ES256"),
        Alg::Hs256 => return Err(JwtError::UnsupportedAlg("HS256".into())),
    };
    let fits = |k: &&Value| {
        k.get("kty").and_then(Value::as_str) == Some(kty)
            && k.get("alg").and_then(Value::as_str).is_none_or(|a| a == alg)
            && (t.alg != Alg::Es256 || k.get("crv").and_then(Value::as_str) == Some("P-256"))
    };
    let mut candidates = cfg.jwks.iter().filter(fits);
    match &t.kid {
        Some(kid) => candidates.find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)).ok_or(JwtError::NoKey),
        None => {
            let first = candidates.next().ok_or(JwtError::NoKey)?;
            if candidates.next().is_some() {
                return Err(JwtError::NoKey);
            }
            Ok(first)
        }
    }
}

/// Until when a token with these (checked) claims is accepted, in Unix
/// milliseconds: its `exp` plus the leeway. A socket it opened ends then.
pub fn accepted_until(claims: &Value) -> Option<i64> {
    // Saturating: `exp` is the token's word, however large (a cast from f64
    // saturates, and the sums must too).
    let exp = claims.get("exp").and_then(Value::as_f64)? as i64;
    Some(exp.saturating_add(LEEWAY_SECS).saturating_mul(1000))
}

/// Checks `iss`, `aud`, `exp`, `nbf` and turns the claims into a user.
pub fn principal(cfg: &JwtConfig, claims: &Value, now_secs: i64) -> Result<Principal, JwtError> {
    let num = |k: &str| claims.get(k).and_then(Value::as_f64).map(|v| v as i64);
    if claims.get("iss").and_then(Value::as_str) != Some(cfg.issuer.as_str()) {
        return Err(JwtError::WrongIssuer);
    }
    if let Some(aud) = &cfg.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    let exp = num("exp").ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
    if exp.saturating_add(LEEWAY_SECS) <= now_secs {
        return Err(JwtError::Expired);
    }
    if num("nbf").is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECS) > now_secs) {
        return Err(JwtError::NotYetValid);
    }
    let sub = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 200);
    let sub = sub.ok_or_else(|| JwtError::MissingClaim("sub".into()))?;
    let tenant = claims
        .get(&cfg.tenant_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::MissingClaim(cfg.tenant_claim.clone()))?;
    if !valid_tenant(tenant) {
        return Err(JwtError::BadTenant);
    }
    // `scope` is a space-separated string (RFC 8693); unknown scopes are ignored.
    let scopes = match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().filter_map(Scope::parse).collect(),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).filter_map(Scope::parse).collect(),
        _ => Vec::new(),
    };
    Ok(Principal { kind: PrincipalKind::User, tenant: Some(tenant.to_string()), subject: sub.to_string(), scopes, rate_per_min: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn cfg() -> JwtConfig {
        JwtConfig {
            issuer: "https://issuer.test".into(),
            audience: Some("actorline".into()),
            tenant_claim: "tenant".into(),
            hs256_secret: Some(SECRET.to_vec()),
            jwks: vec![
                json!({"kty": "RSA", "kid": "r1", "n": "x", "e": "AQAB"}),
                json!({"kty": "EC", "crv": "P-256", "kid": "e1", "x": "x", "y": "y"}),
            ],
        }
    }

    fn hs256(header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer.test", "aud": "actorline", "sub": "u1", "tenant": "acme", "exp": 2000, "nbf": 900, "scope": "content:write openid"})
    }

    #[test]
    fn hs256_round_trip_and_claims() {
        let t = hs256(json!({"alg": "HS256", "typ": "JWT"}), claims());
        assert!(looks_like_jwt(&t));
        let p = parse(&t).unwrap();
        verify_hs256(&p, SECRET).unwrap();
        assert_eq!(verify_hs256(&p, b"another secret of enough length!!"), Err(JwtError::BadSignature));
        let user = principal(&cfg(), &p.claims, 1000).unwrap();
        assert_eq!(user.kind, PrincipalKind::User);
        assert_eq!(user.tenant.as_deref(), Some("acme"));
        assert_eq!(user.subject, "u1");
        assert_eq!(user.scopes, vec![Scope::Write]);
    }

    #[test]
    fn claim_checks() {
        let c = cfg();
        let with = |k: &str, v: Value| {
            let mut x = claims();
            x[k] = v;
            x
        };
        assert_eq!(principal(&c, &claims(), 2000 + LEEWAY_SECS), Err(JwtError::Expired));
        assert_eq!(principal(&c, &claims(), 900 - LEEWAY_SECS - 1), Err(JwtError::NotYetValid));
        assert_eq!(principal(&c, &with("iss", json!("https://evil")), 1000), Err(JwtError::WrongIssuer));
        assert_eq!(principal(&c, &with("aud", json!("other")), 1000), Err(JwtError::WrongAudience));
        assert!(principal(&c, &with("aud", json!(["x", "actorline"])), 1000).is_ok());
        assert_eq!(principal(&c, &with("tenant", json!("Not A Slug")), 1000), Err(JwtError::BadTenant));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(principal(&c, &no_exp, 1000), Err(JwtError::MissingClaim("exp".into())));
        assert_eq!(accepted_until(&no_exp), None);
        assert_eq!(accepted_until(&claims()), Some((2000 + LEEWAY_SECS) * 1000), "the moment principal() starts refusing it");
        assert!(principal(&c, &claims(), 2000 + LEEWAY_SECS - 1).is_ok());
        assert_eq!(principal(&c, &claims(), 2000 + LEEWAY_SECS), Err(JwtError::Expired));
        let mut no_sub = claims();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(principal(&c, &no_sub, 1000).is_err());
    }

    /// Huge time claims neither wrap nor panic: a far `exp` is accepted
    /// until far away, a far `nbf` is not yet valid.
    #[test]
    fn huge_time_claims_saturate() {
        for exp in [1e16, 1e300, f64::MAX] {
            let mut c = claims();
            c["exp"] = json!(exp);
            assert!(principal(&cfg(), &c, 1000).is_ok(), "{exp}");
            assert!(accepted_until(&c).is_some_and(|t| t > 1_000_000), "{exp}");
        }
        let mut c = claims();
        c["nbf"] = json!(-1e300);
        assert!(principal(&cfg(), &c, 1000).is_ok());
        c["nbf"] = json!(1e300);
        assert_eq!(principal(&cfg(), &c, 1000).unwrap_err(), JwtError::NotYetValid);
        c["nbf"] = json!(900);
        c["exp"] = json!(-1e300);
        assert_eq!(principal(&cfg(), &c, 1000).unwrap_err(), JwtError::Expired);
    }

    #[test]
    fn refuses_none_and_junk() {
        let none = format!("{}.{}.x", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(parse(&none).unwrap_err(), JwtError::UnsupportedAlg("none".into()));
        for junk in ["", "a.b", "a..c", "!!.??.**", "e30.e30.", "e30.W10.eA"] {
            assert!(parse(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn key_selection_follows_kid_and_type() {
        let c = cfg();
        let t = |h: Value| format!("{}.{}.eA", URL_SAFE_NO_PAD.encode(h.to_string()), URL_SAFE_NO_PAD.encode("{}"));
        let rs = t(json!({"alg": "RS256", "kid": "r1"}));
        assert_eq!(select_key(&c, &parse(&rs).unwrap()).unwrap()["kid"], "r1");
        let wrong_kid = t(json!({"alg": "RS256", "kid": "e1"}));
        assert_eq!(select_key(&c, &parse(&wrong_kid).unwrap()), Err(JwtError::NoKey));
        let es = t(json!({"alg": "ES256"}));
        assert_eq!(select_key(&c, &parse(&es).unwrap()).unwrap()["kid"], "e1");
    }
}
