//! Answer quality: grounded, cited answers over a generated, judged corpus,
//! measured against the real system (wrangler dev). Run with `make eval`.
//!
//! The corpus is generated here, deterministically: 16 made-up landmarks, each
//! with a fact sheet (built when, made of what, how tall) and a visitor note
//! that names it without stating those facts. Each landmark gets three
//! questions whose answer is in its fact sheet; 10 more questions ask about
//! landmarks that do not exist. Measured:
//! - cited: the share of answerable questions whose citations include the
//!   fact sheet that holds the answer;
//! - correct: the share whose answer text contains the expected value;
//! - supported: the share of cited sentences that appear verbatim in the
//!   source they cite;
//! - focused: the share of cited sentences of answerable questions that hold
//!   the expected value (the rest is true but beside the question);
//! - abstained: the share of unanswerable questions answered "I don't know"
//!   with no citation;
//! - time to the first delta and to completion (median and p95).
//!
//! Exits 1 if citations stop supporting the answers (supported < 1.0) or
//! cited, correct or abstained fall below 0.8.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SYLLABLES: &[&str] = &["var", "nel", "tor", "bri", "sca", "lum", "dor", "vek", "mar", "quin", "ost", "ral", "fen", "gil", "hob", "zan"];
const KINDS: &[&str] = &["bridge", "lighthouse", "tower", "dam"];
const MATERIALS: &[&str] = &["granite", "cast iron", "red brick", "limestone", "reinforced concrete", "oak timber"];

struct Landmark {
    name: String,
    kind: &'static str,
    year: u32,
    material: &'static str,
    height: u32,
}

fn name(i: usize, salt: usize) -> String {
    let a = SYLLABLES[(i * 7 + salt) % SYLLABLES.len()];
    let b = SYLLABLES[(i * 3 + 5 + salt) % SYLLABLES.len()];
    let mut n = format!("{a}{b}");
    n[..1].make_ascii_uppercase();
    n
}

fn landmarks() -> Vec<Landmark> {
    (0..16)
        .map(|i| Landmark {
            name: name(i, 0),
            kind: KINDS[i % KINDS.len()],
            year: 1801 + (i as u32 * 37) % 190,
            material: MATERIALS[i % MATERIALS.len()],
            height: 20 + (i as u32 * 13) % 90,
        })
        .collect()
}

/// (title, body) of the fact sheet and of the visitor note.
fn documents(l: &Landmark) -> [(String, String); 2] {
    let (n, k) = (&l.name, l.kind);
    [
        (
            format!("The {n} {k}"),
            format!(
                "The {n} {k} stands at the edge of the old harbour district. The {n} {k} was built in {year}. \
                 The {n} {k} is made of {mat}. The {n} {k} rises {h} metres above the ground. \
                 Local records describe repairs after several winter storms.",
                year = l.year,
                mat = l.material,
                h = l.height
            ),
        ),
        (
            format!("Visiting {n}"),
            format!(
                "Visitors to {n} often arrive by the coastal road. Guides in {n} recommend the evening tour. \
                 Cafés near the {k} stay open late in summer."
            ),
        ),
    ]
}

/// (question, the landmark it is about, the value the answer must contain).
fn questions(ls: &[Landmark]) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let (n, k) = (&l.name, l.kind);
        out.push((format!("When was the {n} {k} built?"), i, l.year.to_string()));
        out.push((format!("What is the {n} {k} made of?"), i, l.material.to_string()));
        out.push((format!("How many metres does the {n} {k} rise above the ground?"), i, format!("{} metres", l.height)));
    }
    out
}

fn unanswerable() -> Vec<String> {
    (0..10).map(|i| format!("Who designed the {} aqueduct and which river feeds it?", name(i, 9) + "ix")).collect()
}

