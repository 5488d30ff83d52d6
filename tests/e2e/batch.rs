//! Bulk imports through the local `INGEST` queue: a 1,000-item import that
//! settles every item under the in-flight cap, a
//! poisoned item that ends on the dead-letter queue, whole-batch validation,
//! access, and the rate limit.
//!
//! These run on a server of their own: a small in-flight cap, and the
//! `ingest` fault at a rate that poisons about one title in a hundred (the
//! tests pick titles with `Faults::poisons`, the server's own rule).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actorline::domain::batch::{PROGRESS_EVERY_ITEMS, PROGRESS_EVERY_MS};
use actorline::domain::faults::{Faults, INGEST};
use serde_json::{json, Value};

use crate::support::*;

const MAX_IN_FLIGHT: u64 = 16;
const FAULTS: &str = "ingest=0.01";

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let opts = ServerOptions::new(temp_dir("batch").join("state"))
            .var("INGEST_MAX_IN_FLIGHT", &MAX_IN_FLIGHT.to_string())
            .var("FAULTS", FAULTS);
        Server::start(&opts)
    })
}

/// One batch test at a time on the batch server: the local queue broker
/// (miniflare) has stalled when several batches with retries shared it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server of its own where the queue refuses every batch and the first
/// reply to every create is lost after the actor took it.
fn lost_replies() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(&ServerOptions::new(temp_dir("batch-enqueue").join("state")).var("FAULTS", "enqueue=1.0,reply=1.0")))
}

/// A new item whose create's reply was lost (an actor reset mid-call leaves
/// the Worker not knowing whether it was stored) is asked for again with the
/// same id: the client gets its 202, and the item is made once, with one
/// version and one run, which completes. (Asked once, the POST was a 503
/// for an item that then went on without the client knowing its id.)
#[tokio::test]
async fn a_new_item_whose_reply_was_lost_is_asked_again_and_made_once() {
    let s = lost_replies();
    let r = s.post("/api/content", json!({ "title": "Lost reply", "body": "A note about harbors whose first reply was lost." })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (id, run) = (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string());
    s.logged(&format!("content {id}: create try 1 failed, asking again")).await;
    made_once(s, &id, &run).await;
}

/// Item `id` was made once, with one version whose run `run` completed.
async fn made_once(s: &Server, id: &str, run: &str) {
    let view = s.wait_run(run, Duration::from_secs(60)).await;
    assert_eq!(view["status"], "completed", "{view}");
    let item = s.get(&format!("/api/content/{id}")).await;
    assert_eq!((item.body["version"].as_u64(), item.body["runs"].clone()), (Some(1), json!([run])), "{}", item.body);
}

/// A server of its own where every try's reply to a create is lost after
/// the actor took it (`replies=1.0`): the Worker's tries all fail, and it
/// settles each create with its actor.
fn every_reply_lost() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(&ServerOptions::new(temp_dir("replies-lost").join("state")).var("FAULTS", "replies=1.0")))
}

/// Every reply to a create lost: the item, made by the first try, is
/// settled as made and accepted (202 with the ids the Worker chose), once;
/// a 5xx would make the client's retry a second item. The same for a batch:
/// accepted and imported once.
#[tokio::test]
async fn a_create_made_though_every_reply_was_lost_is_accepted_once() {
    let s = every_reply_lost();
    let word = tag();
    let r = s.post("/api/content", json!({ "title": format!("{word} lost replies"), "body": "A note about harbors whose every reply was lost." })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (id, run) = (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string());
    assert_eq!(r.body["version"], 1, "{}", r.body);
    s.logged(&format!("content {id}: create failed on the way")).await;
    made_once(s, &id, &run).await;

    let batch = submit(s, items(&word, 3)).await;
    s.logged(&format!("batch {batch}: create failed on the way")).await;
    let view = s.wait_batch(&batch, Duration::from_secs(60)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(3), Some(0)), "{view}");
}

fn poisoned(title: &str) -> bool {
    Faults::parse(FAULTS).poisons(INGEST, title).is_some()
}

/// `n` tiny items whose titles the fault leaves alone, tagged with `tag`.
fn items(tag: &str, n: usize) -> Vec<Value> {
    (0..)
        .map(|i| format!("{tag} item {i}"))
        .filter(|t| !poisoned(t))
        .take(n)
        .map(|title| json!({ "title": title, "body": format!("{title}: a short note about harbors and lanterns.") }))
        .collect()
}

fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn submit(s: &Server, items: Vec<Value>) -> String {
    let n = items.len();
    let r = s.post("/api/content/batch", json!({ "items": items })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["accepted"], n);
    let id = r.body["batch_id"].as_str().expect("batch_id").to_string();
    assert_eq!(r.body["links"]["batch"], format!("/api/batches/{id}"));
    id
}

