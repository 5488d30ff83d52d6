//! `PipelineRun`: the stage journal of one run and every transition it may take.
//!
//! The actor asks an [`Activation`] which stage to run next, runs the ready
//! stages of one alarm (or of the start request) back to back within a wall
//! time budget, and reports each [`StageOutcome`]. Every transition returns
//! the events it caused, so state and event log are written together, stage
//! by stage. A stage left `running` by a crash is simply started again:
//! attempts are counted before the work, so the journal shows the interrupted
//! attempt too.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::principal::{Ownership, Principal, Visibility};
use super::retry::{decide, RetryDecision, RetryPolicy, RetryTuning};
use super::time::{fnv1a, rfc3339, Millis};
use crate::protocol::{
    AttemptView, ErrorClass, EventDraft, RunCancelled, RunCompleted, RunFailed, RunQueued, RunRef, RunStatus,
    RunView, Stage, StageCompleted, StageErrorView, StageFailed, StageRetrying, StageSkipped, StageStarted, StageStatus,
    StageView,
};

/// Why a stage attempt failed, and how the retry engine should treat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub class: ErrorClass,
    pub message: String,
}

impl StageError {
    pub fn transient(message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Transient, message: message.into() }
    }
    pub fn terminal(message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Terminal, message: message.into() }
    }
    pub fn rate_limited(retry_after_ms: u64, message: impl Into<String>) -> Self {
        StageError { class: ErrorClass::RateLimited { retry_after_ms }, message: message.into() }
    }
}

pub type StageOutcome = Result<(), StageError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub outcome: String,
    pub error: Option<String>,
    pub backoff_ms: Option<u64>,
    pub backoff_cap_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub status: StageStatus,
    pub attempts: u32,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub next_at: Option<Millis>,
    pub error: Option<StageError>,
    pub reason: Option<String>,
    pub history: Vec<Attempt>,
}

impl StageRecord {
    fn new(stage: Stage) -> Self {
        StageRecord {
            stage,
            status: StageStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            next_at: None,
            error: None,
            reason: None,
            history: Vec::new(),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.status, StageStatus::Completed | StageStatus::Skipped)
    }

    /// Whether the stage has ever started in this run: its work may have
    /// written somewhere. A retry starts the count of attempts over, not
    /// the journal.
    pub fn was_tried(&self) -> bool {
        self.attempts > 0 || !self.history.is_empty()
    }
}

/// What the actor should do at this wake.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Execute(Stage),
    WaitUntil(Millis),
    Idle,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    #[error("run is {0:?}, which does not allow this")]
    InvalidState(RunStatus),
    #[error("stage {0} is not the one in progress")]
    WrongStage(Stage),
    #[error("run was purged with its deleted content")]
    Purged,
    #[error("run was superseded by a newer version of its item, whose own run does its work")]
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    pub id: Uuid,
    pub content_id: Uuid,
    pub version: u32,
    pub status: RunStatus,
    pub stages: Vec<StageRecord>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub reason: Option<String>,
    pub tuning: RetryTuning,
    /// Its item was deleted and its copies erased: it can never run again.
    #[serde(default)]
    pub purged: bool,
    /// A newer version of its item replaced its version: a retry could only
    /// run stages again to be refused at the index, so none is allowed.
    #[serde(default)]
    pub superseded: bool,
    /// Activations (alarms or the start request) that ran at least one stage:
    /// with several stages per activation this stays below the stage count.
    #[serde(default)]
    pub activations: u32,
    /// Its item's tenant and owner, kept as if the item were private (its
    /// visibility may change after the run started; those two never do).
    /// Whoever may read a private item may follow the run without asking the
    /// item; `None` (runs started before this was kept) always asks.
    #[serde(default)]
    pub owner: Option<Ownership>,
}

impl PipelineRun {
    /// Records whose item this run serves (see [`PipelineRun::owner`]).
    pub fn owned_by(mut self, item: &Ownership) -> Self {
        self.owner = Some(Ownership { visibility: Visibility::Private, ..item.clone() });
        self
    }

    /// Whether `principal` may follow this run on what the run itself knows:
    /// `false` means "ask the item", never "refuse". A purged run's item is
    /// gone, and the item's actor says so (404) to everyone.
    pub fn followable_by(&self, principal: &Principal) -> bool {
        !self.purged && self.owner.as_ref().is_some_and(|o| principal.can_read(o))
    }

    pub fn new(id: Uuid, content_id: Uuid, version: u32, tuning: RetryTuning, now: Millis) -> (Self, Vec<EventDraft>) {
        let run = PipelineRun {
            id,
            content_id,
            version,
            status: RunStatus::Queued,
            stages: Stage::ALL.into_iter().map(StageRecord::new).collect(),
            created_at: now,
            finished_at: None,
            reason: None,
            tuning,
            purged: false,
            superseded: false,
            activations: 0,
            owner: None,
        };
        let ev = EventDraft::of(RunQueued { run: run.run_ref(), version, retry: false });
        (run, vec![ev])
    }

    fn run_ref(&self) -> RunRef {
        RunRef { run_id: self.id, content_id: self.content_id }
    }

    pub fn policy(&self, stage: Stage) -> RetryPolicy {
        RetryPolicy::for_stage(stage, self.tuning)
    }

