//! `/api/runs/{id}`: the run's journal and operator actions. A run is
//! readable by whoever may read its content, and cancel or retry need the
//! right to change it; the content actor answers both (404 / 403).

use worker::{Env, Response};

use super::input::uuid_param;
use crate::actors::ops::{AccessNeeded, Authorize, CancelRun, RetryRun, RunOf, ViewRun};
use crate::actors::rpc;
use crate::domain::principal::Principal;
use crate::error::{ApiError, ApiResult};
use crate::http;

/// What a run route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    View,
    Cancel,
    Retry,
}

pub async fn call(env: &Env, p: &Principal, id: &str, action: RunAction) -> ApiResult<Response> {
    let id = uuid_param(id, "run")?.to_string();
    let view = rpc::send(env, &id, &ViewRun {}).await?;
    let run: RunOf = view.read()?;
    let needed = if action == RunAction::View { AccessNeeded::Read } else { AccessNeeded::Change };
    let ask = Authorize { principal: p.clone(), needed, version: run.version };
    rpc::send(env, &run.content_id.to_string(), &ask).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::not_found("run"),
        other => other,
    })?;
    let view = match action {
        RunAction::View => view,
        RunAction::Cancel => rpc::send(env, &id, &CancelRun::default()).await?,
        RunAction::Retry => rpc::send(env, &id, &RetryRun {}).await?,
    };
    Ok(http::json(200, &view))
}
