//! End-to-end test of the real binary: startup line, HTTP over a socket,
//! persistence across a restart, and clean exit on SIGTERM.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ARTICLE: &str = "City officials announced on Tuesday that the long-delayed renovation of \
    the central library will begin next spring, ending years of debate over how to fund the \
    project. The plan calls for a new reading room on the second floor, expanded children's \
    areas, and a rooftop garden that will double as an outdoor classroom during the summer \
    months. According to the mayor's office, the total cost is estimated at forty-two million \
    dollars, with roughly half coming from a state grant approved last year and the remainder \
    from municipal bonds. Critics on the council argued that the money would be better spent on \
    neighborhood branches, several of which have reduced their opening hours because of staffing \
    shortages. Library director Maria Alvarez said the renovation would not affect branch \
    budgets and that the central building had become unsafe in places, pointing to leaking \
    windows and an outdated heating system that failed twice last winter.";

/// Running server process; killed on drop so a failing assertion never
/// leaks a process holding a port.
struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_analyzer"))
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("PORT")
            .env_remove("ANALYZER_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn analyzer binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = Server {
            child: Some(child),
            port: 0,
        };

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("listening line within 30s");
        let addr = line
            .trim_end()
            .strip_prefix("analyzer listening on http://")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        assert_eq!(host, "127.0.0.1");
        server.port = port.parse().expect("numeric port");
        assert_ne!(server.port, 0);
        server
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body.as_bytes()).expect("write body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        let raw = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body split");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        // A 204 has no body at all.
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"))
        };
        (status, value)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running child");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("analyzer did not exit within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("analyzer-bin-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn serves_persists_and_exits_cleanly_on_sigterm() {
    let data = TempDir::new();

    let server = Server::start(&data.0);
    let (status, health) = server.request("GET", "/health", None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["fingerprints"], 0);

    let (status, v) = server.request(
        "POST",
        "/analyze",
        Some(&json!({ "id": "original", "version": 1, "title": "Library", "text": ARTICLE })),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["language"]["code"], "en");
    assert_eq!(v["near_duplicates"], json!([]));

    let (status, v) = server.request("POST", "/analyze", Some(&json!({ "id": "x" })));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    let (status, v) = server.request("GET", "/missing", None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    // Restart on the same data dir: the fingerprint must still be there.
    let server = Server::start(&data.0);
    let (status, v) = server.request("GET", "/ready", None);
    assert_eq!((status, v), (200, json!({ "ready": true })));
    let (_, health) = server.request("GET", "/health", None);
    assert_eq!(health["fingerprints"], 1);

    let copy = ARTICLE
        .replace("Tuesday", "Monday")
        .replace("second floor", "top floor")
        + " The council will vote on the final budget in June.";
    let (status, v) = server.request(
        "POST",
        "/analyze",
        Some(&json!({ "id": "copy", "text": copy })),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["near_duplicates"][0]["id"], "original", "{v}");

    // A deleted document stays forgotten across a restart.
    let (status, v) = server.request("DELETE", "/documents/original", None);
    assert_eq!((status, v), (204, Value::Null));
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let server = Server::start(&data.0);
    let (_, health) = server.request("GET", "/health", None);
    assert_eq!(health["fingerprints"], 1);
    let (status, v) = server.request(
        "POST",
        "/analyze",
        Some(&json!({ "id": "again", "text": ARTICLE })),
    );
    assert_eq!(status, 200, "{v}");
    let ids: Vec<&Value> = v["near_duplicates"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, [&json!("copy")], "{v}");

    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
