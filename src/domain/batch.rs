//! A bulk import (`POST /api/content/batch`): the state of each item from
//! "queued" to a terminal state, and the in-flight cap the queue consumer
//! obeys. Pure: the `BatchActor` persists it, the consumer asks it what to do
//! with each queue message ([`Batch::claim`]), and content actors report their
//! runs' ends to it ([`Batch::ended`]).
//!
//! Backpressure: a message that finds the batch at its cap is acknowledged
//! and its item *deferred*; as runs end, the batch puts deferred items back
//! on the queue, as many as there is room for ([`Batch::release`]). Nothing
//! polls, and waiting never uses up a message's retries.
//!
//! An item's content id and run id are derived from (batch id, index), so a
//! redelivered queue message spawns the same item again, which the content
//! actor answers idempotently: never a second item.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::content::ContentDoc;
use super::principal::{Ownership, Principal, Visibility};
use crate::config::Limits;
use crate::error::ApiError;
use crate::protocol::ContentInput;
use super::time::Millis;
use crate::protocol::{EventDraft, EventName};

/// Most items one batch takes.
pub const MAX_ITEMS: usize = 1000;

/// At most one `batch.progress` event per this interval…
pub const PROGRESS_EVERY_MS: Millis = 250;
/// …unless this many items reached a terminal state since the last one.
pub const PROGRESS_EVERY_ITEMS: u32 = 50;


#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// On the queue, not spawned yet (or its last spawn failed and it waits for a retry).
    Queued,
    /// Off the queue, waiting for room under the cap ([`Batch::release`]).
    Deferred,
    /// Released: back on the queue, holding one of the cap's slots.
    Requeued,
    /// A consumer is creating its content item and run.
    Spawning,
    /// Its run is going.
    Running,
    Completed,
    Failed,
}

impl ItemStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, ItemStatus::Completed | ItemStatus::Failed)
    }

    fn in_flight(self) -> bool {
        matches!(self, ItemStatus::Requeued | ItemStatus::Spawning | ItemStatus::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub index: u32,
    pub status: ItemStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// Why it failed, or why its last spawn failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spawn_failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: Uuid,
    pub submitter: Principal,
    /// The ownership every item of the batch is created with.
    pub ownership: Ownership,
    pub max_in_flight: u32,
    pub max_in_flight_observed: u32,
    pub items: Vec<BatchItem>,
    pub created_at: Millis,
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// When the last progress event went out, and the terminal count it carried.
    #[serde(default)]
    progress_at: Millis,
    #[serde(default)]
    progress_settled: u32,
}

/// What the consumer does with an item's queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Claim {
    /// Create the content item and its run with these ids.
    Spawn { content_id: Uuid, run_id: Uuid },
    /// The batch is at its cap: the item waits off the queue until
    /// [`Batch::release`] puts it back; acknowledge the message.
    Defer,
    /// Already spawned or settled: acknowledge the message.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchCounts {
    pub total: u32,
    pub spawned: u32,
    pub completed: u32,
    pub failed: u32,
    pub in_flight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchView {
    pub id: Uuid,
    pub status: &'static str,
    #[serde(flatten)]
    pub counts: BatchCounts,
    pub max_in_flight: u32,
    pub max_in_flight_observed: u32,
    pub items: Vec<BatchItem>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("item {index} is not in this batch of {total}")]
    NoSuchItem { index: u32, total: u32 },
}

/// An item the batch does not have is not found.
impl From<BatchError> for crate::error::ApiError {
    fn from(e: BatchError) -> Self {
        crate::error::ApiError::not_found(e.to_string())
    }
}

