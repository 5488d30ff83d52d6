//! `pipeline`: submit 2 KB documents with N in flight, learn from the feed
//! socket when each is indexed, and report submit-to-indexed latency and runs
//! completed per second. Then break a sample of runs down into the POST, the
//! alarm hops between stages, each stage, and the push to the client.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Goal, Section};
use crate::support::ev;
use crate::stack::{self, cpu_delta, doc_body, now_ms, parse_ts, Stack};
use crate::stats::{median, ms, num, spread, summarize};
use crate::support::Ws;
use crate::tracker::{Done, Tracker};

pub struct Options {
    pub concurrency: Vec<usize>,
    /// Documents per repetition; `None` picks a size per concurrency.
    pub docs: Option<usize>,
    pub reps: usize,
    pub quick: bool,
    /// Also take a CPU profile of the Worker isolate (an extra loop).
    pub profile: bool,
    /// Also run the smallest and largest concurrency with state on tmpfs.
    pub compare_tmpfs: bool,
}

/// One run as the client saw it.
#[derive(Debug, Clone)]
pub struct RunSample {
    pub run_id: String,
    pub content_id: String,
    pub submit_epoch_ms: f64,
    pub post_ms: f64,
    pub indexed_ts: f64,
    pub recv_ms: f64,
}

#[derive(Debug, Default)]
pub struct LoopResult {
    pub ok: usize,
    pub failed: usize,
    pub errors: Vec<String>,
    /// Submit (POST sent) to `content.indexed` received, ms.
    pub latencies: Vec<f64>,
    pub post_ms: Vec<f64>,
    pub wall: Duration,
    pub runs: Vec<RunSample>,
    /// Indexed documents whose push did not arrive within the timeout (found by polling).
    pub push_missed: usize,
    /// POSTs sent again after wrangler's proxy answered 503 or dropped the connection.
    pub resubmitted: usize,
    pub cpu: Vec<(String, f64)>,
    pub analyzer_cpu_ms: f64,
    pub client_cpu_ms: f64,
}

impl LoopResult {
    pub fn runs_per_sec(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    pub fn cpu_per_run(&self, role: &str) -> f64 {
        self.cpu.iter().find(|(r, _)| r == role).map(|(_, v)| *v).unwrap_or(0.0) / self.ok.max(1) as f64
    }
}

const PUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Actorline's cap on subscriptions per socket (`MAX_SUBSCRIPTIONS`).
const SUBSCRIPTIONS_PER_SOCKET: usize = 16;

/// How a worker of the closed loop learns that its document is done.
#[derive(Clone, Copy)]
pub enum DoneSignal<'a> {
    /// `content.indexed` on the tracker's one feed socket (Actorline).
    Feed(&'a Tracker),
    /// `run.completed` on `run:{id}`, subscribed with `after: 0` on the
    /// worker's own session socket, renewed every 16 runs (Actorline).
    RunTopic,
    /// `run.completed` on a new socket to the run's own topic,
    /// `/api/topics/run:{id}/ws?after=0`, opened with the client's key (Actorline).
    RunSocket,
    /// `run.completed` on a new socket to the run's Agent,
    /// `/agents/pipeline-run/{id}?after=0` (the Agents SDK peer).
    AgentSocket,
}

impl DoneSignal<'_> {
    pub fn describe(&self) -> &'static str {
        match self {
            DoneSignal::Feed(_) => "`content.indexed` on one socket subscribed to `feed`",
            DoneSignal::RunTopic => "`run.completed` on `run:<id>`, subscribed (`after: 0`) on the worker's session socket",
            DoneSignal::RunSocket => "`run.completed` on a socket opened to the run's own topic (`/api/topics/run:<id>/ws?after=0`, with the client's API key)",
            DoneSignal::AgentSocket => "`run.completed` on a socket opened to the run's Agent (`/agents/pipeline-run/<id>?after=0`)",
        }
    }

    /// Waits for the document's done event; `session` is the worker's socket (RunTopic).
    async fn wait(&self, stack: &Stack, session: &mut Option<(Ws, usize)>, cid: &str, rid: &str) -> Option<Done> {
        let topic = format!("run:{rid}");
        match self {
            DoneSignal::Feed(t) => tokio::time::timeout(PUSH_TIMEOUT, t.expect(cid)).await.ok()?.ok(),
            DoneSignal::RunTopic => {
                // One frame per run: no unsubscribe, a fresh socket once the
                // per-socket subscription cap is reached. Subscribe plus
                // unsubscribe per run would outrun the session's frame rate
                // limit (10/s) at concurrency 1 and get subscribes refused.
                if session.as_ref().is_some_and(|(_, n)| *n >= SUBSCRIPTIONS_PER_SOCKET) {
                    *session = None;
                }
                if session.is_none() {
                    let (sid, token) = stack.new_session().await.ok()?;
                    *session = Some((tokio_tungstenite::connect_async(stack.ws_url(&sid, &token)).await.ok()?.0, 0));
                }
                let (ws, subs) = session.as_mut()?;
                *subs += 1;
                let frame = Message::Text(json!({"type": "subscribe", "topic": topic, "after": 0}).to_string().into());
                let done = match ws.send(frame).await {
                    Ok(()) => run_end(ws, &topic).await,
                    Err(_) => None,
                };
                if done.is_none() {
                    *session = None; // start over with a fresh socket
                }
                done
            }
            DoneSignal::RunSocket => {
                let url = stack.server.ws_url(&format!("/api/topics/{topic}/ws?after=0"));
                let mut req = url.into_client_request().ok()?;
                req.headers_mut().insert("authorization", format!("Bearer {}", stack.server.key).parse().ok()?);
                let mut ws = tokio_tungstenite::connect_async(req).await.ok()?.0;
                let done = run_end(&mut ws, &topic).await;
                let _ = ws.close(None).await;
                done
            }
            DoneSignal::AgentSocket => {
                let url = stack.server.ws_url(&format!("/agents/pipeline-run/{rid}?after=0"));
                let mut ws = tokio_tungstenite::connect_async(url).await.ok()?.0;
                let done = run_end(&mut ws, &topic).await;
                let _ = ws.close(None).await;
                done
            }
        }
    }
}

