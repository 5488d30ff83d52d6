//! The OpenAPI 3 document, generated from the route table so it cannot drift
//! from what the router serves, with the request and response schemas of the
//! wire types themselves (`schemars`). It is generated natively into
//! `openapi.json`, which the Worker serves as it is, and a test fails when
//! that file no longer matches the routes and types (`UPDATE_OPENAPI=1 cargo
//! test --lib openapi` rewrites it). The wasm bundle carries the JSON, not
//! the generator.

/// The document the Worker serves at `/api/openapi.json`.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(not(target_arch = "wasm32"))]
pub use generator::*;

#[cfg(not(target_arch = "wasm32"))]
mod generator {
use serde_json::{json, Map, Value};

use crate::api::routes::{IntParam, RouteId, PAGE_CURSOR_PATTERN, ACTORS_LIMIT, CONTENT_LIMIT, RECONCILE_LIMIT, ROUTES, SEARCH_K, SOURCE_VERSION};

fn summary(id: RouteId) -> (&'static str, &'static str) {
    match id {
        RouteId::Health => ("Health: `{status}`; the provider backends for the operator", "Health"),
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
        RouteId::SessionSocket => ("Upgrade to the session WebSocket (101); its subscriptions follow topics, at most MAX_TOPIC_SESSIONS_PER_PRINCIPAL sessions of one principal per topic (error frame too_many_followers); opening it and each subscribe spend a read (RATE_READ_PER_MIN; 429, or an error frame rate_limited)", "Sessions"),
        RouteId::AdminActors => ("List actors from the registry", "Admin"),
        RouteId::AdminInspect => ("Inspect an actor's full state", "Admin"),
        RouteId::AdminAlarm => ("Fire an actor's alarm now", "Admin"),
        RouteId::AdminDeadLetters => ("Failed runs with reasons", "Admin"),
        RouteId::AdminMetrics => ("Counters and stage latency percentiles", "Admin"),
        RouteId::AdminReconcile => ("Rewrite catalog rows from the actors (after a D1 outage or restore)", "Admin"),
        RouteId::CreateKey => ("Create an API key for a tenant (the key is shown only here)", "Admin"),
        RouteId::ListKeys => ("List API keys, never their secrets", "Admin"),
        RouteId::RevokeKey => ("Revoke an API key", "Admin"),
        RouteId::WhoAmI => ("The caller's principal: kind, tenant, subject and scopes", "Meta"),
        RouteId::CreateAnswer => ("Ask a question: a grounded, cited answer streamed on answer:<id>", "Answers"),
        RouteId::GetAnswer => ("The answer actor's view (its asker or the operator only)", "Answers"),
        RouteId::TopicEvents => ("Server-Sent Events for one topic (id = seq; Last-Event-ID resumes)", "Live"),
        RouteId::CreateUpload => ("Upload a file (text, Markdown, HTML, PDF) as a new content item; stored in R2 (one write; each started MB spends from RATE_UPLOAD_MB_PER_MIN)", "Content"),
        RouteId::GetSource => ("The uploaded original of a version, byte for byte", "Content"),
        RouteId::PutSource => ("New version from a file (text, Markdown, HTML, PDF); the older versions' files stay readable (one write; each started MB spends from RATE_UPLOAD_MB_PER_MIN)", "Content"),
        RouteId::CreateBatch => ("Bulk import of 1 to 1000 items through the INGEST queue (one write; each item spends from RATE_BATCH_ITEMS_PER_MIN); progress on batch:<id>", "Content"),
        RouteId::GetBatch => ("A batch's progress per item (its submitter or the operator only)", "Content"),
        RouteId::TopicSocket => ("WebSocket held by the topic's own actor (feed, or run:<id> for a run its principal may follow): the session socket's frames for that topic; an open spends a read (429), each actor holds MAX_SOCKETS_PER_SESSION per session and MAX_TOPIC_SOCKETS_PER_PRINCIPAL per principal (409), and a socket closes (4001) when the token that opened it (a session's, a user JWT) expires or the API key it rests on is revoked (checked at most every 10 s, before a send)", "Live"),
    }
}

fn query_params(id: RouteId) -> Vec<(&'static str, Value)> {
    use crate::domain::content::{optional_label_pattern, CATEGORY_PATTERN};
    use crate::protocol::{MAX_QUERY_CHARS, QUERY_TEXT_PATTERN, TENANT_PATTERN};
    let text = || json!({ "type": "string" });
    let matching = |pattern: &str| json!({ "type": "string", "pattern": pattern });
    let category = || matching(CATEGORY_PATTERN);
    let cursor = || matching(PAGE_CURSOR_PATTERN);
    let uuid = || json!({ "type": "string", "format": "uuid" });
    let int = |p: IntParam| {
        let mut schema = json!({ "type": "integer", "minimum": p.min, "maximum": p.max });
        if let Some(d) = p.default {
            schema["default"] = json!(d);
        }
        (p.name, schema)
    };
    let one_of = |values: &[&str]| json!({ "type": "string", "enum": values });
    let visibility = || one_of(&crate::domain::principal::Visibility::ALL.map(|v| v.as_str()));
    match id {
        RouteId::ListContent => vec![
            int(CONTENT_LIMIT),
            ("cursor", cursor()),
            ("status", one_of(&crate::protocol::ContentStatus::ALL.map(|c| c.as_str()))),
            ("category", category()),
        ],
        RouteId::Search => vec![
            ("q", json!({ "type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": QUERY_TEXT_PATTERN })),
            int(SEARCH_K),
            ("category", category()),
            ("mode", one_of(&["hybrid", "vector", "keyword"])),
        ],
        RouteId::SessionSocket => vec![("token", text())],
        RouteId::AdminActors => {
            vec![("kind", one_of(&crate::protocol::REGISTERED_ACTOR_KINDS)), ("status", text()), int(ACTORS_LIMIT), ("cursor", cursor())]
        }
        RouteId::AdminReconcile => vec![int(RECONCILE_LIMIT), ("cursor", uuid()), ("ids", matching(&uuid_list_pattern(RECONCILE_LIMIT.max)))],
        RouteId::ListKeys => vec![("tenant", matching(TENANT_PATTERN))],
        RouteId::TopicEvents => vec![("after", json!({ "type": "integer", "minimum": 0 }))],
        RouteId::CreateUpload | RouteId::PutSource => vec![
            ("title", json!({ "type": "string", "maxLength": 300, "pattern": optional_label_pattern() })),
            ("category", category()),
            ("visibility", visibility()),
        ],
        RouteId::GetSource => vec![int(SOURCE_VERSION)],
        RouteId::TopicSocket => vec![("session", uuid()), ("token", text()), ("after", json!({ "type": "integer", "minimum": 0 }))],
        _ => vec![],
    }
}


/// `ids=<uuid>,<uuid>,...`: 1 to `max` UUIDs, comma separated.
pub(crate) fn uuid_list_pattern(max: u32) -> String {
    let uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    format!("^{uuid}(,{uuid}){{0,{}}}$", max - 1)
}

/// The typed request and response bodies of a route, by schema name.
fn bodies(id: RouteId) -> (Option<&'static str>, Option<&'static str>) {
    match id {
        RouteId::CreateContent | RouteId::PutContent => (Some("ContentInput"), Some("Accepted")),
        RouteId::CreateUpload | RouteId::PutSource => (None, Some("Accepted")),
        RouteId::GetContent => (None, Some("ContentView")),
        RouteId::ListContent => (None, Some("ContentPage")),
        RouteId::GetRun | RouteId::CancelRun | RouteId::RetryRun => (None, Some("RunView")),
        RouteId::Search => (None, Some("SearchResponse")),
        RouteId::CreateSession => (None, Some("SessionGrant")),
        RouteId::CreateAnswer => (Some("AskInput"), Some("AnswerAccepted")),
        RouteId::CreateBatch => (Some("BatchInput"), Some("BatchAccepted")),
        RouteId::GetBatch => (None, Some("BatchView")),
        RouteId::WhoAmI => (None, Some("Principal")),
        RouteId::GetAnswer => (None, Some("AnswerView")),
        RouteId::CreateKey => (Some("KeyInput"), Some("KeyView")),
        RouteId::Health => (None, Some("Health")),
        RouteId::AdminActors => (None, Some("ActorPage")),
        RouteId::AdminDeadLetters => (None, Some("DeadLetterPage")),
        RouteId::AdminReconcile => (None, Some("ReconcilePage")),
        RouteId::AdminMetrics => (None, Some("Metrics")),
        RouteId::ListKeys => (None, Some("KeyPage")),
        _ => (None, None),
    }
}

/// Every `{id}` the API mints is a UUID (a handler answers 400 to anything
/// else); the inspector's ids also name shards and singletons.
fn path_schema(id: RouteId, name: &str) -> Value {
    match (id, name) {
        (RouteId::AdminInspect | RouteId::AdminAlarm, _) => json!({ "type": "string" }),
        (_, "id" | "key_id") => json!({ "type": "string", "format": "uuid" }),
        _ => json!({ "type": "string" }),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Every wire type's schema under `#/components/schemas`.
pub fn generated_schemas() -> Value {
    use crate::protocol::*;
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    gen.subschema_for::<ContentInput>();
    gen.subschema_for::<Accepted>();
    gen.subschema_for::<ContentView>();
    gen.subschema_for::<ContentPage>();
    gen.subschema_for::<RunView>();
    gen.subschema_for::<SearchResponse>();
    gen.subschema_for::<SessionGrant>();
    gen.subschema_for::<crate::domain::answer::AnswerView>();
    gen.subschema_for::<AnswerAccepted>();
    gen.subschema_for::<BatchAccepted>();
    gen.subschema_for::<crate::domain::batch::BatchView>();
    gen.subschema_for::<crate::domain::principal::Principal>();
    gen.subschema_for::<AskInput>();
    gen.subschema_for::<BatchInput>();
    gen.subschema_for::<KeyInput>();
    gen.subschema_for::<KeyView>();
    gen.subschema_for::<KeyPage>();
    gen.subschema_for::<ErrorBody>();
    gen.subschema_for::<Health>();
    gen.subschema_for::<ActorPage>();
    gen.subschema_for::<DeadLetterPage>();
    gen.subschema_for::<ReconcilePage>();
    gen.subschema_for::<Metrics>();
    Value::Object(gen.take_definitions(true).into_iter().collect())
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let (text, tag) = summary(r.id);
        let mut params: Vec<Value> = r
            .pattern
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_schema(r.id, name) }))
            .collect();
        params.extend(
            query_params(r.id)
                .into_iter()
                .map(|(name, schema)| {
                    let required = name == "q" || (name == "token" && r.id == RouteId::SessionSocket);
                    // An empty value (`limit=`) reads as absent: the default.
                    json!({ "name": name, "in": "query", "required": required, "allowEmptyValue": !required, "schema": schema })
                }),
        );
        let ok = match r.id {
            RouteId::CreateContent | RouteId::PutContent | RouteId::CreateAnswer | RouteId::CreateUpload | RouteId::PutSource | RouteId::CreateBatch => "202",
            RouteId::DeleteContent | RouteId::RevokeKey => "204",
            RouteId::CreateKey => "201",
            RouteId::SessionSocket | RouteId::TopicSocket => "101",
            _ => "200",
        };
        let (request, response) = bodies(r.id);
        // The inspector's views are each actor's own state, and metrics count by kind: free-form objects.
        let ok_schema = response.map(schema_ref).unwrap_or_else(|| json!({ "type": "object", "additionalProperties": true }));
        let mut op = json!({
            "summary": text,
            "tags": [tag],
            "parameters": params,
            "responses": {
                ok: { "description": "Success", "content": { "application/json": { "schema": ok_schema } } },
                "4XX": { "description": "Client error", "content": { "application/json": { "schema": schema_ref("Error") } } },
            },
        });
        // No body: a deletion's 204, and a WebSocket upgrade's 101 (frames follow).
        if ok == "204" {
            op["responses"][ok] = json!({ "description": "Success" });
        }
        if ok == "101" {
            op["responses"][ok] = json!({ "description": "Switching Protocols: the WebSocket's frames follow" });
        }
        if let Some(name) = request {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema_ref(name) } } });
        }
        // A file as the body: the upload types only.
        if matches!(r.id, RouteId::CreateUpload | RouteId::PutSource) {
            let content: Map<String, Value> = crate::domain::upload::UploadType::ALL
                .iter()
                .map(|t| (t.mime().to_string(), json!({ "schema": { "type": "string", "format": "binary" } })))
                .collect();
            op["requestBody"] = json!({ "required": true, "content": content });
        }
        if r.id == RouteId::Health {
            op["responses"]["503"] = json!({ "description": "Degraded: a provider cannot be used", "content": { "application/json": { "schema": schema_ref("Health") } } });
        }
        if r.id == RouteId::GetSource {
            op["responses"][ok]["content"] = json!({ "*/*": { "schema": { "type": "string", "format": "binary" } } });
        }
        if r.id == RouteId::TopicEvents {
            // Each event of the stream: its `id` (the seq), name and one-line JSON `data`.
            let event = json!({ "type": "object", "properties": {
                "id": { "type": "string" }, "event": { "type": "string" }, "data": { "type": "string" }, "retry": { "type": "integer" } } });
            op["responses"][ok]["content"] = json!({ "text/event-stream": { "schema": event } });
        }
        if r.operator_only() {
            op["security"] = json!([{ "admin": [] }]);
        }
        let entry = paths.entry(r.pattern.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    let schemas: Map<String, Value> = generated_schemas().as_object().cloned().unwrap_or_default();
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Actorline", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Durable Object actors for real-time AI content pipelines." },
        "paths": paths,
        "components": {
            "securitySchemes": { "admin": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas,
        },
    })
}

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::ROUTES;
    use serde_json::{json, Map, Value};

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

    /// A parameter whose absence means something of its own says no
    /// default: a source's absent `version` is the current one, not 1.
    #[test]
    fn an_absent_source_version_has_no_default() {
        let doc = document();
        let params = doc["paths"]["/api/content/{id}/source"]["get"]["parameters"].as_array().unwrap().clone();
        let version = params.iter().find(|p| p["name"] == "version").expect("version parameter");
        assert!(version["schema"].get("default").is_none(), "{version}");
        let k = doc["paths"]["/api/search"]["get"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "k").cloned().unwrap();
        assert_eq!(k["schema"]["default"], 10);
    }

    /// Every `$ref` in `v` names a schema of `schemas`.
    fn dangling_refs(v: &Value, schemas: &Map<String, Value>, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r.trim_start_matches("#/components/schemas/");
                    if !schemas.contains_key(name) {
                        out.push(r.clone());
                    }
                }
                m.values().for_each(|x| dangling_refs(x, schemas, out));
            }
            Value::Array(a) => a.iter().for_each(|x| dangling_refs(x, schemas, out)),
            _ => {}
        }
    }

    #[test]
    fn the_served_document_is_generated_from_the_routes_and_types() {
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json"), &generated).unwrap();
            return;
        }
        assert!(
            DOCUMENT == generated,
            "src/api/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
    }

    #[test]
    fn typed_routes_reference_real_schemas() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap().clone();
        let mut dangling = Vec::new();
        dangling_refs(&doc, &schemas, &mut dangling);
        assert!(dangling.is_empty(), "dangling $refs: {dangling:?}");
        let view = &schemas["ContentView"];
        for field in ["id", "version", "title", "body", "status", "tenant", "owner", "visibility", "runs"] {
            assert!(view["properties"][field].is_object(), "ContentView lacks {field}: {view}");
        }
        assert_eq!(doc["paths"]["/api/runs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RunView");
        let status = &schemas["RunStatus"];
        assert!(status.to_string().contains("cancelled"), "{status}");
        let batch = &doc["paths"]["/api/content/batch"]["post"]["responses"]["202"]["content"]["application/json"]["schema"];
        assert_eq!(batch["$ref"], "#/components/schemas/BatchAccepted");
        assert!(schemas["BatchView"]["properties"]["items"].is_object(), "{}", schemas["BatchView"]);
    }

    #[test]
    fn minted_ids_are_declared_as_uuids() {
        let doc = document();
        let id_of = |path: &str, method: &str| doc["paths"][path][method]["parameters"][0]["schema"].clone();
        assert_eq!(id_of("/api/content/{id}", "get")["format"], "uuid");
        assert_eq!(id_of("/api/runs/{id}/cancel", "post")["format"], "uuid");
        assert_eq!(id_of("/api/batches/{id}", "get")["format"], "uuid");
        // A shard or the feed is inspected by name, not by UUID.
        assert!(id_of("/admin/actors/{kind}/{id}", "get").get("format").is_none());
        // The bounds the handler reads are the ones stated.
        let limit = &doc["paths"]["/api/content"]["get"]["parameters"][0];
        assert_eq!((limit["name"].clone(), limit["schema"]["minimum"].clone(), limit["schema"]["maximum"].clone()), (json!("limit"), json!(1), json!(100)));
    }
}

