//! A circuit breaker for the analyzer. After `threshold` consecutive failures
//! it opens for `cooldown_ms` and refuses calls outright, so a dead analyzer
//! costs a run microseconds instead of a timeout per attempt. After the
//! cool-down one trial call is let through (half-open).

use serde::{Deserialize, Serialize};

use super::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Circuit {
    Closed { failures: u32 },
    Open { until: Millis },
    HalfOpen { trial_started: Millis },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    pub circuit: Circuit,
    pub threshold: u32,
    pub cooldown_ms: i64,
    pub opened_total: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { circuit: Circuit::Closed { failures: 0 }, threshold: 5, cooldown_ms: 10_000, opened_total: 0 }
    }
}

impl Breaker {
    pub fn new(threshold: u32, cooldown_ms: i64) -> Self {
        Breaker { threshold: threshold.max(1), cooldown_ms, ..Default::default() }
    }

    /// Whether a call may go out now; moves Open to HalfOpen once cooled down.
    /// A half-open trial that never reported back is retried after a cool-down.
    pub fn allow(&mut self, now: Millis) -> bool {
        match self.circuit {
            Circuit::Closed { .. } => true,
            Circuit::Open { until } if now >= until => {
                self.circuit = Circuit::HalfOpen { trial_started: now };
                true
            }
            Circuit::Open { .. } => false,
            Circuit::HalfOpen { trial_started } if now - trial_started > self.cooldown_ms => {
                self.circuit = Circuit::HalfOpen { trial_started: now };
                true
            }
            Circuit::HalfOpen { .. } => false,
        }
    }

    pub fn on_success(&mut self) {
        self.circuit = Circuit::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now: Millis) {
        self.circuit = match self.circuit {
            Circuit::Closed { failures } if failures + 1 < self.threshold => Circuit::Closed { failures: failures + 1 },
            _ => {
                self.opened_total += 1;
                Circuit::Open { until: now + self.cooldown_ms }
            }
        };
    }

    pub fn retry_after_ms(&self, now: Millis) -> Option<i64> {
        match self.circuit {
            Circuit::Open { until } => Some((until - now).max(0)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_half_open() {
        let mut b = Breaker::new(3, 1000);
        for _ in 0..2 {
            assert!(b.allow(0));
            b.on_failure(0);
        }
        assert!(b.allow(0));
        b.on_failure(100);
        assert_eq!(b.circuit, Circuit::Open { until: 1100 });
        assert!(!b.allow(500));
        assert_eq!(b.retry_after_ms(500), Some(600));
        assert!(b.allow(1100), "trial after cool-down");
        assert!(!b.allow(1101), "only one trial at a time");
        b.on_failure(1200);
        assert!(!b.allow(1300));
        assert!(b.allow(2200));
        b.on_success();
        assert_eq!(b.circuit, Circuit::Closed { failures: 0 });
        assert_eq!(b.opened_total, 2);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let mut b = Breaker::new(2, 1000);
        b.on_failure(0);
        b.on_success();
        b.on_failure(0);
        assert!(matches!(b.circuit, Circuit::Closed { failures: 1 }));
    }
}
