//! A V8 CPU profile of the Worker's isolate while a workload runs, through
//! workerd's inspector (the DevTools protocol: Profiler.start / stop). The
//! bundle keeps its wasm name section, so Rust functions show by name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::stack::Stack;
use crate::support::Ws;

/// TCP ports a process listens on (its socket inodes matched in /proc/net/tcp*).
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(l) = std::fs::read_link(e.path()) {
                let l = l.to_string_lossy().to_string();
                if let Some(n) = l.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.push(n.to_string());
                }
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" || !inodes.iter().any(|i| i == f[9]) {
                continue;
            }
            if let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The DevTools WebSocket URL of the Worker's isolate in the runtime workerd.
pub async fn inspector_url(stack: &Stack) -> Option<String> {
    let server_port: Option<u16> = stack.server.base.rsplit(':').next().and_then(|p| p.parse().ok());
    // wrangler's inspector proxy (in its proxy workerd) is the one DevTools
    // endpoint that accepts a client; the runtime's own inspector is taken by it.
    let mut procs = stack.procs();
    procs.retain(|p| p.role == "proxy" || p.role == "worker");
    procs.sort_by_key(|p| p.role != "proxy");
    for p in procs {
        for port in listening_ports(p.pid) {
            if Some(port) == server_port {
                continue;
            }
            let req = stack.http.get(format!("http://127.0.0.1:{port}/json/list")).timeout(Duration::from_secs(2)).send();
            let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(3), req).await else { continue };
            let Ok(list) = r.json::<Value>().await else { continue };
            let targets = list.as_array().cloned().unwrap_or_default();
            if std::env::var_os("BENCH_DEBUG").is_some() {
                eprintln!("[bench] inspector on port {port}: {list}");
            }
            // Prefer the target named after the Worker; miniflare adds internal ones.
            let pick = targets
                .iter()
                .find(|t| t["title"].as_str().is_some_and(|s| s.contains("actorline")) || t["url"].as_str().is_some_and(|s| s.contains("actorline")))
                .or_else(|| targets.first());
            if let Some(u) = pick.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                let u = if u.starts_with("ws://") { u.to_string() } else { format!("ws://{u}") };
                return Some(u.replace("localhost", "127.0.0.1"));
            }
        }
    }
    None
}

pub struct Profiler {
    ws: Ws,
    next: u64,
}

