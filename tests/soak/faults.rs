//! R2: 30% transient faults on embed, index and analyze, with the analyzer
//! running. Every run completes within policy (see `journal::check_run`);
//! analyze, the optional stage, may end skipped once it exhausts its attempts.

use std::time::Duration;

use futures_util::future::join_all;

use crate::journal::{check_run, Tally};
use crate::report::Row;
use crate::support::*;
use crate::{Counters, Scale};

const FAULTS: &str = "embed=0.3,index=0.3,analyze=0.3";
/// Submitted this many at a time, so the faults meet a steady flow of runs.
const WAVE: usize = 10;

pub async fn run(scale: &Scale) -> Row {
    let counters = Counters::start();
    let dir = temp_dir("soak-faults");
    let analyzer = Analyzer::start(&dir.join("analyzer"));
    let opts = ServerOptions { analyzer_url: Some(analyzer.url.clone()), ..ServerOptions::new(dir.join("state")) }
        .var("FAULTS", FAULTS)
        .var("RETRY_BASE_MS", "20");
    let s = Server::start(&opts);

    let mut subs = Vec::new();
    for wave in (0..scale.fault_runs).collect::<Vec<_>>().chunks(WAVE) {
        let s = &s;
        subs.extend(join_all(wave.iter().map(|&i| async move { s.submit(&format!("Faulty {i}"), &document("faults", 200 + i, 1500), None).await })).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut failures = Vec::new();
    let mut tally = Tally::default();
    for (cid, run) in &subs {
        let view = s.wait_run(run, Duration::from_secs(300)).await;
        check_run(run, &view, &mut tally, &mut failures);
        let content = s.get(&format!("/api/content/{cid}")).await;
        if content.body["status"] != "indexed" {
            failures.push(format!("content {cid} of run {run} is {}", content.body["status"]));
        }
    }
    if tally.injected_faults == 0 {
        failures.push("30% faults over every run injected none: FAULTS was not applied".into());
    }
    Row {
        size: format!("{} runs", subs.len()),
        faults: tally.injected_faults,
        losses: tally.runs - tally.completed,
        notes: format!(
            "`FAULTS={FAULTS}`; analyze skipped in {} runs after 3 attempts; {} other failed attempts",
            tally.analyze_skipped, tally.other_failed_attempts
        ),
        ..counters.row("R2 faults", &s, failures)
    }
}
