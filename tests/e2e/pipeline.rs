//! The staged pipeline: concurrency and dead letters. Faults and crash
//! recovery are the soak's R1 and R2 (tests/soak), which `make test` runs too.

use std::time::Duration;

use actorline::protocol::Stage;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::*;

fn assert_all_stages(view: &Value) {
    let names: Vec<&str> = view["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, Stage::ALL.map(Stage::as_str));
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
async fn exhausted_runs_dead_letter_and_retry_after_faults_are_removed() {
    let dir = temp_dir("deadletter");
    let (items, runs) = {
        let s = Server::start(&ServerOptions::new(dir.clone()).var("FAULTS", "embed=1.0").var("RETRY_BASE_MS", "5").var("RETRY_MAX_ATTEMPTS", "4"));
        let (mut items, mut runs) = (Vec::new(), Vec::new());
        for i in 0..3 {
            let (cid, run) = s.submit(&format!("Doomed {i}"), &document("dead letters", 300 + i, 800), None).await;
            items.push(cid);
            runs.push(run);
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
        // A new version of the first item supersedes its failed run: the
        // item's outbox tells the run before the item is idle again.
        let r = s.put(&format!("/api/content/{}", items[0]), json!({ "title": "Doomed 0, again", "body": document("dead letters", 310, 800) })).await;
        assert_eq!(r.status, 202, "{}", r.body);
        eventually("the item's duties landed", Duration::from_secs(30), || async {
            let outbox = s.admin_get(&format!("/admin/actors/content/{}", items[0])).await.body["state"]["outbox"].clone();
            if outbox == json!([]) { Ok(()) } else { Err(outbox.to_string()) }
        })
        .await;
        // The superseded run ends cancelled and leaves the dead-letter list:
        // neither retry nor cancel could act on it there.
        let view = s.get(&format!("/api/runs/{}", runs[0])).await.body;
        assert_eq!(view["status"], "cancelled", "{view}");
        assert!(!dead_letters(&s).await.contains(&runs[0]), "a superseded run stays a dead letter");
        (items, runs)
    };
    // Same state, no faults: an operator retries each dead letter, but not
    // the superseded one, which could only be fenced off at the index.
    let s = Server::start(&ServerOptions::new(dir));
    let r = s.post(&format!("/api/runs/{}/retry", runs[0]), json!({})).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("conflict")), "{} of {}", r.body, items[0]);
    let runs = &runs[1..];
    // The operator dismisses one dead letter (DESIGN: retry or cancel it):
    // it ends cancelled, leaves the list, and may still be retried.
    let r = s.post(&format!("/api/runs/{}/cancel", runs[1]), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("cancelled")), "{}", r.body);
    let listed = dead_letters(&s).await;
    assert!(listed.contains(&runs[0]) && !listed.contains(&runs[1]), "{listed:?}");
    for run in runs {
        let r = s.post(&format!("/api/runs/{run}/retry"), json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for run in runs {
        let view = s.wait_run(run, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "completed", "{view}");
        let embed = &view["stages"][2];
        assert_eq!(embed["status"], "completed");
        assert_eq!(embed["attempts"], 1, "retry gave a fresh budget");
    }
    let listed = dead_letters(&s).await;
    assert!(runs.iter().all(|r| !listed.contains(r)), "{listed:?}");
    // Each retried item said `processing` again once its run was retried,
    // between the failure and the indexing (it stayed `failed` before).
    let (s, items) = (&s, &items);
    eventually("each retried item processing again, then indexed, on the feed", Duration::from_secs(30), || async move {
        let all = feed_events(s, &s.key, &items[1..]).await;
        let told = |events: &Vec<(String, u64, String)>| {
            let updated = |status: &str| events.iter().rposition(|(e, _, st)| e == ev::CONTENT_UPDATED && st == status);
            let (failed, again) = (updated("failed"), updated("processing"));
            failed.is_some() && again > failed && events.last().is_some_and(|e| e.0 == ev::CONTENT_INDEXED)
        };
        if all.iter().all(told) { Ok(()) } else { Err(format!("{all:?}")) }
    })
    .await;
}

/// The run ids `GET /admin/dead-letters` lists, newest failure first.
async fn dead_letters(s: &Server) -> Vec<String> {
    let dl = s.admin_get("/admin/dead-letters").await;
    assert_eq!(dl.status, 200, "{}", dl.body);
    dl.body["items"].as_array().unwrap().iter().map(|i| i["run_id"].as_str().unwrap().to_string()).collect()
}

/// Ready stages run back to back in one activation (an alarm, or the start
/// request), so a run takes fewer activations than it has stages; the
/// inspector counts them. Guards the execution model against a silent
/// return to one alarm per stage.
#[tokio::test]
async fn a_run_takes_fewer_activations_than_stages() {
    let s = &shared().server;
    let (_, run) = s.submit("Back to back", &document("activations", 41, 1500), None).await;
    let view = s.wait_run(&run, Duration::from_secs(60)).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_all_stages(&view);
    let r = s.admin_get(&format!("/admin/actors/run/{run}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let activations = r.body["state"]["activations"].as_u64().expect("activations in the inspector");
    assert!((1..Stage::ALL.len() as u64).contains(&activations), "{activations} activations for {} stages", Stage::ALL.len());
    // Each stage is still its own committed step: a start and an outcome event apiece.
    let events = s.admin_get(&format!("/admin/actors/run/{run}")).await.body["events"]["tail"].clone();
    let started = events.as_array().unwrap().iter().filter(|e| e["event"] == ev::STAGE_STARTED).count();
    assert_eq!(started, Stage::ALL.len(), "{events}");
}
