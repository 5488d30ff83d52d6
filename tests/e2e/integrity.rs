//! Integrity (DESIGN "Integrity"): no lost update, nothing stuck, fenced
//! index writes, hard delete, and a catalog that converges under faults.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::*;

async fn search_ids(s: &Server, q: &str, mode: &str) -> Vec<String> {
    let r = send(
        http()
            .get(s.url("/api/search"))
            .bearer_auth(&s.key)
            .query(&[("q", q), ("mode", mode), ("k", "50")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["content_id"].as_str().unwrap().to_string())
        .collect()
}

/// A 503 from the local runtime itself, not from the Worker.
fn dropped_by_runtime(r: &Reply) -> bool {
    r.status == 503
        && r.body
            .as_str()
            .is_some_and(|b| b.contains("restarted mid-request"))
}

/// Submits a generated document that also contains `word`.
async fn submit_marked(
    s: &Server,
    title: &str,
    topic: &str,
    seed: usize,
    word: &str,
) -> (String, String) {
    s.submit(
        title,
        &format!("{} {word}.", document(topic, seed, 900)),
        None,
    )
    .await
}

async fn assert_completed(s: &Server, run: &str) {
    let view = s.wait_run(run, Duration::from_secs(120)).await;
    assert_eq!(view["status"], "completed", "{view}");
}


#[tokio::test]
async fn concurrent_puts_each_keep_their_version() {
    let s = &shared().server;
    let category = format!("race-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (cid, _) = s
        .submit(
            "Racing v1",
            &document("racing writers", 1, 600),
            Some(&category),
        )
        .await;
    let puts = join_all((0..20).map(|i| {
        let (cid, category) = (cid.clone(), category.clone());
        async move {
            let body = json!({ "title": format!("Racing put {i}"), "body": document("racing writers", 10 + i, 600), "category": category });
            s.put(&format!("/api/content/{cid}"), body).await
        }
    }))
    .await;
    let mut acked: Vec<(u64, String)> = Vec::new();
    for r in &puts {
        assert_eq!(r.status, 202, "{}", r.body);
        acked.push((
            r.body["version"].as_u64().unwrap(),
            r.body["run_id"].as_str().unwrap().to_string(),
        ));
    }
    let mut versions: Vec<u64> = acked.iter().map(|(v, _)| *v).collect();
    versions.sort();
    assert_eq!(
        versions,
        (2..=21).collect::<Vec<u64>>(),
        "every PUT got its own version"
    );
    let last_run = acked.iter().find(|(v, _)| *v == 21).unwrap().1.clone();
    assert_completed(s, &last_run).await;
    let c = s.get(&format!("/api/content/{cid}")).await;
    assert_eq!(c.body["version"], 21, "{}", c.body);
    assert_eq!(c.body["status"], "indexed");
    let history = c.body["versions"].as_array().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=21).collect::<Vec<u64>>()
    );
    for (v, run) in &acked {
        assert_eq!(
            history[*v as usize - 1]["run_id"],
            run.as_str(),
            "version {v} keeps its run"
        );
    }
    // Every superseded run ends cancelled as superseded (or finished first),
    // one superseded before its spawn landed too: a run id a 202 named
    // never reads 404.
    for (v, run) in acked.iter().filter(|(v, _)| *v < 21) {
        let view = s.wait_run(run, Duration::from_secs(120)).await;
        assert!(
            matches!(
                view["status"].as_str(),
                Some("cancelled") | Some("completed")
            ),
            "v{v}: {view}"
        );
        if view["status"] == "cancelled" {
            assert!(
                view["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("superseded by version"),
                "{view}"
            );
            // Nor can an operator bring it back.
            let r = s.admin_post(&format!("/api/runs/{run}/retry")).await;
            assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("conflict")), "v{v}: {}", r.body);
        }
    }
    let item = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    let list = s.get(&format!("/api/content?category={category}")).await;
    let row = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == cid.as_str())
        .cloned();
    assert_eq!(
        row.map(|r| (r["version"].clone(), r["title"].clone())),
        Some((json!(21), c.body["title"].clone())),
        "{}",
        item.body["state"]["outbox"]
    );
}

