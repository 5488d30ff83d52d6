//! What the feed remembers of items whose events may reach it out of order.
//!
//! Each content actor announces a commit's feed events with one call, and two
//! commits' calls may cross: a `PUT` that makes an item private, or its
//! `DELETE`, can reach the feed before the `content.indexed` of the version
//! it replaced. The feed re-labels the events it already holds when the newer
//! event lands (`EventStore::reown`, `EventStore::redact`); these labels do
//! the same for the ones that land after it, before they are stored or sent.
//! A content actor's announcement lands within seconds (the outbox tries a
//! duty at least every 10 s, and the alarm after a 30 s lease), so the feed
//! keeps a label for [`LATE_ANNOUNCE_MS`], and only items changed lately have
//! one. Only an outage of the feed longer than that could let a late event
//! through with the label it was committed with.

use std::collections::BTreeMap;

use serde_json::Value;

use super::principal::Visibility;
use super::time::Millis;
use crate::protocol::{EventDraft, EventName};

/// How long the feed keeps what places a late announcement (labels, and the
/// announcements it has appended): far longer than its tries take.
pub const LATE_ANNOUNCE_MS: Millis = 60 * 60 * 1000;

/// The newest version the feed has seen of an item, and whether it is deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemLabel {
    pub version: u64,
    pub visibility: Option<String>,
    pub deleted: bool,
    pub at: Millis,
}

/// Labels by content id, for items with a second version or a deletion in the
/// last [`LATE_ANNOUNCE_MS`]. An item with one version and no deletion has no
/// label: its events cannot be older than anything the feed holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemLabels(BTreeMap<String, ItemLabel>);

fn content_id(d: &EventDraft) -> Option<&str> {
    d.data.get("content_id").and_then(Value::as_str)
}

fn version(d: &EventDraft) -> u64 {
    d.data.get("version").and_then(Value::as_u64).unwrap_or(0)
}

/// Adds `id` unless it is there: a batch names few items, in order.
fn push_once(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_string());
    }
}

/// What a deleted item's events no longer say, and what each says instead:
/// the one list both the late events here and the stored ones
/// (`EventStore::redact`) are erased by. An event keeps its id, seq and name.
pub const ERASED: [(&str, Erased); 3] = [("title", Erased::Empty), ("summary", Erased::Null), ("category", Erased::Null)];

/// What an erased field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Erased {
    Empty,
    Null,
}

impl Erased {
    pub fn value(self) -> Value {
        match self {
            Erased::Empty => Value::String(String::new()),
            Erased::Null => Value::Null,
        }
    }

    /// The same as an SQLite JSON argument (`json_replace`'s value).
    pub fn sql(self) -> &'static str {
        match self {
            Erased::Empty => "''",
            Erased::Null => "json('null')",
        }
    }
}

/// Erases the [`ERASED`] fields an event's data has.
pub fn redact(data: &mut Value) {
    if let Some(o) = data.as_object_mut() {
        for (field, to) in ERASED {
            if let Some(v) = o.get_mut(field) {
                *v = to.value();
            }
        }
    }
}

impl ItemLabels {
    /// Learns the batch's newer versions and deletions (into labels the
    /// caller read for the batch's items), and answers the ids whose labels
    /// changed, for the caller to save. A first version's events change none.
    pub fn learn(&mut self, drafts: &[EventDraft], now: Millis) -> Vec<String> {
        let mut changed: Vec<String> = Vec::new();
        for d in drafts {
            let deleted = d.event == EventName::ContentDeleted;
            let renewed = d.event == EventName::ContentUpdated && version(d) > 1;
            let Some(id) = content_id(d).filter(|_| deleted || renewed) else { continue };
            let visibility = d.data.get("visibility").and_then(Value::as_str).map(str::to_string);
            let v = version(d);
            let label = self
                .0
                .entry(id.to_string())
                .or_insert_with(|| ItemLabel { version: v, visibility: visibility.clone(), deleted, at: now });
            if v >= label.version {
                label.version = v;
                label.visibility = visibility;
            }
            label.deleted |= deleted;
            label.at = now;
            push_once(&mut changed, id);
        }
        changed
    }

    /// Gives each draft of an older version the newest version's visibility
    /// when that is narrower (never wider: a `PUT` that widens an item does
    /// not widen its older versions, as the item's view and search keep
    /// them), and strips a deleted item's drafts (but its `content.deleted`)
    /// of what they said of it.
    pub fn apply(&self, drafts: &mut [EventDraft]) {
        for d in drafts.iter_mut() {
            let Some(label) = content_id(d).and_then(|id| self.0.get(id)) else { continue };
            // A draft never loses its label: an event without one is anyone's.
            if let Some(v) = label.visibility.as_deref().filter(|_| version(d) < label.version) {
                let own = d.data.get("visibility").and_then(Value::as_str).and_then(Visibility::parse);
                if Visibility::parse(v).is_some_and(|newer| own.is_none_or(|own| newer < own)) {
                    d.data["visibility"] = Value::String(v.to_string());
                }
            }
            if label.deleted && d.event != EventName::ContentDeleted {
                redact(&mut d.data);
            }
        }
    }