/// Reads `ws` until `topic`'s run ends (`run.completed`, or `run.failed` /
/// `run.cancelled` as not ok); frames of other topics are skipped.
async fn run_end(ws: &mut Ws, topic: &str) -> Option<Done> {
    let deadline = Instant::now() + PUSH_TIMEOUT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, ws.next()).await else { return None };
        let Message::Text(t) = msg else { continue };
        let (at, recv_ms) = (Instant::now(), now_ms());
        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
        if v["type"] != "event" || v["topic"] != topic {
            continue;
        }
        let ok = match v["event"].as_str() {
            Some(ev::RUN_COMPLETED) => true,
            Some(ev::RUN_FAILED | ev::RUN_CANCELLED) => false,
            _ => continue,
        };
        return Some(Done { at, ok, server_ts: v["ts"].as_str().and_then(parse_ts).unwrap_or(f64::NAN), recv_ms });
    }
}

/// `docs` documents, at most `concurrency` in flight (closed loop).
/// Document `i` is on `topics[i % topics.len()]`, which is also its category.
pub async fn closed_loop(stack: &Stack, signal: DoneSignal<'_>, concurrency: usize, docs: usize, topics: &[&str], seed0: usize) -> LoopResult {
    closed_loop_with(stack, signal, concurrency, docs, topics, seed0, doc_body).await
}

/// A document body generator: (topic, seed, bytes) to text.
pub type BodyFn = fn(&str, usize, usize) -> String;

