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

/// The `type` of every variant of a frame enum, from its schema (serde's
/// tag), so the list is the server's and not written out here.
fn frame_types<T: schemars::JsonSchema>() -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema");
    let variants = schema["oneOf"].as_array().expect("one schema per variant");
    variants
        .iter()
        .map(|v| {
            let tag = &v["properties"]["type"];
            tag["const"].as_str().or_else(|| tag["enum"][0].as_str()).unwrap_or_else(|| panic!("a tagged variant: {v}")).to_string()
        })
        .collect()
}

/// The object `export const <name> = Object.freeze({ K: 'v', ... })` of
/// web/protocol.js, as its values in order.
fn js_object_values(js: &str, name: &str) -> Vec<String> {
    let start = js.find(&format!("export const {name} = Object.freeze({{")).unwrap_or_else(|| panic!("{name} in web/protocol.js"));
    let body = &js[start..start + js[start..].find("});").expect("the object's end")];
    body.lines().skip(1).filter_map(|l| l.split('\'').nth(1)).map(str::to_string).collect()
}

#[test]
fn the_frame_types_are_the_servers() {
    use actorline::protocol::{ClientFrame, ServerFrame};
    let js = protocol_js();
    assert_eq!(js_object_values(&js, "CLIENT_FRAMES"), frame_types::<ClientFrame>());
    assert_eq!(js_object_values(&js, "SERVER_FRAMES"), frame_types::<ServerFrame>());
}

/// The close codes the client tells apart are the server's, by name.
#[test]
fn the_close_codes_are_the_servers() {
    let js = protocol_js();
    let line = js.lines().find(|l| l.contains("export const CLOSE_CODES")).expect("CLOSE_CODES in web/protocol.js");
    let named: Vec<(String, u16)> = line
        .split(['{', '}'])
        .nth(1)
        .expect("an object")
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().parse().expect("a number")))
        .collect();
    let server: Vec<(String, u16)> = actorline::protocol::close_code::ALL.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(named, server, "{line}");
}

/// The status lists the views use are the server's, in its order.
#[test]
fn the_status_lists_are_the_servers() {
    use actorline::domain::answer::AnswerStatus;
    use actorline::protocol::{ContentStatus, RunStatus, StageStatus};
    fn names<T: schemars::JsonSchema>() -> Vec<String> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema");
        schema["enum"].as_array().expect("a string enum").iter().map(|v| v.as_str().expect("a name").to_string()).collect()
    }
    let js = protocol_js();
    let list = |name: &str| -> Vec<String> {
        let line = js.lines().find(|l| l.contains(&format!("export const {name} "))).unwrap_or_else(|| panic!("{name} in web/protocol.js"));
        line.split('\'').skip(1).step_by(2).map(str::to_string).collect()
    };
    assert_eq!(list("RUN_STATUSES"), names::<RunStatus>());
    assert_eq!(list("STAGE_STATUSES"), names::<StageStatus>());
    assert_eq!(list("CONTENT_STATUSES"), names::<ContentStatus>());
    assert_eq!(list("ANSWER_STATUSES"), names::<AnswerStatus>());
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