    /// A stored run with one record per stage of this build, in order. A run
    /// saved by a build with fewer stages gets the new ones, skipped if it has
    /// ended, pending if not (it runs them); [`Self::record`] indexes by stage.
    pub fn with_every_stage(mut self) -> Self {
        let in_order = self.stages.len() == Stage::ALL.len() && self.stages.iter().zip(Stage::ALL).all(|(r, s)| r.stage == s);
        if in_order {
            return self;
        }
        let ended = self.status.is_terminal();
        let mut stored = std::mem::take(&mut self.stages);
        self.stages = Stage::ALL
            .into_iter()
            .map(|stage| match stored.iter().position(|r| r.stage == stage) {
                Some(i) => stored.swap_remove(i),
                None if ended => StageRecord { status: StageStatus::Skipped, ..StageRecord::new(stage) },
                None => StageRecord::new(stage),
            })
            .collect();
        self
    }

    pub fn record(&self, stage: Stage) -> &StageRecord {
        &self.stages[stage.index()]
    }

    fn record_mut(&mut self, stage: Stage) -> &mut StageRecord {
        &mut self.stages[stage.index()]
    }

    /// The first stage not yet completed or skipped.
    pub fn current_stage(&self) -> Option<Stage> {
        self.stages.iter().find(|r| !r.is_done()).map(|r| r.stage)
    }

    pub fn next_step(&self, now: Millis) -> Step {
        if self.status.is_terminal() {
            return Step::Idle;
        }
        match self.current_stage() {
            None => Step::Idle,
            Some(stage) => match self.record(stage) {
                r if r.status == StageStatus::Retrying && r.next_at.is_some_and(|t| t > now) => {
                    Step::WaitUntil(r.next_at.unwrap_or(now))
                }
                _ => Step::Execute(stage),
            },
        }
    }

    /// When the alarm should next fire, if work remains. Never "now": workerd
    /// drops an alarm re-armed to the current instant from inside `alarm()`.
    pub fn next_alarm(&self, now: Millis) -> Option<Millis> {
        match self.next_step(now) {
            Step::Idle => None,
            Step::WaitUntil(t) => Some(t.max(now + 1)),
            Step::Execute(_) => Some(now + 1),
        }
    }

    /// A stage still `running` when an activation begins never reported back:
    /// the isolate died mid-attempt. That attempt counts as a transient
    /// failure like any other (journaled as `interrupted`), so the retry
    /// policy decides what follows, and a stage never runs more attempts than
    /// its policy allows however often it is cut off.
    pub fn recover_interrupted(&mut self, now: Millis) -> Vec<EventDraft> {
        if self.status.is_terminal() {
            return Vec::new();
        }
        let Some(stage) = self.current_stage() else { return Vec::new() };
        if self.record(stage).status != StageStatus::Running {
            return Vec::new();
        }
        let failure = StageError::transient("attempt interrupted by a restart");
        let events = self.finish_stage(stage, Err(failure), now).unwrap_or_default();
        if let Some(last) = self.record_mut(stage).history.last_mut() {
            last.outcome = "interrupted".into();
        }
        events
    }

    /// Marks `stage` running and counts the attempt before any work happens.
    pub fn start_stage(&mut self, stage: Stage, now: Millis) -> Result<Vec<EventDraft>, TransitionError> {
        if self.status.is_terminal() {
            return Err(TransitionError::InvalidState(self.status));
        }
        if self.current_stage() != Some(stage) {
            return Err(TransitionError::WrongStage(stage));
        }
        self.status = RunStatus::Running;
        let rec = self.record_mut(stage);
        if rec.status == StageStatus::Running {
            // The previous attempt never reported back: the isolate died mid-stage.
            let n = rec.attempts;
            let started = rec.started_at.unwrap_or(now);
            rec.history.push(Attempt {
                n,
                started_at: started,
                finished_at: now,
                outcome: "interrupted".into(),
                error: Some("attempt interrupted by a restart".into()),
                backoff_ms: None,
                backoff_cap_ms: None,
            });
        }
        rec.status = StageStatus::Running;
        rec.attempts += 1;
        rec.started_at = Some(now);
        rec.next_at = None;
        let attempt = rec.attempts;
        Ok(vec![EventDraft::of(StageStarted { run: self.run_ref(), stage, attempt })])
    }

    /// Whether the attempt in progress is the stage's last: a failure that
    /// is not terminal would still end it (a text model then takes its local
    /// result rather than failing the run on a rate limit).
    pub fn on_last_attempt(&self, stage: Stage) -> bool {
        self.record(stage).attempts >= self.policy(stage).max_attempts
    }