/// [`closed_loop`] with another document generator (the search bench's corpus).
pub async fn closed_loop_with(
    stack: &Stack,
    signal: DoneSignal<'_>,
    concurrency: usize,
    docs: usize,
    topics: &[&str],
    seed0: usize,
    body_of: BodyFn,
) -> LoopResult {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(LoopResult::default()));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let last = Arc::new(Mutex::new(None::<Instant>));
    let before = stack.procs();
    let an_before = stack::group_procs(stack.analyzer.group.pgid());
    let client_before = stack::self_cpu_ms();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, out, first, last) = (next.clone(), out.clone(), first.clone(), last.clone());
        // Joined below on this task, so the workers may borrow `stack`.
        tasks.push(async move {
            let mut session = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= docs {
                    break;
                }
                let topic = topics[(seed0 + i) % topics.len().max(1)];
                let body = body_of(topic, seed0 + i, 2048);
                let title = format!("{topic} document {}", seed0 + i);
                let t0 = Instant::now();
                let e0 = now_ms();
                first.lock().unwrap().get_or_insert(t0);
                // wrangler's dev proxy sometimes answers 503 "Your worker restarted
                // mid-request" or drops the connection under load; resubmit
                // (counted) rather than lose the slot.
                let mut submitted = stack.submit(&title, &body, Some(topic)).await;
                for _ in 0..2 {
                    match &submitted {
                        Err(e) if crate::stack::submit_is_retryable(e) => {
                            out.lock().unwrap().resubmitted += 1;
                            submitted = stack.submit(&title, &body, Some(topic)).await;
                        }
                        _ => break,
                    }
                }
                let (cid, rid) = match submitted {
                    Ok(ids) => ids,
                    Err(e) => {
                        let mut o = out.lock().unwrap();
                        o.failed += 1;
                        if o.errors.len() < 5 {
                            o.errors.push(e);
                        }
                        continue;
                    }
                };
                let post_ms = t0.elapsed().as_secs_f64() * 1000.0;
                let done = match signal.wait(stack, &mut session, &cid, &rid).await {
                    Some(d) => Some((d.at, d.ok, d.server_ts, d.recv_ms, false)),
                    None => {
                        let st = stack.poll_content(&cid, Duration::from_secs(30)).await;
                        st.map(|s| (Instant::now(), s == "indexed", f64::NAN, now_ms(), true))
                    }
                };
                let mut o = out.lock().unwrap();
                o.post_ms.push(post_ms);
                match done {
                    Some((at, ok, server_ts, recv_ms, missed)) => {
                        if missed {
                            o.push_missed += 1;
                        }
                        if ok {
                            o.ok += 1;
                            o.latencies.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                            o.runs.push(RunSample { run_id: rid, content_id: cid.clone(), submit_epoch_ms: e0, post_ms, indexed_ts: server_ts, recv_ms });
                        } else {
                            o.failed += 1;
                            if o.errors.len() < 5 {
                                o.errors.push(format!("content {cid} failed"));
                            }
                        }
                        let mut l = last.lock().unwrap();
                        if l.is_none_or(|x| x < at) {
                            *l = Some(at);
                        }
                    }
                    None => {
                        o.failed += 1;
                        if o.errors.len() < 5 {
                            o.errors.push(format!("content {cid} not done in time"));
                        }
                    }
                }
            }
        });
    }
    futures_util::future::join_all(tasks).await;
    let after = stack.procs();
    let an_after = stack::group_procs(stack.analyzer.group.pgid());
    let mut r = std::mem::take(&mut *out.lock().unwrap());
    let (f, l) = (*first.lock().unwrap(), *last.lock().unwrap());
    r.wall = match (f, l) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    r.cpu = cpu_delta(&before, &after);
    r.analyzer_cpu_ms = cpu_delta(&an_before, &an_after).iter().map(|(_, v)| v).sum();
    r.client_cpu_ms = stack::self_cpu_ms() - client_before;
    r
}

pub fn default_docs(c: usize, quick: bool) -> usize {
    let n = match c {
        0..=1 => 30,
        2..=16 => 10 * c,
        _ => 4 * c,
    };
    let n = if quick { n / 3 } else { n };
    n.max(c).max(5)
}

struct Row {
    c: usize,
    docs: usize,
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<f64>,
    post_p50: Vec<f64>,
    failed: usize,
    missed: usize,
    resubmitted: usize,
    worker_cpu: Vec<f64>,
    proxy_cpu: Vec<f64>,
    node_cpu: Vec<f64>,
    analyzer_cpu: Vec<f64>,
    client_cpu: Vec<f64>,
    errors: Vec<String>,
    fds: usize,
}

