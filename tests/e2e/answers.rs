//! Answers: grounded, cited, streamed on `answer:<id>`, resumable over
//! WebSocket and Server-Sent Events, private to their asker.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A made-up word unique to this test run (letters only, so it tokenizes as
/// one word), which keeps answers to one test's documents.
fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].chars().map(|c| (b'a' + (c.to_digit(16).unwrap() as u8)) as char).collect()
}

/// Indexes a small corpus about `word` and returns the id of the document
/// that answers "How tall is the <word> lighthouse?".
async fn corpus(s: &Server, word: &str) -> (String, Vec<String>) {
    let docs = [
        (
            format!("The {word} lighthouse"),
            format!(
                "The {word} lighthouse stands on a reef off the west coast. The {word} lighthouse is 48 metres tall and was built of granite blocks in 1844. \
                 Keepers lived there for a century."
            ),
        ),
        (
            format!("Keepers of {word}"),
            format!("Life at {word} was hard for the keepers. Supplies came by boat once a fortnight, weather permitting. The keepers of {word} trimmed the lamp wicks every night."),
        ),
        (format!("Granite quarries near {word}"), format!("Granite for {word} came from quarries on the mainland. Masons dressed each block before shipping.")),
    ];
    let mut ids = Vec::new();
    let mut runs = Vec::new();
    for (title, body) in &docs {
        let (cid, run) = s.submit(title, body, None).await;
        ids.push(cid);
        runs.push(run);
    }
    for run in &runs {
        assert_eq!(s.wait_run(run, Duration::from_secs(60)).await["status"], "completed");
    }
    (ids[0].clone(), ids)
}

