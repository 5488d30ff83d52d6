//! The web client names stages, events and frame types in one module,
//! `web/protocol.js`. This checks it against `src/protocol.rs`, the single
//! source of truth, so a renamed stage or event cannot silently break the UI.

use actorline::protocol::{EventName, Stage};

fn protocol_js() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/protocol.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn quoted(js: &str, name: &str) -> bool {
    js.contains(&format!("'{name}'")) || js.contains(&format!("\"{name}\""))
}

/// The quoted strings of the array literal that follows `marker`.
fn array_after(js: &str, marker: &str) -> Vec<String> {
    let start = js.find(marker).unwrap_or_else(|| panic!("{marker} not found in web/protocol.js"));
    let rest = &js[start..];
    let open = rest.find('[').expect("array literal");
    let close = rest[open..].find(']').expect("end of array literal") + open;
    rest[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_stage_name_is_in_protocol_js_in_order() {
    let js = protocol_js();
    for s in Stage::ALL {
        assert!(quoted(&js, s.as_str()), "stage {:?} is missing from web/protocol.js", s.as_str());
    }
    let want: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(array_after(&js, "export const STAGES"), want, "STAGES order");
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
