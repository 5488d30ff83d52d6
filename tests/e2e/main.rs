//! End-to-end suite against real workerd (`wrangler dev --local`).
//! One shared server serves most tests; tests that need other vars, restarts
//! or kills start their own.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod analyzer;
mod answers;
mod bad_input;
mod batch;
mod foundation;
mod integrity;
mod fuzz;
mod live;
mod pipeline;
mod search;
mod trust;
mod uploads;
