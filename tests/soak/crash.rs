//! R1: runs submitted over time while the whole wrangler group (workerd
//! included) is SIGKILLed at seeded random points and restarted on the same
//! `--persist-to` state. Every run completes, no stage completes twice, and
//! WebSocket tabs subscribed to every run's topic, cut by each kill, resume
//! with `after=<last seq seen>` and end with exactly each run's event log.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::journal::{check_log, check_run, Tally};
use crate::report::Row;
use crate::support::fuzz::Gen;
use crate::support::*;
use crate::{Counters, Scale};

/// A session allows 16 subscriptions per socket, so each tab follows 16 runs.
const RUNS_PER_TAB: usize = 16;

/// What a tab received: every event frame per topic, in arrival order.
#[derive(Default)]
struct TabLog {
    frames: BTreeMap<String, Vec<Value>>,
    connects: usize,
    errors: Vec<String>,
}

fn last_seq(frames: &[Value]) -> u64 {
    frames.last().and_then(|f| f["seq"].as_u64()).unwrap_or(0)
}

async fn subscribe(ws: &mut Ws, topic: &str, after: u64) -> bool {
    ws.send(Message::Text(json!({"type": "subscribe", "topic": topic, "after": after}).to_string().into())).await.is_ok()
}

/// One browser tab of the session: connects to the current server (`base` is
/// None while it is down), subscribes to each topic it is given, and after any
/// disconnect reconnects and resubscribes with the last seq it saw. It ends
/// once its topics are closed and each saw its run end, or on `stop`.
async fn tab(mut base: watch::Receiver<Option<String>>, session: (String, String), mut topics: mpsc::UnboundedReceiver<String>, mut stop: watch::Receiver<bool>) -> TabLog {
    let mut log = TabLog::default();
    let mut open = true;
    let ended = |e: &Value| matches!(e["event"].as_str(), Some(ev::RUN_COMPLETED | ev::RUN_FAILED | ev::RUN_CANCELLED));
    let finished = |log: &TabLog| log.frames.values().all(|f| f.last().is_some_and(ended));
    'connect: loop {
        if *stop.borrow() || (!open && finished(&log)) {
            break;
        }
        let Some(url) = base.borrow_and_update().clone() else {
            tokio::select! {
                _ = base.changed() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let url = format!("{}/api/sessions/{}/ws?token={}", url.replacen("http://", "ws://", 1), session.0, session.1);
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        log.connects += 1;
        for (topic, frames) in &log.frames {
            if !subscribe(&mut ws, topic, last_seq(frames)).await {
                continue 'connect;
            }
        }
        loop {
            if !open && finished(&log) {
                break 'connect;
            }
            tokio::select! {
                t = topics.recv(), if open => match t {
                    Some(t) => {
                        log.frames.insert(t.clone(), Vec::new());
                        if !subscribe(&mut ws, &t, 0).await {
                            continue 'connect;
                        }
                    }
                    None => open = false,
                },
                f = ws.next() => match f {
                    Some(Ok(Message::Text(t))) => {
                        let f: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        match f["type"].as_str() {
                            Some("event") => match log.frames.get_mut(f["topic"].as_str().unwrap_or("")) {
                                Some(frames) => frames.push(f),
                                None => log.errors.push(format!("an event for a topic never subscribed: {f}")),
                            },
                            Some("subscribed" | "ready" | "pong") => {}
                            _ => log.errors.push(format!("unexpected frame: {f}")),
                        }
                    }
                    Some(Ok(_)) => {}
                    // Closed or broken: the server went away; resume on the next one.
                    Some(Err(_)) | None => continue 'connect,
                },
                _ = stop.changed() => break 'connect,
            }
        }
    }
    log
}

struct Tabs {
    senders: Vec<mpsc::UnboundedSender<String>>,
    handles: Vec<tokio::task::JoinHandle<TabLog>>,
}

impl Tabs {
    /// Enough tabs of one session for `runs` runs, all open before the first
    /// kill so that every tab is cut by every kill.
    fn open(runs: usize, base: &watch::Receiver<Option<String>>, session: &(String, String), stop: &watch::Receiver<bool>) -> Tabs {
        let (senders, handles) = (0..runs.div_ceil(RUNS_PER_TAB))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, tokio::spawn(tab(base.clone(), session.clone(), rx, stop.clone())))
            })
            .unzip();
        Tabs { senders, handles }
    }

    /// Hands run `i`'s topic to a tab, round robin.
    fn follow(&self, i: usize, run: &str) {
        let _ = self.senders[i % self.senders.len()].send(format!("run:{run}"));
    }
}

/// Checks each topic's received frames against the run's log: the same
/// events (seq, name, data, ts), each once, in order. Returns events checked.
fn compare(run: &str, got: &[Value], log: &[Value], failures: &mut Vec<String>) -> usize {
    let key = |e: &Value| (e["seq"].clone(), e["event"].clone(), e["data"].clone(), e["ts"].clone());
    let got_keys: Vec<_> = got.iter().map(key).collect();
    let want: Vec<_> = log.iter().map(key).collect();
    if got_keys != want {
        let seqs = |v: &[Value]| v.iter().filter_map(|e| e["seq"].as_u64()).collect::<Vec<_>>();
        failures.push(format!("run {run}: the client saw seqs {:?}, the log has {:?}", seqs(got), seqs(log)));
    }
    got.len()
}

