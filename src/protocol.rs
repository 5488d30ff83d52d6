//! The wire protocol: the single source of truth for every shape a client sees.
//!
//! REST payloads, the WebSocket frames and the event names live here and nowhere
//! else. Domain state machines use these enums directly, so a renamed variant is
//! a compile error rather than a silent contract break. `web/protocol.js` is
//! checked against this file by a test.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

pub use crate::domain::principal::Visibility;

// ---------------------------------------------------------------- pipeline

/// The pipeline's stages, in order (contract: stage names).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Validate,
    Chunk,
    Embed,
    Index,
    Summarize,
    Extract,
    Analyze,
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Validate,
        Stage::Chunk,
        Stage::Embed,
        Stage::Index,
        Stage::Summarize,
        Stage::Extract,
        Stage::Analyze,
        Stage::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Chunk => "chunk",
            Stage::Embed => "embed",
            Stage::Index => "index",
            Stage::Summarize => "summarize",
            Stage::Extract => "extract",
            Stage::Analyze => "analyze",
            Stage::Publish => "publish",
        }
    }

    pub fn index(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Pending,
    Running,
    Retrying,
    Completed,
    Skipped,
    Failed,
}

/// How a stage error should be treated by the retry engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum ErrorClass {
    Transient,
    Terminal,
    RateLimited { retry_after_ms: u64 },
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Terminal => "terminal",
            ErrorClass::RateLimited { .. } => "rate_limited",
        }
    }
}

/// The last error of a stage, as shown in the journal.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageErrorView {
    pub class: String,
    pub message: String,
}

/// One past attempt of a stage: what the journal keeps to show retries.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wait before the next attempt, and the ceiling the jitter drew it from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_cap_ms: Option<u64>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub name: Stage,
    pub status: StageStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StageErrorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptView>,
}

/// `GET /api/runs/{id}`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: Uuid,
    pub content_id: Uuid,
    pub version: u32,
    pub status: RunStatus,
    pub stages: Vec<StageView>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_alarm_at: Option<String>,
}

// ---------------------------------------------------------------- content

/// `POST /api/content` and `PUT /api/content/{id}` bodies. Unknown fields are
/// rejected so a typo ("titel") is an error, not silently dropped data.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentInput {
    /// One line, not blank (422 otherwise), at most `LIMIT_TITLE_CHARS` (300).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1, max = 300), pattern(crate::domain::content::label_pattern())))]
    pub title: String,
    /// Not blank, no control characters but tab, LF, CR and FF, at most `LIMIT_BODY_BYTES`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1), pattern(crate::domain::content::BODY_PATTERN)))]
    pub body: String,
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(crate::domain::content::CATEGORY_PATTERN)))]
    pub category: Option<String>,
    /// At most `LIMIT_TAGS` (20) one-line tags of 1 to `LIMIT_TAG_CHARS` (40).
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(length(max = 20), inner(length(min = 1, max = 40), pattern(crate::domain::content::label_pattern())))
    )]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(max = 200), pattern(crate::domain::content::optional_label_pattern())))]
    pub author: Option<String>,
    /// `private`, `tenant` (the default on create) or `public`; on `PUT`,
    /// absent keeps the current visibility.
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    pub content: String,
    pub run: String,
}

/// The most characters a search query or a question may hold.
pub const MAX_QUERY_CHARS: usize = 500;

/// A search query or a question: not blank and without control characters.
pub const QUERY_TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// The most sources an answer may be grounded on (`k`), and the default.
pub const ASK_MAX_K: u32 = 10;
pub const ASK_DEFAULT_K: u32 = 5;

/// `POST /api/answers` body.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskInput {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1, max = MAX_QUERY_CHARS), pattern(QUERY_TEXT_PATTERN)))]
    pub question: String,
    /// 1 to [`ASK_MAX_K`]; [`ASK_DEFAULT_K`] when absent.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1, max = ASK_MAX_K)))]
    pub k: Option<u32>,
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(crate::domain::content::CATEGORY_PATTERN)))]
    pub category: Option<String>,
}

