//! The inspector: auth, registry, inspection, actions, metrics, OpenAPI.

use std::time::Duration;

use serde_json::{json, Value};

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
    // A completed run keeps its view and events, not its copies: the item
    // holds what was published.
    assert_eq!(r.body["storage"]["artifacts"]["rows"], 0, "{}", r.body["storage"]);
    assert_eq!(r.body["state"]["has_document"], false, "{}", r.body["state"]);
    assert!(r.body.get("alarm_at").is_some());

    let c = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    assert_eq!(c.status, 200);
    let artifacts = &c.body["state"]["content"]["artifacts"];
    assert!(artifacts["summary"].is_string(), "{}", c.body);
    assert!(artifacts["keywords"].as_array().is_some_and(|k| !k.is_empty()));
    // Its duties were done before `publish` answered, so nothing is owed and
    // no alarm waits to wake it (a lease seen mid-drain once armed one).
    assert_eq!(c.body["state"]["outbox"], json!([]), "{}", c.body);
    assert!(c.body["alarm_at"].is_null(), "an idle item has no alarm: {}", c.body["alarm_at"]);

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
    let ghost = uuid::Uuid::new_v4();
    let r = s.admin_get(&format!("/admin/actors/content/{ghost}")).await;
    assert_eq!(r.status, 404);
    let r = s.admin_post(&format!("/admin/actors/run/{ghost}/alarm")).await;
    assert_eq!(r.status, 404);
    // The path names an actor: a name no actor of the kind has is not found.
    assert_eq!(s.admin_get("/admin/actors/content/not-a-uuid").await.status, 404);
    assert_eq!(s.admin_get("/admin/actors/robot/x").await.status, 404);
    // Asked again, after the inspection and the alarm: still nothing there.
    assert_eq!(s.admin_get(&format!("/admin/actors/content/{ghost}")).await.status, 404);
    assert_eq!(s.admin_get(&format!("/admin/actors/run/{ghost}")).await.status, 404);
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