async fn ask(s: &Server, question: &str) -> (String, String) {
    let r = s.post("/api/answers", json!({ "question": question })).await;
    assert_eq!(r.status, 202, "ask: {}", r.body);
    let id = r.body["answer_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["topic"], format!("answer:{id}"));
    assert_eq!(r.body["links"]["answer"], format!("/api/answers/{id}"));
    (id.clone(), format!("answer:{id}"))
}

/// Polls the answer until it has ended.
async fn finished(s: &Server, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = s.get(&format!("/api/answers/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("completed" | "failed")) {
            return r.body;
        }
        assert!(Instant::now() < deadline, "answer {id} did not finish: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Event frames of `topic` after subscribing with `after`, until `stop` (or quiet).
async fn ws_events(ws: &mut Ws, topic: &str, after: u64, stop: &str, limit: Option<usize>) -> Vec<Value> {
    ws_send(ws, json!({ "type": "subscribe", "topic": topic, "after": after })).await;
    crate::live::collect(ws, topic, stop, limit).await
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn deltas_joined(events: &[Value]) -> String {
    events.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).map(|e| e["data"]["text"].as_str().unwrap()).collect()
}

fn done(ms: &[Sse]) -> bool {
    ms.iter().any(|m| m.event == "ready") && ms.iter().any(|m| m.event == ev::ANSWER_COMPLETED || m.event == ev::ANSWER_FAILED)
}

#[tokio::test]
async fn an_answer_cites_the_document_that_holds_it_and_streams_in_order() {
    let s = &shared().server;
    let word = nonce();
    let (holder, _) = corpus(s, &word).await;
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    let (id, topic) = ask(s, &format!("How tall is the {word} lighthouse?")).await;
    let events = ws_events(&mut ws, &topic, 0, ev::ANSWER_COMPLETED, None).await;
    let got = seqs(&events);
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "dense and in order");
    assert_eq!(events[0]["event"], ev::ANSWER_RETRIEVED, "{}", events[0]);
    let sources = events[0]["data"]["sources"].as_array().unwrap();
    assert!(sources.iter().any(|src| src["content_id"] == holder.as_str()), "{sources:?}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], ev::ANSWER_COMPLETED);
    let deltas: Vec<_> = events.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).collect();
    assert!(!deltas.is_empty());
    let text = last["data"]["text"].as_str().unwrap();
    assert_eq!(text, deltas_joined(&events), "completed text = deltas joined");
    assert!(text.contains("48 metres tall"), "{text}");
    let citations = last["data"]["citations"].as_array().unwrap();
    let cited = citations.iter().find(|c| c["content_id"] == holder.as_str()).unwrap_or_else(|| panic!("{citations:?}"));
    assert!(text.contains(&format!("[{}]", cited["n"])), "the text cites [n] of the holder: {text}");
    // Every [n] in the text is a listed citation.
    for c in citations {
        assert!(text.contains(&format!("[{}]", c["n"])));
        assert!(c["title"].as_str().is_some() && c["snippet"].as_str().is_some());
    }
    // The stored view says the same.
    let view = finished(s, &id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["text"], text);
    assert_eq!(view["citations"], last["data"]["citations"]);
    assert!(view["created_at"].as_str().is_some() && view["finished_at"].as_str().is_some());
    // The cited source really holds the quoted sentence.
    let doc = s.get(&format!("/api/content/{holder}")).await;
    assert!(doc.body["body"].as_str().unwrap().contains("48 metres tall"));
}

#[tokio::test]
async fn a_dropped_stream_resumes_exactly_once_over_websocket_and_sse() {
    let s = &shared().server;
    let word = nonce();
    corpus(s, &word).await;
    let (id, topic) = ask(s, &format!("Who were the {word} keepers and what did the {word} keepers trim?")).await;
    // Drop after the first two events, mid-answer (steps are paced).
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    let head = ws_events(&mut ws, &topic, 0, ev::ANSWER_COMPLETED, Some(2)).await;
    assert_eq!(seqs(&head), vec![1, 2]);
    drop(ws);
    let mut ws = connect(s, &sid, &token).await;
    let tail = ws_events(&mut ws, &topic, 2, ev::ANSWER_COMPLETED, None).await;
    let mut all = head.clone();
    all.extend(tail.iter().cloned());
    let got = seqs(&all);
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "WebSocket resume: every event once");
    let completed = all.last().unwrap();
    assert_eq!(completed["event"], ev::ANSWER_COMPLETED);
    assert_eq!(completed["data"]["text"].as_str().unwrap(), deltas_joined(&all));
    let last_seq = *got.last().unwrap();

    // SSE, the topic URL-encoded, resuming with ?after=2.
    let url = s.url(&format!("/api/topics/answer%3A{id}/events?after=2"));
    let (status, ctype, ms) = sse(http().get(url).bearer_auth(&s.key), done).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let events: Vec<&Sse> = ms.iter().filter(|m| m.event.starts_with("answer.")).collect();
    let ids: Vec<u64> = events.iter().map(|m| m.id.unwrap()).collect();
    assert_eq!(ids, (3..=last_seq).collect::<Vec<_>>(), "SSE after=2: the rest exactly once");
    let ready_at = ms.iter().position(|m| m.event == "ready").unwrap();
    assert!(ms[..ready_at].iter().filter(|m| m.event.starts_with("answer.")).count() == events.len(), "ready after the replay");
    for (m, e) in events.iter().zip(all.iter().skip(2)) {
        let frame: Value = serde_json::from_str(&m.data).unwrap();
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["topic"], topic.as_str());
        assert_eq!(frame["event"].as_str().unwrap(), m.event);
        assert_eq!(frame["seq"], e["seq"]);
        assert_eq!(frame["data"], e["data"], "SSE and WebSocket carry the same events");
    }

    // Last-Event-ID resumes like `after` (and wins over it), unencoded topic.
    let url = s.url(&format!("/api/topics/{topic}/events?after=0"));
    let (status, _, ms) = sse(http().get(url).bearer_auth(&s.key).header("last-event-id", (last_seq - 1).to_string()), |ms| ms.iter().any(|m| m.event == "ready")).await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = ms.iter().filter_map(|m| m.id).collect();
    assert_eq!(ids, vec![last_seq]);
}

#[tokio::test]
async fn a_live_sse_stream_follows_an_answer_to_the_end() {
    let s = &shared().server;
    let word = nonce();
    corpus(s, &word).await;
    let (id, topic) = ask(s, &format!("What was the {word} lighthouse built of?")).await;
    let url = s.url(&format!("/api/topics/{topic}/events"));
    let (status, _, ms) = sse(http().get(url).bearer_auth(&s.key), done).await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = ms.iter().filter(|m| m.event.starts_with("answer.")).map(|m| m.id.unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(ms.iter().filter(|m| m.event == "ready").count(), 1);
    let view = finished(s, &id).await;
    let completed = ms.iter().find(|m| m.event == ev::ANSWER_COMPLETED).unwrap();
    let frame: Value = serde_json::from_str(&completed.data).unwrap();
    assert_eq!(frame["data"]["text"], view["text"]);
    assert!(view["text"].as_str().unwrap().contains("granite"), "{view}");
}

#[tokio::test]
async fn an_unanswerable_question_says_it_does_not_know() {
    let s = &shared().server;
    let word = nonce();
    let (_, topic) = ask(s, &format!("Who composed the {word} quintet for theremin?")).await;
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    let events = ws_events(&mut ws, &topic, 0, ev::ANSWER_COMPLETED, None).await;
    let last = events.last().unwrap();
    assert_eq!(last["event"], ev::ANSWER_COMPLETED);
    assert!(last["data"]["text"].as_str().unwrap().starts_with("I don't know"), "{last}");
    assert_eq!(last["data"]["citations"], json!([]));
    assert_eq!(last["data"]["text"].as_str().unwrap(), deltas_joined(&events));
}

#[tokio::test]
async fn only_the_asker_reads_an_answer_and_its_topic() {
    let s = &shared().server;
    let word = nonce();
    let (id, topic) = ask(s, &format!("Is there a {word} lighthouse?")).await;
    finished(s, &id).await;
    let other = mint_key(&s.base, &s.admin_token, &format!("other-{word}"), &["content:manage"], None);
    let sibling = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:manage"], None);
    for key in [Some(&other), Some(&sibling), None] {
        let with = |b: reqwest::RequestBuilder| match key {
            Some(k) => b.bearer_auth(k),
            None => b,
        };
        let r = send(with(http().get(s.url(&format!("/api/answers/{id}"))))).await;
        assert_eq!(r.status, 404, "{}", r.body);
        let (status, _, _) = sse(with(http().get(s.url(&format!("/api/topics/{topic}/events")))), |_| true).await;
        assert_eq!(status, 404);
    }
    // Over a WebSocket of another tenant's session, the topic does not exist.
    let (sid, token) = new_session_as(s, &other).await;
    let mut ws = connect(s, &sid, &token).await;
    ws_send(&mut ws, json!({ "type": "subscribe", "topic": topic, "after": 0 })).await;
    let f = ws_next(&mut ws, WAIT).await.unwrap();
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], "unknown_topic");
    // The operator may read it.
    assert_eq!(s.admin_get(&format!("/api/answers/{id}")).await.status, 200);
    // An unknown answer is 404, a malformed id 400.
    assert_eq!(s.get(&format!("/api/answers/{}", uuid::Uuid::new_v4())).await.status, 404);
    assert_eq!(s.get("/api/answers/not-a-uuid").await.status, 400);
}