/// The cited sentences of an answer text: each `… [n]` piece and its `n`.
fn cited_sentences(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|c| c + open) else { break };
        if let Ok(n) = rest[open + 1..close].parse::<u64>() {
            out.push((rest[..open].trim().to_string(), n));
        }
        rest = &rest[close + 1..];
    }
    out
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Asks and follows the answer to its end: (final view, ms to the first
/// delta, ms to completion), polling the view every 10 ms.
async fn ask(s: &Server, question: &str) -> (Value, f64, f64) {
    let t0 = Instant::now();
    let r = s.post("/api/answers", json!({ "question": question })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["answer_id"].as_str().unwrap().to_string();
    let mut first = None;
    loop {
        let v = s.get(&format!("/api/answers/{id}")).await.body;
        if first.is_none() && !v["text"].as_str().unwrap_or("").is_empty() {
            first = Some(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if matches!(v["status"].as_str(), Some("completed" | "failed")) {
            let done = t0.elapsed().as_secs_f64() * 1000.0;
            return (v, first.unwrap_or(done), done);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "answer {id} did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    let dir = temp_dir("answer-eval");
    let s = Server::start(&ServerOptions::new(dir).var("RETRY_MAX_ATTEMPTS", "1"));
    let ls = landmarks();
    let mut sheet_of: Vec<String> = Vec::new();
    let mut bodies: HashMap<String, String> = HashMap::new();
    for l in &ls {
        let mut runs = Vec::new();
        for (i, (title, body)) in documents(l).into_iter().enumerate() {
            let (cid, run) = s.submit(&title, &body, None).await;
            if i == 0 {
                sheet_of.push(cid.clone());
            }
            bodies.insert(cid, body);
            runs.push(run);
        }
        for run in runs {
            let v = s.wait_run(&run, Duration::from_secs(120)).await;
            assert_eq!(v["status"], "completed", "{v}");
        }
    }
    let qs = questions(&ls);
    eprintln!("indexed {} documents; asking {} answerable and {} unanswerable questions", bodies.len(), qs.len(), unanswerable().len());
    let (mut cited, mut correct, mut sentences, mut supported, mut focused) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut firsts, mut dones) = (Vec::new(), Vec::new());
    for (q, l, want) in &qs {
        let (v, first, done) = ask(&s, q).await;
        firsts.push(first);
        dones.push(done);
        let text = v["text"].as_str().unwrap_or("");
        if std::env::var("ANSWER_EVAL_VERBOSE").is_ok() {
            eprintln!("{q} → {text}");
        }
        let citations = v["citations"].as_array().cloned().unwrap_or_default();
        if citations.iter().any(|c| c["content_id"] == sheet_of[*l].as_str()) {
            cited += 1;
        }
        if text.contains(want.as_str()) {
            correct += 1;
        } else {
            eprintln!("missed: {q} → {text}");
        }
        let by_n: HashMap<u64, String> =
            citations.iter().filter_map(|c| Some((c["n"].as_u64()?, c["content_id"].as_str()?.to_string()))).collect();
        for (sentence, n) in cited_sentences(text) {
            sentences += 1;
            let body = by_n.get(&n).and_then(|cid| bodies.get(cid)).map(|b| norm(b)).unwrap_or_default();
            if sentence.contains(want.as_str()) {
                focused += 1;
            }
            if !sentence.is_empty() && body.contains(&norm(&sentence)) {
                supported += 1;
            } else {
                eprintln!("unsupported: [{n}] {sentence}");
            }
        }
    }
    let unknown = unanswerable();
    let mut abstained = 0usize;
    for q in &unknown {
        let (v, first, done) = ask(&s, q).await;
        firsts.push(first);
        dones.push(done);
        let idk = v["text"].as_str().unwrap_or("").starts_with("I don't know") && v["citations"].as_array().is_some_and(|c| c.is_empty());
        if idk {
            abstained += 1;
        } else {
            eprintln!("answered the unanswerable: {q} → {}", v["text"]);
        }
    }
    let n = qs.len() as f64;
    let rate = |k: usize, of: f64| if of == 0.0 { 0.0 } else { k as f64 / of };
    let (cited_r, correct_r, supported_r, abstained_r) =
        (rate(cited, n), rate(correct, n), rate(supported, sentences as f64), rate(abstained, unknown.len() as f64));
    let focused_r = rate(focused, sentences as f64);
    println!("| answers | cited | correct | supported | focused | abstained | first delta p50 / p95 | completed p50 / p95 |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} + {} unanswerable | {cited_r:.3} | {correct_r:.3} | {supported_r:.3} ({supported}/{sentences} sentences) | {focused_r:.3} | {abstained_r:.3} | {:.0} / {:.0} ms | {:.0} / {:.0} ms |",
        qs.len(),
        unknown.len(),
        percentile(&mut firsts.clone(), 0.5),
        percentile(&mut firsts, 0.95),
        percentile(&mut dones.clone(), 0.5),
        percentile(&mut dones, 0.95),
    );
    drop(s); // stop wrangler dev before deciding the exit code
    if supported_r < 1.0 || cited_r < 0.8 || correct_r < 0.8 || abstained_r < 0.8 {
        eprintln!("answer quality is below its bar: citations must support every sentence; cited, correct and abstained must be at least 0.8");
        std::process::exit(1);
    }
}
