//! `peer`: Actorline against the Agents SDK peer (bench/peer-agents) in the
//! same workerd, same bench run, same closed loop of 2 KB documents. Both wait
//! for a run-level done event (`run.completed`), so the comparison does not
//! depend on Actorline's feed; each side gets a fresh server and its own
//! analyzer, one after the other.

use std::fmt::Write as _;

use crate::pipeline::{closed_loop, default_docs, DoneSignal, LoopResult};
use crate::report::{Goal, Section};
use crate::stack::{rss_by_process, Proc, Stack};
use crate::stats::{bytes, median, ms, num, ratio, summarize};

pub struct Options {
    pub concurrency: Vec<usize>,
    pub docs: Option<usize>,
    pub reps: usize,
    pub quick: bool,
    /// Runs the peer has made in all before its memory is read again (the
    /// search section reads Actorline's after as many documents); 0 skips it.
    pub memory_runs: usize,
    /// A CPU profile of Actorline's isolate at the highest concurrency, in an
    /// extra loop after the measured ones.
    pub profile: bool,
    /// Actorline's clients follow each run on their session socket
    /// ([`DoneSignal::RunTopic`]) instead of the run's own socket.
    pub on_session: bool,
}

/// One system's figures at one concurrency (a value per repetition).
#[derive(Default)]
struct Level {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    worker_cpu: Vec<f64>,
    server_cpu: Vec<f64>,
    analyzer_cpu: Vec<f64>,
    failed: usize,
    /// The first few failure reasons, for the note under the table.
    errors: Vec<String>,
}

impl Level {
    fn add(&mut self, r: &LoopResult) {
        let s = summarize(&r.latencies);
        self.rps.push(r.runs_per_sec());
        self.p50.push(s.p50);
        self.p99.push(s.p99);
        self.worker_cpu.push(r.cpu_per_run("worker"));
        self.server_cpu.push(["worker", "proxy", "node"].iter().map(|k| r.cpu_per_run(k)).sum());
        self.analyzer_cpu.push(r.analyzer_cpu_ms / r.ok.max(1) as f64);
        self.failed += r.failed;
        self.errors.extend(r.errors.iter().take(5usize.saturating_sub(self.errors.len())).cloned());
    }
}

/// One system's run: a level per concurrency, and its memory after them.
struct System {
    levels: Vec<Level>,
    runs: usize,
    rss_start: Vec<Proc>,
    rss_end: Vec<Proc>,
}

async fn measure(stack: &Stack, signal: DoneSignal<'_>, name: &str, opts: &Options) -> System {
    let rss_start = stack.procs();
    let warm = closed_loop(stack, signal, 4, 8, &["warmup"], 0).await;
    let mut runs = warm.ok;
    let mut seed = 1000;
    let mut levels = Vec::new();
    for &c in &opts.concurrency {
        let docs = opts.docs.unwrap_or_else(|| default_docs(c, opts.quick)).max(c);
        let mut level = Level::default();
        for rep in 0..opts.reps.max(1) {
            let r = closed_loop(stack, signal, c, docs, &["compare"], seed).await;
            seed += docs;
            runs += r.ok;
            eprintln!(
                "[bench] {name} c={c} rep={rep}: {} ok, {} failed, p50 {} ms, {:.1} runs/s",
                r.ok,
                r.failed,
                ms(summarize(&r.latencies).p50),
                r.runs_per_sec()
            );
            level.add(&r);
        }
        levels.push(level);
    }
    System { levels, runs, rss_start, rss_end: stack.procs() }
}

fn worker_rss(procs: &[Proc]) -> u64 {
    procs.iter().filter(|p| p.role == "worker").map(|p| p.rss_kib * 1024).sum()
}

