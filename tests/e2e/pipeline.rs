//! The staged pipeline: concurrency, faults, dead letters, crash recovery.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::*;

const STAGES: [&str; 8] = ["validate", "chunk", "embed", "index", "summarize", "extract", "analyze", "publish"];

fn assert_all_stages(view: &Value) {
    let names: Vec<&str> = view["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, STAGES);
    for st in view["stages"].as_array().unwrap() {
        assert!(matches!(st["status"].as_str(), Some("completed") | Some("skipped")), "{st}");
    }
}

#[tokio::test]
async fn twenty_concurrent_submissions_all_complete() {
    let s = &shared().server;
    let subs = join_all((0..20).map(|i| async move {
        s.submit(&format!("Concurrent {i}"), &document("concurrency", 100 + i, 2048), Some("bulk")).await
    }))
    .await;
    for (cid, run) in &subs {
        let view = s.wait_run(run, Duration::from_secs(120)).await;
        assert_eq!(view["status"], "completed", "{view}");
        assert_all_stages(&view);
        let c = s.get(&format!("/api/content/{cid}")).await;
        assert_eq!(c.body["status"], "indexed");
    }
}

#[tokio::test]
async fn transient_faults_are_retried_with_growing_backoff() {
    let dir = temp_dir("faults");
    let s = Server::start(&ServerOptions::new(dir).var("FAULTS", "embed=0.3,index=0.3").var("RETRY_BASE_MS", "20"));
    let subs = join_all((0..12).map(|i| {
        let s = &s;
        async move { s.submit(&format!("Faulty {i}"), &document("faults", 200 + i, 1500), None).await }
    }))
    .await;
    let mut retried = 0;
    for (_, run) in &subs {
        let view = s.wait_run(run, Duration::from_secs(120)).await;
        assert_eq!(view["status"], "completed", "{view}");
        for st in view["stages"].as_array().unwrap() {
            let hist = st["history"].as_array().cloned().unwrap_or_default();
            let caps: Vec<u64> = hist.iter().filter_map(|h| h["backoff_cap_ms"].as_u64()).collect();
            if !caps.is_empty() {
                retried += 1;
                assert!(caps.windows(2).all(|w| w[1] > w[0]), "caps must grow: {caps:?}");
                for h in &hist {
                    if let (Some(b), Some(c)) = (h["backoff_ms"].as_u64(), h["backoff_cap_ms"].as_u64()) {
                        assert!(b <= c && b >= 1);
                    }
                }
                // The next attempt waited at least the drawn backoff.
                for w in hist.windows(2) {
                    let end = chrono::DateTime::parse_from_rfc3339(w[0]["finished_at"].as_str().unwrap()).unwrap();
                    let start = chrono::DateTime::parse_from_rfc3339(w[1]["started_at"].as_str().unwrap()).unwrap();
                    let waited = (start - end).num_milliseconds();
                    assert!(waited + 2 >= w[0]["backoff_ms"].as_i64().unwrap_or(0), "waited {waited} < backoff");
                }
                assert_eq!(st["attempts"].as_u64().unwrap() as usize, hist.len());
            }
        }
    }
    assert!(retried > 0, "30% faults on two stages over 12 runs must cause retries");
}

#[tokio::test]
async fn exhausted_runs_dead_letter_and_retry_after_faults_are_removed() {
    let dir = temp_dir("deadletter");
    let runs = {
        let s = Server::start(&ServerOptions::new(dir.clone()).var("FAULTS", "embed=1.0").var("RETRY_BASE_MS", "5").var("RETRY_MAX_ATTEMPTS", "4"));
        let mut runs = Vec::new();
        for i in 0..3 {
            runs.push(s.submit(&format!("Doomed {i}"), &document("dead letters", 300 + i, 800), None).await.1);
        }
        for run in &runs {
            let view = s.wait_run(run, Duration::from_secs(60)).await;
            assert_eq!(view["status"], "failed", "{view}");
            let embed = &view["stages"][2];
            assert_eq!(embed["status"], "failed");
            assert_eq!(embed["attempts"], 4);
            assert!(embed["error"]["message"].as_str().unwrap().contains("injected fault"));
        }
        let dl = s.admin_get("/admin/dead-letters").await;
        assert_eq!(dl.status, 200);
        for run in &runs {
            let item = dl.body["items"].as_array().unwrap().iter().find(|i| i["run_id"] == run.as_str()).expect("dead letter");
            assert_eq!(item["stage"], "embed");
            assert_eq!(item["error_class"], "transient");
            assert!(item["error"].as_str().unwrap().contains("injected fault"));
        }
        runs
    };
    // Same state, no faults: an operator retries each dead letter.
    let s = Server::start(&ServerOptions::new(dir));
    for run in &runs {
        let r = s.post(&format!("/api/runs/{run}/retry"), json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for run in &runs {
        let view = s.wait_run(run, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "completed", "{view}");
        let embed = &view["stages"][2];
        assert_eq!(embed["status"], "completed");
        assert_eq!(embed["attempts"], 1, "retry gave a fresh budget");
    }
    let dl = s.admin_get("/admin/dead-letters").await;
    assert!(dl.body["items"].as_array().unwrap().iter().all(|i| !runs.contains(&i["run_id"].as_str().unwrap().to_string())));
}

#[tokio::test]
async fn runs_survive_sigkill_and_never_rerun_a_completed_stage() {
    let dir = temp_dir("crash");
    let opts = ServerOptions::new(dir);
    let mut s = Server::start(&opts);
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(s.submit(&format!("Crash {i}"), &document("durability", 400 + i, 3000), None).await.1);
    }
    // Kill the whole group hard while runs are in flight.
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.group.stop(true);
    drop(s);
    let s = Server::start(&opts);
    for run in &runs {
        let view = s.wait_run(run, Duration::from_secs(120)).await;
        assert_eq!(view["status"], "completed", "{view}");
        let insp = s.admin_get(&format!("/admin/actors/run/{run}")).await;
        assert_eq!(insp.status, 200, "{}", insp.body);
        let mut completed: HashMap<String, u32> = HashMap::new();
        for e in insp.body["events"]["tail"].as_array().unwrap() {
            // This server has no analyzer, so analyze ends skipped: count either end.
            if e["event"] == "stage.completed" || e["event"] == "stage.skipped" {
                *completed.entry(e["data"]["stage"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
        assert_eq!(completed.len(), 8, "{completed:?}");
        assert!(completed.values().all(|n| *n == 1), "a stage completed twice: {completed:?}");
        let seqs: Vec<u64> = insp.body["events"]["tail"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "dense seqs: {seqs:?}");
    }
}