/// Waits until every item is terminal; the in-flight cap held throughout
/// (`max_in_flight_observed` is the highest count the batch ever had).
async fn settled(s: &Server, id: &str, timeout: Duration) -> Value {
    let view = s.wait_batch(id, timeout).await;
    assert!(view["max_in_flight_observed"].as_u64().unwrap() <= MAX_IN_FLIGHT, "cap broken: {}", view["max_in_flight_observed"]);
    view
}

/// The event names of the batch's topic, replayed over SSE from the start
/// (the stream is read until it says `ready`).
async fn topic_events(s: &Server, id: &str) -> Vec<String> {
    let url = s.url(&format!("/api/topics/batch:{id}/events?after=0"));
    let mut resp = http().get(url).bearer_auth(&s.key).send().await.expect("sse");
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("event: ready") {
        match tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    text.lines().filter_map(|l| l.strip_prefix("event: ")).filter(|e| e.starts_with("batch.")).map(str::to_string).collect()
}

/// Imports `n` tiny items and checks that every one settles, completed,
/// under the in-flight cap, with coalesced progress and one completion.
async fn an_import_settles(n: u64, timeout: Duration) {
    let s = server();
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let id = submit(s, items(&tag(), n as usize)).await;
    let accepted_in = started.elapsed();
    let view = settled(s, &id, timeout).await;
    let took = started.elapsed();
    assert_eq!((view["total"].as_u64(), view["completed"].as_u64(), view["failed"].as_u64()), (Some(n), Some(n), Some(0)), "{}", view["items"]);
    assert_eq!(view["spawned"], n);
    assert_eq!(view["status"], "completed");
    let items = view["items"].as_array().unwrap();
    let indexes: Vec<u64> = items.iter().map(|i| i["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..n).collect::<Vec<u64>>(), "every index accounted for, once");
    assert!(items.iter().all(|i| i["status"] == "completed" && i["content_id"].is_string() && i["run_id"].is_string()));
    let observed = view["max_in_flight_observed"].as_u64().unwrap();
    assert!((1..=MAX_IN_FLIGHT).contains(&observed), "observed {observed}");
    // An item is an ordinary content item of the submitter's tenant, indexed.
    let first = s.get(&format!("/api/content/{}", items[0]["content_id"].as_str().unwrap())).await;
    assert_eq!((first.status, first.body["status"].as_str(), first.body["tenant"].as_str()), (200, Some("indexed"), Some(TEST_TENANT)));
    let events = topic_events(s, &id).await;
    eprintln!(
        "batch of {n}: accepted in {accepted_in:?}, settled in {took:?} ({:.1} items/s), max in flight {observed} of {MAX_IN_FLIGHT}, {} events",
        n as f64 / took.as_secs_f64(),
        events.len()
    );
    // Progress went out coalesced (at most one per PROGRESS_EVERY_MS, or per
    // PROGRESS_EVERY_ITEMS settled), then one completion.
    assert_eq!(events.last().map(String::as_str), Some(ev::BATCH_COMPLETED), "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == ev::BATCH_COMPLETED).count(), 1);
    let bound = took.as_millis() as u64 / PROGRESS_EVERY_MS as u64 + n / u64::from(PROGRESS_EVERY_ITEMS) + 2;
    assert!((2..=bound as usize).contains(&events.len()), "{} events for {n} items in {took:?}", events.len());
}

/// The 1,000 items, in `make test`: about 70 s on a quiet 2-core
/// machine (14 items/s at a cap of 16, bound by the runs), about 5 min when
/// the machine is loaded; the timeout allows for the latter.
#[tokio::test]
async fn a_thousand_items_all_settle_under_the_in_flight_cap() {
    an_import_settles(1000, Duration::from_secs(900)).await;
}

#[tokio::test]
async fn a_poisoned_item_lands_in_the_dead_letter_queue_and_fails_with_its_reason() {
    let s = server();
    let _turn = TURN.lock().await;
    let t = tag();
    let poison = (0..).map(|i| format!("{t} poison {i}")).find(|title| poisoned(title)).unwrap();
    let mut batch = items(&t, 2);
    batch.insert(1, json!({ "title": poison, "body": "valid, but its spawn always fails" }));
    let id = submit(s, batch).await;
    let view = settled(s, &id, Duration::from_secs(600)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(2), Some(1)), "{view}");
    let bad = &view["items"][1];
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(bad["content_id"].is_null(), "never spawned: {bad}");
    let error = bad["error"].as_str().unwrap();
    assert!(error.starts_with("dead-lettered after 5 failed spawn attempts: injected fault (ingest=0.01)"), "{error}");
    // The topic replays its progress, then the completion, over SSE.
    let events = topic_events(s, &id).await;
    assert_eq!(events.last().map(String::as_str), Some(ev::BATCH_COMPLETED), "{events:?}");
}

#[tokio::test]
async fn a_batch_is_validated_whole() {
    let s = server();
    let _turn = TURN.lock().await;
    let r = s.post("/api/content/batch", json!({ "items": items(&tag(), 1001) })).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let mut batch = items(&tag(), 3);
    batch[1] = json!({ "title": "", "body": "b" });
    let r = s.post("/api/content/batch", json!({ "items": batch })).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1 of 3 items refused") && message.contains("items[1].title"), "{message}");
    assert_eq!(s.post("/api/content/batch", json!({ "items": [] })).await.status, 422);
    assert_eq!(s.post("/api/content/batch", json!({ "things": [] })).await.status, 422);
    let r = send(http().post(s.url("/api/content/batch")).bearer_auth(&s.key).body("x")).await;
    assert_eq!(r.status, 415);
    let reader = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:read"], None);
    let r = send(http().post(s.url("/api/content/batch")).bearer_auth(&reader).json(&json!({ "items": items(&tag(), 1) }))).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn only_the_submitter_reads_a_batch_and_its_topic() {
    let s = server();
    let _turn = TURN.lock().await;
    let id = submit(s, items(&tag(), 2)).await;
    let other = mint_key(&s.base, &s.admin_token, &format!("other-{}", tag()), &["content:manage"], None);
    let sibling = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:manage"], None);
    for key in [Some(&other), Some(&sibling), None] {
        let with = |b: reqwest::RequestBuilder| match key {
            Some(k) => b.bearer_auth(k),
            None => b,
        };
        let r = send(with(http().get(s.url(&format!("/api/batches/{id}"))))).await;
        assert_eq!(r.status, 404, "{}", r.body);
        let r = send(with(http().get(s.url(&format!("/api/topics/batch:{id}/events"))))).await;
        assert_eq!(r.status, 404);
    }
    let (sid, token) = new_session_as(s, &other).await;
    let mut ws = connect(s, &sid, &token).await;
    ws_send(&mut ws, json!({ "type": "subscribe", "topic": format!("batch:{id}"), "after": 0 })).await;
    let f = ws_next(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!((f["type"].as_str(), f["code"].as_str()), (Some("error"), Some("unknown_topic")), "{f}");
    // The submitter subscribes over its own session; the operator reads the view.
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    ws_send(&mut ws, json!({ "type": "subscribe", "topic": format!("batch:{id}"), "after": 0 })).await;
    let f = ws_next(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(f["type"], "subscribed", "{f}");
    assert_eq!(s.admin_get(&format!("/api/batches/{id}")).await.status, 200);
    assert_eq!(s.get(&format!("/api/batches/{}", uuid::Uuid::new_v4())).await.status, 404);
    assert_eq!(s.get("/api/batches/not-a-uuid").await.status, 400);
    settled(s, &id, Duration::from_secs(600)).await;
}

#[tokio::test]
async fn a_batch_is_one_write_against_the_rate_limit() {
    let s = server();
    let _turn = TURN.lock().await;
    let limited = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:write"], Some(2));
    let post = || send(http().post(s.url("/api/content/batch")).bearer_auth(&limited).json(&json!({ "items": items(&tag(), 5) })));
    assert_eq!(post().await.status, 202);
    assert_eq!(post().await.status, 202, "ten items so far, two writes");
    let r = post().await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
}

/// An item deleted while its run is still going ends the batch's item,
/// `failed` with the reason: its run is purged and cannot report, and the
/// batch would otherwise hold its in-flight place and never complete. (On
/// a server of its own: every embed fails, retried a minute apart, so the
/// runs are still going when the items are deleted.)
#[tokio::test]
async fn deleting_an_item_mid_run_ends_it_in_its_batch() {
    let opts = ServerOptions::new(temp_dir("batch-delete").join("state")).var("FAULTS", "embed=1.0").var("RETRY_BASE_MS", "60000");
    let s = &Server::start(&opts);
    let id = submit(s, items(&tag(), 2)).await;
    let running = eventually("both items running", Duration::from_secs(60), || async {
        let view = s.get(&format!("/api/batches/{id}")).await.body;
        let items = view["items"].as_array().cloned().unwrap_or_default();
        let running = items.len() == 2 && items.iter().all(|i| i["status"] == "running" && i["content_id"].is_string());
        if running { Ok(items) } else { Err(view.to_string()) }
    })
    .await;
    for item in &running {
        let r = s.delete(&format!("/api/content/{}", item["content_id"].as_str().unwrap())).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let view = s.wait_batch(&id, Duration::from_secs(60)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(0), Some(2)), "{view}");
    assert!(view["items"].as_array().unwrap().iter().all(|i| i["error"] == "content deleted"), "{view}");
    // An operator finds the batch in the registry and inspects it: a
    // spawned item's document went to its content actor, so the batch kept
    // no copy of the deleted items' text (a hard delete leaves none).
    let r = s.admin_get(&format!("/admin/actors/batch/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.to_string().contains("harbors and lanterns"), "the batch still holds a deleted item's text: {}", r.body);
    eventually("the batch in the registry", Duration::from_secs(10), || async {
        let listed = s.admin_get("/admin/actors?kind=batch").await.body;
        let found = listed["items"].as_array().is_some_and(|a| a.iter().any(|i| i["id"] == id.as_str()));
        if found { Ok(()) } else { Err(listed.to_string()) }
    })
    .await;
}

/// An item whose every spawn reply is lost (`item_reply=1.0`: its content
/// actor took the create, the batch never heard) is not failed as
/// dead-lettered once its tries run out: its actor is asked, says it was
/// made, and the item runs (its run reports its end). (On a server of its
/// own where every embed fails a minute apart, so no run ends, and its
/// report settles nothing, before the tries run out.)
#[tokio::test]
async fn an_item_made_though_every_spawn_reply_was_lost_runs_not_fails() {
    let opts = ServerOptions::new(temp_dir("batch-item-reply").join("state")).var("FAULTS", "item_reply=1.0,embed=1.0").var("RETRY_BASE_MS", "60000");
    let s = &Server::start(&opts);
    let id = submit(s, items(&tag(), 1)).await;
    // Five tries with backoff (1, 2, 4, 8 s between them), then the settle.
    let item = eventually("the item out of its spawn tries", Duration::from_secs(60), || async {
        let view = s.get(&format!("/api/batches/{id}")).await.body;
        let item = view["items"][0].clone();
        if matches!(item["status"].as_str(), Some("running" | "failed" | "completed")) { Ok(item) } else { Err(view.to_string()) }
    })
    .await;
    assert_eq!(item["status"], "running", "{item}");
    // Its replies were lost: four tries failed, the fifth was settled.
    assert_eq!(item["spawn_failures"], 4, "{item}");
    let cid = item["content_id"].as_str().expect("the item's content id").to_string();
    let r = s.get(&format!("/api/content/{cid}")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("processing")), "{}", r.body);
}

/// A `PUT` to a batch's item whose first run was never spawned (its spawn
/// still owed, retried with backoff) ends the item in its batch: that run
/// will never start, so it cannot report, and the batch would hold the
/// item's in-flight place for good. (On a server of its own where every
/// run's spawn fails.)
#[tokio::test]
async fn a_put_before_the_first_run_spawned_ends_the_item_in_its_batch() {
    let s = &Server::start(&ServerOptions::new(temp_dir("batch-put").join("state")).var("FAULTS", "spawn=1.0"));
    let id = submit(s, items(&tag(), 2)).await;
    let created = eventually("both items created", Duration::from_secs(60), || async {
        let view = s.get(&format!("/api/batches/{id}")).await.body;
        let items = view["items"].as_array().cloned().unwrap_or_default();
        let created = items.len() == 2 && items.iter().all(|i| i["content_id"].is_string());
        if created { Ok(items) } else { Err(view.to_string()) }
    })
    .await;
    for item in &created {
        let r = s.put(&format!("/api/content/{}", item["content_id"].as_str().unwrap()), json!({"title": "Second", "body": "A second version."})).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let view = s.wait_batch(&id, Duration::from_secs(60)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(0), Some(2)), "{view}");
    assert!(view["items"].as_array().unwrap().iter().all(|i| i["error"].as_str().is_some_and(|e| e.contains("superseded"))), "{view}");
}

/// A batch whose items the queue would not take is still accepted and
/// completes: the Worker hands the stored batch its items directly, rather
/// than answering 503 with the batch already stored (its items waiting for
/// a queue that never got them, and a client's retry making a second one).
/// Here the reply to the batch's create is lost too (`reply=1.0` loses the
/// first try's, after the batch was stored): the Worker asks again with the
/// same id, which the actor takes once, and answers 202.
#[tokio::test]
async fn a_batch_the_queue_refuses_is_handed_its_items_and_completes() {
    let s = lost_replies();
    let id = submit(s, items(&tag(), 3)).await;
    s.logged(&format!("batch {id}: create try 1 failed, asking again")).await;
    let view = s.wait_batch(&id, Duration::from_secs(60)).await;
    assert_eq!((view["completed"].as_u64(), view["failed"].as_u64()), (Some(3), Some(0)), "{view}");
}