pub async fn run(opts: &Options) -> Section {
    let mut sec = Section::new("Actorline and the Agents SDK peer: pipeline");
    let stack = Stack::start("compare-actorline", &[]).await;
    let follow = if opts.on_session { DoneSignal::RunTopic } else { DoneSignal::RunSocket };
    let ours = measure(&stack, follow, "actorline", opts).await;
    let top = opts.concurrency.iter().copied().max().unwrap_or(1);
    let profile = if opts.profile {
        let docs = opts.docs.unwrap_or_else(|| default_docs(top, opts.quick)).max(top);
        let work = async { closed_loop(&stack, follow, top, docs, &["profile"], 900_000).await.ok };
        Some(crate::profile::profiled(&stack, 25, work).await)
    } else {
        None
    };
    stack.stop().await;
    let peer = Stack::start_peer("compare-peer").await;
    let theirs = measure(&peer, DoneSignal::AgentSocket, "peer", opts).await;
    let peer_memory = memory_at(&peer, theirs.runs, opts.memory_runs).await;
    peer.stop().await;

    let mut b = String::new();
    let _ = writeln!(
        b,
        "The peer is the same 8-stage pipeline on the Agents SDK (bench/peer-agents, `agents` 0.11.8, one Agent per run, \
         one `this.schedule` alarm per stage), served by the same wrangler and workerd, each with its own analyzer. The \
         same closed loop as above: N workers each submit a 2 KB document and wait for its run to end before the next; \
         {} repetition(s) per row (the median shown), after an 8-document warm-up, on a fresh server per system. Both wait for \
         a run-level `run.completed`: Actorline's as {}, the peer's as {}. (The pipeline section above waits for \
         `content.indexed` on the feed instead; the two events are emitted in the same publish step.) The peer keeps \
         vectors in each run's own SQLite and makes one D1 write per run; Actorline also feeds the search shards, the \
         registry, the feed and the sessions, so it does more per run.\n",
        opts.reps.max(1),
        follow.describe(),
        DoneSignal::AgentSocket.describe()
    );
    let _ = writeln!(b, "| in flight | Actorline runs/s | peer runs/s | Actorline ÷ peer | Actorline p50 (ms) | peer p50 (ms) | peer ÷ Actorline | Actorline p99 (ms) | peer p99 (ms) | peer ÷ Actorline | failed (A / peer) |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &c) in opts.concurrency.iter().enumerate() {
        let (a, p) = (&ours.levels[i], &theirs.levels[i]);
        let f = |v: &Vec<f64>| median(v);
        let _ = writeln!(
            b,
            "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            num(f(&a.rps)),
            num(f(&p.rps)),
            ratio(f(&a.rps), f(&p.rps)),
            ms(f(&a.p50)),
            ms(f(&p.p50)),
            ratio(f(&p.p50), f(&a.p50)),
            ms(f(&a.p99)),
            ms(f(&p.p99)),
            ratio(f(&p.p99), f(&a.p99)),
            a.failed,
            p.failed
        );
    }
    for (name, sys) in [("Actorline", &ours), ("peer", &theirs)] {
        crate::report::first_errors(&mut b, &format!("First failures ({name})"), sys.levels.iter().flat_map(|l| &l.errors));
    }
    let _ = writeln!(b, "\nCPU time per completed run (ms, median of repetitions), from /proc of each process group; \"server\" is the Worker's workerd + wrangler's proxy workerd + node:\n");
    let _ = writeln!(b, "| in flight | Actorline Worker workerd | peer Worker workerd | peer ÷ Actorline | Actorline server | peer server | Actorline analyzer | peer analyzer |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &c) in opts.concurrency.iter().enumerate() {
        let (a, p) = (&ours.levels[i], &theirs.levels[i]);
        let _ = writeln!(
            b,
            "| {c} | {} | {} | {} | {} | {} | {} | {} |",
            ms(median(&a.worker_cpu)),
            ms(median(&p.worker_cpu)),
            ratio(median(&p.worker_cpu), median(&a.worker_cpu)),
            ms(median(&a.server_cpu)),
            ms(median(&p.server_cpu)),
            ms(median(&a.analyzer_cpu)),
            ms(median(&p.analyzer_cpu))
        );
    }
    match &profile {
        Some(Ok((runs, report))) => {
            let _ = writeln!(
                b,
                "\n#### CPU profile of Actorline's Worker isolate on this path ({top} in flight, {runs} runs, V8 sampling every 250 µs)\n\n\
                 An extra loop after the measured ones, each run followed on `run:<id>` as above; the profile adds some overhead.\n"
            );
            b.push_str(report);
        }
        Some(Err(e)) => {
            let _ = writeln!(b, "\n({e})");
        }
        None => {}
    }
    let _ = writeln!(b, "\nMemory (RSS per process of the server's group) at start and after every run above; the peer keeps one Agent per run, Actorline a ContentActor and a PipelineActor per run:\n");
    let _ = writeln!(b, "| system | runs | at start | after the runs | Worker workerd growth per run |\n|---|---:|---|---|---:|");
    for (name, s) in [("Actorline", &ours), ("peer", &theirs)] {
        let grown = worker_rss(&s.rss_end).saturating_sub(worker_rss(&s.rss_start));
        let _ = writeln!(
            b,
            "| {name} | {} | {} | {} | {} |",
            s.runs,
            rss_by_process(&s.rss_start),
            rss_by_process(&s.rss_end),
            bytes(grown / s.runs.max(1) as u64)
        );
    }

    if let Some(m) = peer_memory {
        let _ = writeln!(
            b,
            "\nThe peer after {} runs in all (one Agent each; the rest at 64 in flight), for workload (e): just after the last run, \
             and after {} s idle. Actorline's figure after as many documents is in the search section's *Memory after N content \
             actors* table.\n\n| system | runs | after the last run | idle |\n|---|---:|---|---|\n| peer | {} | {} | {} |",
            m.runs,
            MEMORY_IDLE.as_secs(),
            m.runs,
            rss_by_process(&m.now),
            rss_by_process(&m.idle)
        );
        if let Some(e) = &m.error {
            let _ = writeln!(b, "\nFirst failure while making them: {}", crate::report::quoted(e));
        }
    }

    if let Some(i) = opts.concurrency.iter().position(|&c| c == 64) {
        let (a, p) = (&ours.levels[i], &theirs.levels[i]);
        let profiled = if matches!(profile, Some(Ok(_))) {
            "*CPU profile of Actorline's Worker isolate on this path* below its CPU table"
        } else {
            "*CPU profile of the Worker isolate* in the pipeline section"
        };
        let why = format!(
            "the CPU table here: Actorline's Worker workerd spends {} ms per run against the peer's {}, on the same single isolate \
             thread; see {profiled} for where it goes",
            ms(median(&a.worker_cpu)),
            ms(median(&p.worker_cpu))
        );
        let v = median(&a.rps) / median(&p.rps);
        sec.goals.push(Goal::new("runs/s at concurrency 64, Actorline ÷ Agents SDK peer", "≥ 2×", v, |v| v >= 2.0, "×").why(why.clone()));
        let cpu = median(&a.worker_cpu) / median(&p.worker_cpu);
        sec.goals.push(Goal::new("Worker CPU per run at concurrency 64, Actorline ÷ peer (issue 17)", "≤ 0.5×", cpu, |v| v <= 0.5, "×").why(why));
    }
    sec.body = b;
    sec
}

/// Idle time before the second memory reading, past workerd's eviction of idle actors.
const MEMORY_IDLE: std::time::Duration = std::time::Duration::from_secs(15);

struct Memory {
    runs: usize,
    now: Vec<Proc>,
    idle: Vec<Proc>,
    error: Option<String>,
}

/// Tops the peer up to `target` runs in all, at 64 in flight, and reads its
/// memory then and after an idle spell. `None` when `target` is not above
/// what already ran.
async fn memory_at(stack: &Stack, done: usize, target: usize) -> Option<Memory> {
    if target <= done {
        return None;
    }
    let (mut runs, mut error) = (done, None);
    while runs < target {
        let batch = (target - runs).min(1000);
        let r = closed_loop(stack, DoneSignal::AgentSocket, 64, batch, &["memory"], 100_000 + runs).await;
        runs += r.ok;
        error = error.or_else(|| r.errors.first().cloned());
        eprintln!("[bench] peer memory: {runs} of {target} runs");
        if r.ok == 0 {
            break;
        }
    }
    let now = stack.procs();
    tokio::time::sleep(MEMORY_IDLE).await;
    Some(Memory { runs, now, idle: stack.procs(), error })
}
