//! Reading the Worker environment into plain values.

use worker::Env;

use crate::config::Config;

pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

pub fn config(env: &Env) -> Config {
    Config::from_lookup(|k| var(env, k))
}

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}
