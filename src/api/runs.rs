//! `/api/runs/{id}`: the run's journal and operator actions. A run is
//! readable by whoever may read its content, and cancel or retry need the
//! right to change it; the content actor answers both (404 / 403).

use serde_json::{json, Value};
use worker::{Env, Response};

use super::input::uuid_param;
use crate::actors::rpc::{self, ActorKind};
use crate::domain::principal::Principal;
use crate::error::ApiResult;
use crate::http;

pub async fn call(env: &Env, p: &Principal, id: &str, op: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "run")?.to_string();
    let view: Value = rpc::call(env, ActorKind::Run, &id, "view", &json!({})).await?;
    let content_id = view.get("content_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let needed = if op == "view" { "read" } else { "change" };
    let ask = json!({ "principal": p, "needed": needed });
    let _: Value = rpc::call(env, ActorKind::Content, &content_id, "authorize", &ask)
        .await
        .map_err(|e| match e {
            crate::error::ApiError::NotFound(_) => crate::error::ApiError::not_found("run"),
            other => other,
        })?;
    if op == "view" {
        return Ok(http::json(200, &view));
    }
    let view: Value = rpc::call(env, ActorKind::Run, &id, op, &json!({})).await?;
    Ok(http::json(200, &view))
}
