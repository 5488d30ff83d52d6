//! One answer to one question: the extractive answerer and the state machine
//! `AnswerActor` runs. Pure, so it is tested natively with a fake clock.
//!
//! The answerer picks the sentences of the retrieved chunks that share the
//! most question terms (stemmed, stopwords out but the few content verbs of
//! [`FOCUS_VERBS`] kept, each weighted by how rare it is among the sources),
//! weighted by the source's rank
//! and the sentence's position, keeps the best few, drops near-duplicates,
//! orders them by source and position, and cites each with `[n]`, `n` being
//! the source's number. All pieces are planned when the answer starts and
//! stored; each step then emits the next one, so a resumed actor continues
//! exactly where its last committed step ended.
//!
//! With a text model (`TEXT_BACKEND=workers-ai`) the answer is generated
//! instead: the actor streams the model's output through
//! [`super::answer_text::Coalescer`] and commits each delta here
//! ([`Answer::emit_generated`]) before pushing it, with its citations checked
//! against the sources. An attempt that is cut off (eviction, restart, model
//! error) keeps what was committed; the next attempt asks the model to
//! continue after that prefix (see `providers::workers_ai_answer`), so no
//! committed text is repeated or lost. Model errors are retried with backoff
//! ([`MODEL_ATTEMPTS`]); then the extractive answerer writes the rest and the
//! view says `generator: "extractive"` with the reason in `fallback`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::answer_text::{check_citations, cited, says_unknown};
use super::principal::Principal;
use super::retry::RetryPolicy;
use super::time::{rfc3339, Millis};
use crate::protocol::ErrorClass;
use crate::nlp::tokenize::{content_stems, sentences};
use crate::protocol::{AnswerCompleted, AnswerDelta, AnswerFailed, AnswerRetrieved, EventDraft, ListedSource};

/// Sentences an answer quotes at most.
pub const MAX_SENTENCES: usize = 4;
/// Share of the question's terms a sentence must contain to be relevant.
pub const RELEVANCE_THRESHOLD: f32 = 0.5;
/// A quoted sentence longer than this is cut at a word boundary.
pub const MAX_SENTENCE_CHARS: usize = 400;
/// A kept sentence has at least this share of the best sentence's relevance:
/// once one sentence covers the question, those that merely name its subject
/// are left out.
pub const RELATIVE_RELEVANCE: f32 = 0.75;
/// Stopwords that still say what a question asks ("What is X made of?"):
/// kept as question terms, each form mapped to one term.
const FOCUS_VERBS: &[(&str, &str)] = &[
    ("made", "make"),
    ("make", "make"),
    ("makes", "make"),
    ("use", "use"),
    ("used", "use"),
    ("uses", "use"),
    ("became", "become"),
    ("become", "become"),
];
/// Two sentences whose term sets overlap this much say the same thing.
const DUPLICATE_JACCARD: f32 = 0.8;
/// The text of an answer none of the sources supports.
pub const NOT_KNOWN: &str = "I don't know: none of the sources available to you answers that question.";
const SNIPPET_CHARS: usize = 240;
/// Model attempts (each a streamed call, a cut-off one included) before the
/// extractive answerer takes over.
pub const MODEL_ATTEMPTS: u32 = 3;
/// Backoff before the second model attempt; doubled for each one after.
pub const MODEL_RETRY_BASE_MS: Millis = 1_000;
/// The model's backoff (base doubling to 64 s); attempts are `MODEL_ATTEMPTS`.
const MODEL_BACKOFF: RetryPolicy =
    RetryPolicy { max_attempts: MODEL_ATTEMPTS, base_ms: MODEL_RETRY_BASE_MS as u64, max_ms: 64_000, timeout_ms: 0, optional: false };
/// Appended to a generated answer that cites no source and does not say it
/// does not know: its text has already been streamed, so it stays, marked
/// as unsupported (and `grounded: false` in the view).
pub const UNSUPPORTED_NOTE: &str = " (Unverified: this answer cites none of the sources.)";

/// Who writes the answer's text.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// The embedded extractive answerer ([`compose`]).
    #[default]
    Extractive,
    /// Workers AI text generation, streamed.
    WorkersAi,
}

/// One retrieved source, numbered from 1 in retrieval order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub n: u32,
    pub content_id: String,
    pub title: String,
    /// The best-matching chunk's text.
    pub text: String,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub n: u32,
    pub content_id: String,
    pub title: String,
    pub snippet: String,
}

/// What a reader gets of a listed source or a citation: the entry itself,
/// or, for content the reader can no longer read (deleted, or narrowed past
/// them), only its number (`{n, removed: true}`). An answer keeps its
/// entries whole; each read and replay withholds them for its reader.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Listed{T}"))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Listed<T> {
    Shown(T),
    Withheld(Withheld),
}

/// A withheld entry: its number, and `removed`, always true, which tells it
/// from a shown one.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    pub n: u32,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = true)))]
    pub removed: bool,
}

impl<T> Listed<T> {
    pub fn shown(&self) -> Option<&T> {
        match self {
            Listed::Shown(t) => Some(t),
            Listed::Withheld(_) => None,
        }
    }
}

impl Withheld {
    pub fn of(n: u32) -> Self {
        Withheld { n, removed: true }
    }

    /// Whether a listed entry, as JSON, is a withheld one.
    pub fn is(entry: &serde_json::Value) -> bool {
        entry.get("removed") == Some(&serde_json::Value::Bool(true))
    }
}