#[tokio::test]
async fn sse_covers_run_and_feed_topics_with_subscription_rules() {
    let s = &shared().server;
    let (cid, run) = s.submit("SSE run", &document("sse", 3, 800), None).await;
    s.wait_run(&run, Duration::from_secs(60)).await;
    let until_ready = |ms: &[Sse]| ms.iter().any(|m| m.event == "ready");
    let (status, _, ms) = sse(http().get(s.url(&format!("/api/topics/run:{run}/events"))).bearer_auth(&s.key), until_ready).await;
    assert_eq!(status, 200);
    let events: Vec<&Sse> = ms.iter().filter(|m| m.id.is_some()).collect();
    assert_eq!(events.first().unwrap().event, ev::RUN_QUEUED);
    assert_eq!(events.last().unwrap().event, ev::RUN_COMPLETED);
    let (status, _, ms) = sse(http().get(s.url(&format!("/api/topics/content%3A{cid}/events"))).bearer_auth(&s.key), until_ready).await;
    assert_eq!(status, 200);
    assert!(ms.iter().any(|m| m.event == ev::CONTENT_INDEXED), "{ms:?}");
    // The item is tenant-visible: anonymous callers do not see its topics.
    for t in [format!("run:{run}"), format!("content:{cid}")] {
        let (status, _, _) = sse(http().get(s.url(&format!("/api/topics/{t}/events"))), |_| true).await;
        assert_eq!(status, 404, "{t}");
    }
    // The feed is open, filtered per reader: anonymous sees no tenant item.
    let (status, _, ms) = sse(http().get(s.url("/api/topics/feed/events")), until_ready).await;
    assert_eq!(status, 200);
    assert!(!ms.iter().any(|m| m.data.contains(&cid)), "the feed leaked a tenant item to anonymous");
    // Unknown topics and bad cursors.
    assert_eq!(send(http().get(s.url("/api/topics/nope/events"))).await.status, 404);
    assert_eq!(send(http().get(s.url(&format!("/api/topics/run:{}/events", uuid::Uuid::new_v4()))).bearer_auth(&s.key)).await.status, 404);
    assert_eq!(send(http().get(s.url("/api/topics/feed/events?after=-3"))).await.status, 422);
}

