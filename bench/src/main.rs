//! `actorline-bench`: a native load generator for Actorline. Each subcommand
//! starts its own `wrangler dev --local` (and the analyzer) over a fresh temp
//! state dir with the end-to-end harness, runs a bounded workload on
//! loopback, stops both process groups, and prints a Markdown section.
//!
//! ```text
//! actorline-bench pipeline  [--concurrency 1,16,64] [--docs N] [--reps 3]
//! actorline-bench events    [--sockets 1,100,1000] [--rate 4] [--seconds 10] [--max-sockets [1000,2000,5000,10000]] [--peer]
//! actorline-bench search    [--docs 1000,10000] [--concurrency 64]
//! actorline-bench coldstart [--no-peer]
//! actorline-bench peer      [--concurrency 1,16,64] [--docs N]
//! actorline-bench soak      [--minutes 10] [--rate 20]
//! actorline-bench auth      [--requests 600] [--concurrency 1,16]
//! actorline-bench all       [--search-docs 1000,10000] [--no-max-sockets] [--no-peer]
//! common: [--quick] [--reps N] [--out docs/benchmarks.md]
//! ```

#[path = "../../tests/support/mod.rs"]
mod support;

mod auth;
mod coldstart;
mod compare;
mod corpus;
mod events;
mod pipeline;
mod profile;
mod report;
mod search;
mod soak;
mod stack;
mod stats;
mod tracker;

use std::path::PathBuf;
use std::time::Instant;

use report::Section;

const USAGE: &str = "usage: actorline-bench <pipeline|events|search|coldstart|peer|soak|auth|all|profile> [options]

  pipeline   --concurrency 1,16,64   documents in flight (one row each)
             --docs N                documents per repetition (default: by concurrency)
             --no-profile            skip the CPU profile of the Worker isolate
             --no-tmpfs              skip the rerun with the state dir on /dev/shm
  events     --sockets 1,100,1000    subscribed sockets (one row each)
             --rate R --seconds S    runs per second and window length (default 4, 10)
             --max-sockets [STEPS]   also probe idle sockets (default steps 1000,2000,5000,10000)
             --peer                  then the same windows on the Agents SDK peer's Feed Agent, side by side
  search     --docs 1000,10000       index sizes, grown on one server
             --concurrency N         documents in flight while indexing (default 64)
             --state DIR             keep the server's state in DIR and reuse what an earlier run indexed there
  coldstart                          bundle size and spawn-to-first-answer times, also of the peer
             --no-peer               Actorline only
  peer       --concurrency 1,16,64   Actorline and the Agents SDK peer (bench/peer-agents) side by side,
             --docs N                both waiting for run.completed
             --no-profile            skip the CPU profile of Actorline's isolate at the highest concurrency
             --memory-runs N         then the peer's memory after N runs in all (default 10000; 0 skips)
             --follow-on-session     Actorline's clients follow each run on a session socket, not the run's own
  soak       --minutes M --rate R    steady load (default 10 min at 20 runs/s)
  profile    --file F [--runs N]     the report of a profile BENCH_PROFILE_DIR kept
  auth       --requests N            requests per pass and principal kind (default 600; 150 with --quick)
             --concurrency 1,16      requests in flight (one row each)
                                     latency and Worker CPU per request of each kind of principal against
                                     anonymous, and of the rate limit's actor call; waits up to 10 min for
                                     a load average below 1.5 first (not with --quick)
  all        coldstart, pipeline, peer (+ its memory after 10k runs: about 10 min), events (+ max-sockets,
             + the peer's), search (10k documents: about 17 min), auth
             --search-docs LIST (default 1000,10000; 300 with --quick)  --no-max-sockets  --no-peer

  common     --quick                 smaller sizes, for a quick look
             --reps N                repetitions per figure (default 3; median reported)
             --out FILE              write the Markdown into FILE (between its bench markers)
             --block NAME            use markers NAME:begin/NAME:end instead (default bench), so
                                     several invocations can each own a block of one file
             --state-dir DIR         where servers keep state (default: the temp dir; try /dev/shm)
             --devtools-network      keep wrangler's DevTools Network events on (off by default:
                                     dev-only overhead, and wrangler 4.86 leaks a socket per event)
  env        BENCH_VARS=K=V,K=V      settings for every Actorline server started (A/B without a rebuild)";