    /// Records how the attempt in progress ended and moves the run on.
    pub fn finish_stage(&mut self, stage: Stage, outcome: StageOutcome, now: Millis) -> Result<Vec<EventDraft>, TransitionError> {
        if self.status.is_terminal() {
            return Err(TransitionError::InvalidState(self.status));
        }
        if self.record(stage).status != StageStatus::Running {
            return Err(TransitionError::WrongStage(stage));
        }
        let policy = self.policy(stage);
        let seed = fnv1a(self.id.as_bytes()) ^ (stage.index() as u64) << 56;
        let rec = self.record_mut(stage);
        let started = rec.started_at.unwrap_or(now);
        let attempt = rec.attempts;
        let duration = now - started;
        let mut events = Vec::new();
        match outcome {
            Ok(()) => {
                rec.status = StageStatus::Completed;
                rec.finished_at = Some(now);
                rec.error = None;
                rec.history.push(Attempt {
                    n: attempt,
                    started_at: started,
                    finished_at: now,
                    outcome: "completed".into(),
                    error: None,
                    backoff_ms: None,
                    backoff_cap_ms: None,
                });
                events.push(EventDraft::of(StageCompleted { run: self.run_ref(), stage, attempt, duration_ms: duration }));
            }
            Err(err) => {
                let decision = decide(&policy, attempt, err.class, now, seed);
                let mut entry = Attempt {
                    n: attempt,
                    started_at: started,
                    finished_at: now,
                    outcome: "failed".into(),
                    error: Some(err.message.clone()),
                    backoff_ms: None,
                    backoff_cap_ms: None,
                };
                rec.error = Some(err.clone());
                match decision {
                    RetryDecision::RetryAt { at, backoff_ms, cap_ms } => {
                        entry.backoff_ms = Some(backoff_ms);
                        entry.backoff_cap_ms = Some(cap_ms);
                        rec.history.push(entry);
                        rec.status = StageStatus::Retrying;
                        rec.next_at = Some(at);
                        events.push(EventDraft::of(StageRetrying {
                            run: self.run_ref(),
                            stage,
                            attempt,
                            next_at: rfc3339(at),
                            backoff_ms,
                            error: err.message.clone(),
                            class: err.class.name().into(),
                        }));
                    }
                    RetryDecision::GiveUp { skip: true } => {
                        rec.history.push(entry);
                        rec.status = StageStatus::Skipped;
                        rec.finished_at = Some(now);
                        let reason = format!("gave up after {attempt} attempts: {}", err.message);
                        rec.reason = Some(reason.clone());
                        let (run, class) = (self.run_ref(), err.class.name().into());
                        events.push(EventDraft::of(StageSkipped { run, stage, attempts: attempt, reason, class }));
                    }
                    RetryDecision::GiveUp { skip: false } => {
                        rec.history.push(entry);
                        rec.status = StageStatus::Failed;
                        rec.finished_at = Some(now);
                        let failed = StageFailed {
                            run: self.run_ref(),
                            stage,
                            attempts: attempt,
                            error: err.message.clone(),
                            class: err.class.name().into(),
                        };
                        events.push(EventDraft::of(failed.clone()));
                        self.status = RunStatus::Failed;
                        self.finished_at = Some(now);
                        self.reason = Some(format!("{stage} failed after {attempt} attempts: {}", err.message));
                        events.push(EventDraft::of(RunFailed(failed)));
                        return Ok(events);
                    }
                }
            }
        }
        if self.current_stage().is_none() {
            self.status = RunStatus::Completed;
            self.finished_at = Some(now);
            let skipped: Vec<Stage> =
                self.stages.iter().filter(|r| r.status == StageStatus::Skipped).map(|r| r.stage).collect();
            let took = now - self.created_at;
            events.push(EventDraft::of(RunCompleted { run: self.run_ref(), duration_ms: took, skipped }));
        }
        Ok(events)
    }

    /// Operator or supersession cancel. A stage in flight finishes its I/O but
    /// its outcome is refused by `finish_stage`. A failed run may be
    /// cancelled too: a dead letter the operator dismisses (or a newer
    /// version made moot) leaves the dead-letter list.
    pub fn cancel(&mut self, reason: &str, now: Millis) -> Result<Vec<EventDraft>, TransitionError> {
        if matches!(self.status, RunStatus::Completed | RunStatus::Cancelled) {
            return Err(TransitionError::InvalidState(self.status));
        }
        self.status = RunStatus::Cancelled;
        self.finished_at = Some(now);
        self.reason = Some(reason.to_string());
        for rec in self.stages.iter_mut().filter(|r| matches!(r.status, StageStatus::Running | StageStatus::Retrying)) {
            rec.status = StageStatus::Pending;
            rec.next_at = None;
        }
        Ok(vec![EventDraft::of(RunCancelled { run: self.run_ref(), reason: reason.to_string() })])
    }

    /// A newer version replaced the run's: a live run ends cancelled, and
    /// the run, ended or not, is marked so that no retry runs it again.
    pub fn supersede(&mut self, reason: &str, now: Millis) -> Vec<EventDraft> {
        self.superseded = true;
        self.cancel(reason, now).unwrap_or_default()
    }

    /// Its item was deleted: a live run ends cancelled, and the run is marked
    /// so that no retry can bring it back (its document is gone).
    pub fn purge(&mut self, reason: &str, now: Millis) -> Vec<EventDraft> {
        self.purged = true;
        self.cancel(reason, now).unwrap_or_default()
    }

    /// Operator retry of a failed or cancelled run: the failing stage gets a
    /// fresh attempt budget; completed stages are kept and never run again.
    pub fn retry(&mut self, now: Millis) -> Result<Vec<EventDraft>, TransitionError> {
        if self.purged {
            return Err(TransitionError::Purged);
        }
        if self.superseded {
            return Err(TransitionError::Superseded);
        }
        if !matches!(self.status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(TransitionError::InvalidState(self.status));
        }
        for rec in self.stages.iter_mut().filter(|r| !r.is_done()) {
            rec.status = StageStatus::Pending;
            rec.attempts = 0;
            rec.next_at = None;
            rec.finished_at = None;
        }
        self.status = RunStatus::Queued;
        self.finished_at = None;
        self.reason = None;
        let _ = now;
        Ok(vec![EventDraft::of(RunQueued { run: self.run_ref(), version: self.version, retry: true })])
    }