/// One streamed piece: a quoted sentence and the source it cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub sentence: String,
    /// `None` only for the "I don't know" piece.
    pub cites: Option<u32>,
}

impl Piece {
    /// The delta text: pieces after the first start with a space, so the
    /// completed text is exactly the deltas joined.
    pub fn delta(&self, first: bool) -> String {
        let sep = if first { "" } else { " " };
        match self.cites {
            Some(n) => format!("{sep}{} [{n}]", self.sentence),
            None => format!("{sep}{}", self.sentence),
        }
    }
}

struct Candidate {
    source: usize,
    position: usize,
    relevance: f32,
    /// Distinct question terms the sentence holds.
    covered: usize,
    score: f32,
    sentence: String,
    terms: BTreeSet<String>,
}

/// Plans an answer to `question` from `sources`: the pieces to stream, or
/// the single "I don't know" piece when no sentence is relevant.
pub fn compose(question: &str, sources: &[Source]) -> Vec<Piece> {
    let wanted = terms(question);
    let weights = term_weights(&wanted, sources);
    let total: f32 = weights.iter().map(|(_, w)| w).sum();
    let mut candidates = Vec::new();
    if !wanted.is_empty() {
        for (rank, src) in sources.iter().enumerate() {
            for (position, (s, e)) in sentences(&src.text).into_iter().enumerate() {
                let sentence = src.text.get(s..e).unwrap_or_default();
                let terms = terms(sentence);
                let covered = wanted.intersection(&terms).count();
                let matched: f32 = weights.iter().filter(|(t, _)| terms.contains(*t)).map(|(_, w)| w).sum();
                let relevance = matched / total;
                if relevance < RELEVANCE_THRESHOLD {
                    continue;
                }
                let rank_weight = 1.0 / (1.0 + 0.2 * rank as f32);
                let position_weight = 1.0 - 0.03 * position.min(10) as f32;
                let score = relevance * rank_weight * position_weight;
                candidates.push(Candidate { source: rank, position, relevance, covered, score, sentence: clip(sentence), terms });
            }
        }
    }
    let best = candidates.iter().map(|c| c.relevance).fold(0.0f32, f32::max);
    candidates.retain(|c| c.relevance >= best * RELATIVE_RELEVANCE);
    // Once a sentence holds every question term, those holding fewer only
    // name the subject.
    if candidates.iter().any(|c| c.covered == wanted.len()) {
        candidates.retain(|c| c.covered == wanted.len());
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.source.cmp(&b.source)).then(a.position.cmp(&b.position)));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() == MAX_SENTENCES {
            break;
        }
        if kept.iter().any(|k| jaccard(&k.terms, &c.terms) >= DUPLICATE_JACCARD) {
            continue;
        }
        kept.push(c);
    }
    if kept.is_empty() {
        return vec![Piece { sentence: NOT_KNOWN.to_string(), cites: None }];
    }
    kept.sort_by_key(|c| (c.source, c.position));
    kept.into_iter().map(|c| Piece { sentence: c.sentence, cites: sources.get(c.source).map(|s| s.n) }).collect()
}

/// Each question term's weight: its inverse frequency among the sources, so
/// a sentence that lacks the rare term (often the question's subject, such
/// as a name) counts as less relevant than one lacking a term every source
/// shares.
fn term_weights<'a>(wanted: &'a BTreeSet<String>, sources: &[Source]) -> Vec<(&'a String, f32)> {
    let per_source: Vec<BTreeSet<String>> = sources.iter().map(|s| terms(&s.text)).collect();
    let n = per_source.len().max(1) as f32;
    wanted
        .iter()
        .map(|t| {
            let df = per_source.iter().filter(|terms| terms.contains(t)).count().max(1) as f32;
            (t, (1.0 + n / df).ln())
        })
        .collect()
}

/// Lowercase words joined by single spaces: text compared without its
/// punctuation and citation marks.
fn words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

/// The terms a question or sentence is matched on: its content stems and
/// its [`FOCUS_VERBS`] (marked so they never equal a stem).
fn terms(text: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = content_stems(text).into_iter().collect();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let lower = w.to_lowercase();
        if let Some((_, verb)) = FOCUS_VERBS.iter().find(|(form, _)| *form == lower) {
            out.insert(format!("={verb}"));
        }
    }
    out
}

fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f32 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f32 / union as f32
}

/// One line of whitespace-normalized text, cut at a word boundary if long.
fn clip(sentence: &str) -> String {
    let norm = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    if norm.chars().count() <= MAX_SENTENCE_CHARS {
        return norm;
    }
    let cut: String = norm.chars().take(MAX_SENTENCE_CHARS).collect();
    let end = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", &cut[..end])
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    Generating,
    Completed,
    Failed,
}

impl AnswerStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, AnswerStatus::Completed | AnswerStatus::Failed)
    }
}

/// Withholds the entries of a source or citation list (as logged, JSON)
/// whose content `readable` says the reader may not read: each becomes a
/// [`Withheld`]. `readable` answers for a content id.
pub fn withhold_unreadable(citations: &mut [serde_json::Value], readable: impl Fn(&str) -> bool) {
    for c in citations.iter_mut() {
        if !c["content_id"].as_str().is_some_and(&readable) {
            let n = c["n"].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or_default();
            *c = serde_json::to_value(Withheld::of(n)).unwrap_or_default();
        }
    }
}