/// Firing a session's alarm runs its work (the key check, the poll, the
/// expiry), not only an inspection: a session of a revoked key ends at once.
/// Failed before: the route only inspected, and the session stood.
#[tokio::test]
async fn firing_a_sessions_alarm_runs_its_key_check() {
    let s = &shared().server;
    let created = send(http().post(s.url("/admin/keys")).bearer_auth(&s.admin_token).json(&json!({"tenant": unique_tenant("alarm"), "name": "tab", "scopes": ["content:read"]}))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["key"].as_str().unwrap();
    let session = send(http().post(s.url("/api/sessions")).bearer_auth(key).json(&json!({}))).await;
    assert_eq!(session.status, 200, "{}", session.body);
    let sid = session.body["session_id"].as_str().unwrap();
    let path = format!("/admin/actors/session/{sid}");
    let r = s.admin_post(&format!("{path}/alarm")).await;
    assert_eq!(r.status, 200, "a live session's alarm: {}", r.body);
    assert_eq!(r.body["kind"], "session");
    let id = created.body["key_id"].as_str().unwrap();
    assert_eq!(send(http().delete(s.url(&format!("/admin/keys/{id}"))).bearer_auth(&s.admin_token)).await.status, 204);
    // The session's key check is throttled to one per few seconds per instance.
    eventually("the fired alarm ends the revoked key's session", Duration::from_secs(20), || async {
        let r = s.admin_post(&format!("{path}/alarm")).await;
        if r.status == 404 { Ok(()) } else { Err(format!("{}: {}", r.status, r.body)) }
    })
    .await;
    assert_eq!(s.admin_get(&path).await.status, 404, "the ended session is gone");
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

    // What the server sends has every field its documented schema requires,
    // with the documented JSON type (the schemas are generated from the types).
    let doc = r.body;
    let (cid, run) = s.submit("Schema check", &document("schemas", 71, 900), None).await;
    s.wait_run(&run, Duration::from_secs(60)).await;
    let checks = [
        ("/api/content/{id}", "get", s.get(&format!("/api/content/{cid}")).await),
        ("/api/runs/{id}", "get", s.get(&format!("/api/runs/{run}")).await),
        ("/api/search", "get", s.get("/api/search?q=schemas").await),
        ("/api/content", "get", s.get("/api/content?limit=3").await),
        ("/api/me", "get", s.get("/api/me").await),
    ];
    for (path, method, reply) in checks {
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let schema_ref = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no typed response"));
        let problems = conformance(&doc, schema_ref, &reply.body, path);
        assert!(problems.is_empty(), "{path} does not match {schema_ref}: {problems:#?}");
    }
}

/// Where `value` departs from the schema `schema_ref` of `doc`: a missing
/// required field or a JSON type other than the documented one (recursively).
fn conformance(doc: &serde_json::Value, schema_ref: &str, value: &serde_json::Value, at: &str) -> Vec<String> {
    let name = schema_ref.trim_start_matches("#/components/schemas/");
    let schema = &doc["components"]["schemas"][name];
    check_schema(doc, schema, value, at)
}

fn check_schema(doc: &serde_json::Value, schema: &serde_json::Value, value: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value;
    if let Some(r) = schema["$ref"].as_str() {
        return conformance(doc, r, value, at);
    }
    if value.is_null() && schema["nullable"] == true {
        return vec![];
    }
    let mut out = Vec::new();
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{at}: {value} is not {}", schema["type"]));
        return out;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Value::Object(fields) = value {
        for req in schema["required"].as_array().into_iter().flatten() {
            let key = req.as_str().unwrap_or_default();
            if !fields.contains_key(key) {
                out.push(format!("{at}: required field {key} is missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, sub) in props {
                if let Some(v) = fields.get(k) {
                    out.extend(check_schema(doc, sub, v, &format!("{at}.{k}")));
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            out.extend(check_schema(doc, item_schema, v, &format!("{at}[{i}]")));
        }
    }
    out
}

/// Every actor kind is inspectable, the rate limiter's buckets too
/// (`rate_limit/<class>:<tenant>:<subject>:<is user>`): a key that made one
/// write of its 5 a minute shows a bucket below 5; a bucket never used is
/// full (`null`); a name no bucket can have is 404. It was 404 for every name.
#[tokio::test]
async fn a_principals_rate_limit_bucket_is_inspectable() {
    let s = &shared().server;
    let tenant = unique_tenant("bucket");
    let key = mint_key(&s.base, &s.admin_token, &tenant, &["content:write"], Some(5));
    let key_id = key.split('_').nth(1).expect("alk_<id>_<secret>").to_string();
    let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({"title": "One write", "body": document("bucket", 85, 400)}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let path = format!("/admin/actors/rate_limit/write:{tenant}:{key_id}:0");
    let v = s.admin_get(&path).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!((v.body["kind"].as_str(), v.body["id"].as_str()), (Some("rate_limit"), Some(&path["/admin/actors/rate_limit/".len()..])), "{}", v.body);
    let bucket = &v.body["state"]["bucket"];
    assert_eq!(bucket["per_min"], 5, "{}", v.body);
    assert!(bucket["tokens"].as_f64().is_some_and(|t| t < 5.0), "one write spent: {}", v.body);
    let unused = s.admin_get(&format!("/admin/actors/rate_limit/read:{tenant}:{key_id}:0")).await;
    assert_eq!((unused.status, &unused.body["state"]["bucket"]), (200, &json!(null)), "{}", unused.body);
    let fired = s.admin_post(&format!("{path}/alarm")).await;
    assert_eq!(fired.status, 200, "{}", fired.body);
    for bad in ["nope", "write:", "burst:x"] {
        let r = s.admin_get(&format!("/admin/actors/rate_limit/{bad}")).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
    }
}

/// The logs that hold user text keep their retention where nobody searches:
/// the Worker's daily cron trigger (run here as `wrangler dev
/// --test-scheduled` runs it) drops a search logged 8 days ago and a dead
/// letter of 31 days, and keeps this week's. Nothing pruned them before
/// but a search or the dead-letter listing.
#[tokio::test]
async fn the_daily_trigger_prunes_old_search_logs_and_dead_letters() {
    // Its own server: it uses `Server::d1` (see there).
    let own = Server::start(&ServerOptions::new(temp_dir("retention").join("state")));
    let s = &own;
    // A search is logged (after its answer, by waitUntil) and counted by
    // the metrics; on a server of its own, that row is the only one.
    let query = format!("logged {}", uuid::Uuid::new_v4().simple());
    let r = send(http().get(s.url("/api/search")).bearer_auth(&s.key).query(&[("q", query.as_str())])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Polled through the Worker: reading D1 from outside while the log's
    // write is pending could make that write fail (see `Server::d1`).
    let m = eventually("the search logged", Duration::from_secs(10), || async {
        let m = s.admin_get("/admin/metrics").await;
        if m.body["search_latency"]["count"] == 1 { Ok(m) } else { Err(m.body.to_string()) }
    })
    .await;
    assert!(m.body["search_latency"]["p50_ms"].is_number(), "{}", m.body);
    let logged = s.d1("SELECT q FROM search_log");
    assert!(logged.iter().any(|r| r["q"] == query.as_str()), "the query itself is logged: {logged:?}");
    let day: i64 = 24 * 3600 * 1000;
    let now = unix_ms() as i64;
    s.d1(&format!(
        "INSERT INTO search_log (q, k, category, mode, results, took_ms, at) VALUES ('old secret', 5, NULL, 'hybrid', 1, 3, {}), ('new', 5, NULL, 'hybrid', 1, 3, {});
         INSERT INTO runs (id, content_id, version, status, error, created_at, updated_at, finished_at) VALUES
           ('old-dead-letter', 'c', 1, 'failed', 'old error text', 0, 0, {}), ('new-dead-letter', 'c', 1, 'failed', 'error text', 0, 0, {})",
        now - 8 * day,
        now - day,
        now - 31 * day,
        now - day
    ));
    let r = send(http().get(s.url("/__scheduled?cron=17+3+*+*+*"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let left = |sql: &str| s.d1(sql).iter().filter_map(|r| r["k"].as_str().map(str::to_string)).collect::<Vec<_>>();
    eventually("the trigger's prune", Duration::from_secs(20), || async {
        let logs = left("SELECT q AS k FROM search_log ORDER BY id");
        let runs = left("SELECT id AS k FROM runs WHERE status = 'failed' ORDER BY id");
        if logs == [query.as_str(), "new"] && runs == ["new-dead-letter"] { Ok(()) } else { Err(format!("search log {logs:?}, dead letters {runs:?}")) }
    })
    .await;
    // The metric counts what the dead-letter list holds, not every failed run registered.
    let listed = s.admin_get("/admin/dead-letters").await.body["items"].as_array().map(Vec::len);
    assert_eq!(listed, Some(1));
    let m = s.admin_get("/admin/metrics").await;
    assert_eq!(m.body["dead_letters"], 1, "{}", m.body);
}

/// After a D1 restore that lost an item's rows, the reconciliation route
/// rewrites them from the actors; a catalog row whose actor holds nothing is
/// removed. Until then, the unregistered actors are still inspectable.
#[tokio::test]
async fn reconciliation_rewrites_the_catalog_from_the_actors() {
    // Its own server: it uses `Server::d1` (see there).
    let own = Server::start(&ServerOptions::new(temp_dir("reconcile").join("state")));
    let s = &own;
    let (cid, run) = s.submit("Reconcile me", &document("reconciliation", 67, 900), None).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
    let count = |table: &str, col: &str, id: &str| s.d1(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {col} = '{id}'"))[0]["n"].as_u64();
    // The outbox lands the rows; wait for the content row to show indexed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.d1(&format!("SELECT status FROM content WHERE id = '{cid}'")).first().map(|r| r["status"] != "indexed").unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "catalog row never showed indexed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restore from before the item: its rows are gone, its actors are not.
    s.d1(&format!(
        "DELETE FROM content WHERE id = '{cid}'; DELETE FROM runs WHERE id = '{run}'; DELETE FROM actors WHERE id IN ('{cid}', '{run}')"
    ));
    assert_eq!(count("content", "id", &cid), Some(0));
    let r = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    assert_eq!(r.status, 200, "an unregistered actor is still inspectable: {}", r.body);
    assert_eq!(r.body["registered"], false);

    let r = s.admin_post(&format!("/admin/reconcile?ids={cid}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"][0]["outcome"], "rewritten", "{}", r.body);
    assert_eq!(r.body["items"][0]["actor"]["runs"][0]["ok"], true, "{}", r.body);
    assert_eq!(count("content", "id", &cid), Some(1));
    assert_eq!(count("runs", "id", &run), Some(1));
    assert_eq!(count("actors", "id", &run), Some(1));
    let r = s.admin_get(&format!("/admin/actors/run/{run}")).await;
    assert_eq!(r.body["registered"], true, "{}", r.body);
    let listed = s.d1(&format!("SELECT status, version FROM content WHERE id = '{cid}'"));
    assert_eq!(listed[0]["status"], "indexed");

    // A row no actor stands behind (ids at the top of the range, so a walk
    // from just below them sees only these).
    let ghost = "ffffffff-ffff-4fff-bfff-fffffffffff1";
    s.d1(&format!(
        "INSERT INTO content (id, version, title, status, run_id, created_at, updated_at, tenant, owner, visibility)
         VALUES ('{ghost}', 1, 'ghost', 'indexed', '', 1, 1, 'e2e', 'nobody', 'public');
         INSERT INTO actors (kind, id, status, created_at, updated_at) VALUES ('content', '{ghost}', 'indexed', 1, 1)"
    ));
    // The rows were written by another process (`wrangler d1 execute`): a
    // loaded server's D1 may read them a moment later, so the walk is asked
    // until it meets the ghost (its first meeting removes it).
    let met = eventually("the walk meets the ghost row", Duration::from_secs(15), || async {
        let r = s.admin_post("/admin/reconcile?cursor=ffffffff-ffff-4fff-bfff-fffffffffff0&limit=5").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mine: Vec<Value> = r.body["items"].as_array().unwrap().iter().filter(|i| i["content_id"] == ghost).cloned().collect();
        if mine.is_empty() { Err(format!("{}", r.body)) } else { Ok(mine) }
    })
    .await;
    assert_eq!(met.len(), 1, "{met:?}");
    assert_eq!(met[0]["outcome"], "orphan_removed", "{met:?}");
    assert_eq!(count("content", "id", ghost), Some(0));

    let bad = s.admin_post("/admin/reconcile?ids=not-a-uuid").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let bad = s.admin_post("/admin/reconcile?cursor=zzz").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
}
