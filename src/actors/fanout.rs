//! Topic side of live updates: pushing new events to the sessions that
//! follow this actor (`store::subscribers` keeps who they are). Shared by
//! every topic actor (run, content, feed, answer, batch).
//!
//! A push is best effort and bounded in time: a slow or vanished session must
//! never stall a pipeline. Sessions detect any gap by sequence number and fill
//! it from this actor's log, so a dropped push is late, never lost.

use worker::Env;

use super::ops::{Deliver, Delivered};
use super::rpc;
use crate::domain::faults::PUSH;
use crate::protocol::{EventRecord, Topic};
use crate::store::subscribers::Subscribers;

/// How long one push may take before the topic gives up on that session.
pub const PUSH_TIMEOUT_MS: u64 = 2_000;

/// Sends `events` of `topic` to every subscribed session, all within one
/// timeout (one timer per push, not per session: a feed event may go to
/// hundreds). Sessions that say they no longer listen are dropped from the
/// list; those that did not answer in time are kept and catch up by cursor.
pub async fn push(env: &Env, subs: &Subscribers, topic: Topic, events: &[EventRecord]) {
    let Some(last) = events.iter().map(|e| e.seq).max() else { return };
    if crate::runtime::config(env).faults.site_strikes(PUSH, &format!("{topic}:{last}"), 1) {
        // Said, so a test knows the catch-up delivered what it got.
        return worker::console_log!("{topic}: push through seq {last} dropped (injected fault)");
    }
    let now = crate::runtime::now_ms();
    let mut sessions = subs.list();
    if sessions.iter().any(|f| !f.live(now)) {
        let _ = subs.drop_expired(now);
        sessions.retain(|f| f.live(now));
    }
    if sessions.is_empty() {
        return;
    }
    let Ok(body) = rpc::encode(&Deliver { topic, events: events.to_vec() }) else { return };
    let gone = std::cell::RefCell::new(Vec::new());
    let calls = futures::future::join_all(sessions.iter().map(|s| {
        let (body, gone) = (body.clone(), &gone);
        async move {
            if let Ok(Delivered { subscribed: false }) = rpc::send_encoded::<Deliver>(env, &s.session, body).await {
                gone.borrow_mut().push(s.session.as_str());
            }
        }
    }));
    let _ = crate::runtime::within(PUSH_TIMEOUT_MS, calls).await;
    for session in gone.into_inner() {
        let _ = subs.remove_if_before(session, now);
    }
}
