//! R3 and R4 on one server: the generated request and frame sweeps of
//! `support::fuzz` at soak size, then every admin route and WebSocket upgrade
//! with bad credentials.

use crate::report::Row;
use crate::support::fuzz::{admin_refusals, frame_sweep, request_sweep, ws_upgrade_refusals, Sweep};
use crate::support::*;
use crate::{Counters, Scale};

/// HTTP requests and 5xx come from the harness's counter; `ws` adds what
/// went over WebSockets.
fn row(s: &Server, scenario: &'static str, counters: Counters, ws: usize, sweep: Sweep, notes: String) -> Row {
    let row = counters.row(scenario, s, sweep.problems);
    let requests = row.requests + ws;
    Row { size: format!("{requests} requests"), requests, server_errors: row.server_errors + sweep.server_errors, notes, ..row }
}

pub async fn run(scale: &Scale, seed: u64) -> [Row; 2] {
    let s = Server::start(&ServerOptions::new(temp_dir("soak-input").join("state")));

    let counters = Counters::start();
    let mut sweep = request_sweep(&s, seed, scale.requests, 4).await;
    let frames = frame_sweep(&s, seed ^ 0x50CE, scale.frames).await;
    let sent = frames.requests;
    sweep.add(frames);
    let notes = format!("{} generated HTTP requests (4 at a time), {sent} WebSocket frames", scale.requests);
    let r3 = row(&s, "R3 bad input", counters, sent, sweep, notes);

    let counters = Counters::start();
    let mut sweep = admin_refusals(&s).await;
    let admin = sweep.requests;
    sweep.add(ws_upgrade_refusals(&s).await);
    let upgrades = sweep.requests - admin;
    let notes = format!("{admin} admin requests (every documented admin route × 6 bad credentials and a tenant key), {upgrades} WebSocket upgrades");
    let r4 = row(&s, "R4 auth", counters, upgrades, sweep, notes);
    [r3, r4]
}
