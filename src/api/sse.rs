//! `GET /api/topics/{topic}/events`: Server-Sent Events for any topic.
//!
//! The Worker authorizes the caller once, exactly as a WebSocket subscription
//! is (404 for a topic it may not read), then streams: the replay after the
//! cursor (`?after=N`, or `Last-Event-ID`, which wins), a `ready` event, then
//! new events by polling the topic actor's `events` op every
//! [`POLL_INTERVAL_MS`], with a heartbeat comment every [`HEARTBEAT_MS`]. A
//! connection lasts at most [`CONNECTION_MS`]; EventSource reconnects with
//! `Last-Event-ID` and resumes exactly after the last event it saw. Polling
//! keeps the topic actors unchanged: no subscriber list, no push target.

use serde_json::Value;

use crate::protocol::{EventRecord, ServerFrame, Topic};

pub const POLL_INTERVAL_MS: u64 = 250;
pub const IDLE_POLL_MS: u64 = 1_000;
/// Polls per connection: with the authorization and rate-limit calls, under 50.
pub const MAX_POLLS: u32 = 40;
pub const HEARTBEAT_MS: i64 = 15_000;
pub const CONNECTION_MS: i64 = 60_000;
/// How long EventSource waits before reconnecting.
pub const RETRY_MS: u32 = 1_000;

/// `%XX`-decodes a path segment (`answer%3A<id>` → `answer:<id>`); `None`
/// for a malformed escape or a result that is not UTF-8.
pub fn decode_segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The cursor to resume after: `Last-Event-ID` when it is a number, else
/// `after`, else 0 (the whole retained log). `after` is taken as sent: spaces
/// in the query make it no number.
pub fn cursor(last_event_id: Option<&str>, after: Option<&str>) -> Option<u64> {
    match (last_event_id.map(str::trim).filter(|s| !s.is_empty()), after) {
        (Some(id), _) => seq(id),
        (None, Some(a)) => seq(a),
        (None, None) => Some(0),
    }
}

/// A sequence number as the API writes it: decimal digits only (no sign,
/// no spaces), as the document declares an integer.
pub fn seq(text: &str) -> Option<u64> {
    text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok()).flatten()
}

/// One SSE message. `data` is one line: JSON has no raw newlines.
pub fn message(id: Option<u64>, event: &str, data: &str) -> String {
    let id = id.map(|n| format!("id: {n}\n")).unwrap_or_default();
    format!("{id}event: {event}\ndata: {data}\n\n")
}

/// An event as SSE: `id:` = seq, `event:` = its name, `data:` = the frame.
pub fn event_message(topic: Topic, rec: &EventRecord) -> String {
    message(Some(rec.seq), rec.event.as_str(), &ServerFrame::event(topic, rec).to_json())
}

/// Moves the client's `Last-Event-ID` past events it was not sent (of
/// items it may not read) without an event: a message with an id and no
/// data is not dispatched, but its id is kept (the EventSource processing
/// model), so a reconnect does not read them again.
pub fn cursor_message(seq: u64) -> String {
    format!("id: {seq}\n\n")
}

pub fn ready_message(topic: Topic) -> String {
    message(None, "ready", &ServerFrame::Ready { topic }.to_json())
}

/// Carries the log's last seq as its id, so a reconnect resumes from there.
pub fn resync_message(topic: Topic, last_seq: u64, snapshot: Value) -> String {
    message(Some(last_seq), "resync_required", &ServerFrame::ResyncRequired { topic, snapshot }.to_json())
}

pub fn opening() -> String {
    format!("retry: {RETRY_MS}\n: connected\n\n")
}

pub const HEARTBEAT: &str = ": heartbeat\n\n";

/// The wait before the next poll after one that found nothing.
pub fn next_wait(ms: u64) -> u64 {
    (ms * 2).clamp(POLL_INTERVAL_MS, IDLE_POLL_MS)
}

#[cfg(target_arch = "wasm32")]
pub use stream::events;

#[cfg(target_arch = "wasm32")]
mod stream {
    use serde_json::Value;
    use worker::{Delay, Env, Headers, Request, Response};