/// A new version leaves no text of the old one in either index, whether the
/// old version's run was cancelled as superseded or had completed first.
/// When it was cancelled, an operator's retry of it is refused. (Which of
/// the two happens depends on timing; the retry's refusal is checked only in
/// the first case. The fence that refuses a stale index write is unit-tested
/// in `domain::vector`, `fence_admits_only_current_or_newer_and_nothing_after_delete`.)
#[tokio::test]
async fn a_superseded_version_leaves_no_old_text_and_its_retry_is_refused() {
    let s = &shared().server;
    let old = "quokkaphrase";
    let new = "wombatphrase";
    let (cid, run1) = submit_marked(s, "Fenced v1", "fencing", 3, old).await;
    let r = s.put(&format!("/api/content/{cid}"), json!({ "title": "Fenced v2", "body": format!("{} {new} {new}.", document("fencing", 4, 900)) })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run2 = r.body["run_id"].as_str().unwrap().to_string();
    assert_completed(s, &run2).await;
    let v1 = s.wait_run(&run1, Duration::from_secs(60)).await;
    eprintln!("fencing: the v1 run ended {}", v1["status"]);
    if v1["status"] == "cancelled" {
        assert_eq!(v1["reason"], "superseded by version 2", "{v1}");
        // An operator's retry of the superseded run is refused: it could
        // only run its stages again to be fenced off at the index.
        let r = s.admin_post(&format!("/api/runs/{run1}/retry")).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("conflict")), "{}", r.body);
        let again = s.wait_run(&run1, Duration::from_secs(60)).await;
        assert_eq!(again["status"], "cancelled", "{again}");
        assert_eq!(again["reason"], "superseded by version 2", "{again}");
    }
    for mode in ["vector", "keyword"] {
        let hits = search_ids(s, &format!("{old} {new}"), mode).await;
        assert!(hits.contains(&cid), "{mode}: current text is found");
    }
    assert!(
        !search_ids(s, old, "keyword").await.contains(&cid),
        "old keyword text is gone"
    );
    let shard = actorline::domain::vector::shard_for(&cid, 4);
    let insp = s
        .admin_get(&format!(
            "/admin/actors/vector_index/shard-{shard}?content_id={cid}"
        ))
        .await;
    let content = &insp.body["state"]["content"];
    assert_eq!(content["fence"]["version"], 2, "{insp:?}", insp = insp.body);
    let vids = content["vectors"].as_array().unwrap();
    assert!(
        !vids.is_empty()
            && vids
                .iter()
                .all(|v| v.as_str().unwrap().starts_with(&format!("{cid}:2:"))),
        "{vids:?}"
    );
    let c = s.get(&format!("/api/content/{cid}")).await;
    assert_eq!(
        (c.body["version"].clone(), c.body["title"].clone()),
        (json!(2), json!("Fenced v2"))
    );
}

