//! The analyze stage and the analyzer service behind its circuit breaker.

use std::time::Duration;

use crate::support::*;

const ORIGINAL: &str = "The city council approved a plan to convert the old rail yard into a public park with \
community gardens, a skate area and a small amphitheater. Construction will begin in the spring and the first \
section should open by late summer. Residents asked for more shade trees, drinking fountains and safe bicycle \
lanes connecting the park to the river trail. The council also set aside money for maintenance so the park does \
not fall into disrepair, and promised to publish quarterly reports on the budget and the schedule. Local schools \
plan to use the amphitheater for concerts and outdoor classes, and the library will host reading events there.";

#[tokio::test]
async fn near_duplicates_are_flagged_with_the_originals_id() {
    let s = &shared().server;
    let (orig, run) = s.submit("Rail yard park", ORIGINAL, Some("civic")).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
    let copy = ORIGINAL.replace("spring", "autumn").replace("late summer", "early winter") + " Officials thanked volunteers.";
    let (dup, run) = s.submit("Rail yard park (copy)", &copy, Some("civic")).await;
    let view = s.wait_run(&run, Duration::from_secs(60)).await;
    assert_eq!(view["stages"][6]["status"], "completed", "{view}");
    let c = s.get(&format!("/api/content/{dup}")).await;
    let near = c.body["analysis"]["near_duplicates"].as_array().expect("analysis present");
    assert!(near.iter().any(|d| d["id"] == orig.as_str()), "{}", c.body["analysis"]);
    let a = &c.body["analysis"];
    assert_eq!(a["language"]["code"], "en");
    assert!(a["readability"]["flesch_reading_ease"].is_number());
    assert!(a["reading_time_seconds"].as_u64().unwrap() >= 1);
    // The analyzer's own health counts what it has fingerprinted.
    let url = shared().analyzer.lock().unwrap().as_ref().map(|a| a.url.clone()).unwrap();
    let h: serde_json::Value = http().get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
    assert!(h["fingerprints"].as_u64().unwrap() >= 2, "{h}");
}

