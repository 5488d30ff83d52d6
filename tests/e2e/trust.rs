//! Principals and access (DESIGN.md): the authorization matrix over every
//! principal kind × route and topic × own, same-tenant, other-tenant and
//! public items; bad credentials; revocation; rate limits and caps.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// One caller: a label and its `Authorization` header value (None: anonymous).
#[derive(Clone)]
struct Caller {
    name: &'static str,
    auth: Option<String>,
}

impl Caller {
    fn req(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => b.header("authorization", a),
            None => b,
        }
    }
    async fn get(&self, s: &Server, path: &str) -> Reply {
        send(self.req(http().get(s.url(path)))).await
    }
    async fn post(&self, s: &Server, path: &str, body: Value) -> Reply {
        send(self.req(http().post(s.url(path))).json(&body)).await
    }
    async fn delete(&self, s: &Server, path: &str) -> Reply {
        send(self.req(http().delete(s.url(path)))).await
    }
}

fn key_caller(s: &Server, name: &'static str, tenant: &str, scopes: &[&str]) -> Caller {
    let key = mint_key(&s.base, &s.admin_token, tenant, scopes, Some(1_000_000));
    Caller { name, auth: Some(format!("Bearer {key}")) }
}

use crate::support::unique_tenant as tenant;

struct Item {
    visibility: &'static str,
    content_id: String,
    run_id: String,
}

/// R = may read, C = may change, - = neither (the contract's access table).
/// Columns: private, tenant, public items, all owned by `owner`.
const MATRIX: &[(&str, [char; 3])] = &[
    ("owner", ['C', 'C', 'C']),
    ("reader", ['-', 'R', 'R']),
    ("peer-writer", ['-', 'R', 'R']),
    ("jwt-peer", ['-', 'R', 'R']),
    // A user whose `sub` is the owner's key id is not the owner.
    ("jwt-key-twin", ['-', 'R', 'R']),
    ("manager", ['C', 'C', 'C']),
    ("other-tenant", ['-', '-', 'R']),
    ("anonymous", ['-', '-', 'R']),
    ("operator", ['C', 'C', 'C']),
];