    /// The ids of the drafts' items, each once: the labels to read.
    pub fn items(drafts: &[EventDraft]) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for id in drafts.iter().filter_map(content_id) {
            push_once(&mut ids, id);
        }
        ids
    }

    pub fn get(&self, content_id: &str) -> Option<&ItemLabel> {
        self.0.get(content_id)
    }

    pub fn insert(&mut self, content_id: String, label: ItemLabel) {
        self.0.insert(content_id, label);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0b9f6a4e-7d0c-4a7e-9c1e-2f4b8f7a6d10";

    fn draft(event: EventName, version: u64, visibility: &str) -> EventDraft {
        EventDraft::new(
            event,
            json!({ "content_id": ID, "title": "t", "summary": "s", "category": "c",
                    "tenant": "acme", "owner": "u1", "visibility": visibility, "version": version }),
        )
    }

    #[test]
    fn a_first_version_leaves_no_label() {
        let mut labels = ItemLabels::default();
        assert!(labels.learn(&[draft(EventName::ContentUpdated, 1, "public"), draft(EventName::ContentIndexed, 1, "public")], 0).is_empty());
        assert!(labels.is_empty());
    }

    #[test]
    fn an_older_versions_late_event_takes_the_newer_visibility() {
        let mut labels = ItemLabels::default();
        assert_eq!(labels.learn(&[draft(EventName::ContentUpdated, 2, "private")], 0), vec![ID.to_string()]);
        let mut late = vec![draft(EventName::ContentIndexed, 1, "public")];
        labels.learn(&late, 10);
        labels.apply(&mut late);
        assert_eq!(late[0].data["visibility"], "private");
        assert_eq!(late[0].data["title"], "t", "a renewed item keeps its title");
    }

    #[test]
    fn the_newest_version_wins_whatever_the_order_of_arrival() {
        let mut labels = ItemLabels::default();
        labels.learn(&[draft(EventName::ContentUpdated, 3, "tenant")], 0);
        labels.learn(&[draft(EventName::ContentUpdated, 2, "public")], 1);
        let mut late = vec![draft(EventName::ContentIndexed, 2, "public"), draft(EventName::ContentIndexed, 3, "tenant")];
        labels.apply(&mut late);
        assert_eq!(late[0].data["visibility"], "tenant");
        assert_eq!(late[1].data["visibility"], "tenant");
    }

    /// A private first version stays private on the feed when a `PUT`
    /// makes the item public: only narrowing travels back.
    #[test]
    fn a_widening_version_does_not_widen_older_events() {
        let mut labels = ItemLabels::default();
        labels.learn(&[draft(EventName::ContentUpdated, 2, "public")], 0);
        let mut late = vec![draft(EventName::ContentIndexed, 1, "private"), draft(EventName::ContentIndexed, 1, "tenant")];
        labels.apply(&mut late);
        assert_eq!(late[0].data["visibility"], "private");
        assert_eq!(late[1].data["visibility"], "tenant");
        let mut unlabelled = vec![draft(EventName::ContentIndexed, 1, "public")];
        unlabelled[0].data.as_object_mut().unwrap().remove("visibility");
        labels.learn(&[draft(EventName::ContentUpdated, 3, "tenant")], 1);
        labels.apply(&mut unlabelled);
        assert_eq!(unlabelled[0].data["visibility"], "tenant", "an event without a label is anyone's: narrowed");
    }

    #[test]
    fn a_newer_versions_own_event_keeps_its_label() {
        let mut labels = ItemLabels::default();
        labels.learn(&[draft(EventName::ContentUpdated, 2, "private")], 0);
        let mut newer = vec![draft(EventName::ContentIndexed, 3, "public")];
        labels.apply(&mut newer);
        assert_eq!(newer[0].data["visibility"], "public");
    }

    #[test]
    fn events_after_a_deletion_say_nothing_of_the_item() {
        let mut labels = ItemLabels::default();
        let mut deleted = vec![draft(EventName::ContentDeleted, 1, "public")];
        assert_eq!(labels.learn(&deleted, 0), vec![ID.to_string()]);
        labels.apply(&mut deleted);
        assert_eq!(deleted[0].data["title"], "t", "the deletion itself is sent as it is");
        let mut late = vec![draft(EventName::ContentIndexed, 1, "public")];
        labels.apply(&mut late);
        assert_eq!(late[0].data["title"], "");
        assert_eq!(late[0].data["summary"], Value::Null);
        assert_eq!(late[0].data["category"], Value::Null);
        assert_eq!(late[0].data["content_id"], ID);
        // A later version's event cannot undo the deletion.
        labels.learn(&[draft(EventName::ContentUpdated, 2, "public")], 1);
        let mut later = vec![draft(EventName::ContentIndexed, 2, "public")];
        labels.apply(&mut later);
        assert_eq!(later[0].data["title"], "");
    }

    #[test]
    fn a_batch_names_each_item_once() {
        let mut other = draft(EventName::ContentIndexed, 1, "public");
        other.data["content_id"] = json!("another");
        let batch = [draft(EventName::ContentUpdated, 2, "public"), other, draft(EventName::ContentIndexed, 2, "public")];
        assert_eq!(ItemLabels::items(&batch), vec![ID.to_string(), "another".to_string()]);
    }
}
