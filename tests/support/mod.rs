//! End-to-end harness: real `wrangler dev` (local workerd) and the native
//! analyzer, each in its own process group.
//!
//! Teardown never depends on the test passing: a `Server` kills its groups on
//! drop, and a watchdog per group (a `sh` reading our pipe) kills it when this
//! test process exits for any reason, including a shared server held in a
//! static that is never dropped.
#![allow(dead_code)]

pub mod fuzz;
pub mod pdf;
pub mod jwt;

/// Event names as tests match on them: consts taken from `EventName` (the
/// one source of the wire names), so they also serve as patterns.
pub mod ev {
    use actorline::protocol::EventName as E;
    pub const RUN_QUEUED: &str = E::RunQueued.as_str();
    pub const STAGE_STARTED: &str = E::StageStarted.as_str();
    pub const STAGE_COMPLETED: &str = E::StageCompleted.as_str();
    pub const STAGE_RETRYING: &str = E::StageRetrying.as_str();
    pub const STAGE_SKIPPED: &str = E::StageSkipped.as_str();
    pub const STAGE_FAILED: &str = E::StageFailed.as_str();
    pub const RUN_COMPLETED: &str = E::RunCompleted.as_str();
    pub const RUN_FAILED: &str = E::RunFailed.as_str();
    pub const RUN_CANCELLED: &str = E::RunCancelled.as_str();
    pub const CONTENT_UPDATED: &str = E::ContentUpdated.as_str();
    pub const CONTENT_INDEXED: &str = E::ContentIndexed.as_str();
    pub const CONTENT_DELETED: &str = E::ContentDeleted.as_str();
    pub const ANSWER_RETRIEVED: &str = E::AnswerRetrieved.as_str();
    pub const ANSWER_DELTA: &str = E::AnswerDelta.as_str();
    pub const ANSWER_COMPLETED: &str = E::AnswerCompleted.as_str();
    pub const ANSWER_FAILED: &str = E::AnswerFailed.as_str();
    pub const BATCH_PROGRESS: &str = E::BatchProgress.as_str();
    pub const BATCH_COMPLETED: &str = E::BatchCompleted.as_str();
}

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn root() -> PathBuf {
    std::env::var("ACTORLINE_ROOT").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Wall-clock milliseconds since the Unix epoch: this machine's clock, the
/// one the server and the emulator stamp with.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A fresh scratch dir for one server's state and logs, under this test
/// process's [`scratch_root`].
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = scratch_root().join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Marks a scratch root whose logs are kept for reading after the run.
const KEEP_MARK: &str = "KEEP";

/// One dir per test process for every server's state (tens of MB each).
///
/// Statics are never dropped, so the removal is left to a janitor: a `sh` in
/// its own group, deaf to the usual signals, that waits for our pipe to close
/// (this process exiting for any reason) and then deletes the root. A panic
/// anywhere in the process drops a `KEEP` mark first, so a failing test's
/// logs (which its message points at) survive; roots kept that way by dead
/// processes are swept after a day. Without this, every run left its state
/// behind and a busy machine's disk filled up.
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<(PathBuf, Option<ChildStdin>)> = OnceLock::new();
    let (root, _janitor_pipe) = ROOT.get_or_init(|| {
        sweep_stale_roots();
        let root = std::env::temp_dir().join(format!("actorline-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("scratch root");
        let keep = root.join(KEEP_MARK);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = std::fs::write(&keep, b"a test panicked; logs kept\n");
            previous(info);
        }));
        let janitor = on_exit("sleep 5; [ -e \"$1/$2\" ] || rm -rf \"$1\"", &[root.as_os_str(), KEEP_MARK.as_ref()]);
        (root, janitor.ok().map(|(_, pipe)| pipe))
    });
    root
}

/// Starts `sh -c "<script>"` (with `args` as `$1`, `$2`, ...) to run once this
/// test process exits for any reason: the `sh` waits for the returned pipe to
/// close. It is in a group of its own and deaf to the usual signals, so a kill
/// of this test process's whole group (Ctrl-C, a CI timeout) does not take it
/// along before it has done its work.
fn on_exit(script: &str, args: &[&std::ffi::OsStr]) -> std::io::Result<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt;
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' HUP INT TERM; read _ignored; {script}"))
        .arg("on-exit")
        .args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pipe = sh.stdin.take().ok_or_else(|| std::io::Error::other("no pipe to the on-exit sh"))?;
    Ok((sh, pipe))
}

