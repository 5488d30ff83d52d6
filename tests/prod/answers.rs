//! Generated answers through the emulated Workers AI binding, streamed
//! (`run(model, {messages, stream: true})` → an event stream): deltas whose
//! join is the completed text, citations checked against the retrieved
//! sources, a subscription resumed mid-stream, and the extractive fallback
//! when the model keeps failing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{calls, prod, search_until_found, RUN_TIMEOUT};
use crate::support::*;

const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// Indexes a fact sheet about the `marker` bridge and waits until a search
/// finds it; returns its content id.
async fn fact_sheet(marker: &str) -> String {
    let p = prod();
    let body = format!(
        "The {marker} bridge stands at the edge of the old harbour district. The {marker} bridge was built in 1874. \
         The {marker} bridge is made of granite. The {marker} bridge rises 48 metres above the river."
    );
    let (cid, run) = p.server.submit(&format!("The {marker} bridge"), &body, None).await;
    assert_eq!(p.server.wait_run(&run, RUN_TIMEOUT).await["status"], "completed");
    search_until_found(&format!("q={marker}%20bridge&k=5"), &[cid.as_str()]).await;
    cid
}

async fn ask(question: &str) -> String {
    let r = prod().server.post("/api/answers", json!({ "question": question })).await;
    assert_eq!(r.status, 202, "ask: {}", r.body);
    r.body["answer_id"].as_str().expect("answer_id").to_string()
}

/// Subscribes to `topic` after `after` and collects its events until
/// `answer.completed`/`answer.failed`, or until `limit` deltas came.
async fn events(ws: &mut Ws, topic: &str, after: u64, limit: Option<usize>) -> Vec<Value> {
    ws_send(ws, json!({ "type": "subscribe", "topic": topic, "after": after })).await;
    let mut out: Vec<Value> = Vec::new();
    let deadline = Instant::now() + ANSWER_WAIT;
    while Instant::now() < deadline {
        let Some(frame) = ws_next(ws, Duration::from_secs(20)).await else { break };
        if frame["type"] != "event" || frame["topic"] != topic {
            continue;
        }
        let name = frame["event"].as_str().unwrap_or("").to_string();
        out.push(frame);
        if matches!(name.as_str(), ev::ANSWER_COMPLETED | ev::ANSWER_FAILED) {
            break;
        }
        if limit.is_some_and(|n| out.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).count() >= n) {
            break;
        }
    }
    out
}

fn deltas(events: &[Value]) -> Vec<String> {
    events.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).map(|e| e["data"]["text"].as_str().unwrap_or("").to_string()).collect()
}

fn completed(events: &[Value]) -> Value {
    events.iter().find(|e| e["event"] == ev::ANSWER_COMPLETED).map(|e| e["data"].clone()).unwrap_or(Value::Null)
}

fn retrieved(events: &[Value]) -> BTreeSet<u64> {
    events
        .iter()
        .find(|e| e["event"] == ev::ANSWER_RETRIEVED)
        .and_then(|e| e["data"]["sources"].as_array())
        .map(|s| s.iter().filter_map(|x| x["n"].as_u64()).collect())
        .unwrap_or_default()
}

/// Every `[n]` in the text.
fn cited_numbers(text: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for part in text.split('[').skip(1) {
        if let Some((inner, _)) = part.split_once(']') {
            out.extend(inner.split(',').filter_map(|n| n.trim().parse::<u64>().ok()));
        }
    }
    out
}

/// The emulator's streamed text calls whose prompt held `marker`.
async fn streamed_calls(marker: &str) -> Vec<Value> {
    let state = prod().emulator.state().await;
    calls(&state)
        .into_iter()
        .filter(|c| c["stream"] == true && c["detail"]["text"].as_str().is_some_and(|t| t.contains(marker)))
        .collect()
}

/// Injects `injected` (one emulator entry, matched on the question), asks
/// `question` and follows its topic over a WebSocket to the end.
async fn ask_following(question: &str, injected: Value) -> (String, Vec<Value>) {
    let p = prod();
    p.emulator.inject(json!([injected])).await;
    let (session, token) = new_session(&p.server).await;
    let mut ws = connect(&p.server, &session, &token).await;
    let id = ask(question).await;
    let evs = events(&mut ws, &format!("answer:{id}"), 0, None).await;
    (id, evs)
}

