//! Waiting for a container to accept connections. `start()` returns before
//! the container listens (durable-objects/api/container: "does not block
//! until the container is fully started"), so a request right after it is
//! refused. Cloudflare's own clients poll the port: workers-rs's container
//! test retries every 300 ms, `@cloudflare/containers` waits up to 20 s.
//!
//! [`StartupWait`] decides, refusal by refusal, whether to start the
//! container, send again after a pause, or give up. Refusals while waiting
//! say nothing about the analyzer's health, so the caller keeps them out of
//! the circuit breaker; only a listening container's failures count.

use super::time::Millis;

/// Pause between two tries while the container is not listening yet.
pub const POLL_INTERVAL_MS: i64 = 300;
/// Longest wait for the port within one Analyze attempt (its timeout is
/// 10 s), leaving time for the analysis itself.
pub const READY_BUDGET_MS: i64 = 8_000;
/// A container stopped during the wait is started again at once this
/// often; after that, once per poll while the budget lasts (the platform may
/// have no instance for it yet, and `cloudflare/containers` also asks
/// `start()` again on every poll until one comes).
const MAX_STARTS: u32 = 2;

/// Why a request did not reach the container's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The container is stopped: start it.
    NotRunning,
    /// Started, but nothing listens on the port yet.
    NotListening,
}

