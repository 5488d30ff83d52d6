//! Turning results into `worker::Response`s: the one place where an
//! [`ApiError`] becomes the contract's JSON, for the Worker and actors alike.

use serde::Serialize;
use worker::{Headers, Response};

use crate::error::ApiError;

/// Whether `req` asks for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_websocket_upgrade(req: &worker::Request) -> bool {
    req.headers().get("upgrade").ok().flatten().is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
    json_bytes(status, to_json(value))
}

/// A value as a JSON body; one that cannot be encoded reads as `{}`.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// A body that is JSON already (the generated OpenAPI document).
pub fn json_text(status: u16, body: &str) -> Response {
    json_bytes(status, body.as_bytes().to_vec())
}

/// [`json`] once the body is encoded: only the encoding is generic, so each
/// reply type adds just its serializer to the bundle.
fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json; charset=utf-8");
    let _ = headers.set("cache-control", "no-store");
    let _ = headers.set("x-content-type-options", "nosniff");
    Response::from_bytes(body)
        .map(|r| r.with_status(status).with_headers(headers))
        .unwrap_or_else(|_| Response::empty().unwrap_or_else(|_| unreachable_response()))
}

/// An error as its client may see it (see [`ApiError::for_client`]); an
/// internal error's detail is logged here, under `request_id` or a fresh id.
fn shown(e: &ApiError, request_id: Option<String>) -> std::borrow::Cow<'_, ApiError> {
    let (e, log) = e.for_client(|| request_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()));
    if let Some(line) = log {
        worker::console_error!("{line}");
    }
    e
}

/// An error as a socket's or event stream's `error` frame under `code`,
/// by the same rule as a response: an internal error's detail is logged, never sent.
pub fn error_frame(e: &ApiError, code: &str) -> crate::protocol::ServerFrame {
    crate::protocol::ServerFrame::error(code, shown(e, None).to_string())
}

/// An error as the contract's JSON, where no request id is known (an
/// actor's reply): an internal error is logged under a fresh one.
pub fn error(e: &ApiError) -> Response {
    error_for(e, None)
}

/// As [`error`], with the request's id (its `cf-ray`) when there is one: an
/// internal error's detail is logged under the id and the client gets only
/// the id ([`ApiError::for_client`]).
pub fn error_for(e: &ApiError, request_id: Option<String>) -> Response {
    let e = shown(e, request_id);
    let resp = json(e.status(), &e.body());
    for (k, v) in e.extra_headers() {
        let _ = resp.headers().set(k, &v);
    }
    resp
}

/// An actor's answer to an internal call as status and JSON body, by the
/// same rule as [`result`] and [`error`] (an internal error's detail is
/// logged, never sent): what a JS RPC reply carries without a `Response`.
pub fn encoded<T: Serialize>(r: Result<T, ApiError>) -> (u16, Vec<u8>) {
    match r {
        Ok(v) => (200, to_json(&v)),
        Err(e) => {
            let e = shown(&e, None);
            (e.status(), to_json(&e.body()))
        }
    }
}

pub fn result<T: Serialize>(status: u16, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => json(status, &v),
        Err(e) => error(&e),
    }
}

pub fn no_content() -> Response {
    Response::empty().map(|r| r.with_status(204)).unwrap_or_else(|_| unreachable_response())
}

fn unreachable_response() -> Response {
    // Response::empty cannot fail in practice; this keeps handlers panic-free.
    Response::builder().with_status(500).empty()
}
