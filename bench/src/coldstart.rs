//! `coldstart`: the Worker bundle's size, and how long a fresh `wrangler dev`
//! takes from its spawn to the first answers.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Goal, Section};
use crate::stack::{doc_body, process_age, wrangler_cli_pid, Stack};
use crate::stats::{bytes, median, ms, ratio, spread};
use crate::support::root;

fn wasm_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["build", "build/worker"] {
        if let Ok(d) = std::fs::read_dir(root().join(dir)) {
            let mut v: Vec<PathBuf> = d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "wasm")).collect();
            v.sort();
            out.extend(v);
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// Size after `gzip -9`, counted from the pipe.
fn gzipped(path: &PathBuf) -> Option<u64> {
    let mut child = Command::new("gzip").arg("-9c").arg(path).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut out = child.stdout.take()?;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => return None,
        }
    }
    child.wait().ok()?.success().then_some(n)
}

/// The module as `make build` deploys it: without its name section
/// (scripts/wasm_names.mjs), written beside the run's temp files.
fn as_deployed(path: &PathBuf) -> Option<PathBuf> {
    let out = std::env::temp_dir().join(format!("actorline-deployed-{}.wasm", std::process::id()));
    let ok = Command::new("node").arg(root().join("scripts/wasm_names.mjs")).arg("strip").arg(path).arg(&out).status().ok()?.success();
    ok.then_some(out)
}

struct Sample {
    spawn_to_ready: f64,
    spawn_to_health: f64,
    first_post: f64,
    spawn_to_post: f64,
    first_run: f64,
    warm_post: f64,
}

/// The Worker bundle wrangler would upload for the peer (`wrangler deploy
/// --dry-run --outdir`): (file, raw bytes, gzip -9 bytes), after build.sh.
fn peer_bundle() -> Result<Vec<(String, u64, u64)>, String> {
    let dir = crate::repo().join("bench/peer-agents");
    let out = std::env::temp_dir().join(format!("actorline-peer-bundle-{}", std::process::id()));
    let run = |cmd: &mut Command| match cmd.current_dir(&dir).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).chars().take(300).collect::<String>()),
        Err(e) => Err(e.to_string()),
    };
    run(Command::new("bash").arg("build.sh"))?;
    run(Command::new(crate::repo().join("node_modules/.bin/wrangler")).args(["deploy", "--dry-run", "--outdir"]).arg(&out).env("WRANGLER_SEND_METRICS", "false"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| ["js", "mjs", "wasm"].iter().any(|k| x == *k))).collect();
    files.sort();
    let rows = files.iter().map(|f| (f.file_name().unwrap_or_default().to_string_lossy().to_string(), std::fs::metadata(f).map(|m| m.len()).unwrap_or(0), gzipped(f).unwrap_or(0))).collect();
    let _ = std::fs::remove_dir_all(&out);
    Ok(rows)
}

