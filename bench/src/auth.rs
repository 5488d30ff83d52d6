//! `auth`: what authentication costs per request. One server, with JWT users
//! configured as the e2e suite does (`support::jwt`); the same cheap read
//! routes are asked by each kind of principal, one at a time and 16 at a
//! time, and each kind's latency and Worker CPU per request are set against
//! the anonymous caller's, who is not authenticated at all. A write route
//! that is refused after its rate-limit token is taken shows the cost of the
//! RateLimitActor call, against the operator, whom the limits skip.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::report::{load_average, Section};
use crate::stack::{client, cpu_delta, doc_body, Stack};
use crate::stats::{median, ms, num, summarize};
use crate::support::jwt;

pub struct Options {
    /// Requests per measured pass, at every concurrency.
    pub requests: usize,
    pub concurrency: Vec<usize>,
    pub reps: usize,
    /// Wait for a quiet machine first (not with `--quick`).
    pub wait_quiet: bool,
}

/// The isolate's API key cache lifetime (`api::auth::KEY_CACHE_MS`), plus a
/// margin: a key not used for this long is looked up in D1 again.
const KEY_CACHE: Duration = Duration::from_millis(5_500);

/// The 1-minute load average the section waits for before measuring, and
/// how long it waits at most.
const QUIET_LOAD: f64 = 1.5;
const QUIET_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq)]
enum Route {
    Me,
    Content,
    RefusedWrite,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Me => "`GET /api/me`",
            Route::Content => "`GET /api/content/{id}` (a public item)",
            Route::RefusedWrite => "`POST /api/content` refused with 422 after its rate-limit token",
        }
    }
}

/// A kind of principal: the credentials its requests carry in turn.
struct Kind {
    label: &'static str,
    creds: Vec<Option<String>>,
    /// Every request a key the isolate has not cached (each used once per
    /// pass, and not again within the cache's lifetime).
    cold: bool,
}

/// One measured pass of one (route, kind, concurrency).
#[derive(Default)]
struct Figures {
    p50: Vec<f64>,
    p99: Vec<f64>,
    per_sec: Vec<f64>,
    /// Worker (workerd) CPU ms per request.
    cpu: Vec<f64>,
    errors: Vec<String>,
}

struct Row {
    route: Route,
    kind: usize,
    c: usize,
    f: Figures,
}

pub async fn run(opts: &Options) -> Section {
    let mut sec = Section::new("Authentication: cost per request");
    let jwt_vars = jwt::server_vars();
    let vars: Vec<(&str, &str)> = jwt_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stack = Stack::start("auth", &vars).await;
    match measure(&stack, opts).await {
        Ok(body) => sec.body = body,
        Err(e) => sec.body = format!("Could not set up the measurement: {e}\n"),
    }
    stack.stop().await;
    sec
}

/// A row's measured cells, up to its Worker CPU: `| kind | c | p50 | p99 |
/// req/s | CPU |` (the tables add their differences after them).
fn measured_cells(label: &str, c: usize, f: &Figures) -> String {
    format!("| {label} | {c} | {} | {} | {:.0} | {} |", ms(median(&f.p50)), ms(median(&f.p99)), median(&f.per_sec), num(median(&f.cpu)))
}