pub async fn run(opts: &Options) -> Section {
    let stack = Stack::start("pipeline", &[]).await;
    let mut sec = Section::new("Pipeline: submit → indexed");
    let tracker = match Tracker::start(&stack).await {
        Ok(t) => t,
        Err(e) => {
            sec.body = format!("Could not subscribe to the feed: {e}\n");
            stack.stop().await;
            return sec;
        }
    };
    // Warm-up: compile the module, create the shard and feed actors.
    let warm = closed_loop(&stack, DoneSignal::Feed(&tracker), 4, 8, &["warmup"], 0).await;
    let micro_table = match warm.runs.first() {
        Some(r) => micro(&stack, r).await,
        None => String::new(),
    };

    let mut rows = Vec::new();
    let mut samples: Vec<(usize, Vec<RunSample>)> = Vec::new();
    let mut seed = 1000;
    for &c in &opts.concurrency {
        let docs = opts.docs.unwrap_or_else(|| default_docs(c, opts.quick)).max(c);
        let mut row = Row {
            c,
            docs,
            p50: vec![],
            p99: vec![],
            rps: vec![],
            post_p50: vec![],
            failed: 0,
            missed: 0,
            resubmitted: 0,
            worker_cpu: vec![],
            proxy_cpu: vec![],
            node_cpu: vec![],
            analyzer_cpu: vec![],
            client_cpu: vec![],
            errors: vec![],
            fds: 0,
        };
        let mut last_runs = Vec::new();
        for rep in 0..opts.reps.max(1) {
            let r = closed_loop(&stack, DoneSignal::Feed(&tracker), c, docs, &["pipeline"], seed).await;
            seed += docs;
            let s = summarize(&r.latencies);
            eprintln!(
                "[bench] pipeline c={c} rep={rep}: {} ok, {} failed, p50 {} ms, p99 {} ms, {:.1} runs/s",
                r.ok,
                r.failed,
                ms(s.p50),
                ms(s.p99),
                r.runs_per_sec()
            );
            row.p50.push(s.p50);
            row.p99.push(s.p99);
            row.rps.push(r.runs_per_sec());
            row.post_p50.push(summarize(&r.post_ms).p50);
            row.failed += r.failed;
            row.missed += r.push_missed;
            row.resubmitted += r.resubmitted;
            row.worker_cpu.push(r.cpu_per_run("worker"));
            row.proxy_cpu.push(r.cpu_per_run("proxy"));
            row.node_cpu.push(r.cpu_per_run("node"));
            row.analyzer_cpu.push(r.analyzer_cpu_ms / r.ok.max(1) as f64);
            row.client_cpu.push(r.client_cpu_ms / r.ok.max(1) as f64);
            row.errors.extend(r.errors.iter().cloned());
            last_runs = r.runs;
        }
        row.fds = stack.max_fds();
        samples.push((c, last_runs));
        rows.push(row);
    }

    let mut b = String::new();
    let _ = writeln!(
        b,
        "Closed loop: each of N workers submits a 2 KB document (`POST /api/content`), waits for its \
         `content.indexed` on a socket subscribed to `feed`, then submits the next. Latency is client \
         submit → client receipt of `content.indexed`; runs/s is completed runs over the time from the \
         first submit to the last receipt. Each row is the median of {} repetitions on one server \
         (after an 8-document warm-up); the spread column lists every repetition.\n",
        opts.reps.max(1)
    );
    let _ = writeln!(b, "| in flight | docs × reps | p50 (ms) | p99 (ms) | runs/s | runs/s per rep | POST p50 (ms) | failed | POST resent (503 or dropped) | pushes missed |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for r in &rows {
        let _ = writeln!(
            b,
            "| {} | {} × {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.c,
            r.docs,
            r.p50.len(),
            ms(median(&r.p50)),
            ms(median(&r.p99)),
            num(median(&r.rps)),
            spread(&r.rps, num),
            ms(median(&r.post_p50)),
            r.failed,
            r.resubmitted,
            r.missed
        );
    }
    let _ = writeln!(b, "\nCPU time per completed run (ms, median of repetitions), from /proc of each process group:\n");
    let _ = writeln!(b, "| in flight | workerd (Worker) | workerd (wrangler proxy) | node (wrangler) | analyzer | load generator | most fds in one server process after |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let _ = writeln!(
            b,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.c,
            ms(median(&r.worker_cpu)),
            ms(median(&r.proxy_cpu)),
            ms(median(&r.node_cpu)),
            ms(median(&r.analyzer_cpu)),
            ms(median(&r.client_cpu)),
            r.fds
        );
    }
    crate::report::first_errors(&mut b, "First errors", rows.iter().flat_map(|r| r.errors.iter()));

    b.push_str(&micro_table);

    // Where the time goes: the smallest and the largest concurrency.
    let mut picks: Vec<&(usize, Vec<RunSample>)> = Vec::new();
    if let Some(f) = samples.first() {
        picks.push(f);
    }
    if let Some(l) = samples.last() {
        if samples.len() > 1 {
            picks.push(l);
        }
    }
    // (alarm hops, stage durations) at the smallest concurrency, for the goal's reason.
    let mut first_split = None;
    for (c, runs) in picks {
        let take: Vec<&RunSample> = runs.iter().take(if *c == 1 { 30 } else { 40 }).collect();
        let (text, hops, stages) = breakdown(&stack, *c, &take).await;
        first_split.get_or_insert((*c, hops, stages));
        b.push_str(&text);
    }
    // A CPU profile of the Worker's isolate during an extra, unmeasured loop.
    if opts.profile {
        let c = 16.min(opts.concurrency.iter().copied().max().unwrap_or(16)).max(1);
        let docs = if opts.quick { 32 } else { 96 };
        let work = async { closed_loop(&stack, DoneSignal::Feed(&tracker), c, docs, &["profile"], seed).await.ok };
        match crate::profile::profiled(&stack, 25, work).await {
            Ok((runs, report)) => {
                let _ = writeln!(
                    b,
                    "\n#### CPU profile of the Worker isolate ({c} in flight, {runs} runs, V8 sampling every 250 µs)\n\n\
                     All actors of the Worker share this isolate; D1 and the actors' SQLite run natively \
                     in the same workerd process and are not in it (they are in its process CPU above). \
                     The profile adds some overhead, so this loop is not part of the figures above.\n"
                );
                b.push_str(&report);
            }
            Err(e) => {
                let _ = writeln!(b, "\n({e})");
            }
        }
    }
    let metrics = stack.admin_json("/admin/metrics").await;
    b.push_str(&metrics_table(&metrics));

    for r in &rows {
        if r.c == 1 {
            let why = match first_split {
                Some((1, hops, stages)) => format!(
                    "*Where the time goes at 1 in flight*: the POST's round trip through wrangler's proxy takes {} ms (p50), and \
                     the run starts before it returns, so the two overlap; the run's 8 stages take {} ms (sum of means), back to \
                     back in one activation unless one waits, and the hops between them add {} ms",
                    ms(median(&r.post_p50)),
                    ms(stages),
                    ms(hops)
                ),
                _ => "see *Where the time goes at 1 in flight*".into(),
            };
            sec.goals.push(Goal::new("submit → indexed p50 at concurrency 1 (issue 17)", "< 30 ms", median(&r.p50), |v| v < 30.0, "ms").why(why));
        }
        if r.c == 64 {
            let w = median(&r.worker_cpu);
            let why = format!(
                "*CPU profile of the Worker isolate* and the CPU table: every actor runs on the one isolate thread of the Worker's \
                 workerd, which spends {} ms of CPU per run, so it cannot pass {} runs/s on one core; wrangler's proxy, node, \
                 the analyzer and the load generator share the other of this machine's {} cores",
                ms(w),
                num(1000.0 / w),
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
            );
            sec.goals.push(Goal::new("runs completed per second at concurrency 64", "≥ 150 runs/s", median(&r.rps), |v| v >= 150.0, "runs/s").why(why));
        }
    }
    tracker.stop();
    stack.stop().await;

    // The same workload with the state (DO SQLite files, D1) on tmpfs: what
    // the disk syncs of storage commits cost on this machine.
    let shm = std::path::Path::new("/dev/shm");
    if opts.compare_tmpfs && shm.is_dir() && crate::stack::default_base() != shm {
        b.push_str(&tmpfs_rows(opts).await);
    }
    sec.body = b;
    sec
}