/// The document's patterns against the rules the handlers apply: every
/// string a pattern allows must be accepted, or a client that follows the
/// document is refused (schemathesis checks the same live, in `make test`).
#[cfg(test)]
mod pattern_tests {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    use crate::api::routes::{parse_page_cursor, PAGE_CURSOR_PATTERN, RECONCILE_LIMIT};
    use crate::config::Limits;
    use crate::domain::content::{is_plain_label, label_pattern, BODY_PATTERN, optional_label_pattern, refused_beyond_bmp, title};
    use crate::domain::principal::valid_tenant;
    use crate::protocol::TENANT_PATTERN;

    /// An anchored pattern's body, with `\uXXXX` (ECMA and Python) as the
    /// regex crate writes it (the generator takes no anchors: it makes whole
    /// matches).
    fn rust_syntax(pattern: &str) -> String {
        let body = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$'));
        let mut rest = body.unwrap_or_else(|| panic!("{pattern} is anchored at both ends"));
        let mut out = String::new();
        while let Some(i) = rest.find("\\u") {
            out.push_str(&rest[..i]);
            out.push_str(&format!("\\x{{{}}}", &rest[i + 2..i + 6]));
            rest = &rest[i + 6..];
        }
        out + rest
    }

    fn each_allowed(pattern: &str, accepted: impl Fn(&str) -> bool) {
        let strategy = proptest::string::string_regex(&rust_syntax(pattern)).expect("pattern parses");
        let mut runner = TestRunner::deterministic();
        for _ in 0..500 {
            let s = strategy.new_tree(&mut runner).expect("a string").current();
            assert!(accepted(&s), "{s:?} matches {pattern} but is refused");
        }
    }

