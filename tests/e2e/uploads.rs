//! Uploads (DESIGN "Uploads and bulk ingest"): files stored in local R2,
//! their text extracted by the run's `validate` stage (Markdown and HTML in
//! the Worker, PDF in the analyzer), the original served back byte for byte,
//! and erased from R2 by a hard delete.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::pdf::pdf_with_text;
use crate::support::*;

/// A word no other document contains, so a search for it finds one item.
fn marker(tag: &str) -> String {
    format!("{tag}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// `POST /api/uploads` with the harness's key.
async fn upload(s: &Server, content_type: &str, body: Vec<u8>, query: &[(&str, &str)]) -> Reply {
    send(
        http()
            .post(s.url("/api/uploads"))
            .bearer_auth(&s.key)
            .header("content-type", content_type)
            .query(query)
            .body(body),
    )
    .await
}

/// Uploads a file that must be accepted; returns (content_id, run_id).
async fn accepted(s: &Server, content_type: &str, body: Vec<u8>, query: &[(&str, &str)]) -> (String, String) {
    let r = upload(s, content_type, body, query).await;
    assert_eq!(r.status, 202, "upload: {}", r.body);
    (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string())
}

/// The source file's status, content type and bytes, as `key` reads them.
async fn source(s: &Server, key: &str, cid: &str, version: Option<u32>) -> (u16, String, Vec<u8>) {
    let mut req = http().get(s.url(&format!("/api/content/{cid}/source"))).bearer_auth(key);
    if let Some(v) = version {
        req = req.query(&[("version", v.to_string())]);
    }
    let resp = req.send().await.expect("source request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, ct, resp.bytes().await.expect("source body").to_vec())
}

async fn search_finds(s: &Server, q: &str, cid: &str) -> bool {
    let r = send(http().get(s.url("/api/search")).bearer_auth(&s.key).query(&[("q", q), ("k", "20")])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["results"].as_array().is_some_and(|rs| rs.iter().any(|x| x["content_id"] == cid))
}

async fn assert_completed(s: &Server, run: &str) {
    let view = s.wait_run(run, Duration::from_secs(120)).await;
    assert_eq!(view["status"], "completed", "{view}");
}

#[tokio::test]
async fn markdown_html_and_pdf_uploads_become_searchable_and_keep_their_bytes() {
    let s = &shared().server;
    let (md_word, html_word, pdf_word) = (marker("mdword"), marker("htmlword"), marker("pdfword"));
    let markdown = format!(
        "# Tidal notes\n\nThe estuary turbines turn twice a day. Operators log {md_word} readings.\n\n- item one\n- item two\n"
    )
    .into_bytes();
    let html = format!(
        "<!DOCTYPE html><html><head><title>Harbor page</title><style>p {{ color: red }}</style></head><body>\
         <h1>Harbor lights</h1><p>The lamps are lit at dusk &amp; the keepers record {html_word} in a ledger.</p>\
         <script>var leaked = \"scriptleak\";</script></body></html>"
    )
    .into_bytes();
    let pdf = pdf_with_text(&format!("Glaciers retreat every summer and surveyors note {pdf_word} levels."));
    let uploads = [
        ("text/markdown; charset=utf-8", markdown, md_word, "Tidal notes"),
        ("text/html", html, html_word, "Harbor page"),
        ("application/pdf", pdf, pdf_word, "Untitled upload"),
    ];
    let mut items = Vec::new();
    for (ct, bytes, word, title) in &uploads {
        let (cid, run) = accepted(s, ct, bytes.clone(), &[("category", "uploads")]).await;
        items.push((cid, run, ct, bytes, word, title));
    }
    for (cid, run, ct, bytes, word, title) in &items {
        assert_completed(s, run).await;
        let view = s.get(&format!("/api/content/{cid}")).await;
        assert_eq!(view.status, 200, "{}", view.body);
        assert_eq!(view.body["title"], **title, "default title of {ct}");
        assert_eq!(view.body["status"], "indexed", "{}", view.body);
        let body = view.body["body"].as_str().unwrap();
        assert!(body.contains(word.as_str()), "{ct}: extracted body lacks the phrase: {body:?}");
        for tag in ["<p>", "<h1>", "scriptleak", "color: red", "# Tidal", "BT /F1"] {
            assert!(!body.contains(tag), "{ct}: {tag:?} left in the body: {body:?}");
        }
        assert_eq!(view.body["source"]["content_type"], **ct);
        assert_eq!(view.body["source"]["bytes"], bytes.len() as u64);
        assert_eq!(view.body["source"]["sha256"].as_str().unwrap().len(), 64);
        assert!(search_finds(s, word, cid).await, "{ct}: search for {word} misses {cid}");
        let (status, served_ct, served) = source(s, &s.key, cid, None).await;
        assert_eq!((status, served_ct.as_str()), (200, **ct));
        assert!(served == **bytes, "{ct}: source differs from the upload");
    }
}

#[tokio::test]
async fn a_new_file_version_keeps_the_old_source_readable() {
    let s = &shared().server;
    let v1 = b"# First draft\n\nThe first draft talks about orchards.".to_vec();
    let (cid, run1) = accepted(s, "text/markdown", v1.clone(), &[]).await;
    assert_completed(s, &run1).await;
    let word = marker("secondversion");
    let v2 = format!("The second version is plain text about {word} and vineyards.").into_bytes();
    let put = |if_match: &'static str, body: Vec<u8>| {
        send(
            http()
                .put(s.url(&format!("/api/content/{cid}/source")))
                .bearer_auth(&s.key)
                .header("content-type", "text/plain")
                .header("if-match", if_match)
                .body(body),
        )
    };
    let stale = put("\"7\"", v2.clone()).await;
    assert_eq!((stale.status, stale.body["error"]["code"].as_str()), (412, Some("version_conflict")), "{}", stale.body);
    let r = put("\"1\"", v2.clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_completed(s, r.body["run_id"].as_str().unwrap()).await;
    let view = s.get(&format!("/api/content/{cid}")).await.body;
    assert_eq!(view["title"], "First draft", "a file version keeps the title");
    assert!(view["body"].as_str().unwrap().contains(&word), "{view}");
    assert_eq!(view["source"]["content_type"], "text/plain");
    assert_eq!(source(s, &s.key, &cid, None).await, (200, "text/plain".into(), v2.clone()));
    assert_eq!(source(s, &s.key, &cid, Some(2)).await.2, v2);
    assert_eq!(source(s, &s.key, &cid, Some(1)).await, (200, "text/markdown".into(), v1));
    assert_eq!(source(s, &s.key, &cid, Some(3)).await.0, 404);
    // A JSON version has no file; the file versions stay in the history.
    let r = s.put(&format!("/api/content/{cid}"), serde_json::json!({ "title": "JSON", "body": "typed text" })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(source(s, &s.key, &cid, None).await.0, 404);
    assert_eq!(source(s, &s.key, &cid, Some(2)).await.2, v2);
    // The JSON operation takes no file: it points at the file operation.
    let file_to_json = send(
        http().put(s.url(&format!("/api/content/{cid}"))).bearer_auth(&s.key).header("content-type", "text/plain").body("a file"),
    )
    .await;
    assert_eq!(file_to_json.status, 415, "{}", file_to_json.body);
    assert!(file_to_json.body["error"]["message"].as_str().unwrap().contains("/source"), "{}", file_to_json.body);
}

#[tokio::test]
async fn other_types_are_415_and_a_file_without_text_fails_its_run() {
    let s = &shared().server;
    let r = upload(s, "image/png", vec![0x89, b'P', b'N', b'G'], &[]).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("text/markdown"), "{}", r.body);
    let r = upload(s, "text/plain", b"x".to_vec(), &[("visibility", "secret")]).await;
    assert_eq!((r.status, r.body["error"]["field"].as_str()), (422, Some("visibility")), "{}", r.body);

    let cases = [
        ("text/html", b"<html><script>only()</script><style>p{}</style></html>".to_vec(), "no extractable text in HTML upload"),
        ("text/plain", Vec::new(), "no extractable text in plain text upload"),
        ("text/plain", b" \n\t\x01 ".to_vec(), "no extractable text in plain text upload"),
        ("application/pdf", pdf_with_text(""), "no extractable text in PDF upload"),
    ];
    for (ct, bytes, reason) in cases {
        let (cid, run) = accepted(s, ct, bytes, &[("title", "Nothing here")]).await;
        let view = s.wait_run(&run, Duration::from_secs(120)).await;
        assert_eq!(view["status"], "failed", "{ct}: {view}");
        let validate = view["stages"].as_array().unwrap().iter().find(|st| st["name"] == "validate").unwrap();
        assert_eq!(validate["status"], "failed", "{view}");
        assert!(validate["error"]["message"].as_str().unwrap_or("").contains(reason), "{ct}: {view}");
        assert_eq!(validate["error"]["class"], "terminal", "{view}");
        assert_eq!(validate["attempts"], 1, "a terminal reason is not retried: {view}");
        let content = s.get(&format!("/api/content/{cid}")).await.body;
        assert_eq!(content["status"], "failed", "{content}");
    }
}

#[tokio::test]
async fn another_tenant_and_anonymous_callers_get_404_on_source() {
    let s = &shared().server;
    let (cid, _) = accepted(s, "text/plain", b"Tenant-only notes about lighthouses.".to_vec(), &[]).await;
    let other = mint_key(&s.base, &s.admin_token, &marker("other"), &["content:manage"], Some(1_000_000));
    assert_eq!(source(s, &other, &cid, None).await.0, 404);
    let anonymous = http().get(s.url(&format!("/api/content/{cid}/source"))).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 404);
    let reader = mint_key(&s.base, &s.admin_token, TEST_TENANT, &["content:read"], Some(1_000_000));
    assert_eq!(source(s, &reader, &cid, None).await.0, 200, "a reader of the tenant may read it");
    // Another tenant may not add a file version either (404, not 403).
    let r = send(
        http()
            .put(s.url(&format!("/api/content/{cid}/source")))
            .bearer_auth(&other)
            .header("content-type", "text/plain")
            .body("hijack"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Whether local R2 holds `key`, read by `wrangler r2 object get` from the
/// server's persisted state (not through the Worker).
fn r2_has(s: &Server, key: &str) -> bool {
    let out = std::process::Command::new(root().join("node_modules/.bin/wrangler"))
        .current_dir(root())
        .env("WRANGLER_SEND_METRICS", "false")
        .args(["r2", "object", "get", &format!("actorline-uploads/{key}"), "--local", "--pipe", "--persist-to"])
        .arg(&s.state_dir)
        .stdin(Stdio::null())
        .output()
        .expect("wrangler r2 object get");
    out.status.success() && !out.stdout.is_empty()
}

#[tokio::test]
async fn delete_leaves_no_uploaded_object_in_r2() {
    let s = &shared().server;
    let (cid, run1) = accepted(s, "text/plain", b"Version one about canals.".to_vec(), &[]).await;
    assert_completed(s, &run1).await;
    let r = send(
        http()
            .put(s.url(&format!("/api/content/{cid}/source")))
            .bearer_auth(&s.key)
            .header("content-type", "text/markdown")
            .body("# Canals\n\nVersion two about locks."),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // The object keys, from the content actor's own state.
    let inspected = s.admin_get(&format!("/admin/actors/content/{cid}")).await;
    assert_eq!(inspected.status, 200, "{}", inspected.body);
    let history = inspected.body["state"]["content"]["history"].as_array().cloned().unwrap_or_default();
    let keys: Vec<String> = history.iter().filter_map(|v| v["source"]["key"].as_str().map(str::to_string)).collect();
    assert_eq!(keys.len(), 2, "{}", inspected.body);
    for key in &keys {
        assert!(key.starts_with(&format!("uploads/{TEST_TENANT}/{cid}/")), "{key}");
        assert!(r2_has(s, key), "{key} is not in local R2 before the delete");
    }
    assert_eq!(s.delete(&format!("/api/content/{cid}")).await.status, 204);
    assert_eq!(source(s, &s.key, &cid, Some(1)).await.0, 404);
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in &keys {
        while r2_has(s, key) {
            assert!(Instant::now() < deadline, "{key} is still in R2 after the delete");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // The duty that erased them is done, not left retrying.
    eventually("the uploads duty done", Duration::from_secs(30), || async {
        let inspected: Value = s.admin_get(&format!("/admin/actors/content/{cid}")).await.body;
        let outbox = inspected["state"]["outbox"].as_array().cloned().ok_or_else(|| format!("no outbox in {inspected}"))?;
        if outbox.iter().any(|d| d["key"] == "uploads") { Err(format!("{outbox:?}")) } else { Ok(()) }
    })
    .await;
}

/// The status of an upload sent with `Transfer-Encoding: chunked` (no
/// `Content-Length`) of `chunks` chunks of `size` bytes, over a raw socket.
async fn chunked_upload_status(s: &Server, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {}\r\ncontent-type: text/plain\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        s.key
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    for _ in 0..chunks {
        let words = "lake ".repeat(size / 5);
        let chunk = format!("{:x}\r\n{words}\r\n", words.len());
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server may answer and close before the last chunk
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test]
async fn uploads_past_max_upload_bytes_are_413_with_or_without_content_length() {
    let dir = temp_dir("uploads-cap");
    // No analyzer: the optional analyze stage is skipped for text.
    let s = Server::start(&ServerOptions::new(dir.join("state")).var("MAX_UPLOAD_BYTES", "2048"));
    let r = upload(&s, "text/plain", vec![b'a'; 2049], &[]).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{}", r.body);
    assert_eq!(chunked_upload_status(&s, 8, 512).await, 413, "chunked, no Content-Length: the cap holds while reading");
    assert_eq!(chunked_upload_status(&s, 2, 512).await, 202);
    let (_, run) = accepted(&s, "text/plain", b"Under the cap: words about rivers.".to_vec(), &[]).await;
    assert_completed(&s, &run).await;
}

/// An item is one stored value in its actor (2 MB at most in a Durable
/// Object's SQLite), and a body JSON escapes (quotes, control characters)
/// takes more there than in the request. A create, a `PUT`, a batch item or
/// an upload's publish that would outgrow it is refused, 413
/// `item_too_large`, with nothing written: not a 500, nor a run or a spawn
/// retried until it dead-letters; a run's stored step past it fails for good.
#[tokio::test]
async fn an_item_that_would_outgrow_its_stored_value_is_413_not_a_500() {
    let s = Server::start(&ServerOptions::new(temp_dir("item-too-large").join("state")).var("LIMIT_BODY_BYTES", "1900000"));
    // 1.8 MB of words and 100 KB of quotes: 1.9 MB of body, 2 MB stored.
    let heavy = format!("{}{}", "words about rivers. ".repeat(90_000), "\"".repeat(100_000));
    let too_large = |r: &Reply| (r.status, r.body["error"]["code"].as_str().map(str::to_string));
    let r = s.post("/api/content", serde_json::json!({ "title": "Heavy", "body": heavy })).await;
    assert_eq!(too_large(&r), (413, Some("item_too_large".into())), "{}", r.body);
    let r = s.post("/api/content", serde_json::json!({ "title": "Light", "body": "Words about rivers and their banks." })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (cid, run) = (r.body["content_id"].as_str().unwrap().to_string(), r.body["run_id"].as_str().unwrap().to_string());
    assert_completed(&s, &run).await;
    let r = s.put(&format!("/api/content/{cid}"), serde_json::json!({ "title": "Heavy", "body": heavy })).await;
    assert_eq!(too_large(&r), (413, Some("item_too_large".into())), "{}", r.body);
    let c = s.get(&format!("/api/content/{cid}")).await.body;
    assert_eq!((c["version"].as_u64(), c["title"].as_str(), c["status"].as_str()), (Some(1), Some("Light"), Some("indexed")), "{c}");
    // A batch item the same: it fails at its first try with the reason (a
    // retry would be refused alike), and its content actor holds nothing.
    let r = s.post("/api/content/batch", serde_json::json!({ "items": [
        { "title": "Heavy", "body": heavy },
        { "title": "Light", "body": "Words about rivers and their banks." },
    ] })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let batch = r.body["batch_id"].as_str().unwrap().to_string();
    let view = s.wait_batch(&batch, Duration::from_secs(120)).await;
    let heavy_item = &view["items"][0];
    assert_eq!((heavy_item["status"].as_str(), view["completed"].as_u64()), (Some("failed"), Some(1)), "{view}");
    let error = heavy_item["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("refused: ") && error.contains("bytes stored"), "{view}");
    let refused_id = actorline::domain::batch::content_id(batch.parse().unwrap(), 0);
    let actor = s.admin_get(&format!("/admin/actors/content/{refused_id}")).await;
    assert_eq!(actor.status, 404, "nothing written for a refused item: {}", actor.body);
    // An upload's text is stored by its run on its way to the body: a
    // million quotes is 2 MB as JSON, past what one stored value holds, so
    // the run fails for good at that store, with the reason, not retried
    // until it dead-letters.
    let mut file = b"Words about rivers. ".to_vec();
    file.extend(std::iter::repeat_n(b'"', 1_000_000));
    let (cid, run) = accepted(&s, "text/plain", file, &[("title", "Quotes")]).await;
    let view = s.wait_run(&run, Duration::from_secs(120)).await;
    assert_eq!(view["status"], "failed", "{view}");
    let validate = view["stages"].as_array().unwrap().iter().find(|st| st["name"] == "validate").expect("validate stage").clone();
    assert_eq!((validate["status"].as_str(), validate["attempts"].as_u64()), (Some("failed"), Some(1)), "refused for good, not retried: {view}");
    assert!(validate["error"]["message"].as_str().unwrap_or_default().contains("more than one stored value holds"), "{view}");
    assert_eq!(s.get(&format!("/api/content/{cid}")).await.body["status"], "failed");
}

/// Lowercase hex SHA-256, computed here rather than by the Worker.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_multi_megabyte_upload_is_streamed_and_kept_byte_for_byte_with_its_real_sha256() {
    let s = &shared().server;
    // A heading (the default title comes from the file's first bytes), every
    // byte value, then 6 MB of lines: more than a Worker should hold at once.
    let mut file = b"# Streamed survey\n\n".to_vec();
    file.extend(0u8..=255);
    let mut line = 0u64;
    while file.len() < 6 * 1024 * 1024 {
        file.extend(format!("\nline {line}: reading {}", line.wrapping_mul(2_654_435_761) % 1_000_003).as_bytes());
        line += 1;
    }
    let sha256 = sha256_hex(&file);
    let (cid, run) = accepted(s, "text/markdown", file.clone(), &[]).await;
    // Its text is far past LIMIT_BODY_BYTES, so the run fails; the file stays.
    let view = s.wait_run(&run, Duration::from_secs(120)).await;
    assert_eq!(view["status"], "failed", "{view}");
    let content = s.get(&format!("/api/content/{cid}")).await.body;
    assert_eq!(content["title"], "Streamed survey", "{content}");
    assert_eq!(content["source"]["bytes"], file.len() as u64, "{content}");
    assert_eq!(content["source"]["sha256"], sha256.as_str(), "{content}");
    let resp = http().get(s.url(&format!("/api/content/{cid}/source"))).bearer_auth(&s.key).send().await.expect("source");
    assert_eq!(resp.status().as_u16(), 200);
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(etag, format!("\"{sha256}\""));
    let served = resp.bytes().await.expect("source body");
    assert_eq!(served.len(), file.len());
    assert!(served == file, "the source differs from the upload");
}

/// A PDF whose text passes twice the body limit is refused by the analyzer
/// itself (its text is never handed back whole to the actors): the run
/// fails at `validate` on its first attempt, terminally, and the analyzer
/// still serves the next PDF.
#[tokio::test]
async fn a_pdf_whose_text_is_far_past_the_body_limit_is_refused_by_the_analyzer() {
    let s = &shared().server;
    let words = "granite harbour lamp keeper ".repeat(20_000); // 560,000 bytes, past twice the default limit (200 KiB)
    let (_, run) = accepted(s, "application/pdf", pdf_with_text(&words), &[("title", "Long ledger")]).await;
    let view = s.wait_run(&run, Duration::from_secs(60)).await;
    assert_eq!(view["status"], "failed", "{view}");
    let validate = view["stages"].as_array().and_then(|st| st.iter().find(|x| x["name"] == "validate")).cloned().unwrap_or_default();
    assert_eq!((validate["status"].as_str(), validate["attempts"].as_u64()), (Some("failed"), Some(1)), "{view}");
    let error = validate["error"].to_string();
    assert!(error.contains("analyzer refused the document (422)") && error.contains("its text passes"), "{error}");
    let word = marker("afterword");
    let (_, run) = accepted(s, "application/pdf", pdf_with_text(&format!("The keepers wrote {word} in the ledger.")), &[]).await;
    assert_eq!(s.wait_run(&run, Duration::from_secs(60)).await["status"], "completed");
}

/// The reply to an upload that declares `declared` bytes and sends `sent`
/// before closing its side of the connection (`None` without one).
async fn short_body_upload(s: &Server, key: &str, declared: usize, sent: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let head = format!(
        "POST /api/uploads?title=Short HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\
         content-type: text/plain\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all("words ".repeat(sent / 6).as_bytes()).await.expect("write body");
    tcp.flush().await.expect("flush");
    // Let the Worker start storing before the body breaks off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tcp.shutdown().await.expect("shutdown");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).split_whitespace().nth(1).and_then(|code| code.parse().ok())
}

/// The keys local R2 holds under `prefix`, read from the server's persisted
/// state (miniflare's R2 index, one SQLite database per bucket object), not
/// through the Worker, which has no listing route.
fn r2_keys(s: &Server, prefix: &str) -> Vec<String> {
    use rusqlite::{Connection, OpenFlags};
    let mut keys = Vec::new();
    let dir = s.state_dir.join("v3/r2/miniflare-R2BucketObject");
    // Missing, every "no object" check would pass whatever R2 holds.
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("local R2's index {}: {e}", dir.display()));
    let mut tables = 0;
    for db in entries.flatten().map(|e| e.path()) {
        if db.extension().is_some_and(|x| x == "sqlite") {
            let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
            let mut stmt = match conn.prepare("SELECT key FROM _mf_objects WHERE key LIKE ?1 || '%'") {
                Ok(stmt) => stmt,
                // The bucket object's own metadata database.
                Err(e) if e.to_string().contains("no such table") => continue,
                Err(e) => panic!("{}: {e}", db.display()),
            };
            tables += 1;
            let rows = stmt.query_map([prefix], |row| row.get::<_, String>(0)).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
            keys.extend(rows.map(|k| k.unwrap_or_else(|e| panic!("{}: {e}", db.display()))));
        }
    }
    assert!(tables > 0, "no object table in local R2's index {}", dir.display());
    keys
}

/// A new item's create that fails on the way (the Worker's call lost before
/// the actor heard of it: 503, its outcome unknown to the Worker) leaves no
/// object behind: the item's actor settles the create as never made, so no
/// later create can make it, and the stored file goes. (On a server of its
/// own, where every create call is lost.)
#[tokio::test]
async fn an_upload_whose_create_was_lost_leaves_no_object() {
    let s = &Server::start(&ServerOptions::new(temp_dir("uploads-lost-create").join("state")).var("FAULTS", "create=1.0"));
    let tenant = unique_tenant("lost");
    let key = mint_key(&s.base, &s.admin_token, &tenant, &["content:manage"], Some(1_000_000));
    let r = send(http().post(s.url("/api/uploads")).bearer_auth(&key).header("content-type", "text/plain").body("Words about tides.")).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (503, Some("unavailable")), "{}", r.body);
    s.logged("its item was never made").await;
    assert_eq!(r2_keys(s, &format!("uploads/{tenant}/")), Vec::<String>::new(), "no object is left for an item that will never exist");
}

/// A new version's file whose item is deleted while the file streams in,
/// and whose version's reply is then lost (`version_reply=1.0`: a 503, its
/// outcome unknown): the Worker finds the item gone and drops the object,
/// which the DELETE (done before it was stored) could not erase and no
/// later one can.
#[tokio::test]
async fn a_file_stored_for_an_item_deleted_meanwhile_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = &Server::start(&ServerOptions::new(temp_dir("uploads-deleted-mid-put").join("state")).var("FAULTS", "version_reply=1.0"));
    let tenant = unique_tenant("midput");
    let key = mint_key(&s.base, &s.admin_token, &tenant, &["content:manage"], Some(1_000_000));
    let r = send(http().post(s.url("/api/content")).bearer_auth(&key).json(&json!({ "title": "Tides", "body": "Words about tides." }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    // Half the file, then the DELETE, then the rest.
    let body = "words about the harbour ".repeat(20_000);
    let host = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let head = format!(
        "PUT /api/content/{cid}/source HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\
         content-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(&body.as_bytes()[..body.len() / 2]).await.expect("write half");
    tcp.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send(http().delete(s.url(&format!("/api/content/{cid}"))).bearer_auth(&key)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    tcp.write_all(&body.as_bytes()[body.len() / 2..]).await.expect("write the rest");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut reply)).await;
    let status = String::from_utf8_lossy(&reply).split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok());
    assert_eq!(status, Some(503), "{}", String::from_utf8_lossy(&reply));
    s.logged(&format!("uploads/{tenant}/{cid}/")).await;
    assert_eq!(r2_keys(s, &format!("uploads/{tenant}/{cid}/")), Vec::<String>::new(), "a file of a deleted item is left at rest");
}

/// On a server of its own: the dev proxy's broken forward can fail the next
/// request through it too, which must not hit other tests.
#[tokio::test]
async fn a_body_shorter_than_its_content_length_stores_no_object_and_no_item() {
    let s = &Server::start(&ServerOptions::new(temp_dir("uploads-short").join("state")));
    let tenant = unique_tenant("short");
    let key = mint_key(&s.base, &s.admin_token, &tenant, &["content:manage"], Some(1_000_000));
    let status = short_body_upload(s, &key, 3 * 1024 * 1024, 256 * 1024).await;
    // The Worker refuses it with a 400 and logs why; under `wrangler dev` the
    // client sees the dev proxy's 503 ("Your worker restarted mid-request")
    // instead, as the proxy's own forward of the body broke first.
    assert!(matches!(status, Some(400 | 503)), "{status:?}");
    let refused = format!("upload uploads/{tenant}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.log_text().lines().any(|l| l.contains(&refused) && l.contains("its body broke off")) {
        assert!(Instant::now() < deadline, "the Worker logged no refusal of the short body");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The tenant's next upload is stored, so its item and object are the only
    // ones. (The proxy may answer its first try with that 503 too.)
    let mut tries = 0;
    let r = loop {
        let body = "Whole words about tides.";
        let r = send(http().post(s.url("/api/uploads")).bearer_auth(&key).header("content-type", "text/plain").body(body)).await;
        tries += 1;
        if r.status != 503 || tries == 3 {
            break r;
        }
    };
    assert_eq!(r.status, 202, "{}", r.body);
    let cid = r.body["content_id"].as_str().unwrap().to_string();
    assert_completed(s, r.body["run_id"].as_str().unwrap()).await;
    let list = send(http().get(s.url("/api/content")).bearer_auth(&key)).await;
    let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, [cid.as_str()], "{}", list.body);
    let keys = r2_keys(s, &format!("uploads/{tenant}/"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("uploads/{tenant}/{cid}/")), "{keys:?}");
}
