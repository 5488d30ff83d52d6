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
    pub http: reqwest::Client,
    /// When `Server::start` was called and returned (the `Ready on` line).
    pub start_called: Instant,
    pub ready_at: Instant,
}

/// A pooled client: the harness's `http()` builds one per request, which would
/// measure TCP handshakes instead of the server.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .build()
        .expect("http client")
}

impl Stack {
    /// Starts the analyzer and wrangler dev with the shared e2e configuration.
    pub async fn start(tag: &str, extra_vars: &[(&str, &str)]) -> Stack {
        let tag = tag.to_string();
        let vars: Vec<(String, String)> = extra_vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        tokio::task::spawn_blocking(move || {
            let dir = support::temp_dir(&format!("bench-{tag}"));
            let analyzer = Analyzer::start(&dir.join("analyzer"));
            let mut opts = ServerOptions { analyzer_url: Some(analyzer.url.clone()), ..ServerOptions::new(dir.join("state")) }
                .var("ANALYZER_BREAKER_COOLDOWN_MS", "1000")
                .var("ANALYZER_BREAKER_THRESHOLD", "3");
            for (k, v) in &vars {
                opts = opts.var(k, v);
            }
            let start_called = Instant::now();
            let server = Server::start(&opts);
            let ready_at = Instant::now();
            Stack { server, analyzer, dir, http: client(), start_called, ready_at }
        })
        .await
        .expect("start stack")
    }

    /// Stops both process groups and removes the state dir.
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || {
            let Stack { server, analyzer, dir, .. } = self;
            drop(server);
            drop(analyzer);
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
            .map_err(|e| format!("submit: {e}"))?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 202 {
            return Err(format!("submit answered {status}: {v}"));
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
}

/// One process of a group, from /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub name: String,
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
        out.push(Proc { pid, name, role: role.to_string(), cpu_ms: (utime + stime) / tick * 1000.0, rss_kib, fds });
    }
    out.sort_by_key(|p| p.pid);
    out
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

/// Raises the open-files soft limit to the hard limit; children inherit it.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    (lim.rlim_cur as u64, lim.rlim_max as u64)
}

/// A 2 KB document, varied by `seed` (the e2e harness's generator).
pub fn doc_body(topic: &str, seed: usize, bytes: usize) -> String {
    support::document(topic, seed, bytes)
}
