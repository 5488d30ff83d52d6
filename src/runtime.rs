//! Reading the Worker environment into plain values.

use worker::Env;

use crate::config::Config;

pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

thread_local! {
    /// Vars are fixed for an isolate's lifetime, and reading each one crosses
    /// into JS (a miss costs a thrown-and-caught lookup), so parse them once.
    static CONFIG: std::cell::OnceCell<Config> = const { std::cell::OnceCell::new() };
}

pub fn config(env: &Env) -> Config {
    CONFIG.with(|c| c.get_or_init(|| Config::from_lookup(|k| var(env, k))).clone())
}

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// `fut`'s output, or `None` once `ms` have passed first (the future is then
/// dropped). The one timeout every bounded wait goes through.
pub async fn within<T>(ms: u64, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(worker::Delay::from(std::time::Duration::from_millis(ms)));
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}
