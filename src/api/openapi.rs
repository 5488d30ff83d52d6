//! The OpenAPI 3 document, generated from the route table so it cannot drift
//! from what the router serves.

use serde_json::{json, Map, Value};

use super::routes::{RouteId, ROUTES};

fn summary(id: RouteId) -> (&'static str, &'static str) {
    match id {
        RouteId::Health => ("Health and provider backends", "Health"),
        RouteId::OpenApi => ("This document", "Meta"),
        RouteId::CreateContent => ("Create a content item and spawn its pipeline run", "Content"),
        RouteId::ListContent => ("List content from the catalog", "Content"),
        RouteId::GetContent => ("The content actor's view", "Content"),
        RouteId::PutContent => ("New version; spawns a new run and supersedes older ones", "Content"),
        RouteId::DeleteContent => ("Delete content, its vectors and catalog rows", "Content"),
        RouteId::GetRun => ("The run's stage journal", "Runs"),
        RouteId::CancelRun => ("Cancel a run", "Runs"),
        RouteId::RetryRun => ("Retry a failed or cancelled run", "Runs"),
        RouteId::Search => ("Hybrid vector and keyword search", "Search"),
        RouteId::CreateSession => ("Create a session and its WebSocket token", "Sessions"),
        RouteId::SessionSocket => ("Upgrade to the session WebSocket (101)", "Sessions"),
        RouteId::AdminActors => ("List actors from the registry", "Admin"),
        RouteId::AdminInspect => ("Inspect an actor's full state", "Admin"),
        RouteId::AdminAlarm => ("Fire an actor's alarm now", "Admin"),
        RouteId::AdminDeadLetters => ("Failed runs with reasons", "Admin"),
        RouteId::AdminMetrics => ("Counters and stage latency percentiles", "Admin"),
        RouteId::CreateKey => ("Create an API key for a tenant (the key is shown only here)", "Admin"),
        RouteId::ListKeys => ("List API keys, never their secrets", "Admin"),
        RouteId::RevokeKey => ("Revoke an API key", "Admin"),
        RouteId::WhoAmI => ("The caller's principal: kind, tenant, subject and scopes", "Meta"),
        RouteId::CreateAnswer => ("Ask a question: a grounded, cited answer streamed on answer:<id>", "Answers"),
        RouteId::GetAnswer => ("The answer actor's view (its asker or the operator only)", "Answers"),
        RouteId::TopicEvents => ("Server-Sent Events for one topic (id = seq; Last-Event-ID resumes)", "Live"),
        RouteId::TopicSocket => ("WebSocket held by a broadcast topic's actor (feed): the session socket's frames for that topic", "Live"),
    }
}

fn query_params(id: RouteId) -> Vec<(&'static str, &'static str)> {
    match id {
        RouteId::ListContent => vec![("limit", "integer"), ("cursor", "string"), ("status", "string"), ("category", "string")],
        RouteId::Search => vec![("q", "string"), ("k", "integer"), ("category", "string"), ("mode", "string")],
        RouteId::SessionSocket => vec![("token", "string")],
        RouteId::AdminActors => vec![("kind", "string"), ("status", "string"), ("limit", "integer"), ("cursor", "string")],
        RouteId::ListKeys => vec![("tenant", "string")],
        RouteId::TopicEvents => vec![("after", "integer")],
        RouteId::TopicSocket => vec![("session", "string"), ("token", "string"), ("after", "integer")],
        _ => vec![],
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let (text, tag) = summary(r.id);
        let mut params: Vec<Value> = r
            .pattern
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(
            query_params(r.id)
                .into_iter()
                .map(|(name, ty)| json!({ "name": name, "in": "query", "required": name == "q" || (name == "token" && r.id == RouteId::SessionSocket), "schema": { "type": ty } })),
        );
        let ok = match r.id {
            RouteId::CreateContent | RouteId::PutContent | RouteId::CreateAnswer => "202",
            RouteId::DeleteContent | RouteId::RevokeKey => "204",
            RouteId::CreateKey => "201",
            RouteId::SessionSocket | RouteId::TopicSocket => "101",
            _ => "200",
        };
        let mut op = json!({
            "summary": text,
            "tags": [tag],
            "parameters": params,
            "responses": {
                ok: { "description": "Success", "content": { "application/json": { "schema": { "type": "object" } } } },
                "4XX": { "description": "Client error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        if matches!(r.id, RouteId::CreateContent | RouteId::PutContent) {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ContentInput" } } } });
        }
        if r.id == RouteId::CreateAnswer {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/AskInput" } } } });
        }
        if r.id == RouteId::TopicEvents {
            op["responses"][ok]["content"] = json!({ "text/event-stream": { "schema": { "type": "string" } } });
        }
        if r.pattern.starts_with("/admin") {
            op["security"] = json!([{ "admin": [] }]);
        }
        let entry = paths.entry(r.pattern.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Actorline", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Durable Object actors for real-time AI content pipelines." },
        "paths": paths,
        "components": {
            "securitySchemes": { "admin": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } } } } },
                "ContentInput": { "type": "object", "required": ["title", "body"], "additionalProperties": false, "properties": {
                    "title": { "type": "string", "minLength": 1, "maxLength": 300 },
                    "body": { "type": "string", "minLength": 1 },
                    "category": { "type": "string" },
                    "tags": { "type": "array", "maxItems": 20, "items": { "type": "string", "maxLength": 40 } },
                    "author": { "type": "string" } } },
                "AskInput": { "type": "object", "required": ["question"], "additionalProperties": false, "properties": {
                    "question": { "type": "string", "minLength": 1, "maxLength": 500 },
                    "k": { "type": "integer", "minimum": 1, "maximum": 10 },
                    "category": { "type": "string" } } },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_route_is_documented() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.pattern][r.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing from OpenAPI", r.method, r.pattern);
            assert!(op["responses"]["4XX"].is_object());
        }
        assert_eq!(doc["openapi"], "3.0.3");
    }
}
