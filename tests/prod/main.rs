//! The production-mode suite: Actorline's production code paths (Workers AI,
//! Vectorize, the analyzer's container) under `wrangler dev --env emulated`,
//! against the emulated bindings of tests/emulator, which follow Cloudflare's
//! documented shapes, limits and failure modes; R2 and the ingest queues are
//! wrangler's local ones, as `[env.emulated]` binds them. One `wrangler dev`
//! (with the emulator Worker in it), one emulator state server and one native
//! analyzer serve the whole binary.
//!
//! Run: `ACTORLINE_ROOT=$PWD cargo test --test prod -- --test-threads 2`
//! (after `make build` and `cargo build --release -p analyzer`).

#[path = "../support/mod.rs"]
mod support;

mod answers;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actorline::domain::faults::{Faults, INGEST};
use actorline::protocol::Stage;
use serde_json::{json, Value};
use support::*;

struct Prod {
    server: Server,
    emulator: Emulator,
}

fn prod() -> &'static Prod {
    static PROD: OnceLock<Prod> = OnceLock::new();
    PROD.get_or_init(|| {
        let dir = temp_dir("prod");
        let config = Emulator::with_env_overrides(Emulator::standard_config(&dir.join("container-disks")));
        let emulator = Emulator::start(&dir.join("emulator"), config);
        // The ingest fault poisons about one title in a hundred, and only
        // batch spawns: the batch test picks one such title, no other test
        // imports a batch.
        let opts = ServerOptions::emulated(dir.join("state"), emulator.worker_config.clone()).var("FAULTS", FAULTS);
        Prod { server: Server::start(&opts), emulator }
    })
}

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const FAULTS: &str = "ingest=0.01";

/// A document with a marker word no other test uses, so faults injected for
/// it (matched on `contains`) hit only its calls.
fn marked(marker: &str, seed: usize, bytes: usize) -> String {
    format!("The {marker} report. {}", document(marker, seed, bytes))
}

fn assert_all_completed(view: &Value) {
    assert_eq!(view["status"], "completed", "{view}");
    for (i, name) in Stage::ALL.map(Stage::as_str).iter().enumerate() {
        let st = &view["stages"][i];
        assert_eq!(st["name"], *name, "{view}");
        assert_eq!(st["status"], "completed", "stage {name}: {st}");
    }
}

/// How long the emulated Vectorize takes to make a write visible.
async fn vectorize_visibility_ms() -> u64 {
    prod().emulator.state().await["config"]["vectorizeVisibilityMs"].as_u64().unwrap_or(1000)
}

/// The emulator's visible vectors of one content.
async fn vectors_of(content_id: &str) -> Vec<Value> {
    let state = prod().emulator.state().await;
    state["vectors"]
        .as_array()
        .map(|v| v.iter().filter(|x| x["metadata"]["content_id"] == content_id).cloned().collect())
        .unwrap_or_default()
}

