//! Knows when each submitted document is indexed, without polling: one socket
//! subscribed to the `feed` topic sees every `content.indexed` (and a
//! `content.updated` with status `failed`). A push can arrive before the POST
//! that created the content has returned its id, so arrivals are kept until
//! claimed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::stack::{now_ms, parse_ts, Stack};
use crate::support::{ev, Ws};

#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// When this client received the event.
    pub at: Instant,
    pub ok: bool,
    /// Server `ts` of the event, epoch ms.
    pub server_ts: f64,
    /// Client receive time, epoch ms.
    pub recv_ms: f64,
}

enum Slot {
    Waiting(oneshot::Sender<Done>),
    Arrived(Done),
}

type Slots = Arc<Mutex<HashMap<String, Slot>>>;

#[derive(Clone)]
pub struct Tracker {
    slots: Slots,
    task: Arc<tokio::task::JoinHandle<()>>,
}

/// Records one feed frame; returns true for `ready`.
fn handle(slots: &Slots, text: &str, last_seq: &mut u64) -> bool {
    let (at, recv_ms) = (Instant::now(), now_ms());
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    if v["type"] == "ready" {
        return true;
    }
    if v["type"] != "event" {
        return false;
    }
    *last_seq = (*last_seq).max(v["seq"].as_u64().unwrap_or(0));
    let ok = match v["event"].as_str() {
        Some(ev::CONTENT_INDEXED) => true,
        Some(ev::CONTENT_UPDATED) if v["data"]["status"] == "failed" => false,
        _ => return false,
    };
    let Some(id) = v["data"]["content_id"].as_str() else { return false };
    let done = Done { at, ok, server_ts: v["ts"].as_str().and_then(parse_ts).unwrap_or(f64::NAN), recv_ms };
    let mut map = slots.lock().unwrap();
    match map.remove(id) {
        Some(Slot::Waiting(tx)) => {
            let _ = tx.send(done);
        }
        _ => {
            map.insert(id.to_string(), Slot::Arrived(done));
        }
    }
    false
}

/// Connects, subscribes to the feed (after `after` when resuming) and reads
/// through the replay up to `ready`.
async fn open(url: &str, after: Option<u64>, slots: &Slots, last_seq: &mut u64) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("tracker socket: {e}"))?;
    let mut sub = json!({"type": "subscribe", "topic": "feed"});
    if let Some(a) = after {
        sub["after"] = json!(a);
    }
    ws.send(Message::Text(sub.to_string().into())).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.checked_duration_since(Instant::now()).ok_or("tracker: no ready frame")?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if t.as_str().contains("\"type\":\"error\"") {
                    return Err(format!("tracker subscribe: {}", t.as_str()));
                }
                if handle(slots, t.as_str(), last_seq) {
                    return Ok(ws);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return Err("tracker socket closed before ready".into()),
        }
    }
}

impl Tracker {
    /// Subscribes the feed actor's own socket (opened with a new session's
    /// token, as the web client opens it). If the socket drops (a server
    /// reload), it reconnects and resumes after the last seq seen, so no
    /// `content.indexed` is missed.
    pub async fn start(stack: &Stack) -> Result<Tracker, String> {
        let (sid, token) = stack.new_session().await?;
        let url = stack.server.ws_url(&format!("/api/topics/feed/ws?session={sid}&token={token}"));
        let slots: Slots = Arc::default();
        let mut last_seq = 0;
        let mut ws = open(&url, None, &slots, &mut last_seq).await?;
        let s2 = slots.clone();
        let task = tokio::spawn(async move {
            loop {
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        handle(&s2, t.as_str(), &mut last_seq);
                    }
                }
                eprintln!("[bench] tracker socket closed; resuming the feed after seq {last_seq}");
                let mut reopened = None;
                for _ in 0..60 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(w) = open(&url, Some(last_seq), &s2, &mut last_seq).await {
                        reopened = Some(w);
                        break;
                    }
                }
                match reopened {
                    Some(w) => ws = w,
                    None => return,
                }
            }
        });
        Ok(Tracker { slots, task: Arc::new(task) })
    }

    /// Resolves when `content_id` is indexed (or failed).
    pub fn expect(&self, content_id: &str) -> oneshot::Receiver<Done> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.slots.lock().unwrap();
        match map.remove(content_id) {
            Some(Slot::Arrived(d)) => {
                let _ = tx.send(d);
            }
            _ => {
                map.insert(content_id.to_string(), Slot::Waiting(tx));
            }
        }
        rx
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}