/// `POST /api/content/batch` body. Items stay raw JSON here so each one's
/// error can name its index (`items[3].title`); the document declares them
/// as [`ContentInput`].
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    // Each item as its JSON text, and at most MAX_ITEMS of them: a body of
    // millions of tiny values never becomes millions of `Value`s.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Vec<ContentInput>", length(min = 1, max = crate::domain::batch::MAX_ITEMS)))]
    #[serde(deserialize_with = "at_most_max_items")]
    pub items: Vec<Box<serde_json::value::RawValue>>,
}

/// The batch's items, refused at the first one past `MAX_ITEMS`, before the
/// rest of the body is read.
fn at_most_max_items<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Box<serde_json::value::RawValue>>, D::Error> {
    use crate::domain::batch::MAX_ITEMS;
    struct Items;
    impl<'de> serde::de::Visitor<'de> for Items {
        type Value = Vec<Box<serde_json::value::RawValue>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an array of 1 to {MAX_ITEMS} items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX_ITEMS {
                    return Err(serde::de::Error::custom(format!("items must hold 1 to {MAX_ITEMS} items, not more")));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items)
}

/// The `202` answer to `POST /api/answers`: follow `topic` for the answer.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerAccepted {
    pub answer_id: Uuid,
    /// `answer:<id>`.
    pub topic: String,
    pub links: AnswerLinks,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerLinks {
    pub answer: String,
    pub events: String,
}

impl AnswerAccepted {
    pub fn new(id: Uuid) -> Self {
        let topic = Topic::Answer(id).to_string();
        let links = AnswerLinks { answer: format!("/api/answers/{id}"), events: format!("/api/topics/{topic}/events") };
        AnswerAccepted { answer_id: id, topic, links }
    }
}

/// The `202` answer to `POST /api/content/batch`: follow `topic` for progress.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAccepted {
    pub batch_id: Uuid,
    /// Items taken (all of them: a batch is accepted whole or refused).
    pub accepted: u32,
    /// `batch:<id>`.
    pub topic: String,
    pub links: BatchLinks,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchLinks {
    pub batch: String,
    pub events: String,
}

impl BatchAccepted {
    pub fn new(id: Uuid, accepted: u32) -> Self {
        let topic = Topic::Batch(id).to_string();
        let links = BatchLinks { batch: format!("/api/batches/{id}"), events: format!("/api/topics/{topic}/events") };
        BatchAccepted { batch_id: id, accepted, topic, links }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub content_id: Uuid,
    pub version: u32,
    pub run_id: Uuid,
    pub links: Links,
}

impl Accepted {
    pub fn new(content_id: Uuid, version: u32, run_id: Uuid) -> Self {
        Accepted {
            content_id,
            version,
            run_id,
            links: Links {
                content: format!("/api/content/{content_id}"),
                run: format!("/api/runs/{run_id}"),
            },
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentStatus {
    Processing,
    Indexed,
    Failed,
}

impl ContentStatus {
    pub const ALL: [ContentStatus; 3] = [ContentStatus::Processing, ContentStatus::Indexed, ContentStatus::Failed];

    pub fn parse(s: &str) -> Option<ContentStatus> {
        ContentStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContentStatus::Processing => "processing",
            ContentStatus::Indexed => "indexed",
            ContentStatus::Failed => "failed",
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyword {
    pub term: String,
    pub score: f32,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub text: String,
    pub kind: String,
    pub count: u32,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub score: f32,
    pub label: String,
}

/// One version in a content item's history.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: u32,
    pub run_id: Uuid,
    pub title: String,
    pub created_at: String,
    pub status: ContentStatus,
}

/// `GET /api/content/{id}`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentView {
    pub id: Uuid,
    pub version: u32,
    pub title: String,
    pub body: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The uploaded original of the current version, for an upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::domain::upload::SourceView>,
    pub status: ContentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<Entity>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<Keyword>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u32>,
    pub runs: Vec<Uuid>,
    pub versions: Vec<VersionView>,
    pub tenant: String,
    pub owner: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

// ---------------------------------------------------------------- events

/// Event names (contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventName {
    #[serde(rename = "run.queued")]
    RunQueued,
    #[serde(rename = "stage.started")]
    StageStarted,
    #[serde(rename = "stage.completed")]
    StageCompleted,
    #[serde(rename = "stage.retrying")]
    StageRetrying,
    #[serde(rename = "stage.skipped")]
    StageSkipped,
    #[serde(rename = "stage.failed")]
    StageFailed,
    #[serde(rename = "run.completed")]
    RunCompleted,
    #[serde(rename = "run.failed")]
    RunFailed,
    #[serde(rename = "run.cancelled")]
    RunCancelled,
    #[serde(rename = "content.updated")]
    ContentUpdated,
    #[serde(rename = "content.indexed")]
    ContentIndexed,
    #[serde(rename = "content.deleted")]
    ContentDeleted,
    #[serde(rename = "answer.retrieved")]
    AnswerRetrieved,
    #[serde(rename = "answer.delta")]
    AnswerDelta,
    #[serde(rename = "answer.completed")]
    AnswerCompleted,
    #[serde(rename = "answer.failed")]
    AnswerFailed,
    #[serde(rename = "batch.progress")]
    BatchProgress,
    #[serde(rename = "batch.completed")]
    BatchCompleted,
}

impl EventName {
    pub const ALL: [EventName; 18] = [
        EventName::RunQueued,
        EventName::StageStarted,
        EventName::StageCompleted,
        EventName::StageRetrying,
        EventName::StageSkipped,
        EventName::StageFailed,
        EventName::RunCompleted,
        EventName::RunFailed,
        EventName::RunCancelled,
        EventName::ContentUpdated,
        EventName::ContentIndexed,
        EventName::ContentDeleted,
        EventName::AnswerRetrieved,
        EventName::AnswerDelta,
        EventName::AnswerCompleted,
        EventName::AnswerFailed,
        EventName::BatchProgress,
        EventName::BatchCompleted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventName::RunQueued => "run.queued",
            EventName::StageStarted => "stage.started",
            EventName::StageCompleted => "stage.completed",
            EventName::StageRetrying => "stage.retrying",
            EventName::StageSkipped => "stage.skipped",
            EventName::StageFailed => "stage.failed",
            EventName::RunCompleted => "run.completed",
            EventName::RunFailed => "run.failed",
            EventName::RunCancelled => "run.cancelled",
            EventName::ContentUpdated => "content.updated",
            EventName::ContentIndexed => "content.indexed",
            EventName::ContentDeleted => "content.deleted",
            EventName::AnswerRetrieved => "answer.retrieved",
            EventName::AnswerDelta => "answer.delta",
            EventName::AnswerCompleted => "answer.completed",
            EventName::AnswerFailed => "answer.failed",
            EventName::BatchProgress => "batch.progress",
            EventName::BatchCompleted => "batch.completed",
        }
    }

    /// The last event its topic ever gets, on a topic that ends
    /// ([`Topic::ends`]): the topic's actor appends nothing after it (a
    /// completed run is never retried, a deleted item keeps only its
    /// tombstone, an answer and a batch end once), so a session stops
    /// polling a topic whose follower has it.
    pub fn ends_topic(self) -> bool {
        matches!(
            self,
            EventName::RunCompleted
                | EventName::ContentDeleted
                | EventName::AnswerCompleted
                | EventName::AnswerFailed
                | EventName::BatchCompleted
        )
    }

    /// Content-level events also go to the `feed` topic.
    pub fn is_feed_event(self) -> bool {
        matches!(
            self,
            EventName::ContentIndexed | EventName::ContentUpdated | EventName::ContentDeleted
        )
    }
}

/// An event before the log gives it a sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
    pub event: EventName,
    pub data: Value,
}

impl EventDraft {
    pub fn new(event: EventName, data: Value) -> Self {
        EventDraft { event, data }
    }
}

/// A logged event: dense `seq` per topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub event: EventName,
    pub data: Value,
    pub ts: String,
}

/// The typed data of one event name (contract). Producers build these, and
/// the log stores each as an [`EventDraft`] (`{event, data}`), so an event's
/// shape is declared here once, next to its name.
pub trait EventData: Serialize {
    const NAME: EventName;
}

impl EventDraft {
    /// The draft of a typed event.
    pub fn of<T: EventData>(data: T) -> Self {
        EventDraft { event: T::NAME, data: serde_json::to_value(data).unwrap_or_default() }
    }
}

macro_rules! event_data {
    ($($t:ident => $name:ident),* $(,)?) => {
        $(impl EventData for $t {
            const NAME: EventName = EventName::$name;
        })*
    };
}

/// Every run event names its run and content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub run_id: Uuid,
    pub content_id: Uuid,
}

/// `run.queued`: a new run, or a retried one (`retry: true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunQueued {
    #[serde(flatten)]
    pub run: RunRef,
    pub version: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStarted {
    #[serde(flatten)]
    pub run: RunRef,
    pub stage: Stage,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCompleted {
    #[serde(flatten)]
    pub run: RunRef,
    pub stage: Stage,
    pub attempt: u32,
    pub duration_ms: i64,
}

/// A failed attempt that will be tried again at `next_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRetrying {
    #[serde(flatten)]
    pub run: RunRef,
    pub stage: Stage,
    pub attempt: u32,
    pub next_at: String,
    pub backoff_ms: u64,
    pub error: String,
    /// `transient`, `rate_limited` or `terminal`.
    pub class: String,
}

/// An optional stage that gave up: the run goes on without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSkipped {
    #[serde(flatten)]
    pub run: RunRef,
    pub stage: Stage,
    pub attempts: u32,
    pub reason: String,
    pub class: String,
}

