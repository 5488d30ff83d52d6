//! One benchmark environment: the analyzer and `wrangler dev` over a fresh
//! temp state dir, started exactly as the end-to-end harness does (it is the
//! harness: `crate::support`), plus a pooled HTTP client and process gauges
//! (RSS, CPU time, open files) read from /proc for the server's process group.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{self, Analyzer, Server, ServerOptions};

pub struct Stack {
    pub server: Server,
    pub analyzer: Analyzer,
    pub dir: PathBuf,
    /// Extra `--var`s, kept for a restart.
    vars: Vec<(String, String)>,
    pub http: reqwest::Client,
    /// When `Server::start` was called and returned (the `Ready on` line).
    pub start_called: Instant,
    pub ready_at: Instant,
}

/// A pooled client: the harness's `http()` builds one per request, which would
/// measure TCP handshakes instead of the server. With a key, every request
/// carries it (Actorline answers writes and private reads only to a principal).
pub fn client(key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(v) = key.and_then(|k| reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).ok()) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .build()
        .expect("http client")
}

/// Whether new servers keep wrangler's DevTools `Network` events (see
/// `profile::set_network`); off unless `--devtools-network` is given.
pub static DEVTOOLS_NETWORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Snapshots made so far: (base dir, snapshot root); the first is the default.
static SNAPSHOTS: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Makes `base` the default place for snapshots and state (snapshotting now,
/// so a missing build is reported before anything starts).
pub fn use_base(base: &std::path::Path) -> Result<PathBuf, String> {
    let root = snapshot_under(base)?;
    let mut v = SNAPSHOTS.lock().unwrap();
    if let Some(i) = v.iter().position(|(b, _)| b == base) {
        let e = v.remove(i);
        v.insert(0, e);
    }
    Ok(root)
}

/// The snapshot root under `base`, made on first use.
pub fn snapshot_under(base: &std::path::Path) -> Result<PathBuf, String> {
    let mut v = SNAPSHOTS.lock().unwrap();
    if let Some((_, s)) = v.iter().find(|(b, _)| b == base) {
        return Ok(s.clone());
    }
    let s = snapshot_root(&crate::repo(), base)?;
    v.push((base.to_path_buf(), s.clone()));
    Ok(s)
}

/// `BENCH_VARS="K=V,K=V"`: settings for every Actorline server this run
/// starts, so an A/B of a setting (`RUN_BUDGET_MS`, say) needs no rebuild.
fn setting_overrides() -> Vec<(String, String)> {
    let list = std::env::var("BENCH_VARS").unwrap_or_default();
    list.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

pub fn default_base() -> PathBuf {
    SNAPSHOTS.lock().unwrap().first().map(|(b, _)| b.clone()).unwrap_or_else(std::env::temp_dir)
}

pub fn remove_snapshots() {
    for (_, s) in SNAPSHOTS.lock().unwrap().drain(..) {
        let _ = std::fs::remove_dir_all(s);
    }
}

impl Stack {
    /// Starts the analyzer and wrangler dev with the shared e2e configuration,
    /// state under the default base dir.
    pub async fn start(tag: &str, extra_vars: &[(&str, &str)]) -> Stack {
        Stack::start_under(tag, extra_vars, &default_base()).await
    }

    /// As [`Stack::start`], with the snapshot and state under `base`.
    pub async fn start_under(tag: &str, extra_vars: &[(&str, &str)], base: &std::path::Path) -> Stack {
        let network = DEVTOOLS_NETWORK.load(std::sync::atomic::Ordering::Relaxed);
        Stack::start_with(tag, extra_vars, base, network).await
    }

    /// As [`Stack::start_under`], choosing whether DevTools `Network` events stay on.
    pub async fn start_with(tag: &str, extra_vars: &[(&str, &str)], base: &std::path::Path, devtools_network: bool) -> Stack {
        Stack::spawn(tag, extra_vars, base, None, devtools_network).await
    }

    /// As [`Stack::start`], on a state dir the caller keeps: it outlives
    /// [`Stack::stop`], so a later run can reuse what this one built.
    pub async fn start_on_state(tag: &str, extra_vars: &[(&str, &str)], state: PathBuf) -> Stack {
        let network = DEVTOOLS_NETWORK.load(std::sync::atomic::Ordering::Relaxed);
        Stack::spawn(tag, extra_vars, &default_base(), Some(state), network).await
    }

    /// Starts the stack with its state in `state` (a fresh dir in the run
    /// dir if `None`), DevTools `Network` events on or off.
    async fn spawn(
        tag: &str,
        extra_vars: &[(&str, &str)],
        base: &std::path::Path,
        state: Option<PathBuf>,
        devtools_network: bool,
    ) -> Stack {
        let root = snapshot_under(base).expect("snapshot");
        // The harness reads its root from the environment while it starts;
        // stacks start one at a time, so switching it here is safe.
        std::env::set_var("ACTORLINE_ROOT", &root);
        keep_network_tracing(devtools_network);
        let tag = tag.to_string();
        let mut vars: Vec<(String, String)> = extra_vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        vars.extend(setting_overrides());
        let stack = tokio::task::spawn_blocking(move || {
            let (dir, analyzer) = run_dir(&tag);
            let state = state.unwrap_or_else(|| dir.join("state"));
            let (server, start_called, ready_at) = launch(state, &analyzer, &vars);
            let http = client(Some(&server.key));
            Stack { server, analyzer, dir, vars, http, start_called, ready_at }
        })
        .await
        .expect("start stack");
        stack
    }

    /// The Agents SDK peer (`bench/peer-agents/run.sh`) with its own analyzer,
    /// as a `Stack`: the same client, gauges and teardown. It has no admin
    /// token, sessions or feed; its run events are on the run's Agent socket.
    pub async fn start_peer(tag: &str) -> Stack {
        let network = DEVTOOLS_NETWORK.load(std::sync::atomic::Ordering::Relaxed);
        let root = snapshot_under(&default_base()).expect("snapshot");
        let tag = tag.to_string();
        let stack = tokio::task::spawn_blocking(move || {
            std::env::set_var("ACTORLINE_ROOT", &root);
            let (dir, analyzer) = run_dir(&tag);
            let state = dir.join("state");
            std::fs::create_dir_all(&state).expect("state dir");
            // run.sh builds (a no-op once built) and migrates before it execs
            // wrangler dev, so `Ready on` can take a while on a first run.
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(crate::repo().join("bench/peer-agents/run.sh")).arg("0").arg(&state).env("ANALYZER_URL", &analyzer.url).env("NO_COLOR", "1");
            let start_called = Instant::now();
            let (group, rx) = support::Group::spawn(cmd, &state.join("wrangler.log"));
            let line = support::wait_for_line(&rx, "Ready on http://", Duration::from_secs(600))
                .unwrap_or_else(|| panic!("the peer did not start; see {}", state.join("wrangler.log").display()));
            let ready_at = Instant::now();
            let port = support::port_in(&line, "Ready on http");
            std::thread::spawn(move || while rx.recv().is_ok() {});
            let server = Server { group, base: format!("http://127.0.0.1:{port}"), admin_token: String::new(), state_dir: state, key: String::new() };
            Stack { server, analyzer, dir, vars: Vec::new(), http: client(None), start_called, ready_at }
        })
        .await
        .expect("start peer");
        stack.devtools_network(network).await
    }

    /// Stops wrangler dev and starts it again on the same state dir (the
    /// analyzer keeps running). Long workloads use this to shed descriptors
    /// that wrangler's proxy leaks (see `profile::set_network`).
    pub async fn restart_server(self) -> Stack {
        let network = DEVTOOLS_NETWORK.load(std::sync::atomic::Ordering::Relaxed);
        keep_network_tracing(network);
        tokio::task::spawn_blocking(move || {
            let Stack { server, analyzer, dir, vars, .. } = self;
            let state = server.state_dir.clone();
            drop(server);
            let (server, start_called, ready_at) = launch(state, &analyzer, &vars);
            let http = client(Some(&server.key));
            Stack { server, analyzer, dir, vars, http, start_called, ready_at }
        })
        .await
        .expect("restart server")
    }

    /// Turns the peer's DevTools `Network` events off unless `keep` (see
    /// `profile::set_network`); Actorline's servers have the harness do it
    /// (`keep_network_tracing`).
    async fn devtools_network(self, keep: bool) -> Stack {
        if !keep {
            if let Err(e) = crate::profile::set_network(&self, false).await {
                eprintln!("[bench] could not turn DevTools Network events off: {e}");
            }
        }
        self
    }

    /// Stops both process groups and removes the state dir, keeping the
    /// server's log in target/bench-logs/.
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || {
            let Stack { server, analyzer, dir, .. } = self;
            let log = server.group.log.clone();
            drop(server);
            drop(analyzer);
            let keep = crate::repo().join("target/bench-logs");
            if std::fs::create_dir_all(&keep).is_ok() {
                let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let tag = name.rsplitn(6, '-').last().unwrap_or("run").to_string();
                let _ = std::fs::copy(&log, keep.join(format!("{tag}-wrangler.log")));
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .await
        .ok();
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub async fn get_json(&self, path: &str) -> Result<(u16, Value), String> {
        let r = self.http.get(self.url(path)).send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        match self.http.get(self.url(path)).bearer_auth(&self.server.admin_token).send().await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// POST /api/content; (content_id, run_id) on 202.
    pub async fn submit(&self, title: &str, body: &str, category: Option<&str>) -> Result<(String, String), String> {
        let r = self
            .http
            .post(self.url("/api/content"))
            .json(&json!({ "title": title, "body": body, "category": category }))
            .send()
            .await
            .map_err(|e| format!("submit: {}", error_chain(&e)))?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 202 {
            let shown: String = text.chars().take(200).collect();
            return Err(format!("submit answered {status}: {shown}"));
        }
        match (v["content_id"].as_str(), v["run_id"].as_str()) {
            (Some(c), Some(r)) => Ok((c.to_string(), r.to_string())),
            _ => Err(format!("submit answer without ids: {v}")),
        }
    }

    /// Polls GET /api/content/{id} until it is indexed or failed.
    pub async fn poll_content(&self, id: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((200, v)) = self.get_json(&format!("/api/content/{id}")).await {
                if let Some(s) = v["status"].as_str() {
                    if s != "processing" {
                        return Some(s.to_string());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn new_session(&self) -> Result<(String, String), String> {
        let r = self.http.post(self.url("/api/sessions")).json(&json!({})).send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match (status, v["session_id"].as_str(), v["token"].as_str()) {
            (200, Some(s), Some(t)) => Ok((s.to_string(), t.to_string())),
            _ => Err(format!("session answered {status}: {v}")),
        }
    }

    pub fn ws_url(&self, session: &str, token: &str) -> String {
        self.server.ws_url(&format!("/api/sessions/{session}/ws?token={token}"))
    }

    /// Gauges of every process in wrangler's process group (node, workerd).
    pub fn procs(&self) -> Vec<Proc> {
        group_procs(self.server.group.pgid())
    }

    pub fn cpu_ms(&self) -> f64 {
        self.procs().iter().map(|p| p.cpu_ms).sum()
    }

    pub fn rss_kib(&self) -> u64 {
        self.procs().iter().map(|p| p.rss_kib).sum()
    }

    /// Most descriptors open in one server process (the limit is per process).
    pub fn max_fds(&self) -> usize {
        self.procs().iter().map(|p| p.fds).max().unwrap_or(0)
    }
}

/// An error with its causes ("error sending request ...: connection reset"),
/// since reqwest's own message does not say what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Whether a failed submit may be sent again: wrangler's dev proxy answered
/// 503 ("Your worker restarted mid-request") or dropped the connection before
/// answering. Neither leaves a run the client was told about.
pub fn submit_is_retryable(e: &str) -> bool {
    e.contains("answered 503") || (e.starts_with("submit: error sending request") && !e.contains("timed out"))
}

/// Starts Actorline's wrangler dev on `state` with the bench's vars, and
/// when it was asked to start and when it answered.
fn launch(state: PathBuf, analyzer: &Analyzer, vars: &[(String, String)]) -> (Server, Instant, Instant) {
    let mut opts = ServerOptions { analyzer_url: Some(analyzer.url.clone()), ..ServerOptions::new(state) }
        .var("ANALYZER_BREAKER_COOLDOWN_MS", "1000")
        .var("ANALYZER_BREAKER_THRESHOLD", "3");
    for (k, v) in vars {
        opts = opts.var(k, v);
    }
    let start_called = Instant::now();
    let server = Server::start(&opts);
    (server, start_called, Instant::now())
}

/// A fresh run dir inside the snapshot root (wrangler looks for its config
/// upwards from the served script, which the harness may copy into the state
/// dir, so the state dir must sit below wrangler.toml), with an analyzer.
fn run_dir(tag: &str) -> (PathBuf, Analyzer) {
    let dir = support::root().join("runs").join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("run dir");
    let analyzer = Analyzer::start(&dir.join("analyzer"));
    (dir, analyzer)
}

/// The wrangler CLI process of a group (`wrangler-dist/cli.js`, which the
/// `wrangler` launcher spawns): its start time is when `wrangler dev` itself
/// began, also when a script (the peer's run.sh) built and migrated first.
pub fn wrangler_cli_pid(pgid: u32) -> Option<u32> {
    group_procs(pgid).into_iter().map(|p| p.pid).find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("wrangler-dist") && c.contains("dev"))
    })
}

/// One process of a group, from /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    /// `worker` for the workerd that runs the Worker (it has the inspector),
    /// `proxy` for wrangler's other workerd, `node` for wrangler itself.
    pub role: String,
    pub cpu_ms: f64,
    pub rss_kib: u64,
    pub fds: usize,
}

pub fn group_procs(pgid: u32) -> Vec<Proc> {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let name = stat[stat.find('(').map(|i| i + 1).unwrap_or(0)..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        if f.len() < 13 || f[2].parse::<u32>().ok() != Some(pgid) {
            continue;
        }
        let utime: f64 = f[11].parse().unwrap_or(0.0);
        let stime: f64 = f[12].parse().unwrap_or(0.0);
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let role = if name.starts_with("workerd") {
            if cmdline.contains("--inspector-addr") { "worker" } else { "proxy" }
        } else if name.starts_with("node") || name.contains("wrangler") {
            "node"
        } else {
            "other"
        };
        out.push(Proc { pid, role: role.to_string(), cpu_ms: (utime + stime) / tick * 1000.0, rss_kib, fds });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// "node 246 MiB, proxy 223 MiB, worker 562 MiB" for one snapshot of a group.
pub fn rss_by_process(procs: &[Proc]) -> String {
    procs.iter().filter(|p| p.role != "other").map(|p| format!("{} {}", p.role, crate::stats::bytes(p.rss_kib * 1024))).collect::<Vec<_>>().join(", ")
}

/// CPU milliseconds per role between two snapshots (processes matched by pid).
pub fn cpu_delta(before: &[Proc], after: &[Proc]) -> Vec<(String, f64)> {
    let mut roles: Vec<(String, f64)> = Vec::new();
    for a in after {
        let b = before.iter().find(|b| b.pid == a.pid).map(|b| b.cpu_ms).unwrap_or(0.0);
        let d = a.cpu_ms - b;
        match roles.iter_mut().find(|(r, _)| *r == a.role) {
            Some((_, v)) => *v += d,
            None => roles.push((a.role.clone(), d)),
        }
    }
    roles
}

/// This process's own CPU time (the load generator), in ms.
pub fn self_cpu_ms() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// How long ago a process was spawned, from its start time in /proc.
pub fn process_age(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let start_ticks: f64 = f.get(19)?.parse().ok()?;
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let now = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let age = now - start_ticks / tick;
    (age >= 0.0).then(|| Duration::from_secs_f64(age))
}

/// Wall-clock milliseconds since the epoch, with sub-ms precision.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// An RFC 3339 server timestamp as epoch milliseconds.
pub fn parse_ts(s: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis() as f64)
}

/// Raises the open-files limit as far as allowed (root may lift the hard
/// limit up to fs.nr_open, capped at 262144); children inherit it.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let target = nr_open.min(262_144) as libc::rlim_t;
    unsafe {
        if target > lim.rlim_max {
            let want = libc::rlimit { rlim_cur: target, rlim_max: target };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    // rlim_t is u64 here but not on every target.
    #[allow(clippy::unnecessary_cast)]
    (lim.rlim_cur as u64, lim.rlim_max as u64)
}

/// A 2 KB document, varied by `seed` (the e2e harness's generator).
pub fn doc_body(topic: &str, seed: usize, bytes: usize) -> String {
    support::document(topic, seed, bytes)
}

/// A frozen copy of what `wrangler dev` reads (config, build, assets,
/// migrations, .dev.vars, the analyzer binary; node_modules linked), used as
/// the harness's root. `wrangler dev` watches its inputs and reloads when they
/// change, which drops every socket and in-flight request; with a snapshot, a
/// rebuild of the working tree during a benchmark cannot reach the server.
pub fn snapshot_root(root: &std::path::Path, base: &std::path::Path) -> Result<PathBuf, String> {
    use std::path::Path;
    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let dst = to.join(e.file_name());
            if e.file_type()?.is_dir() {
                copy_dir(&e.path(), &dst)?;
            } else {
                std::fs::copy(e.path(), dst)?;
            }
        }
        Ok(())
    }
    let has_wasm = ["build", "build/worker"].iter().any(|d| {
        std::fs::read_dir(root.join(d)).map(|rd| rd.flatten().any(|e| e.path().extension().is_some_and(|x| x == "wasm"))).unwrap_or(false)
    });
    if !has_wasm || !root.join("build/worker/shim.mjs").exists() {
        return Err(format!("no Worker build under {}/build (run `make build`)", root.display()));
    }
    for need in [".dev.vars", "target/release/analyzer", "node_modules/.bin/wrangler"] {
        if !root.join(need).exists() {
            return Err(format!("{need} is missing (`make bench` bootstraps and builds it)"));
        }
    }
    let snap = base.join(format!("actorline-bench-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&snap);
    let io = |e: std::io::Error| format!("snapshot: {e}");
    for d in ["build", "migrations", "web"] {
        if root.join(d).exists() {
            copy_dir(&root.join(d), &snap.join(d)).map_err(io)?;
        }
    }
    for f in ["wrangler.toml", "package.json", ".dev.vars"] {
        if root.join(f).exists() {
            std::fs::copy(root.join(f), snap.join(f)).map_err(io)?;
        }
    }
    // worker-build puts the module beside build/worker (shim.mjs imports
    // ../index.js); make build/worker self-contained too, so a harness that
    // copies only build/worker still serves a complete Worker.
    for f in ["index.js", "index_bg.wasm"] {
        if snap.join("build").join(f).exists() && !snap.join("build/worker").join(f).exists() {
            std::fs::copy(snap.join("build").join(f), snap.join("build/worker").join(f)).map_err(io)?;
        }
    }
    let shim = snap.join("build/worker/shim.mjs");
    if let Ok(text) = std::fs::read_to_string(&shim) {
        if snap.join("build/worker/index.js").exists() {
            std::fs::write(&shim, text.replace("'../index.js'", "'./index.js'").replace("\"../index.js\"", "\"./index.js\"")).map_err(io)?;
        }
    }
    // The harness turns DevTools network tracing off with this script.
    std::fs::create_dir_all(snap.join("scripts")).map_err(io)?;
    std::fs::copy(root.join("scripts/network_tracing.mjs"), snap.join("scripts/network_tracing.mjs")).map_err(io)?;
    std::fs::create_dir_all(snap.join("target/release")).map_err(io)?;
    std::fs::copy(root.join("target/release/analyzer"), snap.join("target/release/analyzer")).map_err(io)?;
    std::os::unix::fs::symlink(root.join("node_modules"), snap.join("node_modules")).map_err(io)?;
    Ok(snap)
}

/// The harness's `Server::start` turns DevTools network tracing off unless
/// `DEV_TRACE_NETWORK=1`; stacks start one at a time, so setting it here holds.
fn keep_network_tracing(keep: bool) {
    if keep {
        std::env::set_var("DEV_TRACE_NETWORK", "1");
    } else {
        std::env::remove_var("DEV_TRACE_NETWORK");
    }
}