#[tokio::test]
async fn authorization_matrix() {
    let s = &shared().server;
    let a = tenant("acme");
    let b = tenant("blue");
    let owner = key_caller(s, "owner", &a, &["content:write"]);
    let callers = vec![
        owner.clone(),
        key_caller(s, "reader", &a, &["content:read"]),
        key_caller(s, "peer-writer", &a, &["content:write"]),
        Caller { name: "jwt-peer", auth: Some(format!("Bearer {}", jwt::sign("RS256", &jwt::claims("alice", &a, "content:write")))) },
        key_caller(s, "manager", &a, &["content:manage"]),
        key_caller(s, "other-tenant", &b, &["content:manage"]),
        Caller { name: "anonymous", auth: None },
        Caller { name: "operator", auth: Some(format!("Bearer {}", s.admin_token)) },
    ];
    // Each item carries a word found nowhere else, so search can be checked.
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut items = Vec::new();
    for visibility in ["private", "tenant", "public"] {
        let body = json!({ "title": format!("{visibility} item"), "body": format!("A {visibility} note about {word} and harbor engines."), "visibility": visibility });
        let r = owner.post(s, "/api/content", body).await;
        assert_eq!(r.status, 202, "create {visibility}: {}", r.body);
        items.push(Item {
            visibility,
            content_id: r.body["content_id"].as_str().unwrap().into(),
            run_id: r.body["run_id"].as_str().unwrap().into(),
        });
    }
    for it in &items {
        let run = s.wait_run(&it.run_id, WAIT).await;
        assert_eq!(run["status"], "completed", "{}: {run}", it.visibility);
    }
    let view = owner.get(s, &format!("/api/content/{}", items[0].content_id)).await;
    assert_eq!(view.body["tenant"], a.as_str());
    assert_eq!(view.body["visibility"], "private");
    let key_id = view.body["owner"].as_str().filter(|o| !o.is_empty()).expect("an owner").to_string();
    let mut callers = callers;
    let twin = jwt::sign("RS256", &jwt::claims(&key_id, &a, "content:write"));
    callers.push(Caller { name: "jwt-key-twin", auth: Some(format!("Bearer {twin}")) });

    let mut problems = Vec::new();
    for c in &callers {
        let row = MATRIX.iter().find(|(n, _)| *n == c.name).expect("matrix row").1;
        let listed = c.get(s, "/api/content?limit=100").await;
        let found = c.get(s, &format!("/api/search?q={word}&k=10")).await;
        for (it, want) in items.iter().zip(row) {
            let (read, change) = (want != '-', want == 'C');
            let cid = &it.content_id;
            let what = format!("{} on {}", c.name, it.visibility);
            let get = c.get(s, &format!("/api/content/{cid}")).await;
            if get.status != if read { 200 } else { 404 } {
                problems.push(format!("{what}: GET content {} {}", get.status, get.body));
            }
            let run = c.get(s, &format!("/api/runs/{}", it.run_id)).await;
            if run.status != if read { 200 } else { 404 } {
                problems.push(format!("{what}: GET run {}", run.status));
            }
            let in_list = listed.body["items"].as_array().is_some_and(|l| l.iter().any(|i| i["id"] == cid.as_str()));
            if in_list != read {
                problems.push(format!("{what}: listed {in_list}"));
            }
            let in_search = found.body["results"].as_array().is_some_and(|l| l.iter().any(|i| i["content_id"] == cid.as_str()));
            if in_search != read {
                problems.push(format!("{what}: in search {in_search} ({})", found.status));
            }
            // A change that is refused must refuse before touching the item:
            // PUT with a stale If-Match would be 412 for a caller allowed to write.
            let put = send(c.req(http().put(s.url(&format!("/api/content/{cid}")))).header("if-match", "\"999\"").json(&json!({"title": "x", "body": "y"}))).await;
            let want_put = match (c.auth.is_some(), read, change) {
                (false, _, _) => 401,
                (_, _, true) => 412,
                (_, true, false) => 403,
                _ => 404,
            };
            if put.status != want_put {
                problems.push(format!("{what}: PUT {} (want {want_put}) {}", put.status, put.body));
            }
            // Cancel of a completed run is refused as a bad transition (409)
            // once the caller passes the access check.
            let cancel = c.post(s, &format!("/api/runs/{}/cancel", it.run_id), json!({})).await;
            let want_cancel: &[u16] = match (c.auth.is_some(), read, change) {
                (false, _, _) => &[401],
                (_, _, true) => &[200, 409],
                (_, true, false) => &[403],
                _ => &[404],
            };
            if !want_cancel.contains(&cancel.status) {
                problems.push(format!("{what}: cancel {} (want {want_cancel:?})", cancel.status));
            }
            // Deletes that must be refused; an allowed delete is checked last.
            if !change {
                let del = c.delete(s, &format!("/api/content/{cid}")).await;
                let want_del = match (c.auth.is_some(), read) {
                    (false, _) => 401,
                    (_, true) => 403,
                    _ => 404,
                };
                if del.status != want_del {
                    problems.push(format!("{what}: DELETE {} (want {want_del})", del.status));
                }
            }
        }
        if problems.len() > 40 {
            break;
        }
    }
    assert!(problems.is_empty(), "access violations:\n{}", problems.join("\n"));

    // A catalog row from before owner kinds were recorded is read as the
    // actor reads its copy: a key id's form is a key's, not the twin's.
    let private = &items[0].content_id;
    s.d1(&format!("UPDATE content SET owner_kind = '' WHERE id = '{private}'"));
    let twin = callers.iter().find(|c| c.name == "jwt-key-twin").unwrap();
    let listed = twin.get(s, "/api/content?limit=100").await;
    assert!(!listed.body["items"].as_array().unwrap().iter().any(|i| i["id"] == private.as_str()), "{}", listed.body);
    let listed = owner.get(s, "/api/content?limit=100").await;
    assert!(listed.body["items"].as_array().unwrap().iter().any(|i| i["id"] == private.as_str()), "the key still lists it");

    // The owner's delete works, and then the item is gone for everyone.
    let gone = &items[1].content_id;
    assert_eq!(owner.delete(s, &format!("/api/content/{gone}")).await.status, 204);
    for c in &callers {
        assert_eq!(c.get(s, &format!("/api/content/{gone}")).await.status, 404, "{} after delete", c.name);
    }
}