impl Profiler {
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        self.ws.send(Message::Text(json!({"id": id, "method": method, "params": params}).to_string().into())).await.map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["id"].as_u64() == Some(id) {
                        if !v["error"].is_null() {
                            return Err(format!("{method}: {}", v["error"]));
                        }
                        return Ok(v["result"].clone());
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(format!("{method}: inspector socket: {e}")),
                Ok(None) => return Err(format!("{method}: inspector socket closed")),
                Err(_) => return Err(format!("{method}: no answer in 60 s")),
            }
        }
    }

    pub async fn start(url: &str, interval_us: u64) -> Result<Profiler, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("inspector: {e}"))?;
        let mut p = Profiler { ws, next: 0 };
        p.call("Profiler.enable", json!({})).await?;
        p.call("Profiler.setSamplingInterval", json!({"interval": interval_us})).await?;
        p.call("Profiler.start", json!({})).await?;
        Ok(p)
    }

    /// Stops profiling; also fetches the source of the bundled glue script,
    /// so its anonymous functions can be named after the wasm-bindgen import
    /// they implement.
    pub async fn stop(mut self) -> Result<Value, String> {
        let r = self.call("Profiler.stop", json!({})).await?;
        let _ = self.call("Profiler.disable", json!({})).await;
        let mut profile = r["profile"].clone();
        let mut ids: Vec<String> = profile["nodes"]
            .as_array()
            .map(|n| {
                n.iter()
                    .filter(|n| n["callFrame"]["url"].as_str().is_some_and(|u| u.ends_with(".js") || u.ends_with(".mjs")))
                    .filter_map(|n| n["callFrame"]["scriptId"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() && self.call("Debugger.enable", json!({})).await.is_ok() {
            let mut sources = serde_json::Map::new();
            for id in ids {
                if let Ok(src) = self.call("Debugger.getScriptSource", json!({"scriptId": id})).await {
                    sources.insert(id, src["scriptSource"].clone());
                }
            }
            let _ = self.call("Debugger.disable", json!({})).await;
            profile["sources"] = Value::Object(sources);
        }
        let _ = self.ws.close(None).await;
        Ok(profile)
    }
}

/// Sorts a function into a coarse bucket by its (demangled) name.
fn bucket(name: &str, url: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if name == "(idle)" {
        return "idle (isolate waiting for I/O)";
    }
    if name == "(garbage collector)" {
        return "JS garbage collector";
    }
    if name == "(program)" {
        return "runtime outside JS/wasm (workerd, V8 internals)";
    }
    let wasm = url.starts_with("wasm://") || name.starts_with('$') || n.contains("::");
    if !wasm {
        if url.is_empty() {
            if name == "exec" || name.starts_with("exec ") {
                return "runtime: DO SQLite `sql.exec` (runs the statement)";
            }
            if matches!(name, "fetch" | "Request" | "Response" | "Headers" | "set" | "text" | "arrayBuffer" | "json" | "bytes") {
                return "runtime: fetch, Request, Response, Headers (actor calls, outbound HTTP)";
            }
            if matches!(name, "decode" | "encode" | "encodeInto") {
                return "runtime: TextDecoder/TextEncoder (strings across the wasm boundary)";
            }
            if matches!(name, "idFromName" | "getStub" | "newUniqueId") {
                return "runtime: Durable Object ids and stubs (idFromName hashes the name)";
            }
            if name.starts_with("wasm-to-js") || name.starts_with("js-to-wasm") {
                return "wasm ↔ JS transitions";
            }
            return "runtime: other APIs (setAlarm, timers, WebSocket, D1 bindings, …)";
        }
        if url.ends_with("index.js") || url.ends_with("shim.mjs") || url.ends_with("shim.js") {
            return "JS: wasm-bindgen glue (build/index.js)";
        }
        return "JS: other (miniflare / wrangler wrappers)";
    }
    let rules: [(&[&str], &str); 9] = [
        (&["serde_json", "serde::", "serde_wasm_bindgen", "ryu", "itoa"], "Rust: JSON (serde_json)"),
        (&["nlp::", "tokenize", "embed", "chunk", "summarize", "sentiment", "extract"], "Rust: NLP (tokenize, embed, summarize, extract)"),
        (&["domain::vector", "vector::", "cosine", "f32"], "Rust: vectors (cosine, encode)"),
        (&["dlmalloc", "alloc::", "__rust_alloc", "__rust_dealloc", "__rust_realloc", "memcpy", "memmove", "memset", "raw_vec"], "Rust: allocation and memcpy"),
        (&["sha2", "hmac", "digest"], "Rust: hashing (token HMAC)"),
        (&["wasm_bindgen", "js_sys", "web_sys", "worker::", "worker_sys", "externref"], "Rust: workers-rs / wasm-bindgen bindings"),
        (&["core::fmt", "alloc::fmt", "fmt::"], "Rust: string formatting"),
        (&["chrono", "uuid"], "Rust: time and ids"),
        (&["actorline::", "domain::", "actors::", "store::", "stages::", "catalog::", "api::"], "Rust: Actorline logic (actors, stores, domain)"),
    ];
    for (pats, label) in rules {
        if pats.iter().any(|p| n.contains(p)) {
            return label;
        }
    }
    "Rust: other (std, core, futures)"
}

/// Markdown: buckets and the top functions by self time.
pub fn report(profile: &Value, runs: usize, top: usize) -> String {
    let nodes = profile["nodes"].as_array().cloned().unwrap_or_default();
    let samples = profile["samples"].as_array().cloned().unwrap_or_default();
    let deltas = profile["timeDeltas"].as_array().cloned().unwrap_or_default();
    let mut by_id: HashMap<u64, (String, String)> = HashMap::new();
    for n in &nodes {
        let cf = &n["callFrame"];
        let name = cf["functionName"].as_str().unwrap_or("").to_string();
        let name = if name.is_empty() { "(anonymous)".to_string() } else { name };
        let url = cf["url"].as_str().unwrap_or("").to_string();
        // JS frames: name glue functions after their wasm-bindgen import, and
        // keep where they are, so "(anonymous)" can be told apart.
        let name = if !url.is_empty() && !url.starts_with("wasm://") {
            let file = url.rsplit('/').next().unwrap_or(&url).to_string();
            let (line, col) = (cf["lineNumber"].as_i64().unwrap_or(-1), cf["columnNumber"].as_i64().unwrap_or(-1));
            let glue = cf["scriptId"].as_str().and_then(|id| profile["sources"][id].as_str()).and_then(|src| glue_name(src, line, col));
            match glue {
                Some(g) if name == "(anonymous)" => format!("{g} ({file}:{})", line + 1),
                _ => format!("{name} ({file}:{}:{})", line + 1, col + 1),
            }
        } else {
            name
        };
        by_id.insert(n["id"].as_u64().unwrap_or(0), (name, url));
    }
    // Sample i lasts until sample i+1 (timeDeltas[i+1], in µs).
    let mut self_us: HashMap<(String, String), f64> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        let dt = deltas.get(i + 1).and_then(|d| d.as_f64()).unwrap_or(0.0).max(0.0);
        if let Some(k) = s.as_u64().and_then(|id| by_id.get(&id)) {
            *self_us.entry(k.clone()).or_default() += dt;
        }
    }
    let total: f64 = self_us.values().sum();
    let idle: f64 = self_us.iter().filter(|((n, _), _)| n == "(idle)").map(|(_, v)| v).sum();
    let busy = (total - idle).max(1.0);
    let mut buckets: HashMap<&'static str, f64> = HashMap::new();
    for ((n, u), v) in &self_us {
        *buckets.entry(bucket(n, u)).or_default() += v;
    }
    let mut b = String::new();
    let _ = writeln!(
        b,
        "Profile span {:.1} s; the isolate was busy (not idle) {:.0}% of it while {runs} runs completed. \
         V8 samples wall time, so on a busy machine a descheduled thread still counts as busy: read \
         the shares, not absolute times.\n",
        total / 1e6,
        busy / total.max(1.0) * 100.0,
    );
    let mut bl: Vec<(&str, f64)> = buckets.into_iter().filter(|(k, _)| !k.starts_with("idle")).collect();
    bl.sort_by(|a, b| b.1.total_cmp(&a.1));
    let _ = writeln!(b, "| where (self time) | share of busy isolate time |\n|---|---:|");
    for (k, v) in bl {
        let _ = writeln!(b, "| {k} | {:.1}% |", v / busy * 100.0);
    }
    b.push_str(&by_entry(&nodes, &samples, &deltas, &by_id, busy));
    let mut fl: Vec<(&(String, String), &f64)> = self_us.iter().filter(|((n, _), _)| n != "(idle)").collect();
    fl.sort_by(|a, b| b.1.total_cmp(a.1));
    let _ = writeln!(b, "\nTop {top} functions by self time:\n\n| function | share |\n|---|---:|");
    for ((n, _), v) in fl.into_iter().take(top) {
        let short: String = n.replace('|', "\\|").chars().take(120).collect();
        let _ = writeln!(b, "| `{short}` | {:.1}% |", *v / busy * 100.0);
    }
    b
}

/// Which part of Actorline a frame belongs to: an actor's module
/// (`actorline::actors::session::…` → actor `session`), an actor kind's
/// operation dispatch (`actors::ops::ContentCall::…`), or the HTTP routes
/// (`actorline::api::…`).
fn entry_of(name: &str) -> Option<String> {
    if let Some(rest) = name.split("actorline::actors::").nth(1) {
        let mut path = rest.split("::");
        let module = path.next().unwrap_or(rest);
        // `ops::ContentCall::serve` dispatches one actor kind's operations.
        if module == "ops" {
            if let Some(call) = path.next().filter(|c| c.ends_with("Call")) {
                return Some(format!("actor operations `{call}`"));
            }
        }
        return Some(format!("actor `{module}`"));
    }
    name.contains("actorline::api::").then(|| "Worker: HTTP routes (`api`)".to_string())
}

/// Busy time by the outermost Actorline actor or route on each sample's
/// stack: each Durable Object event starts its own stack, so this splits the
/// isolate's time by actor kind, the runtime and glue it calls included.
fn by_entry(nodes: &[Value], samples: &[Value], deltas: &[Value], names: &HashMap<u64, (String, String)>, busy: f64) -> String {
    let mut parent: HashMap<u64, u64> = HashMap::new();
    for n in nodes {
        let id = n["id"].as_u64().unwrap_or(0);
        for c in n["children"].as_array().into_iter().flatten() {
            if let Some(c) = c.as_u64() {
                parent.insert(c, id);
            }
        }
    }
    let mut memo: HashMap<u64, Option<String>> = HashMap::new();
    let mut outermost = |mut id: u64| -> Option<String> {
        if let Some(hit) = memo.get(&id) {
            return hit.clone();
        }
        let start = id;
        let mut found = None;
        loop {
            if let Some(e) = names.get(&id).and_then(|(n, _)| entry_of(n)) {
                found = Some(e);
            }
            match parent.get(&id) {
                Some(&p) => id = p,
                None => break,
            }
        }
        memo.insert(start, found.clone());
        found
    };
    let mut time: HashMap<String, f64> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        let Some(id) = s.as_u64() else { continue };
        if names.get(&id).is_some_and(|(n, _)| n == "(idle)") {
            continue;
        }
        let dt = deltas.get(i + 1).and_then(|d| d.as_f64()).unwrap_or(0.0).max(0.0);
        let key = outermost(id).unwrap_or_else(|| "outside any actor or route (event loop, GC, wrappers)".to_string());
        *time.entry(key).or_default() += dt;
    }
    let mut rows: Vec<(String, f64)> = time.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut b = String::from("\n| where (inclusive: the actor or route on the stack, with what it calls) | share of busy isolate time |\n|---|---:|\n");
    for (k, v) in rows {
        let _ = writeln!(b, "| {k} | {:.1}% |", v / busy * 100.0);
    }
    b
}

/// Turns the DevTools `Network` domain of the Worker's isolate on or off
/// through wrangler's inspector proxy. wrangler dev enables it for its
/// inspector, so every subrequest (each actor call, D1 query, outbound fetch)
/// emits events that the proxy workerd forwards to node one HTTP request each;
/// in wrangler 4.86 each such request also leaves a socket in CLOSE-WAIT,
/// which exhausts the proxy's 20,000 descriptors after ~1,000 runs.
pub async fn set_network(stack: &Stack, on: bool) -> Result<(), String> {
    let url = inspector_url(stack).await.ok_or("no inspector found")?;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| format!("inspector: {e}"))?;
    let mut p = Profiler { ws, next: 0 };
    p.call(if on { "Network.enable" } else { "Network.disable" }, json!({})).await?;
    let _ = p.ws.close(None).await;
    Ok(())
}

