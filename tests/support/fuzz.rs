//! Generated bad input and auth probes, shared by the e2e suite and the soak
//! (R3, R4): random methods, paths, query strings, headers and bodies
//! (malformed JSON, wrong types, huge values, invalid UTF-8, path tricks,
//! unknown ids) against every route, random WebSocket frames, and every admin
//! route and WebSocket upgrade with missing or wrong credentials.
//!
//! A sweep never panics on what the server answers: it returns what it saw, so
//! the e2e tests can assert on it and the soak can count it in its report.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{connect, http, new_session, send, try_send, ws_next, Reply, Server};

/// A seeded generator (splitmix64), so a failing sweep replays from its seed.
pub struct Gen(pub u64);

impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub fn string(&mut self, max: usize) -> String {
        const ALPHABET: &[&str] = &["a", "Z", "0", " ", "\"", "\\", "/", "%", "..", "é", "😀", "\u{0}", "\n", "{", "}", "[", "'", ";", "<", "&", "?", "#", "%00", "%2F", "\u{202e}"];
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| *self.pick(ALPHABET)).collect()
    }
    pub fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!((self.next() as i64) >> (self.next() % 64)),
            3 => json!(f64::from_bits(self.next() & 0x7FEF_FFFF_FFFF_FFFF)),
            4 => json!(self.string(40)),
            5 => Value::Array((0..self.below(5)).map(|_| self.json(depth + 1)).collect()),
            _ => {
                let keys = ["title", "body", "category", "tags", "author", "type", "topic", "after", "x"];
                Value::Object((0..self.below(6)).map(|_| (self.pick(&keys).to_string(), self.json(depth + 1))).collect())
            }
        }
    }
    fn body(&mut self) -> Vec<u8> {
        match self.below(6) {
            0 => self.json(0).to_string().into_bytes(),
            1 => {
                let mut b = self.json(0).to_string().into_bytes();
                let cut = self.below(b.len() as u64 + 1) as usize;
                b.truncate(cut);
                b
            }
            2 => (0..self.below(64)).map(|_| self.next() as u8).collect(),
            3 => json!({"title": self.string(400), "body": self.string(300), "tags": (0..self.below(30)).map(|_| self.string(50)).collect::<Vec<_>>(), "category": self.string(80)}).to_string().into_bytes(),
            4 => vec![b'['; 1 + self.below(5000) as usize],
            _ => Vec::new(),
        }
    }
}

