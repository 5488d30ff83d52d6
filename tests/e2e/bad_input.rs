//! Bad requests get a 4xx in the contract's error shape, never a 5xx; a
//! failure inside gets a 500 that names a request id, never its detail.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn content_validation_errors() {
    let s = &shared().server;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"title": "", "body": "x"}), "title"),
        (json!({"title": "x".repeat(301), "body": "x"}), "title"),
        (json!({"title": "t", "body": ""}), "body"),
        (json!({"title": "t", "body": "x".repeat(200 * 1024 + 1)}), "body"),
        (json!({"title": "t", "body": "b", "tags": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}), "tags"),
        (json!({"title": "t", "body": "b", "tags": ["x".repeat(41)]}), "tags"),
        (json!({"title": "t", "body": "b", "category": "a;b"}), "category"),
        // JSON widens a control character six-fold: a body of them would
        // outgrow what its run may store and fail after a 202.
        (json!({"title": "t", "body": format!("a{}b", "\u{1}".repeat(3))}), "body"),
        (json!({"title": "t", "body": "nul\u{0}"}), "body"),
    ];
    for (body, field) in cases {
        let r = s.post("/api/content", body).await;
        assert_error(&r, 422, "invalid_field");
        assert_eq!(r.body["error"]["field"], field);
    }
    // Wrong types and unknown fields are 422; broken JSON is 400.
    assert_error(&s.post("/api/content", json!({"title": 5, "body": "b"})).await, 422, "invalid_field");
    assert_error(&s.post("/api/content", json!({"title": "t", "body": "b", "titel": "x"})).await, 422, "invalid_field");
    assert_error(&s.post("/api/content", json!([1, 2])).await, 422, "invalid_field");
    let raw = |b: &'static [u8], ct: &str| send(http().post(s.url("/api/content")).bearer_auth(&s.key).header("content-type", ct.to_string()).body(b));
    assert_error(&raw(b"{\"title\":", "application/json").await, 400, "malformed_json");
    assert_error(&raw(b"\xff\xfe{}", "application/json").await, 400, "malformed_json");
    assert_error(&raw(b"", "application/json").await, 400, "malformed_json");
    assert_error(&raw(b"title=x", "application/x-www-form-urlencoded").await, 415, "unsupported_media_type");
    // The body cap is on the decoded text: an encoder that escapes every
    // non-ASCII character (Python's `json`) sends 180,000 bytes of CJK as
    // 360,000. Valid is 202; past the body cap is 422 on the field, not 413.
    let escaped = |chars: usize| format!(r#"{{"title":"escaped","body":"{}"}}"#, "\\u65e5".repeat(chars)).into_bytes();
    let r = send(http().post(s.url("/api/content")).bearer_auth(&s.key).header("content-type", "application/json").body(escaped(60_000))).await;
    assert_eq!(r.status, 202, "180,000 bytes of body, escaped: {}", r.body);
    let r = send(http().post(s.url("/api/content")).bearer_auth(&s.key).header("content-type", "application/json").body(escaped(70_000))).await;
    assert_error(&r, 422, "invalid_field");
    assert_eq!(r.body["error"]["field"], "body");
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let r = send(http().post(s.url("/api/content")).bearer_auth(&s.key).header("content-type", "application/json").body(huge)).await;
    assert_error(&r, 413, "payload_too_large");
}

/// Labels refuse invisible formatting characters (bidi overrides, zero-width
/// spaces, the BOM) that would make them display as something else.
#[tokio::test]
async fn labels_with_invisible_characters_are_refused() {
    let s = &shared().server;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"title": "invoice\u{202E}fdp.exe", "body": "b"}), "title"),
        (json!({"title": "t", "body": "b", "tags": ["ad\u{200B}min"]}), "tags"),
        (json!({"title": "t", "body": "b", "author": "\u{2066}root\u{2069}"}), "author"),
        (json!({"title": "t", "body": "b", "category": "news\u{FEFF}"}), "category"),
    ];
    for (body, field) in cases {
        let r = s.post("/api/content", body).await;
        assert_error(&r, 422, "invalid_field");
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
    }
    let key = json!({"tenant": "labels", "name": "ci\u{202E}", "scopes": ["content:read"]});
    let r = send(http().post(s.url("/admin/keys")).bearer_auth(&s.admin_token).json(&key)).await;
    assert_error(&r, 422, "invalid_field");
    assert_eq!(r.body["error"]["field"], "name");
}

