//! A bulk import (`POST /api/content/batch`): the state of each item from
//! "queued" to a terminal state, and the in-flight cap its spawns obey. Pure:
//! the `BatchActor` persists it, the queue consumer hands it each delivered
//! item ([`Batch::delivered`]), its alarm spawns them ([`Batch::release`]),
//! and content actors report their runs' ends to it ([`Batch::ended`]).
//!
//! Backpressure: a delivery only records its items as waiting, so a queue
//! delivery never waits on a content actor; the batch's alarm spawns waiting
//! items as slots free up, at most `max_in_flight` at a time. A failed spawn
//! waits again with backoff; after [`MAX_SPAWN_ATTEMPTS`] the item goes to
//! the dead-letter queue, whose consumer fails it ([`Batch::dead_lettered`]).
//!
//! An item's content id and run id are derived from (batch id, index), so a
//! spawn tried twice (an alarm retried after a crash) creates the same item,
//! which the content actor answers idempotently: never a second item.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::content::ContentDoc;
use super::principal::{Ownership, Principal, Visibility};
use super::retry::RetryPolicy;
use crate::config::Limits;
use super::FieldError;
use crate::protocol::ContentInput;
use super::time::Millis;
use crate::protocol::{BatchCompleted, BatchProgress, EventDraft};

/// Most items one batch takes.
pub const MAX_ITEMS: usize = 1000;

/// At most one `batch.progress` event per this interval…
pub const PROGRESS_EVERY_MS: Millis = 250;
/// …unless this many items reached a terminal state since the last one.
pub const PROGRESS_EVERY_ITEMS: u32 = 50;

/// Spawn attempts before an item goes to the dead-letter queue (the same
/// count as the `INGEST` consumer's `max_retries` + 1 in wrangler.toml).
pub const MAX_SPAWN_ATTEMPTS: u32 = 5;
/// How long an item may wait for the `INGEST` queue to hand it over before
/// the batch takes it itself: well past the queue's retries and its
/// dead-letter queue's (seconds apart), with room for a backlog. A late
/// hand-over of an item taken changes nothing.
pub const HANDOVER_GRACE_MS: Millis = 10 * 60_000;


#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// On the queue (or, after its last failed spawn, on the dead-letter queue).
    Queued,
    /// Delivered: waits in the batch for a slot under the cap, or for its
    /// retry time after a failed spawn ([`Batch::release`]).
    Deferred,
    /// The batch's alarm is creating its content item and run.
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
        matches!(self, ItemStatus::Spawning | ItemStatus::Running)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
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
    /// After a failed spawn: not tried again before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
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

/// What became of a failed spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnRetry {
    /// Tried again by the alarm after this many seconds.
    After(u32),
    /// Out of attempts: the caller puts it on the dead-letter queue.
    DeadLetter,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCounts {
    pub total: u32,
    pub spawned: u32,
    pub completed: u32,
    pub failed: u32,
    pub in_flight: u32,
}