/// Removes kept roots of processes that are gone, once they are a day old.
fn sweep_stale_roots() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("actorline-tests-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > Duration::from_secs(86_400));
        if !alive && old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A process group with a watchdog that ends it when this process dies.
pub struct Group {
    child: Child,
    _watchdog_pipe: ChildStdin,
    watchdog: Child,
    pub log: PathBuf,
    /// Set once the group is reaped: its pgid may be reused, so never signal it again.
    stopped: bool,
}

impl Group {
    /// Spawns `cmd` in its own process group; its output lines go to `log` and the receiver.
    pub fn spawn(mut cmd: Command, log: &Path) -> (Group, mpsc::Receiver<String>) {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn child");
        let pgid = child.id();
        let (watchdog, pipe) =
            on_exit(&format!("kill -TERM -{pgid} 2>/dev/null; sleep 3; kill -KILL -{pgid} 2>/dev/null"), &[])
                .expect("spawn watchdog");
        let (tx, rx) = mpsc::channel();
        let logfile = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let logfile = std::sync::Arc::new(Mutex::new(logfile));
        for stream in [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)].into_iter().flatten() {
            let tx = tx.clone();
            let logfile = logfile.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut f) = logfile.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        (Group { child, _watchdog_pipe: pipe, watchdog, log: log.to_path_buf(), stopped: false }, rx)
    }

    pub fn pgid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        if self.stopped {
            return;
        }
        unsafe {
            libc::kill(-(self.child.id() as i32), sig);
        }
    }

    /// Stops the group: SIGTERM (or SIGKILL when `hard`), then waits.
    pub fn stop(&mut self, hard: bool) {
        if self.stopped {
            return;
        }
        self.signal(if hard { libc::SIGKILL } else { libc::SIGTERM });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        self.stopped = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(false);
    }
}

pub fn wait_for_line(rx: &mpsc::Receiver<String>, pat: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(pat) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

pub fn port_in(line: &str, marker: &str) -> u16 {
    let after = &line[line.find(marker).expect("marker") + marker.len()..];
    let host_port = after.trim_start_matches("://").trim_start_matches("s://");
    let digits: String = host_port.rsplit(':').next().unwrap_or("").chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().expect("port")
}

/// The natively built analyzer (`target/release/analyzer`).
pub struct Analyzer {
    pub group: Group,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Analyzer {
    pub fn start(data_dir: &Path) -> Analyzer {
        let bin = root().join("target/release/analyzer");
        assert!(bin.exists(), "build the analyzer first (make test does)");
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--data-dir"]).arg(data_dir);
        let (group, rx) = Group::spawn(cmd, &data_dir.with_extension("log"));
        let line = wait_for_line(&rx, "listening on http://", Duration::from_secs(20)).expect("analyzer did not start");
        let url = line[line.find("http://").unwrap_or(0)..].trim().to_string();
        Analyzer { group, url, data_dir: data_dir.to_path_buf() }
    }
}

pub struct ServerOptions {
    pub state_dir: PathBuf,
    pub vars: Vec<(String, String)>,
    pub analyzer_url: Option<String>,
    /// `--env` for wrangler (None: the top-level, offline config).
    pub env: Option<String>,
    /// More wrangler configs run in the same `wrangler dev` (`-c` each, after
    /// wrangler.toml), e.g. the emulator Worker's.
    pub extra_configs: Vec<PathBuf>,
}

impl ServerOptions {
    /// Test servers lift the read, session, batch-item and upload limits: a
    /// suite is one principal doing many searches, sessions and imports. The limits themselves are
    /// tested with keys of their own (`rate_per_min`) or by setting them back.
    pub fn new(state_dir: PathBuf) -> Self {
        ServerOptions { state_dir, vars: Vec::new(), analyzer_url: None, env: None, extra_configs: Vec::new() }
            .var("RATE_READ_PER_MIN", "100000000")
            .var("RATE_SESSIONS_PER_MIN", "100000000")
            .var("RATE_BATCH_ITEMS_PER_MIN", "1000000")
            .var("RATE_UPLOAD_MB_PER_MIN", "1000000")
    }

    /// The `[env.emulated]` config (production vars, emulated bindings) with
    /// the emulator Worker whose config is `emulator_config`.
    pub fn emulated(state_dir: PathBuf, emulator_config: PathBuf) -> Self {
        ServerOptions { env: Some("emulated".into()), extra_configs: vec![emulator_config], ..ServerOptions::new(state_dir) }
    }

    /// `-c wrangler.toml -c <extra>… --env <env>` when set; nothing otherwise.
    fn config_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if !self.extra_configs.is_empty() {
            args.push("-c".into());
            args.push(root().join("wrangler.toml").into_os_string());
            for c in &self.extra_configs {
                args.push("-c".into());
                args.push(c.clone().into_os_string());
            }
        }
        if let Some(env) = &self.env {
            args.push("--env".into());
            args.push(env.into());
        }
        args
    }

    /// Sets a var, replacing an earlier value of the same name.
    pub fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.retain(|(name, _)| name != k);
        self.vars.push((k.into(), v.into()));
        self
    }
}

