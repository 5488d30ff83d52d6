//! `events`: many session sockets subscribed to the feed while a steady
//! trickle of runs produces feed events; event-to-client latency is the
//! event's server `ts` against the client's receive time (one machine, one
//! clock). `--max-sockets` opens idle sockets in steps until errors appear,
//! lets them hibernate, and checks that pings on a sample still answer.
//! `--peer` runs the same windows against the Agents SDK peer's `Feed` Agent
//! (bench/peer-agents) and prints the two side by side.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{load_average, Goal, Section};
use crate::stack::{doc_body, now_ms, parse_ts, raise_nofile, Proc, Stack};
use crate::stats::{bytes, median, ms, ratio, spread, summarize};
use crate::support::Ws;

pub struct Options {
    pub sockets: Vec<usize>,
    /// Runs submitted per second during a window.
    pub rate: f64,
    pub seconds: f64,
    pub reps: usize,
    /// Steps of the max-sockets probe; `None` skips it.
    pub max_sockets: Option<Vec<usize>>,
    /// Profile one extra window at the largest socket count.
    pub profile: bool,
    /// Also measure the Agents SDK peer's feed (see [`peer`]).
    pub peer: bool,
}

/// Whose feed the listening sockets are on.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// Session sockets, 10 per session, each subscribed to `feed`.
    Actorline,
    /// Sockets to the peer's one Feed Agent, which broadcasts to all of them.
    Peer,
}

/// The peer's feed: the `Feed` Agent named "main" (bench/peer-agents/src/index.ts).
const PEER_FEED: &str = "/agents/feed/main";

const FEED_EVENTS_PER_RUN: u64 = 2; // content.updated at submit, content.indexed at publish