pub async fn run(scale: &Scale, seed: u64) -> Row {
    let counters = Counters::start();
    let mut g = Gen(seed);
    let opts = ServerOptions::new(temp_dir("soak-crash").join("state")).var("FAULTS", "index=0.3").var("RETRY_BASE_MS", "300");
    let mut s = Server::start(&opts);
    let (base_tx, base_rx) = watch::channel(Some(s.base.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tabs = Tabs::open(scale.crash_runs, &base_rx, &new_session(&s).await, &stop_rx);

    // kills+1 segments: submit a share of the runs a few tens of ms apart,
    // wait a random while (so some runs are mid-stage, some queued, some done), kill.
    // An activation runs a run's ready stages back to back, so a clean run is
    // over in tens of ms, often before its POST has answered: injected index
    // faults make some runs wait for retry alarms, and the wait is short, so
    // kills land inside runs (mid-activation or waiting for a backoff).
    let mut runs: Vec<String> = Vec::new();
    let mut items: Vec<String> = Vec::new();
    let mut kills = Vec::new();
    let per_segment = scale.crash_runs.div_ceil(scale.kills + 1);
    for segment in 0..=scale.kills {
        let upto = ((segment + 1) * per_segment).min(scale.crash_runs);
        while runs.len() < upto {
            let i = runs.len();
            let (item, run) = s.submit(&format!("Crash {i}"), &document("durability", 400 + i, 1000 + g.below(3000) as usize), None).await;
            tabs.follow(i, &run);
            runs.push(run);
            items.push(item);
            tokio::time::sleep(Duration::from_millis(g.below(30))).await;
        }
        if segment < scale.kills {
            tokio::time::sleep(Duration::from_millis(g.below(150))).await;
            let _ = base_tx.send(None);
            kills.push(chrono::Utc::now().timestamp_millis());
            // Starting a server blocks for seconds; let the tabs run meanwhile.
            tokio::task::block_in_place(|| s.restart(&opts, true));
            let _ = base_tx.send(Some(s.base.clone()));
        }
    }
    drop(tabs.senders);

    let mut failures = Vec::new();
    let mut tally = Tally::default();
    let mut in_flight_at_kills = 0;
    let mut logs = BTreeMap::new();
    for run in &runs {
        let view = s.wait_run(run, Duration::from_secs(180)).await;
        check_run(run, &view, &mut tally, &mut failures);
        let (created, finished) = (view["created_at"].as_str().unwrap_or(""), view["finished_at"].as_str().unwrap_or(""));
        let ms = |t: &str| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.timestamp_millis()).unwrap_or(0);
        in_flight_at_kills += kills.iter().filter(|k| ms(created) < **k && **k < ms(finished)).count();
        logs.insert(format!("run:{run}"), check_log(&s, run, &mut failures).await);
    }

    // Every run is over, so each tab ends by itself once it has caught up.
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut received = TabLog::default();
    let mut reconnects = 0;
    let n_tabs = tabs.handles.len();
    for mut h in tabs.handles {
        let tab = tokio::select! {
            t = &mut h => t,
            _ = &mut deadline => {
                let _ = stop_tx.send(true);
                h.await
            }
        }
        .expect("tab task");
        if tab.connects < kills.len() + 1 {
            failures.push(format!("a tab connected {} times over {} kills", tab.connects, kills.len()));
        }
        reconnects += tab.connects.saturating_sub(1);
        received.frames.extend(tab.frames);
        received.errors.extend(tab.errors);
    }
    failures.extend(received.errors);
    let mut events = 0;
    let mut broken_streams = 0;
    for (topic, log) in &logs {
        let got = received.frames.get(topic).map(Vec::as_slice).unwrap_or(&[]);
        let before = failures.len();
        events += compare(topic, got, log, &mut failures);
        broken_streams += failures.len() - before;
    }
    // The feed is told of each item by its actor's outbox, across the kills:
    // each item's events arrive, once (a duty whose lease a kill cut short
    // is tried again after it, 30 s on).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let feed = loop {
        match feed_holds_each_once(&s, &s.key, &items).await {
            Err(FeedShortfall::Missing(_)) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            done => break done,
        }
    };
    if let Err(e) = &feed {
        failures.push(format!("the feed: {e}"));
    }
    if scale.kills > 0 && in_flight_at_kills == 0 {
        failures.push("no kill landed while a run was in flight: the scenario proved nothing".into());
    }
    Row {
        size: format!("{} runs, {n_tabs} tabs", runs.len()),
        restarts: kills.len(),
        events,
        losses: (tally.runs - tally.completed) + broken_streams + usize::from(feed.is_err()),
        notes: format!(
            "kills hit in-flight runs {in_flight_at_kills} times, interrupting {} stage attempts; {reconnects} WebSocket resumes; {}",
            tally.interrupted,
            if feed.is_ok() { "the feed held each item's events once" } else { "the feed did not hold each item's events once" }
        ),
        ..counters.row("R1 crash", &s, failures)
    }
}