    /// The failing stage of a failed run, for the dead-letter list.
    pub fn failed_stage(&self) -> Option<&StageRecord> {
        self.stages.iter().find(|r| r.status == StageStatus::Failed)
    }

    pub fn view(&self, next_alarm: Option<Millis>) -> RunView {
        RunView {
            id: self.id,
            content_id: self.content_id,
            version: self.version,
            status: self.status,
            stages: self.stages.iter().map(stage_view).collect(),
            created_at: rfc3339(self.created_at),
            finished_at: self.finished_at.map(rfc3339),
            reason: self.reason.clone(),
            next_alarm_at: next_alarm.map(rfc3339),
        }
    }
}

/// One activation of a run (an alarm, or the start request): it runs the
/// ready stages back to back until a stage must wait, the run ends, or its
/// wall time budget is spent. The first ready stage always runs, so a run
/// makes progress whatever the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activation {
    started_at: Millis,
    budget_ms: i64,
    stages_run: u32,
}

impl Activation {
    /// How long past an activation's budget its watchdog alarm waits before it
    /// resumes a run whose isolate died mid-activation.
    pub const WATCHDOG_SLACK_MS: i64 = 5_000;

    pub fn new(now: Millis, budget_ms: i64) -> Self {
        Activation { started_at: now, budget_ms: budget_ms.max(0), stages_run: 0 }
    }

    /// The stage to run now, if any: `None` when the run waits (backoff),
    /// has ended, or this activation's budget is spent (the caller then arms
    /// the next alarm). Counts the run's activation at its first stage, so
    /// the count is saved with that stage's start.
    pub fn next(&mut self, run: &mut PipelineRun, now: Millis) -> Option<Stage> {
        let Step::Execute(stage) = run.next_step(now) else { return None };
        if self.stages_run > 0 && now - self.started_at >= self.budget_ms {
            return None;
        }
        if self.stages_run == 0 {
            run.activations += 1;
        }
        self.stages_run += 1;
        Some(stage)
    }

    #[cfg(test)]
    pub fn stages_run(&self) -> u32 {
        self.stages_run
    }

    /// When the watchdog alarm, armed while this activation works, fires if
    /// it never arms the next wake itself: after its budget, plus slack. A
    /// stage that outlasts it finds the activation still alive and only
    /// moves the watchdog on (see [`Activation::watchdog_from`]).
    pub fn watchdog_at(&self) -> Millis {
        Self::watchdog_from(self.started_at, self.budget_ms)
    }

    pub fn watchdog_from(now: Millis, budget_ms: i64) -> Millis {
        now + budget_ms.max(0) + Self::WATCHDOG_SLACK_MS
    }
}