struct Args {
    cmd: String,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1).peekable();
        let cmd = it.next().ok_or_else(|| USAGE.to_string())?;
        let mut flags = Vec::new();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else { return Err(format!("unexpected argument {a:?}\n\n{USAGE}")) };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next(),
                _ => None,
            };
            flags.push((name.to_string(), value));
        }
        Ok(Args { cmd, flags })
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn list(&self, name: &str, default: &[usize]) -> Result<Vec<usize>, String> {
        match self.value(name) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|x| x.trim().replace('_', "").parse::<usize>().map_err(|_| format!("--{name}: {x:?} is not a number")))
                .collect(),
        }
    }

    fn number(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: {v:?} is not a number")),
        }
    }
}

fn pipeline_opts(a: &Args, quick: bool, reps: usize) -> Result<pipeline::Options, String> {
    Ok(pipeline::Options {
        concurrency: a.list("concurrency", &[1, 16, 64])?,
        docs: a.value("docs").map(|v| v.parse().map_err(|_| format!("--docs: {v:?}"))).transpose()?,
        reps,
        quick,
        profile: !a.has("no-profile"),
        compare_tmpfs: !a.has("no-tmpfs"),
    })
}

fn compare_opts(a: &Args, quick: bool, reps: usize) -> Result<compare::Options, String> {
    let p = pipeline_opts(a, quick, reps)?;
    let memory_runs = a.number("memory-runs", if quick { 0.0 } else { 10_000.0 })? as usize;
    let on_session = a.has("follow-on-session");
    Ok(compare::Options { concurrency: p.concurrency, docs: p.docs, reps, quick, memory_runs, profile: p.profile, on_session })
}

fn events_opts(a: &Args, quick: bool, reps: usize, probe_default: bool, peer: bool) -> Result<events::Options, String> {
    let steps: &[usize] = if quick { &[1000, 2000] } else { &[1000, 2000, 5000, 10000] };
    let max_sockets = if a.has("no-max-sockets") {
        None
    } else if a.has("max-sockets") {
        Some(a.list("max-sockets", steps)?)
    } else if probe_default {
        Some(steps.to_vec())
    } else {
        None
    };
    Ok(events::Options {
        sockets: a.list("sockets", &[1, 100, 1000])?,
        rate: a.number("rate", 4.0)?,
        seconds: a.number("seconds", if quick { 4.0 } else { 10.0 })?,
        reps,
        max_sockets,
        profile: !a.has("no-profile"),
        peer,
    })
}

fn auth_opts(a: &Args, quick: bool, reps: usize) -> Result<auth::Options, String> {
    Ok(auth::Options {
        requests: a.number("requests", if quick { 150.0 } else { 600.0 })?.max(1.0) as usize,
        // Under `all`, --concurrency is the pipeline's.
        concurrency: if a.cmd == "auth" { a.list("concurrency", &[1, 16])? } else { vec![1, 16] },
        reps,
        wait_quiet: !quick,
    })
}

async fn timed<F: std::future::Future<Output = Section>>(f: F) -> Section {
    timed_with(async { (f.await, ()) }).await.0
}

/// As [`timed`], for a section that comes with figures for a later one.
async fn timed_with<T, F: std::future::Future<Output = (Section, T)>>(f: F) -> (Section, T) {
    let t = Instant::now();
    let (mut s, extra) = f.await;
    s.seconds = t.elapsed().as_secs_f64();
    eprintln!("\n{}", s.markdown());
    (s, extra)
}

/// The events section, then (with `o.peer`) the peer's beside Actorline's.
async fn events_sections(o: &events::Options) -> Vec<Section> {
    let (s, ours) = timed_with(events::run(o)).await;
    let mut out = vec![s];
    if o.peer {
        out.push(timed(events::peer(o, &ours)).await);
    }
    out
}