/// Polls the answer until it has ended.
async fn ended(id: &str) -> Value {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let r = prod().server.get(&format!("/api/answers/{id}")).await;
        if matches!(r.body["status"].as_str(), Some("completed" | "failed")) {
            return r.body;
        }
        assert!(Instant::now() < deadline, "not finished: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_generated_answer_streams_deltas_that_cite_only_retrieved_sources() {
    let p = prod();
    let marker = "quorvandel";
    let cid = fact_sheet(marker).await;
    let injected = json!({ "binding": "ai", "kind": "text", "contains": format!("Question: What is the {marker}"), "mode": "cite-unknown", "times": 1 });
    let (id, evs) = ask_following(&format!("What is the {marker} bridge made of?"), injected).await;

    let parts = deltas(&evs);
    let done = completed(&evs);
    let text = done["text"].as_str().unwrap_or_default().to_string();
    assert!(parts.len() >= 2, "several deltas: {parts:?}");
    assert_eq!(parts.concat(), text, "the deltas join into the completed text");
    assert!(text.contains("granite"), "{text}");
    let sources = retrieved(&evs);
    let in_text = cited_numbers(&text);
    assert!(!in_text.is_empty() && in_text.is_subset(&sources), "text cites {in_text:?}, retrieved {sources:?}: {text}");
    assert!(text.contains("also recorded elsewhere."), "the sentence stays, its citation goes: {text}");
    let cites: Vec<&Value> = done["citations"].as_array().map(|c| c.iter().collect()).unwrap_or_default();
    assert!(cites.iter().all(|c| c["n"].as_u64().is_some_and(|n| sources.contains(&n))), "{done}");
    assert!(cites.iter().any(|c| c["content_id"] == cid.as_str()), "the fact sheet is cited: {done}");
    assert_eq!(done["generator"], "workers-ai", "{done}");

    let view = p.server.get(&format!("/api/answers/{id}")).await.body;
    assert_eq!((view["status"].as_str(), view["text"].as_str()), (Some("completed"), Some(text.as_str())), "{view}");
    assert_eq!(view["generator"], "workers-ai");
    assert_eq!(view["grounded"], true);
    // The model was asked with the stream flag and cited a source it was not given.
    let model_calls = streamed_calls(marker).await;
    assert!(model_calls.iter().any(|c| c["detail"]["mode"] == "cite-unknown"), "{model_calls:?}");
    let invented = sources.len() as u64 + 7;
    assert!(model_calls.iter().any(|c| c["detail"]["text"].as_str().is_some_and(|t| t.contains(&format!("[{invented}]")))));
    assert!(!text.contains(&format!("[{invented}]")));
}

/// Asks about the `marker` bridge (its fact sheet indexed first) with the
/// model's stream slowed to a piece every 500 ms.
async fn ask_slowly(marker: &str) -> String {
    fact_sheet(marker).await;
    prod()
        .emulator
        .inject(json!([{ "binding": "ai", "kind": "text", "contains": format!("Question: When was the {marker}"), "mode": "slow", "delayMs": 500, "times": 1 }]))
        .await;
    ask(&format!("When was the {marker} bridge built and what is it made of and how many metres does it rise?")).await
}

#[tokio::test]
async fn a_subscription_resumed_mid_stream_gets_the_rest_exactly_once() {
    let p = prod();
    let id = ask_slowly("pellinbrook").await;
    let topic = format!("answer:{id}");

    let (session, token) = new_session(&p.server).await;
    let mut ws = connect(&p.server, &session, &token).await;
    let first = events(&mut ws, &topic, 0, Some(1)).await;
    assert!(completed(&first).is_null(), "still streaming when the connection drops: {first:?}");
    drop(ws);
    let last = first.last().and_then(|e| e["seq"].as_u64()).expect("an event before the drop");

    let mut ws = connect(&p.server, &session, &token).await;
    let rest = events(&mut ws, &topic, last, None).await;
    let seqs: Vec<u64> = first.iter().chain(rest.iter()).filter_map(|e| e["seq"].as_u64()).collect();
    let dense: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, dense, "every event once, in order");
    assert!(!deltas(&rest).is_empty(), "deltas after the resume");
    let done = completed(&rest);
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    assert_eq!(deltas(&all).concat(), done["text"].as_str().unwrap_or("-"), "{done}");
    assert!(deltas(&all).len() >= 3, "{:?}", deltas(&all));
}