/// The runtime's texts for a container that cannot take a connection yet:
/// production's ("The container is not running, consider calling start()",
/// "The container is not listening in the TCP address 10.0.0.1:8080") and
/// local workerd's ("connect(): Connection refused: container port not
/// found"). Also a container the platform has no instance for yet ("there is
/// no container instance that can be provided to this durable object", as at
/// a first deploy or under capacity pressure), which the
/// `cloudflare/containers` client also waits out. Anything else is a real
/// failure.
pub fn refusal(message: &str) -> Option<Refusal> {
    let m = message.to_lowercase();
    // Starts refused for their rate ("you are requesting too many
    // containers per second", as `cloudflare/containers` knows it) are
    // asked again at the next poll, as a container not yet running is.
    if (m.contains("not running") && m.contains("start")) || m.contains("no container instance") || m.contains("too many containers per second")
    {
        Some(Refusal::NotRunning)
    } else if m.contains("not listening") || m.contains("container port not found") || m.contains("connection refused")
    {
        Some(Refusal::NotListening)
    } else {
        None
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call `start()`, then send.
    Start,
    /// Send the request (now).
    Send,
    /// Sleep this many ms, then send.
    Wait(i64),
    /// Sleep this many ms, then call `start()` again and send.
    Restart(i64),
    /// The budget is spent: fail this attempt as transient, outside the breaker.
    GiveUp { waited_ms: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StartupWait {
    began: Millis,
    budget_ms: i64,
    poll_ms: i64,
    starts: u32,
    refusals: u32,
}

impl StartupWait {
    /// Begins a call: start first when the container is not running.
    pub fn begin(now: Millis, running: bool, budget_ms: i64, poll_ms: i64) -> (Self, Step) {
        let wait = StartupWait { began: now, budget_ms, poll_ms: poll_ms.max(1), starts: 0, refusals: 0 };
        (wait, if running { Step::Send } else { Step::Start })
    }

    /// With this module's defaults.
    pub fn with_defaults(now: Millis, running: bool) -> (Self, Step) {
        Self::begin(now, running, READY_BUDGET_MS, POLL_INTERVAL_MS)
    }

    /// `start()` was called.
    pub fn started(&mut self) -> Step {
        self.starts += 1;
        Step::Send
    }

    /// The request was refused at `now`.
    pub fn refused(&mut self, now: Millis, why: Refusal) -> Step {
        self.refusals += 1;
        let waited_ms = now - self.began;
        if why == Refusal::NotRunning && self.starts < MAX_STARTS {
            return Step::Start;
        }
        if waited_ms + self.poll_ms > self.budget_ms {
            return Step::GiveUp { waited_ms };
        }
        match why {
            // Polling a container nobody starts would only wait the budget out.
            Refusal::NotRunning => Step::Restart(self.poll_ms),
            Refusal::NotListening => Step::Wait(self.poll_ms),
        }
    }

    /// Refusals so far (for the log and the status view).
    pub fn refusals(&self) -> u32 {
        self.refusals
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }
}

/// Give-ups in a row after which one counts against the circuit breaker: a
/// container that never comes up (an image that crashes at start) would
/// otherwise cost every call the whole wait, for good, with the breaker
/// closed and `/healthz` none the wiser. One or two are a cold start.
pub const COLD_GIVE_UPS_BEFORE_FAILURE: u32 = 3;

/// Give-ups closer together than this count once: calls that arrive while
/// a container starts wait on that one start and give up within one wait
/// of each other, so a burst of them (a batch) counts at most twice or
/// three times, not once per call. A container that never listens keeps
/// counting, whether its calls come one after another (a stage's retries,
/// a wait apart) or overlap (steady traffic).
pub const COLD_GIVE_UP_SPACING_MS: i64 = READY_BUDGET_MS / 2;

/// Startup waits that ended in a give-up since a call last reached the
/// container (this instance's memory).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ColdStreak {
    give_ups: u32,
    /// When the last give-up that counted happened.
    counted_at: Option<Millis>,
}

impl ColdStreak {
    /// A wait gave up at `now`: whether this one counts as the analyzer
    /// failing (from the [`COLD_GIVE_UPS_BEFORE_FAILURE`]th that counted).
    pub fn gave_up(&mut self, now: Millis) -> bool {
        if self.counted_at.is_some_and(|at| now.saturating_sub(at) < COLD_GIVE_UP_SPACING_MS) {
            return false;
        }
        self.counted_at = Some(now);
        self.give_ups = self.give_ups.saturating_add(1);
        self.give_ups >= COLD_GIVE_UPS_BEFORE_FAILURE
    }

    /// A call reached a listening container.
    pub fn reached(&mut self) {
        *self = ColdStreak::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a wait against a container that listens `listen_after` ms after
    /// its first start, on a fake clock; returns (steps taken, sends, outcome).
    fn drive(running: bool, listen_after: Option<i64>) -> (Vec<Step>, u32, Result<Millis, i64>) {
        drive_with(running, |_| true, |now, started_at| match (started_at, listen_after) {
            (None, _) => Some(Refusal::NotRunning),
            (Some(at), Some(delay)) if now - at >= delay => None,
            _ => Some(Refusal::NotListening),
        })
    }

    /// [`drive`] against any container: `start_takes(now)` says whether a
    /// `start()` then starts it, `answer(now, started_at)` how a send is
    /// refused (`None`: it reached the server).
    fn drive_with(
        running: bool,
        start_takes: impl Fn(Millis) -> bool,
        answer: impl Fn(Millis, Option<Millis>) -> Option<Refusal>,
    ) -> (Vec<Step>, u32, Result<Millis, i64>) {
        let mut now: Millis = 1_000;
        let (mut wait, mut step) = StartupWait::with_defaults(now, running);
        let mut started_at = running.then_some(0);
        let (mut steps, mut sends) = (Vec::new(), 0);
        loop {
            steps.push(step);
            step = match step {
                Step::Start => {
                    if start_takes(now) {
                        started_at.get_or_insert(now);
                    }
                    wait.started()
                }
                Step::Wait(ms) => {
                    now += ms;
                    Step::Send
                }
                Step::Restart(ms) => {
                    now += ms;
                    Step::Start
                }
                Step::Send => {
                    sends += 1;
                    now += 5; // a refused connect is quick
                    match answer(now, started_at) {
                        None => return (steps, sends, Ok(now)),
                        Some(why) => wait.refused(now, why),
                    }
                }
                Step::GiveUp { waited_ms } => return (steps, sends, Err(waited_ms)),
            };
        }
    }

    #[test]
    fn a_cold_container_is_started_then_polled_until_it_listens() {
        let (steps, sends, outcome) = drive(false, Some(3_000));
        assert_eq!(steps[0], Step::Start);
        assert!(steps.iter().filter(|s| matches!(s, Step::Wait(POLL_INTERVAL_MS))).count() >= 9);
        assert_eq!(steps.iter().filter(|s| **s == Step::Start).count(), 1);
        let ready_at = outcome.expect("ready within the budget");
        assert!((4_000..4_400).contains(&ready_at), "ready at {ready_at}");
        assert!(sends >= 10);
    }

    #[test]
    fn a_warm_container_is_sent_to_at_once() {
        let (steps, sends, outcome) = drive(true, Some(0));
        assert_eq!(steps, vec![Step::Send]);
        assert_eq!(sends, 1);
        assert!(outcome.is_ok());
    }

    #[test]
    fn a_container_that_never_listens_gives_up_within_the_budget() {
        let (steps, _, outcome) = drive(false, None);
        let waited = outcome.expect_err("gives up");
        assert!(waited <= READY_BUDGET_MS && waited > READY_BUDGET_MS - 2 * POLL_INTERVAL_MS, "waited {waited}");
        assert!(matches!(steps.last(), Some(Step::GiveUp { .. })));
    }

    #[test]
    fn a_container_stopped_under_us_is_started_again_then_once_per_poll_within_the_budget() {
        let (mut wait, step) = StartupWait::with_defaults(0, true);
        assert_eq!(step, Step::Send);
        assert_eq!(wait.refused(10, Refusal::NotRunning), Step::Start);
        wait.started();
        assert_eq!(wait.refused(20, Refusal::NotRunning), Step::Start);
        wait.started();
        // No instance to be had yet: asked again each poll, not just waited on.
        assert_eq!(wait.refused(30, Refusal::NotRunning), Step::Restart(POLL_INTERVAL_MS));
        wait.started();
        assert_eq!(wait.refused(340, Refusal::NotListening), Step::Wait(POLL_INTERVAL_MS));
        assert_eq!(wait.refused(READY_BUDGET_MS - 100, Refusal::NotRunning), Step::GiveUp { waited_ms: READY_BUDGET_MS - 100 });
        assert_eq!((wait.starts(), wait.refusals()), (3, 5));
    }

    /// A platform with no instance for the first seconds (a first deploy, a
    /// rollout): the wait keeps asking `start()` and reaches the container
    /// once an instance comes, within the budget.
    #[test]
    fn a_container_without_an_instance_yet_is_started_each_poll_until_one_comes() {
        let instance_at = 5_000;
        let (steps, _, outcome) = drive_with(false, |now| now >= instance_at, |_, started_at| started_at.is_none().then_some(Refusal::NotRunning));
        let reached = outcome.expect("reached within the budget");
        assert!((instance_at..instance_at + POLL_INTERVAL_MS + 10).contains(&reached), "reached at {reached}");
        assert!(steps.iter().filter(|s| **s == Step::Start).count() > 10, "{steps:?}");
    }

    #[test]
    fn recognizes_the_runtime_refusals_and_nothing_else() {
        assert_eq!(refusal("Error: The container is not running, consider calling start()"), Some(Refusal::NotRunning));
        assert_eq!(
            refusal("The container is not listening in the TCP address 10.0.0.1:8080"),
            Some(Refusal::NotListening)
        );
        assert_eq!(refusal("connect(): Connection refused: container port not found"), Some(Refusal::NotListening));
        assert_eq!(
            refusal("There is no Container instance that can be provided to this Durable Object, try again later"),
            Some(Refusal::NotRunning)
        );
        assert_eq!(refusal("Error: you are requesting too many containers per second"), Some(Refusal::NotRunning));
        assert_eq!(refusal("analyzer answered 500"), None);
        assert_eq!(refusal("Network connection lost."), None);
    }

    #[test]
    fn a_container_that_never_comes_up_counts_against_the_breaker_from_the_third_give_up() {
        let mut streak = ColdStreak::default();
        // One call after another, each giving up a wait (8 s) apart.
        let wait = READY_BUDGET_MS;
        assert!(!streak.gave_up(0) && !streak.gave_up(wait), "a cold start or two");
        assert!(streak.gave_up(2 * wait) && streak.gave_up(3 * wait));
        streak.reached();
        assert!(!streak.gave_up(4 * wait), "counted again from the start");
    }

    #[test]
    fn calls_that_waited_on_one_start_count_once_but_steady_traffic_keeps_counting() {
        let mut streak = ColdStreak::default();
        // A burst of seven calls during one slow start, 300 ms apart.
        let counted = (0..7).filter(|i| streak.gave_up(i * 300)).count();
        assert_eq!((counted, streak.give_ups), (0, 1), "the burst counts once");
        // A container that never listens, under overlapping calls (one
        // giving up every second): it still reaches the breaker.
        let mut streak = ColdStreak::default();
        let failures = (0..30).filter(|s| streak.gave_up(s * 1_000)).count();
        assert!(failures >= 5, "{failures} failures in 30 s of give-ups");
    }
}