#[tokio::test]
async fn unknown_ids_methods_and_paths() {
    let s = &shared().server;
    let nil = "00000000-0000-4000-8000-000000000000";
    assert_error(&s.get(&format!("/api/content/{nil}")).await, 404, "not_found");
    assert_error(&s.get(&format!("/api/runs/{nil}")).await, 404, "not_found");
    assert_error(&s.post(&format!("/api/runs/{nil}/retry"), json!({})).await, 404, "not_found");
    assert_error(&s.put(&format!("/api/content/{nil}"), json!({"title": "t", "body": "b"})).await, 404, "not_found");
    assert_error(&s.delete(&format!("/api/content/{nil}")).await, 404, "not_found");
    assert_error(&s.get("/api/content/not-a-uuid").await, 400, "bad_request");
    assert_error(&s.get("/api/runs/..%2F..%2Fetc").await, 400, "bad_request");
    assert_error(&s.get("/api/nothing-here").await, 404, "not_found");
    let r = send(http().patch(s.url("/api/content"))).await;
    assert_error(&r, 405, "method_not_allowed");
    assert!(r.headers.get("allow").is_some());
    // A method the runtime's enum lacks must not be read as GET.
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    assert_error(&send(http().request(query, s.url("/api/content"))).await, 405, "method_not_allowed");
    assert_error(&s.get("/api/content?limit=0").await, 422, "invalid_field");
    assert_error(&s.get("/api/content?limit=abc").await, 422, "invalid_field");
    assert_error(&s.get("/api/content?cursor=%27%3B--").await, 422, "invalid_field");
    assert_error(&s.get("/api/content?status=bogus").await, 422, "invalid_field");
}

#[tokio::test]
async fn run_actions_conflict_when_not_allowed() {
    let s = &shared().server;
    let (_, run) = s.submit("Conflicts", &document("conflict", 7, 600), None).await;
    let view = s.wait_run(&run, std::time::Duration::from_secs(60)).await;
    assert_eq!(view["status"], "completed");
    assert_error(&s.post(&format!("/api/runs/{run}/retry"), json!({})).await, 409, "conflict");
    assert_error(&s.post(&format!("/api/runs/{run}/cancel"), json!({})).await, 409, "conflict");
}

/// A D1 failure (its table renamed away under the running server) answers
/// 500 `internal` with a generic message naming a request id: the request's
/// `cf-ray` when it has one, a fresh id otherwise. D1's own text is only in
/// the log, on a line with that id.
#[tokio::test]
async fn an_internal_error_names_a_request_id_and_logs_the_detail() {
    let s = Server::start(&ServerOptions::new(temp_dir("internal-error").join("state")));
    s.d1("ALTER TABLE content RENAME TO content_gone");
    let with_ray = send(http().get(s.url("/api/content")).header("cf-ray", "8f00e2e0ray0001-TST")).await;
    let fresh = send(http().get(s.url("/api/content"))).await;
    for (r, expected) in [(&with_ray, Some("8f00e2e0ray0001-TST")), (&fresh, None)] {
        assert_error(r, 500, "internal");
        assert_eq!(r.body["error"].as_object().map(|o| o.len()), Some(2), "only code and message: {}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        let id = actorline::error::logged_request_id(message).unwrap_or_else(|| panic!("no request id in {message:?}"));
        if let Some(expected) = expected {
            assert_eq!(id, expected);
        }
        assert!(!r.body.to_string().contains("content"), "D1's text reached the client: {}", r.body);
        // wrangler writes the Worker's console output to its log a little later.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = s.log_text();
            if log.lines().any(|l| l.contains(id) && l.contains("no such table")) {
                break;
            }
            assert!(Instant::now() < deadline, "no log line with request id {id} and D1's error");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