async fn tmpfs_rows(opts: &Options) -> String {
    let shm = std::path::Path::new("/dev/shm");
    let mut b = String::new();
    let stack = Stack::start_under("pipeline-tmpfs", &[], shm).await;
    let Ok(tracker) = Tracker::start(&stack).await else {
        stack.stop().await;
        return b;
    };
    let _ = closed_loop(&stack, DoneSignal::Feed(&tracker), 4, 8, &["warmup"], 0).await;
    let mut cs: Vec<usize> = vec![opts.concurrency.iter().copied().min().unwrap_or(1), opts.concurrency.iter().copied().max().unwrap_or(64)];
    cs.dedup();
    let _ = writeln!(
        b,
        "\n#### The same workload with the state dir on tmpfs (/dev/shm)\n\n\
         One repetition per row, on a fresh server whose state dir (every actor's SQLite file and D1) \
         is on tmpfs instead of the disk (`--state-dir /dev/shm` does this for every figure). The \
         difference is what the disk costs: the storage commits' syncs (a write plus fsync costs about {} \
         here on the disk and nothing on tmpfs), and the files local workerd creates for every new \
         Durable Object, two per run (the item and its run; see the session 23 notes at the top).\n",
        fsync_cost()
    );
    let _ = writeln!(b, "| in flight | docs | p50 (ms) | p99 (ms) | runs/s | POST p50 (ms) | Worker CPU per run (ms) |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|");
    let mut seed = 50_000;
    for c in cs {
        let docs = opts.docs.unwrap_or_else(|| default_docs(c, opts.quick)).max(c);
        let r = closed_loop(&stack, DoneSignal::Feed(&tracker), c, docs, &["pipeline"], seed).await;
        seed += docs;
        let s = summarize(&r.latencies);
        eprintln!("[bench] pipeline on tmpfs c={c}: p50 {} ms, {:.1} runs/s", ms(s.p50), r.runs_per_sec());
        let _ = writeln!(
            b,
            "| {c} | {} | {} | {} | {} | {} | {} |",
            r.ok,
            ms(s.p50),
            ms(s.p99),
            num(r.runs_per_sec()),
            ms(summarize(&r.post_ms).p50),
            ms(r.cpu_per_run("worker"))
        );
    }
    tracker.stop();
    stack.stop().await;
    b
}