/// One `wrangler dev` over a state dir.
pub struct Server {
    pub group: Group,
    pub base: String,
    pub admin_token: String,
    pub state_dir: PathBuf,
    /// An API key of tenant [`TEST_TENANT`] with `content:manage` and no
    /// practical write limit: the credential `get`/`post`/`put` send.
    pub key: String,
}

/// The tenant of the harness's own key.
pub const TEST_TENANT: &str = "e2e";

/// Creates an API key through `POST /admin/keys` (blocking: it runs on its
/// own thread and runtime, so it works inside or outside a test's runtime).
pub fn mint_key(base: &str, admin_token: &str, tenant: &str, scopes: &[&str], rate_per_min: Option<u32>) -> String {
    let (base, admin) = (base.to_string(), admin_token.to_string());
    let body = json!({ "tenant": tenant, "name": "test key", "scopes": scopes, "rate_per_min": rate_per_min });
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let r = send(http().post(format!("{base}/admin/keys")).bearer_auth(&admin).json(&body)).await;
            assert_eq!(r.status, 201, "create key: {}", r.body);
            r.body["key"].as_str().expect("key").to_string()
        })
    })
    .join()
    .expect("mint key")
}

/// A port nothing listens on now (the OS picks it), for wrangler's inspector.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// DevTools network tracing off, as `make dev` does (scripts/network_tracing.mjs
/// says why: with it on, a long suite slows down and finally fails requests).
fn stop_network_tracing(inspector: u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let out = Command::new("node")
            .arg(root().join("scripts/network_tracing.mjs"))
            .args([&inspector.to_string(), "off"])
            .output()
            .expect("node runs");
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("could not turn DevTools network tracing off: {last}");
}

fn wrangler() -> Command {
    let mut c = Command::new(root().join("node_modules/.bin/wrangler"));
    c.current_dir(root())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1");
    c
}

pub fn admin_token() -> String {
    let vars = std::fs::read_to_string(root().join(".dev.vars")).expect(".dev.vars (make test creates it)");
    vars.lines().find_map(|l| l.strip_prefix("ADMIN_TOKEN=")).expect("ADMIN_TOKEN").trim().to_string()
}

