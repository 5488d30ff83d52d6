//! The inspector: auth, registry, inspection, actions, metrics, OpenAPI.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_admin_route_refuses_missing_and_wrong_tokens() {
    let s = &shared().server;
    let sweep = crate::support::fuzz::admin_refusals(s).await;
    assert!(sweep.problems.is_empty(), "{:#?}", sweep.problems);
}

#[tokio::test]
async fn inspecting_runs_content_and_sessions() {
    let s = &shared().server;
    let (cid, run) = s.submit("Inspect me", &document("inspection", 61, 1800), Some("ops")).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");

    let r = s.admin_get(&format!("/admin/actors/run/{run}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "run");
    let stages = r.body["state"]["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 8);
    assert!(stages.iter().all(|st| st["attempts"].as_u64().unwrap() >= 1));
    assert!(r.body["events"]["last_seq"].as_u64().unwrap() >= 17);
    assert!(r.body["events"]["tail"].as_array().unwrap().len() <= 50);
    assert!(r.body["storage"]["events"]["rows"].as_u64().unwrap() > 0);
    assert!(r.body["storage"]["artifacts"].is_object());
    assert!(r.body.get("alarm_at").is_some());

    let c = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    assert_eq!(c.status, 200);
    let artifacts = &c.body["state"]["content"]["artifacts"];
    assert!(artifacts["summary"].is_string(), "{}", c.body);
    assert!(artifacts["keywords"].as_array().is_some_and(|k| !k.is_empty()));

    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    ws_send(&mut ws, json!({"type": "subscribe", "topic": format!("content:{cid}"), "after": 0})).await;
    while let Some(f) = ws_next(&mut ws, Duration::from_secs(10)).await {
        if f["type"] == "ready" {
            break;
        }
    }
    let sess = s.admin_get(&format!("/admin/actors/session/{sid}")).await;
    assert_eq!(sess.status, 200, "{}", sess.body);
    assert_eq!(sess.body["websockets"]["count"], 1);
    let subs = &sess.body["state"]["sockets"][0]["state"]["subs"];
    assert_eq!(subs[0]["t"], format!("content:{cid}"), "{}", sess.body);

    // Listing and filtering the registry.
    let list = s.admin_get("/admin/actors?kind=run&status=completed&limit=5").await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 5);
    assert!(items.iter().all(|i| i["kind"] == "run" && i["status"] == "completed"));
    if let Some(cursor) = list.body["next_cursor"].as_str() {
        let next = s.admin_get(&format!("/admin/actors?kind=run&status=completed&limit=5&cursor={cursor}")).await;
        assert_eq!(next.status, 200);
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert!(next.body["items"].as_array().unwrap().iter().all(|i| !ids.contains(&i["id"].as_str().unwrap())));
    }
}

#[tokio::test]
async fn inspecting_unknown_ids_creates_nothing() {
    let s = &shared().server;
    let count = |b: &serde_json::Value| b["items"].as_array().map(|a| a.len()).unwrap_or(0);
    let before = s.admin_get("/admin/actors?limit=200&kind=content").await;
    let ghost = uuid::Uuid::new_v4();
    let r = s.admin_get(&format!("/admin/actors/content/{ghost}")).await;
    assert_eq!(r.status, 404);
    let r = s.admin_post(&format!("/admin/actors/run/{ghost}/alarm")).await;
    assert_eq!(r.status, 404);
    assert_eq!(s.admin_get("/admin/actors/content/not-a-uuid").await.status, 400);
    assert_eq!(s.admin_get("/admin/actors/robot/x").await.status, 404);
    let after = s.admin_get("/admin/actors?limit=200&kind=content").await;
    assert!(!after.body["items"].as_array().unwrap().iter().any(|i| i["id"] == ghost.to_string().as_str()));
    assert!(count(&after.body) >= count(&before.body));
    assert_eq!(s.get(&format!("/api/content/{ghost}")).await.status, 404);
}

#[tokio::test]
async fn firing_an_alarm_and_metrics() {
    let s = &shared().server;
    let (_, run) = s.submit("Alarm", &document("alarm", 71, 700), None).await;
    let r = s.admin_post(&format!("/admin/actors/run/{run}/alarm")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "run");
    s.wait_run(&run, Duration::from_secs(60)).await;
    let m = s.admin_get("/admin/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.body["runs"]["completed"].as_u64().unwrap() >= 1);
    assert!(m.body["stage_latency"]["embed"]["count"].as_u64().unwrap() >= 1);
    assert!(m.body["stage_latency"]["embed"]["p50_ms"].is_number());
    assert!(m.body["actors"]["content"].is_object());
}

#[tokio::test]
async fn openapi_documents_the_router() {
    let s = &shared().server;
    let r = s.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.0.3");
    for p in ["/api/content", "/api/runs/{id}", "/admin/actors/{kind}/{id}", "/api/search", "/healthz"] {
        assert!(r.body["paths"][p].is_object(), "{p}");
    }
}
