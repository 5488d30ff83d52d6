//! A generated bad-input sweep (see `support::fuzz`) against every route and
//! the WebSocket protocol. The property: never a 5xx, always the contract's
//! error shape on 4xx, and no panic in the Worker's log. The soak runs the
//! same sweeps at a larger size.

use crate::support::fuzz::{frame_sweep, request_sweep};
use crate::support::*;

#[tokio::test]
async fn generated_requests_never_get_a_5xx() {
    let s = &shared().server;
    let sweep = request_sweep(s, 0xAC70_2026, 400, 1).await;
    assert_eq!(sweep.requests, 400);
    assert!(sweep.problems.is_empty(), "{:#?}", sweep.problems);
    assert!(!s.log_text().contains("panicked"), "a panic was logged");
}

#[tokio::test]
async fn generated_frames_never_break_a_session() {
    let s = &shared().server;
    let sweep = frame_sweep(s, 0x0005_0CE7, 60).await;
    assert!(sweep.problems.is_empty(), "{:#?}", sweep.problems);
    assert_eq!(s.get("/healthz").await.status, 200);
}
