//! JWTs for the e2e suite, made with Node's crypto (RS256, ES256, HS256):
//! keys are generated once per test process, the public half goes to the
//! server as `JWT_JWKS`, and tokens are signed on demand.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

pub const ISSUER: &str = "https://issuer.actorline.test";
pub const AUDIENCE: &str = "actorline-e2e";
pub const HS256_SECRET: &str = "e2e-hs256-secret-of-at-least-32-bytes!!";

pub struct JwtKeys {
    pub jwks: Value,
    dir: PathBuf,
}

const KEYGEN: &str = r#"
const crypto = require('crypto'); const fs = require('fs'); const dir = process.argv[1];
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
fs.writeFileSync(dir + '/rsa.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
fs.writeFileSync(dir + '/ec.pem', ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
const keys = [
  Object.assign(rsa.publicKey.export({ format: 'jwk' }), { kid: 'rsa-1', alg: 'RS256', use: 'sig' }),
  Object.assign(ec.publicKey.export({ format: 'jwk' }), { kid: 'ec-1', alg: 'ES256', use: 'sig' }),
];
process.stdout.write(JSON.stringify({ keys }));
"#;

const SIGN: &str = r#"
const crypto = require('crypto'); const fs = require('fs');
const [alg, keyFile, header, claims] = process.argv.slice(1);
const b64 = (b) => Buffer.from(b).toString('base64url');
const input = b64(header) + '.' + b64(claims);
let sig;
if (alg === 'HS256') sig = crypto.createHmac('sha256', keyFile).update(input).digest();
else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), fs.readFileSync(keyFile));
else sig = crypto.sign('sha256', Buffer.from(input), { key: fs.readFileSync(keyFile), dsaEncoding: 'ieee-p1363' });
process.stdout.write(input + '.' + b64(sig));
"#;

pub fn keys() -> &'static JwtKeys {
    static KEYS: OnceLock<JwtKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = super::temp_dir("jwt");
        let out = Command::new("node").arg("-e").arg(KEYGEN).arg(&dir).output().expect("node (JWT keys)");
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        JwtKeys { jwks: serde_json::from_slice(&out.stdout).expect("jwks"), dir }
    })
}

/// The server vars that turn JWT users on.
pub fn server_vars() -> Vec<(&'static str, String)> {
    vec![
        ("JWT_ISSUER", ISSUER.to_string()),
        ("JWT_AUDIENCE", AUDIENCE.to_string()),
        ("JWT_HS256_SECRET", HS256_SECRET.to_string()),
        ("JWT_JWKS", keys().jwks.to_string()),
    ]
}

/// Standard claims for a user of `tenant` with `scope`, valid for an hour.
pub fn claims(sub: &str, tenant: &str, scope: &str) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tenant": tenant, "scope": scope, "iat": now, "nbf": now - 5, "exp": now + 3600 })
}

/// A token signed with `alg` (RS256, ES256 or HS256) over `claims`.
pub fn sign(alg: &str, claims: &Value) -> String {
    let k = keys();
    let (key, kid) = match alg {
        "RS256" => (k.dir.join("rsa.pem").display().to_string(), Some("rsa-1")),
        "ES256" => (k.dir.join("ec.pem").display().to_string(), Some("ec-1")),
        _ => (HS256_SECRET.to_string(), None),
    };
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let out = Command::new("node")
        .arg("-e")
        .arg(SIGN)
        .args([alg, &key, &header.to_string(), &claims.to_string()])
        .output()
        .expect("node (JWT sign)");
    assert!(out.status.success(), "sign: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("token")
}