async fn one(rep: usize, peer: bool) -> Option<Sample> {
    let stack = if peer { Stack::start_peer(&format!("coldstart-peer{rep}")).await } else { Stack::start(&format!("coldstart{rep}"), &[]).await };
    let ready = stack.ready_at;
    // The wrangler CLI process's age gives its spawn instant (10 ms resolution).
    let pid = wrangler_cli_pid(stack.server.group.pgid()).unwrap_or(stack.server.group.pgid());
    let spawned = process_age(pid).and_then(|age| Instant::now().checked_sub(age)).unwrap_or(stack.start_called);
    let spawned = spawned.max(stack.start_called);
    let mut health = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = stack.http.get(stack.url("/healthz")).send().await {
            if r.status().as_u16() == 200 {
                health = Some(Instant::now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let health = health?;
    let t = Instant::now();
    let first = stack.submit("Cold start", &doc_body("coldstart", rep, 2048), None).await.ok()?;
    let posted = Instant::now();
    let run_deadline = Instant::now() + Duration::from_secs(60);
    let mut run_done = None;
    while Instant::now() < run_deadline {
        if let Ok((200, v)) = stack.get_json(&format!("/api/runs/{}", first.1)).await {
            if matches!(v["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                run_done = Some(Instant::now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let w = Instant::now();
    let warm_ok = stack.submit("Warm", &doc_body("coldstart", rep + 100, 2048), None).await.is_ok();
    let warm_post = if warm_ok { w.elapsed().as_secs_f64() * 1000.0 } else { f64::NAN };
    stack.stop().await;
    let f = |d: Duration| d.as_secs_f64() * 1000.0;
    Some(Sample {
        spawn_to_ready: f(ready.duration_since(spawned)),
        spawn_to_health: f(health.duration_since(spawned)),
        first_post: f(posted.duration_since(t)),
        spawn_to_post: f(posted.duration_since(spawned)),
        first_run: run_done.map(|d| f(d.duration_since(t))).unwrap_or(f64::NAN),
        warm_post,
    })
}

pub async fn run(reps: usize, with_peer: bool) -> Section {
    let mut sec = Section::new("Cold start and bundle size");
    let mut b = String::new();
    let files = wasm_files();
    if files.is_empty() {
        let _ = writeln!(b, "No wasm bundle under build/ (run `make build`).\n");
    } else {
        let _ = writeln!(b, "| bundle | raw | gzip -9 |\n|---|---:|---:|");
        let mut wasm_gz = 0;
        for f in &files {
            let raw = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            let gz = gzipped(f).unwrap_or(0);
            let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
            let _ = writeln!(b, "| `{rel}` (with its name section: what dev, tests and these figures run) | {} ({raw} B) | {} ({gz} B) |", bytes(raw), bytes(gz));
            // The goal is on what deploys (`make build`).
            match as_deployed(f) {
                Some(d) => {
                    let (raw, gz) = (std::fs::metadata(&d).map(|m| m.len()).unwrap_or(0), gzipped(&d).unwrap_or(0));
                    let _ = std::fs::remove_file(&d);
                    wasm_gz += gz;
                    let _ = writeln!(b, "| `{rel}` as `make build` deploys it (no name section) | {} ({raw} B) | {} ({gz} B) |", bytes(raw), bytes(gz));
                }
                None => wasm_gz += gz,
            }
        }
        if with_peer {
            match peer_bundle() {
                Ok(rows) => {
                    for (name, raw, gz) in &rows {
                        let _ = writeln!(b, "| peer: `{name}` (`wrangler deploy --dry-run`) | {} ({raw} B) | {} ({gz} B) |", bytes(*raw), bytes(*gz));
                    }
                    let (raw, gz) = rows.iter().fold((0, 0), |(r, g), (_, a, z)| (r + a, g + z));
                    let _ = writeln!(b, "| peer: whole bundle | {} | {} |", bytes(raw), bytes(gz));
                }
                Err(e) => {
                    let _ = writeln!(b, "\n(The peer's bundle could not be built: `{e}`)");
                }
            }
        }
        b.push('\n');
        sec.goals.push(Goal::new("wasm bundle as deployed, gzipped", "≤ 1.0 MB", wasm_gz as f64 / 1e6, |v| v <= 1.0, "MB"));
    }
    let mut systems = vec![("Actorline", false)];
    if with_peer {
        systems.push(("peer", true));
    }
    let mut all = Vec::new();
    for (name, peer) in systems {
        let mut samples = Vec::new();
        for rep in 0..reps.max(1) {
            if let Some(s) = one(rep, peer).await {
                eprintln!(
                    "[bench] coldstart {name} rep {rep}: spawn→ready {} ms, spawn→/healthz 200 {} ms, first POST {} ms",
                    ms(s.spawn_to_ready),
                    ms(s.spawn_to_health),
                    ms(s.first_post)
                );
                samples.push(s);
            }
        }
        all.push((name, samples));
    }
    let _ = writeln!(
        b,
        "Each repetition uses a fresh state dir; D1 migrations are applied first (not counted), and the peer's run.sh \
         builds (a no-op once built) and migrates before it starts wrangler. \"Spawn\" is the start time of wrangler's CLI \
         process (`wrangler-dist/cli.js`) from /proc (10 ms resolution); the port is only known from its `Ready on` line, \
         so `/healthz` is polled (every 5 ms) from then on. Median of {} repetition(s); each system's repetitions in its own column.\n",
        reps.max(1)
    );
    let head: Vec<String> = all.iter().map(|(n, _)| format!("{n} median (ms) | {n} repetitions")).collect();
    let _ = writeln!(b, "| step | {} |{}", head.join(" | "), if all.len() > 1 { " peer ÷ Actorline |" } else { "" });
    let _ = writeln!(b, "|---|{}{}", "---:|---|".repeat(all.len()), if all.len() > 1 { "---:|" } else { "" });
    type Get = fn(&Sample) -> f64;
    let rows: [(&str, Get); 6] = [
        ("spawn → `Ready on` line", |s| s.spawn_to_ready),
        ("spawn → first 200 from `GET /healthz`", |s| s.spawn_to_health),
        ("first `POST /api/content` (cold actors, 202)", |s| s.first_post),
        ("spawn → first 202 from `POST /api/content`", |s| s.spawn_to_post),
        ("first POST sent → its run `completed` (polled every 10 ms)", |s| s.first_run),
        ("second `POST /api/content` (warm)", |s| s.warm_post),
    ];
    for (name, get) in rows {
        let meds: Vec<f64> = all.iter().map(|(_, s)| median(&s.iter().map(get).collect::<Vec<_>>())).collect();
        let cells: Vec<String> = all.iter().zip(&meds).map(|((_, s), m)| format!("{} | {}", ms(*m), spread(&s.iter().map(get).collect::<Vec<_>>(), ms))).collect();
        let r = if meds.len() > 1 { format!(" {} |", ratio(meds[1], meds[0])) } else { String::new() };
        let _ = writeln!(b, "| {name} | {} |{r}", cells.join(" | "));
    }
    sec.body = b;
    sec
}
