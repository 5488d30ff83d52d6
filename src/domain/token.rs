//! Session tokens: `<expires_unix>.<base64url(HMAC-SHA256(secret, "<session_id>.<expires_unix>"))>`.
//!
//! Stateless, so the Worker checks a WebSocket upgrade without waking the
//! session actor, and bound to one session id so a token cannot open another
//! user's session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token has expired")]
    Expired,
    #[error("token does not belong to this session")]
    BadSignature,
}

fn mac(secret: &[u8], session: Uuid, expires: i64) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(format!("{session}.{expires}").as_bytes());
    m
}

pub fn sign(secret: &[u8], session: Uuid, expires_unix: i64) -> String {
    let tag = mac(secret, session, expires_unix).finalize().into_bytes();
    format!("{expires_unix}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks the token for `session` at `now_unix`. The comparison of tags is
/// constant-time (`verify_slice`).
pub fn verify(secret: &[u8], session: Uuid, token: &str, now_unix: i64) -> Result<i64, TokenError> {
    let (exp, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expires: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    mac(secret, session, expires).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
    if expires <= now_unix {
        return Err(TokenError::Expired);
    }
    Ok(expires)
}

/// Constant-time equality for bearer tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths are folded in as a bool: `len ^ len` as u8 wraps at 256.
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_expire_and_bind() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t = sign(b"secret", a, 1000);
        assert_eq!(verify(b"secret", a, &t, 999), Ok(1000));
        assert_eq!(verify(b"secret", a, &t, 1000), Err(TokenError::Expired));
        assert_eq!(verify(b"secret", b, &t, 10), Err(TokenError::BadSignature));
        assert_eq!(verify(b"other", a, &t, 10), Err(TokenError::BadSignature));
        let forged = t.replacen("1000", "9999", 1);
        assert_eq!(verify(b"secret", a, &forged, 10), Err(TokenError::BadSignature));
        for junk in ["", ".", "abc", "1.!!!", "x.y"] {
            assert_eq!(verify(b"secret", a, junk, 10), Err(TokenError::Malformed), "{junk}");
        }
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", &[b'a'; 257]));
        assert!(!constant_time_eq(b"", &[0u8; 256]));
    }
}
