//! Invariants on a finished run: its journal (`GET /api/runs/<id>`) and its
//! event log (`GET /admin/actors/run/<id>`). Problems are pushed as lines, so
//! a scenario reports every broken run rather than stopping at the first.

use std::collections::BTreeMap;

use actorline::domain::retry::{RetryPolicy, RetryTuning};
use actorline::protocol::Stage;
use serde_json::Value;

use crate::support::{ev, Server};

/// The most attempts a stage's policy allows at default tuning (0 for a
/// name that is no stage).
fn max_attempts(stage: &str) -> u64 {
    stage.parse::<Stage>().map_or(0, |s| RetryPolicy::for_stage(s, RetryTuning::default()).max_attempts.into())
}

#[derive(Default)]
pub struct Tally {
    pub runs: usize,
    pub completed: usize,
    pub injected_faults: usize,
    pub other_failed_attempts: usize,
    pub interrupted: usize,
    pub analyze_skipped: usize,
}

fn ms(ts: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts.as_str()?).ok().map(|t| t.timestamp_millis())
}

/// A terminal run view: completed; every stage completed (analyze, the one
/// optional stage, may be skipped); attempts within policy and equal to the
/// history; at most one completed attempt per stage; backoff caps growing,
/// each draw within its cap, and each retry waiting at least its draw.
pub fn check_run(run: &str, view: &Value, tally: &mut Tally, failures: &mut Vec<String>) {
    tally.runs += 1;
    if view["status"] != "completed" {
        failures.push(format!("run {run} ended {}: {view}", view["status"]));
        return;
    }
    tally.completed += 1;
    let stages = view["stages"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
    if names != Stage::ALL.map(Stage::as_str) {
        failures.push(format!("run {run}: stages {names:?}"));
    }
    for st in &stages {
        let name = st["name"].as_str().unwrap_or("?");
        let hist = st["history"].as_array().cloned().unwrap_or_default();
        let attempts = st["attempts"].as_u64().unwrap_or(0);
        let mut bad = |what: String| failures.push(format!("run {run} stage {name}: {what}"));
        match st["status"].as_str() {
            Some("completed") => {}
            Some("skipped") if name == "analyze" => tally.analyze_skipped += 1,
            other => bad(format!("ended {other:?}")),
        }
        if attempts == 0 || attempts > max_attempts(name) {
            bad(format!("{attempts} attempts, policy allows 1..={}", max_attempts(name)));
        }
        if attempts as usize != hist.len() {
            bad(format!("{attempts} attempts but {} history entries", hist.len()));
        }
        let completions = hist.iter().filter(|h| h["outcome"] == "completed").count();
        if completions > 1 {
            bad(format!("completed {completions} times"));
        }
        for h in &hist {
            match h["outcome"].as_str() {
                Some("interrupted") => tally.interrupted += 1,
                Some("failed") if h["error"].as_str().is_some_and(|e| e.contains("injected fault")) => tally.injected_faults += 1,
                Some("failed") => tally.other_failed_attempts += 1,
                _ => {}
            }
            if let (Some(b), Some(c)) = (h["backoff_ms"].as_u64(), h["backoff_cap_ms"].as_u64()) {
                if b < 1 || b > c {
                    bad(format!("backoff {b} outside 1..={c}"));
                }
            }
        }
        let caps: Vec<u64> = hist.iter().filter_map(|h| h["backoff_cap_ms"].as_u64()).collect();
        if caps.windows(2).any(|w| w[1] <= w[0] && w[0] < 30_000) {
            bad(format!("backoff caps do not grow: {caps:?}"));
        }
        for w in hist.windows(2) {
            let (Some(end), Some(start)) = (ms(&w[0]["finished_at"]), ms(&w[1]["started_at"])) else { continue };
            let backoff = w[0]["backoff_ms"].as_i64().unwrap_or(0);
            if start - end + 2 < backoff {
                bad(format!("retried {} ms after a {backoff} ms backoff", start - end));
            }
        }
    }
}

/// The run's event log, checked complete (seqs 1..=last_seq, dense) and with
/// exactly one stage.completed or stage.skipped per stage. Returns the log.
pub async fn check_log(s: &Server, run: &str, failures: &mut Vec<String>) -> Vec<Value> {
    let insp = s.admin_get(&format!("/admin/actors/run/{run}")).await;
    let log = insp.body["events"]["tail"].as_array().cloned().unwrap_or_default();
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let last = insp.body["events"]["last_seq"].as_u64().unwrap_or(0);
    if insp.status != 200 || seqs != (1..=last).collect::<Vec<_>>() {
        failures.push(format!("run {run}: log incomplete or not dense (status {}, last_seq {last}): {seqs:?}", insp.status));
    }
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &log {
        if e["event"] == ev::STAGE_COMPLETED || e["event"] == ev::STAGE_SKIPPED {
            *ends.entry(e["data"]["stage"].as_str().unwrap_or("?")).or_default() += 1;
        }
    }
    if ends.len() != Stage::ALL.len() || ends.values().any(|n| *n != 1) {
        failures.push(format!("run {run}: stage ends in the log {ends:?}"));
    }
    log
}