/// `GET /api/answers/{id}`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerView {
    pub id: Uuid,
    pub question: String,
    pub status: AnswerStatus,
    pub text: String,
    pub citations: Vec<Listed<Citation>>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub generator: Generator,
    /// Why the model did not write (all of) the answer, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// False when a generated answer cites no source and does not say it
    /// does not know.
    pub grounded: bool,
}

/// The stored answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub id: Uuid,
    pub question: String,
    /// Who asked: the only reader of the answer besides the operator.
    pub asker: Principal,
    pub status: AnswerStatus,
    pub sources: Vec<Source>,
    pub pieces: Vec<Piece>,
    /// Pieces already emitted as `answer.delta`.
    pub emitted: usize,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub error: Option<String>,
    #[serde(default)]
    pub generator: Generator,
    /// Model text committed as deltas, citations checked; the extractive
    /// pieces (after a fallback) follow it.
    #[serde(default)]
    pub generated: String,
    /// `answer.delta` events emitted.
    #[serde(default)]
    pub deltas: usize,
    /// Model attempts started.
    #[serde(default)]
    pub attempts: u32,
    /// No model attempt before this time (backoff).
    #[serde(default)]
    pub retry_at: Option<Millis>,
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub unsupported: bool,
    /// Cited sources whose content was since deleted ([`Self::forget`]):
    /// their citations stay, emptied, so the view numbers them as before.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub erased_citations: BTreeSet<u32>,
    /// Ticks failed in a row (a storage or call failure of the actor, not a
    /// model error, which has its own attempts): see [`Self::tick_failed`].
    #[serde(default)]
    pub tick_failures: u32,
}

/// Ticks that fail in a row before the answer ends failed rather than
/// being retried for good.
pub const MAX_TICK_FAILURES: u32 = 5;

impl Answer {
    /// A new answer over retrieved `sources`: its plan and `answer.retrieved`.
    /// The extractive plan is made for every answer: it is the fallback of a
    /// generated one. With no source, nothing is asked of a model.
    pub fn new(
        id: Uuid,
        question: String,
        asker: Principal,
        sources: Vec<Source>,
        generator: Generator,
        now: Millis,
    ) -> (Self, Vec<EventDraft>) {
        // A source's own bracketed numbers (a wiki's footnotes, "[3]") would
        // read as the answer's citations: quoted, they could tie a claim to
        // another source, and a redaction would then keep it. They go.
        let sources: Vec<Source> = sources.into_iter().map(|s| Source { text: check_citations(&s.text, &BTreeSet::new()), ..s }).collect();
        let pieces = compose(&question, &sources);
        let sources_empty = sources.is_empty();
        let listed: Vec<ListedSource> =
            sources.iter().map(|s| ListedSource { n: s.n, content_id: s.content_id.clone(), title: s.title.clone() }).collect();
        let answer = Answer {
            id,
            question,
            asker,
            status: AnswerStatus::Generating,
            sources,
            pieces,
            emitted: 0,
            created_at: now,
            finished_at: None,
            error: None,
            generator: if sources_empty { Generator::Extractive } else { generator },
            generated: String::new(),
            deltas: 0,
            attempts: 0,
            retry_at: None,
            fallback: None,
            unsupported: false,
            erased_citations: BTreeSet::new(),
            tick_failures: 0,
        };
        let event = EventDraft::of(AnswerRetrieved { answer_id: id, sources: listed.into_iter().map(Listed::Shown).collect(), generator: answer.generator });
        (answer, vec![event])
    }

    /// The next step: one `answer.delta`, or `answer.completed` once every
    /// piece is out. Nothing once the answer has ended.
    /// Extractive only: a generated answer advances through the model
    /// methods below.
    pub fn step(&mut self, now: Millis) -> Vec<EventDraft> {
        let events = self.next_step(now);
        if !events.is_empty() {
            self.tick_failures = 0;
        }
        events
    }

    fn next_step(&mut self, now: Millis) -> Vec<EventDraft> {
        if self.generator == Generator::WorkersAi && self.attempts >= MODEL_ATTEMPTS {
            // The last attempt began and never reported (it ended in
            // `model_failed` or `finish_generated` otherwise): cut off.
            self.model_failed(ErrorClass::Transient, "every model attempt was cut off", now);
        }
        if self.status.is_terminal() || self.generator != Generator::Extractive {
            return Vec::new();
        }
        if let Some(piece) = self.pieces.get(self.emitted) {
            let text = piece.delta(self.emitted == 0 && self.generated.is_empty());
            self.emitted += 1;
            return vec![self.delta_event(text)];
        }
        self.complete(now)
    }

    fn delta_event(&mut self, text: String) -> EventDraft {
        self.deltas += 1;
        EventDraft::of(AnswerDelta { index: (self.deltas - 1) as u32, text })
    }

    fn complete(&mut self, now: Millis) -> Vec<EventDraft> {
        self.status = AnswerStatus::Completed;
        self.finished_at = Some(now);
        vec![EventDraft::of(AnswerCompleted {
            text: self.text(),
            citations: self.citations().into_iter().map(Listed::Shown).collect(),
            generator: self.generator,
            fallback: self.fallback.clone(),
            grounded: !self.unsupported,
        })]
    }

    /// The source numbers a generated citation may name.
    pub fn source_numbers(&self) -> BTreeSet<u32> {
        self.sources.iter().map(|s| s.n).collect()
    }