/// A UUID (version 4 layout) derived from a batch, an item index and a purpose.
fn derived_id(batch: Uuid, index: u32, purpose: &str) -> Uuid {
    let digest = Sha256::digest(format!("actorline-batch/{batch}/{index}/{purpose}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// How many refused items a 422 names (all are counted).
const REFUSALS_NAMED: usize = 20;

/// Validates every item with the rules of `POST /api/content`. A batch is
/// accepted whole or refused whole: one bad item makes it a 422 that counts
/// the refused items and names the first [`REFUSALS_NAMED`] of them, each
/// with its index and reason, so the client fixes them and sends it again.
pub fn validate_items(items: Vec<Value>, limits: &Limits) -> Result<Vec<(ContentDoc, Option<Visibility>)>, ApiError> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::invalid("items", format!("must hold 1 to {MAX_ITEMS} items, not {}", items.len())));
    }
    let total = items.len();
    let mut accepted = Vec::with_capacity(total);
    let mut refused: Vec<String> = Vec::new();
    let mut refused_count = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        let checked = serde_json::from_value::<ContentInput>(item).map_err(ApiError::from).and_then(|input| {
            let visibility = input.visibility;
            ContentDoc::validate(input, limits).map(|doc| (doc, visibility))
        });
        match checked {
            Ok(ok) => accepted.push(ok),
            Err(e) => {
                refused_count += 1;
                if refused.len() < REFUSALS_NAMED {
                    refused.push(match e {
                        ApiError::InvalidField { field, message } => format!("items[{i}].{field}: {message}"),
                        other => format!("items[{i}]: {other}"),
                    });
                }
            }
        }
    }
    if refused_count > 0 {
        return Err(ApiError::invalid("items", format!("{refused_count} of {total} items refused, none accepted: {}", refused.join("; "))));
    }
    Ok(accepted)
}

/// A message on the `INGEST` queue: one item of one batch. The documents
/// stay in the `BatchActor`, so every message is tiny whatever the item's
/// size (Queues caps a message at 128 KB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestMessage {
    pub batch_id: Uuid,
    pub index: u32,
}

/// Which batch item a content item is, stored by its content actor, which
/// reports the end of the item's first run to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    pub batch_id: Uuid,
    pub index: u32,
}

impl ItemRef {
    pub fn run_id(&self) -> Uuid {
        run_id(self.batch_id, self.index)
    }
}

/// The content id of item `index` of `batch`: the same on every delivery.
pub fn content_id(batch: Uuid, index: u32) -> Uuid {
    derived_id(batch, index, "content")
}

/// The id of the first run of item `index` of `batch`.
pub fn run_id(batch: Uuid, index: u32) -> Uuid {
    derived_id(batch, index, "run")
}

/// The wait before a failed spawn is tried again: 1 s doubling to 60 s.
pub fn spawn_retry_delay_secs(failures: u32) -> u32 {
    1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX).min(60)
}

impl Batch {
    pub fn new(id: Uuid, submitter: Principal, ownership: Ownership, total: u32, max_in_flight: u32, now: Millis) -> Self {
        let items = (0..total)
            .map(|index| BatchItem { index, status: ItemStatus::Queued, content_id: None, run_id: None, error: None, spawn_failures: 0 })
            .collect();
        Batch {
            id,
            submitter,
            ownership,
            max_in_flight: max_in_flight.max(1),
            max_in_flight_observed: 0,
            items,
            created_at: now,
            finished_at: None,
            progress_at: now,
            progress_settled: 0,
        }
    }

    /// Only the submitter (same kind, subject and tenant) or the operator.
    pub fn readable_by(&self, p: &Principal) -> bool {
        p.is_operator() || (p.kind == self.submitter.kind && p.subject == self.submitter.subject && p.tenant == self.submitter.tenant)
    }

    fn item_mut(&mut self, index: u32) -> Result<&mut BatchItem, BatchError> {
        let total = self.items.len() as u32;
        self.items.get_mut(index as usize).ok_or(BatchError::NoSuchItem { index, total })
    }

    pub fn in_flight(&self) -> u32 {
        self.items.iter().filter(|i| i.status.in_flight()).count() as u32
    }