impl Server {
    pub fn start(opts: &ServerOptions) -> Server {
        std::fs::create_dir_all(&opts.state_dir).expect("state dir");
        let migrate = wrangler()
            .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
            .arg(&opts.state_dir)
            .args(opts.env.iter().flat_map(|e| ["--env", e.as_str()]))
            .stdin(Stdio::null())
            .output()
            .expect("wrangler d1 migrations apply");
        assert!(migrate.status.success(), "migrations failed: {}", String::from_utf8_lossy(&migrate.stderr));
        let mut vars = opts.vars.clone();
        if let Some(u) = &opts.analyzer_url {
            vars.push(("ANALYZER_URL".into(), u.clone()));
        }
        let log = opts.state_dir.join("wrangler.log");
        // workerd binds ports that were free when wrangler picked them; with
        // servers starting side by side one can be taken meanwhile ("Address
        // already in use"). That start is tried again; any other failure is not.
        let mut tries = 0;
        let (group, rx, line, inspector) = loop {
            tries += 1;
            let inspector = free_port();
            let mut cmd = wrangler();
            cmd.args(["dev", "--local", "--ip", "127.0.0.1", "--port", "0", "--inspector-port", &inspector.to_string()])
                .args(["--show-interactive-dev-session=false", "--test-scheduled", "--persist-to"])
                .arg(&opts.state_dir)
                .args(opts.config_args());
            for (k, v) in &vars {
                cmd.arg("--var").arg(format!("{k}:{v}"));
            }
            // The log is appended to: this try's lines start here.
            let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
            let (group, rx) = Group::spawn(cmd, &log);
            if let Some(line) = wait_for_line(&rx, "Ready on http://", Duration::from_secs(90)) {
                break (group, rx, line, inspector);
            }
            drop(group);
            let port_taken = std::fs::read(&log).is_ok_and(|l| String::from_utf8_lossy(l.get(from..).unwrap_or_default()).contains("Address already in use"));
            if !port_taken || tries == 3 {
                panic!("wrangler dev did not start; see {}", log.display());
            }
            eprintln!("wrangler dev lost a port to another process (try {tries}); starting it again");
        };
        let port = port_in(&line, "Ready on http");
        // Keep draining output so the pipes never fill.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let base = format!("http://127.0.0.1:{port}");
        let admin_token = admin_token();
        let key = mint_key(&base, &admin_token, TEST_TENANT, &["content:manage"], Some(1_000_000));
        // After the first request, so the Worker's isolate is there to reach.
        if std::env::var("DEV_TRACE_NETWORK").as_deref() != Ok("1") {
            stop_network_tracing(inspector);
        }
        Server { group, base, admin_token, state_dir: opts.state_dir.clone(), key }
    }

    /// Stops this server (SIGKILL to the whole group when `hard`, as a crash
    /// would) and starts a new one on the same state; `base` changes.
    pub fn restart(&mut self, opts: &ServerOptions, hard: bool) {
        self.group.stop(hard);
        *self = Server::start(opts);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Runs SQL on this server's local D1 (the top-level env) from outside
    /// the Worker, as an operator's console or a restore would, and returns
    /// the rows of the last statement.
    /// The running server holds the same SQLite file, so a busy database is
    /// retried for a while. Wrangler does not always say so: the workerd line
    /// naming SQLITE_BUSY can be lost, leaving only miniflare's "internal
    /// error" in the JSON on stdout (a CI run failed on exactly that). So any
    /// failure but a plain SQL error is retried. The other way round, the
    /// server's own D1 writes fail (SQLITE_BUSY) while this holds the file: a
    /// test that calls this runs on a server of its own, so no other test sees
    /// those failures.
    pub fn d1(&self, sql: &str) -> Vec<Value> {
        let mut tries = 0;
        let (out, said) = loop {
            let out = wrangler()
                .args(["d1", "execute", "DB", "--local", "--json", "--persist-to"])
                .arg(&self.state_dir)
                .args(["--command", sql])
                .stdin(Stdio::null())
                .output()
                .expect("wrangler d1 execute");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let sql_error = ["SQLITE_ERROR", "SQLITE_CONSTRAINT", "no such table", "syntax error"].iter().any(|e| said.contains(e));
            tries += 1;
            if out.status.success() || sql_error || tries >= 20 {
                break (out, said);
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert!(out.status.success(), "d1 execute failed after {tries} tries: {said}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("d1 execute --json output");
        v.as_array().and_then(|a| a.last()).and_then(|r| r["results"].as_array()).cloned().unwrap_or_default()
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.base.replacen("http://", "ws://", 1), path)
    }

    /// The log so far, for checks such as "no panic was logged".
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.group.log).unwrap_or_default()
    }

    /// Waits until the log holds `line` (the server's output arrives a
    /// little after its reply), failing after 10 s.
    pub async fn logged(&self, line: &str) {
        eventually(&format!("the log line {line:?}"), Duration::from_secs(10), || async {
            if self.log_text().contains(line) { Ok(()) } else { Err("not logged yet") }
        })
        .await;
    }
}

/// The server shared by a whole test binary, with the analyzer beside it.
pub struct Shared {
    pub server: Server,
    pub analyzer: Mutex<Option<Analyzer>>,
}

pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = temp_dir("shared");
        let analyzer = Analyzer::start(&dir.join("analyzer"));
        let mut opts = ServerOptions { analyzer_url: Some(analyzer.url.clone()), ..ServerOptions::new(dir.join("state")) }
            .var("ANALYZER_BREAKER_COOLDOWN_MS", "1000")
            .var("ANALYZER_BREAKER_THRESHOLD", "3");
        for (k, v) in jwt::server_vars() {
            opts = opts.var(k, &v);
        }
        Shared { server: Server::start(&opts), analyzer: Mutex::new(Some(analyzer)) }
    })
}