async fn measure(stack: &Stack, opts: &Options) -> Result<String, String> {
    let item = public_item(stack).await?;
    let pool = opts.requests.max(1);
    eprintln!("[bench] auth: minting {pool} API keys for the cold-key rows");
    let cold = mint_keys(stack, pool).await?;
    let claims = jwt::claims("bench-user", "bench", "content:read");
    let (rs, es, hs) = tokio::task::spawn_blocking(move || (jwt::sign("RS256", &claims), jwt::sign("ES256", &claims), jwt::sign("HS256", &claims)))
        .await
        .map_err(|e| e.to_string())?;
    let kinds = [
        Kind { label: "anonymous", creds: vec![None], cold: false },
        Kind { label: "API key, cached in the isolate", creds: vec![Some(stack.server.key.clone())], cold: false },
        Kind { label: "API key, not cached (D1 lookup)", creds: cold.into_iter().map(Some).collect(), cold: true },
        Kind { label: "JWT RS256", creds: vec![Some(rs)], cold: false },
        Kind { label: "JWT ES256", creds: vec![Some(es)], cold: false },
        Kind { label: "JWT HS256 (local use)", creds: vec![Some(hs)], cold: false },
        Kind { label: "operator token", creds: vec![Some(stack.server.admin_token.clone())], cold: false },
    ];
    // The refused write: the cached key spends a token of its write bucket
    // (its limit is far above what the bench sends); the operator spends none.
    let writers = [1, kinds.len() - 1];
    let mut rows = Vec::new();
    for &c in &opts.concurrency {
        for route in [Route::Me, Route::Content] {
            rows.extend((0..kinds.len()).map(|kind| Row { route, kind, c, f: Figures::default() }));
        }
        rows.extend(writers.iter().map(|&kind| Row { route: Route::RefusedWrite, kind, c, f: Figures::default() }));
    }
    let load_before = if opts.wait_quiet { wait_for_quiet().await } else { format!("{} (not waited for: --quick)", load_average()) };
    let http = client(None);
    let mut cold_used = Instant::now() - KEY_CACHE;
    let t0 = Instant::now();
    // Passes interleave the kinds, so a change of load falls on all alike.
    for rep in 0..=opts.reps.max(1) {
        for row in rows.iter_mut() {
            let kind = &kinds[row.kind];
            if kind.cold {
                tokio::time::sleep(KEY_CACHE.saturating_sub(cold_used.elapsed())).await;
            }
            let p = pass(stack, &http, row.route, &item, &kind.creds, opts.requests, row.c).await;
            if kind.cold {
                cold_used = Instant::now();
            }
            row.f.errors.extend(p.errors.into_iter().take(2));
            if rep == 0 {
                continue; // warm-up
            }
            let s = summarize(&p.latencies);
            row.f.p50.push(s.p50);
            row.f.p99.push(s.p99);
            row.f.per_sec.push(p.latencies.len() as f64 / p.wall.max(1e-9));
            row.f.cpu.push(p.worker_cpu_ms / opts.requests as f64);
        }
        eprintln!("[bench] auth: pass {rep} of {} done ({:.0} s)", opts.reps.max(1), t0.elapsed().as_secs_f64());
    }
    let load_after = load_average();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "One `wrangler dev` with JWT users configured as the e2e suite does (`JWT_ISSUER`, a JWKS with an RSA and a \
         P-256 key, an HS256 secret). Each row is {} requests per pass, sent c at a time (c = {}) over one pooled HTTP \
         client, by one kind of principal; one warm-up pass, then {} measured passes, with the kinds interleaved; the table shows \
         the median of the per-pass figures. *Worker CPU* is the CPU time of the workerd process that runs the Worker \
         and its actors over the pass, from /proc, divided by the requests (the clock ticks in 10 ms, so a figure is good \
         to about {} ms); it leaves out wrangler's proxy, which every request crosses alike. *Δ* is the difference to the \
         anonymous row of the same route and concurrency: the cost of authentication. The uncached key rows use {} keys \
         minted for the bench, each once per pass and not again within the isolate's key cache lifetime, so every \
         request looks its key up in D1. The JWTs carry `content:read`; the cached key is the harness's \
         (`content:manage`).\n",
        opts.requests,
        opts.concurrency.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        opts.reps.max(1),
        num(10.0 / opts.requests as f64),
        pool
    );
    let _ = writeln!(b, "Load average (1, 5, 15 min) when measuring began: {load_before}; at the end: {load_after}.\n");
    for route in [Route::Me, Route::Content] {
        let _ = writeln!(b, "#### {}\n", route.label());
        let _ = writeln!(b, "| principal | c | p50 (ms) | p99 (ms) | req/s | Worker CPU per request (ms) | Δ p50 (ms) | Δ Worker CPU (ms) |");
        let _ = writeln!(b, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for &c in &opts.concurrency {
            let base = rows.iter().find(|r| r.route == route && r.c == c && r.kind == 0).map(|r| (median(&r.f.p50), median(&r.f.cpu)));
            let (base_p50, base_cpu) = base.unwrap_or((f64::NAN, f64::NAN));
            for r in rows.iter().filter(|r| r.route == route && r.c == c) {
                let (p50, cpu) = (median(&r.f.p50), median(&r.f.cpu));
                let delta = |x: f64, base: f64| if r.kind == 0 { "–".to_string() } else { signed(x - base) };
                let _ = writeln!(b, "{} {} | {} |", measured_cells(kinds[r.kind].label, c, &r.f), delta(p50, base_p50), delta(cpu, base_cpu));
            }
        }
        let _ = writeln!(b);
    }
    let _ = writeln!(
        b,
        "#### The rate limit's actor call\n\nNo setting turns the limits off; the operator is the one principal they skip. \
         So a write route that takes a token and then refuses the body (`POST /api/content` with `{{\"title\":\"\",\"body\":\"x\"}}`: \
         422 after `limits::spend`, no actor or run made) is sent as the cached key (one RateLimitActor call) and as the \
         operator (none). *Δ* is key minus operator; the rate limit's own cost is that Δ less the key-versus-operator \
         difference of `GET /api/me` above (shown as *less auth*).\n"
    );
    let _ = writeln!(b, "| principal | c | p50 (ms) | p99 (ms) | req/s | Worker CPU per request (ms) | Δ p50 (ms) | Δ Worker CPU (ms) | less auth: p50 / CPU (ms) |");
    let _ = writeln!(b, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let fig = |route: Route, kind: usize, c: usize| {
        rows.iter().find(|r| r.route == route && r.kind == kind && r.c == c).map(|r| (median(&r.f.p50), median(&r.f.cpu))).unwrap_or((f64::NAN, f64::NAN))
    };
    for &c in &opts.concurrency {
        let (op_p50, op_cpu) = fig(Route::RefusedWrite, writers[1], c);
        let (me_key, me_key_cpu) = fig(Route::Me, writers[0], c);
        let (me_op, me_op_cpu) = fig(Route::Me, writers[1], c);
        for r in rows.iter().filter(|r| r.route == Route::RefusedWrite && r.c == c) {
            let (p50, cpu) = (median(&r.f.p50), median(&r.f.cpu));
            let key = r.kind == writers[0];
            let (dp, dc) = (p50 - op_p50, cpu - op_cpu);
            let _ = writeln!(
                b,
                "{} {} | {} | {} |",
                measured_cells(kinds[r.kind].label, c, &r.f),
                if key { signed(dp) } else { "–".into() },
                if key { signed(dc) } else { "–".into() },
                if key { format!("{} / {}", signed(dp - (me_key - me_op)), signed(dc - (me_key_cpu - me_op_cpu))) } else { "–".into() },
            );
        }
    }
    let _ = writeln!(
        b,
        "\nThe bucket lives in the actor's memory (no storage write), so the call is one Durable Object hop: a stub \
         fetch with a small JSON body each way. All requests of one key at one class go to the same actor, which answers \
         them one at a time."
    );
    let errors: Vec<String> = rows
        .iter()
        .filter_map(|r| r.f.errors.first().map(|e| format!("{} as {} (c={}): {e}", r.route.label(), kinds[r.kind].label, r.c)))
        .collect();
    crate::report::first_errors(&mut b, "First errors", &errors);
    Ok(b)
}

fn signed(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x < 0.0 {
        format!("−{}", num(-x))
    } else {
        format!("+{}", num(x))
    }
}

/// Waits (at most [`QUIET_WAIT`]) for the 1-minute load average to drop
/// below [`QUIET_LOAD`], as other work may share the machine; returns the
/// load average it starts measuring at, with a note if it gave up waiting.
async fn wait_for_quiet() -> String {
    let one_min = || load_average().split_whitespace().next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    let t0 = Instant::now();
    while one_min() >= QUIET_LOAD {
        if t0.elapsed() >= QUIET_WAIT {
            return format!("{} (still above {QUIET_LOAD} after waiting {} s)", load_average(), QUIET_WAIT.as_secs());
        }
        eprintln!("[bench] auth: load average {}; waiting for < {QUIET_LOAD}", load_average());
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let waited = t0.elapsed().as_secs();
    if waited > 0 {
        format!("{} (after waiting {waited} s for < {QUIET_LOAD})", load_average())
    } else {
        load_average()
    }
}

/// A public item, submitted and waited for until its run ended, so no
/// pipeline work runs while the passes do.
async fn public_item(stack: &Stack) -> Result<String, String> {
    let body = json!({ "title": "Auth bench item", "body": doc_body("auth", 1, 1500), "visibility": "public" });
    let r = stack.http.post(stack.url("/api/content")).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let id = v["content_id"].as_str().filter(|_| status == 202).ok_or_else(|| format!("submit answered {status}: {v}"))?.to_string();
    match stack.poll_content(&id, Duration::from_secs(180)).await.as_deref() {
        Some("indexed") => Ok(id),
        other => Err(format!("the public item ended {other:?}")),
    }
}

/// `n` API keys of tenant `bench` (read only), 8 minted at a time.
async fn mint_keys(stack: &Stack, n: usize) -> Result<Vec<String>, String> {
    let mint = |i: usize| async move {
        let body = json!({ "tenant": "bench", "name": format!("auth bench {i}"), "scopes": ["content:read"] });
        let r = stack.http.post(stack.url("/admin/keys")).bearer_auth(&stack.server.admin_token).json(&body).send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["key"].as_str().filter(|_| status == 201).map(str::to_string).ok_or_else(|| format!("POST /admin/keys answered {status}: {v}"))
    };
    let mut keys = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        for k in futures_util::future::join_all(chunk.iter().map(|&i| mint(i))).await {
            keys.push(k?);
        }
    }
    Ok(keys)
}

struct Pass {
    latencies: Vec<f64>,
    wall: f64,
    worker_cpu_ms: f64,
    errors: Vec<String>,
}

/// `n` requests of `route`, `c` in flight, the i-th carrying `creds[i % len]`.
async fn pass(stack: &Stack, http: &reqwest::Client, route: Route, item: &str, creds: &[Option<String>], n: usize, c: usize) -> Pass {
    let next = AtomicUsize::new(0);
    let (url, expect) = match route {
        Route::Me => (stack.url("/api/me"), 200),
        Route::Content => (stack.url(&format!("/api/content/{item}")), 200),
        Route::RefusedWrite => (stack.url("/api/content"), 422),
    };
    let build = |cred: &Option<String>| {
        let req = match route {
            Route::RefusedWrite => http.post(&url).json(&json!({ "title": "", "body": "x" })),
            _ => http.get(&url),
        };
        match cred {
            Some(c) => req.bearer_auth(c),
            None => req,
        }
    };
    let (next, build) = (&next, &build);
    let worker = move || async move {
        let (mut lat, mut errors) = (Vec::new(), Vec::new());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let t = Instant::now();
            match answer(build(&creds[i % creds.len()]), expect).await {
                Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                Err(e) => errors.push(e),
            }
        }
        (lat, errors)
    };
    let before = stack.procs();
    let t0 = Instant::now();
    let done = futures_util::future::join_all((0..c.max(1)).map(|_| worker())).await;
    let wall = t0.elapsed().as_secs_f64();
    let worker_cpu_ms = cpu_delta(&before, &stack.procs()).iter().filter(|(r, _)| r == "worker").map(|(_, v)| v).sum();
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for (l, e) in done {
        latencies.extend(l);
        errors.extend(e);
    }
    Pass { latencies, wall, worker_cpu_ms, errors }
}

/// Sends one request and reads its whole body (so the connection is reused).
async fn answer(req: reqwest::RequestBuilder, expect: u16) -> Result<(), String> {
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    if status == expect {
        Ok(())
    } else {
        Err(format!("answered {status}: {}", text.chars().take(200).collect::<String>()))
    }
}