    use super::*;
    use crate::actors::ops::{Admit, Events};
    use crate::actors::rpc;
    use crate::actors::rpc::topic_actor;
    use crate::actors::socket::{key_revoked, revoked};
    use crate::api::input::{param, query};
    use crate::domain::broadcast::KeyCheck;
    use crate::domain::content::readable_by;
    use crate::domain::principal::Principal;
    use crate::error::{ApiError, ApiResult};
    use crate::protocol::EventRecord;
    use crate::runtime::now_ms;

    /// `until`: when the request's credential stops being accepted (a JWT's
    /// `exp`); the stream ends then, as a socket it opened would.
    pub async fn events(env: &Env, (who, until): (&Principal, Option<i64>), req: &Request, raw_topic: &str) -> ApiResult<Response> {
        let text = decode_segment(raw_topic).ok_or_else(|| ApiError::not_found("topic"))?;
        let topic: Topic = text.parse().map_err(|_| ApiError::not_found(format!("topic {text}")))?;
        let q = query(req)?;
        let last_id = req.headers().get("last-event-id").ok().flatten();
        let after = cursor(last_id.as_deref(), param(&q, "after"))
            .ok_or_else(|| ApiError::invalid("after", "must be a non-negative integer"))?;
        authorize(env, who, topic).await.map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::not_found(format!("topic {topic}")),
            other => other,
        })?;
        let key_check = KeyCheck::default();
        // The Worker has just checked the key.
        key_check.checked(now_ms());
        let poll = Poll {
            env: env.clone(),
            reader: who.clone(),
            topic,
            cursor: after,
            replayed: false,
            done: false,
            deadline: until.map_or(i64::MAX, |u| u.max(0)).min(now_ms() + CONNECTION_MS),
            key_check,
            beat_at: now_ms(),
            polls: 0,
            wait_ms: POLL_INTERVAL_MS,
        };
        let body = futures::stream::once(async { Ok::<Vec<u8>, worker::Error>(opening().into_bytes()) })
            .chain(futures::stream::unfold(poll, |mut p| async move { p.next().await.map(|chunk| (Ok(chunk.into_bytes()), p)) }));
        let headers = Headers::new();
        headers.set("content-type", "text/event-stream; charset=utf-8")?;
        headers.set("cache-control", "no-cache, no-transform")?;
        headers.set("x-accel-buffering", "no")?;
        Ok(Response::from_stream(body)?.with_headers(headers))
    }

    use futures::StreamExt;

    /// The same check as a WebSocket subscription, made by the topic's own
    /// actor (`TopicActor::admit`): a run or content topic needs read access
    /// to the item, an answer topic is its asker's, a batch topic its
    /// submitter's, the feed is open (each event filtered by its item's visibility).
    async fn authorize(env: &Env, who: &Principal, topic: Topic) -> ApiResult<()> {
        let (kind, name) = topic_actor(topic);
        rpc::send_to(env, kind, &name, &Admit { principal: who.clone() }).await.map(|_| ())
    }

    struct Poll {
        env: Env,
        reader: Principal,
        topic: Topic,
        cursor: u64,
        replayed: bool,
        done: bool,
        deadline: i64,
        /// When the API key the stream reads as is next checked: a revoked
        /// key ends it within [`crate::domain::broadcast::KEY_RECHECK_MS`],
        /// as it ends a socket.
        key_check: KeyCheck,
        beat_at: i64,
        polls: u32,
        wait_ms: u64,
    }

    impl Poll {
        /// The next chunk to send, or `None` when the connection should end.
        async fn next(&mut self) -> Option<String> {
            loop {
                if self.done || now_ms() >= self.deadline || self.polls >= MAX_POLLS {
                    return None;
                }
                self.polls += 1;
                if key_revoked(&self.env, &self.key_check, &self.reader, now_ms()).await {
                    self.done = true;
                    let e = revoked();
                    return Some(message(None, "error", &crate::http::error_frame(&e, e.code()).to_json()));
                }
                let (kind, name) = topic_actor(self.topic);
                let page = rpc::send_to(&self.env, kind, &name, &Events { after: self.cursor, limit: None, reader: Some(self.reader.clone()) }).await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        self.done = true;
                        let frame = crate::http::error_frame(&e, e.code()).to_json();
                        return Some(message(None, "error", &frame));
                    }
                };
                let mut out = String::new();
                if page.resync {
                    out.push_str(&resync_message(self.topic, page.last_seq, page.snapshot.unwrap_or(Value::Null)));
                    self.cursor = page.last_seq;
                }
                let mut withheld = false;
                for e in &page.events {
                    if e.seq <= self.cursor {
                        continue;
                    }
                    withheld = !self.visible(e);
                    if !withheld {
                        out.push_str(&event_message(self.topic, e));
                    }
                    self.cursor = e.seq;
                }
                // The page ended on events the reader may not see.
                if withheld {
                    out.push_str(&cursor_message(self.cursor));
                }
                if !self.replayed && self.cursor >= page.last_seq {
                    self.replayed = true;
                    out.push_str(&ready_message(self.topic));
                }
                let now = now_ms();
                if out.is_empty() && now - self.beat_at >= HEARTBEAT_MS {
                    out.push_str(HEARTBEAT);
                }
                self.wait_ms = if page.events.is_empty() { next_wait(self.wait_ms) } else { POLL_INTERVAL_MS };
                if !out.is_empty() {
                    self.beat_at = now;
                    return Some(out);
                }
                Delay::from(std::time::Duration::from_millis(self.wait_ms)).await;
            }
        }

        /// Events of items the reader may not read are skipped (their seq
        /// still advances the cursor), as on a WebSocket.
        fn visible(&self, e: &EventRecord) -> bool {
            readable_by(&self.reader, e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventName;
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn decodes_encoded_and_plain_topics() {
        assert_eq!(decode_segment("answer%3A1234").as_deref(), Some("answer:1234"));
        assert_eq!(decode_segment("answer%3a1234").as_deref(), Some("answer:1234"));
        assert_eq!(decode_segment("run:ab").as_deref(), Some("run:ab"));
        assert_eq!(decode_segment("feed").as_deref(), Some("feed"));
        assert_eq!(decode_segment("bad%3"), None);
        assert_eq!(decode_segment("bad%zz"), None);
        assert_eq!(decode_segment("%ff%fe"), None);
    }

    #[test]
    fn idle_polls_back_off_to_a_second() {
        assert_eq!(next_wait(POLL_INTERVAL_MS), 500);
        assert_eq!(next_wait(500), IDLE_POLL_MS);
        assert_eq!(next_wait(IDLE_POLL_MS), IDLE_POLL_MS);
    }

    #[test]
    fn last_event_id_wins_over_after() {
        assert_eq!(cursor(Some("7"), Some("3")), Some(7));
        assert_eq!(cursor(None, Some("3")), Some(3));
        assert_eq!(cursor(Some(""), Some("3")), Some(3));
        assert_eq!(cursor(None, None), Some(0));
        assert_eq!(cursor(None, Some("-1")), None);
        assert_eq!(cursor(Some("x"), None), None);
        assert_eq!(cursor(None, Some("\u{a0}")), None);
        assert_eq!(cursor(None, Some("+3")), None);
    }

    #[test]
    fn a_cursor_message_is_an_id_and_nothing_to_dispatch() {
        assert_eq!(cursor_message(17), "id: 17\n\n");
    }

    #[test]
    fn messages_follow_the_sse_format() {
        let id = Uuid::nil();
        let rec = EventRecord { seq: 4, event: EventName::AnswerDelta, data: json!({ "text": "a\nb" }), ts: "t".into() };
        let m = event_message(Topic::Answer(id), &rec);
        let lines: Vec<&str> = m.trim_end().lines().collect();
        assert_eq!(lines[0], "id: 4");
        assert_eq!(lines[1], "event: answer.delta");
        assert_eq!(lines.len(), 3, "a newline in the data stays escaped inside the JSON");
        let frame: serde_json::Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["seq"], 4);
        assert_eq!(frame["data"]["text"], "a\nb");
        assert!(m.ends_with("\n\n"));
        assert!(ready_message(Topic::Feed).starts_with("event: ready\n"));
        assert!(resync_message(Topic::Feed, 9, json!({})).starts_with("id: 9\nevent: resync_required\n"));
    }
}
