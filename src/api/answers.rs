//! `/api/answers`: grounded answers. Retrieval runs here, in the Worker,
//! with the caller's principal (the same code as `/api/search`), and the
//! sources it may read go to a new `AnswerActor`, which plans and streams the
//! answer from its alarm. Retrieving before the actor exists keeps the actor
//! free of providers and D1, and means an answer never holds sources its
//! asker could not read.

use serde_json::Value;
use uuid::Uuid;
use worker::{Env, Request, Response};

use super::input::{category_filter, json_body, query_text, uuid_param};
use crate::retrieval::{retrieve, Mode, RetrieveQuery};
use crate::actors::ops::{StartAnswer, ViewAnswer};
use crate::catalog;
use crate::actors::rpc;
use crate::domain::answer::Source;
use crate::domain::principal::Principal;
use crate::error::{ApiError, ApiResult};
use crate::http;
use crate::protocol::{AnswerAccepted, AskInput, ASK_DEFAULT_K, ASK_MAX_K};
use crate::runtime::config;


/// Read tokens an answer spends: it embeds the question, searches both
/// indexes, makes an actor kept for `ANSWER_TTL_SECS` and streams a model's
/// generation, where a search does only the middle part.
pub const COST: u32 = 10;

pub async fn create(env: &Env, p: &Principal, mut req: Request) -> ApiResult<Response> {
    let input: AskInput = json_body(&mut req, config(env).limits.ask_max_bytes).await?;
    let question = query_text(&input.question, "question")?;
    let k = input.k.unwrap_or(ASK_DEFAULT_K);
    if !(1..=ASK_MAX_K).contains(&k) {
        return Err(ApiError::invalid("k", format!("must be an integer from 1 to {ASK_MAX_K}")));
    }
    let category = category_filter(env, input.category.as_deref())?;
    let found = retrieve(env, p, &RetrieveQuery { text: question, k, category, mode: Mode::Hybrid }).await?;
    let id = Uuid::new_v4();
    // What it will quote is recorded first, for the items still in the
    // catalog: deleting one later finds the answer and erases its quotes.
    let ids: Vec<String> = found.docs.iter().map(|d| d.content_id.clone()).collect();
    let held = catalog::record_answer_sources(env, &id.to_string(), &ids).await?;
    let sources: Vec<Source> = found
        .docs
        .into_iter()
        .filter(|d| held.contains(&d.content_id))
        .zip(1u32..)
        .map(|(d, n)| Source { n, content_id: d.content_id, title: d.title, text: d.text })
        .collect();
    let start = StartAnswer { id, question: question.to_string(), asker: p.clone(), sources };
    rpc::send_create(env, &id.to_string(), &start).await?;
    Ok(http::json(202, &AnswerAccepted::new(id)))
}

/// The stored answer, its citations checked against the catalog now: one
/// whose content was deleted, or narrowed so the caller can no longer read
/// it, shows only its number (`{n, removed: true}`), never its title or
/// snippet, and the text's claims that cite it are left out.
pub async fn get(env: &Env, p: &Principal, id: &str) -> ApiResult<Response> {
    let id = uuid_param(id, "answer")?.to_string();
    let mut view: Value = rpc::send(env, &id, &ViewAnswer { principal: p.clone() }).await?.read()?;
    if let Some(citations) = view.get_mut("citations").and_then(Value::as_array_mut) {
        crate::actors::answer::withhold_for(env, p, vec![citations]).await?;
        let withheld = crate::actors::answer::removed_numbers(citations);
        crate::actors::answer::redact_text(&mut view, &withheld);
    }
    Ok(http::json(200, &view))
}
