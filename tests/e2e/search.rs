//! Hybrid search over the indexed corpus.

use std::time::Duration;

use serde_json::Value;

use actorline::domain::fusion::RRF_K;

use crate::support::*;

const DOCS: &[(&str, &str)] = &[
    ("Tidal pools", "Tidal pools hold anemones, hermit crabs and sculpins that survive twice-daily exposure. Biologists count limpets on basalt ledges at low tide to track warming seas. The sea stars are returning after the wasting disease."),
    ("Sourdough starters", "A sourdough starter is a culture of wild yeast and lactobacilli. Feed the starter with rye flour and water, keep it warm, and the levain doubles in six hours. Bakers shape the dough into a boule and bake it in a Dutch oven."),
    ("Jet engines", "A turbofan jet engine compresses air, burns kerosene in the combustor and spins the turbine that drives the fan. Bypass ratio determines fuel efficiency. Engineers inspect turbine blades for creep and cracks with borescopes."),
    ("Baroque music", "Baroque composers such as Bach and Vivaldi wrote fugues and concertos with basso continuo. The harpsichord and the viola da gamba carry the figured bass while violins trade ornamented melodies."),
];

async fn search(s: &Server, q: &str, extra: &str) -> Value {
    let r = send(http().get(s.url("/api/search")).bearer_auth(&s.key).query(&[("q", q)]).query(&extra.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap()).collect::<Vec<_>>())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn ids(v: &Value) -> Vec<String> {
    v["results"].as_array().unwrap().iter().map(|r| r["content_id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn search_finds_filters_forgets_and_replaces() {
    let s = &shared().server;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut ids_by_doc = Vec::new();
    for (i, (title, body)) in DOCS.iter().enumerate() {
        let category = if i % 2 == 0 { format!("nature-{tag}") } else { format!("craft-{tag}") };
        let (cid, run) = s.submit(title, body, Some(&category)).await;
        ids_by_doc.push((cid, run, category));
    }
    for (_, run, _) in &ids_by_doc {
        assert_eq!(s.wait_run(run, Duration::from_secs(60)).await["status"], "completed");
    }
    // Distinctive phrasing finds its document first, in every mode.
    let queries = [
        ("limpets on basalt ledges at low tide", 0),
        ("wild yeast culture fed with rye flour", 1),
        ("turbine blades inspected with borescopes", 2),
        ("harpsichord figured bass continuo", 3),
    ];
    for (q, want) in queries {
        let r = search(s, q, "").await;
        assert_eq!(r["mode"], "hybrid");
        assert!(r["took_ms"].is_number());
        for side in ["vector_ms", "keyword_ms", "fetch_ms"] {
            assert!(r["timings"][side].is_number(), "{side}: {r}");
        }
        assert_eq!(ids(&r).first(), Some(&ids_by_doc[want].0), "query {q:?}: {r}");
        let first = &r["results"][0];
        assert!(first["snippet"].as_str().unwrap().len() > 10);
        assert!(first["score"].as_f64().unwrap() > 0.0);
        for mode in ["vector", "keyword"] {
            let r = search(s, q, &format!("mode={mode}")).await;
            assert_eq!(ids(&r).first(), Some(&ids_by_doc[want].0), "{mode} {q:?}");
        }
    }
    // The category filter excludes other categories.
    let craft = format!("craft-{tag}");
    let r = search(s, "limpets sourdough turbine harpsichord", &format!("category={craft}&k=50")).await;
    let got = ids(&r);
    assert!(!got.is_empty());
    for (cid, _, cat) in &ids_by_doc {
        if *cat != craft {
            assert!(!got.contains(cid), "category filter leaked {cid}");
        }
    }
    // A new version replaces the old vectors: one vector per chunk, no duplicates.
    let (cid, _, _) = &ids_by_doc[1];
    let long = format!("{} {}", DOCS[1].1, document("sourdough", 5, 3000));
    let r = s.put(&format!("/api/content/{cid}"), serde_json::json!({"title": "Sourdough v2", "body": long, "category": craft})).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["version"], 2);
    let run2 = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(s.wait_run(&run2, Duration::from_secs(60)).await["status"], "completed");
    let c = s.get(&format!("/api/content/{cid}")).await;
    let chunks = c.body["chunks"].as_u64().unwrap();
    assert!(chunks >= 2);
    let shard = actorline::domain::vector::shard_for(cid, 4);
    let insp = s.admin_get(&format!("/admin/actors/vector_index/shard-{shard}?content_id={cid}")).await;
    let vids: Vec<String> = insp.body["state"]["content"]["vectors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(vids.len() as u64, chunks, "{vids:?}");
    assert!(vids.iter().all(|v| v.starts_with(&format!("{cid}:2:"))), "{vids:?}");
    // ...and one keyword row, the new version's.
    let r = search(s, "levain boule rye", "mode=keyword&k=50").await;
    let hits: Vec<&Value> = r["results"].as_array().unwrap().iter().filter(|x| x["content_id"] == cid.as_str()).collect();
    assert_eq!(hits.len(), 1, "{r}");
    assert_eq!(hits[0]["title"], "Sourdough v2");
    // ...which records the version its text is, for the passages' chunks.
    let rows = s.d1(&format!("SELECT version FROM content_fts_keys WHERE content_id = '{cid}'"));
    assert_eq!(rows.first().map(|r| &r["version"]), Some(&serde_json::json!(2)), "{rows:?}");

    // After DELETE the document never appears again, by vector or keyword.
    let (gone, _, _) = &ids_by_doc[2];
    let r = s.delete(&format!("/api/content/{gone}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&format!("/api/content/{gone}")).await.status, 404);
    for mode in ["hybrid", "vector", "keyword"] {
        let r = search(s, "turbofan jet engine turbine blades borescopes", &format!("mode={mode}&k=50")).await;
        assert!(!ids(&r).contains(gone), "{mode} still finds a deleted document");
    }
}

/// A widened item's older text goes only to whom that version was visible:
/// between a `PUT` that makes a private item `tenant` and the new version's
/// index (for good, if that run fails), the catalog row says `tenant` while
/// the keyword index still holds the private version. A tenant reader's
/// search must not find that version's words; its owner's still does.
#[tokio::test]
async fn a_widened_items_older_text_stays_with_its_readers() {
    // Its own server: it uses `Server::d1` (see there).
    let own = Server::start(&ServerOptions::new(temp_dir("widened-text").join("state")));
    let s = &own;
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let body = format!("The private plan names {word} twice, {word}, in a draft about harbor cranes and tides.");
    let r = s.post("/api/content", serde_json::json!({"title": "Private draft", "body": body, "visibility": "private"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let reader = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:read"], None);
    let finds = |key: String| {
        let word = word.clone();
        async move {
            let r = send(http().get(s.url("/api/search")).bearer_auth(key).query(&[("q", word.as_str()), ("k", "50")])).await;
            assert_eq!(r.status, 200, "{}", r.body);
            ids(&r.body)
        }
    };
    assert!(finds(s.key.clone()).await.contains(&cid), "the owner finds its private item");
    assert!(!finds(reader.clone()).await.contains(&cid), "a tenant reader does not");
    // The catalog as a widening PUT leaves it until the new version is indexed.
    s.d1(&format!("UPDATE content SET visibility = 'tenant' WHERE id = '{cid}'"));
    assert!(!finds(reader).await.contains(&cid), "a tenant reader finds the private version's words");
    assert!(finds(s.key.clone()).await.contains(&cid), "its owner still does");
}

/// Submits `body` with `key`: (content id, run id).
async fn submit_as(s: &Server, key: &str, body: Value) -> (String, String) {
    let r = send(http().post(s.url("/api/content")).bearer_auth(key).json(&body)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string())
}

/// A nonce word no other document holds, and two writers of a fresh tenant.
fn two_writers(s: &Server, tag: &str) -> (String, String, String) {
    let t = format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let writer = || mint_key(&s.base, &s.admin_token, &t, &["content:write"], None);
    (word, writer(), writer())
}

/// The vector index knows no owners: it answers the best chunks of the
/// caller's namespaces, and a colleague's long private document can fill
/// every place asked for. The caller's readable match must still be found
/// (the vector side asks again for as many as the index gives).
#[tokio::test]
async fn a_long_unreadable_document_does_not_crowd_out_the_vector_side() {
    let s = &shared().server;
    let (word, a, b) = two_writers(s, "longcrowd");
    let submit = |key: String, body: Value| async move {
        let (content, run) = submit_as(s, &key, body).await;
        assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
        content
    };
    // Some 30 chunks, each nothing but the word.
    let long = vec![format!("{word} ").repeat(60).trim_end().to_string() + "."; 30].join("\n\n");
    let secret = submit(a.clone(), serde_json::json!({"title": "Long plan", "body": long, "visibility": "private"})).await;
    let mine = submit(b.clone(), serde_json::json!({"title": "Crane notes", "body": format!("Notes on {word} and the crane schedules of the harbor."), "visibility": "tenant"})).await;
    let search = |key: String| {
        let word = word.clone();
        async move {
            let r = send(http().get(s.url("/api/search")).bearer_auth(key).query(&[("q", word.as_str()), ("k", "1"), ("mode", "vector")])).await;
            assert_eq!(r.status, 200, "{}", r.body);
            ids(&r.body)
        }
    };
    assert_eq!(search(a).await, vec![secret], "its owner's best match is the long document");
    assert_eq!(search(b).await, vec![mine], "the other member's vector search finds its own item");
}

/// Another member's private items that match better than one's own do not
/// crowd it out of a search: each side keeps only what the caller may read
/// before the ranks are fused, so missing results say nothing of items the
/// caller may not see. (Private items share their tenant's keyword scope
/// token and vector namespace.)
#[tokio::test]
async fn unreadable_matches_do_not_crowd_out_readable_ones() {
    let s = &shared().server;
    let (word, a, b) = two_writers(s, "crowd");
    let submit = |key: String, body: Value| async move { submit_as(s, &key, body).await };
    let mut runs = Vec::new();
    for title in ["plan", "memo"] {
        let body = format!("The {word} {title}: {word} for the harbor, {word} again, and {word} once more.");
        runs.push(submit(a.clone(), serde_json::json!({"title": format!("{word} {title}"), "body": body, "visibility": "private"})).await.1);
    }
    let filler = "The quarterly review covers shipping schedules, crane maintenance and the tide tables for the harbor. ".repeat(30);
    let (mine, run) = submit(b.clone(), serde_json::json!({"title": "Harbor review", "body": format!("{filler} It mentions {word} once."), "visibility": "tenant"})).await;
    runs.push(run);
    for run in &runs {
        assert_eq!(s.wait_run(run, Duration::from_secs(60)).await["status"], "completed");
    }
    let search = |key: String, k: &'static str, mode: &'static str| {
        let word = word.clone();
        async move {
            let r = send(http().get(s.url("/api/search")).bearer_auth(key).query(&[("q", word.as_str()), ("k", k), ("mode", mode)])).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        }
    };
    // The owner of the private items finds them above the other's.
    let owners = search(a.clone(), "3", "keyword").await;
    assert_eq!(ids(&owners).len(), 3, "{owners}");
    assert_ne!(ids(&owners)[0], mine, "{owners}");
    let r = search(b.clone(), "1", "keyword").await;
    assert_eq!(ids(&r), vec![mine.clone()], "keyword: {r}");
    // Hybrid: its keyword rank is still the first. The vector side's first
    // hit for a nonce word is any public item of the shared server, which
    // ties with it at 1/(RRF_K+1), so two results hold it whatever they are.
    let r = search(b.clone(), "2", "hybrid").await;
    let hit = r["results"].as_array().unwrap().iter().find(|h| h["content_id"] == mine.as_str());
    let hit = hit.unwrap_or_else(|| panic!("hybrid: {r}"));
    assert_eq!(hit["sources"]["keyword"], true, "{r}");
    let first = f64::from(1.0 / (RRF_K + 1.0));
    assert!(hit["score"].as_f64().unwrap() > first - 1e-6, "hybrid: a first keyword rank's score: {r}");
    // Ranked first among what it may read: its score is a first rank's, as
    // the owner's best is, not a third's.
    assert_eq!(search(b.clone(), "1", "keyword").await["results"][0]["score"], owners["results"][0]["score"]);
}

/// A PUT that widens a private item shows its new readers nothing of the
/// private version: not what it derived (its summary, keywords) in the view
/// or the listing, while the new version runs or after it failed, nor its
/// title in the history, nor its run.
#[tokio::test]
async fn a_widened_items_older_summary_stays_with_its_readers() {
    let s = &shared().server;
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let category = format!("w{}", &word[2..]);
    let body = format!("The private plan names {word} in a draft about harbor cranes and tides.");
    let title = format!("Private draft {word}");
    let r = s.post("/api/content", serde_json::json!({"title": title, "body": body, "category": category, "visibility": "private"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    let first_run = r.body["run_id"].as_str().unwrap().to_string();
    s.wait_run(&first_run, Duration::from_secs(60)).await;
    let owned = s.get(&format!("/api/content/{cid}")).await;
    assert!(owned.body["summary"].as_str().is_some_and(|t| t.contains(&word)), "the owner sees its summary: {}", owned.body);
    let put = serde_json::json!({"title": "Note", "body": "!!! ??? ... --- ***", "category": category, "visibility": "tenant"});
    let r = s.put(&format!("/api/content/{cid}"), put).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reader = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:read"], None);
    let view = send(http().get(s.url(&format!("/api/content/{cid}"))).bearer_auth(&reader)).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert!(!view.body.to_string().contains(&word), "the view shows the private version: {}", view.body);
    assert_eq!(view.body["versions"].as_array().map(Vec::len), Some(2), "{}", view.body);
    let run = send(http().get(s.url(&format!("/api/runs/{first_run}"))).bearer_auth(&reader)).await;
    assert_eq!(run.status, 404, "the private version's run: {}", run.body);
    assert!(s.get(&format!("/api/content/{cid}")).await.body.to_string().contains(&title), "its owner still sees it");
    eventually("the catalog row of version 2", Duration::from_secs(30), || async {
        let l = send(http().get(s.url("/api/content")).bearer_auth(&reader).query(&[("category", category.as_str())])).await;
        match l.body["items"].as_array().and_then(|i| i.first()).cloned() {
            Some(row) if row["version"] == 2 => Ok(assert!(!row.to_string().contains(&word), "the listing shows the private version: {row}")),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Once runs settle, the indexes hold the item's highest version's text and
/// nothing older (DESIGN.md, integrity): when a `PUT`'s version fails (here
/// its body has no words to index), the indexed version's words are no
/// longer found, by keyword or by vector.
#[tokio::test]
async fn a_failed_newer_version_leaves_nothing_older_in_the_indexes() {
    let s = &shared().server;
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let body = format!("The {word} observatory tracks comets over the northern ridge every winter night.");
    let r = s.post("/api/content", serde_json::json!({"title": "Observatory notes", "body": body})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    for mode in ["keyword", "vector"] {
        assert!(ids(&search(s, &body, &format!("mode={mode}&k=50")).await).contains(&cid), "{mode} finds version 1");
    }
    let r = s.put(&format!("/api/content/{cid}"), serde_json::json!({"title": "Observatory notes", "body": "!!! ??? ... --- ***"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = s.wait_run(r.body["run_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(run["status"], "failed", "{run}");
    // The failure's duties (catalog, vectors) follow the run's end.
    let mut found = Vec::new();
    for _ in 0..50 {
        found = Vec::new();
        for mode in ["keyword", "vector"] {
            if ids(&search(s, &body, &format!("mode={mode}&k=50")).await).contains(&cid) {
                found.push(mode);
            }
        }
        if found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found.is_empty(), "version 1's text is still found after version 2 failed: {found:?}");
    assert_eq!(s.get(&format!("/api/content/{cid}")).await.body["status"], "failed");
}

#[tokio::test]
async fn bad_queries_are_4xx() {
    let s = &shared().server;
    for (q, code) in [
        ("/api/search", 422),
        ("/api/search?q=", 422),
        ("/api/search?q=%20%20", 422),
        ("/api/search?q=ok&k=0", 422),
        ("/api/search?q=ok&k=51", 422),
        ("/api/search?q=ok&k=ten", 422),
        ("/api/search?q=ok&mode=psychic", 422),
        ("/api/search?q=a%00b", 422),
    ] {
        let r = s.get(q).await;
        assert_eq!(r.status, code, "{q}: {}", r.body);
        assert!(r.body["error"]["code"].is_string());
    }
    let long = "x".repeat(501);
    let r = s.get(&format!("/api/search?q={long}")).await;
    assert_eq!(r.status, 422);
    // FTS syntax in user input is treated as words, never as a query language.
    for q in ["\"unbalanced", "NEAR(a b)", "a OR", "*", "title:foo", "-", "(((", "AND AND"] {
        let r = send(http().get(s.url("/api/search")).bearer_auth(&s.key).query(&[("q", q)])).await;
        assert!(r.status == 200 || r.status == 422, "{q}: {} {}", r.status, r.body);
    }
}