/// Mean time of a 4 KiB write + fsync in the default state dir.
fn fsync_cost() -> String {
    use std::io::Write;
    let p = crate::stack::default_base().join(format!("actorline-bench-fsync-{}", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&p) else { return "(unknown)".into() };
    let t = Instant::now();
    let n = 50;
    for _ in 0..n {
        if f.write_all(&[0u8; 4096]).is_err() || f.sync_all().is_err() {
            break;
        }
    }
    let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let _ = std::fs::remove_file(&p);
    format!("{} ms", ms(per))
}

/// Median and mean of each segment of a run's life, from GET /api/runs/{id};
/// also the sums of the mean alarm hops and of the mean stage durations.
async fn breakdown(stack: &Stack, c: usize, runs: &[&RunSample]) -> (String, f64, f64) {
    // segment name → samples
    let mut segs: Vec<(String, Vec<f64>)> = Vec::new();
    let mut push = |name: String, v: f64| {
        if !v.is_finite() {
            return;
        }
        match segs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => s.push(v),
            None => segs.push((name, vec![v])),
        }
    };
    let mut retried = 0;
    let mut n = 0;
    for r in runs {
        let Ok((200, v)) = stack.get_json(&format!("/api/runs/{}", r.run_id)).await else { continue };
        n += 1;
        let created = v["created_at"].as_str().and_then(parse_ts).unwrap_or(f64::NAN);
        let stages: Vec<&Value> = v["stages"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        push("POST /api/content (client round trip)".into(), r.post_ms);
        push("client submit → run created (server clock)".into(), created - r.submit_epoch_ms);
        let mut prev_end = created;
        let mut prev_name = "run created".to_string();
        let mut publish_start = f64::NAN;
        for s in &stages {
            let name = s["name"].as_str().unwrap_or("?").to_string();
            if s["attempts"].as_u64().unwrap_or(0) > 1 {
                retried += 1;
            }
            let st = s["started_at"].as_str().and_then(parse_ts).unwrap_or(f64::NAN);
            let fin = s["finished_at"].as_str().and_then(parse_ts).unwrap_or(f64::NAN);
            push(format!("alarm hop: {prev_name} → {name} started"), st - prev_end);
            let dur = s["duration_ms"].as_f64().unwrap_or(fin - st);
            push(format!("stage {name} (duration_ms)"), dur);
            if name == "publish" {
                publish_start = st;
            }
            prev_end = fin;
            prev_name = format!("{name} finished");
        }
        push("publish started → content.indexed ts".into(), r.indexed_ts - publish_start);
        push("content.indexed ts → client receipt (feed push)".into(), r.recv_ms - r.indexed_ts);
        push("total: client submit → client receipt".into(), r.recv_ms - r.submit_epoch_ms);
    }
    let mut b = String::new();
    let _ = writeln!(
        b,
        "\n#### Where the time goes at {c} in flight ({n} runs, from `GET /api/runs/<id>` and event `ts`)\n\n\
         Server times have millisecond resolution and come from `Date.now()` inside workerd, which only \
         advances across I/O, so CPU-only work inside a stage can show as 0 ms in `duration_ms` and \
         appear in the following hop instead.\n"
    );
    let _ = writeln!(b, "| segment | p50 (ms) | mean (ms) | p99 (ms) |");
    let _ = writeln!(b, "|---|---:|---:|---:|");
    let mut hop_total = 0.0;
    let mut stage_total = 0.0;
    for (name, v) in &segs {
        let s = summarize(v);
        if name.starts_with("alarm hop") {
            hop_total += s.mean;
        }
        if name.starts_with("stage ") {
            stage_total += s.mean;
        }
        let _ = writeln!(b, "| {name} | {} | {} | {} |", ms(s.p50), ms(s.mean), ms(s.p99));
    }
    let _ = writeln!(b, "| *sum of alarm hops (mean)* | | {} | |", ms(hop_total));
    let _ = writeln!(b, "| *sum of stage durations (mean)* | | {} | |", ms(stage_total));
    if retried > 0 {
        let _ = writeln!(b, "\n{retried} stage records in this sample needed more than one attempt.");
    }
    (b, hop_total, stage_total)
}

pub fn metrics_table(m: &Value) -> String {
    let mut b = String::new();
    let Some(stages) = m["stage_latency"].as_object() else { return b };
    let _ = writeln!(b, "\n#### `GET /admin/metrics` after the run (stage durations recorded in D1)\n");
    let _ = writeln!(b, "| stage | count | p50 (ms) | p95 (ms) | p99 (ms) |");
    let _ = writeln!(b, "|---|---:|---:|---:|---:|");
    for (name, s) in stages {
        let f = |k: &str| s[k].as_f64().map(ms).unwrap_or_else(|| "–".into());
        let _ = writeln!(b, "| {name} | {} | {} | {} | {} |", s["count"], f("p50_ms"), f("p95_ms"), f("p99_ms"));
    }
    let _ = writeln!(
        b,
        "\nRuns: {} completed, {} failed, {} in flight; {} retries.",
        m["runs"]["completed"], m["runs"]["failed"], m["runs"]["in_flight"], m["retries"]
    );
    b
}

/// Sequential single requests on the idle server: what one HTTP round trip
/// through wrangler's proxy, one actor call, one D1 read or write cost here.
async fn micro(stack: &Stack, sample: &RunSample) -> String {
    const N: usize = 40;
    let probes: Vec<(&str, String, bool)> = vec![
        ("`GET /healthz`: Worker only, no actor, no D1", "/healthz".into(), false),
        ("`GET /api/runs/{id}`: + one PipelineActor call (SQLite read)", format!("/api/runs/{}", sample.run_id), false),
        ("`GET /api/content/{id}`: + one ContentActor call", format!("/api/content/{}", sample.content_id), false),
        ("`GET /api/content?limit=1`: + one D1 query", "/api/content?limit=1".into(), false),
        ("`POST /api/sessions`: + one SessionActor call + one D1 write", "/api/sessions".into(), true),
    ];
    let mut b = String::new();
    let _ = writeln!(
        b,
        "\n#### Single requests on the idle server ({N} sequential each, after 5 warm-ups)\n\n\
         The floor under every figure above: one HTTP round trip from this client through wrangler's \
         proxy into the Worker, and what one actor call or one D1 statement adds.\n"
    );
    let _ = writeln!(b, "| request | p50 (ms) | p99 (ms) |\n|---|---:|---:|");
    let direct = crate::profile::direct_base(stack).await;
    let mut probes = probes.into_iter().map(|(n, p, post)| (n.to_string(), stack.url(&p), post)).collect::<Vec<_>>();
    if let Some(d) = &direct {
        probes.insert(1, ("`GET /healthz` sent straight to the runtime workerd, skipping wrangler's proxy".to_string(), format!("{d}/healthz"), false));
    }
    for (name, url, post) in probes {
        let mut lat = Vec::new();
        for i in 0..N + 5 {
            let t = Instant::now();
            let req = if post { stack.http.post(&url).json(&serde_json::json!({})) } else { stack.http.get(&url) };
            let ok = match req.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok && i >= 5 {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let s = summarize(&lat);
        let _ = writeln!(b, "| {name} | {} | {} |", ms(s.p50), ms(s.p99));
    }
    b
}
