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

#[derive(Clone)]
pub struct Tracker {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Tracker {
    pub async fn start(stack: &Stack) -> Result<Tracker, String> {
        let (sid, token) = stack.new_session().await?;
        let (mut ws, _) = tokio_tungstenite::connect_async(stack.ws_url(&sid, &token)).await.map_err(|e| format!("tracker socket: {e}"))?;
        ws.send(Message::Text(json!({"type": "subscribe", "topic": "feed"}).to_string().into())).await.map_err(|e| e.to_string())?;
        // Wait for `ready`: from then on every feed event reaches this socket.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.checked_duration_since(Instant::now()).ok_or("tracker: no ready frame")?;
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "ready" {
                        break;
                    }
                    if v["type"] == "error" {
                        return Err(format!("tracker subscribe: {v}"));
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => return Err("tracker socket closed before ready".into()),
            }
        }
        let slots: Arc<Mutex<HashMap<String, Slot>>> = Arc::default();
        let s2 = slots.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let (at, recv_ms) = (Instant::now(), now_ms());
                let v: Value = match serde_json::from_str(t.as_str()) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if v["type"] != "event" {
                    continue;
                }
                let ok = match v["event"].as_str() {
                    Some("content.indexed") => true,
                    Some("content.updated") if v["data"]["status"] == "failed" => false,
                    _ => continue,
                };
                let Some(id) = v["data"]["content_id"].as_str() else { continue };
                let done = Done { at, ok, server_ts: v["ts"].as_str().and_then(parse_ts).unwrap_or(f64::NAN), recv_ms };
                let mut map = s2.lock().unwrap();
                match map.remove(id) {
                    Some(Slot::Waiting(tx)) => {
                        let _ = tx.send(done);
                    }
                    _ => {
                        map.insert(id.to_string(), Slot::Arrived(done));
                    }
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