/// A required stage that gave up; `run.failed` carries the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFailed {
    #[serde(flatten)]
    pub run: RunRef,
    pub stage: Stage,
    pub attempts: u32,
    pub error: String,
    pub class: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunFailed(pub StageFailed);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCompleted {
    #[serde(flatten)]
    pub run: RunRef,
    pub duration_ms: i64,
    pub skipped: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCancelled {
    #[serde(flatten)]
    pub run: RunRef,
    pub reason: String,
}

/// Every content event names its item and the item's ownership, so the feed
/// can show each subscriber only what it may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentRef {
    pub content_id: Uuid,
    pub title: String,
    #[serde(flatten)]
    pub ownership: crate::domain::principal::Ownership,
}

/// A new version is processing (`run_id`), or a version's run failed (`reason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentUpdated {
    #[serde(flatten)]
    pub item: ContentRef,
    pub version: u32,
    pub status: ContentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentIndexed {
    #[serde(flatten)]
    pub item: ContentRef,
    pub version: u32,
    pub category: Option<String>,
    pub summary: Option<String>,
    pub chunks: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentDeleted {
    #[serde(flatten)]
    pub item: ContentRef,
    pub version: u32,
}

/// A source as `answer.retrieved` lists it (its text stays in the actor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedSource {
    pub n: u32,
    pub content_id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRetrieved {
    pub answer_id: Uuid,
    pub sources: Vec<crate::domain::answer::Listed<ListedSource>>,
    pub generator: crate::domain::answer::Generator,
}

/// The next piece of the answer's text: deltas joined in `index` order are
/// the text `answer.completed` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerDelta {
    pub index: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerCompleted {
    pub text: String,
    pub citations: Vec<crate::domain::answer::Listed<crate::domain::answer::Citation>>,
    pub generator: crate::domain::answer::Generator,
    /// Why a model answer fell back to the extractive one, if it did.
    pub fallback: Option<String>,
    pub grounded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerFailed {
    pub error: String,
}

/// `batch.progress` (coalesced) and `batch.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchProgress {
    pub batch_id: Uuid,
    pub counts: crate::domain::batch::BatchCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchCompleted(pub BatchProgress);

event_data! {
    RunQueued => RunQueued,
    StageStarted => StageStarted,
    StageCompleted => StageCompleted,
    StageRetrying => StageRetrying,
    StageSkipped => StageSkipped,
    StageFailed => StageFailed,
    RunFailed => RunFailed,
    RunCompleted => RunCompleted,
    RunCancelled => RunCancelled,
    ContentUpdated => ContentUpdated,
    ContentIndexed => ContentIndexed,
    ContentDeleted => ContentDeleted,
    AnswerRetrieved => AnswerRetrieved,
    AnswerDelta => AnswerDelta,
    AnswerCompleted => AnswerCompleted,
    AnswerFailed => AnswerFailed,
    BatchProgress => BatchProgress,
    BatchCompleted => BatchCompleted,
}

/// A subscription topic. Ids are parsed as UUIDs so a topic can never name an
/// actor the server did not mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Run(Uuid),
    Content(Uuid),
    Answer(Uuid),
    Batch(Uuid),
    Feed,
}

/// Schemas for the frame types' schema (native only, like every schema):
/// a topic is its string form, an event name one of [`EventName::ALL`].
#[cfg(not(target_arch = "wasm32"))]
impl schemars::JsonSchema for Topic {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Topic".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "examples": ["feed", "run:<uuid>"] })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl schemars::JsonSchema for EventName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = EventName::ALL.iter().map(|e| e.as_str()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Run(id) => write!(f, "run:{id}"),
            Topic::Content(id) => write!(f, "content:{id}"),
            Topic::Answer(id) => write!(f, "answer:{id}"),
            Topic::Batch(id) => write!(f, "batch:{id}"),
            Topic::Feed => f.write_str("feed"),
        }
    }
}