// ---------------------------------------------------------------- HTTP client

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// Every HTTP request sent through `try_send` and how many got a 5xx, for
/// the soak's report (it reads the difference across a scenario).
pub static REQUESTS: AtomicUsize = AtomicUsize::new(0);
pub static SERVER_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// Sends a request; a transport error is returned, not panicked on.
pub async fn try_send(req: reqwest::RequestBuilder) -> Result<Reply, String> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status >= 500 {
        SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply { status, body, headers })
}

pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    try_send(req).await.expect("request")
}

impl Server {
    /// These send the harness's key; anonymous requests use `http()` directly.
    pub async fn get(&self, path: &str) -> Reply {
        send(http().get(self.url(path)).bearer_auth(&self.key)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        send(http().post(self.url(path)).bearer_auth(&self.key).json(&body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        send(http().put(self.url(path)).bearer_auth(&self.key).json(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        send(http().delete(self.url(path)).bearer_auth(&self.key)).await
    }
    pub async fn admin_get(&self, path: &str) -> Reply {
        send(http().get(self.url(path)).bearer_auth(&self.admin_token)).await
    }
    pub async fn admin_post(&self, path: &str) -> Reply {
        send(http().post(self.url(path)).bearer_auth(&self.admin_token)).await
    }

    /// Submits a document and returns (content_id, run_id).
    pub async fn submit(&self, title: &str, body: &str, category: Option<&str>) -> (String, String) {
        let r = self.post("/api/content", json!({ "title": title, "body": body, "category": category })).await;
        assert_eq!(r.status, 202, "submit: {}", r.body);
        (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string())
    }

    /// Polls a run until it is terminal (as the operator, who sees every tenant's runs).
    pub async fn wait_run(&self, run_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.admin_get(&format!("/api/runs/{run_id}")).await;
            assert!(r.status < 500, "run view 5xx: {}", r.body);
            let status = r.body["status"].as_str().unwrap_or("");
            if matches!(status, "completed" | "failed" | "cancelled") {
                return r.body;
            }
            assert!(Instant::now() < deadline, "run {run_id} not terminal in {timeout:?}: {}", r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls a batch (as its submitter, the harness's key) until every item
    /// is terminal; returns the last view.
    pub async fn wait_batch(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            // A busy server (one workerd thread running every run) may not
            // answer a poll in time; that is not the batch's failure.
            let Ok(r) = try_send(http().get(self.url(&format!("/api/batches/{id}"))).bearer_auth(&self.key)).await else {
                assert!(Instant::now() < deadline, "batch {id}: no answer in {timeout:?}");
                continue;
            };
            assert_eq!(r.status, 200, "{}", r.body);
            let total = r.body["total"].as_u64().unwrap();
            let done = r.body["completed"].as_u64().unwrap() + r.body["failed"].as_u64().unwrap();
            if done == total {
                return r.body;
            }
            assert!(Instant::now() < deadline, "batch {id} not settled in {timeout:?}: {done}/{total} ({} in flight)", r.body["in_flight"]);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A document of about `bytes` bytes on `topic`, varied by `seed`.
pub fn document(topic: &str, seed: usize, bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "signal", "pipeline", "vector", "garden", "harbor", "quantum", "river", "market", "engine", "violin",
        "protein", "glacier", "ledger", "orbit", "canvas", "thunder", "copper", "lantern", "meadow", "circuit",
    ];
    let mut out = String::new();
    let mut i = seed.wrapping_mul(2654435761);
    while out.len() < bytes {
        out.push_str(&format!("The {topic} study of {} ", WORDS[i % WORDS.len()]));
        for _ in 0..10 {
            i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            out.push_str(WORDS[(i >> 33) % WORDS.len()]);
            out.push(' ');
        }
        out.push_str("shows clear results. ");
    }
    out
}

// ---------------------------------------------------------------- WebSocket client

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session of the test tenant's key: `(session_id, token)`.
pub async fn new_session(server: &Server) -> (String, String) {
    new_session_as(server, &server.key).await
}

/// A session of `key`'s principal: `(session_id, token)`.
pub async fn new_session_as(server: &Server, key: &str) -> (String, String) {
    let r = send(http().post(server.url("/api/sessions")).bearer_auth(key).json(&json!({}))).await;
    assert_eq!(r.status, 200, "session: {}", r.body);
    (r.body["session_id"].as_str().unwrap().to_string(), r.body["token"].as_str().unwrap().to_string())
}

/// A tenant slug unique to this test process, so reruns on one state never mix.
pub fn unique_tenant(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub async fn connect(server: &Server, session: &str, token: &str) -> Ws {
    let url = server.ws_url(&format!("/api/sessions/{session}/ws?token={token}"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
    ws
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into())).await.expect("ws send");
}

/// The next JSON frame, or None on timeout/close.
pub async fn ws_next(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    use futures_util::StreamExt;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).ok();
            }
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return None,
        }
    }
}

impl Analyzer {
    /// Restarts on a fixed port over the same data dir.
    pub fn start_on(data_dir: &Path, port: u16) -> Analyzer {
        let bin = root().join("target/release/analyzer");
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--data-dir"]).arg(data_dir);
        let (group, rx) = Group::spawn(cmd, &data_dir.with_extension("log"));
        let line = wait_for_line(&rx, "listening on http://", Duration::from_secs(20)).expect("analyzer did not start");
        let url = line[line.find("http://").unwrap_or(0)..].trim().to_string();
        Analyzer { group, url, data_dir: data_dir.to_path_buf() }
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("analyzer port")
    }
}

// ---------------------------------------------------------------- emulated Cloudflare bindings

/// A metadata index the README's deploy steps create
/// (`wrangler vectorize create-metadata-index … --property-name X --type T`).
pub fn readme_metadata_indexes() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    readme
        .lines()
        .filter(|l| l.contains("vectorize create-metadata-index"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let flag = |name: &str| {
                words.iter().enumerate().find_map(|(i, w)| {
                    w.strip_prefix(&format!("{name}=")).map(str::to_string).or_else(|| {
                        (*w == name).then(|| words.get(i + 1).map(|v| v.to_string())).flatten()
                    })
                })
            };
            Some((flag("--property-name")?, flag("--type")?))
        })
        .collect()
}

/// The emulator (tests/emulator): its state server and the wrangler config
/// of its Worker, which runs inside the Actorline `wrangler dev`.
pub struct Emulator {
    pub group: Group,
    pub url: String,
    pub worker_config: PathBuf,
}

impl Emulator {
    /// Starts the state server with `config` (merged over its defaults) and
    /// writes the Worker's config into `dir`.
    pub fn start(dir: &Path, config: Value) -> Emulator {
        std::fs::create_dir_all(dir).expect("emulator dir");
        let mut cmd = Command::new("node");
        cmd.arg(root().join("tests/emulator/server.mjs")).arg("--config").arg(config.to_string());
        let (group, rx) = Group::spawn(cmd, &dir.join("emulator.log"));
        let line = wait_for_line(&rx, "emulator listening on http://", Duration::from_secs(20)).expect("emulator did not start");
        let url = line[line.find("http://").unwrap_or(0)..].trim().to_string();
        std::thread::spawn(move || while rx.recv().is_ok() {});
        // `--env` applies to every config of a multi-config `wrangler dev`, and
        // an env section without `name` renames the Worker, so both say it.
        let worker = root().join("tests/emulator/worker.mjs");
        let toml = format!(
            "name = \"actorline-emulator\"\nmain = {main:?}\ncompatibility_date = \"2026-04-20\"\n\n[vars]\nEMULATOR_URL = {url:?}\n\n\
             [env.emulated]\nname = \"actorline-emulator\"\n\n[env.emulated.vars]\nEMULATOR_URL = {url:?}\n",
            main = worker.display().to_string(),
        );
        let worker_config = dir.join("emulator.wrangler.toml");
        std::fs::write(&worker_config, toml).expect("emulator config");
        Emulator { group, url, worker_config }
    }

    /// The config the production-mode suite uses: the analyzer behind the
    /// container, the README's metadata indexes, 1 s Vectorize visibility and
    /// a container that listens 3 s after `start()`.
    /// The emulated container runs the native analyzer, a new process on a
    /// new, empty data dir under `disks` at every start, as a Container's
    /// disk is fresh at every start.
    pub fn standard_config(disks: &Path) -> Value {
        let indexes: Vec<Value> =
            readme_metadata_indexes().into_iter().map(|(p, t)| json!({ "propertyName": p, "type": t })).collect();
        let bin = root().join("target/release/analyzer");
        assert!(bin.exists(), "build the analyzer first (make test does)");
        json!({
            "analyzerCommand": [bin, "--host", "127.0.0.1", "--port", "0"],
            "analyzerDataRoot": disks,
            "containerListenDelayMs": 3000,
            "vectorizeVisibilityMs": 1000,
            "metadataIndexes": indexes,
        })
    }

    /// `config` with `ACTORLINE_EMULATOR_CONFIG` (a JSON object) merged over
    /// it, when set: only for checking the harness against older code.
    pub fn with_env_overrides(mut config: Value) -> Value {
        let extra = std::env::var("ACTORLINE_EMULATOR_CONFIG").ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_ref().and_then(Value::as_object)) {
            c.extend(e.clone());
        }
        config
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = http().post(format!("{}{path}", self.url)).json(&body).send().await.expect("emulator control");
        r.json().await.expect("emulator control json")
    }

    /// Everything the emulator holds: vectors (visible ones), calls, faults, container.
    pub async fn state(&self) -> Value {
        self.control("/control/state", json!({})).await
    }

    /// Injects failures: `[{binding, method?, model?, error, times}]`.
    pub async fn inject(&self, faults: Value) -> Value {
        self.control("/control/faults", faults).await
    }

    pub async fn clear_faults(&self) {
        self.control("/control/clear-faults", json!({})).await;
    }

    /// Stops the emulated container (as the runtime does after inactivity).
    pub async fn stop_container(&self) -> Value {
        self.control("/control/container/stop", json!({})).await
    }

    /// Replaces the running container with a new one on a new disk, as a
    /// host move does, without its actor starting it.
    pub async fn replace_container(&self) -> Value {
        self.control("/control/container/replace", json!({})).await
    }
}

/// Polls `check` every 200 ms until it returns `Ok`, or fails after
/// `timeout` with `what` and the last `Err`.
pub async fn eventually<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what} not reached in {timeout:?}: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One parsed SSE message.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// Reads an SSE stream until `until` returns true for the messages so far,
/// or the stream ends or goes quiet.
pub async fn sse(req: reqwest::RequestBuilder, until: impl Fn(&[Sse]) -> bool) -> (u16, String, Vec<Sse>) {
    let mut resp = req.header("accept", "text/event-stream").send().await.expect("sse request");
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let mut buf = String::new();
    // A chunk may end inside a character: its bytes wait for the next one.
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    if status != 200 {
        return (status, ctype, out);
    }
    while !until(&out) {
        let chunk = match tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        pending.extend_from_slice(&chunk);
        let whole = match std::str::from_utf8(&pending) {
            Ok(_) => pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => panic!("the stream is not UTF-8: {e}"),
        };
        buf.push_str(std::str::from_utf8(&pending[..whole]).expect("checked"));
        pending.drain(..whole);
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut m = Sse { id: None, event: "message".into(), data: String::new() };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    m.id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    m.event = v.to_string();
                    any = true;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    m.data.push_str(v);
                }
            }
            if any {
                out.push(m);
            } else if m.id.is_some() {
                // An id alone: the cursor moved past events not sent.
                out.push(Sse { event: String::new(), ..m });
            }
        }
    }
    (status, ctype, out)
}

