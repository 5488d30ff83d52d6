//! `soak`: a steady open-loop submission rate for a fixed number of minutes,
//! reporting per minute what was submitted and indexed, latency, errors, and
//! the server's memory and CPU, to spot leaks, backlog growth or lost pushes.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::report::{load_average, Section};
use crate::stack::{doc_body, Stack};
use crate::stats::{bytes, ms, summarize};
use crate::tracker::Tracker;

pub struct Options {
    pub minutes: u64,
    pub rate: f64,
}

#[derive(Default, Clone)]
struct Minute {
    submitted: usize,
    indexed: usize,
    failed: usize,
    errors: usize,
    lat: Vec<f64>,
}

pub async fn run(opts: &Options) -> Section {
    let mut sec = Section::new(&format!("Soak: {} runs/s for {} min", opts.rate, opts.minutes));
    let stack = Stack::start("soak", &[]).await;
    let tracker = match Tracker::start(&stack).await {
        Ok(t) => t,
        Err(e) => {
            sec.body = format!("Could not subscribe to the feed: {e}\n");
            stack.stop().await;
            return sec;
        }
    };
    let minutes = opts.minutes.max(1) as usize;
    let table: Arc<Mutex<Vec<Minute>>> = Arc::new(Mutex::new(vec![Minute::default(); minutes + 2]));
    let mut gauges = Vec::new();
    let start = tokio::time::Instant::now();
    let total = (opts.rate * 60.0 * minutes as f64).round() as usize;
    let stack_ref = &stack;
    let submits = (0..total).map(|i| {
        let (table, tracker) = (table.clone(), tracker.clone());
        async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / opts.rate)).await;
            let minute = i * minutes / total.max(1);
            let t0 = Instant::now();
            let body = doc_body("soak", i, 2048);
            match stack_ref.submit(&format!("Soak document {i}"), &body, Some("soak")).await {
                Ok((cid, _)) => {
                    table.lock().unwrap()[minute].submitted += 1;
                    let done = tokio::time::timeout(Duration::from_secs(120), tracker.expect(&cid)).await;
                    let mut t = table.lock().unwrap();
                    match done {
                        Ok(Ok(d)) if d.ok => {
                            t[minute].indexed += 1;
                            t[minute].lat.push(d.at.duration_since(t0).as_secs_f64() * 1000.0);
                        }
                        Ok(Ok(_)) => t[minute].failed += 1,
                        _ => t[minute].errors += 1,
                    }
                }
                Err(_) => table.lock().unwrap()[minute].errors += 1,
            }
        }
    });
    let work = futures_util::future::join_all(submits);
    let sampler = async {
        let mut last_cpu = stack.cpu_ms();
        for m in 0..minutes {
            tokio::time::sleep_until(start + Duration::from_secs(60 * (m as u64 + 1))).await;
            let cpu = stack.cpu_ms();
            gauges.push((stack.rss_kib(), (cpu - last_cpu) / 600.0, load_average()));
            last_cpu = cpu;
            eprintln!("[bench] soak minute {}: rss {}", m + 1, bytes(stack.rss_kib() * 1024));
        }
    };
    tokio::join!(work, sampler);
    let t = table.lock().unwrap().clone();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "Open loop: one 2 KB document every {:.0} ms, each followed to `content.indexed` on the feed \
         socket (or counted as an error after 120 s). Rows are by submit minute; memory and CPU are for \
         wrangler's whole process group at the end of the minute.\n",
        1000.0 / opts.rate
    );
    let _ = writeln!(b, "| minute | submitted | indexed | failed | errors | p50 (ms) | p99 (ms) | server RSS | server CPU (% of one core) | load |");
    let _ = writeln!(b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (m, row) in t.iter().take(minutes).enumerate() {
        let s = summarize(&row.lat);
        let (rss, cpu, load) = gauges.get(m).cloned().unwrap_or((0, f64::NAN, String::new()));
        let _ = writeln!(
            b,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            m + 1,
            row.submitted,
            row.indexed,
            row.failed,
            row.errors,
            ms(s.p50),
            ms(s.p99),
            bytes(rss * 1024),
            cpu,
            load
        );
    }
    sec.body = b;
    tracker.stop();
    stack.stop().await;
    sec
}
