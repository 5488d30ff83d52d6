//! Topic side of live updates: who listens to this actor, and pushing new
//! events to them. Shared by every topic actor (run, content, feed).
//!
//! A push is best effort and bounded in time: a slow or vanished session must
//! never stall a pipeline. Sessions detect any gap by sequence number and fill
//! it from this actor's log, so a dropped push is late, never lost.

use worker::{Env, SqlStorage};

use super::ops::{Deliver, Delivered};
use super::rpc;
use crate::domain::faults::PUSH;
use crate::domain::time::Millis;
use crate::error::ApiError;
use crate::protocol::{EventRecord, Topic};
use crate::store::{exec, rows};

/// How long one push may take before the topic gives up on that session.
pub const PUSH_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone)]
pub struct Subscribers {
    sql: SqlStorage,
}

#[derive(serde::Deserialize)]
struct Row {
    session: String,
}

impl Subscribers {
    pub fn new(sql: SqlStorage) -> Self {
        Subscribers { sql }
    }

    fn init(&self) -> Result<(), ApiError> {
        exec(&self.sql, "CREATE TABLE IF NOT EXISTS subscribers (session TEXT PRIMARY KEY, since INTEGER NOT NULL)", vec![])
    }

    pub fn add(&self, session: &str, now: Millis) -> Result<(), ApiError> {
        self.write("INSERT OR REPLACE INTO subscribers (session, since) VALUES (?, ?)", vec![session.into(), now.into()])
    }

    pub fn remove(&self, session: &str) -> Result<(), ApiError> {
        self.write("DELETE FROM subscribers WHERE session = ?", vec![session.into()])
    }

    /// A write that creates the table only when it is missing (the first
    /// subscriber), so the common case is one statement.
    fn write(&self, q: &str, params: Vec<worker::SqlStorageValue>) -> Result<(), ApiError> {
        exec(&self.sql, q, params.clone()).or_else(|_| {
            self.init()?;
            exec(&self.sql, q, params)
        })
    }

    pub fn list(&self) -> Vec<String> {
        rows::<Row>(&self.sql, "SELECT session FROM subscribers ORDER BY since", vec![])
            .map(|r| r.into_iter().map(|r| r.session).collect())
            .unwrap_or_default()
    }
}

/// Sends `events` of `topic` to every subscribed session, all within one
/// timeout (one timer per push, not per session: a feed event may go to
/// hundreds). Sessions that say they no longer listen are dropped from the
/// list; those that did not answer in time are kept and catch up by cursor.
pub async fn push(env: &Env, subs: &Subscribers, topic: Topic, events: &[EventRecord]) {
    let Some(last) = events.iter().map(|e| e.seq).max() else { return };
    if crate::runtime::config(env).faults.site_strikes(PUSH, &format!("{topic}:{last}"), 1) {
        return;
    }
    let sessions = subs.list();
    if sessions.is_empty() {
        return;
    }
    let Ok(body) = rpc::encode(&Deliver { topic, events: events.to_vec() }) else { return };
    let gone = std::cell::RefCell::new(Vec::new());
    let calls = futures::future::join_all(sessions.iter().map(|s| {
        let (body, gone) = (body.clone(), &gone);
        async move {
            if let Ok(Delivered { subscribed: false }) = rpc::send_encoded::<Deliver>(env, s, body).await {
                gone.borrow_mut().push(s.as_str());
            }
        }
    }));
    let _ = crate::runtime::within(PUSH_TIMEOUT_MS, calls).await;
    for session in gone.into_inner() {
        let _ = subs.remove(session);
    }
}