/// The operator's alarm while an attempt streams starts no second stream
/// beside it: one model call, each delta once (its own index), one text.
#[tokio::test]
async fn an_alarm_during_a_stream_starts_no_second_one() {
    let p = prod();
    let marker = "quorrelby";
    let id = ask_slowly(marker).await;
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let v = p.server.get(&format!("/api/answers/{id}")).await.body;
        assert_eq!(v["status"], "generating", "still streaming: {v}");
        if !v["text"].as_str().unwrap_or("").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no delta: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = p.server.admin_post(&format!("/admin/actors/answer/{id}/alarm")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let view = ended(&id).await;
    assert_eq!((view["status"].as_str(), view["generator"].as_str()), (Some("completed"), Some("workers-ai")), "{view}");
    let streamed = streamed_calls(marker).await;
    assert_eq!(streamed.len(), 1, "one model call: {streamed:?}");
    assert_eq!(view["text"].as_str(), streamed[0]["detail"]["text"].as_str(), "the one stream's text");

    let (session, token) = new_session(&p.server).await;
    let mut ws = connect(&p.server, &session, &token).await;
    let evs = events(&mut ws, &format!("answer:{id}"), 0, None).await;
    let indexes: Vec<u64> = evs.iter().filter(|e| e["event"] == ev::ANSWER_DELTA).filter_map(|e| e["data"]["index"].as_u64()).collect();
    assert_eq!(indexes, (0..indexes.len() as u64).collect::<Vec<_>>(), "each delta once");
    assert_eq!(deltas(&evs).concat(), view["text"].as_str().unwrap_or("-"));
}

/// Fails every streamed call for `question` with `fault`, and returns the
/// ended answer (checked to be the extractive fallback naming `code`) and
/// how many calls failed.
async fn fallback_answer(question: &str, fault: &str, code: &str) -> (Value, usize) {
    let p = prod();
    p.emulator
        .inject(json!([{ "binding": "ai", "kind": "text", "contains": format!("Question: {question}"), "error": fault, "times": 1000 }]))
        .await;
    let view = ended(&ask(question).await).await;
    assert_eq!((view["status"].as_str(), view["generator"].as_str()), (Some("completed"), Some("extractive")), "{view}");
    assert!(view["fallback"].as_str().is_some_and(|f| f.contains(code)), "{view}");
    let state = p.emulator.state().await;
    let failed = calls(&state).iter().filter(|c| c["stream"] == true && c["error"].as_str() == Some(fault)).count();
    (view, failed)
}

#[tokio::test]
async fn a_failing_model_falls_back_to_the_extractive_answerer() {
    let marker = "galdermoor";
    let cid = fact_sheet(marker).await;
    let fault = "3040: Capacity temporarily exceeded, please try again.";
    let (view, failed) = fallback_answer(&format!("When was the {marker} bridge built?"), fault, "3040").await;
    assert!(view["text"].as_str().is_some_and(|t| t.contains("1874")), "{view}");
    assert!(view["citations"].as_array().is_some_and(|c| c.iter().any(|x| x["content_id"] == cid.as_str())), "{view}");
    assert!(failed >= 3, "retried before falling back: {failed} failed calls");
}

/// A restart mid-generation: its own server (a SIGKILL would disturb the
/// shared one). The committed deltas stay; the lease alarm starts a second
/// attempt that gives the model the committed text and takes only what
/// follows it, so the completed text is the uninterrupted answer, each part
/// once.
#[tokio::test]
async fn a_restart_mid_generation_neither_repeats_nor_loses_text() {
    let dir = temp_dir("prod-answer-restart");
    let emulator = Emulator::start(&dir.join("emulator"), Emulator::standard_config(&dir.join("container-disks")));
    let opts = ServerOptions::emulated(dir.join("state"), emulator.worker_config.clone());
    let mut s = Server::start(&opts);
    let marker = "wendlescar";
    let body = format!(
        "The {marker} bridge stands at the edge of the old harbour district. The {marker} bridge was built in 1874. \
         The {marker} bridge is made of granite. The {marker} bridge rises 48 metres above the river."
    );
    let (_, run) = s.submit(&format!("The {marker} bridge"), &body, None).await;
    assert_eq!(s.wait_run(&run, RUN_TIMEOUT).await["status"], "completed");
    tokio::time::sleep(Duration::from_millis(1500)).await; // Vectorize visibility
    emulator
        .inject(json!([{ "binding": "ai", "kind": "text", "contains": "Question: When was", "mode": "slow", "delayMs": 700, "times": 1 }]))
        .await;
    let r = s.post("/api/answers", json!({ "question": format!("When was the {marker} bridge built and what is it made of and how many metres does it rise?") })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["answer_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let v = s.get(&format!("/api/answers/{id}")).await.body;
        assert_eq!(v["status"], "generating", "still streaming: {v}");
        if !v["text"].as_str().unwrap_or("").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no delta: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asker = s.key.clone();
    s.restart(&opts, true);

    let deadline = Instant::now() + Duration::from_secs(90);
    let view = loop {
        let v = send(http().get(s.url(&format!("/api/answers/{id}"))).bearer_auth(&asker)).await.body;
        if v["status"] == "completed" || v["status"] == "failed" {
            break v;
        }
        assert!(Instant::now() < deadline, "not completed after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["generator"], "workers-ai", "{view}");
    let state = emulator.state().await;
    let streamed: Vec<Value> = calls(&state).into_iter().filter(|c| c["stream"] == true).collect();
    assert!(streamed.len() >= 2, "a second attempt after the restart: {streamed:?}");
    assert_eq!(streamed[0]["detail"]["continuation"], false);
    assert_eq!(streamed[1]["detail"]["continuation"], true, "the second attempt continues: {:?}", streamed[1]);
    let whole = streamed[0]["detail"]["text"].as_str().unwrap_or("-");
    assert_eq!(view["text"].as_str(), Some(whole), "the uninterrupted answer, nothing twice or lost");

    // Replayed from the start: each delta once, joined into the text.
    let (session, token) = new_session_as(&s, &asker).await;
    let mut ws = connect(&s, &session, &token).await;
    let evs = events(&mut ws, &format!("answer:{id}"), 0, None).await;
    let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(deltas(&evs).concat(), whole);
}

/// An unknown model (5007) cannot be retried into working: one call, then
/// the extractive answer at once.
#[tokio::test]
async fn an_unknown_model_falls_back_without_retrying() {
    let marker = "hollowmere";
    fact_sheet(marker).await;
    let fault = "5007: No such model @cf/meta/llama-3.3-70b-instruct-fp8-fast or task";
    let (view, failed) = fallback_answer(&format!("Which material is the {marker} bridge made of?"), fault, "5007").await;
    assert!(view["text"].as_str().is_some_and(|t| t.contains("granite")), "{view}");
    assert_eq!(failed, 1, "no retry of an unknown model");
}

/// Asks a three-part question about the `marker` bridge with the model's
/// first stream cut off halfway (`mode`: "cut" ends it cleanly, "reset"
/// tears the connection down so the reader errors): the deltas committed
/// from it stay, and the next attempt continues after them.
async fn a_cut_off_stream_is_continued(marker: &str, mode: &str) {
    fact_sheet(marker).await;
    let injected = json!({ "binding": "ai", "kind": "text", "contains": format!("Question: When was the {marker}"), "mode": mode, "times": 1 });
    let question = format!("When was the {marker} bridge built and what is it made of and how many metres does it rise?");
    let (_, evs) = ask_following(&question, injected).await;
    let done = completed(&evs);
    let text = done["text"].as_str().unwrap_or("-").to_string();
    assert_eq!(deltas(&evs).concat(), text);
    let model_calls = streamed_calls(marker).await;
    let cut = model_calls.iter().find(|c| c["detail"]["mode"] == mode).expect("the cut attempt");
    assert_eq!(text, cut["detail"]["text"].as_str().unwrap_or("-"), "the whole answer, each part once");
    assert!(model_calls.iter().any(|c| c["detail"]["continuation"] == true), "{model_calls:?}");
    assert_eq!(done["generator"], "workers-ai");
}

#[tokio::test]
async fn a_stream_cut_off_before_done_is_continued_not_repeated() {
    a_cut_off_stream_is_continued("corrisdale", "cut").await;
}

#[tokio::test]
async fn a_stream_whose_connection_resets_is_continued_not_repeated() {
    a_cut_off_stream_is_continued("brannoway", "reset").await;
}

/// A model streams a few characters an event, as tokens come, and each
/// event reaches the Worker in two reads cut inside a multi-byte character:
/// the deltas still join into the model's text exactly (no replacement
/// character, no lost or doubled byte), and the `[n]` split over events is
/// still a citation.
#[tokio::test]
async fn an_answer_streamed_in_small_pieces_is_whole() {
    let p = prod();
    let marker = "halvossin";
    let body = format!(
        "The {marker} bridge crosses the Göta älv at Trollhättan. The {marker} bridge was designed by Zoë Ångström in 1921. \
         The {marker} bridge carries trams — and bicycles — every day."
    );
    let (cid, run) = p.server.submit(&format!("The {marker} bridge"), &body, None).await;
    assert_eq!(p.server.wait_run(&run, RUN_TIMEOUT).await["status"], "completed");
    search_until_found(&format!("q={marker}%20bridge&k=5"), &[cid.as_str()]).await;
    let injected = json!({ "binding": "ai", "kind": "text", "contains": format!("Question: Who designed the {marker}"), "mode": "tokens", "times": 1 });
    let (_, evs) = ask_following(&format!("Who designed the {marker} bridge?"), injected).await;
    let done = completed(&evs);
    let text = done["text"].as_str().unwrap_or("-").to_string();
    let model_calls = streamed_calls(marker).await;
    let streamed = model_calls.iter().find(|c| c["detail"]["mode"] == "tokens").expect("the streamed attempt");
    assert_eq!(text, streamed["detail"]["text"].as_str().unwrap_or("-"), "the model's text, byte for byte");
    assert!(text.contains("Zoë Ångström") && !text.contains('\u{fffd}'), "{text}");
    assert_eq!(deltas(&evs).concat(), text);
    let cites = done["citations"].as_array().cloned().unwrap_or_default();
    assert!(cites.iter().any(|c| c["content_id"] == cid.as_str()), "the [n] split over events is a citation: {done}");
}

/// A deleted item leaves nothing of itself in a generated answer that
/// quoted it, at rest: the stored text and the logged deltas and completion
/// lose the claims citing it (DESIGN.md: only a tombstone remains).
#[tokio::test]
async fn deleting_a_source_erases_it_from_a_generated_answer() {
    let p = prod();
    let marker = "brelmoraft";
    let cid = fact_sheet(marker).await;
    let id = ask(&format!("What is the {marker} bridge made of?")).await;
    let view = ended(&id).await;
    assert_eq!(view["generator"], "workers-ai", "{view}");
    assert!(view["text"].as_str().is_some_and(|t| t.contains("granite")), "{view}");
    let at_rest = || async {
        let r = p.server.admin_get(&format!("/admin/actors/answer/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body.to_string()
    };
    assert!(at_rest().await.contains("made of granite"), "quoted at first");
    assert_eq!(p.server.delete(&format!("/api/content/{cid}")).await.status, 204);
    eventually("the generated answer forgets the bridge", ANSWER_WAIT, || async {
        let rest = at_rest().await;
        if rest.contains("granite") { Err(rest) } else { Ok(()) }
    })
    .await;
}
