//! A content item: input validation, versions, derived artifacts and status.
//!
//! Status follows the *current* version only. A run of an older version that
//! finishes late is stale: its publish is refused, so a slow v1 can never
//! overwrite what v2 indexed.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::principal::{Ownership, Principal, Visibility};
use super::time::{rfc3339, Millis};
use super::outbox::{Duty, StartRun};
use super::upload::Source;
use crate::config::Limits;
use super::FieldError;
use crate::protocol::{
    ContentDeleted, ContentIndexed, ContentInput, ContentRef, ContentStatus, ContentUpdated, ContentView, Entity, EventDraft, Keyword,
    Sentiment, VersionView,
};

/// A submission that passed every limit, trimmed and normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentDoc {
    pub title: String,
    pub body: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub author: Option<String>,
    /// The uploaded original, for an upload: `body` is empty until the run's
    /// `validate` stage has extracted the file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Unicode's format characters (general category Cf, Unicode 15.1): bidi
/// embeddings, overrides and isolates, zero-width spaces and joiners, the
/// byte-order mark, tag characters. Invisible, they make a label display as
/// something else. A table, not a crate: a general-category crate would add
/// tens of KB to the Worker for these 21 ranges.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{AD}', '\u{AD}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// The one rule for single-line labels (titles, tags, authors, API key
/// names): no control characters (line breaks and tabs included), no line or
/// paragraph separators, and no format characters.
pub fn is_plain_label(s: &str) -> bool {
    s.chars().all(is_plain_char)
}

fn is_plain_char(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}') && !FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// A C0 control character other than tab, line feed, carriage return and
/// form feed: no text holds one, and JSON escapes each six-fold (`\u0001`),
/// so a body of them would outgrow what its run may store (2 MB a value)
/// and fail after its `202`. A body is refused with one; an upload's text
/// loses them.
pub fn is_stray_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r' | '\u{c}')
}

/// The body's schema pattern: not blank, no [`is_stray_control`] character.
/// Whitespace is spelled out as Rust's `trim` reads it (Unicode
/// White_Space), since ECMA's `\s` differs (it takes U+FEFF, not U+0085).
pub const BODY_PATTERN: &str = r"^[^\u0000-\u0008\u000B\u000E-\u001F]*[^\u0000-\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B\u000E-\u001F]*$";

/// What a body with a [`is_stray_control`] character is told.
pub const STRAY_CONTROL: &str = "must not contain control characters other than tab, line feed, carriage return and form feed";

/// `s` without the characters [`is_plain_label`] refuses, for a label the
/// server derives (an upload's title from its heading or file name), which
/// must not be refused as if the client had sent it.
pub fn plain_label(s: &str) -> String {
    s.chars().filter(|c| is_plain_char(*c)).collect()
}

/// The characters [`is_plain_label`] refuses, as the body of a regex class in
/// the common subset of ECMA-262 and Python syntax (the OpenAPI document's
/// patterns must read the same to a JS client and to schemathesis). Only
/// those up to U+FFFF: one past it cannot be written so that both read it
/// (ECMA without the `u` flag sees two surrogates; schemathesis turns a
/// literal one into Python's `\U` escape, which its ECMA check refuses). The
/// few refused format characters beyond (tag characters, musical beams) are
/// refused all the same, with the same 422.
fn label_refused_class() -> String {
    let mut class = String::from("\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029");
    for (lo, hi) in FORMAT_CHARS.iter().filter(|(_, hi)| (*hi as u32) < 0x1_0000) {
        class.push_str(&format!("\\u{:04X}", *lo as u32));
        if hi != lo {
            class.push_str(&format!("-\\u{:04X}", *hi as u32));
        }
    }
    class
}

