//! The web client names stages, events and frame types in one module,
//! `web/protocol.js` (its stage list generated into `web/stages.js`). This
//! checks it against `src/protocol.rs`, the single
//! source of truth, so a renamed stage or event cannot silently break the UI.

use actorline::protocol::{EventName, Stage};

fn protocol_js() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/protocol.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn quoted(js: &str, name: &str) -> bool {
    js.contains(&format!("'{name}'")) || js.contains(&format!("\"{name}\""))
}

/// The stage names are generated into `web/stages.js` (a lib test keeps it
/// current); protocol.js must take them from there, not keep its own list.
#[test]
fn protocol_js_takes_the_stages_from_the_generated_module() {
    let js = protocol_js();
    assert!(js.contains("import { STAGES } from './stages.js';"), "web/protocol.js must import STAGES from ./stages.js");
    for s in Stage::ALL {
        assert!(!quoted(&js, s.as_str()), "web/protocol.js names stage {:?} itself", s.as_str());
    }
}

#[test]
fn every_event_name_is_in_protocol_js() {
    let js = protocol_js();
    for e in EventName::ALL {
        assert!(quoted(&js, e.as_str()), "event {:?} is missing from web/protocol.js", e.as_str());
    }
}

#[test]
fn every_frame_type_is_in_protocol_js() {
    let js = protocol_js();
    for t in ["subscribe", "unsubscribe", "ping", "subscribed", "event", "ready", "resync_required", "pong", "error"] {
        assert!(quoted(&js, t), "frame type {t:?} is missing from web/protocol.js");
    }
}

/// The inspector's kind filter offers exactly the kinds the registry lists.
#[test]
fn the_inspectors_kinds_are_the_registered_ones() {
    let js = protocol_js();
    let line = js.lines().find(|l| l.contains("export const ACTOR_KINDS")).expect("ACTOR_KINDS in web/protocol.js");
    let kinds: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
    assert_eq!(kinds, actorline::protocol::REGISTERED_ACTOR_KINDS, "{line}");
}

/// The codes the client asks again after are the server's "for now"
/// refusals (5xx, 429), by the names the server sends in an error frame.
#[test]
fn the_retryable_codes_are_the_servers_refusals_for_now() {
    use actorline::error::ApiError;
    let js = protocol_js();
    let line = js.lines().find(|l| l.contains("export const RETRYABLE_CODES")).expect("RETRYABLE_CODES in web/protocol.js");
    let codes: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
    let for_now = [
        ApiError::Internal("x".into()),
        ApiError::Unavailable("x".into()),
        ApiError::RateLimited { retry_after_secs: 1 },
        ApiError::CircuitOpen { retry_after_ms: 1 },
    ];
    assert!(for_now.iter().all(|e| e.status() == 429 || e.status() >= 500));
    assert_eq!(codes, for_now.iter().map(ApiError::frame_code).collect::<Vec<_>>(), "{line}");
}
