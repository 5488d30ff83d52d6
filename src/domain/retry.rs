//! The one retry engine every stage goes through.
//!
//! A failed attempt is classified (Transient, Terminal, RateLimited) and the
//! engine answers with a decision: try again at an absolute time, or give up
//! (skip when the stage is optional). The wait itself is an alarm set by the
//! actor, never an in-memory sleep, so a backoff survives eviction.

use super::time::{mix64, Millis};
use crate::protocol::{ErrorClass, Stage};

/// Global knobs (vars `RETRY_BASE_MS`, `RETRY_MAX_MS`, `RETRY_MAX_ATTEMPTS`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetryTuning {
    pub base_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
}

impl Default for RetryTuning {
    fn default() -> Self {
        // Ten attempts make a 30% transient fault rate fail a stage with
        // probability 0.3^10 ≈ 6e-6: faults are survived, not gambled on.
        RetryTuning { base_ms: 100, max_ms: 30_000, max_attempts: 10 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: u64,
    pub max_ms: u64,
    /// Longest an attempt may take before it counts as a transient failure.
    pub timeout_ms: u64,
    /// An optional stage is skipped, not failed, when it gives up.
    pub optional: bool,
}

impl RetryPolicy {
    /// A stage's policy: the global tuning, within what its spec says.
    pub fn for_stage(stage: Stage, t: RetryTuning) -> Self {
        let spec = stage.spec();
        RetryPolicy {
            max_attempts: spec.max_attempts.map_or(t.max_attempts, |cap| t.max_attempts.min(cap)),
            base_ms: t.base_ms,
            max_ms: t.max_ms,
            timeout_ms: spec.timeout_ms,
            optional: spec.optional,
        }
    }

    /// The backoff ceiling after `attempt` failures: base·2^(attempt-1), capped.
    pub fn cap_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        self.base_ms.saturating_mul(1u64 << exp).min(self.max_ms).clamp(1, MAX_BACKOFF_MS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    RetryAt { at: Millis, backoff_ms: u64, cap_ms: u64 },
    GiveUp { skip: bool },
}

/// The longest wait before a retry, whatever `RETRY_MAX_MS` or a provider's
/// `Retry-After` says: it keeps the jitter's draw and the alarm's time in range.
pub const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;

/// Decides what follows failed attempt number `attempt` (1-based).
///
/// Transient errors back off exponentially with full jitter (a uniform draw in
/// [0, cap]), which spreads a herd of failing runs instead of syncing them.
/// `seed` makes the draw reproducible.
pub fn decide(policy: &RetryPolicy, attempt: u32, class: ErrorClass, now: Millis, seed: u64) -> RetryDecision {
    let give_up = RetryDecision::GiveUp { skip: policy.optional };
    match class {
        ErrorClass::Terminal => give_up,
        _ if attempt >= policy.max_attempts => give_up,
        ErrorClass::RateLimited { retry_after_ms } => {
            // A provider's `Retry-After` is its word (never less), but not
            // past a day. A limit that holds on (a per-minute window, a model
            // out of capacity) is waited out longer each time, up to the
            // backoff ceiling, with jitter so a herd of limited runs spreads
            // out: the limit outlasts the attempts otherwise.
            let least = retry_after_ms.clamp(1, MAX_BACKOFF_MS);
            let cap = RetryPolicy { base_ms: least, max_ms: policy.max_ms.max(least), ..*policy }.cap_ms(attempt);
            let wait = least + mix64(seed ^ attempt as u64) % (cap - least + 1);
            RetryDecision::RetryAt { at: now + wait as Millis, backoff_ms: wait, cap_ms: cap }
        }
        ErrorClass::Transient => {
            let cap = policy.cap_ms(attempt);
            // +1 so a zero draw still moves the alarm forward (re-arming to "now" is dropped).
            let backoff = mix64(seed ^ attempt as u64) % (cap + 1);
            let backoff = backoff.max(1);
            RetryDecision::RetryAt { at: now + backoff as Millis, backoff_ms: backoff, cap_ms: cap }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_settings_and_retry_after_stay_within_a_day() {
        let p = RetryPolicy { max_attempts: 50, base_ms: u64::MAX, max_ms: u64::MAX, timeout_ms: 1_000, optional: false };
        for attempt in [1, 2, 40, 49] {
            match decide(&p, attempt, ErrorClass::Transient, 1_000, 7) {
                RetryDecision::RetryAt { at, backoff_ms, cap_ms } => {
                    assert_eq!(cap_ms, MAX_BACKOFF_MS);
                    assert!((1..=MAX_BACKOFF_MS).contains(&backoff_ms) && at == 1_000 + backoff_ms as Millis);
                }
                other => panic!("{other:?}"),
            }
        }
        let late = decide(&p, 1, ErrorClass::RateLimited { retry_after_ms: u64::MAX }, 1_000, 7);
        assert_eq!(late, RetryDecision::RetryAt { at: 1_000 + MAX_BACKOFF_MS as Millis, backoff_ms: MAX_BACKOFF_MS, cap_ms: MAX_BACKOFF_MS });
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 5, base_ms: 100, max_ms: 1_000, timeout_ms: 1_000, optional: false }
    }

    #[test]
    fn transient_backs_off_within_a_growing_cap() {
        let p = policy();
        let caps: Vec<u64> = (1..=5).map(|a| p.cap_ms(a)).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000]);
        for attempt in 1..5 {
            for seed in 0..200 {
                match decide(&p, attempt, ErrorClass::Transient, 10_000, seed) {
                    RetryDecision::RetryAt { at, backoff_ms, cap_ms } => {
                        assert_eq!(cap_ms, p.cap_ms(attempt));
                        assert!((1..=cap_ms).contains(&backoff_ms));
                        assert_eq!(at, 10_000 + backoff_ms as i64);
                    }
                    d => panic!("unexpected {d:?}"),
                }
            }
        }
    }

    #[test]
    fn full_jitter_mean_grows_with_attempts() {
        let p = RetryPolicy { max_ms: 1_000_000, ..policy() };
        let mean = |attempt| {
            (0..2000u64)
                .map(|s| match decide(&p, attempt, ErrorClass::Transient, 0, s * 7919) {
                    RetryDecision::RetryAt { backoff_ms, .. } => backoff_ms as f64,
                    _ => 0.0,
                })
                .sum::<f64>()
                / 2000.0
        };
        let (m1, m2, m3) = (mean(1), mean(2), mean(3));
        assert!(m1 < m2 && m2 < m3, "{m1} {m2} {m3}");
        assert!((m2 - 100.0).abs() < 10.0, "full jitter mean is cap/2: {m2}");
    }

    #[test]
    fn gives_up_after_max_attempts_and_on_terminal() {
        let p = policy();
        assert_eq!(decide(&p, 5, ErrorClass::Transient, 0, 1), RetryDecision::GiveUp { skip: false });
        assert_eq!(decide(&p, 1, ErrorClass::Terminal, 0, 1), RetryDecision::GiveUp { skip: false });
        let opt = RetryPolicy { optional: true, ..p };
        assert_eq!(decide(&opt, 5, ErrorClass::Transient, 0, 1), RetryDecision::GiveUp { skip: true });
    }

    #[test]
    fn rate_limited_waits_the_given_time() {
        let d = decide(&policy(), 1, ErrorClass::RateLimited { retry_after_ms: 2_500 }, 1_000, 9);
        assert_eq!(d, RetryDecision::RetryAt { at: 3_500, backoff_ms: 2_500, cap_ms: 2_500 });
    }

    #[test]
    fn a_limit_that_holds_on_is_waited_out_longer_each_time() {
        // The default tuning, and the 2 s a limited model call waits at least.
        let p = RetryPolicy::for_stage(Stage::Summarize, RetryTuning::default());
        let limited = ErrorClass::RateLimited { retry_after_ms: 2_000 };
        let waits: Vec<u64> = (1..p.max_attempts)
            .map(|attempt| match decide(&p, attempt, limited, 0, 42) {
                RetryDecision::RetryAt { backoff_ms, cap_ms, .. } => {
                    assert!((2_000..=cap_ms).contains(&backoff_ms) && cap_ms <= 30_000, "{attempt}: {backoff_ms} of {cap_ms}");
                    backoff_ms
                }
                other => panic!("{other:?}"),
            })
            .collect();
        // Past a per-minute window (Workers AI's limits), not 9 × 2 s.
        assert!(waits.iter().sum::<u64>() > 60_000, "{waits:?}");
        let caps: Vec<u64> = (1..6).map(|a| match decide(&p, a, limited, 0, 1) {
            RetryDecision::RetryAt { cap_ms, .. } => cap_ms,
            other => panic!("{other:?}"),
        }).collect();
        assert_eq!(caps, [2_000, 4_000, 8_000, 16_000, 30_000]);
        assert_eq!(decide(&p, p.max_attempts, limited, 0, 1), RetryDecision::GiveUp { skip: false });
    }

    #[test]
    fn stage_policies_follow_the_tuning_within_their_specs() {
        // The policies from before the stage table, at default tuning.
        let t = RetryTuning::default();
        let required = RetryPolicy { max_attempts: 10, base_ms: 100, max_ms: 30_000, timeout_ms: 30_000, optional: false };
        for s in Stage::ALL {
            let want = match s {
                Stage::Analyze => RetryPolicy { max_attempts: 3, timeout_ms: 10_000, optional: true, ..required },
                _ => required,
            };
            assert_eq!(RetryPolicy::for_stage(s, t), want, "{s}");
        }
        // A spec caps the attempts; it never raises a lower tuning.
        let few = RetryTuning { max_attempts: 2, ..t };
        assert!(Stage::ALL.into_iter().all(|s| RetryPolicy::for_stage(s, few).max_attempts == 2));
    }
}