async fn sessions(stack: &Stack, n: usize) -> Vec<(String, String)> {
    futures_util::stream::iter(0..n)
        .map(|_| async move {
            for _ in 0..5 {
                if let Ok(s) = stack.new_session().await {
                    return Some(s);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None
        })
        .buffer_unordered(16)
        .filter_map(|s| async move { s })
        .collect()
        .await
}

async fn connect_url(url: String) -> Result<Ws, String> {
    match tokio::time::timeout(Duration::from_secs(20), tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out after 20 s".into()),
    }
}

/// Reads frames until `pred` matches one (or the timeout passes).
async fn wait_frame(ws: &mut Ws, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if pred(&v) {
                    return Some(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

/// Latency of one event frame, ms (receive − server ts).
fn frame_latency(text: &str, recv_ms: f64) -> Option<f64> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["type"] != "event" {
        return None;
    }
    Some(recv_ms - parse_ts(v["ts"].as_str()?)?)
}

struct Listeners {
    samples: Arc<Mutex<Vec<f64>>>,
    received: Arc<AtomicU64>,
    closed: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    open: usize,
    errors: Vec<String>,
    open_secs: f64,
}

/// One socket that gets every feed event, once its `ready` frame is in:
/// the feed actor's socket (`/api/topics/feed/ws`, the web client's way,
/// authenticated by a session token) subscribed to `feed` (Actorline), or a
/// socket to the peer's Feed Agent (`session` is then unused).
async fn feed_socket(stack: &Stack, side: Side, session: Option<(String, String)>) -> Result<Ws, String> {
    let mut ws = match (side, session) {
        (Side::Actorline, Some(s)) => {
            // As the web client does: the feed's own socket, opened with the session's token.
            let mut ws = connect_url(stack.server.ws_url(&format!("/api/topics/feed/ws?session={}&token={}", s.0, s.1))).await?;
            ws.send(Message::Text(json!({"type": "subscribe", "topic": "feed"}).to_string().into())).await.map_err(|e| e.to_string())?;
            ws
        }
        (Side::Actorline, None) => return Err("no session".into()),
        (Side::Peer, _) => connect_url(stack.server.ws_url(PEER_FEED)).await?,
    };
    wait_frame(&mut ws, Duration::from_secs(30), |v| v["type"] == "ready" || v["type"] == "error")
        .await
        .filter(|v| v["type"] == "ready")
        .ok_or_else(|| "no ready frame".to_string())?;
    Ok(ws)
}

/// Opens `n` feed sockets (Actorline's over `n / per_session` sessions),
/// waits for each one's `ready`, then reads each in its own task.
async fn listeners(stack: &Stack, side: Side, n: usize) -> Listeners {
    let per_session = n.clamp(1, 10);
    let started = Instant::now();
    let sess = match side {
        Side::Actorline => sessions(stack, n.div_ceil(per_session)).await,
        Side::Peer => Vec::new(),
    };
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let received: Arc<AtomicU64> = Arc::default();
    let closed: Arc<AtomicUsize> = Arc::default();
    let (stop, stop_rx) = watch::channel(false);
    let results: Vec<Result<Ws, String>> = futures_util::stream::iter(0..n)
        .map(|i| feed_socket(stack, side, sess.get(i / per_session).cloned()))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(mut ws) => {
                let (samples, received, closed, mut stop_rx) = (samples.clone(), received.clone(), closed.clone(), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop_rx.changed() => {
                                let _ = ws.close(None).await;
                                break;
                            }
                            m = ws.next() => match m {
                                Some(Ok(Message::Text(t))) => {
                                    let recv = now_ms();
                                    if let Some(l) = frame_latency(t.as_str(), recv) {
                                        samples.lock().unwrap().push(l);
                                        received.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Some(Ok(_)) => {}
                                _ => {
                                    closed.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                }));
            }
            Err(e) => errors.push(e),
        }
    }
    let open = tasks.len();
    Listeners { samples, received, closed, stop, tasks, open, errors, open_secs: started.elapsed().as_secs_f64() }
}

impl Listeners {
    async fn close(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Submits `rate` runs per second for `seconds` (open loop); returns how many
/// were accepted.
async fn trickle(stack: &Stack, rate: f64, seconds: f64, seed0: usize) -> usize {
    let n = (rate * seconds).round().max(1.0) as usize;
    let start = tokio::time::Instant::now();
    let subs = (0..n).map(|i| async move {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let body = doc_body("events", seed0 + i, 2048);
        stack.submit(&format!("Events document {}", seed0 + i), &body, Some("events")).await.is_ok()
    });
    futures_util::future::join_all(subs).await.into_iter().filter(|ok| *ok).count()
}

/// Waits until `received` reaches `target`, or stops growing for `quiet`.
async fn drain(received: &AtomicU64, target: u64, quiet: Duration, cap: Duration) -> u64 {
    let deadline = Instant::now() + cap;
    let mut last = received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while Instant::now() < deadline {
        let now = received.load(Ordering::Relaxed);
        if now >= target {
            return now;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received.load(Ordering::Relaxed)
}

struct LevelRow {
    sockets: usize,
    opened: usize,
    open_secs: f64,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    delivered: u64,
    expected: u64,
    runs: usize,
    errors: Vec<String>,
    worker_cpu_ms_per_run: f64,
    rss_kib: u64,
}

/// Actorline's figures per socket count, for the peer comparison.
pub struct Levels(Vec<LevelRow>);

/// The windows at every socket count on one server, after a warm-up; with
/// `profile`, also the Markdown of a CPU profile at the largest count.
async fn measure(stack: &Stack, side: Side, opts: &Options, profile: bool) -> (Vec<LevelRow>, String) {
    let name = if side == Side::Peer { "peer events" } else { "events" };
    // Warm-up: compile, create the feed actor.
    trickle(stack, 4.0, 1.0, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = Vec::new();
    let mut seed = 100;
    let mut profile_md = String::new();
    for &n in &opts.sockets {
        let l = listeners(stack, side, n).await;
        eprintln!("[bench] {name}: {} of {n} sockets subscribed in {:.1} s ({} errors)", l.open, l.open_secs, l.errors.len());
        // Purge subscribers left by the previous level, then start clean.
        trickle(stack, 2.0, 1.0, seed).await;
        seed += 10;
        drain(&l.received, u64::MAX, Duration::from_secs(2), Duration::from_secs(15)).await;
        l.samples.lock().unwrap().clear();
        let mut row = LevelRow {
            sockets: n,
            opened: l.open,
            open_secs: l.open_secs,
            p50: vec![],
            p99: vec![],
            max: vec![],
            delivered: 0,
            expected: 0,
            runs: 0,
            errors: l.errors.iter().take(3).cloned().collect(),
            worker_cpu_ms_per_run: 0.0,
            rss_kib: stack.rss_kib(),
        };
        let mut cpu = Vec::new();
        for rep in 0..opts.reps.max(1) {
            let base = l.received.load(Ordering::Relaxed);
            let before = stack.procs();
            let runs = trickle(stack, opts.rate, opts.seconds, seed).await;
            seed += runs + 1;
            let target = base + runs as u64 * FEED_EVENTS_PER_RUN * l.open as u64;
            let got = drain(&l.received, target, Duration::from_secs(5), Duration::from_secs(60)).await;
            let after = stack.procs();
            let worker: f64 = crate::stack::cpu_delta(&before, &after).iter().filter(|(r, _)| r == "worker").map(|(_, v)| v).sum();
            cpu.push(worker / runs.max(1) as f64);
            let s = summarize(&std::mem::take(&mut *l.samples.lock().unwrap()));
            eprintln!(
                "[bench] {name} {n} sockets rep {rep}: {runs} runs, {}/{} frames, p50 {} ms, p99 {} ms, max {} ms (load {})",
                got - base,
                target - base,
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
                load_average()
            );
            row.p50.push(s.p50);
            row.p99.push(s.p99);
            row.max.push(s.max);
            row.delivered += got - base;
            row.expected += target - base;
            row.runs += runs;
        }
        row.worker_cpu_ms_per_run = median(&cpu);
        // A CPU profile of one extra, unmeasured window at the largest level.
        if profile && n >= 100 && Some(&n) == opts.sockets.iter().max() {
            if let Some(url) = crate::profile::inspector_url(stack).await {
                if let Ok(p) = crate::profile::Profiler::start(&url, 250).await {
                    let base = l.received.load(Ordering::Relaxed);
                    let runs = trickle(stack, opts.rate, opts.seconds, seed).await;
                    seed += runs + 1;
                    let target = base + runs as u64 * FEED_EVENTS_PER_RUN * l.open as u64;
                    drain(&l.received, target, Duration::from_secs(5), Duration::from_secs(60)).await;
                    l.samples.lock().unwrap().clear();
                    if let Ok(profile) = p.stop().await {
                        profile_md = format!(
                            "\n#### CPU profile of the Worker isolate at {} sockets (one extra window, {runs} runs)\n\n{}",
                            l.open,
                            crate::profile::report(&profile, runs, 20)
                        );
                    }
                }
            }
        }
        row.rss_kib = row.rss_kib.max(stack.rss_kib());
        if l.closed.load(Ordering::Relaxed) > 0 {
            row.errors.push(format!("{} sockets closed by the server during the run", l.closed.load(Ordering::Relaxed)));
        }
        l.close().await;
        rows.push(row);
    }
    (rows, profile_md)
}

pub async fn run(opts: &Options) -> (Section, Levels) {
    let mut sec = Section::new("Live events: event → client latency");
    raise_nofile();
    // The idle-socket probe puts SOCKETS_PER_SESSION sockets on each session,
    // above the default cap (MAX_SOCKETS_PER_SESSION, 8). One load generator
    // with one key stands in for a thousand users' tabs on the feed, above
    // the default cap per principal (MAX_TOPIC_SOCKETS_PER_PRINCIPAL, 64).
    let cap = SOCKETS_PER_SESSION.to_string();
    // 10,000: the most a topic's actor holds at all.
    let vars = [("MAX_SOCKETS_PER_SESSION", cap.as_str()), ("MAX_TOPIC_SOCKETS_PER_PRINCIPAL", "10000")];
    let stack = Stack::start("events", &vars).await;
    let (rows, profile_md) = measure(&stack, Side::Actorline, opts, opts.profile).await;

    let mut b = String::new();
    let _ = writeln!(
        b,
        "Sockets are the feed actor's own (`/api/topics/feed/ws`, opened as the web client opens them, \
         with a session token; 10 sockets per session, one session when fewer), each subscribed to \
         `feed`. A steady trickle of {} runs/s for {} s per window produces 2 feed events per run \
         (`content.updated`, `content.indexed`); every socket receives every event. Latency is client \
         receive time − the event's `ts` (stamped by the feed actor when it appends; both clocks are \
         this machine's, `ts` has ms resolution). Figures are the median over {} windows; the runs \
         themselves load the same workerd meanwhile. Worker CPU per run is the Worker's workerd CPU \
         time during a window over the runs submitted in it: the run's own pipeline plus its fan-out, \
         so its growth with the socket count is the cost of delivery; delivery CPU per frame is that \
         growth over the smallest level, per extra frame.\n",
        opts.rate,
        opts.seconds,
        opts.reps.max(1)
    );
    let _ = writeln!(b, "| sockets | sessions | open + subscribe (s) | p50 (ms) | p99 (ms) | max (ms) | p99 per window | frames delivered | Worker CPU per run (ms) | delivery CPU per frame (µs) | server RSS |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    // The smallest level is the base: its CPU per run is mostly the runs themselves.
    let base = rows.iter().min_by_key(|r| r.opened);
    let base_cpu = base.map(|r| r.worker_cpu_ms_per_run);
    for r in &rows {
        // Extra Worker CPU over the base level, per extra frame delivered (2 feed events per run).
        let per_frame = match base {
            Some(b) if r.opened > b.opened => {
                ((r.worker_cpu_ms_per_run - b.worker_cpu_ms_per_run) / (FEED_EVENTS_PER_RUN as f64 * (r.opened - b.opened) as f64) * 1000.0).max(0.0)
            }
            _ => f64::NAN,
        };
        let _ = writeln!(
            b,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            r.opened,
            r.sockets.div_ceil(r.sockets.clamp(1, 10)),
            r.open_secs,
            ms(median(&r.p50)),
            ms(median(&r.p99)),
            ms(median(&r.max)),
            spread(&r.p99, ms),
            r.delivered,
            r.expected,
            ms(r.worker_cpu_ms_per_run),
            crate::stats::num(per_frame),
            bytes(r.rss_kib * 1024)
        );
    }
    for r in &rows {
        for e in &r.errors {
            let _ = writeln!(b, "\n- {} sockets: {}", r.sockets, crate::report::quoted(e));
        }
    }
    b.push_str(&profile_md);
    for r in &rows {
        if r.sockets == 1000 {
            let why = format!(
                "*CPU profile of the Worker isolate at 1000 sockets*: the Worker's CPU per run grows from {} ms at the smallest level to {} ms \
                 ({} runs/s × {FEED_EVENTS_PER_RUN} events × {} sockets), all on the one isolate thread that also runs the pipelines, \
                 so frames queue behind each other and behind stage work",
                ms(base_cpu.unwrap_or(f64::NAN)),
                ms(r.worker_cpu_ms_per_run),
                opts.rate,
                r.opened
            );
            sec.goals.push(Goal::new("event → client p99 at 1,000 sockets (issue 17)", "< 50 ms", median(&r.p99), |v| v < 50.0, "ms").why(why));
        }
    }

    if let Some(steps) = &opts.max_sockets {
        let (text, best) = max_sockets(&stack, steps).await;
        b.push_str(&text);
        // The step that ended the probe, not the largest one it was given.
        let why = match steps.iter().copied().find(|&s| s > best) {
            Some(failed) => format!(
                "*Idle sockets*: {best} sockets held and answered; the step to {failed} had connect errors or missing pongs, which end the probe \
                 (the table shows each server process's open descriptors after the last step that held)"
            ),
            None => format!("*Idle sockets*: every step held, up to {best} sockets"),
        };
        sec.goals.push(Goal::new("hibernated sockets answering pings", "10,000", best as f64, |v| v >= 10_000.0, "sockets").why(why));
    }
    sec.body = b;
    stack.stop().await;
    (sec, Levels(rows))
}

/// The same windows against the Agents SDK peer, on a fresh peer server, side
/// by side with Actorline's (`ours`, measured by [`run`] just before).
pub async fn peer(opts: &Options, ours: &Levels) -> Section {
    let mut sec = Section::new("Actorline and the Agents SDK peer: live events");
    raise_nofile();
    let stack = Stack::start_peer("events-peer").await;
    let (theirs, _) = measure(&stack, Side::Peer, opts, false).await;
    stack.stop().await;

    let mut b = String::new();
    let _ = writeln!(
        b,
        "The same windows as above ({} runs/s for {} s, median of {} windows, latency = receive time − the event's `ts`) \
         against the peer (bench/peer-agents, `agents` 0.11.8). Its feed is one `Feed` Agent (`{PEER_FEED}`): each run \
         Agent hands it `content.updated` when the run is accepted and `content.indexed` at publish by RPC \
         (`getAgentByName(env.Feed, \"main\")`, then `publish(...)`); the Feed numbers the event (dense `seq`), stores it \
         in its SQLite and sends it with `this.broadcast` to every socket on it, in Actorline's frame shape. So on both \
         sides every socket is held by the one feed actor, which sends each event to each socket in the turn that \
         stores it (Actorline's feed sockets are opened with session tokens, 10 per session, as the web client does). \
         Each side has its own fresh server. Worker CPU per run is the Worker \
         workerd's CPU during a window over the runs submitted in it (pipeline plus fan-out).\n",
        opts.rate,
        opts.seconds,
        opts.reps.max(1)
    );
    let _ = writeln!(b, "| sockets (A / peer) | Actorline p50 (ms) | peer p50 (ms) | peer ÷ Actorline | Actorline p99 (ms) | peer p99 (ms) | peer ÷ Actorline | Actorline Worker CPU per run (ms) | peer Worker CPU per run (ms) | peer ÷ Actorline | frames delivered (A / peer) |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (a, p) in ours.0.iter().zip(&theirs) {
        let (a50, p50, a99, p99) = (median(&a.p50), median(&p.p50), median(&a.p99), median(&p.p99));
        let _ = writeln!(
            b,
            "| {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {}, {} / {} |",
            a.opened,
            p.opened,
            ms(a50),
            ms(p50),
            ratio(p50, a50),
            ms(a99),
            ms(p99),
            ratio(p99, a99),
            ms(a.worker_cpu_ms_per_run),
            ms(p.worker_cpu_ms_per_run),
            ratio(p.worker_cpu_ms_per_run, a.worker_cpu_ms_per_run),
            a.delivered,
            a.expected,
            p.delivered,
            p.expected
        );
    }
    for r in &theirs {
        for e in &r.errors {
            let _ = writeln!(b, "\n- peer, {} sockets: {}", r.sockets, crate::report::quoted(e));
        }
    }
    sec.body = b;
    sec
}

fn procs_summary(p: &[Proc]) -> String {
    let mut roles: Vec<(&str, u64, usize, usize)> = Vec::new();
    for x in p.iter().filter(|p| p.role != "other") {
        match roles.iter_mut().find(|r| r.0 == x.role) {
            Some(r) => {
                r.1 += x.rss_kib;
                r.2 += x.fds;
                r.3 += 1;
            }
            None => roles.push((&x.role, x.rss_kib, x.fds, 1)),
        }
    }
    roles.iter().map(|(role, rss, fds, _)| format!("{role} {} / {fds} fds", bytes(rss * 1024))).collect::<Vec<_>>().join(", ")
}

/// Sockets per session in the idle-socket probe (the server is started with
/// this as its `MAX_SOCKETS_PER_SESSION`).
const SOCKETS_PER_SESSION: usize = 100;

/// Opens idle sockets in steps until errors appear; after each step waits for
/// hibernation and pings a sample. Returns the table and the largest step at
/// which every sampled ping was answered.
async fn max_sockets(stack: &Stack, steps: &[usize]) -> (String, usize) {
    const SAMPLE: usize = 50;
    const IDLE: Duration = Duration::from_secs(15);
    let (soft, _) = raise_nofile();
    // wrangler's proxy holds ~6 descriptors per proxied WebSocket, so with a
    // 20,000 limit it tops out near 3,000 sockets; the probe connects to the
    // runtime's own socket instead (1 descriptor per socket there).
    let direct = crate::profile::direct_base(stack).await;
    let ws_base = direct.clone().unwrap_or_else(|| stack.server.base.clone()).replacen("http://", "ws://", 1);
    let mut held: Vec<Ws> = Vec::new();
    let mut sess: Vec<(String, String)> = Vec::new();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "\n#### Idle sockets (`--max-sockets`)\n\n\
         Sockets are opened in steps ({} per session, with `MAX_SOCKETS_PER_SESSION` raised to that; 64 connects in flight, no subscriptions), then left \
         idle for {} s, past workerd's ~10 s eviction of idle actors, so the sessions hibernate with their \
         sockets open. Then {SAMPLE} sockets spread over all sessions each send `{{\"type\":\"ping\"}}`, \
         which the runtime answers with `pong` from the auto-response without waking the actor. \
         Open-files limit: {soft} per process (the load generator and each server process). \
         Sockets connect {}.\n",
        SOCKETS_PER_SESSION,
        IDLE.as_secs(),
        if direct.is_some() {
            "straight to the runtime workerd's own socket (the one wrangler's proxy forwards to), because \
             the proxy holds about 6 descriptors per WebSocket and would run out near 3,000 sockets; the \
             \"proxy\" figures below are therefore idle"
        } else {
            "through wrangler's public port (the runtime's own socket was not found)"
        }
    );
    let _ = writeln!(b, "| step | open | connect errors | connects/s | pongs | pong p50 (ms) | server after idle (RSS / fds per process) |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---|");
    let mut best = 0;
    let mut first_error = None;
    for &step in steps {
        let want = step.saturating_sub(held.len());
        let need_sessions = step.div_ceil(SOCKETS_PER_SESSION).saturating_sub(sess.len());
        sess.extend(sessions(stack, need_sessions).await);
        let base = held.len();
        let t0 = Instant::now();
        let results: Vec<Result<Ws, String>> = futures_util::stream::iter((base..base + want).filter_map(|i| sess.get(i / SOCKETS_PER_SESSION).cloned()))
            .map(|s| {
                let url = format!("{ws_base}/api/sessions/{}/ws?token={}", s.0, s.1);
                async move { connect_url(url).await }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let secs = t0.elapsed().as_secs_f64();
        let mut errors = 0;
        for r in results {
            match r {
                Ok(ws) => held.push(ws),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        eprintln!("[bench] max-sockets step {step}: {} open, {errors} errors, {:.0} connects/s", held.len(), want as f64 / secs.max(1e-9));
        tokio::time::sleep(IDLE).await;
        // Ping a sample spread over the held sockets.
        let stride = (held.len() / SAMPLE).max(1);
        let mut lat = Vec::new();
        let mut answered = 0;
        let mut asked = 0;
        for i in (0..held.len()).step_by(stride).take(SAMPLE) {
            asked += 1;
            let ws = &mut held[i];
            let t = Instant::now();
            if ws.send(Message::Text(r#"{"type":"ping"}"#.to_string().into())).await.is_err() {
                continue;
            }
            if wait_frame(ws, Duration::from_secs(5), |v| v["type"] == "pong").await.is_some() {
                answered += 1;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let procs = stack.procs();
        let _ = writeln!(
            b,
            "| {step} | {} | {errors} | {:.0} | {answered} / {asked} | {} | {} |",
            held.len(),
            want as f64 / secs.max(1e-9),
            ms(summarize(&lat).p50),
            procs_summary(&procs)
        );
        if answered == asked && asked > 0 && held.len() >= step {
            best = held.len();
        }
        if errors > 0 || answered < asked {
            break;
        }
    }
    if let Some(e) = first_error {
        let _ = writeln!(b, "\nFirst connect error: {}", crate::report::quoted(&e));
    }
    // Close politely, in bulk, so the server is not left with half-open sockets.
    futures_util::stream::iter(held)
        .for_each_concurrent(256, |mut ws| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        })
        .await;
    (b, best)
}
