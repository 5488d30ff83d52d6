//! Bad requests get a 4xx in the contract's error shape, never a 5xx.

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