fn stage_view(r: &StageRecord) -> StageView {
    let running = matches!(r.status, StageStatus::Running | StageStatus::Pending);
    StageView {
        name: r.stage,
        status: r.status,
        attempts: r.attempts,
        started_at: r.started_at.map(rfc3339),
        finished_at: r.finished_at.filter(|_| !running).map(rfc3339),
        duration_ms: match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) if !running => Some(f - s),
            _ => None,
        },
        error: r.error.as_ref().map(|e| StageErrorView { class: e.class.name().into(), message: e.message.clone() }),
        next_at: r.next_at.map(rfc3339),
        reason: r.reason.clone(),
        history: r
            .history
            .iter()
            .map(|a| AttemptView {
                attempt: a.n,
                started_at: rfc3339(a.started_at),
                finished_at: rfc3339(a.finished_at),
                duration_ms: a.finished_at - a.started_at,
                outcome: a.outcome.clone(),
                error: a.error.clone(),
                backoff_ms: a.backoff_ms,
                backoff_cap_ms: a.backoff_cap_ms,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock plus a driver that plays the actor's activation loop.
    struct Sim {
        now: Millis,
        run: PipelineRun,
        log: Vec<EventDraft>,
        /// The activation budget; 0 runs exactly one stage per alarm.
        budget_ms: i64,
        /// How long each stage takes on the fake clock.
        stage_ms: i64,
        /// The attempts the run called its stage's last, as they started.
        last_attempts: Vec<(Stage, u32)>,
    }

    impl Sim {
        fn new() -> Self {
            let (run, ev) = PipelineRun::new(Uuid::new_v4(), Uuid::new_v4(), 1, RetryTuning::default(), 1_000);
            Sim { now: 1_000, run, log: ev, budget_ms: 0, stage_ms: 3, last_attempts: Vec::new() }
        }

        fn with_budget(budget_ms: i64, stage_ms: i64) -> Self {
            Sim { budget_ms, stage_ms, ..Sim::new() }
        }

        /// One alarm: advance to the armed time, then run stages back to back
        /// as the actor does, each committed (here: logged) before the next.
        fn alarm(&mut self, work: &mut dyn FnMut(Stage, u32) -> StageOutcome) -> bool {
            let Some(at) = self.run.next_alarm(self.now) else { return false };
            self.now = at;
            self.log.extend(self.run.recover_interrupted(self.now));
            let mut activation = Activation::new(self.now, self.budget_ms);
            while let Some(stage) = activation.next(&mut self.run, self.now) {
                self.log.extend(self.run.start_stage(stage, self.now).unwrap());
                let attempt = self.run.record(stage).attempts;
                if self.run.on_last_attempt(stage) {
                    self.last_attempts.push((stage, attempt));
                }
                let out = work(stage, attempt);
                self.now += self.stage_ms;
                self.log.extend(self.run.finish_stage(stage, out, self.now).unwrap());
            }
            true
        }

        fn drive(&mut self, work: &mut dyn FnMut(Stage, u32) -> StageOutcome) -> usize {
            let mut alarms = 0;
            while self.alarm(work) {
                alarms += 1;
                assert!(alarms < 1000, "runaway");
            }
            alarms
        }

        fn names(&self) -> Vec<&'static str> {
            self.log.iter().map(|e| e.event.as_str()).collect()
        }
    }

    #[test]
    fn a_run_stored_with_fewer_stages_gets_every_stage_in_order() {
        let now = 1_000;
        for ended in [false, true] {
            let (mut run, _) = PipelineRun::new(Uuid::new_v4(), Uuid::new_v4(), 1, RetryTuning::default(), now);
            if ended {
                run.status = RunStatus::Completed;
            }
            let mut stored = serde_json::to_value(&run).unwrap();
            let stages = stored["stages"].as_array_mut().unwrap();
            stages.remove(Stage::Summarize.index());
            stages.reverse();
            let back: PipelineRun = serde_json::from_value(stored).unwrap();
            let back = back.with_every_stage();
            assert_eq!(back.stages.iter().map(|r| r.stage).collect::<Vec<_>>(), Stage::ALL.to_vec());
            let added = back.record(Stage::Summarize).status;
            assert_eq!(added, if ended { StageStatus::Skipped } else { StageStatus::Pending });
        }
    }

    #[test]
    fn happy_path_with_no_budget_runs_one_stage_per_alarm() {
        let mut sim = Sim::new();
        let alarms = sim.drive(&mut |_, _| Ok(()));
        assert_eq!(alarms, 8);
        assert_eq!(sim.run.activations, 8);
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert!(sim.run.stages.iter().all(|r| r.status == StageStatus::Completed && r.attempts == 1));
        let names = sim.names();
        assert_eq!(names.first(), Some(&"run.queued"));
        assert_eq!(names.last(), Some(&"run.completed"));
        assert_eq!(names.iter().filter(|n| **n == "stage.completed").count(), 8);
        assert_eq!(sim.run.next_alarm(sim.now), None);
    }

    #[test]
    fn one_activation_runs_every_ready_stage_within_its_budget() {
        let mut sim = Sim::with_budget(200, 3);
        let alarms = sim.drive(&mut |_, _| Ok(()));
        assert_eq!(alarms, 1, "8 quick stages fit one activation");
        assert_eq!(sim.run.activations, 1);
        assert_eq!(sim.run.status, RunStatus::Completed);
        // Each stage still has its own committed start and outcome, in order.
        let names = sim.names();
        assert_eq!(names.iter().filter(|n| **n == "stage.started").count(), 8);
        assert_eq!(names.iter().filter(|n| **n == "stage.completed").count(), 8);
        assert_eq!(sim.run.next_alarm(sim.now), None);
    }

    #[test]
    fn a_spent_budget_ends_the_activation_and_the_next_alarm_goes_on() {
        // 100 ms stages under a 200 ms budget: a stage starts only while the
        // budget lasts, so each activation runs two.
        let mut sim = Sim::with_budget(200, 100);
        let mut ran = Vec::new();
        let alarms = sim.drive(&mut |s, _| {
            ran.push(s);
            Ok(())
        });
        assert_eq!(alarms, 4);
        assert_eq!(sim.run.activations, 4);
        assert_eq!(ran, Stage::ALL, "every stage once, in order, across activations");
        assert_eq!(sim.run.status, RunStatus::Completed);

        // The first ready stage runs even when a single stage outlasts the budget.
        let mut sim = Sim::with_budget(10, 50);
        assert_eq!(sim.drive(&mut |_, _| Ok(())), 8);
    }

    #[test]
    fn budget_is_measured_from_the_activation_start() {
        let mut run = Sim::new().run;
        let mut a = Activation::new(0, 200);
        assert_eq!(a.next(&mut run, 0), Some(Stage::Validate));
        run.start_stage(Stage::Validate, 0).unwrap();
        run.finish_stage(Stage::Validate, Ok(()), 199).unwrap();
        assert_eq!(a.next(&mut run, 199), Some(Stage::Chunk), "199 ms spent of 200");
        run.start_stage(Stage::Chunk, 199).unwrap();
        run.finish_stage(Stage::Chunk, Ok(()), 200).unwrap();
        assert_eq!(a.next(&mut run, 200), None, "budget spent");
        assert_eq!(a.stages_run(), 2);
        assert_eq!(run.activations, 1);
        assert_eq!(run.next_alarm(200), Some(201), "the next activation is due at once");
        assert_eq!(a.watchdog_at(), 200 + Activation::WATCHDOG_SLACK_MS);
    }

    #[test]
    fn a_backoff_ends_the_activation_until_its_time() {
        let mut sim = Sim::with_budget(200, 3);
        let mut work = |s: Stage, attempt: u32| {
            if s == Stage::Embed && attempt == 1 { Err(StageError::transient("flaky")) } else { Ok(()) }
        };
        assert!(sim.alarm(&mut work));
        let embed = sim.run.record(Stage::Embed).clone();
        assert_eq!(embed.status, StageStatus::Retrying, "the activation stopped at the retry");
        assert_eq!(sim.run.record(Stage::Index).status, StageStatus::Pending);
        let next_at = embed.next_at.unwrap();
        assert_eq!(sim.run.next_alarm(sim.now), Some(next_at.max(sim.now + 1)));
        let mut a = Activation::new(sim.now, 200);
        assert_eq!(a.next(&mut sim.run, next_at - 1), None, "no stage before the backoff ends");
        assert_eq!(a.stages_run(), 0);
        sim.drive(&mut work);
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert_eq!(sim.run.activations, 2);
    }

    #[test]
    fn a_cancel_between_stages_ends_the_activation() {
        let mut sim = Sim::with_budget(200, 3);
        let mut a = Activation::new(sim.now, 200);
        let stage = a.next(&mut sim.run, sim.now).unwrap();
        sim.run.start_stage(stage, sim.now).unwrap();
        sim.run.finish_stage(stage, Ok(()), sim.now + 1).unwrap();
        // The actor re-reads the run between stages and finds it cancelled.
        sim.run.cancel("operator", sim.now + 1).unwrap();
        assert_eq!(a.next(&mut sim.run, sim.now + 1), None);
    }

    #[test]
    fn a_crash_mid_activation_resumes_from_the_last_committed_stage() {
        let mut sim = Sim::with_budget(200, 3);
        let mut a = Activation::new(sim.now, 200);
        for _ in 0..3 {
            let stage = a.next(&mut sim.run, sim.now).unwrap();
            sim.run.start_stage(stage, sim.now).unwrap();
            sim.now += 3;
            sim.run.finish_stage(stage, Ok(()), sim.now).unwrap();
        }
        let stage = a.next(&mut sim.run, sim.now).unwrap();
        sim.run.start_stage(stage, sim.now).unwrap();
        // The isolate dies inside the fourth stage: what was committed survives.
        sim.run = serde_json::from_str(&serde_json::to_string(&sim.run).unwrap()).unwrap();
        sim.now = a.watchdog_at();
        let mut ran = Vec::new();
        sim.drive(&mut |s, _| {
            ran.push(s);
            Ok(())
        });
        assert_eq!(ran, [Stage::Index, Stage::Summarize, Stage::Extract, Stage::Analyze, Stage::Publish]);
        assert_eq!(sim.run.record(Stage::Index).history[0].outcome, "interrupted");
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert_eq!(sim.run.activations, 2);
    }

    #[test]
    fn transient_failures_retry_through_the_alarm_with_growing_caps() {
        let mut sim = Sim::new();
        let mut work = |s: Stage, attempt: u32| {
            if s == Stage::Embed && attempt <= 3 { Err(StageError::transient("flaky")) } else { Ok(()) }
        };
        sim.drive(&mut work);
        assert_eq!(sim.run.status, RunStatus::Completed);
        let embed = sim.run.record(Stage::Embed);
        assert_eq!(embed.attempts, 4);
        let caps: Vec<u64> = embed.history.iter().filter_map(|a| a.backoff_cap_ms).collect();
        assert_eq!(caps, [100, 200, 400]);
        // Each retry waited for its alarm: the next attempt starts no earlier than planned.
        for w in embed.history.windows(2) {
            assert!(w[1].started_at >= w[0].finished_at + w[0].backoff_ms.unwrap() as i64);
        }
        assert_eq!(sim.names().iter().filter(|n| **n == "stage.retrying").count(), 3);
    }

    #[test]
    fn waiting_for_backoff_does_not_execute() {
        let mut sim = Sim::new();
        sim.alarm(&mut |_, _| Ok(())); // validate
        sim.alarm(&mut |_, _| Err(StageError::transient("x"))); // chunk fails once
        let next_at = sim.run.record(Stage::Chunk).next_at.unwrap();
        assert_eq!(sim.run.next_step(next_at - 1), Step::WaitUntil(next_at));
        assert_eq!(sim.run.next_step(next_at), Step::Execute(Stage::Chunk));
    }

    #[test]
    fn required_stage_exhausting_attempts_fails_the_run() {
        let mut sim = Sim::new();
        sim.drive(&mut |s, _| if s == Stage::Embed { Err(StageError::transient("down")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Failed);
        let embed = sim.run.failed_stage().unwrap();
        assert_eq!(embed.stage, Stage::Embed);
        assert_eq!(embed.attempts, RetryTuning::default().max_attempts);
        assert!(sim.run.reason.as_deref().unwrap().contains("embed failed"));
        assert_eq!(sim.names().last(), Some(&"run.failed"));
        assert_eq!(sim.run.record(Stage::Index).status, StageStatus::Pending);
    }

    /// A retried run's index stage was tried before, whatever its count of
    /// attempts says now: its writes (where nothing fences them) are still
    /// owed a take-back if the run is superseded or purged.
    #[test]
    fn a_retried_stage_was_still_tried() {
        let mut sim = Sim::new();
        assert!(!sim.run.record(Stage::Index).was_tried());
        sim.drive(&mut |s, _| if s == Stage::Index { Err(StageError::terminal("refused")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Failed);
        sim.log.extend(sim.run.retry(sim.now).unwrap());
        assert_eq!(sim.run.record(Stage::Index).attempts, 0);
        assert!(sim.run.record(Stage::Index).was_tried());
        assert!(!sim.run.record(Stage::Summarize).was_tried());
    }

    /// A text model out of capacity for longer than the retries last: the
    /// stage's last attempt is known as it starts, so the provider takes the
    /// local result there (here: succeeds) instead of failing the run.
    #[test]
    fn a_stage_knows_its_last_attempt() {
        let max = RetryTuning::default().max_attempts;
        let mut sim = Sim::new();
        sim.drive(&mut |s, a| if s == Stage::Summarize && a < max { Err(StageError::rate_limited(2_000, "3040")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert_eq!(sim.run.record(Stage::Summarize).attempts, max);
        assert_eq!(sim.last_attempts, vec![(Stage::Summarize, max)], "only the summary's tenth attempt is a last one");
    }

    /// `validate` reads an upload's file and asks the analyzer for a PDF's
    /// text: an outage of either is waited out like any provider's.
    #[test]
    fn validate_waits_out_an_analyzer_outage() {
        let mut sim = Sim::new();
        sim.drive(&mut |s, a| if s == Stage::Validate && a <= 5 { Err(StageError::transient("analyzer unreachable")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert_eq!(sim.run.record(Stage::Validate).attempts, 6);
    }

    #[test]
    fn terminal_error_fails_without_retry() {
        let mut sim = Sim::new();
        sim.drive(&mut |s, _| if s == Stage::Validate { Err(StageError::terminal("empty")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Failed);
        assert_eq!(sim.run.record(Stage::Validate).attempts, 1);
    }

    #[test]
    fn optional_stage_is_skipped_and_run_goes_on() {
        let mut sim = Sim::new();
        sim.drive(&mut |s, _| if s == Stage::Analyze { Err(StageError::transient("refused")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Completed);
        let analyze = sim.run.record(Stage::Analyze);
        assert_eq!(analyze.status, StageStatus::Skipped);
        assert!(analyze.reason.as_deref().unwrap().contains("refused"));
        assert_eq!(sim.run.record(Stage::Publish).status, StageStatus::Completed);
        assert!(sim.names().contains(&"stage.skipped"));
    }

    #[test]
    fn crash_mid_stage_reruns_only_that_stage() {
        let mut sim = Sim::new();
        sim.alarm(&mut |_, _| Ok(()));
        // Start chunk and "crash" before finishing: persisted state is what start left.
        let stage = match sim.run.next_step(sim.now + 1) { Step::Execute(s) => s, s => panic!("{s:?}") };
        sim.now += 1;
        sim.run.start_stage(stage, sim.now).unwrap();
        let restored: PipelineRun = serde_json::from_str(&serde_json::to_string(&sim.run).unwrap()).unwrap();
        sim.run = restored;
        let mut ran = Vec::new();
        sim.drive(&mut |s, _| {
            ran.push(s);
            Ok(())
        });
        assert_eq!(ran.first(), Some(&Stage::Chunk));
        assert!(!ran.contains(&Stage::Validate), "a completed stage never runs again");
        let chunk = sim.run.record(Stage::Chunk);
        assert_eq!(chunk.attempts, 2);
        assert_eq!(chunk.history[0].outcome, "interrupted");
        assert_eq!(sim.run.status, RunStatus::Completed);
    }

    #[test]
    fn a_stage_cut_off_every_time_never_exceeds_its_attempts() {
        let mut sim = Sim::new();
        // Every attempt of validate (required, the tuning's 10) dies with its isolate.
        for _ in 0..30 {
            sim.log.extend(sim.run.recover_interrupted(sim.now));
            let Step::Execute(stage) = sim.run.next_step(sim.now) else {
                match sim.run.next_step(sim.now) {
                    Step::WaitUntil(t) => {
                        sim.now = t;
                        continue;
                    }
                    _ => break,
                }
            };
            sim.run.start_stage(stage, sim.now).unwrap();
            sim.now += 10;
        }
        let validate = sim.run.record(Stage::Validate);
        assert_eq!(validate.attempts, RetryTuning::default().max_attempts, "{:?}", validate.history);
        assert!(validate.history.iter().all(|h| h.outcome == "interrupted"));
        assert_eq!(sim.run.status, RunStatus::Failed);
        assert!(sim.names().contains(&"run.failed"));
    }

    #[test]
    fn cancel_and_retry() {
        let mut sim = Sim::new();
        sim.drive(&mut |s, _| if s == Stage::Index { Err(StageError::terminal("bad")) } else { Ok(()) });
        assert_eq!(sim.run.status, RunStatus::Failed);
        // A dead letter is dismissed by cancelling it; it may still be retried.
        let failed_at = sim.run.finished_at;
        assert_eq!(sim.run.cancel("dismissed", sim.now + 5).unwrap().len(), 1);
        assert_eq!((sim.run.status, sim.run.reason.as_deref()), (RunStatus::Cancelled, Some("dismissed")));
        assert_eq!(sim.run.finished_at, failed_at.map(|_| sim.now + 5));
        assert!(sim.run.cancel("again", sim.now).is_err(), "a cancelled run cannot be cancelled");
        sim.log.extend(sim.run.retry(sim.now).unwrap());
        let mut ran = Vec::new();
        sim.drive(&mut |s, _| {
            ran.push(s);
            Ok(())
        });
        assert_eq!(ran, [Stage::Index, Stage::Summarize, Stage::Extract, Stage::Analyze, Stage::Publish]);
        assert_eq!(sim.run.status, RunStatus::Completed);
        assert!(sim.run.retry(sim.now).is_err(), "completed runs cannot be retried");
        assert!(sim.run.cancel("x", sim.now).is_err(), "completed runs cannot be cancelled");

        let mut sim = Sim::new();
        sim.alarm(&mut |_, _| Ok(()));
        sim.log.extend(sim.run.cancel("operator", sim.now).unwrap());
        assert_eq!(sim.run.next_alarm(sim.now), None);
        assert_eq!(sim.names().last(), Some(&"run.cancelled"));
        assert!(sim.run.start_stage(Stage::Chunk, sim.now).is_err());
    }

    #[test]
    fn purge_cancels_a_live_run_and_forbids_retry() {
        let mut sim = Sim::new();
        sim.alarm(&mut |_, _| Ok(()));
        let ev = sim.run.purge("content deleted", sim.now);
        assert_eq!(ev.len(), 1);
        assert_eq!(sim.run.status, RunStatus::Cancelled);
        assert_eq!(sim.run.reason.as_deref(), Some("content deleted"));
        assert_eq!(sim.run.retry(sim.now), Err(TransitionError::Purged));
        assert_eq!(sim.run.next_alarm(sim.now), None);

        let mut done = Sim::new();
        done.drive(&mut |_, _| Ok(()));
        assert!(done.run.purge("content deleted", done.now).is_empty(), "a finished run keeps its status");
        assert!(done.run.purged);
    }

    #[test]
    fn a_superseded_run_cannot_be_retried_even_if_it_had_failed() {
        let mut sim = Sim::new();
        sim.alarm(&mut |_, _| Ok(()));
        assert_eq!(sim.run.supersede("superseded by version 2", sim.now).len(), 1);
        assert_eq!((sim.run.status, sim.run.reason.as_deref()), (RunStatus::Cancelled, Some("superseded by version 2")));
        assert_eq!(sim.run.retry(sim.now), Err(TransitionError::Superseded));

        // A run that had already failed is superseded too: a retry would
        // only be refused at the index after running its stages again. It
        // ends cancelled, so it leaves the dead-letter list (nobody can act
        // on it there).
        let mut failed = Sim::new();
        failed.drive(&mut |_, _| Err(StageError::terminal("bad input")));
        assert_eq!(failed.run.status, RunStatus::Failed);
        assert_eq!(failed.run.supersede("superseded by version 2", failed.now).len(), 1);
        assert_eq!((failed.run.status, failed.run.reason.as_deref()), (RunStatus::Cancelled, Some("superseded by version 2")));
        assert_eq!(failed.run.retry(failed.now), Err(TransitionError::Superseded));

        // An operator's cancel is not a supersession: that run may be retried.
        let mut cancelled = Sim::new();
        cancelled.alarm(&mut |_, _| Ok(()));
        cancelled.run.cancel("cancelled by operator", cancelled.now).unwrap();
        assert!(cancelled.run.retry(cancelled.now).is_ok());
    }

    #[test]
    fn view_matches_contract_shape() {
        let mut sim = Sim::new();
        sim.drive(&mut |_, _| Ok(()));
        let v = serde_json::to_value(sim.run.view(None)).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["stages"].as_array().unwrap().len(), 8);
        assert_eq!(v["stages"][0]["name"], "validate");
        assert_eq!(v["stages"][0]["status"], "completed");
        assert_eq!(v["stages"][0]["attempts"], 1);
        assert!(v["stages"][0]["duration_ms"].is_i64());
        assert!(v["finished_at"].is_string());
    }

    /// Only who may read the item whatever its visibility follows a run
    /// without asking the item; a visibility kept at start is never trusted.
    #[test]
    fn a_run_admits_alone_only_who_may_read_its_item_when_private() {
        use crate::domain::principal::Scope;
        let key = Principal::api_key;
        let (run, _) = PipelineRun::new(Uuid::new_v4(), Uuid::new_v4(), 1, RetryTuning::default(), 1_000);
        assert!(!run.followable_by(&Principal::operator()), "a run without its owner recorded asks the item");
        let item = Ownership { tenant: "acme".into(), owner: "k1".into(), visibility: Visibility::Public, owner_kind: None };
        let run = run.owned_by(&item);
        assert_eq!(run.owner.as_ref().map(|o| o.visibility), Some(Visibility::Private));
        assert!(run.followable_by(&Principal::operator()));
        assert!(run.followable_by(&key("acme", "k1", &[Scope::Read])), "the owner");
        assert!(run.followable_by(&key("acme", "k2", &[Scope::Manage])), "a manager of the tenant");
        // Readers the item's current visibility decides for: the item is asked.
        assert!(!run.followable_by(&key("acme", "k2", &[Scope::Read])));
        assert!(!run.followable_by(&key("other", "k1", &[Scope::Manage])));
        assert!(!run.followable_by(&Principal::anonymous()));
        // It survives the run's storage round trip.
        let mut back: PipelineRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert!(back.followable_by(&key("acme", "k1", &[])));
        // Once its item is deleted, nobody is admitted without asking it.
        back.purge("content deleted", 2_000);
        assert!(!back.followable_by(&key("acme", "k1", &[])));
        assert!(!back.followable_by(&Principal::operator()));
    }
}