/// Polls until `ok(vectors of content)` holds; returns the last vectors seen.
async fn wait_vectors(content_id: &str, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = vectors_of(content_id).await;
        if ok(&v) {
            return v;
        }
        let versions: Vec<&Value> = v.iter().map(|x| &x["metadata"]["version"]).collect();
        assert!(Instant::now() < deadline, "{what}: {} vectors left, versions {versions:?}", v.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn calls(state: &Value) -> Vec<Value> {
    state["calls"].as_array().cloned().unwrap_or_default()
}

/// Fails on current main: the container's first connection comes 3 s after
/// `start()`, and the old code fetched at once (B5).
#[tokio::test]
async fn a_cold_container_is_waited_for_and_all_eight_stages_complete() {
    let p = prod();
    p.emulator.stop_container().await;
    let before = p.emulator.state().await["container"].clone();
    let (_, run) = p.server.submit("Cold start", &marked("zephyrine", 1, 1500), Some("ops")).await;
    let view = p.server.wait_run(&run, RUN_TIMEOUT).await;
    assert_all_completed(&view);
    let after = p.emulator.state().await["container"].clone();
    eprintln!("cold start: analyze {} ms, container {after}", view["stages"][6]["duration_ms"]);
    assert!(after["starts"].as_u64() > before["starts"].as_u64(), "the container was started: {after}");
    assert!(after["refused"].as_u64() > before["refused"].as_u64(), "its first connections were refused: {after}");
    assert!(after["inactivityTimeoutMs"].as_u64().is_some_and(|ms| ms > 0), "an idle stop is set: {after}");
    // Waiting for a starting container is not a failure of the analyzer.
    let breaker = p.server.admin_get("/admin/actors/analyzer/analyzer").await;
    assert_eq!(breaker.body["state"]["backend"], "container (emulated)", "{}", breaker.body);
    assert_eq!(breaker.body["state"]["breaker"]["opened_total"], 0, "{}", breaker.body);
}

/// Fails on current main: its text model is deprecated (5007), and its
/// search queries ask for `returnMetadata: "all"` with topK 50 (limit 20).
#[tokio::test]
async fn search_finds_a_document_once_its_vectors_are_visible_and_the_summary_is_the_models() {
    let p = prod();
    let (cid, run) = p.server.submit("Visible later", &marked("quillfeather", 2, 1500), Some("science")).await;
    assert_all_completed(&p.server.wait_run(&run, RUN_TIMEOUT).await);

    search_until_found("q=quillfeather%20report&mode=vector&k=10", &[cid.as_str()]).await;

    let content = p.server.get(&format!("/api/content/{cid}")).await;
    let summary = content.body["summary"].as_str().unwrap_or("");
    assert!(summary.starts_with("[emulator]"), "the summary is the model's, not the local fallback: {summary:?}");

    let state = p.emulator.state().await;
    let all = calls(&state);
    let deprecated: Vec<&Value> = all.iter().filter(|c| c["deprecated"] == true).collect();
    assert!(deprecated.is_empty(), "calls to deprecated models: {deprecated:?}");
    // Faults another test injects say so.
    let failed_queries: Vec<&Value> = all
        .iter()
        .filter(|c| c["binding"] == "vectorize" && c["error"].as_str().is_some_and(|e| !e.contains("(injected)")))
        .collect();
    assert!(failed_queries.is_empty(), "Vectorize refused calls: {failed_queries:?}");
    assert!(all.iter().any(|c| c["kind"] == "text" && c["error"].is_null()), "a text model answered");
    // Every model call asks to be refused when the model is busy, not queued.
    let queued: Vec<&Value> = all.iter().filter(|c| c["binding"] == "ai" && c["rejectIfBusy"] != true).collect();
    assert!(queued.is_empty(), "calls a busy model would queue: {queued:?}");
}

/// A category past the 64 bytes Vectorize indexes of a string (40 × 'é' is
/// 80): a category search by vector still finds the item.
#[tokio::test]
async fn search_by_a_category_longer_than_vectorize_indexes_still_finds_the_item() {
    let p = prod();
    let category = "é".repeat(40);
    let (cid, run) = p.server.submit("Long category", &marked("brindlemoss", 9, 1500), Some(&category)).await;
    assert_all_completed(&p.server.wait_run(&run, RUN_TIMEOUT).await);
    let encoded: String = category.bytes().map(|b| format!("%{b:02X}")).collect();
    search_until_found(&format!("q=brindlemoss%20report&mode=vector&k=10&category={encoded}"), &[cid.as_str()]).await;
}

/// Deletes the item, then waits for its run to end: the deletion cancels
/// the run, then purges it (404).
async fn delete_and_wait_for_the_run(cid: &str, run: &str) {
    let p = prod();
    let r = p.server.delete(&format!("/api/content/{cid}")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    eventually("the run ended", RUN_TIMEOUT, || async {
        let r = p.server.get(&format!("/api/runs/{run}")).await;
        match (r.status, r.body["status"].as_str()) {
            (404, _) | (200, Some("cancelled" | "failed")) => Ok(()),
            _ => Err(format!("{} {}", r.status, r.body)),
        }
    })
    .await;
}

/// A `DELETE` that lands while the index stage's write is not yet visible
/// (the write is held back 8 s, as Vectorize may apply a write late): the
/// deletion's sweep cannot see that write, so the stage takes it back once
/// it is visible and the item is gone. Failed before: the vectors stayed in
/// the index (hidden from search only by the catalog's join).
#[tokio::test]
async fn a_delete_while_the_index_write_is_not_yet_visible_leaves_no_vectors() {
    let p = prod();
    let visibility = vectorize_visibility_ms().await;
    let category = "quorvanelag";
    const LAG_MS: u64 = 8_000;
    p.emulator
        .inject(json!({ "binding": "vectorize", "method": "upsert", "contains": category, "mode": "lag", "visibleAfterMs": LAG_MS, "times": 1 }))
        .await;
    let (cid, run) = p.server.submit("Raced", &marked("quorvane", 2, 1500), Some(category)).await;
    let prefix = format!("{cid}:");
    let ours = |c: &Value, method: &str| c["method"] == method && c["detail"]["first"].as_str().is_some_and(|id| id.starts_with(&prefix));
    // Right after the write is sent (a DELETE before the stage's first ask
    // would prove nothing).
    let write = eventually("the run's vector write", RUN_TIMEOUT, || async {
        calls(&p.emulator.state().await).into_iter().find(|c| ours(c, "upsert")).ok_or("no write yet")
    })
    .await;
    assert_eq!(write["struck"]["mode"], "lag", "the write is the held-back one: {write}");
    assert!(vectors_of(&cid).await.is_empty(), "the DELETE must land before the write is visible");
    let written_at = write["at"].as_u64().expect("the call's time");
    assert!(unix_ms() + 1_000 < written_at + LAG_MS, "the DELETE goes out well before the held-back write applies");
    delete_and_wait_for_the_run(&cid, &run).await;
    // Past the moment the held-back write applied, nothing of the item may
    // be left, and nothing may come back.
    let applies_at = written_at + LAG_MS + visibility + 500;
    tokio::time::sleep(Duration::from_millis(applies_at.saturating_sub(unix_ms()))).await;
    wait_vectors(&cid, "the held-back write taken back", |v| v.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(visibility + 500)).await;
    let left = vectors_of(&cid).await;
    assert!(left.is_empty(), "{} vectors came back", left.len());
}

/// A `DELETE` after an index attempt that wrote and then failed before its
/// write was visible (here: every visibility probe of the item's ids
/// fails): the attempt could not take its write back, the deletion's sweep
/// cannot see it, and the purged run is never tried again. The purge owes
/// the take-back of the ids the run may have written. Failed before: the
/// write applied after the sweep and its vectors stayed.
#[tokio::test]
async fn a_delete_after_a_failed_index_attempt_leaves_no_vectors() {
    let p = prod();
    let visibility = vectorize_visibility_ms().await;
    let (cid, run) = p.server.submit("Probe fails", &marked("tessarind", 2, 1500), Some("history")).await;
    let prefix = format!("{cid}:");
    p.emulator
        .inject(json!([{ "binding": "vectorize", "method": "getByIds", "contains": prefix, "error": "VECTOR_GET_ERROR (injected): unavailable", "times": 1000 }]))
        .await;
    let ours = |c: &Value, method: &str| c["method"] == method && c["detail"]["first"].as_str().is_some_and(|id| id.starts_with(&prefix));
    // The attempt wrote, then its probe failed.
    let upsert = eventually("a failed probe after the write", RUN_TIMEOUT, || async {
        let all = calls(&p.emulator.state().await);
        let upsert = all.iter().position(|c| ours(c, "upsert")).ok_or("no write yet")?;
        let failed = all.iter().skip(upsert).any(|c| ours(c, "getByIds") && c["error"].is_string());
        if failed { Ok(upsert) } else { Err("no failed probe yet") }
    })
    .await;
    delete_and_wait_for_the_run(&cid, &run).await;
    // Every write of the run applied (none is newer than this wait), then what is left.
    tokio::time::sleep(Duration::from_millis(visibility + 500)).await;
    let last_write = calls(&p.emulator.state().await).iter().rposition(|c| ours(c, "upsert")).unwrap_or(upsert);
    eventually("a delete of the item's vectors after its last write", RUN_TIMEOUT, || async {
        let all = calls(&p.emulator.state().await);
        if all.iter().skip(last_write + 1).any(|c| ours(c, "deleteByIds")) { Ok(()) } else { Err("none yet") }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(visibility + 500)).await;
    let left = vectors_of(&cid).await;
    assert!(left.is_empty(), "{} vectors left of a deleted item", left.len());
}

/// Fails on current main: the README creates no `version`/`chunk` metadata
/// index, so the delete plan's filters match nothing and old vectors stay.
#[tokio::test]
async fn a_new_version_and_a_delete_leave_no_stale_vectors() {
    let p = prod();
    let (cid, run) = p.server.submit("Versioned", &marked("marrowlight", 3, 3000), Some("history")).await;
    assert_all_completed(&p.server.wait_run(&run, RUN_TIMEOUT).await);
    wait_vectors(&cid, "version 1 indexed", |v| !v.is_empty()).await;

    let r = p.server.put(&format!("/api/content/{cid}"), json!({ "title": "Versioned", "body": marked("marrowlight", 4, 2000) })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let version = r.body["version"].as_u64().expect("version");
    let run2 = r.body["run_id"].as_str().expect("run_id").to_string();
    assert_all_completed(&p.server.wait_run(&run2, RUN_TIMEOUT).await);
    wait_vectors(&cid, "only the new version's vectors", |v| {
        !v.is_empty() && v.iter().all(|x| x["metadata"]["version"].as_u64() == Some(version))
    })
    .await;

    let r = p.server.delete(&format!("/api/content/{cid}")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_vectors(&cid, "no vector after DELETE", |v| v.is_empty()).await;

    // Every property a filter used has a metadata index (else it matched nothing).
    let state = p.emulator.state().await;
    let indexed: Vec<String> = state["config"]["metadataIndexes"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["propertyName"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    for c in calls(&state).iter().filter(|c| c["method"] == "query") {
        if let Some(filter) = c["detail"]["options"]["filter"].as_object() {
            for prop in filter.keys() {
                assert!(indexed.contains(prop), "filter on {prop:?} without a metadata index (README has {indexed:?})");
            }
        }
    }
}

/// Needs h-providers: a JSON-mode failure or a model error must fall back to
/// the local extractor instead of failing the stage (A5). Every text call
/// for this document fails, so only a fallback completes the run.
#[tokio::test]
async fn a_text_model_failure_falls_back_to_the_local_extractor() {
    let p = prod();
    let marker = "brackenfold";
    p.emulator
        .inject(json!([
            { "binding": "ai", "kind": "text", "contains": [marker, "summary"], "error": "JSON Mode couldn't be met", "times": 1000 },
            { "binding": "ai", "kind": "text", "contains": [marker, "keywords"], "error": "5007: No such model or task", "times": 1000 },
        ]))
        .await;
    let (cid, run) = p.server.submit("Model trouble", &marked(marker, 5, 1500), None).await;
    let view = p.server.wait_run(&run, RUN_TIMEOUT).await;
    assert_all_completed(&view);
    let content = p.server.get(&format!("/api/content/{cid}")).await;
    let summary = content.body["summary"].as_str().unwrap_or("");
    assert!(!summary.is_empty() && !summary.starts_with("[emulator]"), "the local summary: {}", content.body);
    assert!(content.body["keywords"].as_array().is_some_and(|k| !k.is_empty()), "local keywords: {}", content.body);
    // Each of this document's two faults struck (the journal names the
    // injection a call met), so the fields above came from the fallback.
    let state = p.emulator.state().await;
    for field in ["summary", "keywords"] {
        let struck = calls(&state).iter().filter(|c| c["kind"] == "text" && c["struck"]["contains"] == json!([marker, field]) && c["error"].is_string()).count();
        assert!(struck >= 1, "the {field} call met its fault: {struck}");
    }
}

/// JSON mode answers that the service lets through but that are not the
/// object asked for, checked field by field (workers-ai json-mode: "the
/// model may not always return valid JSON"; `response` is typed a string):
/// - the object as a JSON string is used whole;
/// - an object whose `sentiment` is out of range keeps its other fields,
///   and only the sentiment comes from the local extractor;
/// - JSON cut off where `max_tokens` ran out is not used at all.
///
/// The emulator's own fields are recognizable: every keyword scores 0.5
/// (the middle of [0, 1]), every entity is a "person", and the sentiment is
/// "positive" at 0 (the middle of [-1, 1]).
#[tokio::test]
async fn a_json_mode_answer_is_used_field_by_field() {
    let p = prod();
    let cases = [("string-json", "velmorrow", None), ("bad-field", "quintessel", Some("sentiment")), ("truncated", "drabbleton", None)];
    for (mode, marker, field) in cases {
        p.emulator.inject(json!({ "binding": "ai", "kind": "text", "contains": [marker, "keywords"], "mode": mode, "field": field, "times": 1 })).await;
    }
    let runs = futures::future::join_all(cases.iter().map(|(mode, marker, _)| async move {
        p.server.submit(&format!("JSON mode {mode}"), &marked(marker, 6, 1500), None).await
    }))
    .await;
    let state_of = |c: &Value| {
        let model_keywords = c["keywords"].as_array().is_some_and(|k| !k.is_empty() && k.iter().all(|k| k["score"] == 0.5));
        let model_entities = c["entities"].as_array().is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["kind"] == "person"));
        let model_sentiment = c["sentiment"]["label"] == "positive" && c["sentiment"]["score"] == 0.0;
        (model_keywords, model_entities, model_sentiment)
    };
    for (_, run) in &runs {
        assert_all_completed(&p.server.wait_run(run, RUN_TIMEOUT).await);
    }
    let journal = calls(&p.emulator.state().await);
    for ((mode, marker, _), (cid, _)) in cases.iter().zip(&runs) {
        let struck = journal.iter().any(|c| c["struck"]["mode"] == *mode && c["struck"]["contains"] == json!([marker, "keywords"]));
        assert!(struck, "{mode}: the extraction call met its mode");
        let c = p.server.get(&format!("/api/content/{cid}")).await.body;
        let want = match *mode {
            "string-json" => (true, true, true),
            "bad-field" => (true, true, false),
            _ => (false, false, false),
        };
        assert_eq!(state_of(&c), want, "{mode}: (keywords, entities, sentiment) from the model: {c}");
    }
}

/// Injects `fault` (failing twice), submits a document (with `category`,
/// which the fault may match on), and checks that the run completed with
/// `stage` tried at least three times.
async fn completes_after_two_faults(fault: Value, title: &str, body: &str, category: Option<&str>, stage: Stage) {
    let p = prod();
    p.emulator.inject(json!([fault])).await;
    let (_, run) = p.server.submit(title, body, category).await;
    let view = p.server.wait_run(&run, RUN_TIMEOUT).await;
    assert_all_completed(&view);
    let record = &view["stages"][Stage::ALL.iter().position(|s| *s == stage).unwrap()];
    assert!(record["attempts"].as_u64().unwrap_or(0) >= 3, "{stage} retried: {record}");
}

/// A 3040 "Out of capacity" (HTTP 429) is a rate limit: retried, then the run completes.
#[tokio::test]
async fn a_rate_limited_embedding_is_retried() {
    let marker = "thistlecombe";
    let fault = "3040: No more data centers to forward the request to";
    let injected = json!({ "binding": "ai", "kind": "embedding", "contains": marker, "error": fault, "times": 2 });
    completes_after_two_faults(injected, "Busy", &marked(marker, 6, 1500), None, Stage::Embed).await;
}

/// Workers AI refuses a busy model at once (`rejectIfBusy`: 3040, HTTP 429;
/// workers-ai/features/reject-if-busy). A hybrid search whose query
/// embedding is refused still answers with its keyword side and says so;
/// a vector-only search is a 429 with `Retry-After`, not a 503. (Failed
/// before: both were 503.)
#[tokio::test]
async fn a_busy_embedder_leaves_hybrid_search_its_keyword_side() {
    let p = prod();
    let marker = "brackenmoor";
    let (cid, run) = p.server.submit("Busy embedder", &marked(marker, 9, 1500), None).await;
    assert_all_completed(&p.server.wait_run(&run, RUN_TIMEOUT).await);
    search_until_found(&format!("q={marker}&mode=keyword&k=5"), &[cid.as_str()]).await;
    let busy = "3040: Capacity temporarily exceeded, please try again.";
    let query = format!("{marker} bridges");
    p.emulator.inject(json!({ "binding": "ai", "kind": "embedding", "contains": query, "error": busy, "times": 2 })).await;
    let r = p.server.get(&format!("/api/search?q={marker}%20bridges&k=5")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["mode"], "keyword", "{}", r.body);
    assert!(r.body["degraded"].as_str().is_some_and(|d| d.contains("vector search unavailable")), "{}", r.body);
    let hits: Vec<&str> = r.body["results"].as_array().unwrap().iter().filter_map(|h| h["content_id"].as_str()).collect();
    assert!(hits.contains(&cid.as_str()), "{}", r.body);
    let r = p.server.get(&format!("/api/search?q={marker}%20bridges&k=5&mode=vector")).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", r.body);
    assert!(r.headers.get("retry-after").is_some(), "{:?}", r.headers);
    // Not busy any more: hybrid again.
    let r = p.server.get(&format!("/api/search?q={marker}%20bridges&k=5")).await;
    assert_eq!((r.body["mode"].as_str(), r.body.get("degraded")), (Some("hybrid"), None), "{}", r.body);
}

/// Vectorize's throttle is a request error by its form ("code = 40041"), yet
/// a rate limit: the index stage waits and tries again, then the run
/// completes. Failed before: every 40xxx was terminal, so the run failed.
#[tokio::test]
async fn a_throttled_vectorize_write_is_retried() {
    let category = "fernwhistle";
    // "(injected)": the shared journal's other readers skip it.
    let fault = "VECTOR_UPSERT_ERROR (code = 40041): Too Many Requests (injected)";
    let injected = json!({ "binding": "vectorize", "method": "upsert", "contains": category, "error": fault, "times": 2 });
    completes_after_two_faults(injected, "Throttled", &marked("fernwhistle", 8, 1500), Some(category), Stage::Index).await;
}

/// Vectorize applies many small writes in batches, possibly long after
/// (vectorize/best-practices/insert-vectors, "Improve Write Throughput"). A
/// write not yet visible when the index stage's wait (20 s) runs out is
/// waited for again by the retry, not sent again: one upsert, and the run
/// completes once it applies. (Failed before: every retry sent it again.)
#[tokio::test]
async fn a_lagging_vectorize_write_is_waited_for_not_sent_again() {
    let p = prod();
    let category = "slatewhorl";
    let injected = json!({ "binding": "vectorize", "method": "upsert", "contains": category, "mode": "lag", "visibleAfterMs": 24_000, "times": 1 });
    p.emulator.inject(injected).await;
    let (cid, run) = p.server.submit("Lagging write", &marked(category, 10, 1500), Some(category)).await;
    let view = p.server.wait_run(&run, Duration::from_secs(150)).await;
    assert_all_completed(&view);
    let index = &view["stages"][Stage::ALL.iter().position(|s| *s == Stage::Index).unwrap()];
    assert!(index["attempts"].as_u64().unwrap_or(0) >= 2, "the first wait ran out: {index}");
    let upserts: Vec<Value> = calls(&p.emulator.state().await)
        .into_iter()
        .filter(|c| c["method"] == "upsert" && c["detail"]["first"].as_str().is_some_and(|id| id.starts_with(&cid)))
        .collect();
    assert_eq!(upserts.len(), 1, "the write was sent again: {upserts:?}");
}

/// Fails if `deleteByIds` ever gets more than 100 ids (VECTOR_DELETE_ERROR 40007).
#[tokio::test]
async fn a_long_documents_vectors_are_all_deleted_within_the_id_limit() {
    let p = prod();
    let (cid, run) = p.server.submit("Long", &marked("cinderwhist", 7, 110_000), None).await;
    assert_all_completed(&p.server.wait_run(&run, Duration::from_secs(240)).await);
    let v = wait_vectors(&cid, "all chunks indexed", |v| v.len() > 100).await;
    assert!(v.len() > 100, "{} vectors", v.len());

    let r = p.server.delete(&format!("/api/content/{cid}")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_vectors(&cid, "no vector after DELETE", |v| v.is_empty()).await;
    let state = p.emulator.state().await;
    let refused: Vec<Value> =
        calls(&state).into_iter().filter(|c| c["method"] == "deleteByIds" && c["error"].is_string()).collect();
    assert!(refused.is_empty(), "deleteByIds refused: {refused:?}");
}

/// The emulated bindings themselves answer in the documented shapes (a
/// separate emulator, so its refusals stay out of the shared journal).
#[tokio::test]
async fn the_emulator_refuses_what_the_service_refuses() {
    let health = prod().server.admin_get("/healthz").await;
    let text = health.body.to_string();
    assert!(text.contains("workers-ai") && text.contains("vectorize"), "production backends in use: {text}");
    // The analyzer as its actor runs it, not only as configured.
    assert_eq!((health.status, health.body["backends"]["analyzer"].as_str()), (200, Some("container (emulated)")), "{text}");

    let indexes = readme_metadata_indexes();
    assert!(indexes.contains(&("content_id".to_string(), "string".to_string())), "README indexes parsed: {indexes:?}");
    let emulator = Emulator::start(&temp_dir("emulator-probe"), Emulator::standard_config(&temp_dir("emulator-probe-disks")));
    let post = |path: &str, body: Value| {
        let url = format!("{}{path}", emulator.url);
        async move { http().post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let r = post("/ai/run", json!({ "model": "@cf/meta/llama-3.1-8b-instruct", "inputs": { "prompt": "hi" } })).await;
    assert!(r["error"].as_str().is_some_and(|e| e.starts_with("5007: No such model")), "deprecated: {r}");
    let r = post("/ai/run", json!({ "model": "@cf/baai/bge-base-en-v1.5", "inputs": { "text": vec!["x"; 101] } })).await;
    assert!(r["error"].is_string(), "101 texts: {r}");
    let long = "word ".repeat(600);
    let r = post("/ai/run", json!({ "model": "@cf/baai/bge-base-en-v1.5", "inputs": { "text": [long] } })).await;
    assert!(r["error"].as_str().is_some_and(|e| e.contains("512")), "over 512 tokens: {r}");
    let r = post("/ai/run", json!({ "model": "@cf/baai/bge-base-en-v1.5", "inputs": { "text": ["a b"] } })).await;
    assert_eq!(r["ok"]["shape"], json!([1, 768]), "{r}");
    let ids: Vec<String> = (0..101).map(|i| format!("id{i}")).collect();
    let r = post("/vectorize/deleteByIds", json!({ "ids": ids })).await;
    assert_eq!(r["error"], "VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100");
    let v = vec![0.5f32; 768];
    let r = post("/vectorize/query", json!({ "vector": v, "options": { "topK": 50, "returnMetadata": "all" } })).await;
    assert!(r["error"].as_str().is_some_and(|e| e.contains("40025")), "{r}");
    let r = post("/vectorize/query", json!({ "vector": v, "options": { "topK": 100, "returnMetadata": "indexed" } })).await;
    assert!(r["ok"]["matches"].is_array(), "{r}");

    // Filters see only indexed properties, and writes only after the delay.
    let meta = json!({ "content_id": "c1", "version": 1, "chunk": 0, "unindexed": "x" });
    let r = post("/vectorize/upsert", json!({ "vectors": [{ "id": "c1:1:0", "values": v, "namespace": "content", "metadata": meta }] })).await;
    assert!(r["ok"]["mutationId"].is_string(), "{r}");
    let q = |filter: Value| json!({ "vector": v, "options": { "topK": 10, "namespace": "content", "filter": filter } });
    let r = post("/vectorize/query", q(json!({ "content_id": "c1" }))).await;
    assert_eq!(r["ok"]["count"], 0, "not visible yet: {r}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = post("/vectorize/query", q(json!({ "content_id": { "$eq": "c1" } }))).await;
    assert_eq!(r["ok"]["count"], 1, "visible after the delay: {r}");
    let r = post("/vectorize/query", q(json!({ "unindexed": "x" }))).await;
    assert_eq!(r["ok"]["count"], 0, "a filter on an unindexed property matches nothing: {r}");
}

/// An uploaded PDF's text comes from the analyzer through the container
/// actor (the production path), and the original stays in (local) R2.
#[tokio::test]
async fn an_uploaded_pdf_is_extracted_by_the_container_and_its_source_kept() {
    let p = prod();
    let before = p.emulator.state().await["container"]["fetches"].as_u64().unwrap_or(0);
    let pdf = pdf::pdf_with_text("Permafrost thaw alters the quillfeather tundra every spring.");
    let r = send(
        http()
            .post(p.server.url("/api/uploads"))
            .bearer_auth(&p.server.key)
            .header("content-type", "application/pdf")
            .query(&[("title", "Tundra notes")])
            .body(pdf.clone()),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let view = p.server.wait_run(r.body["run_id"].as_str().unwrap(), RUN_TIMEOUT).await;
    assert_all_completed(&view);
    let cid = r.body["content_id"].as_str().unwrap();
    let content = p.server.get(&format!("/api/content/{cid}")).await.body;
    assert!(content["body"].as_str().unwrap_or("").contains("quillfeather tundra"), "{content}");
    let after = p.emulator.state().await["container"]["fetches"].as_u64().unwrap_or(0);
    assert!(after >= before + 2, "extract and analyze both went to the container: {before} -> {after}");
    let source = http().get(p.server.url(&format!("/api/content/{cid}/source"))).bearer_auth(&p.server.key).send().await.unwrap();
    assert_eq!(source.status().as_u16(), 200);
    assert_eq!(source.bytes().await.unwrap().to_vec(), pdf);
}

/// A bulk import goes through the emulated env's queues: `INGEST` carries
/// its items to their batch, and the item whose every spawn fails (the
/// ingest fault) ends on `INGEST_DLQ`; the others complete all eight stages
/// and are found by search.
#[tokio::test]
async fn a_batch_import_settles_through_the_queues_and_its_items_are_searchable() {
    let p = prod();
    let marker = "saltmarrow";
    let faults = Faults::parse(FAULTS);
    let poisoned = |title: &String| faults.poisons(INGEST, title).is_some();
    let mut titles: Vec<String> = (0..).map(|i| format!("{marker} harbor note {i}")).filter(|t| !poisoned(t)).take(5).collect();
    titles.insert(2, (0..).map(|i| format!("{marker} poison {i}")).find(poisoned).unwrap());
    let items: Vec<Value> =
        titles.iter().enumerate().map(|(i, title)| json!({ "title": title, "body": marked(marker, 20 + i, 600) })).collect();
    let r = p.server.post("/api/content/batch", json!({ "items": items })).await;
    assert_eq!((r.status, r.body["accepted"].as_u64()), (202, Some(6)), "{}", r.body);
    let id = r.body["batch_id"].as_str().expect("batch_id");

    let view = p.server.wait_batch(id, Duration::from_secs(600)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(5), Some(1)), "{view}");
    assert_eq!(view["status"], "completed", "{view}");
    let items = view["items"].as_array().unwrap();
    let bad = &items[2];
    assert!(bad["content_id"].is_null(), "never spawned: {bad}");
    let error = bad["error"].as_str().unwrap_or("");
    assert!(error.starts_with("dead-lettered after 5 failed spawn attempts: injected fault"), "{bad}");

    let done: Vec<&Value> = items.iter().filter(|i| i["status"] == "completed").collect();
    assert_eq!(done.len(), 5, "{view}");
    for item in &done {
        assert_all_completed(&p.server.wait_run(item["run_id"].as_str().unwrap(), RUN_TIMEOUT).await);
    }
    let ids: Vec<&str> = done.iter().map(|i| i["content_id"].as_str().unwrap()).collect();
    search_until_found(&format!("q={marker}&k=20"), &ids).await;
}

/// Polls `/api/search?{query}` until its results hold every one of `ids`
/// (vectors become visible a moment after a run ends); 30 s at most.
pub(crate) async fn search_until_found(query: &str, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = prod().server.get(&format!("/api/search?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let found: Vec<&str> = r.body["results"].as_array().unwrap().iter().filter_map(|x| x["content_id"].as_str()).collect();
        if ids.iter().all(|id| found.contains(id)) {
            return;
        }
        assert!(Instant::now() < deadline, "search ?{query} found {found:?}, not all of {ids:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A Container's disk is wiped when it sleeps (containers/faq.mdx: "All disk
/// is ephemeral"; the emulator runs each start on a new, empty data dir). The
/// analyzer's actor keeps each fingerprint's record and gives them back to a
/// container it starts: an edited copy submitted after the container slept
/// is still flagged as a near duplicate of the original, and an item deleted
/// meanwhile is not brought back. (Its own server: it stops the container
/// twice, which would hold up other tests' analyze stages.)
#[tokio::test]
async fn the_containers_fresh_disk_gets_its_fingerprints_back() {
    let dir = temp_dir("prod-fresh-disk");
    let emulator = Emulator::start(&dir.join("emulator"), Emulator::standard_config(&dir.join("container-disks")));
    let opts = ServerOptions::emulated(dir.join("state"), emulator.worker_config.clone());
    let mut s = Server::start(&opts);
    let article = "The harbour council approved a plan to turn the old rail yard into a park with walking paths, \
        a playground and an open amphitheater. Construction starts in spring and should finish by late summer. \
        The plan adds bike lanes connecting the park to the river trail, and money for maintenance so the park \
        does not fall into disrepair. Local schools plan to use the amphitheater for concerts and outdoor classes.";
    let copy = |n: usize| article.replace("spring", ["autumn", "winter", "summer", "march", "april"][n]) + " Officials thanked the volunteers.";
    async fn near(s: &Server, cid: &str) -> Vec<String> {
        let c = s.get(&format!("/api/content/{cid}")).await;
        c.body["analysis"]["near_duplicates"].as_array().expect("analysis").iter().filter_map(|d| d["id"].as_str().map(str::to_string)).collect()
    }
    async fn submit(s: &Server, title: &str, body: &str) -> String {
        let (cid, run) = s.submit(title, body, Some("civic")).await;
        let view = s.wait_run(&run, RUN_TIMEOUT).await;
        assert_eq!(view["stages"][6]["status"], "completed", "analyze: {view}");
        cid
    }
    let orig = submit(&s, "Rail yard park", article).await;
    let gone = submit(&s, "Rail yard park, an early draft", &article.replace("playground", "skate park")).await;
    assert!(near(&s, &gone).await.contains(&orig), "flagged while the container ran");
    assert_eq!(s.delete(&format!("/api/content/{gone}")).await.status, 204);
    emulator.stop_container().await;

    let first = submit(&s, "Rail yard park (copy)", &copy(0)).await;
    let flagged = near(&s, &first).await;
    assert!(flagged.contains(&orig), "the original was forgotten with the container's disk: {flagged:?}");
    assert!(!flagged.contains(&gone), "a deleted item came back: {flagged:?}");
    emulator.stop_container().await;
    let second = submit(&s, "Rail yard park (second copy)", &copy(1)).await;
    let flagged = near(&s, &second).await;
    assert!(flagged.contains(&orig) && flagged.contains(&first), "{flagged:?}");
    let starts = emulator.state().await["container"]["starts"].as_u64();
    assert!(starts >= Some(3), "a new disk at each start: {starts:?}");

    // A new instance of the analyzer's actor finds the container running:
    // it does not know what the container holds, asks, and restores only
    // if it holds fewer fingerprints than the actor has records.
    s.restart(&opts, true);
    let third = submit(&s, "Rail yard park (third copy)", &copy(2)).await;
    let flagged = near(&s, &third).await;
    assert!(flagged.contains(&orig) && flagged.contains(&first) && flagged.contains(&second), "{flagged:?}");
    assert_eq!(emulator.state().await["container"]["starts"].as_u64(), starts, "the running container was kept");

    // The platform replaces the container behind its actor's back: the
    // next analysis lands on the new, empty disk, which then holds one
    // fingerprint and no more. A new instance of the actor (the server
    // restarted) meets a container it did not restore, and restores it,
    // though it holds fingerprints.
    emulator.replace_container().await;
    let fourth = submit(&s, "Rail yard park (fourth copy)", &copy(3)).await;
    s.restart(&opts, true);
    let fifth = submit(&s, "Rail yard park (fifth copy)", &copy(4)).await;
    let flagged = near(&s, &fifth).await;
    assert!(flagged.contains(&fourth), "{flagged:?}");
    assert!(flagged.contains(&orig), "a half-restored container stayed so: {flagged:?}");
}

/// A server of its own whose emulated container listens `listen_delay_ms`
/// after each start, and whose analyzer breaker opens at its first failure.
/// The emulator is returned to be kept alive with the server.
fn slow_container(name: &str, listen_delay_ms: u64) -> (Emulator, Server) {
    let dir = temp_dir(name);
    let mut config = Emulator::standard_config(&dir.join("container-disks"));
    config["containerListenDelayMs"] = json!(listen_delay_ms);
    let emulator = Emulator::start(&dir.join("emulator"), config);
    let opts = ServerOptions::emulated(dir.join("state"), emulator.worker_config.clone()).var("ANALYZER_BREAKER_THRESHOLD", "1");
    let s = Server::start(&opts);
    (emulator, s)
}

/// Calls that arrive together while one container starts slowly wait on
/// that one start: their give-ups count once, so a burst (seven runs at the
/// analyze stage at once) does not open the breaker by itself, and each run
/// analyzes once the container listens. (Its own server: the breaker opens
/// at its first failure here, and the container listens after 9 s, past one
/// startup wait of 8 s.)
#[tokio::test]
async fn a_burst_during_one_slow_start_does_not_open_the_breaker() {
    let (emulator, s) = slow_container("prod-slow-start-burst", 9_000);
    let mut runs = Vec::new();
    for i in 0..7 {
        runs.push(s.submit(&format!("Burst {i}"), &marked("burst", 40 + i, 900), None).await.1);
    }
    let analyze = Stage::ALL.iter().position(|st| *st == Stage::Analyze).unwrap();
    let mut retried = 0;
    for run in &runs {
        let view = s.wait_run(run, RUN_TIMEOUT).await;
        assert_eq!(view["status"], "completed", "{view}");
        assert_eq!(view["stages"][analyze]["status"], "completed", "analyzed once the container listened: {view}");
        retried += usize::from(view["stages"][analyze]["attempts"].as_u64() >= Some(2));
    }
    // The burst met one start, which refused connections for longer than a
    // startup wait: some run's wait gave up and its stage was tried again.
    let container = emulator.state().await["container"].clone();
    assert_eq!(container["starts"], 1, "one start for the whole burst: {container}");
    assert!(container["refused"].as_u64() > Some(0), "the start refused connections: {container}");
    assert!(retried >= 1, "no startup wait gave up, so the breaker was never tested");
    let analyzer = s.admin_get("/admin/actors/analyzer/analyzer").await;
    assert_eq!(analyzer.body["state"]["breaker"]["opened_total"], 0, "one slow start opened the breaker: {}", analyzer.body);
}

/// A container that never listens (an image that crashes at start) is not a
/// cold start for good: from the third startup wait in a row that gives up,
/// each counts against the circuit breaker, so calls stop paying the whole
/// wait and the breaker shows it. (Its own server: the container never
/// comes up; the breaker opens at its first failure here.)
#[tokio::test]
async fn a_container_that_never_listens_opens_the_breaker() {
    let (_emulator, s) = slow_container("prod-never-listens", 3_600_000);
    let (_, run) = s.submit("Never listens", &marked("nevermore", 3, 900), None).await;
    let view = s.wait_run(&run, RUN_TIMEOUT).await;
    assert_eq!(view["status"], "completed", "analyze is optional: {view}");
    assert_eq!(view["stages"][6]["status"], "skipped", "{view}");
    let analyzer = s.admin_get("/admin/actors/analyzer/analyzer").await;
    assert!(analyzer.body["state"]["breaker"]["opened_total"].as_u64() >= Some(1), "the breaker never opened: {}", analyzer.body);
}
