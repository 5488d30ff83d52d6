//! From the Worker to every actor class, and state that survives a restart.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn healthz_reports_version_and_backends() {
    let s = &shared().server;
    // Anyone (a tenant's key, no credential) sees only the status.
    let anonymous = send(http().get(s.url("/healthz"))).await;
    for r in [s.get("/healthz").await, anonymous] {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, json!({ "status": "ok" }));
    }
    // A bad credential is 401 here too, never a silent anonymous answer.
    for path in ["/healthz", "/api/openapi.json"] {
        let bad = send(http().get(s.url(path)).bearer_auth("not-a-credential")).await;
        assert_eq!((bad.status, bad.body["error"]["code"].as_str()), (401, Some("unauthorized")), "{path}: {}", bad.body);
    }
    // The operator sees the backends.
    let r = s.admin_get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["backends"]["ai"], "local");
    assert_eq!(r.body["backends"]["vectors"], "actor");
    assert_eq!(r.body["backends"]["analyzer"], "url");
    assert!(r.body["version"].is_string());
}

/// What a deploy left out shows on `/healthz` before anyone trips on it:
/// `SESSION_SECRET` under 16 bytes, or `ANALYZER=container` where the
/// runtime gives the analyzer's actor no container, make the answer
/// degraded (503), the operator sees why, and session creation is the 503
/// it names. (On a server of its own.)
#[tokio::test]
async fn a_short_session_secret_or_a_missing_container_makes_healthz_degraded() {
    let options = ServerOptions::new(temp_dir("short-secret").join("state")).var("SESSION_SECRET", "too-short").var("ANALYZER", "container");
    let s = &Server::start(&options);
    let r = send(http().get(s.url("/healthz"))).await;
    assert_eq!((r.status, r.body.clone()), (503, json!({ "status": "degraded" })));
    let r = s.admin_get("/healthz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let why = r.body["problems"]["session_secret"].as_str().unwrap_or_default();
    assert!(why.contains("SESSION_SECRET"), "{}", r.body);
    assert!(r.body["problems"].get("admin_token").is_none(), "the harness's ADMIN_TOKEN is long enough: {}", r.body);
    let why = r.body["problems"]["analyzer"].as_str().unwrap_or_default();
    assert!(why.contains("no container"), "{}", r.body);
    assert_eq!(r.body["backends"]["analyzer"], "container", "as configured, since the actor runs none: {}", r.body);
    let session = send(http().post(s.url("/api/sessions")).json(&json!({}))).await;
    assert_eq!((session.status, session.body["error"]["code"].as_str()), (503, Some("unavailable")), "{}", session.body);
}

#[tokio::test]
async fn static_assets_are_served() {
    let r = send(http().get(shared().server.url("/"))).await;
    assert_eq!(r.status, 200);
    let kind = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(r.body.as_str().is_some_and(|page| page.contains("<title>Actorline</title>")), "the web client's page: {}", r.body);
}

#[tokio::test]
async fn every_actor_class_is_reachable_through_the_worker() {
    let s = &shared().server;
    // ContentActor and PipelineActor (and through the run: VectorIndexActor, FeedActor, AnalyzerContainer).
    let (cid, run) = s.submit("Reachability", &document("reachability", 1, 1500), Some("test")).await;
    let view = s.wait_run(&run, Duration::from_secs(60)).await;
    assert_eq!(view["status"], "completed", "{view}");
    let c = s.get(&format!("/api/content/{cid}")).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body["status"], "indexed");
    let shard = s.admin_get("/admin/actors/vector_index/shard-0").await;
    assert_eq!(shard.status, 200, "{}", shard.body);
    assert_eq!((shard.body["kind"].as_str(), shard.body["id"].as_str()), (Some("vector_index"), Some("shard-0")), "{}", shard.body);
    // Only names a shard can have: no actor is woken (and no table made) for another.
    for name in ["shard-00", "shard-256", "shard-4294967295", "shard--1"] {
        let r = s.admin_get(&format!("/admin/actors/vector_index/{name}")).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (404, Some("not_found")), "{name}: {}", r.body);
    }
    let feed = s.admin_get("/admin/actors/feed/feed").await;
    assert_eq!(feed.status, 200);
    assert!(feed.body["events"]["last_seq"].as_u64().unwrap() >= 1);
    let analyzer = s.admin_get("/admin/actors/analyzer/analyzer").await;
    assert_eq!(analyzer.status, 200);
    // SessionActor: a socket answers ping.
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws, Duration::from_secs(10)).await, Some(json!({"type": "pong"})));
}

#[tokio::test]
async fn state_persists_across_a_restart_on_the_same_state_dir() {
    let dir = temp_dir("persist");
    let opts = ServerOptions::new(dir.clone());
    let (cid, run, sid, token) = {
        let s = Server::start(&opts);
        let (cid, run) = s.submit("Persistent", &document("persistence", 2, 1200), None).await;
        assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
        let (sid, token) = new_session(&s).await;
        (cid, run, sid, token)
    }; // dropped: wrangler dev stopped
    let s = Server::start(&opts);
    let c = s.get(&format!("/api/content/{cid}")).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["status"], "indexed");
    assert!(c.body["summary"].is_string());
    let r = s.get(&format!("/api/runs/{run}")).await;
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["stages"].as_array().unwrap().len(), 8);
    let mut ws = connect(&s, &sid, &token).await;
    ws_send(&mut ws, json!({"type": "subscribe", "topic": format!("run:{run}"), "after": 0})).await;
    let first = ws_next(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["type"], "subscribed");
    let list = s.get("/api/content?limit=10").await;
    assert!(list.body["items"].as_array().unwrap().iter().any(|i| i["id"] == cid.as_str()));
}