    /// Whether a model attempt should start now.
    /// None does once [`MODEL_ATTEMPTS`] have begun: [`Self::step`] hands a
    /// last attempt that was cut off (a restart, an eviction) to the
    /// extractive answerer.
    pub fn wants_model(&self, now: Millis) -> bool {
        self.generator == Generator::WorkersAi
            && !self.status.is_terminal()
            && self.attempts < MODEL_ATTEMPTS
            && self.retry_at.is_none_or(|t| t <= now)
    }

    /// A model attempt starts (committed before the call, so an attempt cut
    /// off by a restart still counts and a model that keeps failing that way
    /// ends in the fallback too).
    pub fn begin_attempt(&mut self) {
        self.attempts += 1;
        self.retry_at = None;
    }

    /// One coalesced piece of model text becomes an `answer.delta`, with
    /// citations to unknown sources dropped. Nothing if it is empty then.
    pub fn emit_generated(&mut self, piece: &str) -> Vec<EventDraft> {
        if self.generator != Generator::WorkersAi || self.status.is_terminal() {
            return Vec::new();
        }
        let mut text = check_citations(piece, &self.source_numbers());
        if self.generated.is_empty() {
            text = text.trim_start().to_string();
        }
        if text.trim().is_empty() {
            return Vec::new();
        }
        self.generated.push_str(&text);
        vec![self.delta_event(text)]
    }

    /// The model's stream ended with `rest` still held: emit it, mark an
    /// answer that cites nothing and does not say it does not know as
    /// unsupported, and complete. An empty answer is a failed attempt.
    pub fn finish_generated(&mut self, rest: &str, now: Millis) -> Vec<EventDraft> {
        let mut events = self.emit_generated(rest);
        if self.generator != Generator::WorkersAi || self.status.is_terminal() {
            return events;
        }
        if self.generated.trim().is_empty() {
            events.extend(self.model_failed(ErrorClass::Transient, "the model returned no text", now));
            return events;
        }
        if cited(&self.generated).is_empty() && !says_unknown(&self.generated) {
            self.unsupported = true;
            events.push(self.delta_event(UNSUPPORTED_NOTE.to_string()));
        }
        events.extend(self.complete(now));
        events
    }

    /// A model attempt failed: back off and try again, or, after
    /// [`MODEL_ATTEMPTS`] or a terminal error (an unknown model, invalid
    /// input, a used-up allocation: a retry cannot change those), hand over
    /// to the extractive answerer, which writes what the model did not.
    pub fn model_failed(&mut self, class: ErrorClass, error: &str, now: Millis) -> Vec<EventDraft> {
        if self.generator != Generator::WorkersAi || self.status.is_terminal() {
            return Vec::new();
        }
        let retry = match class {
            ErrorClass::Terminal => None,
            _ if self.attempts >= MODEL_ATTEMPTS => None,
            ErrorClass::RateLimited { retry_after_ms } => Some(retry_after_ms as Millis),
            ErrorClass::Transient => Some(MODEL_BACKOFF.cap_ms(self.attempts) as Millis),
        };
        match retry {
            Some(wait) => self.retry_at = Some(now + wait.max(1)),
            None => {
                self.generator = Generator::Extractive;
                self.retry_at = None;
                self.fallback = Some(error.to_string());
                // What the model already said is not said again.
                let said = words(&self.generated);
                self.pieces.retain(|p| p.cites.is_none() || !said.contains(&words(&p.sentence)));
                if !self.generated.is_empty() {
                    self.pieces.retain(|p| p.cites.is_some());
                }
            }
        }
        Vec::new()
    }

    /// A tick failed with `error`: counted, and the answer fails once
    /// [`MAX_TICK_FAILURES`] have in a row (the caller retries it otherwise).
    pub fn tick_failed(&mut self, error: &str, now: Millis) -> Vec<EventDraft> {
        self.tick_failures = self.tick_failures.saturating_add(1);
        if self.tick_failures >= MAX_TICK_FAILURES {
            return self.fail(error, now);
        }
        Vec::new()
    }

    /// When the answer's alarm is next due: a step of the extractive stream
    /// `step_ms` after `now`; a model attempt at its backoff's end (at
    /// once, otherwise); an ended answer's erasure at `expires_at`, never
    /// in the past, so an erasure that failed is tried again in a second.
    pub fn next_wake(&self, now: Millis, step_ms: Millis, expires_at: Millis) -> Millis {
        match self.generator {
            _ if self.status.is_terminal() => expires_at.max(now + 1_000),
            Generator::WorkersAi => self.retry_at.unwrap_or(now + 1).max(now + 1),
            Generator::Extractive => now + step_ms,
        }
    }

    /// Ends the answer as failed (an unrecoverable step error).
    pub fn fail(&mut self, error: &str, now: Millis) -> Vec<EventDraft> {
        if self.status.is_terminal() {
            return Vec::new();
        }
        self.status = AnswerStatus::Failed;
        self.finished_at = Some(now);
        self.error = Some(error.to_string());
        vec![EventDraft::of(AnswerFailed { error: error.to_string() })]
    }

    /// The text emitted so far (all of it once completed): the deltas joined.
    pub fn text(&self) -> String {
        let first = self.generated.is_empty();
        let mut text = self.generated.clone();
        text.extend(self.pieces.iter().take(self.emitted).enumerate().map(|(i, p)| p.delta(first && i == 0)));
        if self.unsupported {
            text.push_str(UNSUPPORTED_NOTE);
        }
        text
    }

