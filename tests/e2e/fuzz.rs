//! A generated bad-input sweep: random methods, paths, query strings, headers
//! and bodies (malformed JSON, wrong types, huge values, invalid UTF-8, path
//! tricks, unknown ids) against every route, and random WebSocket frames.
//! The property: never a 5xx, always the contract's error shape on 4xx, and
//! no panic in the Worker's log.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
    fn string(&mut self, max: usize) -> String {
        const ALPHABET: &[&str] = &["a", "Z", "0", " ", "\"", "\\", "/", "%", "..", "é", "😀", "\u{0}", "\n", "{", "}", "[", "'", ";", "<", "&", "?", "#", "%00", "%2F", "\u{202e}"];
        let n = (self.next() % (max as u64 + 1)) as usize;
        (0..n).map(|_| *self.pick(ALPHABET)).collect()
    }
    fn json(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 5 } else { 7 } {
            0 => Value::Null,
            1 => json!(self.next() % 2 == 0),
            2 => json!((self.next() as i64) >> (self.next() % 64)),
            3 => json!(f64::from_bits(self.next() & 0x7FEF_FFFF_FFFF_FFFF)),
            4 => json!(self.string(40)),
            5 => Value::Array((0..self.next() % 5).map(|_| self.json(depth + 1)).collect()),
            _ => {
                let keys = ["title", "body", "category", "tags", "author", "type", "topic", "after", "x"];
                Value::Object((0..self.next() % 6).map(|_| (self.pick(&keys).to_string(), self.json(depth + 1))).collect())
            }
        }
    }
    fn body(&mut self) -> Vec<u8> {
        match self.next() % 6 {
            0 => self.json(0).to_string().into_bytes(),
            1 => {
                let mut b = self.json(0).to_string().into_bytes();
                let cut = (self.next() as usize) % (b.len() + 1);
                b.truncate(cut);
                b
            }
            2 => (0..self.next() % 64).map(|_| self.next() as u8).collect(),
            3 => json!({"title": self.string(400), "body": self.string(300), "tags": (0..self.next() % 30).map(|_| self.string(50)).collect::<Vec<_>>(), "category": self.string(80)}).to_string().into_bytes(),
            4 => vec![b'['; 1 + (self.next() % 5000) as usize],
            _ => Vec::new(),
        }
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

fn path(g: &mut Gen) -> String {
    let id = match g.next() % 4 {
        0 => uuid::Uuid::new_v4().to_string(),
        1 => "00000000-0000-0000-0000-000000000000".to_string(),
        2 => g.string(20),
        _ => "..%2F..%2Fetc%2Fpasswd".to_string(),
    };
    let enc: String = url_escape(&id);
    let templates = [
        format!("/api/content/{enc}"),
        format!("/api/runs/{enc}"),
        format!("/api/runs/{enc}/cancel"),
        format!("/api/runs/{enc}/retry"),
        format!("/api/sessions/{enc}/ws?token={}", url_escape(&g.string(30))),
        format!("/api/search?q={}&k={}&category={}", url_escape(&g.string(30)), url_escape(&g.string(4)), url_escape(&g.string(8))),
        format!("/api/content?limit={}&cursor={}&status={}", url_escape(&g.string(4)), url_escape(&g.string(12)), url_escape(&g.string(6))),
        "/api/content".to_string(),
        "/api/sessions".to_string(),
        format!("/admin/actors/{}/{enc}", g.pick(&["run", "content", "session", "feed", "x"])),
        format!("/api/{}", url_escape(&g.string(10))),
        "/healthz".to_string(),
    ];
    g.pick(&templates).clone()
}

fn url_escape(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn generated_requests_never_get_a_5xx() {
    let s = &shared().server;
    let mut g = Gen(0xAC70_2026);
    let client = http();
    let mut count = 0;
    for _ in 0..400 {
        let method = reqwest::Method::from_bytes(g.pick(METHODS).as_bytes()).unwrap();
        let p = path(&mut g);
        let mut req = client.request(method.clone(), s.url(&p));
        if g.next() % 4 != 0 {
            req = req.header("content-type", *g.pick(&["application/json", "text/plain", "application/json; charset=utf-8", "application/x-www-form-urlencoded"]));
        }
        if g.next() % 3 == 0 {
            let junk: String = g.string(10).chars().filter(|c| c.is_ascii_graphic()).collect();
            req = req.header("authorization", format!("Bearer {junk}"));
        }
        if method != reqwest::Method::GET {
            req = req.body(g.body());
        }
        let r = send(req).await;
        count += 1;
        assert!(r.status < 500, "{method} {p} → {} {}", r.status, r.body);
        if r.status >= 400 && method != reqwest::Method::OPTIONS {
            assert!(r.body["error"]["code"].is_string(), "{method} {p} → {} without the error shape: {}", r.status, r.body);
        }
    }
    assert_eq!(count, 400);
    assert!(!s.log_text().contains("panicked"), "a panic was logged");
}

#[tokio::test]
async fn generated_frames_never_break_a_session() {
    let s = &shared().server;
    let (sid, token) = new_session(s).await;
    let mut g = Gen(0x50CE_7);
    let mut ws = connect(s, &sid, &token).await;
    for i in 0..60 {
        let frame = match g.next() % 4 {
            0 => g.json(0),
            1 => json!({"type": "subscribe", "topic": g.string(30), "after": g.json(2)}),
            2 => json!({"type": g.string(8)}),
            _ => json!({"type": "unsubscribe", "topic": format!("run:{}", g.string(36))}),
        };
        ws_send(&mut ws, frame).await;
        if i % 10 == 9 {
            // Pace below the rate limit: this sweep is about content, not floods.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    ws_send(&mut ws, json!({"type": "ping"})).await;
    let mut pong = false;
    while let Some(f) = ws_next(&mut ws, Duration::from_secs(10)).await {
        assert!(f["type"].is_string(), "{f}");
        if f["type"] == "pong" {
            pong = true;
            break;
        }
    }
    assert!(pong, "the session still answers after the sweep");
    assert_eq!(s.get("/healthz").await.status, 200);
}