/// The feed's events of each item in `content_ids`, as (event, version,
/// status), in the feed's order, read by `key`'s principal from the start.
pub async fn feed_events(s: &Server, key: &str, content_ids: &[String]) -> Vec<Vec<(String, u64, String)>> {
    let ready = |ms: &[Sse]| ms.iter().any(|m| m.event == "ready");
    let (status, _, ms) = sse(http().get(s.url("/api/topics/feed/events?after=0")).bearer_auth(key), ready).await;
    assert_eq!(status, 200);
    assert!(ready(&ms), "the feed replayed to its end: {ms:?}");
    let frames: Vec<Value> = ms.iter().filter(|m| m.id.is_some() && !m.event.is_empty()).map(|m| serde_json::from_str(&m.data).expect("an event frame")).collect();
    content_ids
        .iter()
        .map(|cid| {
            frames
                .iter()
                .filter(|f| f["data"]["content_id"] == cid.as_str())
                .map(|f| {
                    let d = &f["data"];
                    let field = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                    (f["event"].as_str().unwrap_or_default().to_string(), d["version"].as_u64().unwrap_or(0), field("status"))
                })
                .collect()
        })
        .collect()
}

/// What the feed holds of some items' events, when it is not each once.
#[derive(Debug)]
pub enum FeedShortfall {
    /// An event reached the feed twice: a defect, whatever comes later.
    Twice(String),
    /// An item's events are on the feed out of its order: a defect too.
    OutOfOrder(String),
    /// Some items' events have not arrived (yet): worth waiting for.
    Missing(Vec<String>),
}

