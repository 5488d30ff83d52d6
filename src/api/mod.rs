//! HTTP routes. `routes` is the pure route table; the handlers are thin: parse,
//! call an actor or D1, answer. Every error goes through `http::error_for`.

pub mod openapi;
pub mod routes;
pub mod sse;

#[cfg(target_arch = "wasm32")]
mod admin;
#[cfg(target_arch = "wasm32")]
mod answers;
#[cfg(target_arch = "wasm32")]
pub mod auth;
#[cfg(target_arch = "wasm32")]
mod batches;
#[cfg(target_arch = "wasm32")]
mod keys;
#[cfg(target_arch = "wasm32")]
pub mod limits;
#[cfg(target_arch = "wasm32")]
mod content;
#[cfg(target_arch = "wasm32")]
mod health;
#[cfg(target_arch = "wasm32")]
mod input;
#[cfg(target_arch = "wasm32")]
mod runs;
#[cfg(target_arch = "wasm32")]
mod search;
#[cfg(target_arch = "wasm32")]
mod sessions;
#[cfg(target_arch = "wasm32")]
mod uploads;
#[cfg(target_arch = "wasm32")]
mod topic_socket;

#[cfg(target_arch = "wasm32")]
pub async fn handle(req: worker::Request, env: worker::Env, ctx: worker::Context) -> worker::Response {
    // The raw method: workers-rs reads any method it does not know (QUERY,
    // say) as GET, which would answer it as a read.
    let method = req.inner().method().to_ascii_uppercase();
    let path = req.path();
    // Cloudflare's id of the request, so an internal error's log line can be found by it.
    let ray = req.headers().get("cf-ray").ok().flatten();
    let resp = match route(req, &env, &ctx, &method, &path).await {
        Ok(resp) => resp,
        Err(e) => {
            let resp = crate::http::error_for(&e, ray);
            if e.status() == 405 {
                let _ = resp.headers().set("allow", &routes::allowed(&path).join(", "));
            }
            resp
        }
    };
    resp
}

#[cfg(target_arch = "wasm32")]
async fn route(req: worker::Request, env: &worker::Env, ctx: &worker::Context, method: &str, path: &str) -> crate::error::ApiResult<worker::Response> {
    use crate::domain::principal::Scope;
    use crate::http;
    use limits::LimitClass;
    use routes::RouteId as R;
    let (id, p) = routes::resolve(method, path)?;
    // Every route knows its principal first: a bad credential is 401 even on
    // a public read, health and the API document included (they answer
    // anyone who sends none; health tells the operator more).
    let (who, until) = auth::principal(env, &req).await?;
    if id.operator_only() {
        auth::require_operator(&who)?;
    }
    let arg = |i: usize| p.get(i).map(String::as_str).unwrap_or_default();
    match id {
        R::Health => health::get(env, who.is_operator()).await,
        R::OpenApi => Ok(http::json_text(200, openapi::DOCUMENT)),
        R::WhoAmI => Ok(http::json(200, &who)),
        R::CreateContent => {
            auth::require(&who, Scope::Write)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            content::create(env, &who, req).await
        }
        R::ListContent => content::list(env, &who, req).await,
        R::GetContent => content::get(env, &who, arg(0)).await,
        R::PutContent => {
            auth::require_known(&who)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            content::update(env, &who, req, arg(0)).await
        }
        R::PutSource => {
            auth::require_known(&who)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            uploads::update(env, &who, req, arg(0)).await
        }
        R::CreateUpload => {
            auth::require(&who, Scope::Write)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            uploads::create(env, &who, req).await
        }
        R::GetSource => uploads::source(env, &who, &req, arg(0)).await,
        R::DeleteContent => {
            auth::require_known(&who)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            content::delete(env, &who, arg(0)).await
        }
        R::GetRun => runs::call(env, &who, arg(0), runs::RunAction::View).await,
        // Run actions write (a retry runs stages again): they spend from the
        // write bucket as content writes do.
        R::CancelRun => {
            auth::require_known(&who)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            runs::call(env, &who, arg(0), runs::RunAction::Cancel).await
        }
        R::RetryRun => {
            auth::require_known(&who)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            runs::call(env, &who, arg(0), runs::RunAction::Retry).await
        }
        R::Search => {
            limits::spend(env, &who, &req, LimitClass::Read, 1).await?;
            search::search(env, ctx, &who, &req).await
        }
        R::CreateSession => {
            limits::spend(env, &who, &req, LimitClass::Sessions, 1).await?;
            sessions::create(env, &who, limits::holder(&who, &req), until).await
        }
        R::SessionSocket => sessions::socket(env, req, arg(0)).await,
        R::AdminActors => admin::list_actors(env, &req).await,
        R::AdminInspect => admin::inspect(env, &req, arg(0), arg(1), admin::Look::Inspect).await,
        R::AdminAlarm => admin::inspect(env, &req, arg(0), arg(1), admin::Look::FireAlarm).await,
        R::AdminDeadLetters => admin::dead_letters(env).await,
        R::AdminMetrics => admin::metrics(env).await,
        R::AdminReconcile => admin::reconcile(env, &req).await,
        R::CreateKey => keys::create(env, req).await,
        R::ListKeys => keys::list(env, &req).await,
        R::RevokeKey => keys::revoke(env, arg(0)).await,
        R::CreateAnswer => {
            limits::spend(env, &who, &req, LimitClass::Read, answers::COST).await?;
            answers::create(env, &who, req).await
        }
        R::GetAnswer => answers::get(env, &who, arg(0)).await,
        R::CreateBatch => {
            // A whole batch is one write against the rate limit (its items
            // spend from their own bucket once they are read).
            auth::require(&who, Scope::Write)?;
            limits::spend(env, &who, &req, LimitClass::Write, 1).await?;
            batches::create(env, &who, req).await
        }
        R::GetBatch => batches::get(env, &who, arg(0)).await,
        R::TopicEvents => {
            // One connection lasts up to a minute: a read, like a search.
            limits::spend(env, &who, &req, LimitClass::Read, 1).await?;
            sse::events(env, (&who, until), &req, arg(0)).await
        }
        R::TopicSocket => topic_socket::socket(env, (&who, until), req, arg(0)).await,
    }
}

