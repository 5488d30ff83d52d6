//! What every actor that holds client WebSockets shares (the session, and
//! the topic actors that hold their own topic sockets): reading a client
//! frame past its rate bucket, sending a frame, the attachment a socket
//! carries through hibernation, the closes the protocol defines, and the
//! revoked-key check a socket's credential gets.

use worker::{Env, State, WebSocket};

use crate::catalog;
use crate::domain::broadcast::KeyCheck;
use crate::domain::principal::Principal;
use crate::domain::session::{Admission, MAX_FRAME_BYTES};
use crate::domain::time::Millis;
use crate::error::ApiError;
use crate::protocol::{close_code, ClientFrame, ServerFrame};

pub(crate) fn send(ws: &WebSocket, frame: &ServerFrame) {
    let _ = ws.send_with_str(frame.to_json());
}

/// The client frame in `text`, once the rate bucket has admitted it; answers
/// (or closes the socket) itself when it is refused, too large or malformed.
pub(crate) fn read_frame(ws: &WebSocket, admission: Admission, text: &str) -> Option<ClientFrame> {
    match admission {
        Admission::Take => {}
        Admission::Refuse | Admission::Close => {
            // A refused subscribe names its topic, so the client asks for it
            // again (it retries `rate_limited`) rather than wait for good.
            let topic = match (text.len() <= MAX_FRAME_BYTES).then(|| serde_json::from_str::<ClientFrame>(text)) {
                Some(Ok(ClientFrame::Subscribe { topic, .. })) => Some(topic),
                _ => None,
            };
            send(ws, &ServerFrame::error("rate_limited", "too many frames; slow down").about(topic));
            if admission == Admission::Close {
                let _ = ws.close(Some(close_code::RATE_LIMITED), Some("rate limit exceeded"));
            }
            return None;
        }
    }
    if text.len() > MAX_FRAME_BYTES {
        send(ws, &ServerFrame::error("frame_too_large", format!("frames are limited to {MAX_FRAME_BYTES} bytes")));
        return None;
    }
    match serde_json::from_str(text) {
        Ok(f) => Some(f),
        Err(e) => {
            send(ws, &ServerFrame::error("malformed_frame", format!("not a valid frame: {e}")));
            None
        }
    }
}

/// Closes a socket whose token has expired (code 4001), the same way on a
/// session's sockets and on topic sockets (opened with a session's token or
/// a user's JWT).
pub(crate) fn close_expired(ws: &WebSocket) {
    let _ = ws.close(Some(close_code::TOKEN_ENDED), Some("token expired"));
}

/// Whether the API key `principal` rests on (if it is one) was found revoked
/// by a check due now (`check` spaces them). A catalog that cannot answer
/// finds nothing: the next chance checks again. What a session and an SSE
/// stream ask before they send.
pub(crate) async fn key_revoked(env: &Env, check: &KeyCheck, principal: &Principal, now: Millis) -> bool {
    let Some(key) = principal.key_id() else { return false };
    if !check.start(now) {
        return false;
    }
    match catalog::live_keys(env, &[key]).await {
        Ok(live) => !live.contains(key),
        Err(e) => {
            worker::console_error!("key check failed: {e}");
            false
        }
    }
}

/// What a revoked key's session (or stream) answers: what the key itself gets.
pub(crate) fn revoked() -> ApiError {
    ApiError::Unauthorized("the API key is not valid or has been revoked".into())
}

/// Closes a socket whose API key was revoked: the same code as an expired
/// token (the credential no longer holds), with its own reason.
pub(crate) fn close_revoked(ws: &WebSocket) {
    let _ = ws.close(Some(close_code::TOKEN_ENDED), Some("key revoked"));
}

/// The attachment travels as one JSON string: a JS string crosses the wasm
/// boundary in one copy, where a structured object costs a call per field, and
/// this runs for every socket on every delivered event.
pub(crate) fn load_attachment<T: serde::de::DeserializeOwned>(ws: &WebSocket) -> Option<T> {
    let text = ws.deserialize_attachment::<String>().ok().flatten()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn save_attachment<T: serde::Serialize>(ws: &WebSocket, value: &T) {
    if let Ok(text) = serde_json::to_string(value) {
        let _ = ws.serialize_attachment(text);
    }
}

/// Lets the runtime answer a `ping` frame with `pong` itself, without waking
/// a hibernated actor.
pub(crate) fn answer_pings(state: &State) {
    if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new(r#"{"type":"ping"}"#, r#"{"type":"pong"}"#) {
        state.set_websocket_auto_response(&pair);
    }
}

/// Reciprocates a client's close with its code when that code may be sent.
pub(crate) fn close_back(ws: &WebSocket, code: usize) {
    let code = if (1000..=4999).contains(&code) && code != 1005 && code != 1006 { code as u16 } else { 1000 };
    let _ = ws.close(Some(code), Some("closed"));
}