/// A batch is running until every item is terminal.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Running,
    Completed,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    pub id: Uuid,
    pub status: BatchStatus,
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
pub fn validate_items(items: Vec<Box<RawValue>>, limits: &Limits) -> Result<Vec<(ContentDoc, Option<Visibility>)>, FieldError> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(FieldError::new("items", format!("must hold 1 to {MAX_ITEMS} items, not {}", items.len())));
    }
    let total = items.len();
    let mut accepted = Vec::with_capacity(total);
    let mut refused: Vec<String> = Vec::new();
    let mut refused_count = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        let checked = match serde_json::from_str::<ContentInput>(item.get()) {
            Err(e) => Err(format!("items[{i}]: malformed JSON: {e}")),
            Ok(input) => {
                let visibility = input.visibility;
                ContentDoc::validate(input, limits).map(|doc| (doc, visibility)).map_err(|e| format!("items[{i}].{e}"))
            }
        };
        match checked {
            Ok(ok) => accepted.push(ok),
            Err(why) => {
                refused_count += 1;
                if refused.len() < REFUSALS_NAMED {
                    refused.push(why);
                }
            }
        }
    }
    if refused_count > 0 {
        return Err(FieldError::new("items", format!("{refused_count} of {total} items refused, none accepted: {}", refused.join("; "))));
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

/// The wait before a failed spawn is tried again: 1 s doubling to 60 s
/// (the attempt limit is `MAX_SPAWN_ATTEMPTS`, not the policy's).
const SPAWN_BACKOFF: RetryPolicy = RetryPolicy { max_attempts: u32::MAX, base_ms: 1_000, max_ms: 60_000, timeout_ms: 0, optional: false };

pub fn spawn_retry_delay_secs(failures: u32) -> u32 {
    (SPAWN_BACKOFF.cap_ms(failures) / 1_000) as u32
}

impl Batch {
    pub fn new(id: Uuid, submitter: Principal, ownership: Ownership, total: u32, max_in_flight: u32, now: Millis) -> Self {
        let items = (0..total)
            .map(|index| BatchItem {
                index,
                status: ItemStatus::Queued,
                content_id: None,
                run_id: None,
                error: None,
                spawn_failures: 0,
                retry_at: None,
            })
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
        p.is_or_operates(&self.submitter)
    }

    /// Whether the batch still needs item `index`'s document: only while the
    /// item may be spawned (again). Once it runs, its content actor holds
    /// the document; once it has ended (even if its spawn's reply was lost),
    /// or failed for good, nothing is kept of it.
    pub fn needs_doc(&self, index: u32) -> bool {
        self.items
            .get(index as usize)
            .is_some_and(|i| matches!(i.status, ItemStatus::Queued | ItemStatus::Deferred | ItemStatus::Spawning))
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

    /// Item `index` came off the queue: it waits for a slot. Answers whether
    /// it was news (a redelivered or settled item changes nothing).
    pub fn delivered(&mut self, index: u32) -> Result<bool, BatchError> {
        let item = self.item_mut(index)?;
        if item.status != ItemStatus::Queued {
            return Ok(false);
        }
        item.status = ItemStatus::Deferred;
        Ok(true)
    }

    fn room(&self) -> usize {
        self.max_in_flight.saturating_sub(self.in_flight()) as usize
    }

    /// When the alarm has spawns to do: with a slot free, now or at the
    /// earliest retry time of a waiting item; `None` when nothing can be
    /// spawned. (An item a crashed alarm left in `Spawning` is picked up by
    /// the alarm's own retry.)
    pub fn next_release_at(&self, now: Millis) -> Option<Millis> {
        if self.room() == 0 {
            return None;
        }
        self.items.iter().filter(|i| i.status == ItemStatus::Deferred).map(|i| i.retry_at.unwrap_or(now).max(now)).min()
    }

    /// When the items the queue has not handed over yet are taken anyway
    /// ([`HANDOVER_GRACE_MS`] after the batch began), if any are left.
    fn handover_deadline(&self) -> Option<Millis> {
        self.items.iter().any(|i| i.status == ItemStatus::Queued && i.spawn_failures == 0).then_some(self.created_at + HANDOVER_GRACE_MS)
    }

    /// When the alarm should next fire: a release ([`Self::next_release_at`])
    /// or the hand-over deadline, whichever comes first.
    pub fn next_wake_at(&self, now: Millis) -> Option<Millis> {
        [self.next_release_at(now), self.handover_deadline().map(|t| t.max(now))].into_iter().flatten().min()
    }

    /// The items to spawn now, lowest index first: those a crashed alarm
    /// left in `Spawning` (they hold their slots), then waiting items that
    /// are due, as many as there are free slots. Each holds a slot until it
    /// is [`Batch::spawned`] (then until its run ends) or its spawn failed.
    pub fn release(&mut self, now: Millis) -> Vec<u32> {
        if self.handover_deadline().is_some_and(|t| t <= now) {
            // Lost on the way (the queue and its dead-letter queue gave up
            // while this batch was unreachable): the batch holds every
            // item's document, so it takes them itself.
            for item in self.items.iter_mut().filter(|i| i.status == ItemStatus::Queued && i.spawn_failures == 0) {
                item.status = ItemStatus::Deferred;
            }
        }
        let mut released: Vec<u32> = self.items.iter().filter(|i| i.status == ItemStatus::Spawning).map(|i| i.index).collect();
        let room = self.room();
        for item in self
            .items
            .iter_mut()
            .filter(|i| i.status == ItemStatus::Deferred && i.retry_at.is_none_or(|t| t <= now))
            .take(room)
        {
            item.status = ItemStatus::Spawning;
            released.push(item.index);
        }
        self.max_in_flight_observed = self.max_in_flight_observed.max(self.in_flight());
        released
    }

    /// The ids item `index` is created with.
    pub fn ids(&self, index: u32) -> (Uuid, Uuid) {
        (content_id(self.id, index), run_id(self.id, index))
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

    /// Whether a failure of item `index`'s spawn now would be its last: the
    /// caller then asks the item's actor whether a try was made after all
    /// (its reply lost), before the item fails.
    pub fn is_last_spawn_attempt(&self, index: u32) -> bool {
        self.items.get(index as usize).is_some_and(|i| i.status == ItemStatus::Spawning && i.spawn_failures + 1 >= MAX_SPAWN_ATTEMPTS)
    }

    /// A spawn failed: the item frees its slot and waits for a retry with
    /// backoff, or, out of attempts, goes to the dead-letter queue.
    pub fn spawn_failed(&mut self, index: u32, error: &str, now: Millis) -> Result<SpawnRetry, BatchError> {
        let item = self.item_mut(index)?;
        if item.status != ItemStatus::Spawning {
            // Settled meanwhile (its run's end was reported): nothing to retry.
            return Ok(SpawnRetry::After(0));
        }
        item.spawn_failures += 1;
        item.error = Some(error.to_string());
        if item.spawn_failures >= MAX_SPAWN_ATTEMPTS {
            item.status = ItemStatus::Queued;
            item.retry_at = None;
            return Ok(SpawnRetry::DeadLetter);
        }
        let delay = spawn_retry_delay_secs(item.spawn_failures);
        item.status = ItemStatus::Deferred;
        item.retry_at = Some(now + Millis::from(delay) * 1000);
        Ok(SpawnRetry::After(delay))
    }

    /// The item's content actor refused it for good (an item too large once
    /// stored): trying again would be refused the same way, so the item
    /// fails now with the reason, neither retried nor dead-lettered.
    pub fn spawn_refused(&mut self, index: u32, error: &str, now: Millis) -> Result<Vec<EventDraft>, BatchError> {
        let item = self.item_mut(index)?;
        if item.status != ItemStatus::Spawning {
            return Ok(Vec::new());
        }
        item.spawn_failures += 1;
        item.error = Some(format!("refused: {error}"));
        item.status = ItemStatus::Failed;
        item.retry_at = None;
        Ok(self.progress(now))
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
    /// queue: an item this batch parked there ([`SpawnRetry::DeadLetter`])
    /// fails with the last spawn error. An item never tried (its message's
    /// hand-over to this batch failed, not a spawn) is delivered now instead:
    /// this call reached the batch, so the batch can try it. Any other item
    /// is in the batch's hands (waiting for a slot, spawning, running or
    /// ended: the queue gave up on a hand-over the batch had taken) and
    /// keeps its state.
    pub fn dead_lettered(&mut self, index: u32, now: Millis) -> Result<Vec<EventDraft>, BatchError> {
        let item = self.item_mut(index)?;
        if item.status != ItemStatus::Queued {
            return Ok(Vec::new());
        }
        if item.spawn_failures == 0 {
            self.delivered(index)?;
            return Ok(Vec::new());
        }
        let last = item.error.take().unwrap_or_else(|| "no error recorded".into());
        item.error = Some(format!("dead-lettered after {} failed spawn attempts: {last}", item.spawn_failures));
        item.status = ItemStatus::Failed;
        item.retry_at = None;
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
            return vec![EventDraft::of(BatchCompleted(BatchProgress { batch_id: self.id, counts }))];
        }
        if now - self.progress_at < PROGRESS_EVERY_MS && settled < self.progress_settled + PROGRESS_EVERY_ITEMS {
            return Vec::new();
        }
        self.progress_at = now;
        self.progress_settled = settled;
        vec![EventDraft::of(BatchProgress { batch_id: self.id, counts })]
    }

    pub fn view(&self) -> BatchView {
        BatchView {
            id: self.id,
            status: if self.is_finished() { BatchStatus::Completed } else { BatchStatus::Running },
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
    use crate::protocol::EventName;
    use serde_json::json;
    use crate::domain::principal::Visibility;

    fn submitter() -> Principal {
        let mut p = Principal::operator();
        p.kind = crate::domain::principal::PrincipalKind::ApiKey;
        p.tenant = Some("acme".into());
        p.subject = "key-1".into();
        p
    }

    fn batch(total: u32, cap: u32) -> Batch {
        let own = Ownership { tenant: "acme".into(), owner: "key-1".into(), visibility: Visibility::Tenant, owner_kind: None };
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

    /// Delivers and releases items `0..n` (each taking a slot while there is one).
    fn spawning(b: &mut Batch, n: u32) -> Vec<u32> {
        for i in 0..n {
            b.delivered(i).unwrap();
        }
        b.release(0)
    }

    /// The batch drops an item's document once the item runs or has ended:
    /// its run reported (even if its spawn's reply was lost, so it never
    /// counted as spawned), or it failed for good. A dead letter for an item
    /// never tried is a delivery: it still needs its document.
    #[test]
    fn an_items_document_is_needed_only_while_it_may_be_spawned() {
        let mut b = batch(4, 3);
        assert_eq!(spawning(&mut b, 3), [0, 1, 2]);
        assert!(b.needs_doc(1), "being spawned");
        b.spawned(1).unwrap();
        assert!(!b.needs_doc(1), "running: its content actor holds it");
        b.spawn_failed(0, "reply lost", 1).unwrap();
        assert!(b.needs_doc(0), "a failed spawn is tried again");
        b.ended(0, true, None, 2).unwrap();
        assert!(!b.needs_doc(0), "its run reported: the item holds its document");
        b.dead_lettered(3, 3).unwrap();
        assert!(b.needs_doc(3), "never tried: a dead letter for it is a delivery");
        assert!(!b.needs_doc(9), "no such item");
    }

    #[test]
    fn the_cap_holds_and_frees_as_runs_end() {
        let mut b = batch(10, 3);
        assert_eq!(b.next_release_at(0), None, "nothing delivered yet");
        assert_eq!(spawning(&mut b, 5), [0, 1, 2], "three slots, lowest indexes first");
        assert_eq!(b.items[3].status, ItemStatus::Deferred);
        assert_eq!(b.next_release_at(7), None, "no room");
        assert_eq!(b.release(1), [0, 1, 2], "only the items being spawned, tried again");
        for i in 0..3 {
            b.spawned(i).unwrap();
        }
        assert!(b.release(1).is_empty(), "running items still count");
        b.ended(0, true, None, 10).unwrap();
        assert_eq!(b.next_release_at(10), Some(10));
        assert_eq!(b.release(10), [3], "one slot, the lowest waiting index");
        b.spawned(3).unwrap();
        b.delivered(5).unwrap();
        assert!(b.release(11).is_empty(), "a newcomer waits for a slot");
        assert_eq!((b.max_in_flight_observed, b.in_flight()), (3, 3));
        b.ended(1, true, None, 12).unwrap();
        assert_eq!(b.release(12), [4]);
        assert_eq!(b.max_in_flight_observed, 3);
    }

    #[test]
    fn an_item_is_delivered_and_spawned_once() {
        let mut b = batch(2, 1);
        assert!(b.delivered(0).unwrap());
        assert!(!b.delivered(0).unwrap(), "a redelivery changes nothing");
        assert_eq!(b.release(0), [0]);
        assert_eq!(b.release(1), [0], "an alarm that crashed mid-spawn tries the same item again");
        assert_eq!(b.in_flight(), 1);
        b.spawned(0).unwrap();
        assert!(!b.delivered(0).unwrap());
        b.spawned(0).unwrap();
        assert_eq!(b.counts().spawned, 1);
        assert_eq!(b.ids(0), (content_id(b.id, 0), run_id(b.id, 0)));
    }

    #[test]
    fn a_refused_spawn_fails_at_once_with_the_reason() {
        let mut b = batch(2, 2);
        spawning(&mut b, 2);
        let events = b.spawn_refused(0, "too large", 1_000).unwrap();
        assert_eq!((b.items[0].status, b.items[0].error.as_deref()), (ItemStatus::Failed, Some("refused: too large")));
        assert_eq!((b.items[0].content_id, b.next_release_at(1_000)), (None, None), "never created, never tried again");
        assert_eq!(b.in_flight(), 1, "its slot is free");
        assert!(events.iter().all(|e| e.event != EventName::BatchCompleted), "one item is still running");
        assert!(b.spawn_refused(0, "too large", 1_100).unwrap().is_empty(), "once");
        b.spawned(1).unwrap();
        let ended = b.ended(1, true, None, 2_000).unwrap();
        assert_eq!(ended.last().map(|e| e.event), Some(EventName::BatchCompleted));
        assert_eq!((b.counts().completed, b.counts().failed), (1, 1));
    }

    #[test]
    fn failed_spawns_back_off_then_dead_letter_and_fail_with_the_reason() {
        let mut b = batch(1, 4);
        spawning(&mut b, 1);
        assert_eq!(b.spawn_failed(0, "actor down", 1_000).unwrap(), SpawnRetry::After(1));
        assert_eq!(b.in_flight(), 0, "a failed spawn frees its slot");
        assert_eq!(b.next_release_at(1_500), Some(2_000));
        assert!(b.release(1_500).is_empty(), "not before its retry time");
        for (attempt, now) in [(2u32, 2_000), (3, 4_000), (4, 8_000)] {
            assert_eq!(b.release(now), [0]);
            assert_eq!(b.spawn_failed(0, "actor down", now).unwrap(), SpawnRetry::After(spawn_retry_delay_secs(attempt)));
        }
        assert_eq!(b.release(16_000), [0]);
        assert_eq!(b.spawn_failed(0, "actor down", 16_000).unwrap(), SpawnRetry::DeadLetter);
        assert_eq!((b.items[0].status, b.next_release_at(16_000)), (ItemStatus::Queued, None), "on the dead-letter queue");
        let events = b.dead_lettered(0, 17_000).unwrap();
        assert_eq!(b.items[0].status, ItemStatus::Failed);
        assert_eq!(b.items[0].error.as_deref(), Some("dead-lettered after 5 failed spawn attempts: actor down"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, EventName::BatchCompleted);
        assert!(b.dead_lettered(0, 18_000).unwrap().is_empty(), "once");
        assert_eq!((1..=9).map(spawn_retry_delay_secs).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(spawn_retry_delay_secs(200), 60);
    }

    #[test]
    fn an_item_dead_lettered_before_any_spawn_is_tried_not_failed() {
        let mut b = batch(2, 4);
        assert!(b.dead_lettered(1, 5).unwrap().is_empty());
        assert_eq!(b.items[1].status, ItemStatus::Deferred, "waits for a slot like a delivered item");
        assert_eq!(b.next_release_at(5), Some(5));
        assert_eq!(b.release(5), [1]);
    }

    #[test]
    fn a_dead_letter_of_a_hand_over_leaves_an_item_the_batch_holds() {
        let mut b = batch(3, 1);
        b.delivered(0).unwrap();
        b.delivered(1).unwrap();
        assert_eq!(b.release(0), [0]);
        // The queue gave up on both hand-overs after the batch had taken them.
        assert!(b.dead_lettered(1, 1).unwrap().is_empty());
        assert!(b.dead_lettered(0, 1).unwrap().is_empty());
        assert_eq!((b.items[0].status, b.items[1].status), (ItemStatus::Spawning, ItemStatus::Deferred));
        assert_eq!(b.in_flight(), 1, "the spawning item keeps its slot");
        b.spawned(0).unwrap();
        assert_eq!(b.items[0].status, ItemStatus::Running);
    }

    #[test]
    fn items_the_queue_never_hands_over_are_taken_at_the_deadline() {
        let mut b = batch(3, 2);
        b.delivered(1).unwrap();
        assert_eq!(b.next_wake_at(0), Some(0), "a delivered item is due now");
        assert_eq!(b.release(0), [1]);
        b.spawned(1).unwrap();
        assert_eq!(b.next_wake_at(5), Some(HANDOVER_GRACE_MS), "the others wait for the queue until the deadline");
        assert!(b.release(HANDOVER_GRACE_MS - 1).is_empty());
        assert_eq!(b.release(HANDOVER_GRACE_MS), [0], "one slot is free");
        assert_eq!(b.items[2].status, ItemStatus::Deferred, "taken, waiting for a slot");
        b.spawned(0).unwrap();
        assert_eq!(b.next_wake_at(HANDOVER_GRACE_MS), None, "no slot, and nothing left to take");
        b.delivered(2).unwrap();
        assert_eq!(b.items[2].status, ItemStatus::Deferred, "a late hand-over changes nothing");
    }

    #[test]
    fn a_late_dead_letter_does_not_fail_a_started_item() {
        let mut b = batch(1, 4);
        spawning(&mut b, 1);
        b.spawned(0).unwrap();
        assert!(b.dead_lettered(0, 1).unwrap().is_empty());
        assert_eq!(b.items[0].status, ItemStatus::Running);
    }

    #[test]
    fn progress_is_coalesced_and_completion_is_said_once() {
        let mut b = batch(200, 200);
        let mut events = Vec::new();
        spawning(&mut b, 200);
        for i in 0..200 {
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
        assert_eq!(b.view().status, BatchStatus::Completed);
        let later = b.clone();
        let mut slow = batch(3, 3);
        spawning(&mut slow, 3);
        assert!(slow.ended(0, true, None, 100).unwrap().is_empty());
        assert_eq!(slow.ended(1, true, None, 400).unwrap()[0].event, EventName::BatchProgress, "250 ms passed");
        assert_eq!(later.counts().failed, 20);
    }

    /// The items as the body's parser leaves them: each one's JSON text.
    fn raw(items: &[serde_json::Value]) -> Vec<Box<RawValue>> {
        items.iter().map(|v| serde_json::value::to_raw_value(v).unwrap()).collect()
    }

    #[test]
    fn a_batch_is_validated_whole_and_names_refused_items() {
        let l = Limits::default();
        let good = json!({ "title": "t", "body": "b", "visibility": "public" });
        let ok = validate_items(raw(&[good.clone(), good.clone()]), &l).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].1, Some(Visibility::Public));
        let e = validate_items(raw(&[good.clone(), json!({ "title": "", "body": "b" }), json!({ "body": "b" })]), &l).unwrap_err();
        assert_eq!(e.field, "items");
        let text = e.to_string();
        assert!(text.starts_with("items: 2 of 3 items refused"), "{text}");
        assert!(text.contains("items[1].title: must be 1 to 300 characters"), "{text}");
        assert!(text.contains("items[2]"), "{text}");
        assert!(!text.contains("items[0]"), "{text}");
        assert_eq!(validate_items(vec![], &l).unwrap_err().field, "items");
        assert_eq!(validate_items(raw(&vec![good; MAX_ITEMS + 1]), &l).unwrap_err().field, "items");
        let many = validate_items(raw(&vec![json!(1); 50]), &l).unwrap_err().to_string();
        assert_eq!(many.matches("items[").count(), REFUSALS_NAMED, "{many}");
    }

    /// The body's parser stops at the first item past the cap, so a body of
    /// millions of tiny items is never held as millions of values; an item
    /// that is itself a huge array fails as an item, at its first element.
    #[test]
    fn a_body_of_too_many_items_is_refused_while_it_is_read() {
        use crate::protocol::BatchInput;
        let body = format!("{{\"items\":[{}0]}}", "0,".repeat(2_000_000));
        let e = serde_json::from_str::<BatchInput>(&body).unwrap_err();
        // A data error: the Worker answers it 422, as it does a bad item.
        assert_eq!(e.classify(), serde_json::error::Category::Data);
        assert!(e.to_string().contains("not more"), "{e}");
        let one = format!("{{\"items\":[[{}0]]}}", "0,".repeat(2_000_000));
        let items = serde_json::from_str::<BatchInput>(&one).unwrap().items;
        assert_eq!(validate_items(items, &Limits::default()).unwrap_err().field, "items");
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
        assert_eq!(b.delivered(7), Err(BatchError::NoSuchItem { index: 7, total: 2 }));
        assert!(b.spawned(9).is_err());
    }
}