impl std::fmt::Display for FeedShortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedShortfall::Twice(item) => write!(f, "an event reached the feed twice: {item}"),
            FeedShortfall::OutOfOrder(item) => write!(f, "an item's events reached the feed out of order: {item}"),
            FeedShortfall::Missing(items) => write!(f, "items without their events: {items:?}"),
        }
    }
}

/// Whether the feed holds each of `content_ids`' first-version events once,
/// in the item's order, through its `content.indexed`. Its `processing`
/// event may be absent, and only then: an announcement tried again after
/// its item's next one landed is not appended (it would show the item as it
/// no longer is).
pub async fn feed_holds_each_once(s: &Server, key: &str, content_ids: &[String]) -> Result<(), FeedShortfall> {
    let per_item = feed_events(s, key, content_ids).await;
    let mut missing = Vec::new();
    for (cid, events) in content_ids.iter().zip(&per_item) {
        let mut once = events.clone();
        once.sort();
        once.dedup();
        if once.len() != events.len() {
            return Err(FeedShortfall::Twice(format!("item {cid}: {events:?}")));
        }
        // An item's order: by version, and within one no processing after
        // its indexing (a retry may follow a failure: failed, then processing).
        let processing = |e: &(String, u64, String)| e.0 == ev::CONTENT_UPDATED && e.2 == "processing";
        let out_of_order = events.iter().enumerate().any(|(i, e)| {
            events[i + 1..].iter().any(|l| l.1 < e.1 || (l.1 == e.1 && e.0 == ev::CONTENT_INDEXED && processing(l)))
        });
        if out_of_order {
            return Err(FeedShortfall::OutOfOrder(format!("item {cid}: {events:?}")));
        }
        if !events.iter().any(|e| e.0 == ev::CONTENT_INDEXED) {
            missing.push(format!("{cid}: {events:?}"));
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(FeedShortfall::Missing(missing)) }
}
