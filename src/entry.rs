//! The Worker's entry point: a panic hook, then the router; the consumer
//! of the `INGEST` queue and its dead-letter queue; and the daily cron
//! trigger (`[triggers]` in wrangler.toml).

use worker::{event, Context, Env, MessageBatch, Request, Response, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    Ok(crate::api::handle(req, env, ctx).await)
}

/// Never returns an error: workers-rs turns one into a panic, and every
/// message is settled one by one in [`crate::ingest::consume`].
#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> worker::Result<()> {
    crate::ingest::consume(batch, env).await;
    Ok(())
}

/// The logs that hold user text keep their bounded retention on a
/// deployment with no traffic too. A failure is logged: the next day's
/// trigger (or a search) prunes what this one left.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = crate::catalog::prune_logs(&env, crate::runtime::now_ms()).await {
        worker::console_error!("scheduled log retention failed: {e}");
    }
}
