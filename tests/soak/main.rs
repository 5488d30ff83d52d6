//! The reliability suite (`make soak`; `scripts/test.sh` runs it small).
//!
//! - R1 `crash`: runs submitted over time while workerd is SIGKILLed and
//!   restarted on the same state; all complete, no stage completes twice, and
//!   a WebSocket client that resumes with `after` sees every event exactly once.
//! - R2 `faults`: 30% injected faults on embed, index and analyze; all runs
//!   complete within their stages' retry policies.
//! - R3 `bad input`: the generated request and frame sweeps; no 5xx, no panic.
//! - R4 `auth`: every admin route and WebSocket upgrade with bad credentials
//!   is refused.
//! - R5 `races`: parallel PUTs, cancels, retries and DELETEs on the same
//!   items under catalog and spawn faults; the integrity invariants hold.
//!
//! Size: `SOAK_SCALE=full` for the sizes, else the small CI size.
//! `SOAK_SEED` replays a run (the seed is printed). `SOAK_REPORT=<file>`
//! writes the report's marked block into that file, replacing an older one.
//! Each scenario starts its own server; the harness tears them down.

#[path = "../support/mod.rs"]
mod support;

mod crash;
mod faults;
mod input;
mod journal;
mod races;
mod report;

use std::time::Instant;

use report::Row;

pub struct Scale {
    pub name: &'static str,
    pub crash_runs: usize,
    pub kills: usize,
    pub fault_runs: usize,
    pub requests: usize,
    pub frames: usize,
}

impl Scale {
    pub fn from_env() -> Scale {
        match std::env::var("SOAK_SCALE").as_deref() {
            Ok("full") => Scale { name: "full", crash_runs: 100, kills: 5, fault_runs: 100, requests: 3000, frames: 200 },
            _ => Scale { name: "small", crash_runs: 20, kills: 2, fault_runs: 20, requests: 300, frames: 40 },
        }
    }
}

/// HTTP requests and 5xx answers counted by the harness since `start`.
pub struct Counters {
    requests: usize,
    server_errors: usize,
    started: Instant,
}

impl Counters {
    pub fn start() -> Counters {
        use std::sync::atomic::Ordering::Relaxed;
        Counters { requests: support::REQUESTS.load(Relaxed), server_errors: support::SERVER_ERRORS.load(Relaxed), started: Instant::now() }
    }
    /// A scenario's row with the requests, 5xx and wall time since `start`,
    /// and any panic in `server`'s log added to `failures`.
    pub fn row(&self, scenario: &'static str, server: &support::Server, mut failures: Vec<String>) -> Row {
        use std::sync::atomic::Ordering::Relaxed;
        // A wasm panic traps the isolate; these are the marks it leaves in the log.
        let log = server.log_text();
        let panics = log.lines().filter(|l| l.contains("panicked") || l.contains("RuntimeError: unreachable"));
        failures.extend(panics.map(|l| format!("log: {l}")));
        Row {
            scenario,
            requests: support::REQUESTS.load(Relaxed) - self.requests,
            server_errors: support::SERVER_ERRORS.load(Relaxed) - self.server_errors,
            wall: self.started.elapsed(),
            failures,
            ..Row::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let scale = Scale::from_env();
    let seed = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(1)
    });
    eprintln!("[soak] scale {} seed {seed} (SOAK_SEED={seed} replays the kill schedule and the sweeps)", scale.name);
    let started = chrono::Utc::now();
    let mut rows: Vec<Row> = Vec::new();
    let log = |r: &Row| eprintln!("[soak] {}: {} in {:.0} s, {} failures", r.scenario, r.size, r.wall.as_secs_f64(), r.failures.len());
    rows.push(crash::run(&scale, seed).await);
    log(&rows[0]);
    rows.push(faults::run(&scale).await);
    log(&rows[1]);
    rows.extend(input::run(&scale, seed).await);
    rows[2..].iter().for_each(log);
    rows.push(races::run(&scale, seed).await);
    rows.last().into_iter().for_each(log);
    let text = report::markdown(&scale, seed, &started, &rows);
    println!("\n{text}");
    if let Ok(path) = std::env::var("SOAK_REPORT") {
        report::write_block(std::path::Path::new(&path), &text).expect("writing SOAK_REPORT");
        eprintln!("[soak] wrote {path}");
    }
    let failures: Vec<&String> = rows.iter().flat_map(|r| &r.failures).collect();
    assert!(failures.is_empty(), "{} failures:\n{failures:#?}", failures.len());
}