    /// Erases what the answer holds of the items `content_ids` (deleted):
    /// their sources keep only their number and id, the claims that cite
    /// them leave the text and the plan, and a citation of one stays,
    /// emptied. Returns the numbers erased: the event log's copies of those
    /// claims are the caller's (see `answer_text::redact_deltas`).
    pub fn forget(&mut self, content_ids: &[String]) -> BTreeSet<u32> {
        let erased: BTreeSet<u32> = self.sources.iter().filter(|s| content_ids.contains(&s.content_id)).map(|s| s.n).collect();
        if erased.is_empty() {
            return erased;
        }
        let cited: BTreeSet<u32> = self.citations().iter().map(|c| c.n).collect();
        self.erased_citations.extend(cited.intersection(&erased));
        for s in self.sources.iter_mut().filter(|s| erased.contains(&s.n)) {
            s.title.clear();
            s.text.clear();
        }
        self.generated = super::answer_text::redact(&self.generated, &erased);
        let cites_erased = |p: &Piece| p.cites.is_some_and(|n| erased.contains(&n));
        let gone = self.pieces.iter().take(self.emitted).filter(|p| cites_erased(p)).count();
        self.emitted -= gone;
        self.pieces.retain(|p| !cites_erased(p));
        erased
    }

    /// The sources cited by the emitted text, in source order.
    pub fn citations(&self) -> Vec<Citation> {
        let mut cited: BTreeSet<u32> = self.pieces.iter().take(self.emitted).filter_map(|p| p.cites).collect();
        cited.extend(super::answer_text::cited(&self.generated));
        cited.extend(&self.erased_citations);
        self.sources
            .iter()
            .filter(|s| cited.contains(&s.n))
            .map(|s| Citation {
                n: s.n,
                content_id: s.content_id.clone(),
                title: s.title.clone(),
                snippet: super::fusion::snippet(&s.text, &self.question, SNIPPET_CHARS).text,
            })
            .collect()
    }

    /// Only the asker (same kind, subject and tenant) or the operator.
    pub fn readable_by(&self, p: &Principal) -> bool {
        p.is_or_operates(&self.asker)
    }