/// The runtime workerd's own HTTP socket, which wrangler's proxy forwards to:
/// requests there skip the dev proxy (one workerd hop, its descriptors, its
/// DevTools plumbing), which is closer to how the Worker runs in production.
pub async fn direct_base(stack: &Stack) -> Option<String> {
    let public: Option<u16> = stack.server.base.rsplit(':').next().and_then(|p| p.parse().ok());
    for p in stack.procs().into_iter().filter(|p| p.role == "worker") {
        for port in listening_ports(p.pid) {
            if Some(port) == public {
                continue;
            }
            let base = format!("http://127.0.0.1:{port}");
            let req = stack.http.get(format!("{base}/healthz")).timeout(Duration::from_secs(2)).send();
            let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(3), req).await else { continue };
            if let Ok(v) = r.json::<Value>().await {
                if v["name"] == "actorline" {
                    return Some(base);
                }
            }
        }
    }
    None
}

/// The wasm-bindgen import a bundled glue function implements: the last
/// `__wbg_<name>_<hash>` key before its position (`__wbg_set` for
/// `__wbg_set_145a…: __name(function(t, e, n) {…`).
fn glue_name(src: &str, line: i64, col: i64) -> Option<String> {
    let text = src.lines().nth(usize::try_from(line).ok()?)?;
    let upto = text.char_indices().nth(usize::try_from(col).ok()?).map(|(i, _)| i).unwrap_or(text.len());
    let head = &text[..upto];
    let at = head.rfind("__wbg_").or_else(|| head.rfind("__wbindgen_"))?;
    let ident: String = head[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    // Drop the trailing `_<16 hex>` hash.
    let name = match ident.rsplit_once('_') {
        Some((base, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => base.to_string(),
        _ => ident,
    };
    Some(format!("glue {name}"))
}

/// A V8 CPU profile (sampling every 250 µs) of the Worker's isolate while
/// `work` runs; `work` returns the runs it completed. The Markdown report
/// (top `top` functions), or why there is none.
pub async fn profiled<F: std::future::Future<Output = usize>>(stack: &Stack, top: usize, work: F) -> Result<(usize, String), String> {
    let url = inspector_url(stack).await.ok_or("no inspector target found for a CPU profile")?;
    let p = Profiler::start(&url, 250).await.map_err(|e| format!("CPU profile failed to start: {e}"))?;
    let runs = work.await;
    let profile = p.stop().await.map_err(|e| format!("CPU profile failed: {e}"))?;
    // `BENCH_PROFILE_DIR`: also keep the raw profile (it opens in Chrome's DevTools).
    if let Some(dir) = std::env::var_os("BENCH_PROFILE_DIR") {
        let path = std::path::Path::new(&dir).join(format!("worker-{}.cpuprofile", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        if let Err(e) = std::fs::write(&path, profile.to_string()) {
            eprintln!("[bench] could not write {}: {e}", path.display());
        }
    }
    Ok((runs, report(&profile, runs, top)))
}