    #[test]
    fn every_string_a_pattern_allows_is_accepted() {
        let l = Limits::default();
        // A character the patterns cannot name (past U+FFFF) is refused anyway.
        let unnamed = |s: &str| s.chars().any(refused_beyond_bmp);
        each_allowed(&label_pattern(), |s| s.chars().count() > l.title_max_chars || title(s, &l).is_ok() || unnamed(s));
        each_allowed(&optional_label_pattern(), |s| is_plain_label(s) || unnamed(s));
        each_allowed(TENANT_PATTERN, valid_tenant);
        each_allowed(BODY_PATTERN, |s| {
            let input = crate::protocol::ContentInput { title: "t".into(), body: s.into(), category: None, tags: None, author: None, visibility: None };
            s.len() > l.body_max_bytes || crate::domain::content::ContentDoc::validate(input, &l).is_ok()
        });
        each_allowed(PAGE_CURSOR_PATTERN, |s| parse_page_cursor(s).is_ok());
        each_allowed(&super::generator::uuid_list_pattern(RECONCILE_LIMIT.max), |s| {
            s.split(',').all(|id| uuid::Uuid::parse_str(id).is_ok())
        });
    }

    /// The limits the schemas state are the default `Limits` (a deployment
    /// may raise them; the document states what every deployment accepts).
    #[test]
    fn the_schemas_state_the_default_limits() {
        let l = Limits::default();
        let schemas = super::generated_schemas();
        let input = &schemas["ContentInput"]["properties"];
        assert_eq!(input["title"]["maxLength"], l.title_max_chars);
        assert_eq!(input["author"]["maxLength"], l.author_max_chars);
        assert_eq!(input["tags"]["maxItems"], l.tags_max);
        assert_eq!(input["tags"]["items"]["maxLength"], l.tag_max_chars);
        assert!(crate::domain::content::CATEGORY_PATTERN.ends_with(&format!("{{0,{}}}$", l.category_max_chars)));
    }
}
