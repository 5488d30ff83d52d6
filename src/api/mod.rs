//! HTTP routes. `routes` is the pure route table; the handlers are thin: parse,
//! call an actor or D1, answer. Every error goes through `http::error`.

pub mod openapi;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod admin;
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
pub async fn handle(req: worker::Request, env: worker::Env, ctx: worker::Context) -> worker::Response {
    let method = req.method().to_string();
    let path = req.path();
    let resp = match route(req, &env, &ctx, &method, &path).await {
        Ok(resp) => resp,
        Err(e) => {
            let resp = crate::http::error(&e);
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
    use crate::http;
    use routes::RouteId as R;
    let (id, p) = routes::resolve(method, path)?;
    if path.starts_with("/admin") {
        admin::authorize(env, &req)?;
    }
    let arg = |i: usize| p.get(i).map(String::as_str).unwrap_or_default();
    match id {
        R::Health => health::get(env).await,
        R::OpenApi => Ok(http::json(200, &openapi::document())),
        R::CreateContent => content::create(env, req).await,
        R::ListContent => content::list(env, req).await,
        R::GetContent => content::get(env, arg(0)).await,
        R::PutContent => content::update(env, req, arg(0)).await,
        R::DeleteContent => content::delete(env, arg(0)).await,
        R::GetRun => runs::call(env, arg(0), "view").await,
        R::CancelRun => runs::call(env, arg(0), "cancel").await,
        R::RetryRun => runs::call(env, arg(0), "retry").await,
        R::Search => search::search(env, ctx, &req).await,
        R::CreateSession => sessions::create(env).await,
        R::SessionSocket => sessions::socket(env, req, arg(0)).await,
        R::AdminActors => admin::list_actors(env, &req).await,
        R::AdminInspect => admin::inspect(env, &req, arg(0), arg(1), "inspect").await,
        R::AdminAlarm => admin::inspect(env, &req, arg(0), arg(1), "fire_alarm").await,
        R::AdminDeadLetters => admin::dead_letters(env).await,
        R::AdminMetrics => admin::metrics(env).await,
    }
}