#[tokio::test]
async fn delete_erases_the_run_actors_copies() {
    // Its own server: it uses `Server::d1` (see there).
    let own = Server::start(&ServerOptions::new(temp_dir("erase-copies").join("state")));
    let s = &own;
    let word = "ocelotphrase";
    let (cid, run1) = submit_marked(s, "Secret erase title", "erasure", 7, word).await;
    assert_completed(s, &run1).await;
    // A second version still in flight when the item is deleted.
    let r = s
        .put(
            &format!("/api/content/{cid}"),
            json!({ "title": "Secret erase v2", "body": document("erasure", 8, 900) }),
        )
        .await;
    let run2 = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/api/content/{cid}")).await.status, 204);
    assert_eq!(s.get(&format!("/api/content/{cid}")).await.status, 404);
    // The runs of a deleted item are gone from the API; the inspector still sees them.
    assert_eq!(s.admin_get(&format!("/api/runs/{run2}")).await.status, 404);
    for run in [&run1, &run2] {
        let insp: Value = eventually("run purged", Duration::from_secs(30), || async {
            let r = s.admin_get(&format!("/admin/actors/run/{run}")).await;
            if r.body["state"]["purged"] == true && r.body["storage"]["artifacts"]["rows"] == 0 {
                Ok(r.body)
            } else {
                Err(r.body.to_string())
            }
        })
        .await;
        assert_eq!(insp["state"]["has_document"], false, "{insp}");
        assert!(insp["alarm_at"].is_null(), "{insp}");
        // A run now often finishes within its first activation, before the
        // DELETE lands; if it was still in flight, the delete cancelled it.
        if *run == run2 && insp["state"]["status"] != "completed" {
            assert_eq!(insp["state"]["status"], "cancelled", "{insp}");
            assert_eq!(insp["state"]["reason"], "content deleted", "{insp}");
        }
        let retry = s.admin_post(&format!("/api/runs/{run}/retry")).await;
        assert!(
            retry.status == 409 || retry.status == 404,
            "a purged run cannot run again: {}",
            retry.body
        );
    }
    let c = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    let tomb = &c.body["state"]["content"];
    assert_eq!(c.body["state"]["deleted"], true);
    assert_eq!(tomb["doc"]["title"], "");
    assert_eq!(tomb["doc"]["body"], "");
    assert!(
        !c.body["state"].to_string().contains("Secret erase"),
        "{}",
        c.body["state"]
    );
    let deleted_event = c.body["events"]["tail"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event"] == ev::CONTENT_DELETED)
        .cloned();
    assert_eq!(
        deleted_event.map(|e| e["data"]["title"].clone()),
        Some(json!(""))
    );
    let shard = actorline::domain::vector::shard_for(&cid, 4);
    let insp = s
        .admin_get(&format!(
            "/admin/actors/vector_index/shard-{shard}?content_id={cid}"
        ))
        .await;
    assert_eq!(insp.body["state"]["content"]["vectors"], json!([]));
    assert_eq!(insp.body["state"]["content"]["fence"]["deleted"], true);
    for mode in ["vector", "keyword", "hybrid"] {
        assert!(!search_ids(s, word, mode).await.contains(&cid), "{mode}");
    }
    // The catalog keeps no row of the item's runs (only their registry rows).
    eventually("runs rows erased", Duration::from_secs(30), || async {
        let rows = s.d1(&format!(
            "SELECT id FROM runs WHERE content_id = '{cid}' UNION ALL SELECT run_id FROM stage_timings WHERE run_id IN ('{run1}', '{run2}')"
        ));
        if rows.is_empty() { Ok(()) } else { Err(format!("{rows:?}")) }
    })
    .await;
    // No replay names the item again. Its own topic still numbers its
    // events up to `content.deleted` (a follower is owed it), the feed too,
    // with the title and summary erased, and the content actor's log (as
    // the inspector shows it) keeps none either.
    let ready = |ms: &[Sse]| ms.iter().any(|m| m.event == "ready");
    let topic = s.url(&format!("/api/topics/content:{cid}/events"));
    let (status, _, ms) = sse(http().get(topic).bearer_auth(&s.key), ready).await;
    assert_eq!(status, 200);
    assert!(ms.iter().any(|m| m.event == ev::CONTENT_DELETED), "{ms:?}");
    assert!(ms.iter().all(|m| !m.data.contains("Secret erase")), "{ms:?}");
    let (status, _, ms) = sse(http().get(s.url("/api/topics/feed/events")).bearer_auth(&s.key), ready).await;
    assert_eq!(status, 200);
    assert!(ready(&ms), "the feed replayed to its end");
    let mine: Vec<_> = ms.iter().filter(|m| m.data.contains(&cid)).collect();
    // Its `content.deleted` at least (the feed keeps its last 1,000 events, and
    // a suite running beside this one may push the earlier ones out).
    assert!(mine.iter().any(|m| m.event == ev::CONTENT_DELETED), "the feed still numbers the item's events: {mine:?}");
    assert!(mine.iter().all(|m| !m.data.contains("Secret erase")), "{mine:?}");
    let insp = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    assert!(!insp.body["events"].to_string().contains("Secret erase"), "{}", insp.body["events"]);
}

/// The D1 catalog converges to the actors: every item listed as indexed at
/// version 1, every run's row completed.
async fn catalog_converges(s: &Server, subs: &[(String, String)]) {
    eventually("catalog converged", Duration::from_secs(90), || async {
        let list = s.get("/api/content?limit=100").await;
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        let missing: Vec<&String> = subs
            .iter()
            .map(|(cid, _)| cid)
            .filter(|cid| {
                !items.iter().any(|i| {
                    i["id"] == cid.as_str() && i["status"] == "indexed" && i["version"] == 1
                })
            })
            .collect();
        let runs = s
            .admin_get("/admin/actors?kind=run&status=completed&limit=100")
            .await;
        let listed = runs.body["items"].as_array().cloned().unwrap_or_default();
        let unlisted: Vec<&String> = subs
            .iter()
            .map(|(_, run)| run)
            .filter(|run| !listed.iter().any(|i| i["id"] == run.as_str()))
            .collect();
        if missing.is_empty() && unlisted.is_empty() {
            Ok(())
        } else {
            Err(format!("content {missing:?}, runs {unlisted:?}"))
        }
    })
    .await;
}

/// Half of the spawns, catalog writes and feed appends fail (a feed
/// append's first try before the feed hears of it, a later try after the
/// feed appended): every one is tried until it lands, and the feed holds
/// each item's events once.
#[tokio::test]
async fn failed_spawns_and_catalog_writes_are_retried_until_they_land() {
    let dir = temp_dir("integrity-faults");
    let s = Server::start(&ServerOptions::new(dir).var("FAULTS", "spawn=0.5,catalog=0.5,feed=0.5"));
    let subs = join_all((0..8).map(|i| {
        let s = &s;
        async move {
            s.submit(
                &format!("Faulty {i}"),
                &document("unreliable", 500 + i, 700),
                None,
            )
            .await
        }
    }))
    .await;
    for (cid, run) in &subs {
        assert_completed(&s, run).await;
        let c = s.get(&format!("/api/content/{cid}")).await;
        assert_eq!(c.body["status"], "indexed", "{}", c.body);
    }
    catalog_converges(&s, &subs).await;
    let health = s.admin_get("/healthz").await;
    assert!(
        health.body.to_string().contains("spawn=0.5"),
        "{}",
        health.body
    );
    let cids: Vec<String> = subs.iter().map(|(cid, _)| cid.clone()).collect();
    // Half the announcements fail their first try, and an item's next one
    // often lands before the retry: the feed keeps each item's order.
    eventually("every item's feed events, once each, in order", Duration::from_secs(30), || async {
        feed_holds_each_once(&s, &s.key, &cids).await.inspect_err(|e| assert!(matches!(e, FeedShortfall::Missing(_)), "{e}"))
    })
    .await;
    // A version superseded before its run's spawn landed (half the spawns
    // fail at first, and each PUT comes right after the last): its run still
    // comes to exist and ends cancelled as superseded. A run id a 202 named
    // never reads 404.
    let (cid, first) = s.submit("Superseded early", &document("unreliable", 600, 700), None).await;
    let mut runs = vec![first];
    for i in 0..5 {
        let r = s.put(&format!("/api/content/{cid}"), json!({ "title": format!("Superseded early {i}"), "body": document("unreliable", 610 + i, 700) })).await;
        assert_eq!(r.status, 202, "{}", r.body);
        runs.push(r.body["run_id"].as_str().unwrap().to_string());
    }
    let last = runs.pop().unwrap();
    assert_completed(&s, &last).await;
    for run in &runs {
        let view = s.wait_run(run, Duration::from_secs(60)).await;
        let status = view["status"].as_str().unwrap_or_default();
        let superseded = view["reason"].as_str().is_some_and(|r| r.starts_with("superseded by version"));
        assert!(status == "completed" || (status == "cancelled" && superseded), "{view}");
    }
    let log = s.log_text();
    for (duty, what) in [("duty feed:", "feed append"), ("duty spawn:", "spawn"), ("duty catalog failed", "catalog write")] {
        assert!(log.contains(duty), "no {what} failed: the faults did not strike");
    }
    // Every failure here is an injected one: no statement failed.
    assert!(!log.contains("storage: "), "a storage statement failed: {}", log.lines().filter(|l| l.contains("storage: ")).collect::<Vec<_>>().join("\n"));
}

/// Every catalog write fails while the runs go on; once the faults stop (a
/// restart without them, on the same state), the actors' outboxes write the
/// catalog they owe and it matches the actors.
#[tokio::test]
async fn the_catalog_converges_once_catalog_faults_stop() {
    let dir = temp_dir("integrity-outage");
    let mut s = Server::start(&ServerOptions::new(dir.clone()).var("FAULTS", "catalog=1.0"));
    let subs = join_all((0..4).map(|i| {
        let s = &s;
        async move { s.submit(&format!("Outage {i}"), &document("outage", 600 + i, 700), None).await }
    }))
    .await;
    for (cid, run) in &subs {
        assert_completed(&s, run).await;
        assert_eq!(s.get(&format!("/api/content/{cid}")).await.body["status"], "indexed");
    }
    let listing = s.get("/api/content?limit=100").await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    let listed = listing.body["items"].as_array().cloned().expect("a listing's items");
    assert!(
        subs.iter().all(|(cid, _)| !listed.iter().any(|i| i["id"] == cid.as_str())),
        "no catalog write may land during the outage: {listed:?}"
    );
    s.restart(&ServerOptions::new(dir), false);
    catalog_converges(&s, &subs).await;
}

#[tokio::test]
async fn delete_racing_puts_leaves_nothing_behind() {
    let s = &shared().server;
    let category = format!("gone-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let word = "pangolinphrase";
    let body = |i: usize| format!("{} {word}.", document("vanishing", 900 + i, 700));
    let (cid, run1) = s.submit("Vanishing v1", &body(0), Some(&category)).await;
    assert_completed(s, &run1).await;
    let path = format!("/api/content/{cid}");
    let writes = (1..=10).map(|i| {
        let (path, category, text) = (path.clone(), category.clone(), body(i));
        async move {
            if i == 5 {
                (s.delete(&path).await, true)
            } else {
                (s.put(&path, json!({ "title": format!("Vanishing put {i}"), "body": text, "category": category })).await, false)
            }
        }
    });
    let replies = join_all(writes).await;
    let mut runs = vec![run1];
    for (r, is_delete) in &replies {
        match (is_delete, r.status) {
            (true, 204) => {}
            (false, 202) => runs.push(r.body["run_id"].as_str().unwrap().to_string()),
            (false, 404) => {}
            // `wrangler dev` sometimes drops every request in flight ("worker
            // restarted mid-request"); such a write's outcome is unknown.
            (_, 503) if dropped_by_runtime(r) => {}
            other => panic!("unexpected {other:?}: {}", r.body),
        }
    }
    let again = s.delete(&path).await;
    assert!(matches!(again.status, 204 | 404), "{}", again.body);
    assert_eq!(s.get(&path).await.status, 404);
    // Every run of the item ends purged, whatever it was doing; a run whose
    // start was still in flight at the DELETE never starts (404).
    for run in &runs {
        eventually("run purged", Duration::from_secs(60), || async {
            let r = s.admin_get(&format!("/admin/actors/run/{run}")).await;
            let st = &r.body["state"];
            let done = r.status == 404
                || st["purged"] == true
                    && st["has_document"] == false
                    && r.body["storage"]["artifacts"]["rows"] == 0;
            if done {
                Ok(())
            } else {
                Err(r.body.to_string())
            }
        })
        .await;
    }
    eventually("gone everywhere", Duration::from_secs(60), || async {
        let list = s.get(&format!("/api/content?category={category}")).await;
        let listed = list.body["items"].as_array().map(|a| a.len()).unwrap_or(0);
        let keyword = search_ids(s, word, "keyword").await.contains(&cid);
        let vector = search_ids(s, word, "vector").await.contains(&cid);
        if listed == 0 && !keyword && !vector {
            Ok(())
        } else {
            Err(format!(
                "listed {listed}, keyword {keyword}, vector {vector}"
            ))
        }
    })
    .await;
    let shard = actorline::domain::vector::shard_for(&cid, 4);
    let insp = s
        .admin_get(&format!(
            "/admin/actors/vector_index/shard-{shard}?content_id={cid}"
        ))
        .await;
    assert_eq!(
        insp.body["state"]["content"]["vectors"],
        json!([]),
        "{}",
        insp.body
    );
    assert_eq!(insp.body["state"]["content"]["fence"]["deleted"], true);
}

/// A PUT and a DELETE whose process dies before their duties land (each
/// duty's first try hangs, `FAULTS=stall=1.0`, and the process is then
/// killed) still take effect: the alarm set before the duties were tried
/// does them after the restart, with no call reaching the items. Nobody
/// retries such a request, and a listing or a search never wakes an item.
#[tokio::test]
async fn a_request_cut_off_mid_drain_still_takes_effect() {
    let dir = temp_dir("integrity-cutoff");
    let mut s = Server::start(&ServerOptions::new(dir.clone()));
    let category = format!("cutoff-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (gone, run) = s.submit("Cut off delete", &document("cutoff", 31, 700), Some(&category)).await;
    assert_completed(&s, &run).await;
    let (changed, run) = s.submit("Cut off put v1", &document("cutoff", 32, 700), Some(&category)).await;
    assert_completed(&s, &run).await;
    eventually("both items listed", Duration::from_secs(30), || async {
        let items = listed(&s, &category).await;
        if items.len() == 2 { Ok(()) } else { Err(format!("{items:?}")) }
    })
    .await;

    s.restart(&ServerOptions::new(dir.clone()).var("FAULTS", "stall=1.0"), false);
    let body = json!({ "title": "Cut off put v2", "body": document("cutoff", 33, 700), "category": category });
    let cut_off = Duration::from_secs(4);
    let put = http().put(s.url(&format!("/api/content/{changed}"))).bearer_auth(&s.key).json(&body).timeout(cut_off).send();
    let delete = http().delete(s.url(&format!("/api/content/{gone}"))).bearer_auth(&s.key).timeout(cut_off).send();
    let (put, delete) = futures_util::future::join(put, delete).await;
    assert!(put.is_err() && delete.is_err(), "a stalled request answered: {put:?} {delete:?}");

    s.restart(&ServerOptions::new(dir), true);
    // The lease (30 s from the commit) ends, the alarms fire, the duties run.
    eventually("the cut-off requests took effect", Duration::from_secs(120), || async {
        let items = listed(&s, &category).await;
        let put = items.iter().any(|i| i["id"] == changed.as_str() && i["title"] == "Cut off put v2" && i["version"] == 2 && i["status"] == "indexed");
        if put && items.len() == 1 { Ok(()) } else { Err(format!("{items:?}")) }
    })
    .await;
}

/// The catalog's listing of one category.
async fn listed(s: &Server, category: &str) -> Vec<Value> {
    s.get(&format!("/api/content?limit=10&category={category}")).await.body["items"].as_array().cloned().unwrap_or_default()
}

/// A commit that fails mid-way lands nothing: with `FAULTS=torn=0.5`, an
/// item's commit fails after its first statement (the state saved, its
/// events and duties not) whenever its title is struck. A refused version
/// leaves the item as it was, so the next accepted one is version 2 and
/// completes; a refused create leaves no item the Worker would call made.
/// Before commits were transactions, the struck version's state stayed
/// saved with no run owed: the item showed it `processing` for good.
#[tokio::test]
async fn a_commit_that_fails_mid_way_lands_nothing() {
    use actorline::domain::faults::{Faults, TORN};
    const FAULTS: &str = "torn=0.5";
    let s = &Server::start(&ServerOptions::new(temp_dir("torn").join("state")).var("FAULTS", FAULTS));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let struck = |t: &String| Faults::parse(FAULTS).poisons(TORN, t).is_some();
    let titles: Vec<String> = (0..64).map(|i| format!("torn {tag} {i}")).collect();
    let (ok, bad): (Vec<&String>, Vec<&String>) = titles.iter().partition(|t| !struck(t));
    assert!(ok.len() >= 2 && bad.len() >= 2, "titles on both sides of the fault");

    let (id, run1) = s.submit(ok[0], "the first text of a torn item", None).await;
    assert_completed(s, &run1).await;
    let put = s.put(&format!("/api/content/{id}"), json!({ "title": bad[0], "body": "a version whose commit fails" })).await;
    assert_eq!(put.status, 503, "the struck version is refused: {}", put.body);
    let view = s.get(&format!("/api/content/{id}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!((view.body["version"].as_u64(), view.body["title"].as_str(), view.body["status"].as_str()), (Some(1), Some(ok[0].as_str()), Some("indexed")), "{}", view.body);
    assert_eq!(view.body["runs"], json!([run1]), "{}", view.body);

    let put = s.put(&format!("/api/content/{id}"), json!({ "title": ok[1], "body": "the second text of a torn item" })).await;
    assert_eq!((put.status, put.body["version"].as_u64()), (202, Some(2)), "the refused version took no number: {}", put.body);
    assert_completed(s, put.body["run_id"].as_str().expect("run_id")).await;
    let view = s.get(&format!("/api/content/{id}")).await;
    assert_eq!((view.body["version"].as_u64(), view.body["status"].as_str()), (Some(2), Some("indexed")), "{}", view.body);

    let create = s.post("/api/content", json!({ "title": bad[1], "body": "an item whose create fails" })).await;
    assert_eq!(create.status, 503, "{}", create.body);
    s.logged("create failed on the way").await;
    assert!(s.log_text().contains("made: Some(false)"), "the Worker found nothing made");
}