async fn main_inner() -> Result<(), String> {
    let a = Args::parse()?;
    if a.cmd == "-h" || a.cmd == "--help" || a.cmd == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    if a.cmd == "profile" {
        // A kept profile (BENCH_PROFILE_DIR) read again, e.g. after the report changed.
        let path = a.value("file").ok_or("profile --file F.cpuprofile")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let profile: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        println!("{}", profile::report(&profile, a.number("runs", 0.0)? as usize, 25));
        return Ok(());
    }
    let quick = a.has("quick");
    stack::DEVTOOLS_NETWORK.store(a.has("devtools-network"), std::sync::atomic::Ordering::Relaxed);
    let reps = a.number("reps", 3.0)?.max(1.0) as usize;
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let load_at_start = report::load_average();
    stack::raise_nofile();
    let mut sections = Vec::new();
    match a.cmd.as_str() {
        "pipeline" => sections.push(timed(pipeline::run(&pipeline_opts(&a, quick, reps)?)).await),
        "events" => sections.extend(events_sections(&events_opts(&a, quick, reps, false, a.has("peer"))?).await),
        "search" => {
            let o = search::Options {
                docs: a.list("docs", if quick { &[300] } else { &[1000, 10000] })?,
                reps,
                concurrency: a.number("concurrency", 64.0)? as usize,
                state: a.value("state").map(std::path::PathBuf::from),
            };
            sections.push(timed(search::run(&o)).await)
        }
        "coldstart" => sections.push(timed(coldstart::run(if quick { 1 } else { reps }, !a.has("no-peer"))).await),
        "peer" => sections.push(timed(compare::run(&compare_opts(&a, quick, reps)?)).await),
        "soak" => {
            let o = soak::Options { minutes: a.number("minutes", 10.0)? as u64, rate: a.number("rate", 20.0)? };
            sections.push(timed(soak::run(&o)).await)
        }
        "auth" => sections.push(timed(auth::run(&auth_opts(&a, quick, reps)?)).await),
        "all" => {
            sections.push(timed(coldstart::run(if quick { 1 } else { reps }, !a.has("no-peer"))).await);
            sections.push(timed(pipeline::run(&pipeline_opts(&a, quick, reps)?)).await);
            if !a.has("no-peer") {
                sections.push(timed(compare::run(&compare_opts(&a, quick, reps)?)).await);
            }
            sections.extend(events_sections(&events_opts(&a, quick, reps, true, !a.has("no-peer"))?).await);
            let o = search::Options {
                docs: a.list("search-docs", if quick { &[300] } else { &[1000, 10000] })?,
                reps,
                concurrency: 64,
                state: None,
            };
            sections.push(timed(search::run(&o)).await);
            sections.push(timed(auth::run(&auth_opts(&a, quick, reps)?)).await);
        }
        other => return Err(format!("unknown subcommand {other:?}\n\n{USAGE}")),
    }
    let command = format!("actorline-bench {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let name = a.value("block").unwrap_or("bench");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("--block: letters, digits and '-' only".into());
    }
    let block = report::block(name, &command, &started, &load_at_start, &sections);
    match a.value("out") {
        Some(path) => {
            let p = PathBuf::from(path);
            report::write(&p, name, &block).map_err(|e| format!("writing {}: {e}", p.display()))?;
            eprintln!("[bench] wrote {}", p.display());
        }
        None => println!("{block}"),
    }
    Ok(())
}

fn main() {
    // The harness finds wrangler, the analyzer and .dev.vars under its root:
    // a snapshot of the repo's build, so concurrent rebuilds cannot reload the
    // server mid-benchmark (see `stack::snapshot_root`).
    let repo = match std::env::var_os("ACTORLINE_ROOT") {
        Some(r) => PathBuf::from(r),
        None => {
            let r = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            r.canonicalize().unwrap_or(r)
        }
    };
    REPO.set(repo.clone()).ok();
    std::env::set_var("ACTORLINE_ROOT", &repo);
    let help = matches!(std::env::args().nth(1).as_deref(), None | Some("-h" | "--help" | "help"));
    if !help {
        // `--state-dir DIR` puts the snapshot, and with it every server's state
        // (DO SQLite files, D1), under DIR, e.g. /dev/shm to take disk syncs out.
        let args: Vec<String> = std::env::args().collect();
        let base = args
            .iter()
            .position(|a| a == "--state-dir")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        if let Err(e) = stack::use_base(&base) {
            eprintln!("actorline-bench: {e}");
            std::process::exit(2);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(main_inner());
    drop(rt);
    stack::remove_snapshots();
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

/// The repository the benchmark was started from (not a snapshot).
pub static REPO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn repo() -> PathBuf {
    REPO.get().cloned().unwrap_or_else(support::root)
}