#[tokio::test]
async fn bad_questions_are_4xx() {
    let s = &shared().server;
    for body in [json!({}), json!({ "question": "" }), json!({ "question": "x", "k": 0 }), json!({ "question": "x", "k": 11 }), json!({ "question": "x", "extra": 1 }), json!({ "question": "x", "category": "a/b" })] {
        let r = s.post("/api/answers", body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
    }
    let r = send(http().post(s.url("/api/answers")).bearer_auth(&s.key).body("{").header("content-type", "application/json")).await;
    assert_eq!(r.status, 400);
    let r = send(http().post(s.url("/api/answers")).bearer_auth(&s.key).body("x")).await;
    assert_eq!(r.status, 415);
    // A longest question sent with every character escaped fits; a long body does not.
    let escaped = format!(r#"{{"question":"{}"}}"#, "\\u65e5".repeat(500));
    let r = send(http().post(s.url("/api/answers")).bearer_auth(&s.key).header("content-type", "application/json").body(escaped)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let long = json!({ "question": "x".repeat(20_000) });
    let r = send(http().post(s.url("/api/answers")).bearer_auth(&s.key).json(&long)).await;
    assert_eq!(r.status, 413, "{}", r.body);
}

/// Anyone may ask, so answers do not pile up for good: `ANSWER_TTL_SECS`
/// after an answer ends, its actor erases itself and its registry row, and
/// the answer and its topic are 404.
#[tokio::test]
async fn an_ended_answer_is_erased_after_its_time_to_live() {
    let s = &Server::start(&ServerOptions::new(temp_dir("answer-ttl")).var("ANSWER_TTL_SECS", "2"));
    let word = nonce();
    corpus(s, &word).await;
    let (id, topic) = ask(s, &format!("What did the {word} keepers do?")).await;
    assert_eq!(finished(s, &id).await["status"], "completed");
    let listed = |body: &Value| body["items"].as_array().is_some_and(|items| items.iter().any(|a| a["id"] == id.as_str()));
    let kept = s.admin_get("/admin/actors?kind=answer&limit=100").await;
    assert!(listed(&kept.body), "registered while kept: {} {}", kept.status, kept.body);
    let inspected = s.admin_get(&format!("/admin/actors/answer/{id}")).await;
    assert_eq!((inspected.status, inspected.body["registered"].as_bool()), (200, Some(true)), "{}", inspected.body);
    eventually("the answer erased past its time to live", Duration::from_secs(30), || async {
        let r = s.get(&format!("/api/answers/{id}")).await;
        if r.status == 404 { Ok(()) } else { Err(format!("{} {}", r.status, r.body)) }
    })
    .await;
    assert_eq!(s.get(&format!("/api/topics/{topic}/events?after=0")).await.status, 404);
    assert_eq!(s.admin_get(&format!("/admin/actors/answer/{id}")).await.status, 404);
    eventually("the answer's registry row removed", Duration::from_secs(10), || async {
        let r = s.admin_get("/admin/actors?kind=answer&limit=100").await;
        assert_eq!(r.status, 200, "{}", r.body);
        if listed(&r.body) { Err(r.body.to_string()) } else { Ok(()) }
    })
    .await;
}

/// An anonymous caller's answer is kept `ANSWER_TTL_ANONYMOUS_SECS` (here
/// 2 s), a signed-in caller's `ANSWER_TTL_SECS` (a week): anyone may ask,
/// and a week of anonymous answers would pile up.
#[tokio::test]
async fn an_anonymous_callers_answer_is_kept_for_less_time() {
    let s = &Server::start(&ServerOptions::new(temp_dir("answer-ttl-anonymous")).var("ANSWER_TTL_ANONYMOUS_SECS", "2"));
    let question = format!("What did the {} keepers do?", nonce());
    let (keyed, _) = ask(s, &question).await;
    let r = send(http().post(s.url("/api/answers")).json(&json!({ "question": question }))).await;
    assert_eq!(r.status, 202, "anyone may ask: {}", r.body);
    let anonymous = r.body["answer_id"].as_str().expect("answer_id").to_string();
    let status = |id: String| async move { s.admin_get(&format!("/api/answers/{id}")).await };
    eventually("the anonymous answer erased 2 s after it ended", Duration::from_secs(30), || async {
        let r = status(anonymous.clone()).await;
        if r.status == 404 { Ok(()) } else { Err(format!("{} {}", r.status, r.body)) }
    })
    .await;
    assert_eq!(finished(s, &keyed).await["status"], "completed");
    let kept = status(keyed.clone()).await;
    assert_eq!(kept.status, 200, "the key's answer is kept: {}", kept.body);
}

/// An answer whose first alarm is lost (`FAULTS=alarm=1.0`: the start's
/// arm is dropped, as a failed write leaves it) has no alarm and would stay
/// under way for good; the next read of it arms it again, and it ends.
#[tokio::test]
async fn a_read_arms_an_answer_whose_alarm_was_lost() {
    let s = &Server::start(&ServerOptions::new(temp_dir("answer-alarm")).var("FAULTS", "alarm=1.0"));
    let word = nonce();
    corpus(s, &word).await;
    let (id, _) = ask(s, &format!("How tall is the {word} lighthouse?")).await;
    // The inspection does not arm it: nothing is left to wake the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inspected = s.admin_get(&format!("/admin/actors/answer/{id}")).await;
    assert_eq!(inspected.status, 200, "{}", inspected.body);
    assert!(inspected.body["alarm_at"].is_null(), "the fault took the first alarm: {}", inspected.body);
    assert!(!matches!(inspected.body["state"]["view"]["status"].as_str(), Some("completed" | "failed")), "{}", inspected.body);
    assert_eq!(finished(s, &id).await["status"], "completed");
}

#[tokio::test]
async fn an_answer_survives_a_server_kill_mid_stream() {
    let dir = temp_dir("answer-crash");
    let opts = ServerOptions::new(dir).var("ANSWER_STEP_MS", "700");
    let mut s = Server::start(&opts);
    let word = nonce();
    corpus(&s, &word).await;
    // Two sentences answer it fully: two deltas, then the completion.
    let (id, topic) = ask(&s, &format!("What did the {word} keepers do?")).await;
    // SIGKILL the whole server once the first delta is committed.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = s.get(&format!("/api/answers/{id}")).await;
        assert_eq!(r.body["status"], "generating", "the stream must still be running: {}", r.body);
        if !r.body["text"].as_str().unwrap_or("").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asker = s.key.clone();
    s.restart(&opts, true);
    // The asker's key outlives the restart; the answer completes from its alarm.
    let url = s.url(&format!("/api/topics/{topic}/events?after=0"));
    let (status, _, ms) = sse(http().get(url).bearer_auth(&asker), done).await;
    assert_eq!(status, 200);
    let events: Vec<Value> = ms.iter().filter(|m| m.id.is_some()).map(|m| serde_json::from_str(&m.data).unwrap()).collect();
    let got = seqs(&events);
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "dense, in order, nothing twice");
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == ev::ANSWER_RETRIEVED).count(), 1);
    assert_eq!(names.iter().filter(|n| **n == ev::ANSWER_COMPLETED).count(), 1, "{names:?}");
    let indexes: Vec<u64> = events.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).map(|e| e["data"]["index"].as_u64().unwrap()).collect();
    assert!(indexes.len() >= 2, "{indexes:?}");
    assert_eq!(indexes, (0..indexes.len() as u64).collect::<Vec<_>>(), "each delta exactly once");
    let completed = events.last().unwrap();
    assert_eq!(completed["data"]["text"].as_str().unwrap(), deltas_joined(&events));
    let view = send(http().get(s.url(&format!("/api/answers/{id}"))).bearer_auth(&asker)).await;
    assert_eq!(view.body["status"], "completed");
    assert_eq!(view.body["text"], completed["data"]["text"]);
}