pub fn url_escape(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A path on one of the router's routes (or near one), with a bad or unknown id.
fn path(g: &mut Gen) -> String {
    let id = match g.below(4) {
        0 => uuid::Uuid::new_v4().to_string(),
        1 => "00000000-0000-0000-0000-000000000000".to_string(),
        2 => g.string(20),
        _ => "..%2F..%2Fetc%2Fpasswd".to_string(),
    };
    let enc = url_escape(&id);
    let kind = *g.pick(&["run", "content", "session", "feed", "x"]);
    let junk = |g: &mut Gen, n| url_escape(&g.string(n));
    let templates = [
        format!("/api/content/{enc}"),
        format!("/api/runs/{enc}"),
        format!("/api/runs/{enc}/cancel"),
        format!("/api/runs/{enc}/retry"),
        format!("/api/sessions/{enc}/ws?token={}", junk(g, 30)),
        format!("/api/search?q={}&k={}&category={}", junk(g, 30), junk(g, 4), junk(g, 8)),
        format!("/api/content?limit={}&cursor={}&status={}", junk(g, 4), junk(g, 12), junk(g, 6)),
        "/api/content".to_string(),
        "/api/sessions".to_string(),
        "/api/openapi.json".to_string(),
        format!("/admin/actors/{kind}/{enc}"),
        format!("/admin/actors/{kind}/{enc}/alarm"),
        format!("/admin/actors?kind={}&status={}&limit={}&cursor={}", junk(g, 8), junk(g, 8), junk(g, 4), junk(g, 12)),
        "/admin/dead-letters".to_string(),
        "/admin/metrics".to_string(),
        "/admin/keys".to_string(),
        format!("/admin/keys/{enc}"),
        "/api/me".to_string(),
        format!("/api/{}", junk(g, 10)),
        "/healthz".to_string(),
    ];
    g.pick(&templates).clone()
}

/// Whether the Worker answers `url` (`run_worker_first` in wrangler.toml);
/// static assets answer the rest, outside the API's error contract. A path
/// such as `/api/%2E%2E` is a dot segment and resolves to `/`.
fn worker_route(url: &str) -> bool {
    let path = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    path.starts_with("/api/") || path.starts_with("/admin/") || path == "/healthz"
}

/// One generated request, drawn up front so the sweep can run concurrently and
/// still replay from its seed.
struct Probe {
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    auth: Option<String>,
    body: Option<Vec<u8>>,
}

fn probe(g: &mut Gen, admin_token: &str, key: &str) -> Probe {
    let method = reqwest::Method::from_bytes(g.pick(METHODS).as_bytes()).unwrap();
    let path = path(g);
    let content_type = (g.below(4) != 0).then(|| *g.pick(&["application/json", "text/plain", "application/json; charset=utf-8", "application/x-www-form-urlencoded"]));
    // Junk tokens, and sometimes the real admin token or a tenant's key so
    // handlers see bad input past auth.
    let auth = match g.below(7) {
        0 | 1 => Some(format!("Bearer {}", g.string(10).chars().filter(|c| c.is_ascii_graphic()).collect::<String>())),
        2 => Some(format!("Bearer {admin_token}")),
        3 => Some(format!("Bearer {key}")),
        _ => None,
    };
    let body = (method != reqwest::Method::GET).then(|| g.body());
    Probe { method, path, content_type, auth, body }
}

/// What a sweep did and what went wrong, one line per problem.
#[derive(Debug, Default)]
pub struct Sweep {
    pub requests: usize,
    /// 5xx the harness's HTTP counter cannot see (WebSocket upgrades).
    pub server_errors: usize,
    pub problems: Vec<String>,
}

impl Sweep {
    pub fn add(&mut self, other: Sweep) {
        self.requests += other.requests;
        self.server_errors += other.server_errors;
        self.problems.extend(other.problems);
    }
}

/// `n` generated requests, `concurrency` at a time. Problems: a 5xx, a 4xx
/// without the contract's error shape, a transport error.
pub async fn request_sweep(s: &Server, seed: u64, n: usize, concurrency: usize) -> Sweep {
    let mut g = Gen(seed);
    let probes: Vec<Probe> = (0..n).map(|_| probe(&mut g, &s.admin_token, &s.key)).collect();
    let client = http();
    let outcomes: Vec<(Probe, Result<Reply, String>)> = futures_util::stream::iter(probes)
        .map(|p| {
            let mut req = client.request(p.method.clone(), s.url(&p.path));
            if let Some(ct) = p.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(a) = &p.auth {
                req = req.header("authorization", a.as_str());
            }
            if let Some(b) = &p.body {
                req = req.body(b.clone());
            }
            async move { (p, try_send(req).await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut sweep = Sweep { requests: n, ..Sweep::default() };
    for (p, r) in outcomes {
        let what = format!("{} {}", p.method, p.path);
        match r {
            Err(e) => sweep.problems.push(format!("{what} → transport error {e}")),
            Ok(r) if r.status >= 500 => sweep.problems.push(format!("{what} → {} {}", r.status, r.body)),
            Ok(r) if r.status >= 400 && p.method != reqwest::Method::OPTIONS && worker_route(&s.url(&p.path)) && !r.body["error"]["code"].is_string() => {
                sweep.problems.push(format!("{what} → {} without the error shape: {}", r.status, r.body));
            }
            Ok(_) => {}
        }
    }
    sweep
}

/// `n` generated frames on one session's socket: JSON of every shape, raw
/// text and binary. Paced below the rate limit (this is about content, not
/// floods). Problems: an untyped server frame, or no pong at the end.
pub async fn frame_sweep(s: &Server, seed: u64, n: usize) -> Sweep {
    let (sid, token) = new_session(s).await;
    let mut g = Gen(seed);
    let mut ws = connect(s, &sid, &token).await;
    let mut sweep = Sweep::default();
    for i in 0..n {
        let frame = match g.below(6) {
            0 => Message::Text(g.json(0).to_string().into()),
            1 => Message::Text(json!({"type": "subscribe", "topic": g.string(30), "after": g.json(2)}).to_string().into()),
            2 => Message::Text(json!({"type": g.string(8)}).to_string().into()),
            3 => Message::Text(json!({"type": "unsubscribe", "topic": format!("run:{}", g.string(36))}).to_string().into()),
            4 => Message::Text(g.string(60).into()),
            _ => Message::Binary((0..g.below(64)).map(|_| g.next() as u8).collect::<Vec<u8>>().into()),
        };
        if let Err(e) = ws.send(frame).await {
            sweep.problems.push(format!("frame {i}: the socket broke: {e}"));
            return sweep;
        }
        sweep.requests += 1;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let _ = ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await;
    let mut pong = false;
    while let Some(f) = ws_next(&mut ws, Duration::from_secs(10)).await {
        if !f["type"].is_string() {
            sweep.problems.push(format!("an untyped frame: {f}"));
        }
        if f["type"] == "pong" {
            pong = true;
            break;
        }
    }
    if !pong {
        sweep.problems.push("the session no longer answers a ping after the sweep".into());
    }
    sweep
}

/// Every admin route the server documents (`/api/openapi.json`), each without
/// a token, with wrong ones, with the wrong scheme (401) and with a tenant's
/// key (403), and spelled with extra leading slashes: all refused with the
/// contract's error shape.
pub async fn admin_refusals(s: &Server) -> Sweep {
    let doc = send(http().get(s.url("/api/openapi.json"))).await.body;
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        if !path.starts_with("/admin") {
            continue;
        }
        let path = path
            .replace("{kind}", "run")
            .replace("{id}", "00000000-0000-4000-8000-000000000000")
            .replace("{key_id}", "00000000000040008000000000000000");
        for method in ops.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()) {
            routes.push((method, path.clone()));
        }
    }
    let mut sweep = Sweep::default();
    if routes.len() < 5 {
        sweep.problems.push(format!("the OpenAPI document lists only {} admin routes", routes.len()));
    }
    // A bad credential is 401; a good one that is not the operator's is 403.
    let near_miss = format!("Bearer {}x", s.admin_token);
    let tenant_key = format!("Bearer {}", s.key);
    let cases: [(Option<&str>, u16, &str); 7] = [
        (None, 401, "unauthorized"),
        (Some("Bearer wrong-token"), 401, "unauthorized"),
        (Some(near_miss.as_str()), 401, "unauthorized"),
        (Some("Bearer "), 401, "unauthorized"),
        (Some("Basic abc"), 401, "unauthorized"),
        (Some(s.admin_token.as_str()), 401, "unauthorized"),
        (Some(tenant_key.as_str()), 403, "forbidden"),
    ];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // A path the runtime passes on as sent (`//admin/keys`) is no way
        // round the operator's check: it names no route, or is refused.
        for spelled in [format!("/{path}"), format!("//{path}")] {
            let r = send(http().request(m.clone(), s.url(&spelled))).await;
            sweep.requests += 1;
            if !matches!(r.status, 401 | 404) || !r.body["error"]["code"].is_string() {
                sweep.problems.push(format!("{method} {spelled} without a token → {} {}", r.status, r.body));
            }
        }
        for (auth, status, code) in &cases {
            let mut req = http().request(m.clone(), s.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", *a);
            }
            let r = send(req).await;
            sweep.requests += 1;
            if r.status != *status || r.body["error"]["code"] != *code {
                sweep.problems.push(format!("{method} {path} with {auth:?} → {} {} (want {status} {code})", r.status, r.body));
            }
        }
    }
    sweep
}

/// Real WebSocket upgrades with missing, garbage, foreign, tampered and
/// unsigned tokens, and a bad session id: all refused before the upgrade.
pub async fn ws_upgrade_refusals(s: &Server) -> Sweep {
    let (sid, token) = new_session(s).await;
    let (other, _) = new_session(s).await;
    let (exp, sig) = token.split_once('.').expect("token is <expiry>.<signature>");
    let cases: Vec<(String, &[u16])> = vec![
        (format!("/api/sessions/{sid}/ws"), &[401]),
        (format!("/api/sessions/{sid}/ws?token="), &[401]),
        (format!("/api/sessions/{sid}/ws?token=garbage"), &[401]),
        (format!("/api/sessions/{other}/ws?token={token}"), &[401]),
        (format!("/api/sessions/{sid}/ws?token=1000.{sig}"), &[401, 403]),
        (format!("/api/sessions/{sid}/ws?token={exp}.{}", sig.chars().rev().collect::<String>()), &[401, 403]),
        (format!("/api/sessions/{sid}/ws?token={exp}"), &[401, 403]),
        (format!("/api/sessions/not-a-uuid/ws?token={token}"), &[400]),
    ];
    let mut sweep = Sweep::default();
    for (path, want) in cases {
        sweep.requests += 1;
        match tokio_tungstenite::connect_async(s.ws_url(&path)).await {
            Ok(_) => sweep.problems.push(format!("{path}: upgraded")),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body: Value = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
                if status >= 500 {
                    sweep.server_errors += 1;
                }
                // The client keeps a refusal's body only if it came in the same read; check it when it did.
                if !want.contains(&status) || !(body.is_null() || body["error"]["code"].is_string()) {
                    sweep.problems.push(format!("{path}: {status} {body} (want {want:?} and the error shape)"));
                }
            }
            Err(e) => sweep.problems.push(format!("{path}: {e}")),
        }
    }
    sweep
}