impl Topic {
    /// Whether the topic has a last event ([`EventName::ends_topic`]). The
    /// feed has none: a `content.deleted` there ends one item, not the feed.
    pub fn ends(&self) -> bool {
        !matches!(self, Topic::Feed)
    }
}

impl FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "feed" {
            return Ok(Topic::Feed);
        }
        let (kind, id) = s.split_once(':').ok_or_else(|| format!("unknown topic {s:?}"))?;
        let id = Uuid::parse_str(id).map_err(|_| format!("topic id {id:?} is not a UUID"))?;
        match kind {
            "run" => Ok(Topic::Run(id)),
            "content" => Ok(Topic::Content(id)),
            "answer" => Ok(Topic::Answer(id)),
            "batch" => Ok(Topic::Batch(id)),
            _ => Err(format!("unknown topic kind {kind:?}")),
        }
    }
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------- websocket

/// Client-to-server frames. `topic` stays a string here so that an unknown topic
/// gets a precise `error` frame instead of a generic parse failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Subscribe {
        topic: String,
        #[serde(default)]
        after: Option<u64>,
    },
    Unsubscribe {
        topic: String,
    },
    Ping,
}

/// Server-to-client frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Subscribed {
        topic: Topic,
        seq: u64,
    },
    Event {
        topic: Topic,
        seq: u64,
        event: EventName,
        data: Value,
        ts: String,
    },
    Ready {
        topic: Topic,
    },
    ResyncRequired {
        topic: Topic,
        snapshot: Value,
    },
    Unsubscribed {
        topic: Topic,
    },
    Pong,
    Error {
        code: String,
        message: String,
        /// The topic of a refused `subscribe` or `unsubscribe`, as the
        /// client wrote it, so a client with several pending knows which
        /// one was refused (absent for errors of the socket itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
}