/// Sources deleted while an answer is being written are withheld from the
/// deltas and the completion pushed live, as from a replay: no push names
/// them or quotes what they said. (A server of its own, its answers paced
/// 700 ms a step, so the deletions land mid-stream.)
#[tokio::test]
async fn a_completion_pushed_live_withholds_sources_deleted_mid_stream() {
    let opts = ServerOptions::new(temp_dir("answer-live-withhold")).var("ANSWER_STEP_MS", "700");
    let s = &Server::start(&opts);
    let word = nonce();
    let (_, ids) = corpus(s, &word).await;
    let (sid, token) = new_session(s).await;
    let mut ws = connect(s, &sid, &token).await;
    let (id, topic) = ask(s, &format!("What did the {word} keepers do?")).await;
    let first = ws_events(&mut ws, &topic, 0, ev::ANSWER_DELTA, None).await;
    assert_eq!(first.last().map(|e| e["event"].clone()), Some(json!(ev::ANSWER_DELTA)), "{first:?}");
    for cid in &ids {
        assert_eq!(s.delete(&format!("/api/content/{cid}")).await.status, 204);
    }
    let rest = crate::live::collect(&mut ws, &topic, ev::ANSWER_COMPLETED, None).await;
    let later = deltas_joined(&rest);
    assert!(!later.contains(&word), "deltas after the deletions quote deleted sources: {later}");
    let completed = rest.last().filter(|e| e["event"] == ev::ANSWER_COMPLETED).unwrap_or_else(|| panic!("no completion pushed: {rest:?}"));
    let citations = completed["data"]["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{completed}");
    assert!(citations.iter().all(|c| c.as_object().is_some_and(|o| o.len() == 2) && c["removed"] == true), "{completed}");
    let text = completed["data"]["text"].as_str().unwrap();
    assert!(!text.contains(&word), "the pushed completion quotes deleted sources: {text}");
    assert_eq!(finished(s, &id).await["citations"], completed["data"]["citations"], "the view says the same");
    // Erased at rest too (the stored answer and its events), whether the
    // deletions reached it while it was written or after it ended.
    eventually("the answer forgets its deleted sources", WAIT, || async {
        let rest = at_rest(s, &id).await;
        if rest.contains("Supplies came by boat") || rest.contains("trimmed the lamp wicks") { Err(rest) } else { Ok(()) }
    })
    .await;
}