    pub fn counts(&self) -> BatchCounts {
        let count = |f: fn(&BatchItem) -> bool| self.items.iter().filter(|i| f(i)).count() as u32;
        BatchCounts {
            total: self.items.len() as u32,
            spawned: count(|i| i.content_id.is_some()),
            completed: count(|i| i.status == ItemStatus::Completed),
            failed: count(|i| i.status == ItemStatus::Failed),
            in_flight: self.in_flight(),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.items.iter().all(|i| i.status.is_terminal())
    }

    /// A queue message for item `index` arrived: spawn it, make it wait for
    /// room under the cap, or acknowledge it. A message for an item already
    /// being spawned (a redelivery after a crash) spawns it again with the
    /// same ids, without counting it twice.
    pub fn claim(&mut self, index: u32) -> Result<Claim, BatchError> {
        let (cap, in_flight, id) = (self.max_in_flight, self.in_flight(), self.id);
        let item = self.item_mut(index)?;
        match item.status {
            ItemStatus::Running | ItemStatus::Completed | ItemStatus::Failed => Ok(Claim::Done),
            ItemStatus::Spawning => Ok(Claim::Spawn { content_id: content_id(id, index), run_id: run_id(id, index) }),
            // Its slot was kept for it when it was released.
            ItemStatus::Requeued => {
                item.status = ItemStatus::Spawning;
                self.max_in_flight_observed = self.max_in_flight_observed.max(in_flight);
                Ok(Claim::Spawn { content_id: content_id(id, index), run_id: run_id(id, index) })
            }
            ItemStatus::Queued | ItemStatus::Deferred if in_flight >= cap => {
                item.status = ItemStatus::Deferred;
                Ok(Claim::Defer)
            }
            ItemStatus::Queued | ItemStatus::Deferred => {
                item.status = ItemStatus::Spawning;
                self.max_in_flight_observed = self.max_in_flight_observed.max(in_flight + 1);
                Ok(Claim::Spawn { content_id: content_id(id, index), run_id: run_id(id, index) })
            }
        }
    }

    pub fn has_deferred(&self) -> bool {
        self.items.iter().any(|i| i.status == ItemStatus::Deferred)
    }

    /// Whether deferred items wait while there is room for some of them.
    pub fn release_due(&self) -> bool {
        self.in_flight() < self.max_in_flight && self.has_deferred()
    }

    /// The deferred items there is room for now, lowest index first, each
    /// holding a slot: the caller puts them back on the queue (and
    /// [`Batch::defer_again`] them if it cannot).
    pub fn release(&mut self) -> Vec<u32> {
        let room = self.max_in_flight.saturating_sub(self.in_flight()) as usize;
        let mut released = Vec::new();
        for item in self.items.iter_mut().filter(|i| i.status == ItemStatus::Deferred).take(room) {
            item.status = ItemStatus::Requeued;
            released.push(item.index);
        }
        released
    }

    /// Released items that could not be put back on the queue wait again.
    pub fn defer_again(&mut self, indexes: &[u32]) {
        for &i in indexes {
            if let Some(item) = self.items.get_mut(i as usize).filter(|it| it.status == ItemStatus::Requeued) {
                item.status = ItemStatus::Deferred;
            }
        }
    }

    /// The item's content actor accepted it: its run is going.
    pub fn spawned(&mut self, index: u32) -> Result<(), BatchError> {
        let id = self.id;
        let item = self.item_mut(index)?;
        item.content_id = Some(content_id(id, index));
        item.run_id = Some(run_id(id, index));
        if !item.status.is_terminal() {
            item.status = ItemStatus::Running;
            item.error = None;
        }
        Ok(())
    }

    /// A spawn failed; the item waits for the message's retry. Returns the
    /// retry's delay in seconds.
    pub fn spawn_failed(&mut self, index: u32, error: &str) -> Result<u32, BatchError> {
        let item = self.item_mut(index)?;
        if matches!(item.status, ItemStatus::Spawning | ItemStatus::Requeued) {
            item.status = ItemStatus::Queued;
        }
        item.spawn_failures += 1;
        item.error = Some(error.to_string());
        Ok(spawn_retry_delay_secs(item.spawn_failures))
    }

    /// The item's run ended (reported by its content actor, possibly before
    /// the consumer's own `spawned` report arrived).
    pub fn ended(&mut self, index: u32, completed: bool, reason: Option<String>, now: Millis) -> Result<Vec<EventDraft>, BatchError> {
        let id = self.id;
        let item = self.item_mut(index)?;
        if item.status.is_terminal() {
            return Ok(Vec::new());
        }
        item.content_id = Some(content_id(id, index));
        item.run_id = Some(run_id(id, index));
        if completed {
            item.status = ItemStatus::Completed;
            item.error = None;
        } else {
            item.status = ItemStatus::Failed;
            item.error = Some(reason.unwrap_or_else(|| "run failed".into()));
        }
        Ok(self.progress(now))
    }

    /// The item's message exhausted its retries and came off the dead-letter
    /// queue: it fails with the last spawn error. An item whose run did start
    /// (a late report) keeps its state.
    pub fn dead_lettered(&mut self, index: u32, now: Millis) -> Result<Vec<EventDraft>, BatchError> {
        let item = self.item_mut(index)?;
        if !matches!(item.status, ItemStatus::Queued | ItemStatus::Spawning | ItemStatus::Deferred | ItemStatus::Requeued) {
            return Ok(Vec::new());
        }
        let last = item.error.take().unwrap_or_else(|| "no error recorded".into());
        item.error = Some(format!("dead-lettered after {} failed spawn attempts: {last}", item.spawn_failures));
        item.status = ItemStatus::Failed;
        Ok(self.progress(now))
    }

    /// Coalesced progress: a `batch.progress` when [`PROGRESS_EVERY_MS`]
    /// passed or [`PROGRESS_EVERY_ITEMS`] settled since the last one, and
    /// `batch.completed` once every item is terminal.
    fn progress(&mut self, now: Millis) -> Vec<EventDraft> {
        let counts = self.counts();
        let settled = counts.completed + counts.failed;
        if self.is_finished() {
            if self.finished_at.is_some() {
                return Vec::new();
            }
            self.finished_at = Some(now);
            self.progress_at = now;
            self.progress_settled = settled;
            return vec![EventDraft::new(EventName::BatchCompleted, json!({ "batch_id": self.id, "counts": counts }))];
        }
        if now - self.progress_at < PROGRESS_EVERY_MS && settled < self.progress_settled + PROGRESS_EVERY_ITEMS {
            return Vec::new();
        }
        self.progress_at = now;
        self.progress_settled = settled;
        vec![EventDraft::new(EventName::BatchProgress, json!({ "batch_id": self.id, "counts": counts }))]
    }

    pub fn view(&self) -> BatchView {
        BatchView {
            id: self.id,
            status: if self.is_finished() { "completed" } else { "running" },
            counts: self.counts(),
            max_in_flight: self.max_in_flight,
            max_in_flight_observed: self.max_in_flight_observed,
            items: self.items.clone(),
            created_at: super::time::rfc3339(self.created_at),
            finished_at: self.finished_at.map(super::time::rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::Visibility;

    fn submitter() -> Principal {
        let mut p = Principal::operator();
        p.kind = crate::domain::principal::PrincipalKind::ApiKey;
        p.tenant = Some("acme".into());
        p.subject = "key-1".into();
        p
    }

    fn batch(total: u32, cap: u32) -> Batch {
        let own = Ownership { tenant: "acme".into(), owner: "key-1".into(), visibility: Visibility::Tenant };
        Batch::new(Uuid::new_v4(), submitter(), own, total, cap, 0)
    }

    #[test]
    fn ids_are_stable_per_item_and_distinct_across_items() {
        let b = Uuid::new_v4();
        assert_eq!(content_id(b, 3), content_id(b, 3));
        assert_ne!(content_id(b, 3), content_id(b, 4));
        assert_ne!(content_id(b, 3), run_id(b, 3));
        assert_ne!(content_id(b, 3), content_id(Uuid::new_v4(), 3));
        assert_eq!(content_id(b, 3).get_version_num(), 4);
    }

    #[test]
    fn the_cap_holds_and_frees_as_runs_end() {
        let mut b = batch(10, 3);
        for i in 0..3 {
            assert!(matches!(b.claim(i).unwrap(), Claim::Spawn { .. }));
        }
        assert_eq!(b.claim(3).unwrap(), Claim::Defer);
        assert_eq!(b.claim(4).unwrap(), Claim::Defer);
        b.spawned(0).unwrap();
        assert!(!b.release_due(), "a running item still counts");
        assert!(b.release().is_empty());
        b.ended(0, true, None, 10).unwrap();
        assert!(b.release_due());
        assert_eq!(b.release(), [3], "one slot, the lowest deferred index");
        assert!(!b.release_due(), "the released item holds the slot");
        assert_eq!(b.claim(5).unwrap(), Claim::Defer, "a newcomer does not take it");
        assert!(matches!(b.claim(3).unwrap(), Claim::Spawn { .. }));
        assert_eq!(b.max_in_flight_observed, 3);
        assert_eq!(b.in_flight(), 3);
        b.ended(1, true, None, 10).unwrap();
        let released = b.release();
        assert_eq!(released, [4]);
        b.defer_again(&released);
        assert_eq!(b.items[4].status, ItemStatus::Deferred, "a release that could not be sent waits again");
        assert!(b.release_due());
    }

    #[test]
    fn redelivery_spawns_the_same_item_once() {
        let mut b = batch(2, 1);
        let first = b.claim(0).unwrap();
        assert_eq!(b.claim(0).unwrap(), first, "a crash mid-spawn: same ids again");
        assert_eq!(b.in_flight(), 1);
        b.spawned(0).unwrap();
        assert_eq!(b.claim(0).unwrap(), Claim::Done);
        b.spawned(0).unwrap();
        assert_eq!(b.counts().spawned, 1);
    }

    #[test]
    fn failed_spawns_back_off_and_dead_letters_fail_with_the_reason() {
        let mut b = batch(1, 4);
        b.claim(0).unwrap();
        assert_eq!(b.spawn_failed(0, "actor down").unwrap(), 1);
        assert_eq!(b.in_flight(), 0, "a failed spawn frees its slot");
        b.claim(0).unwrap();
        assert_eq!(b.spawn_failed(0, "actor down").unwrap(), 2);
        let events = b.dead_lettered(0, 5).unwrap();
        assert_eq!(b.items[0].status, ItemStatus::Failed);
        assert_eq!(b.items[0].error.as_deref(), Some("dead-lettered after 2 failed spawn attempts: actor down"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, EventName::BatchCompleted);
        assert!(b.dead_lettered(0, 6).unwrap().is_empty(), "once");
        assert_eq!((1..=9).map(spawn_retry_delay_secs).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(spawn_retry_delay_secs(200), 60);
    }

    #[test]
    fn a_late_dead_letter_does_not_fail_a_started_item() {
        let mut b = batch(1, 4);
        b.claim(0).unwrap();
        b.spawned(0).unwrap();
        assert!(b.dead_lettered(0, 1).unwrap().is_empty());
        assert_eq!(b.items[0].status, ItemStatus::Running);
    }

    #[test]
    fn progress_is_coalesced_and_completion_is_said_once() {
        let mut b = batch(200, 200);
        let mut events = Vec::new();
        for i in 0..200 {
            b.claim(i).unwrap();
            b.spawned(i).unwrap();
            // 200 ends within 100 ms: only the item-count rule lets progress out.
            events.extend(b.ended(i, i % 10 != 0, Some("boom".into()), (i / 2) as Millis).unwrap());
        }
        let progress = events.iter().filter(|e| e.event == EventName::BatchProgress).count();
        let completed = events.iter().filter(|e| e.event == EventName::BatchCompleted).count();
        assert_eq!((progress, completed), (3, 1));
        let c = b.counts();
        assert_eq!((c.total, c.spawned, c.completed, c.failed, c.in_flight), (200, 200, 180, 20, 0));
        assert!(b.ended(0, true, None, 1_000).unwrap().is_empty(), "a terminal item stays");
        assert_eq!(b.view().status, "completed");
        let later = b.clone();
        let mut slow = batch(3, 3);
        for i in 0..3 {
            slow.claim(i).unwrap();
        }
        assert!(slow.ended(0, true, None, 100).unwrap().is_empty());
        assert_eq!(slow.ended(1, true, None, 400).unwrap()[0].event, EventName::BatchProgress, "250 ms passed");
        assert_eq!(later.counts().failed, 20);
    }

    #[test]
    fn a_batch_is_validated_whole_and_names_refused_items() {
        let l = Limits::default();
        let good = json!({ "title": "t", "body": "b", "visibility": "public" });
        let ok = validate_items(vec![good.clone(), good.clone()], &l).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].1, Some(Visibility::Public));
        let e = validate_items(vec![good.clone(), json!({ "title": "", "body": "b" }), json!({ "body": "b" })], &l).unwrap_err();
        assert_eq!(e.status(), 422);
        let text = e.to_string();
        assert!(text.starts_with("items: 2 of 3 items refused"), "{text}");
        assert!(text.contains("items[1].title: must be 1 to 300 characters"), "{text}");
        assert!(text.contains("items[2]"), "{text}");
        assert!(!text.contains("items[0]"), "{text}");
        assert_eq!(validate_items(vec![], &l).unwrap_err().status(), 422);
        assert_eq!(validate_items(vec![good; MAX_ITEMS + 1], &l).unwrap_err().status(), 422);
        let many = validate_items(vec![json!(1); 50], &l).unwrap_err().to_string();
        assert_eq!(many.matches("items[").count(), REFUSALS_NAMED, "{many}");
    }

    #[test]
    fn only_the_submitter_or_the_operator_reads_it() {
        let b = batch(1, 1);
        assert!(b.readable_by(&submitter()));
        assert!(b.readable_by(&Principal::operator()));
        let mut other = submitter();
        other.tenant = Some("other".into());
        assert!(!b.readable_by(&other));
        assert!(!b.readable_by(&Principal::anonymous()));
        let mut b = batch(2, 1);
        assert_eq!(b.claim(7), Err(BatchError::NoSuchItem { index: 7, total: 2 }));
        assert!(b.spawned(9).is_err());
    }
}