    pub fn view(&self) -> AnswerView {
        AnswerView {
            id: self.id,
            question: self.question.clone(),
            status: self.status,
            text: self.text(),
            citations: self.citations().into_iter().map(Listed::Shown).collect(),
            created_at: rfc3339(self.created_at),
            finished_at: self.finished_at.map(rfc3339),
            error: self.error.clone(),
            generator: self.generator,
            fallback: self.fallback.clone(),
            grounded: !self.unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use crate::protocol::EventName;

    fn src(n: u32, text: &str) -> Source {
        Source { n, content_id: format!("c{n}"), title: format!("Doc {n}"), text: text.to_string() }
    }

    fn sources() -> Vec<Source> {
        vec![
            src(1, "Lisbon is a city by the sea. The capital of Portugal is Lisbon, on the Tagus river. It has trams."),
            src(2, "Madrid is the capital of Spain. Spain borders Portugal."),
            src(3, "Bread needs flour, water and yeast."),
        ]
    }

    #[test]
    fn picks_relevant_sentences_in_source_order_with_citations() {
        let pieces = compose("What is the capital of Portugal?", &sources());
        let texts: Vec<_> = pieces.iter().map(|p| (p.sentence.as_str(), p.cites)).collect();
        assert_eq!(texts[0], ("The capital of Portugal is Lisbon, on the Tagus river.", Some(1)));
        assert!(texts.iter().all(|(s, _)| !s.contains("Bread")));
        assert!(texts.iter().all(|(_, c)| c.is_some()));
        // Ordered by source, then position.
        let order: Vec<_> = pieces.iter().map(|p| p.cites.unwrap()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }

    #[test]
    fn nothing_relevant_means_i_dont_know() {
        for q in ["Who painted the zyxquv obelisk?", "the of and", ""] {
            let pieces = compose(q, &sources());
            assert_eq!(pieces, vec![Piece { sentence: NOT_KNOWN.into(), cites: None }], "{q}");
        }
        assert_eq!(compose("capital of Portugal", &[])[0].cites, None);
    }

    #[test]
    fn a_full_answer_leaves_out_sentences_that_only_name_the_subject() {
        let s = src(1, "The Varnel bridge stands at the harbour. The Varnel bridge was built in 1874. The Varnel bridge is made of granite.");
        let pieces = compose("When was the Varnel bridge built?", &[s]);
        assert_eq!(pieces, vec![Piece { sentence: "The Varnel bridge was built in 1874.".into(), cites: Some(1) }]);
    }

    #[test]
    fn what_a_thing_is_made_of_gets_the_sentence_that_says_so() {
        let s = src(1, "The Varnel bridge stands at the harbour. The Varnel bridge was built in 1874. The Varnel bridge is made of granite.");
        let other = src(2, "The Dorvek tower is made of red brick. The Dorvek tower was built in 1901.");
        let pieces = compose("What is the Varnel bridge made of?", &[s, other]);
        assert_eq!(pieces, vec![Piece { sentence: "The Varnel bridge is made of granite.".into(), cites: Some(1) }]);
    }

    #[test]
    fn a_sentence_about_another_subject_is_left_out() {
        let own = src(1, "The Varlum bridge rises 20 metres above the ground. Visitors to Varlum come by road.");
        let others = (2..=5).map(|n| src(n, &format!("The Other{n} bridge rises {n}0 metres above the ground.")));
        let sources: Vec<Source> = std::iter::once(own).chain(others).collect();
        let pieces = compose("How many metres does the Varlum bridge rise above the ground?", &sources);
        assert_eq!(pieces, vec![Piece { sentence: "The Varlum bridge rises 20 metres above the ground.".into(), cites: Some(1) }]);
    }

    #[test]
    fn duplicates_are_dropped_and_the_count_is_capped() {
        let s = "Rust compiles to wasm. Rust compiles to wasm! Rust compiles to wasm quickly.";
        let many = (1..=8).map(|n| src(n, s)).collect::<Vec<_>>();
        let pieces = compose("does rust compile to wasm", &many);
        assert!(pieces.len() <= MAX_SENTENCES);
        let unique: BTreeSet<_> = pieces.iter().map(|p| p.sentence.to_lowercase().replace('!', ".")).collect();
        assert_eq!(unique.len(), pieces.len());
    }

    #[test]
    fn long_sentences_are_clipped_at_a_word() {
        let long = "capital ".repeat(100);
        let pieces = compose("capital", &[src(1, &long)]);
        assert!(pieces[0].sentence.ends_with('…'));
        assert!(pieces[0].sentence.chars().count() <= MAX_SENTENCE_CHARS + 1);
    }

    fn asker() -> Principal {
        Principal::api_key("acme", "k1", &[])
    }

    /// An item deleted after an answer quoted it leaves nothing of its text
    /// in the answer: its source keeps its number and id, the claims citing
    /// it go, and its citation stays, emptied.
    #[test]
    fn forgetting_a_deleted_source_erases_its_text_and_keeps_its_number() {
        let both = vec![
            src(1, "The capital of Portugal is Lisbon, on the Tagus river."),
            src(2, "Portugal has Lisbon as its capital since 1255."),
        ];
        let (mut a, _) = Answer::new(Uuid::nil(), "capital of Portugal".into(), asker(), both, Generator::Extractive, 1_000);
        while !a.status.is_terminal() {
            a.step(2_000);
        }
        assert!(a.text().contains("1255. [2]"), "{}", a.text());
        assert_eq!(a.forget(&["c2".to_string()]), BTreeSet::from([2]));
        let stored = serde_json::to_string(&a).unwrap();
        assert!(!stored.contains("1255") && !stored.contains("Doc 2"), "{stored}");
        assert_eq!(a.text(), "The capital of Portugal is Lisbon, on the Tagus river. [1]");
        let cited: Vec<(u32, String, String)> = a.citations().into_iter().map(|c| (c.n, c.title, c.snippet)).collect();
        assert_eq!(cited[1], (2, String::new(), String::new()));
        assert_eq!(cited[0].1, "Doc 1");
        assert_eq!(a.sources[1].content_id, "c2");
        // An item it never quoted changes nothing; forgetting again neither.
        let before = a.clone();
        assert!(a.forget(&["c9".to_string()]).is_empty());
        a.forget(&["c2".to_string()]);
        assert_eq!(a, before);
        // A generated text loses the claims that cite it.
        a.generated = "Lisbon is the capital [1]. It has been since 1255 [2].".into();
        a.forget(&["c2".to_string()]);
        assert_eq!(a.generated, "Lisbon is the capital [1].");
    }

    #[test]
    fn steps_stream_deltas_then_complete_with_joined_text() {
        let (mut a, first) = Answer::new(Uuid::nil(), "capital of Portugal".into(), asker(), sources(), Generator::Extractive, 1_000);
        assert_eq!(first[0].event, EventName::AnswerRetrieved);
        assert_eq!(first[0].data["sources"].as_array().unwrap().len(), 3);
        let mut deltas = Vec::new();
        let mut now = 1_000;
        loop {
            now += 10;
            let ev = a.step(now);
            assert_eq!(ev.len(), 1);
            if ev[0].event == EventName::AnswerCompleted {
                assert_eq!(ev[0].data["text"].as_str().unwrap(), deltas.concat());
                let cites = ev[0].data["citations"].as_array().unwrap();
                assert!(cites.iter().any(|c| c["content_id"] == "c1"));
                assert!(cites.iter().all(|c| c["content_id"] != "c3"));
                break;
            }
            assert_eq!(ev[0].event, EventName::AnswerDelta);
            deltas.push(ev[0].data["text"].as_str().unwrap().to_string());
        }
        assert!(deltas[0].ends_with("[1]") && !deltas[0].starts_with(' '));
        assert_eq!(a.status, AnswerStatus::Completed);
        assert_eq!(a.finished_at, Some(now));
        assert!(a.step(now + 1).is_empty());
        assert!(a.fail("late", now + 2).is_empty());
        assert_eq!(a.view().text, deltas.concat());
    }

    #[test]
    fn a_sources_own_bracketed_numbers_are_not_citations() {
        let falcon = |n: u32, text: &str| Source { n, content_id: format!("c{n}"), title: format!("t{n}"), text: text.into() };
        let sources = vec![
            falcon(1, "The Falcon project started in 2019."),
            falcon(2, "The Falcon budget is four million dollars.[1] Its board meets monthly [3, 4]. The Falcon budget reserve is one million [[9]1]."),
        ];
        let (mut a, _) = Answer::new(Uuid::nil(), "Falcon budget".into(), asker(), sources, Generator::Extractive, 0);
        let mut now = 0;
        while a.status != AnswerStatus::Completed {
            now += 10;
            a.step(now);
        }
        let text = a.view().text;
        assert!(text.contains("four million dollars. [2]"), "{text}");
        assert_eq!(cited(&text), BTreeSet::from([2]), "{text}");
        let left = crate::domain::answer_text::redact(&text, &BTreeSet::from([2]));
        assert!(!left.contains("million"), "source 2's text stays when it is withheld: {left}");
    }

    #[test]
    fn attempts_cut_off_every_time_end_in_the_fallback() {
        let (mut a, _) = Answer::new(Uuid::nil(), "which capital".into(), asker(), sources(), Generator::WorkersAi, 0);
        for _ in 0..MODEL_ATTEMPTS {
            assert!(a.wants_model(0));
            // Begun and never reported: the instance died mid-stream.
            a.begin_attempt();
        }
        assert!(!a.wants_model(0), "no attempt past the limit");
        let mut now = 0;
        while a.status != AnswerStatus::Completed && now < 10_000 {
            now += 10;
            a.step(now);
        }
        assert_eq!(a.status, AnswerStatus::Completed);
        let v = a.view();
        assert_eq!(v.generator, Generator::Extractive);
        assert!(v.fallback.as_deref().is_some_and(|f| f.contains("cut off")), "{:?}", v.fallback);
    }

    #[test]
    fn a_resumed_answer_continues_from_its_stored_state() {
        let (mut a, _) = Answer::new(Uuid::nil(), "which capital".into(), asker(), sources(), Generator::Extractive, 0);
        let d1 = a.step(1);
        let stored = serde_json::to_string(&a).unwrap();
        let mut b: Answer = serde_json::from_str(&stored).unwrap();
        let d2 = b.step(2);
        assert_ne!(d1[0].data["text"], d2[0].data["text"]);
        assert_eq!(d2[0].data["index"], 1);
    }

    #[test]
    fn unknown_answers_complete_without_citations() {
        let (mut a, _) = Answer::new(Uuid::nil(), "zyxquv".into(), asker(), sources(), Generator::Extractive, 0);
        assert_eq!(a.step(1)[0].data["text"], NOT_KNOWN);
        let done = a.step(2);
        assert_eq!(done[0].data["citations"], json!([]));
        assert_eq!(a.view().citations, vec![]);
    }

    #[test]
    fn only_the_asker_or_the_operator_reads() {
        let (a, _) = Answer::new(Uuid::nil(), "q".into(), asker(), vec![], Generator::Extractive, 0);
        assert!(a.readable_by(&asker()));
        assert!(a.readable_by(&Principal::operator()));
        let mut other = asker();
        other.tenant = Some("globex".into());
        assert!(!a.readable_by(&other));
        let mut sibling = asker();
        sibling.subject = "k2".into();
        assert!(!a.readable_by(&sibling));
        assert!(!a.readable_by(&Principal::anonymous()));
        let (anon, _) = Answer::new(Uuid::nil(), "q".into(), Principal::anonymous(), vec![], Generator::Extractive, 0);
        assert!(anon.readable_by(&Principal::anonymous()) && !anon.readable_by(&asker()));
    }

    #[test]
    fn failing_ends_the_answer() {
        let (mut a, _) = Answer::new(Uuid::nil(), "q".into(), asker(), vec![], Generator::Extractive, 0);
        let ev = a.fail("boom", 5);
        assert_eq!(ev[0].event, EventName::AnswerFailed);
        assert_eq!(a.view().status, AnswerStatus::Failed);
        assert!(a.step(6).is_empty());
    }

    fn generated(sources: Vec<Source>) -> Answer {
        Answer::new(Uuid::nil(), "capital of Portugal".into(), asker(), sources, Generator::WorkersAi, 0).0
    }

    fn texts(events: &[EventDraft]) -> Vec<String> {
        events.iter().filter(|e| e.event == EventName::AnswerDelta).map(|e| e.data["text"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn generated_deltas_drop_unknown_citations_and_complete_with_their_join() {
        let mut a = generated(sources());
        assert!(a.wants_model(0));
        assert!(a.step(1).is_empty(), "the extractive steps wait");
        a.begin_attempt();
        let mut events = a.emit_generated("  Lisbon is the capital [1].");
        events.extend(a.emit_generated(" It is by the sea [7]."));
        events.extend(a.finish_generated(" Spain borders it [2, 9].", 5));
        let deltas = texts(&events);
        assert_eq!(deltas, ["Lisbon is the capital [1].", " It is by the sea.", " Spain borders it [2]."]);
        let done = events.last().unwrap();
        assert_eq!(done.event, EventName::AnswerCompleted);
        assert_eq!(done.data["text"].as_str().unwrap(), deltas.concat());
        let ns: Vec<u32> = a.view().citations.iter().filter_map(Listed::shown).map(|c| c.n).collect();
        assert_eq!(ns, [1, 2]);
        assert_eq!(a.view().generator, Generator::WorkersAi);
        assert!(a.view().grounded);
        let indexes: Vec<_> = events.iter().filter(|e| e.event == EventName::AnswerDelta).map(|e| e.data["index"].clone()).collect();
        assert_eq!(indexes, [json!(0), json!(1), json!(2)]);
    }

    #[test]
    fn an_uncited_answer_is_marked_unsupported_and_i_dont_know_is_not() {
        let mut a = generated(sources());
        a.begin_attempt();
        let events = a.finish_generated("Lisbon is lovely [8].", 1);
        assert_eq!(texts(&events), ["Lisbon is lovely.", UNSUPPORTED_NOTE]);
        assert!(!a.view().grounded && a.view().citations.is_empty());
        assert_eq!(events.last().unwrap().data["text"].as_str().unwrap(), texts(&events).concat());

        let mut b = generated(sources());
        b.begin_attempt();
        b.finish_generated("I don't know: none of the sources answers that question.", 1);
        assert!(b.view().grounded && b.status == AnswerStatus::Completed);
    }

    #[test]
    fn a_resumed_generation_keeps_its_committed_prefix() {
        let mut a = generated(sources());
        a.begin_attempt();
        a.emit_generated("Lisbon is the capital [1].");
        // Evicted here: the stored answer is what comes back.
        let mut b: Answer = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert!(b.wants_model(10) && b.generated == "Lisbon is the capital [1].");
        b.begin_attempt();
        let events = b.finish_generated(" It has trams [1].", 20);
        assert_eq!(texts(&events), [" It has trams [1]."]);
        assert_eq!(b.text(), "Lisbon is the capital [1]. It has trams [1].");
        assert_eq!(events.last().unwrap().data["text"], b.text());
        assert_eq!(b.attempts, 2);
    }

    #[test]
    fn model_errors_back_off_then_fall_back_to_extractive() {
        let mut a = generated(sources());
        a.begin_attempt();
        a.model_failed(ErrorClass::Transient, "3040: out of capacity", 100);
        assert_eq!(a.retry_at, Some(100 + MODEL_RETRY_BASE_MS));
        assert!(!a.wants_model(100) && a.wants_model(100 + MODEL_RETRY_BASE_MS));
        a.begin_attempt();
        a.model_failed(ErrorClass::RateLimited { retry_after_ms: 2_000 }, "429", 2_000);
        assert_eq!(a.retry_at, Some(4_000));
        a.begin_attempt();
        a.model_failed(ErrorClass::Transient, "boom", 5_000);
        assert_eq!(a.generator, Generator::Extractive);
        assert_eq!(a.fallback.as_deref(), Some("boom"));
        let mut events = Vec::new();
        while a.status == AnswerStatus::Generating {
            events.extend(a.step(6_000));
        }
        let view = a.view();
        assert_eq!(view.generator, Generator::Extractive);
        assert!(view.text.starts_with("The capital of Portugal is Lisbon"), "{}", view.text);
        assert_eq!(events.last().unwrap().data["text"], view.text);
        assert_eq!(events.last().unwrap().data["fallback"], "boom");
    }

    #[test]
    fn a_terminal_model_error_falls_back_at_once_after_what_was_said() {
        let mut a = generated(sources());
        a.begin_attempt();
        a.emit_generated("The capital of Portugal is Lisbon, on the Tagus river [1].");
        a.model_failed(ErrorClass::Terminal, "5007: No such model", 1);
        assert_eq!(a.generator, Generator::Extractive);
        while a.status == AnswerStatus::Generating {
            a.step(2);
        }
        let text = a.view().text;
        assert_eq!(text.matches("Tagus").count(), 1, "not said twice: {text}");
        assert!(!text.contains(NOT_KNOWN));
    }

    #[test]
    fn citations_of_content_no_longer_readable_keep_only_their_number() {
        let mut cites = vec![
            json!({ "n": 1, "content_id": "c1", "title": "Kept", "snippet": "s" }),
            json!({ "n": 2, "content_id": "c2", "title": "Gone", "snippet": "secret" }),
        ];
        withhold_unreadable(&mut cites, |id| id == "c1");
        assert_eq!(cites[0]["title"], "Kept");
        assert_eq!(cites[1], json!({ "n": 2, "removed": true }));
    }

    #[test]
    fn ticks_that_keep_failing_end_the_answer_and_a_step_resets_the_count() {
        let mut a = generated(vec![]);
        for _ in 1..MAX_TICK_FAILURES - 1 {
            assert!(a.tick_failed("storage: busy", 5).is_empty());
        }
        assert!(!a.step(6).is_empty(), "a step that emits");
        assert_eq!(a.tick_failures, 0, "counted in a row");
        for _ in 1..MAX_TICK_FAILURES {
            assert!(a.tick_failed("storage: busy", 7).is_empty());
        }
        let ended = a.tick_failed("storage: busy", 8);
        assert_eq!((a.status, ended[0].event), (AnswerStatus::Failed, EventName::AnswerFailed));
        assert!(a.tick_failed("storage: busy", 9).is_empty(), "ends once");
    }

    #[test]
    fn the_next_wake_is_a_step_a_backoff_or_the_erasure() {
        let mut a = generated(vec![]);
        assert_eq!(a.next_wake(100, 40, 10_000), 140, "extractive: the stream's pace");
        let mut m = generated(sources());
        assert_eq!(m.next_wake(100, 40, 10_000), 101, "a model attempt at once");
        m.retry_at = Some(5_000);
        assert_eq!(m.next_wake(100, 40, 10_000), 5_000, "after its backoff");
        a.fail("x", 200);
        assert_eq!(a.next_wake(300, 40, 10_000), 10_000, "erased when it expires");
        assert_eq!(a.next_wake(20_000, 40, 10_000), 21_000, "never in the past");
    }

    #[test]
    fn an_answer_without_sources_never_asks_the_model() {
        let mut a = generated(vec![]);
        assert_eq!(a.generator, Generator::Extractive);
        assert_eq!(a.step(1)[0].data["text"], NOT_KNOWN);
    }
}