/// The operator's inspection of an answer: its stored state and events as
/// they are at rest, not as a reader is shown them.
async fn at_rest(s: &Server, id: &str) -> String {
    let r = s.admin_get(&format!("/admin/actors/answer/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.to_string()
}

/// A deleted item leaves nothing of its text in the answers that quoted
/// it, at rest (DESIGN.md: only a tombstone remains): not in the stored
/// answer, not in its logged events. The other sources' quotes stay, and a
/// deleted source keeps its number.
#[tokio::test]
async fn deleting_an_item_erases_what_answers_quoted_of_it() {
    let s = &shared().server;
    let word = nonce();
    let mut ids = Vec::new();
    for (title, body) in [
        (format!("The {word} lighthouse"), format!("The {word} lighthouse was built in 1844 of granite blocks. Its lamp is 48 metres above the sea.")),
        (format!("Harbour records of {word}"), format!("Harbour records say the {word} lighthouse was built in 1845, a year late, after a winter storm.")),
    ] {
        let (cid, run) = s.submit(&title, &body, None).await;
        assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
        ids.push(cid);
    }
    let lighthouse = ids[0].clone();
    let (id, _) = ask(s, &format!("When was the {word} lighthouse built?")).await;
    let before = finished(s, &id).await;
    let cited: Vec<&str> = before["citations"].as_array().unwrap().iter().filter_map(|c| c["content_id"].as_str()).collect();
    assert!(cited.contains(&lighthouse.as_str()) && cited.len() >= 2, "{before}");
    assert!(at_rest(s, &id).await.contains("built in 1844"), "the lighthouse is quoted at first");
    assert_eq!(s.delete(&format!("/api/content/{lighthouse}")).await.status, 204);
    let quotes = ["48 metres", "built in 1844", &format!("The {word} lighthouse")];
    let erased = eventually("the answer forgets the lighthouse", WAIT, || async {
        let rest = at_rest(s, &id).await;
        match quotes.iter().find(|q| rest.contains(*q)) {
            None => Ok(rest),
            Some(q) => Err(format!("still holds {q:?}")),
        }
    })
    .await;
    let other = ids.iter().find(|c| **c != lighthouse && cited.contains(&c.as_str())).unwrap();
    assert!(erased.contains(other.as_str()), "another source stays: {erased}");
    let after = finished(s, &id).await;
    let n = before["citations"].as_array().unwrap().iter().find(|c| c["content_id"] == lighthouse.as_str()).unwrap()["n"].clone();
    assert_eq!(citation_of(&after, &n), json!({ "n": n, "removed": true }), "{after}");
    assert!(after["text"].as_str().is_some_and(|t| t.contains("built in 1845") && !t.contains("1844")), "{after}");
}

/// Polls `GET /api/answers/{id}` with `key` until `ok(view)` holds.
async fn view_until(s: &Server, key: &str, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(what, WAIT, || async {
        let r = send(http().get(s.url(&format!("/api/answers/{id}"))).bearer_auth(key)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if ok(&r.body) { Ok(r.body) } else { Err(r.body.to_string()) }
    })
    .await
}

fn citation_of(view: &Value, n: &Value) -> Value {
    view["citations"].as_array().and_then(|cs| cs.iter().find(|c| &c["n"] == n).cloned()).unwrap_or(Value::Null)
}

/// Citations are checked against the catalog when the answer is read: a
/// source narrowed so the asker can no longer read it, or deleted, shows
/// only its number.
#[tokio::test]
async fn citations_of_narrowed_or_deleted_content_are_withheld() {
    let s = &shared().server;
    let word = nonce();
    let title = format!("The {word} beacon");
    let body = format!("The {word} beacon is 31 metres tall. The {word} beacon was lit in 1851.");
    let (cid, run) = s.submit(&title, &body, None).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
    let reader = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:read"], None);
    let question = format!("How tall is the {word} beacon?");
    let r = send(http().post(s.url("/api/answers")).bearer_auth(&reader).json(&json!({ "question": question }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let reader_answer = r.body["answer_id"].as_str().unwrap().to_string();
    let (owner_answer, _) = ask(s, &question).await;

    let cites_it = |v: &Value| v["status"] == "completed" && v["citations"].as_array().is_some_and(|c| c.iter().any(|x| x["content_id"] == cid.as_str()));
    let before = view_until(s, &reader, &reader_answer, "the reader's answer cites the beacon", cites_it).await;
    view_until(s, &s.key, &owner_answer, "the owner's answer cites the beacon", cites_it).await;
    let n = before["citations"].as_array().unwrap().iter().find(|c| c["content_id"] == cid.as_str()).unwrap()["n"].clone();
    assert_eq!(citation_of(&before, &n)["title"], title.as_str());
    // The text quotes the source; once withheld, no claim citing it stays.
    let quotes = |v: &Value| ["31 metres", "1851"].iter().any(|q| v.as_str().is_some_and(|t| t.contains(q)));
    assert!(quotes(&before["text"]), "{before}");

    // Narrowed to private: the reader (not the owner) can no longer read it.
    let r = s.put(&format!("/api/content/{cid}"), json!({ "title": title, "body": body, "visibility": "private" })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let narrowed =
        view_until(s, &reader, &reader_answer, "withheld from the reader", |v| citation_of(v, &n)["removed"] == true).await;
    assert_eq!(citation_of(&narrowed, &n), json!({ "n": n, "removed": true }), "no title or snippet: {narrowed}");
    assert!(!narrowed["citations"].to_string().contains(&title), "{narrowed}");
    assert!(!quotes(&narrowed["text"]), "{narrowed}");
    let owner = s.get(&format!("/api/answers/{owner_answer}")).await.body;
    assert_eq!(citation_of(&owner, &n)["title"], title.as_str(), "the owner still reads it: {owner}");
    assert!(quotes(&owner["text"]), "{owner}");

    // Deleted: withheld from everyone, the operator included.
    assert_eq!(s.delete(&format!("/api/content/{cid}")).await.status, 204);
    let gone = view_until(s, &s.key, &owner_answer, "withheld after DELETE", |v| citation_of(v, &n)["removed"] == true).await;
    assert_eq!(citation_of(&gone, &n), json!({ "n": n, "removed": true }));
    let op = s.admin_get(&format!("/api/answers/{owner_answer}")).await.body;
    assert_eq!(citation_of(&op, &n), json!({ "n": n, "removed": true }), "{op}");
    assert!(!quotes(&gone["text"]) && !quotes(&op["text"]), "{gone} {op}");

    // A replay of the answer's events withholds it too (sources and citations).
    let url = s.url(&format!("/api/topics/answer:{owner_answer}/events?after=0"));
    let (status, _, ms) = sse(http().get(url).bearer_auth(&s.key), done).await;
    assert_eq!(status, 200);
    let replay: Vec<Value> = ms.iter().filter(|m| m.id.is_some()).map(|m| serde_json::from_str(&m.data).unwrap()).collect();
    let listed = |name: &str, key: &str| -> Vec<Value> {
        replay.iter().filter(|e| e["event"] == name).flat_map(|e| e["data"][key].as_array().cloned().unwrap_or_default()).collect()
    };
    for (name, key) in [(ev::ANSWER_RETRIEVED, "sources"), (ev::ANSWER_COMPLETED, "citations")] {
        let items = listed(name, key);
        assert!(items.iter().any(|c| c == &json!({ "n": n, "removed": true })), "{name}: {items:?}");
        assert!(!items.iter().any(|c| c["content_id"] == cid.as_str() || c["title"] == title.as_str()), "{name}: {items:?}");
    }
    let texts: Vec<&Value> = replay.iter().filter(|e| e["event"] == ev::ANSWER_DELTA || e["event"] == ev::ANSWER_COMPLETED).map(|e| &e["data"]["text"]).collect();
    assert!(!texts.is_empty() && !texts.iter().any(|t| quotes(t)), "{texts:?}");
    // Still the deltas joined: the completed text.
    let joined: String = replay.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).filter_map(|e| e["data"]["text"].as_str()).collect();
    let completed = replay.iter().find(|e| e["event"] == ev::ANSWER_COMPLETED).map(|e| e["data"]["text"].clone());
    assert_eq!(Some(Value::String(joined)), completed, "{replay:?}");
}