/// The WebSocket close codes the server sends, declared once (the web
/// client's `CLOSE_CODES` are checked against them).
pub mod close_code {
    /// The topic ended (an answer erased past its time to live).
    pub const NORMAL: u16 = 1000;
    /// A frame sent to an actor that takes none.
    pub const UNSUPPORTED: u16 = 1003;
    /// Too many frames: the session stands; reconnect after a pause.
    pub const RATE_LIMITED: u16 = 1008;
    /// The socket failed on the server.
    pub const SERVER_ERROR: u16 = 1011;
    /// Events could not be sent, or were trimmed: resume with `after`.
    pub const RESUME: u16 = 1012;
    /// The token that opened the socket expired, or its API key was revoked:
    /// a new session is needed.
    pub const TOKEN_ENDED: u16 = 4001;
    /// Every code above, by the name the web client gives it.
    pub const ALL: [(&str, u16); 6] = [
        ("NORMAL", NORMAL),
        ("UNSUPPORTED", UNSUPPORTED),
        ("RATE_LIMITED", RATE_LIMITED),
        ("SERVER_ERROR", SERVER_ERROR),
        ("RESUME", RESUME),
        ("TOKEN_ENDED", TOKEN_ENDED),
    ];
}

impl ServerFrame {
    pub fn event(topic: Topic, rec: &EventRecord) -> Self {
        ServerFrame::Event {
            topic,
            seq: rec.seq,
            event: rec.event,
            data: rec.data.clone(),
            ts: rec.ts.clone(),
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerFrame::Error { code: code.to_string(), message: message.into(), topic: None }
    }

    /// This error frame as the refusal of a frame about `topic`.
    pub fn about(self, topic: Option<String>) -> Self {
        match self {
            ServerFrame::Error { code, message, .. } => ServerFrame::Error { code, message, topic },
            other => other,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain enums cannot fail; fall back to a fixed frame anyway.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encode"}"#.into())
    }
}

// ---------------------------------------------------------------- API keys

/// The longest name an API key may have, and the highest rate limit.
pub const KEY_NAME_MAX_CHARS: usize = 100;
pub const KEY_RATE_MAX: u32 = 1_000_000;

/// The pattern of a tenant slug (`domain::principal::valid_tenant`).
pub const TENANT_PATTERN: &str = "^[a-z0-9-]{1,40}$";

/// `POST /admin/keys` body.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// The key's tenant. Reserved, and refused: the operator's own tenant
    /// (`operator`, or the deployment's `OPERATOR_TENANT`) and `legacy`
    /// (items from before tenants).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(
            pattern(TENANT_PATTERN),
            extend("not" = { "enum": [crate::domain::principal::DEFAULT_OPERATOR_TENANT, crate::domain::principal::LEGACY_TENANT] })
        )
    )]
    pub tenant: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(length(min = 1, max = KEY_NAME_MAX_CHARS), pattern(crate::domain::content::label_pattern()))
    )]
    pub name: String,
    /// Raw so an unknown scope's message can name it.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Vec<crate::domain::principal::Scope>", length(min = 1)))]
    pub scopes: Vec<String>,
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1, max = KEY_RATE_MAX)))]
    pub rate_per_min: Option<u32>,
}