#[tokio::test]
async fn credentials_are_checked_and_bad_ones_are_401() {
    let s = &shared().server;
    let t = tenant("cred");
    let me = |auth: &str| {
        let auth = auth.to_string();
        async move { send(http().get(s.url("/api/me")).header("authorization", auth)).await }
    };
    // Every kind of principal, as /api/me sees it.
    let anon = send(http().get(s.url("/api/me"))).await;
    assert_eq!((anon.status, anon.body["kind"].as_str()), (200, Some("anonymous")));
    let op = me(&format!("Bearer {}", s.admin_token)).await;
    assert_eq!(op.body["kind"], "operator");
    for alg in ["RS256", "ES256", "HS256"] {
        let r = me(&format!("Bearer {}", jwt::sign(alg, &jwt::claims("bob", &t, "content:read")))).await;
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
        assert_eq!((r.body["kind"].as_str(), r.body["tenant"].as_str(), r.body["subject"].as_str()), (Some("user"), Some(t.as_str()), Some("bob")));
        assert_eq!(r.body["scopes"], json!(["content:read"]));
    }
    // Present but bad: never a fall-back to anonymous.
    let mut expired = jwt::claims("bob", &t, "content:read");
    expired["exp"] = json!(1_000_000);
    let mut wrong_aud = jwt::claims("bob", &t, "content:read");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = jwt::claims("bob", &t, "content:read");
    wrong_iss["iss"] = json!("https://evil.example");
    let good = jwt::sign("ES256", &jwt::claims("bob", &t, "content:read"));
    // A session made with a JWT ends when the JWT does (its `exp` plus the
    // 30 s leeway), not an hour later.
    let mut brief = jwt::claims("bob", &t, "content:read");
    let exp = brief["iat"].as_i64().unwrap() + 120;
    brief["exp"] = json!(exp);
    let r = send(http().post(s.url("/api/sessions")).bearer_auth(jwt::sign("ES256", &brief)).json(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ends = chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(ends, exp + 30, "{}", r.body);
    let tampered = {
        let (head, sig) = good.rsplit_once('.').unwrap();
        let (h, _) = head.split_once('.').unwrap();
        let forged = base64_url(&jwt::claims("bob", &t, "content:manage").to_string());
        format!("{h}.{forged}.{sig}")
    };
    let bad = [
        "Bearer alk_00000000000000000000000000000000_notarealsecretnotarealsecretxxxxx".to_string(),
        "Bearer not-a-credential".to_string(),
        "Basic dXNlcjpwYXNz".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {}", jwt::sign("RS256", &expired)),
        format!("Bearer {}", jwt::sign("RS256", &wrong_aud)),
        format!("Bearer {}", jwt::sign("HS256", &wrong_iss)),
        format!("Bearer {tampered}"),
        // The operator's tenant and the one of items from before tenants
        // are nobody's to join: a member would read the operator's items.
        format!("Bearer {}", jwt::sign("ES256", &jwt::claims("bob", "operator", "content:manage"))),
        format!("Bearer {}", jwt::sign("RS256", &jwt::claims("bob", "legacy", "content:manage"))),
    ];
    for auth in &bad {
        let r = me(auth).await;
        assert_eq!(r.status, 401, "{auth}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "unauthorized");
        // Also on a public read and on a write.
        let list = send(http().get(s.url("/api/content")).header("authorization", auth.as_str())).await;
        assert_eq!(list.status, 401, "{auth} on listing");
    }
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// An item is its owner's to change whatever scopes the owner's token
/// carries today; a caller who may not read it gets 404, as on a `GET`.
#[tokio::test]
async fn an_owner_changes_its_item_with_a_token_without_scopes() {
    let s = &shared().server;
    let t = tenant("owner-noscope");
    let writer = jwt::sign("ES256", &jwt::claims("erin", &t, "content:write"));
    let r = send(http().post(s.url("/api/content")).bearer_auth(&writer).json(&json!({"title": "Erin's", "body": "a note about tides", "visibility": "private"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    s.wait_run(r.body["run_id"].as_str().unwrap(), WAIT).await;
    let bare = jwt::sign("ES256", &jwt::claims("erin", &t, "openid"));
    let stranger = jwt::sign("ES256", &jwt::claims("frank", &t, "openid"));
    let item = s.url(&format!("/api/content/{cid}"));
    let put = send(http().put(&item).bearer_auth(&stranger).json(&json!({"title": "Frank's now", "body": "mine"}))).await;
    assert_eq!((put.status, put.body["error"]["code"].as_str()), (404, Some("not_found")), "{}", put.body);
    let delete = send(http().delete(&item).bearer_auth(&stranger)).await;
    assert_eq!(delete.status, 404, "{}", delete.body);
    let put = send(http().put(&item).bearer_auth(&bare).json(&json!({"title": "Erin's, again", "body": "a second note about tides"}))).await;
    assert_eq!(put.status, 202, "{}", put.body);
    s.wait_run(put.body["run_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(send(http().delete(&item).bearer_auth(&bare)).await.status, 204);
    assert_eq!(send(http().get(&item).bearer_auth(&writer)).await.status, 404);
    // Anonymous callers still need a credential.
    assert_eq!(send(http().delete(&item)).await.status, 401);
}

/// In a fresh tenant: a writer's private item, run to its end, and a
/// reader of that tenant (content:read) who may not read it. Returns
/// (owner key, reader key, content id, run id).
async fn private_item_and_a_reader(s: &Server, tag: &str, title: &str, body: &str) -> (String, String, String, String) {
    let t = tenant(tag);
    let owner = mint_key(&s.base, &s.admin_token, &t, &["content:write"], Some(1_000_000));
    let reader = mint_key(&s.base, &s.admin_token, &t, &["content:read"], Some(1_000_000));
    let r = send(http().post(s.url("/api/content")).bearer_auth(&owner).json(&json!({"title": title, "body": body, "visibility": "private"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (content, run) = (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string());
    s.wait_run(&run, WAIT).await;
    (owner, reader, content, run)
}

/// A run of a version its caller could not read (a private draft, before a
/// PUT made the item `tenant`) is 404 to that caller whatever it asks: a
/// cancel or a retry as much as a read, not 403, which says it is there.
#[tokio::test]
async fn a_run_of_a_version_its_caller_may_not_read_is_404_to_every_request() {
    let s = &shared().server;
    let (owner, reader, cid, draft_run) = private_item_and_a_reader(s, "draft-run", "Draft", "a private draft about tides").await;
    let put = send(http().put(s.url(&format!("/api/content/{cid}"))).bearer_auth(&owner).json(&json!({"title": "Notice", "body": "a notice about tides", "visibility": "tenant"}))).await;
    assert_eq!(put.status, 202, "{}", put.body);
    let current = put.body["run_id"].as_str().unwrap().to_string();
    s.wait_run(&current, WAIT).await;
    for (method, path) in [("GET", format!("/api/runs/{draft_run}")), ("POST", format!("/api/runs/{draft_run}/cancel")), ("POST", format!("/api/runs/{draft_run}/retry"))] {
        let req = if method == "GET" { http().get(s.url(&path)) } else { http().post(s.url(&path)).json(&json!({})) };
        let r = send(req.bearer_auth(&reader)).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (404, Some("not_found")), "{method} {path}: {}", r.body);
    }
    // The current version's run: readable, and not the reader's to cancel.
    assert_eq!(send(http().get(s.url(&format!("/api/runs/{current}"))).bearer_auth(&reader)).await.status, 200);
    let cancel = send(http().post(s.url(&format!("/api/runs/{current}/cancel"))).bearer_auth(&reader).json(&json!({}))).await;
    assert_eq!(cancel.status, 403, "{}", cancel.body);
}

#[tokio::test]
async fn keys_list_without_secrets_and_revocation_takes_effect_within_10_s() {
    let s = &shared().server;
    let t = tenant("keys");
    let created = send(http().post(s.url("/admin/keys")).bearer_auth(&s.admin_token).json(&json!({"tenant": t, "name": "ci", "scopes": ["content:write"], "rate_per_min": 100}))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_string();
    let id = created.body["key_id"].as_str().unwrap().to_string();
    assert_eq!(created.body["scopes"], json!(["content:write"]));
    let listed = s.admin_get(&format!("/admin/keys?tenant={t}")).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(!listed.body.to_string().contains(&key), "the listing never shows the key");
    assert!(listed.body.to_string().find("key_hash").is_none());
    // Bad requests are 422, and only the operator manages keys.
    for bad in [json!({"tenant": "Not_A_Slug", "name": "x", "scopes": ["content:read"]}), json!({"tenant": t, "name": "x", "scopes": ["content:everything"]}), json!({"tenant": t, "name": "x", "scopes": []}), json!({"tenant": "operator", "name": "x", "scopes": ["content:manage"]}), json!({"tenant": "legacy", "name": "x", "scopes": ["content:read"]})] {
        let r = send(http().post(s.url("/admin/keys")).bearer_auth(&s.admin_token).json(&bad)).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
    }
    assert_eq!(send(http().get(s.url("/admin/keys")).bearer_auth(&key)).await.status, 403);

    let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({"title": "k", "body": "key write"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let del = send(http().delete(s.url(&format!("/admin/keys/{id}"))).bearer_auth(&s.admin_token)).await;
    assert_eq!(del.status, 204, "{}", del.body);
    let revoked_at = Instant::now();
    loop {
        let r = send(http().get(s.url("/api/me")).bearer_auth(&key)).await;
        if r.status == 401 {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(10), "a revoked key still works after 10 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(send(http().delete(s.url(&format!("/admin/keys/{id}"))).bearer_auth(&s.admin_token)).await.status, 404);
}

#[tokio::test]
async fn a_burst_past_the_write_limit_is_429_with_retry_after() {
    let s = &shared().server;
    let key = mint_key(&s.base, &s.admin_token, &tenant("rate"), &["content:write"], Some(3));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..5 {
        let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({"title": format!("burst {i}"), "body": "burst text"}))).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.body["error"]["code"], "rate_limited");
            retry_after = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        }
    }
    assert_eq!(statuses, vec![202, 202, 202, 429, 429], "the fourth write in a minute is refused");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {retry_after:?}");
    // Deletes and run actions spend from the same bucket (a retry runs
    // stages again): create, cancel and delete use up 3, so a retry is 429.
    let key = mint_key(&s.base, &s.admin_token, &tenant("rate-actions"), &["content:write"], Some(3));
    let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({"title": "actions", "body": "action text"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (cid, run) = (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string());
    let cancel = send(http().post(s.url(&format!("/api/runs/{run}/cancel"))).bearer_auth(&key)).await;
    assert!(matches!(cancel.status, 200 | 409), "{}", cancel.body);
    let delete = send(http().delete(s.url(&format!("/api/content/{cid}"))).bearer_auth(&key)).await;
    assert_eq!(delete.status, 204, "{}", delete.body);
    let retry = send(http().post(s.url(&format!("/api/runs/{run}/retry"))).bearer_auth(&key)).await;
    assert_eq!((retry.status, retry.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", retry.body);
    // Anonymous writes are not rate-limited: they are refused outright.
    let anon = send(http().post(s.url("/api/content")).json(&json!({"title": "a", "body": "b"}))).await;
    assert_eq!(anon.status, 401);
}

/// A spent bucket outlives its actor's memory: spent, then the whole server
/// SIGKILLed and started again on the same state (every actor instance gone,
/// as an eviction leaves it), the next write is still refused. Before the
/// restart the inspector shows the bucket recorded in storage, which is the
/// only place the refusal can come from afterwards.
#[tokio::test]
async fn a_spent_bucket_is_still_spent_after_its_actor_leaves_memory() {
    // Its own server: it is killed and started again.
    let dir = temp_dir("rate-evict");
    let opts = ServerOptions::new(dir);
    let mut s = Server::start(&opts);
    let tenant = unique_tenant("rate-evict");
    // One write a minute: the restart, however slow, refills less than one.
    let key = mint_key(&s.base, &s.admin_token, &tenant, &["content:write"], Some(1));
    let key_id = key.split('_').nth(1).expect("alk_<id>_<secret>").to_string();
    let post = |s: &Server, i: usize| send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({"title": format!("evict {i}"), "body": "evict text"})));
    assert_eq!(post(&s, 0).await.status, 202);
    assert_eq!(post(&s, 1).await.status, 429);
    let bucket = s.admin_get(&format!("/admin/actors/rate_limit/write:{tenant}:{key_id}:0")).await;
    assert_eq!((bucket.status, &bucket.body["state"]["recorded"]), (200, &json!(true)), "a spent bucket is recorded: {}", bucket.body);
    s.restart(&opts, true);
    let r = post(&s, 2).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", r.body);
}

/// A chunked body (no Content-Length) past the cap is refused with 413
/// while it is being read, over a raw socket so nothing adds a length.
#[tokio::test]
async fn a_chunked_oversized_body_is_413() {
    let s = &shared().server;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/content HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.key
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{{\"title\":\"big\",\"body\":\"{}", "x".repeat(64 * 1024));
    let mut sent = 0usize;
    // Up to 2 MiB; the server may answer and close long before.
    while sent < 2 * 1024 * 1024 {
        let c = if sent == 0 { chunk.clone() } else { "x".repeat(64 * 1024) };
        if sock.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes()).await.is_err() {
            break;
        }
        sent += c.len();
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 413"), "{}", text.lines().next().unwrap_or(""));
    assert!(text.contains("payload_too_large"), "{text}");
}

#[tokio::test]
async fn a_session_holds_at_most_8_sockets() {
    let s = &shared().server;
    let (sid, token) = new_session(s).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(connect(s, &sid, &token).await);
    }
    match tokio_tungstenite::connect_async(s.ws_url(&format!("/api/sessions/{sid}/ws?token={token}"))).await {
        Ok(_) => panic!("a ninth socket was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 409),
        Err(e) => panic!("unexpected: {e}"),
    }
    // Closing one makes room again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio_tungstenite::connect_async(s.ws_url(&format!("/api/sessions/{sid}/ws?token={token}"))).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a socket closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server of its own with low limits, shared by the tests of the limits
/// that are not per request (reads by sockets, a batch's items, uploaded
/// megabytes). Each test spends from buckets of its own key.
fn limits() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        Server::start(
            &ServerOptions::new(temp_dir("limits"))
                .var("RATE_READ_PER_MIN", "2")
                .var("RATE_BATCH_ITEMS_PER_MIN", "10")
                .var("RATE_UPLOAD_MB_PER_MIN", "2"),
        )
    })
}

/// Ten tiny items for a batch.
fn batch_items(n: usize) -> Value {
    json!({ "items": (0..n).map(|i| json!({ "title": format!("imported {i}"), "body": "an imported item" })).collect::<Vec<_>>() })
}

/// A batch is one write, but each item is a run: the items spend from a
/// bucket of their own (`RATE_BATCH_ITEMS_PER_MIN`, here 10 a minute), so
/// a caller cannot start a thousand runs per write.
#[tokio::test]
async fn a_batch_spends_its_items_from_the_import_limit() {
    let s = limits();
    // A key at the default write limit: its items get the server's bucket.
    let key = mint_key(&s.base, &s.admin_token, &tenant("items"), &["content:write"], None);
    let post = |n: usize| send(http().post(s.url("/api/content/batch")).bearer_auth(&key).json(&batch_items(n)));
    let first = post(6).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let r = post(6).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (429, Some("rate_limited")), "6 + 6 items in a minute: {}", r.body);
    let wait: u64 = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}: two items at 10 a minute come back in about 12 s");
    assert_eq!(post(4).await.status, 202, "the 4 items left in the bucket");
    // The item bucket is its own: single writes and the operator go on.
    let one = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({ "title": "single", "body": "one write" }))).await;
    assert_eq!(one.status, 202, "{}", one.body);
    let admin = send(http().post(s.url("/api/content/batch")).bearer_auth(&s.admin_token).json(&batch_items(11))).await;
    assert_eq!(admin.status, 202, "the operator is not limited: {}", admin.body);
    let batch = first.body["batch_id"].as_str().expect("batch_id").to_string();
    eventually("the first batch completes", Duration::from_secs(120), || async {
        let view = s.admin_get(&format!("/api/batches/{batch}")).await;
        if view.body["completed"] == 6 { Ok(()) } else { Err(view.body.to_string()) }
    })
    .await;
    // A key the operator slowed to 3 writes a minute imports 3/60 of the
    // items, one a minute: a batch of 3 is taken from its full bucket into
    // debt, and the next waits until all three are paid for (2 minutes more).
    let slow = mint_key(&s.base, &s.admin_token, &tenant("items-slow"), &["content:write"], Some(3));
    let post = |n: usize| send(http().post(s.url("/api/content/batch")).bearer_auth(&slow).json(&batch_items(n)));
    assert_eq!(post(3).await.status, 202, "a batch larger than a minute's items is not refused for good");
    let r = post(1).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", r.body);
    let wait: u64 = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((100..=180).contains(&wait), "Retry-After {wait}: the debt of 2 items at 1 a minute is paid first");
}

/// An upload is one write, but its file is kept in R2 with every version:
/// its megabytes spend from a bucket of their own (`RATE_UPLOAD_MB_PER_MIN`,
/// here 2 a minute, a token per started megabyte), before it is stored.
#[tokio::test]
async fn uploads_spend_their_megabytes() {
    let s = limits();
    let key = mint_key(&s.base, &s.admin_token, &tenant("upload-mb"), &["content:write"], None);
    let upload = |bytes: usize| {
        let body = "upload budget text. ".repeat(bytes / 20 + 1)[..bytes].to_string();
        send(http().post(s.url("/api/uploads?title=budget")).bearer_auth(&key).header("content-type", "text/plain").body(body))
    };
    let r = upload(1_500_000).await;
    assert_eq!(r.status, 202, "1.5 MB, two of the minute's 2 megabytes: {}", r.body);
    let r = upload(100).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    // Writes of JSON spend from the write bucket only.
    let one = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({ "title": "after the upload", "body": "json text" }))).await;
    assert_eq!(one.status, 202, "{}", one.body);
}

/// A session's sockets and subscriptions are reads: opening a socket and
/// each `subscribe` spend from the principal's read bucket (here 2 a
/// minute, one back every 30 s), whichever socket or session they come
/// from, so reconnecting buys no fresh budget of calls to topic actors.
#[tokio::test]
async fn session_sockets_and_subscriptions_spend_reads() {
    let s = limits();
    let key = mint_key(&s.base, &s.admin_token, &tenant("session-reads"), &["content:read"], None);
    let (sid, token) = new_session_as(s, &key).await;
    let mut first = connect(s, &sid, &token).await;
    assert_eq!(subscription(&mut first, "feed").await["type"], "subscribed");
    let refused = subscription(&mut first, "feed").await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("rate_limited")), "a subscribe again is one more read: {refused}");
    match tokio_tungstenite::connect_async(s.ws_url(&format!("/api/sessions/{sid}/ws?token={token}"))).await {
        Ok(_) => panic!("a socket past the read limit was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        Err(e) => panic!("unexpected: {e}"),
    }
    // Sockets already open go on: a ping is free.
    ws_send(&mut first, json!({"type": "ping"})).await;
    assert!(reaches(&mut first, "pong").await, "no pong on the socket already open");
}

/// Whether a frame of type `kind` comes before the socket goes quiet.
async fn reaches(ws: &mut Ws, kind: &str) -> bool {
    while let Some(f) = ws_next(ws, WAIT).await {
        if f["type"] == kind {
            return true;
        }
    }
    false
}

/// Topics follow the same rules as reads: another tenant's content and run
/// topics are unknown to it, and the feed shows each session only what its
/// principal may read.
#[tokio::test]
async fn topics_and_the_feed_show_only_what_the_subscriber_may_read() {
    let s = &shared().server;
    let a = tenant("feeda");
    let writer = mint_key(&s.base, &s.admin_token, &a, &["content:write"], Some(1_000_000));
    let outsider = mint_key(&s.base, &s.admin_token, &tenant("feedb"), &["content:manage"], Some(1_000_000));
    let (osid, otok) = new_session_as(s, &outsider).await;
    let mut ows = connect(s, &osid, &otok).await;
    ws_send(&mut ows, json!({"type": "subscribe", "topic": "feed"})).await;
    assert!(reaches(&mut ows, "ready").await, "the outsider's feed subscription is ready");
    let create = |vis: &str| {
        let (writer, vis) = (writer.clone(), vis.to_string());
        async move {
            let r = send(http().post(s.url("/api/content")).bearer_auth(&writer).json(&json!({"title": format!("feed {vis}"), "body": "feed body text", "visibility": vis}))).await;
            assert_eq!(r.status, 202, "{}", r.body);
            (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string())
        }
    };
    let (hidden, hidden_run) = create("tenant").await;
    let (shown, shown_run) = create("public").await;
    s.wait_run(&hidden_run, WAIT).await;
    s.wait_run(&shown_run, WAIT).await;
    // The outsider's feed: the public item's events, none of the tenant item's.
    let mut saw_shown = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(f) = ws_next(&mut ows, Duration::from_secs(3)).await else { break };
        if f["type"] != "event" {
            continue;
        }
        let cid = f["data"]["content_id"].as_str().unwrap_or_default();
        assert_ne!(cid, hidden, "another tenant's item reached the outsider's feed: {f}");
        if cid == shown && f["event"] == ev::CONTENT_INDEXED {
            saw_shown = true;
        }
    }
    assert!(saw_shown, "the public item's events reach everyone");
    // Direct topics of the hidden item are unknown to the outsider.
    for topic in [format!("content:{hidden}"), format!("run:{hidden_run}")] {
        let f = subscription(&mut ows, &topic).await;
        assert_eq!(f["code"], "unknown_topic", "{topic} was not refused: {f}");
    }
}

/// The first answer to a `subscribe` on `ws`: its `subscribed` or `error` frame.
async fn subscription(ws: &mut Ws, topic: &str) -> Value {
    ws_send(ws, json!({"type": "subscribe", "topic": topic})).await;
    while let Some(f) = ws_next(ws, WAIT).await {
        if f["type"] == "subscribed" || f["type"] == "error" {
            return f;
        }
    }
    panic!("no answer to the subscription to {topic}");
}

/// A run admits its item's owner by itself, but a reader the item's
/// visibility decides for is still refused, and once the item is deleted
/// nobody follows its run.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_follows_its_run_until_its_item_is_deleted() {
    let s = &shared().server;
    let (owner, reader, content, run) = private_item_and_a_reader(s, "ownrun", "own run", "a private body").await;
    let topic = format!("run:{run}");

    let (sid, tok) = new_session_as(s, &owner).await;
    let mut ws = connect(s, &sid, &tok).await;
    let f = subscription(&mut ws, &topic).await;
    assert_eq!(f["type"], "subscribed", "the owner follows its private item's run: {f}");

    let (rsid, rtok) = new_session_as(s, &reader).await;
    let mut rws = connect(s, &rsid, &rtok).await;
    let f = subscription(&mut rws, &topic).await;
    assert_eq!(f["code"], "unknown_topic", "a same-tenant reader of a private item's run: {f}");

    let d = send(http().delete(s.url(&format!("/api/content/{content}"))).bearer_auth(&owner)).await;
    assert_eq!(d.status, 204, "{}", d.body);
    let mut again = connect(s, &sid, &tok).await;
    let f = subscription(&mut again, &topic).await;
    assert_eq!(f["code"], "unknown_topic", "the owner after deleting the item: {f}");
}

