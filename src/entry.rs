//! The Worker's entry point: a panic hook, then the router; and the consumer
//! of the `INGEST` queue and its dead-letter queue.

use worker::{event, Context, Env, MessageBatch, Request, Response};

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