/// An API key as listed and created: never its hash; the key itself only in
/// the `201` that created it.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    pub name: String,
    pub scopes: Vec<crate::domain::principal::Scope>,
    pub rate_per_min: Option<u32>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `GET /admin/keys`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyPage {
    pub items: Vec<KeyView>,
}

// ---------------------------------------------------------------- operator

/// The actor kinds the registry lists (`GET /admin/actors?kind=`): one row
/// per actor, by UUID, written by the actor itself.
pub const REGISTERED_ACTOR_KINDS: [&str; 5] = ["content", "run", "session", "answer", "batch"];

/// One row of `GET /admin/actors`, from the registry.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorRow {
    pub kind: String,
    pub id: String,
    pub status: String,
    pub updated_at: String,
}

/// `GET /admin/actors`: newest first; `next_cursor` while more remain.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorPage {
    pub items: Vec<ActorRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A failed run as `GET /admin/dead-letters` lists it, with what to do next.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub run_id: String,
    pub content_id: String,
    pub version: u32,
    pub stage: Option<String>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub failed_at: String,
    pub actions: RunActions,
}

/// The paths that retry or cancel a run.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunActions {
    pub retry: String,
    pub cancel: String,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
}

/// What one content actor did when asked to reconcile.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub deleted: bool,
    /// `written`, or `pending` while the catalog row is still owed.
    pub catalog: String,
    pub runs: Vec<RunReconciled>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReconciled {
    pub run_id: Uuid,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileOutcome {
    /// The actor wrote its rows again (`actor` says how it went).
    Rewritten,
    /// A catalog row whose actor holds nothing, removed (walks only).
    OrphanRemoved,
    /// A named id no actor holds.
    NotFound,
    Failed,
}

/// One content id of `POST /admin/reconcile`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciled {
    pub content_id: String,
    pub outcome: ReconcileOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<ReconcileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /admin/reconcile`: `next_cursor` while a walk has more to check.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcilePage {
    pub checked: usize,
    pub items: Vec<Reconciled>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `{count, p50_ms, p95_ms, p99_ms}` of a window of durations (null when empty).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Runs by outcome, from the registry.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCounts {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub in_flight: u64,
}

/// How many samples the latency figures are over (the newest ones).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsWindow {
    pub stage_samples: usize,
    pub search_samples: usize,
}

/// `GET /admin/metrics`: actors by kind and status, run outcomes, retries,
/// and stage and search latency percentiles.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// kind → status → count.
    pub actors: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    pub runs: RunCounts,
    /// Attempts beyond each stage's first.
    pub retries: u64,
    /// What `GET /admin/dead-letters` holds: failed runs of the last 30 days.
    pub dead_letters: u64,
    pub sessions: u64,
    /// By stage name, every stage listed.
    pub stage_latency: std::collections::BTreeMap<String, Latency>,
    pub search_latency: Latency,
    pub window: MetricsWindow,
}

/// `GET /healthz`: `status` for anyone; the operator also reads which
/// backend each provider uses and what is wrong (`503` when degraded).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// `ok`, or `degraded` (with a `503`).
    pub status: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<HealthDetail>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthDetail {
    pub name: String,
    pub version: String,
    /// Provider → backend (`ai` is the embedder's, kept for older clients).
    pub backends: std::collections::BTreeMap<String, String>,
    /// The Workers AI models in use (null for the local backend).
    pub models: std::collections::BTreeMap<String, Option<String>>,
    /// Provider → why it cannot be used.
    pub problems: std::collections::BTreeMap<String, String>,
    /// The `FAULTS` setting in effect (`stage=rate,...`), empty when none.
    pub faults: String,
}

// ---------------------------------------------------------------- errors

/// An actor's answer to an internal call (`actors::rpc`): its status and
/// its JSON body (the typed reply, or the contract's error body). A JS RPC
/// carries it as one string, the status in three digits and then the body,
/// so a reply crosses the runtime boundary as one string, not a `Response`.
#[derive(Debug, PartialEq)]
pub struct CallReply<B = Vec<u8>> {
    pub status: u16,
    pub body: B,
}

impl CallReply {
    pub fn to_wire(&self) -> String {
        format!("{:03}{}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl<'a> CallReply<&'a str> {
    /// The inverse of [`CallReply::to_wire`]; `None` without a status.
    pub fn parse(text: &'a str) -> Option<CallReply<&'a str>> {
        let digits = text.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
        Some(CallReply { status: digits.parse().ok()?, body: &text[3..] })
    }
}

/// The contract's error body, `{error: {code, message}}`, for every 4xx and
/// 5xx. The other fields are extensions a variant adds (`field` places a
/// form's message next to its input).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Error"))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait (429, 503), also sent as `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The `If-Match` version and the current one (412).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u32>,
    /// The refused method and its path (405).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The most sockets or subscriptions allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// The largest body accepted, in bytes (413).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

// ---------------------------------------------------------------- sessions

// ---------------------------------------------------------------- listing and search

/// One row of `GET /api/content`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentListItem {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub summary: Option<String>,
    pub run_id: String,
    pub tenant: String,
    pub owner: String,
    pub visibility: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /api/content`: a page of the listing.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPage {
    pub items: Vec<ContentListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Which side of the hybrid search found a result.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitSources {
    pub vector: bool,
    pub keyword: bool,
}

/// One result of `GET /api/search`; `highlights` are byte ranges of the
/// query's terms in `snippet`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub content_id: String,
    pub title: String,
    pub score: f32,
    pub snippet: String,
    pub highlights: Vec<(usize, usize)>,
    pub sources: HitSources,
}

/// Where a search spent its time.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchTimings {
    pub vector_ms: i64,
    pub keyword_ms: i64,
    pub fetch_ms: i64,
}

/// `GET /api/search`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub query: String,
    /// The mode served: `keyword` when a hybrid search's vector side was
    /// unavailable, and `degraded` says why.
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    pub k: u32,
    pub took_ms: i64,
    pub timings: SearchTimings,
    pub results: Vec<SearchHit>,
}

/// `POST /api/sessions`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub session_id: Uuid,
    pub token: String,
    pub expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_reply_crosses_as_three_digits_then_its_body() {
        let ok = CallReply { status: 200, body: br#"{"seq":3}"#.to_vec() };
        assert_eq!(ok.to_wire(), r#"200{"seq":3}"#);
        assert_eq!(CallReply::parse(&ok.to_wire()), Some(CallReply { status: 200, body: r#"{"seq":3}"# }));

        let e = crate::error::ApiError::not_found("content");
        let refused = CallReply { status: e.status(), body: serde_json::to_vec(&e.body()).unwrap() };
        let wire = refused.to_wire();
        let back = CallReply::parse(&wire).expect("parses");
        assert_eq!(back.status, 404);
        let body: serde_json::Value = serde_json::from_str(back.body).unwrap();
        assert_eq!(crate::error::ApiError::from_body(back.status, &body), Some(e));

        // A unit reply's body may be empty; it is still a reply.
        assert_eq!(CallReply::parse("200"), Some(CallReply { status: 200, body: "" }));
    }

    #[test]
    fn an_answer_without_a_status_is_not_a_call_reply() {
        for text in ["", "20", "2x0{}", "+20{}", "{\"a\":1}", "é00{}"] {
            assert_eq!(CallReply::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn typed_events_keep_the_contract_shapes() {
        let run = RunRef { run_id: Uuid::nil(), content_id: Uuid::nil() };
        let queued = EventDraft::of(RunQueued { run: run.clone(), version: 2, retry: false });
        assert_eq!(queued.event, EventName::RunQueued);
        assert_eq!(queued.data, json!({ "run_id": Uuid::nil(), "content_id": Uuid::nil(), "version": 2 }));
        let retried = EventDraft::of(RunQueued { run: run.clone(), version: 2, retry: true });
        assert_eq!(retried.data["retry"], json!(true));
        let failed = StageFailed { run, stage: Stage::Embed, attempts: 3, error: "e".into(), class: "terminal".into() };
        let (stage, whole) = (EventDraft::of(failed.clone()), EventDraft::of(RunFailed(failed)));
        assert_eq!((stage.event, whole.event), (EventName::StageFailed, EventName::RunFailed));
        assert_eq!(stage.data, whole.data, "run.failed carries the stage's data");
        let ownership = crate::domain::principal::Ownership { tenant: "t".into(), owner: "o".into(), visibility: Visibility::Tenant, owner_kind: None };
        let item = ContentRef { content_id: Uuid::nil(), title: "T".into(), ownership };
        let deleted = EventDraft::of(ContentDeleted { item, version: 4 }).data;
        for field in ["content_id", "title", "tenant", "owner", "visibility", "version"] {
            assert!(deleted.get(field).is_some(), "content.deleted lacks {field}: {deleted}");
        }
        assert_eq!(deleted["visibility"], json!("tenant"));
    }

    #[test]
    fn stage_names_match_contract() {
        let names: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["validate", "chunk", "embed", "index", "summarize", "extract", "analyze", "publish"]
        );
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
        }
    }

    #[test]
    fn event_names_serialize_as_contract() {
        for e in EventName::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), json!(e.as_str()));
        }
    }

    #[test]
    fn topics_parse_and_print() {
        let id = Uuid::new_v4();
        for t in [Topic::Run(id), Topic::Content(id), Topic::Answer(id), Topic::Batch(id), Topic::Feed] {
            assert_eq!(t.to_string().parse::<Topic>(), Ok(t));
        }
        assert!("run:not-a-uuid".parse::<Topic>().is_err());
        assert!("user:00000000-0000-0000-0000-000000000000".parse::<Topic>().is_err());
        assert!("".parse::<Topic>().is_err());
    }

    #[test]
    fn client_frames_parse() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","topic":"feed","after":3}"#).unwrap();
        assert_eq!(f, ClientFrame::Subscribe { topic: "feed".into(), after: Some(3) });
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(f, ClientFrame::Ping);
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"boom"}"#).is_err());
    }

    #[test]
    fn server_frames_have_contract_shape() {
        let id = Uuid::nil();
        let rec = EventRecord {
            seq: 7,
            event: EventName::StageRetrying,
            data: json!({"attempt": 2}),
            ts: "2026-01-01T00:00:00Z".into(),
        };
        let v: Value = serde_json::from_str(&ServerFrame::event(Topic::Run(id), &rec).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"event","topic":format!("run:{id}"),"seq":7,"event":"stage.retrying","data":{"attempt":2},"ts":"2026-01-01T00:00:00Z"})
        );
        assert_eq!(serde_json::to_value(ServerFrame::Pong).unwrap(), json!({"type":"pong"}));
        assert_eq!(
            serde_json::to_value(ServerFrame::ResyncRequired { topic: Topic::Feed, snapshot: json!({}) }).unwrap(),
            json!({"type":"resync_required","topic":"feed","snapshot":{}})
        );
    }

    #[test]
    fn content_input_rejects_unknown_fields() {
        assert!(serde_json::from_str::<ContentInput>(r#"{"title":"a","body":"b","titel":"x"}"#).is_err());
        let ok: ContentInput = serde_json::from_str(r#"{"title":"a","body":"b","tags":["x"]}"#).unwrap();
        assert_eq!(ok.tags, Some(vec!["x".to_string()]));
    }
}