/// Whether `c` is a refused character the document's patterns cannot name
/// (the pattern tests allow for these).
#[cfg(test)]
pub fn refused_beyond_bmp(c: char) -> bool {
    (c as u32) >= 0x1_0000 && FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// The pattern of a label that must not be blank (a title, a tag, a key's
/// name): plain characters with at least one that is not a space.
pub fn label_pattern() -> String {
    let x = label_refused_class();
    format!("^[^{x}]*[^\\s{x}][^{x}]*$")
}

/// The pattern of a label that may be blank (an author).
pub fn optional_label_pattern() -> String {
    format!("^[^{}]*$", label_refused_class())
}

/// The pattern [`category`] accepts (with the default length): letters and
/// digits (`\w`), spaces, '-' and '_'.
pub const CATEGORY_PATTERN: &str = r"^[\w -]{0,64}$";

/// What a label that breaks [`is_plain_label`] is told.
pub const PLAIN_LABEL: &str = "must be one line without control or invisible formatting characters";

/// A category as stored and filtered on: trimmed, lowercase, up to
/// `category_max_chars` letters, digits, spaces, '-' or '_'; `None` when
/// empty. Submissions, the listing and search all apply this one rule.
pub fn category(raw: Option<&str>, l: &Limits) -> Result<Option<String>, FieldError> {
    // Checked as given, then lowercased: a lowercase letter may be two
    // characters ('İ' is 'i' and a combining dot), which the pattern's `\w`
    // and its length count as given.
    let Some(c) = raw.map(str::trim).filter(|c| !c.is_empty()) else { return Ok(None) };
    if c.chars().count() > l.category_max_chars || !c.chars().all(|ch| ch.is_alphanumeric() || matches!(ch, '-' | '_' | ' ')) {
        return Err(FieldError::new(
            "category",
            format!("must be up to {} letters, digits, spaces, '-' or '_'", l.category_max_chars),
        ));
    }
    Ok(Some(c.to_lowercase()))
}

/// A title as stored: trimmed, one line, 1 to `title_max_chars` characters.
pub fn title(raw: &str, l: &Limits) -> Result<String, FieldError> {
    let title = raw.trim().to_string();
    let n = title.chars().count();
    if n == 0 || n > l.title_max_chars {
        return Err(FieldError::new("title", format!("must be 1 to {} characters", l.title_max_chars)));
    }
    if !is_plain_label(&title) {
        return Err(FieldError::new("title", PLAIN_LABEL));
    }
    Ok(title)
}

impl ContentDoc {
    /// An upload's document: its text comes later, from the file.
    pub fn upload(raw_title: &str, raw_category: Option<&str>, source: Source, l: &Limits) -> Result<ContentDoc, FieldError> {
        Ok(ContentDoc {
            title: title(raw_title, l)?,
            body: String::new(),
            category: category(raw_category, l)?,
            tags: Vec::new(),
            author: None,
            source: Some(source),
        })
    }

    pub fn validate(input: ContentInput, l: &Limits) -> Result<ContentDoc, FieldError> {
        let title = title(&input.title, l)?;
        if input.body.is_empty() || input.body.len() > l.body_max_bytes {
            return Err(FieldError::new("body", format!("must be 1 byte to {} bytes of UTF-8", l.body_max_bytes)));
        }
        if input.body.trim().is_empty() {
            return Err(FieldError::new("body", "must contain text, not only whitespace"));
        }
        if input.body.contains(is_stray_control) {
            return Err(FieldError::new("body", STRAY_CONTROL));
        }
        let category = category(input.category.as_deref(), l)?;
        let raw_tags = input.tags.unwrap_or_default();
        if raw_tags.len() > l.tags_max {
            return Err(FieldError::new("tags", format!("at most {} tags", l.tags_max)));
        }
        let mut tags: Vec<String> = Vec::with_capacity(raw_tags.len());
        for t in raw_tags {
            let t = t.trim().to_string();
            let n = t.chars().count();
            if n == 0 || n > l.tag_max_chars {
                return Err(FieldError::new("tags", format!("each tag must be 1 to {} characters", l.tag_max_chars)));
            }
            if !is_plain_label(&t) {
                return Err(FieldError::new("tags", format!("each tag {PLAIN_LABEL}")));
            }
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let author = match input.author.map(|a| a.trim().to_string()) {
            Some(a) if a.chars().count() > l.author_max_chars => {
                return Err(FieldError::new("author", format!("must be up to {} characters", l.author_max_chars)));
            }
            Some(a) if !is_plain_label(&a) => return Err(FieldError::new("author", PLAIN_LABEL)),
            Some(a) if a.is_empty() => None,
            a => a,
        };
        Ok(ContentDoc { title, body: input.body, category, tags, author, source: None })
    }
}

/// The field of an analysis that names other items (the analyzer's
/// `near_duplicates: [{id, similarity}]`).
const NEAR_DUPLICATES: &str = "near_duplicates";

/// The ids an item's analysis names as near duplicates. They are other
/// items, found among every fingerprint of the item's scope when it was
/// analyzed: the reader may not be able to read them (a colleague's private
/// item), or they may have been narrowed or deleted since.
pub fn named_near_duplicates(analysis: &Value) -> Vec<String> {
    analysis
        .get(NEAR_DUPLICATES)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|d| d.get("id").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Keeps only the near duplicates in `readable` (what the catalog says the
/// reader may read now), so an item's view never names one that is `404`
/// to its reader.
pub fn keep_readable_near_duplicates(analysis: &mut Value, readable: &std::collections::HashSet<String>) {
    if let Some(list) = analysis.get_mut(NEAR_DUPLICATES).and_then(Value::as_array_mut) {
        list.retain(|d| d.get("id").and_then(Value::as_str).is_some_and(|id| readable.contains(id)));
    }
}

/// What the pipeline derived from one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Artifacts {
    pub version: u32,
    pub chunks: u32,
    pub summary: Option<String>,
    pub keywords: Vec<Keyword>,
    pub entities: Vec<Entity>,
    pub sentiment: Option<Sentiment>,
    pub analysis: Option<Value>,
    /// An upload's text as `validate` extracted it; on publish it becomes
    /// the item's body (and is not kept here twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: u32,
    pub run_id: Uuid,
    pub title: String,
    pub created_at: Millis,
    pub status: ContentStatus,
    /// This version's uploaded original, if it was an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The item's visibility when this version was accepted (`None`: stored
    /// before versions kept it). A PUT that widens the item does not widen
    /// its older versions: see [`ContentState::version_readable_by`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// The order of the newest report of this version's run that was
    /// applied (see [`ContentState::take_report`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentState {
    pub id: Uuid,
    pub version: u32,
    pub doc: ContentDoc,
    pub status: ContentStatus,
    pub artifacts: Option<Artifacts>,
    pub history: Vec<VersionMeta>,
    /// Tenant and owner are fixed at creation; visibility follows `PUT`.
    #[serde(default = "Ownership::legacy")]
    pub ownership: Ownership,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Why a run of an older version ends `cancelled`.
pub fn superseded_reason(current: u32) -> String {
    format!("superseded by version {current}")
}

/// Most versions one item keeps. Its history is stored with it, in one
/// value (2 MB at most in a Durable Object's SQLite): 1,000 versions with
/// 300-character titles are about 0.5 MB beside a 200 KB body. Past it a
/// `PUT` is refused (409), never accepted and then lost, nor a 500.
pub const MAX_VERSIONS: u32 = 1_000;

/// Most bytes the item's stored value may take, below the 2 MB a Durable
/// Object's SQLite holds in one value. The version cap alone does not keep
/// it there: titles of 4-byte characters, uploads' sources, and a body whose
/// quotes and control characters JSON escapes can outgrow it sooner.
pub const MAX_STORED_BYTES: usize = 1_900_000;

/// Refuses an item whose stored value (`bytes` long) would not fit, so that
/// the change is refused (413) and nothing is written, not a 500.
pub fn fits_stored(bytes: usize) -> Result<(), ContentError> {
    if bytes > MAX_STORED_BYTES {
        return Err(ContentError::TooLarge { bytes, max: MAX_STORED_BYTES });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContentError {
    #[error("version {got} is stale; the current version is {current}")]
    Stale { got: u32, current: u32 },
    #[error("this item has {max} versions, the most one item keeps; submit the text as a new item")]
    TooManyVersions { max: u32 },
    #[error("with this change the item would take {bytes} bytes stored, more than the {max} one item may; submit the text as a new item")]
    TooLarge { bytes: usize, max: usize },
}

impl ContentState {
    pub fn create(id: Uuid, doc: ContentDoc, ownership: Ownership, run_id: Uuid, now: Millis) -> (Self, Vec<EventDraft>) {
        let mut s = ContentState {
            id,
            version: 0,
            doc: doc.clone(),
            status: ContentStatus::Processing,
            artifacts: None,
            history: Vec::new(),
            ownership,
            created_at: now,
            updated_at: now,
        };
        // A first version is always within the cap.
        let ev = s.new_version(doc, run_id, now).map(|(_, ev)| ev).unwrap_or_default();
        (s, ev)
    }

    /// Adds a version and returns the runs it supersedes: every unfinished
    /// one, and the current version's run if it did not publish (failed, or
    /// retried and running), so that none of them can be retried. Older
    /// versions' runs were superseded by the `PUT` that followed them.
    pub fn new_version(&mut self, doc: ContentDoc, run_id: Uuid, now: Millis) -> Result<(Vec<Uuid>, Vec<EventDraft>), ContentError> {
        if self.version >= MAX_VERSIONS {
            return Err(ContentError::TooManyVersions { max: MAX_VERSIONS });
        }
        let current = self.version;
        let superseded = self
            .history
            .iter()
            .filter(|v| v.status == ContentStatus::Processing || (v.version == current && v.status != ContentStatus::Indexed))
            .map(|v| v.run_id)
            .collect();
        for v in self.history.iter_mut().filter(|v| v.status == ContentStatus::Processing) {
            v.status = ContentStatus::Failed;
        }
        self.version += 1;
        self.history.push(VersionMeta {
            version: self.version,
            run_id,
            title: doc.title.clone(),
            created_at: now,
            status: ContentStatus::Processing,
            source: doc.source.clone(),
            visibility: Some(self.ownership.visibility),
            reported: None,
        });
        self.doc = doc;
        self.status = ContentStatus::Processing;
        self.updated_at = now;
        Ok((superseded, vec![self.updated(self.version, ContentStatus::Processing, Some(run_id), None)]))
    }

    /// Every content event names its item's ownership, so the feed can show
    /// each subscriber only what it may read.
    fn content_ref(&self) -> ContentRef {
        ContentRef { content_id: self.id, title: self.doc.title.clone(), ownership: self.ownership.clone() }
    }

    /// The `content.updated` event of `version` reaching `status`.
    fn updated(&self, version: u32, status: ContentStatus, run_id: Option<Uuid>, reason: Option<String>) -> EventDraft {
        EventDraft::of(ContentUpdated { item: self.content_ref(), version, status, run_id, reason })
    }

    fn meta_mut(&mut self, version: u32) -> Option<&mut VersionMeta> {
        self.history.iter_mut().find(|v| v.version == version)
    }

    pub fn publish(&mut self, mut artifacts: Artifacts, now: Millis) -> Result<Vec<EventDraft>, ContentError> {
        if artifacts.version != self.version {
            return Err(ContentError::Stale { got: artifacts.version, current: self.version });
        }
        if let Some(text) = artifacts.text.take() {
            self.doc.body = text;
        }
        if let Some(m) = self.meta_mut(artifacts.version) {
            m.status = ContentStatus::Indexed;
        }
        self.status = ContentStatus::Indexed;
        self.updated_at = now;
        let indexed = ContentIndexed {
            item: self.content_ref(),
            version: self.version,
            category: self.doc.category.clone(),
            summary: artifacts.summary.clone(),
            chunks: artifacts.chunks,
        };
        self.artifacts = Some(artifacts);
        Ok(vec![EventDraft::of(indexed)])
    }

    /// Whether a report of `version`'s run (its end, or an operator's
    /// retry) ordered `seq` is newer than the last one applied, and if so
    /// records it. Two can be in flight at once, a retry's and the end of
    /// the attempt it started, and arrive in either order: applied as they
    /// came, a late retry would make a failed item `processing` for good.
    /// The order is the run's newest event when it reported (its log's
    /// seq); a report without one (sent by an older build) is applied.
    pub fn take_report(&mut self, version: u32, seq: Option<u64>) -> bool {
        let (Some(seq), Some(m)) = (seq, self.meta_mut(version)) else { return true };
        if m.reported.is_some_and(|last| last >= seq) {
            return false;
        }
        m.reported = Some(seq);
        true
    }

    /// An operator retried `run_id`, the run of `version`: while that is the
    /// current version, the item is processing again (it said `failed`
    /// since its run failed or was cancelled) until the run ends.
    pub fn run_retried(&mut self, version: u32, run_id: Uuid, now: Millis) -> Vec<EventDraft> {
        if version != self.version || self.status != ContentStatus::Failed {
            return Vec::new();
        }
        if let Some(m) = self.meta_mut(version) {
            m.status = ContentStatus::Processing;
        }
        self.status = ContentStatus::Processing;
        self.updated_at = now;
        vec![self.updated(version, ContentStatus::Processing, Some(run_id), None)]
    }

    /// A run of `version` ended without publishing.
    pub fn run_failed(&mut self, version: u32, reason: &str, now: Millis) -> Vec<EventDraft> {
        if let Some(m) = self.meta_mut(version) {
            if m.status == ContentStatus::Processing {
                m.status = ContentStatus::Failed;
            }
        }
        if version != self.version || self.status != ContentStatus::Processing {
            return Vec::new();
        }
        self.status = ContentStatus::Failed;
        self.updated_at = now;
        vec![self.updated(version, ContentStatus::Failed, None, Some(reason.to_string()))]
    }

    /// What a deleted item keeps: its id, tenant and owner (the feed filters
    /// the deletion event by them), its last version number and when it was
    /// deleted (`updated_at`). No text, no history, no artifacts.
    pub fn tombstone(&self, now: Millis) -> ContentState {
        ContentState {
            id: self.id,
            version: self.version,
            doc: ContentDoc { title: String::new(), body: String::new(), category: None, tags: Vec::new(), author: None, source: None },
            status: self.status,
            artifacts: None,
            history: Vec::new(),
            ownership: self.ownership.clone(),
            created_at: self.created_at,
            updated_at: now,
        }
    }

    pub fn delete(&self) -> Vec<EventDraft> {
        vec![EventDraft::of(ContentDeleted { item: self.content_ref(), version: self.version })]
    }

    /// The uploaded original of `version` (the current one by default).
    /// Whether `reader`, who may read the item, may also read `version`: it
    /// must have been able to as the item was then (stricter of the two
    /// visibilities), so a private draft stays with its readers after a PUT
    /// made the item public. An unknown version is nobody's.
    pub fn version_readable_by(&self, reader: &Principal, version: u32) -> bool {
        self.history.iter().find(|v| v.version == version).is_some_and(|v| {
            v.visibility.is_none_or(|visibility| reader.can_read(&Ownership { visibility, ..self.ownership.clone() }))
        })
    }

    /// [`Self::view`] as `reader` may see it: the titles of versions it could
    /// not read are left out.
    pub fn view_for(&self, reader: &Principal) -> ContentView {
        let mut view = self.view();
        for v in &mut view.versions {
            if !self.version_readable_by(reader, v.version) {
                v.title = String::new();
            }
        }
        view
    }

    pub fn source(&self, version: Option<u32>) -> Option<&Source> {
        let version = version.unwrap_or(self.version);
        self.history.iter().find(|v| v.version == version)?.source.as_ref()
    }

    pub fn runs(&self) -> Vec<Uuid> {
        self.history.iter().map(|v| v.run_id).collect()
    }

    /// The spawn of `run_id` for the current version.
    pub fn spawn(&self, run_id: Uuid) -> Duty {
        let start = StartRun { run_id, content_id: self.id, version: self.version, doc: self.doc.clone(), ownership: self.ownership.clone(), superseded: None };
        Duty::SpawnRun { run_id, start }
    }

    /// What a new version (run `run_id`, already added) owes for the runs it
    /// superseded, each with its spawn if that is still owed: such a spawn
    /// is owed again saying the run was superseded, so the run starts ended
    /// and overtakes a try already on its way (a cancel would find no run,
    /// or an ended one); every other run is owed a cancel. Then the new
    /// run's spawn and the catalog row.
    pub fn new_version_duties(&self, superseded: Vec<(Uuid, Option<StartRun>)>, run_id: Uuid) -> Vec<Duty> {
        let reason = superseded_reason(self.version);
        let mut duties: Vec<Duty> = superseded
            .into_iter()
            .map(|(run, owed)| match owed {
                Some(mut start) => {
                    start.superseded = Some(reason.clone());
                    Duty::SpawnRun { run_id: run, start }
                }
                None => Duty::CancelRun { run_id: run, reason: reason.clone() },
            })
            .collect();
        duties.push(self.spawn(run_id));
        duties.push(Duty::Catalog);
        duties
    }

    /// What deleting the item owes: each run purged, then its vectors, its
    /// fingerprint, every uploaded file under it (whether or not a version
    /// was an upload: an upload answered 5xx keeps its object, and a source
    /// PUT refused on the way leaves one no version names), its catalog row,
    /// and the quotes answers hold of it.
    pub fn deletion_duties(&self) -> Vec<Duty> {
        let mut duties: Vec<Duty> = self.runs().into_iter().map(|run_id| Duty::PurgeRun { run_id }).collect();
        duties.extend([
            Duty::DropVectors,
            Duty::DropFingerprint,
            Duty::DropUploads { prefix: super::upload::item_prefix(&self.ownership.tenant, self.id) },
            Duty::Catalog,
            Duty::EraseQuotes,
        ]);
        duties
    }

    pub fn current_run(&self) -> Option<Uuid> {
        self.history.last().map(|v| v.run_id)
    }

    /// What the pipeline derived from the version the item shows, if that
    /// version published. An older version's summary, keywords and analysis
    /// are of a text the item no longer shows, perhaps one that was private
    /// when a PUT widened the item: they are never shown for a newer one.
    pub fn current_artifacts(&self) -> Option<&Artifacts> {
        self.artifacts.as_ref().filter(|a| a.version == self.version)
    }

    pub fn view(&self) -> ContentView {
        let a = self.current_artifacts();
        ContentView {
            id: self.id,
            version: self.version,
            title: self.doc.title.clone(),
            body: self.doc.body.clone(),
            category: self.doc.category.clone(),
            tags: self.doc.tags.clone(),
            author: self.doc.author.clone(),
            source: self.doc.source.as_ref().map(Source::view),
            status: self.status,
            summary: a.and_then(|a| a.summary.clone()),
            entities: a.map(|a| a.entities.clone()),
            keywords: a.map(|a| a.keywords.clone()),
            sentiment: a.and_then(|a| a.sentiment.clone()),
            analysis: a.and_then(|a| a.analysis.clone()),
            chunks: a.map(|a| a.chunks),
            runs: self.runs(),
            versions: self
                .history
                .iter()
                .map(|v| VersionView {
                    version: v.version,
                    run_id: v.run_id,
                    title: v.title.clone(),
                    created_at: rfc3339(v.created_at),
                    status: v.status,
                })
                .collect(),
            tenant: self.ownership.tenant.clone(),
            owner: self.ownership.owner.clone(),
            visibility: self.ownership.visibility,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// The ownership a content event's data names (its [`ContentRef`]); `None`
/// for events without one.
pub fn event_ownership(data: &Value) -> Option<Ownership> {
    Ownership::deserialize(data).ok()
}

/// Whether `reader` may see an event sent to a session or an SSE stream: one
/// that names an item (every content event does) only if it may read the
/// item as the event describes it, on every topic. An item made private
/// after a tenant reader subscribed sends that reader nothing more.
pub fn readable_by(reader: &super::principal::Principal, e: &crate::protocol::EventRecord) -> bool {
    event_ownership(&e.data).is_none_or(|o| reader.can_read(&o))
}

#[cfg(test)]
mod tests {
    use crate::config::Limits as CategoryLimits;

    /// A run's reports apply in their order, not in the order they came: a
    /// retry's report that arrives after the end of the attempt it started
    /// leaves the item failed.
    #[test]
    fn a_late_retry_report_does_not_revive_a_failed_item() {
        use super::{ContentDoc, ContentState, ContentStatus};
        use crate::domain::principal::{Ownership, Visibility};
        let doc = ContentDoc { title: "t".into(), body: "b".into(), category: None, tags: Vec::new(), author: None, source: None };
        let owner = Ownership { tenant: "acme".into(), owner: "k".into(), visibility: Visibility::Tenant, owner_kind: None };
        let run = uuid::Uuid::new_v4();
        let (mut c, _) = ContentState::create(uuid::Uuid::new_v4(), doc, owner, run, 0);
        assert!(c.take_report(1, Some(4)));
        assert_eq!(c.run_failed(1, "no words", 1).len(), 1);
        // Retried (its report ordered 6) and failed again at once (8): the
        // end arrives first, then the retry.
        assert!(c.take_report(1, Some(8)));
        assert!(c.run_failed(1, "no words", 2).is_empty(), "already failed");
        assert!(!c.take_report(1, Some(6)), "the retry's report is older than the end it led to");
        assert_eq!(c.status, ContentStatus::Failed);
        // A newer retry applies, and so does an unordered report.
        assert!(c.take_report(1, Some(9)));
        assert_eq!(c.run_retried(1, run, 3).len(), 1);
        assert_eq!(c.status, ContentStatus::Processing);
        assert!(c.take_report(1, None));
        assert!(!c.take_report(1, Some(9)), "the same report twice");
    }

    /// A view names only the near duplicates its reader may read; an
    /// analysis that names none is left as it was.
    #[test]
    fn a_view_names_only_the_readable_near_duplicates() {
        use super::{keep_readable_near_duplicates, named_near_duplicates};
        use serde_json::json;
        let mut analysis = json!({"language": "en", "near_duplicates": [
            {"id": "mine", "similarity": 0.97}, {"id": "private", "similarity": 1.0}, {"similarity": 0.9}
        ]});
        assert_eq!(named_near_duplicates(&analysis), ["mine", "private"]);
        keep_readable_near_duplicates(&mut analysis, &["mine".to_string()].into());
        assert_eq!(analysis, json!({"language": "en", "near_duplicates": [{"id": "mine", "similarity": 0.97}]}));
        for bare in [json!({"language": "en"}), json!(null), json!({"near_duplicates": []})] {
            assert!(named_near_duplicates(&bare).is_empty());
            let mut kept = bare.clone();
            keep_readable_near_duplicates(&mut kept, &Default::default());
            assert_eq!(kept, bare);
        }
    }

    /// A category is checked as given, then lowercased: 'İ' passes as the
    /// pattern's `\w` says, and its two lowercase characters do not count
    /// against the length.
    #[test]
    fn a_category_is_checked_before_it_is_lowercased() {
        let l = CategoryLimits::default();
        assert_eq!(category(Some(" İstanbul "), &l).unwrap().as_deref(), Some("i\u{307}stanbul"));
        let long = "İ".repeat(l.category_max_chars);
        assert!(category(Some(&long), &l).is_ok());
        assert!(category(Some(&"a".repeat(l.category_max_chars + 1)), &l).is_err());
        assert!(category(Some("a/b"), &l).is_err());
        assert_eq!(category(Some("  "), &l).unwrap(), None);
    }
    use super::*;
    use crate::protocol::EventName;

    fn input(title: &str, body: &str) -> ContentInput {
        ContentInput { title: title.into(), body: body.into(), category: None, tags: None, author: None, visibility: None }
    }

    fn field(r: Result<ContentDoc, FieldError>) -> String {
        match r {
            Err(FieldError { field, .. }) => field,
            other => panic!("expected invalid field, got {other:?}"),
        }
    }

    #[test]
    fn labels_refuse_invisible_and_control_characters() {
        let l = Limits::default();
        let hidden = ["\u{202E}", "\u{202A}", "\u{2066}", "\u{2069}", "\u{200B}", "\u{200D}", "\u{200F}", "\u{FEFF}", "\u{AD}", "\u{E0041}", "\t", "\r", "\u{7}", "\u{85}", "\u{2028}"];
        for h in hidden {
            let text = format!("pay{h}lpaP");
            assert_eq!(field(ContentDoc::validate(input(&text, "b"), &l)), "title", "{h:?}");
            let mut i = input("t", "b");
            i.tags = Some(vec![text.clone()]);
            assert_eq!(field(ContentDoc::validate(i.clone(), &l)), "tags", "{h:?}");
            i.tags = None;
            i.author = Some(text.clone());
            assert_eq!(field(ContentDoc::validate(i.clone(), &l)), "author", "{h:?}");
            i.author = None;
            i.category = Some(text);
            assert_eq!(field(ContentDoc::validate(i, &l)), "category", "{h:?}");
        }
        // Visible non-ASCII text is fine, the body may hold anything but NUL.
        let mut i = input("Café – ½ 😀 שלום 日本語", "body\twith\u{202E} tabs\r\n\u{c}page\u{85}\u{7f}");
        i.tags = Some(vec!["naïve".into()]);
        i.author = Some("Zoë Ünal".into());
        assert!(ContentDoc::validate(i, &l).is_ok());
    }

    /// A body's control characters other than tab, LF, CR and FF are refused:
    /// JSON writes each as six bytes, so a body of them would make chunks
    /// past the 2 MB a run may store, and fail after its `202`.
    #[test]
    fn a_body_refuses_controls_that_json_widens() {
        let l = Limits::default();
        for c in ['\0', '\u{1}', '\u{8}', '\u{b}', '\u{1b}', '\u{1f}'] {
            let r = ContentDoc::validate(input("t", &format!("a{c}b")), &l);
            let said = format!("{r:?}");
            assert_eq!(field(r), "body", "{c:?}");
            assert!(said.contains(STRAY_CONTROL), "{c:?}: {said}");
            assert_eq!(serde_json::to_string(&c.to_string()).unwrap().len(), if matches!(c, '\u{8}') { 4 } else { 8 });
        }
        for c in ['\t', '\n', '\r', '\u{c}', ' ', '\u{7f}'] {
            assert!(!is_stray_control(c), "{c:?}");
        }
    }

    /// Every range is Cf, and the ends are the Cf code points next to
    /// characters of other categories (spot checks of the Unicode table).
    #[test]
    fn the_format_table_is_sorted_and_bounded() {
        assert!(FORMAT_CHARS.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(FORMAT_CHARS.iter().all(|(lo, hi)| lo <= hi));
        for visible in ['a', '\u{AC}', '\u{AE}', '\u{200A}', '\u{2010}', '\u{2065}', '\u{FEFE}', '\u{E0080}'] {
            assert!(is_plain_label(&visible.to_string()), "{visible:?}");
        }
    }

    #[test]
    fn validation_limits() {
        let l = Limits::default();
        assert!(ContentDoc::validate(input("t", "b"), &l).is_ok());
        assert_eq!(field(ContentDoc::validate(input("", "b"), &l)), "title");
        assert_eq!(field(ContentDoc::validate(input("   ", "b"), &l)), "title");
        assert_eq!(field(ContentDoc::validate(input(&"x".repeat(301), "b"), &l)), "title");
        assert!(ContentDoc::validate(input(&"é".repeat(300), "b"), &l).is_ok(), "limit is in characters");
        assert_eq!(field(ContentDoc::validate(input("a\nb", "b"), &l)), "title");
        assert_eq!(field(ContentDoc::validate(input("t", ""), &l)), "body");
        assert_eq!(field(ContentDoc::validate(input("t", " \n "), &l)), "body");
        assert_eq!(field(ContentDoc::validate(input("t", &"x".repeat(200 * 1024 + 1)), &l)), "body");
        assert!(ContentDoc::validate(input("t", &"x".repeat(200 * 1024)), &l).is_ok());
        let mut i = input("t", "b");
        i.tags = Some((0..21).map(|n| n.to_string()).collect());
        assert_eq!(field(ContentDoc::validate(i.clone(), &l)), "tags");
        i.tags = Some(vec!["x".repeat(41)]);
        assert_eq!(field(ContentDoc::validate(i.clone(), &l)), "tags");
        i.tags = Some(vec![" a ".into(), "a".into(), "b".into()]);
        assert_eq!(ContentDoc::validate(i.clone(), &l).unwrap().tags, ["a", "b"]);
        i.category = Some("Science; DROP TABLE".into());
        assert_eq!(field(ContentDoc::validate(i.clone(), &l)), "category");
        i.category = Some(" Science ".into());
        assert_eq!(ContentDoc::validate(i, &l).unwrap().category.as_deref(), Some("science"));
    }

    fn doc(t: &str) -> ContentDoc {
        ContentDoc::validate(input(t, "body text"), &Limits::default()).unwrap()
    }

    #[test]
    fn versions_supersede_and_stale_publish_is_refused() {
        let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
        let (mut s, ev) = ContentState::create(Uuid::new_v4(), doc("one"), Ownership::legacy(), r1, 10);
        assert_eq!(ev[0].event, EventName::ContentUpdated);
        assert_eq!(s.version, 1);
        let (superseded, _) = s.new_version(doc("two"), r2, 20).unwrap();
        assert_eq!(superseded, vec![r1]);
        assert_eq!(s.version, 2);
        let stale = Artifacts { version: 1, ..Default::default() };
        assert_eq!(s.publish(stale, 30), Err(ContentError::Stale { got: 1, current: 2 }));
        assert_eq!(s.status, ContentStatus::Processing);
        let ev = s.publish(Artifacts { version: 2, chunks: 3, ..Default::default() }, 40).unwrap();
        assert_eq!(ev[0].event, EventName::ContentIndexed);
        assert_eq!(s.status, ContentStatus::Indexed);
        let v = s.view();
        assert_eq!(v.runs, vec![r1, r2]);
        assert_eq!(v.versions[0].status, ContentStatus::Failed);
        assert_eq!(v.versions[1].status, ContentStatus::Indexed);
        assert_eq!(v.chunks, Some(3));
    }

    #[test]
    fn a_new_version_owes_its_spawn_and_what_it_superseded_a_spawn_or_a_cancel() {
        let (r1, r2, r3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("one"), Ownership::legacy(), r1, 10);
        let Duty::SpawnRun { start: owed, .. } = s.spawn(r1) else { panic!("a spawn") };
        s.new_version(doc("two"), r2, 20).unwrap();
        s.new_version(doc("three"), r3, 30).unwrap();
        // r1's spawn still owed, r2 started: r1 is spawned ended, r2 cancelled.
        let duties = s.new_version_duties(vec![(r1, Some(owed)), (r2, None)], r3);
        let reason = superseded_reason(3);
        match &duties[0] {
            Duty::SpawnRun { run_id, start } => assert_eq!((*run_id, start.superseded.as_deref()), (r1, Some(reason.as_str()))),
            d => panic!("{d:?}"),
        }
        assert!(matches!(&duties[1], Duty::CancelRun { run_id, reason: why } if *run_id == r2 && *why == reason));
        match &duties[2] {
            Duty::SpawnRun { run_id, start } => assert_eq!((*run_id, start.version, start.superseded.as_ref()), (r3, 3, None)),
            d => panic!("{d:?}"),
        }
        assert!(matches!(duties[3], Duty::Catalog));
        assert_eq!(duties.len(), 4);
    }

    #[test]
    fn a_deletion_purges_every_run_and_erases_everything_the_item_left() {
        let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
        let own = Ownership { tenant: "acme".into(), owner: "k".into(), visibility: Visibility::Tenant, owner_kind: None };
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("one"), own, r1, 10);
        s.new_version(doc("two"), r2, 20).unwrap();
        let keys: Vec<String> = s.deletion_duties().iter().map(Duty::key).collect();
        let prefix = super::super::upload::item_prefix("acme", s.id);
        assert_eq!(keys, [format!("purge:{r1}"), format!("purge:{r2}"), "vectors".into(), "fingerprint".into(), "uploads".into(), "catalog".into(), "quotes".into()]);
        assert!(s.deletion_duties().iter().any(|d| matches!(d, Duty::DropUploads { prefix: p } if *p == prefix)));
    }

    #[test]
    fn an_item_keeps_at_most_max_versions_and_fits_one_stored_value() {
        let title = "t".repeat(300);
        let big = |t: &str| ContentDoc { title: t.to_string(), body: "b".repeat(200 * 1024), ..doc(t) };
        let (mut s, _) = ContentState::create(Uuid::new_v4(), big(&title), Ownership::legacy(), Uuid::new_v4(), 10);
        for _ in 2..=MAX_VERSIONS {
            s.new_version(big(&title), Uuid::new_v4(), 20).unwrap();
        }
        assert_eq!(s.version, MAX_VERSIONS);
        assert_eq!(s.new_version(big(&title), Uuid::new_v4(), 30), Err(ContentError::TooManyVersions { max: MAX_VERSIONS }));
        assert_eq!((s.version, s.history.len()), (MAX_VERSIONS, MAX_VERSIONS as usize), "a refused version leaves no trace");
        // As the actor stores it: one JSON value, under the 2 MB a value may hold.
        let stored = serde_json::to_string(&s).unwrap().len();
        assert!(stored < 1_500_000, "{stored} bytes");
    }

    /// The version cap alone does not bound the stored value: 4-byte
    /// titles and a body that JSON escapes six-fold outgrow 2 MB sooner.
    #[test]
    fn an_item_that_would_outgrow_its_stored_value_is_refused() {
        let title = "😀".repeat(300);
        let body = "\u{1}".repeat(200 * 1024);
        let big = || ContentDoc { title: title.clone(), body: body.clone(), ..doc("t") };
        let (mut s, _) = ContentState::create(Uuid::new_v4(), big(), Ownership::legacy(), Uuid::new_v4(), 10);
        assert_eq!(fits_stored(serde_json::to_string(&s).unwrap().len()), Ok(()), "one version fits");
        let mut versions = 1;
        let refused = loop {
            s.new_version(big(), Uuid::new_v4(), 20).unwrap();
            versions += 1;
            let stored = serde_json::to_string(&s).unwrap().len();
            if let Err(e) = fits_stored(stored) {
                break e;
            }
        };
        assert!(versions < MAX_VERSIONS, "refused at {versions} versions, before the cap");
        assert!(matches!(refused, ContentError::TooLarge { bytes, max: MAX_STORED_BYTES } if bytes > MAX_STORED_BYTES), "{refused:?}");
        assert_eq!(fits_stored(MAX_STORED_BYTES), Ok(()));
    }

    /// A `PUT` supersedes the current version's run when it did not publish
    /// (it failed, or an operator's retry runs it), so that run cannot be
    /// retried; older runs were superseded by the `PUT` after them.
    #[test]
    fn a_put_supersedes_the_current_versions_failed_run() {
        let (r1, r2, r3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("one"), Ownership::legacy(), r1, 10);
        s.run_failed(1, "bad input", 20);
        assert_eq!(s.history[0].status, ContentStatus::Failed);
        let (superseded, _) = s.new_version(doc("two"), r2, 30).unwrap();
        assert_eq!(superseded, vec![r1], "the failed run of the version replaced");
        s.publish(Artifacts { version: 2, ..Default::default() }, 40).unwrap();
        let (superseded, _) = s.new_version(doc("three"), r3, 50).unwrap();
        assert!(superseded.is_empty(), "a run that published has nothing to retry, and v1's was superseded by v2: {superseded:?}");
    }

    #[test]
    fn every_accepted_version_stays_in_the_history() {
        let mut runs = vec![Uuid::new_v4()];
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("v1"), Ownership::legacy(), runs[0], 10);
        for i in 2..=20u32 {
            let run = Uuid::new_v4();
            runs.push(run);
            let (superseded, _) = s.new_version(doc(&format!("v{i}")), run, 10 + i as i64).unwrap();
            assert_eq!(superseded, vec![runs[runs.len() - 2]], "only the previous, unfinished run");
        }
        let versions: Vec<u32> = s.history.iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=20).collect::<Vec<_>>());
        assert_eq!(s.runs(), runs);
        assert_eq!(s.view().title, "v20");
        // A late publish of any older version is refused; the current one lands.
        for v in 1..20 {
            assert!(s.publish(Artifacts { version: v, ..Default::default() }, 99).is_err());
        }
        assert!(s.publish(Artifacts { version: 20, ..Default::default() }, 99).is_ok());
    }

    #[test]
    fn a_newer_version_shows_nothing_derived_from_an_older_one() {
        let mut s = ContentState::create(Uuid::new_v4(), doc("draft"), Ownership::legacy(), Uuid::new_v4(), 10).0;
        s.publish(Artifacts { version: 1, summary: Some("the private plan".into()), chunks: 2, ..Default::default() }, 20).unwrap();
        assert_eq!(s.view().summary.as_deref(), Some("the private plan"));
        s.new_version(doc("widened"), Uuid::new_v4(), 30).unwrap();
        let v = s.view();
        assert_eq!((v.summary, v.keywords.is_none(), v.chunks), (None, true, None), "while version 2 runs");
        s.run_failed(2, "no words", 40);
        assert!(s.current_artifacts().is_none() && s.view().summary.is_none(), "and once it failed");
    }

    #[test]
    fn a_widening_put_leaves_older_versions_with_their_readers() {
        use crate::domain::principal::Scope;
        let owner = Principal::api_key("acme", "k-owner", &[Scope::Write]);
        let reader = Principal::api_key("acme", "k-reader", &[Scope::Read]);
        let own = Ownership { tenant: "acme".into(), owner: "k-owner".into(), visibility: Visibility::Private, owner_kind: None };
        let mut s = ContentState::create(Uuid::new_v4(), doc("private draft"), own, Uuid::new_v4(), 10).0;
        s.ownership.visibility = Visibility::Tenant;
        s.new_version(doc("public note"), Uuid::new_v4(), 20).unwrap();
        assert!(s.version_readable_by(&reader, 2) && !s.version_readable_by(&reader, 1));
        assert!(s.version_readable_by(&owner, 1) && s.version_readable_by(&Principal::operator(), 1));
        assert!(!s.version_readable_by(&owner, 3), "no such version");
        let titles = |p: &Principal| s.view_for(p).versions.into_iter().map(|v| v.title).collect::<Vec<_>>();
        assert_eq!(titles(&reader), ["", "public note"]);
        assert_eq!(titles(&owner), ["private draft", "public note"]);
        // Versions stored before they kept a visibility follow the item's.
        s.history[0].visibility = None;
        assert!(s.version_readable_by(&reader, 1));
    }

    #[test]
    fn tombstone_keeps_no_text() {
        let mut s = ContentState::create(Uuid::new_v4(), doc("secret title"), Ownership::legacy(), Uuid::new_v4(), 10).0;
        s.doc.tags = vec!["private".into()];
        s.doc.author = Some("someone".into());
        s.publish(Artifacts { version: 1, summary: Some("secret summary".into()), ..Default::default() }, 20).unwrap();
        let t = s.tombstone(30);
        assert_eq!((t.id, t.updated_at, &t.ownership), (s.id, 30, &s.ownership));
        let text = serde_json::to_string(&t).unwrap();
        for secret in ["secret", "private", "someone", "body text"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let ev = t.delete();
        assert_eq!(ev[0].data["title"], "");
    }

    #[test]
    fn uploads_keep_each_versions_source_and_take_the_extracted_text() {
        use crate::domain::upload::{object_key, Source};
        let l = Limits::default();
        let (id, r1, r2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let src = |run, bytes: &[u8]| Source::describe("text/markdown", bytes, object_key("acme", id, run));
        let doc1 = ContentDoc::upload(" Notes ", Some("Science"), src(r1, b"# one"), &l).unwrap();
        assert_eq!((doc1.title.as_str(), doc1.body.as_str(), doc1.category.as_deref()), ("Notes", "", Some("science")));
        assert!(ContentDoc::upload(" ", None, src(r1, b""), &l).is_err(), "titles follow the submission rule");
        let (mut s, _) = ContentState::create(id, doc1, Ownership::legacy(), r1, 10);
        assert!(s.view().body.is_empty());
        let a = Artifacts { version: 1, text: Some("one extracted".into()), ..Default::default() };
        s.publish(a, 20).unwrap();
        assert_eq!(s.view().body, "one extracted");
        assert_eq!(s.artifacts.as_ref().unwrap().text, None, "the text is kept once, as the body");
        s.new_version(ContentDoc::upload("Notes", None, src(r2, b"# two"), &l).unwrap(), r2, 30).unwrap();
        assert_eq!(s.source(Some(1)).unwrap().key, object_key("acme", id, r1));
        assert_eq!(s.source(None).unwrap().key, object_key("acme", id, r2));
        assert_eq!(s.source(Some(3)), None);
        assert_eq!(s.view().source.unwrap().bytes, 5);
        // A JSON version after a file: no current source, the old one stays.
        s.new_version(doc("plain"), Uuid::new_v4(), 40).unwrap();
        assert!(s.view().source.is_none());
        assert!(s.source(Some(2)).is_some());
        let stored: ContentState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(stored, s);
    }

    #[test]
    fn failure_of_old_version_does_not_touch_current() {
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("one"), Ownership::legacy(), Uuid::new_v4(), 10);
        s.new_version(doc("two"), Uuid::new_v4(), 20).unwrap();
        assert!(s.run_failed(1, "x", 30).is_empty());
        assert_eq!(s.status, ContentStatus::Processing);
        assert_eq!(s.run_failed(2, "embed failed", 40).len(), 1);
        assert_eq!(s.status, ContentStatus::Failed);
    }

    /// A retried run's item says `processing` again, but only for the
    /// current version, and only once.
    #[test]
    fn a_retry_of_the_current_versions_run_makes_the_item_processing() {
        let (mut s, _) = ContentState::create(Uuid::new_v4(), doc("one"), Ownership::legacy(), Uuid::new_v4(), 10);
        let run2 = Uuid::new_v4();
        s.new_version(doc("two"), run2, 20).unwrap();
        s.run_failed(1, "x", 30);
        s.run_failed(2, "embed failed", 40);
        assert!(s.run_retried(1, Uuid::new_v4(), 50).is_empty(), "an older version's retry");
        assert_eq!(s.status, ContentStatus::Failed);
        let ev = s.run_retried(2, run2, 60);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data["status"], "processing");
        assert_eq!((s.status, s.updated_at), (ContentStatus::Processing, 60));
        assert_eq!(s.history.last().map(|v| v.status), Some(ContentStatus::Processing));
        assert!(s.run_retried(2, run2, 70).is_empty(), "already processing");
    }
}