#[tokio::test]
async fn runs_complete_without_the_analyzer_and_use_it_again_when_back() {
    let dir = temp_dir("analyzer-down");
    let data = dir.join("analyzer");
    let analyzer = Analyzer::start(&data);
    let port = analyzer.port();
    let opts = ServerOptions { analyzer_url: Some(analyzer.url.clone()), ..ServerOptions::new(dir.join("state")) }
        .var("ANALYZER_BREAKER_THRESHOLD", "2")
        .var("ANALYZER_BREAKER_COOLDOWN_MS", "500");
    let s = Server::start(&opts);
    let (_, run) = s.submit("Analyzed", &document("analyzer up", 81, 900), None).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["stages"][6]["status"], "completed");

    drop(analyzer); // stopped mid-suite
    for i in 0..2 {
        let (cid, run) = s.submit(&format!("Unanalyzed {i}"), &document("analyzer down", 90 + i, 900), None).await;
        let view = s.wait_run(&run, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "completed", "{view}");
        let analyze = &view["stages"][6];
        assert_eq!(analyze["status"], "skipped", "{analyze}");
        assert!(analyze["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(s.get(&format!("/api/content/{cid}")).await.body.get("analysis").is_none());
    }
    let breaker = s.admin_get("/admin/actors/analyzer/analyzer").await;
    assert!(breaker.body["state"]["breaker"]["opened_total"].as_u64().unwrap() >= 1, "{}", breaker.body);

    let _back = Analyzer::start_on(&data, port);
    tokio::time::sleep(Duration::from_millis(700)).await; // past the cool-down
    let (cid, run) = s.submit("Analyzed again", &document("analyzer back", 99, 900), None).await;
    let view = s.wait_run(&run, Duration::from_secs(60)).await;
    assert_eq!(view["stages"][6]["status"], "completed", "{view}");
    assert!(s.get(&format!("/api/content/{cid}")).await.body["analysis"]["fingerprint"].is_string());
}

/// Another text than `ORIGINAL`, so the two tests' items never match each other.
const NOTICE: &str = "The harbor authority will dredge the north channel this winter so that larger ferries can \
dock at the new terminal. Fishing boats will use the south quay while the work goes on, and a temporary footbridge \
will link the two piers. The authority expects the channel to reopen before the tourist season, and it will post \
weekly updates on tides, closures and noise at the harbor office and on its notice boards along the promenade. \
Divers will first survey the seabed for old moorings and debris, and a marine biologist will watch the seagrass beds.";

/// A near copy of `NOTICE` with `n` small edits and a unique closing line.
fn notice_copy(n: usize) -> String {
    let mut text = NOTICE.replace("this winter", "next winter");
    if n > 1 {
        text = text.replace("weekly updates", "daily updates");
    }
    format!("{text} Reference {}.", uuid::Uuid::new_v4().simple())
}

/// Submits `body` with `key` and returns the content id once its run completed.
async fn analyzed(s: &Server, key: &str, title: &str, body: &str) -> String {
    let r = send(http().post(s.url("/api/content")).bearer_auth(key).json(&serde_json::json!({ "title": title, "body": body }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let view = s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(view["stages"][6]["status"], "completed", "{view}");
    r.body["content_id"].as_str().unwrap().to_string()
}

/// The ids the stored analysis of `id` names as near duplicates, as the
/// analyzer answered (the inspector's copy: a view leaves out what its
/// reader may not read, a deleted item's id included).
async fn flagged(s: &Server, id: &str) -> Vec<String> {
    let c = s.admin_get(&format!("/admin/actors/content/{id}")).await;
    let near = c.body["state"]["content"]["artifacts"]["analysis"]["near_duplicates"].as_array().cloned().unwrap_or_default();
    near.iter().filter_map(|d| d["id"].as_str().map(str::to_string)).collect()
}

/// The ids `key`'s view of `id` names as near duplicates.
async fn shown(s: &Server, key: &str, id: &str) -> Vec<String> {
    let c = send(http().get(s.url(&format!("/api/content/{id}"))).bearer_auth(key)).await;
    assert_eq!(c.status, 200, "{}", c.body);
    let near = c.body["analysis"]["near_duplicates"].as_array().cloned().unwrap_or_default();
    near.iter().filter_map(|d| d["id"].as_str().map(str::to_string)).collect()
}

/// Near duplicates are found among every fingerprint of a tenant, but an
/// item's view names only those its reader may read: a colleague's private
/// item is 404 to it, so another item's analysis must not reveal that it
/// exists, nor that its text is like one the reader wrote.
#[tokio::test]
async fn a_view_names_no_near_duplicate_its_reader_may_not_read() {
    let s = &shared().server;
    let t = unique_tenant("dups");
    let (a, b) = (
        mint_key(&s.base, &s.admin_token, &t, &["content:write"], Some(1_000_000)),
        mint_key(&s.base, &s.admin_token, &t, &["content:write"], Some(1_000_000)),
    );
    let private = |key: &str, title: &str, body: String| {
        let (key, title) = (key.to_string(), title.to_string());
        async move {
            let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&serde_json::json!({ "title": title, "body": body, "visibility": "private" }))).await;
            assert_eq!(r.status, 202, "{}", r.body);
            let view = s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
            assert_eq!(view["stages"][6]["status"], "completed", "{view}");
            r.body["content_id"].as_str().unwrap().to_string()
        }
    };
    let secret = private(&a, "A's plan", notice_copy(1)).await;
    let guess = private(&b, "B's guess", notice_copy(1)).await;
    assert!(flagged(s, &guess).await.contains(&secret), "the analyzer matched the two");
    assert_eq!(send(http().get(s.url(&format!("/api/content/{secret}"))).bearer_auth(&b)).await.status, 404);
    assert_eq!(shown(s, &b, &guess).await, Vec::<String>::new(), "B's view names A's private item");
    // A may read both, so its own copy's view names what it may read.
    let own = private(&a, "A's copy", notice_copy(2)).await;
    let names = shown(s, &a, &own).await;
    assert!(names.contains(&secret) && !names.contains(&guess), "{names:?}");
}

#[tokio::test]
async fn near_duplicates_stay_in_their_tenant_and_forget_deleted_items() {
    let s = &shared().server;
    let original = analyzed(s, &s.key, "Harbor notice", NOTICE).await;
    let same_tenant = analyzed(s, &s.key, "Harbor notice (copy)", &notice_copy(1)).await;
    assert!(flagged(s, &same_tenant).await.contains(&original), "a copy in the same tenant is flagged");

    let other = mint_key(&s.base, &s.admin_token, &format!("other{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), &["content:manage"], Some(1_000_000));
    let elsewhere = analyzed(s, &other, "Harbor notice (another tenant)", &notice_copy(1)).await;
    assert_eq!(flagged(s, &elsewhere).await, Vec::<String>::new(), "another tenant's items are never named");

    let r = send(http().delete(s.url(&format!("/api/content/{original}"))).bearer_auth(&s.key)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // The forget is a duty the deletion owes: it lands within moments.
    for attempt in 0.. {
        let later = analyzed(s, &s.key, "Harbor notice (after the delete)", &notice_copy(2)).await;
        let names = flagged(s, &later).await;
        assert!(names.contains(&same_tenant), "the live copy is still flagged: {names:?}");
        if !names.contains(&original) {
            break;
        }
        assert!(attempt < 5, "the deleted item is still named as a near duplicate: {names:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
