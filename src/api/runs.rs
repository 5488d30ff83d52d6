//! `/api/runs/{id}`: the run's journal and operator actions.

use serde_json::{json, Value};
use worker::{Env, Response};

use super::input::uuid_param;
use crate::actors::rpc::{self, ActorKind};
use crate::error::ApiResult;
use crate::http;

pub async fn call(env: &Env, id: &str, op: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "run")?;
    let view: Value = rpc::call(env, ActorKind::Run, &id.to_string(), op, &json!({})).await?;
    Ok(http::json(200, &view))
}
