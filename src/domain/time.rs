//! Time as plain `i64` milliseconds since the Unix epoch.
//!
//! Actors read the clock once per callback and pass it down, so the domain
//! never asks for "now" and tests can move time by hand.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Millis = i64;

/// RFC 3339 with milliseconds, as the contract's `ts` fields use.
pub fn rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The furthest ahead an alarm is armed. A wake further off (a token's
/// `exp` in the year 30000) is armed this far ahead and re-armed then: a
/// time past the clock's range would read as 1970 and fire at once, again
/// and again.
pub const ALARM_HORIZON_MS: Millis = 365 * 24 * 3600 * 1000;

/// When an alarm wanted at `at` is armed: `at`, or 1 ms after `now` when
/// `at` is not later (an alarm armed for "now" inside `alarm()` is lost),
/// and no later than [`ALARM_HORIZON_MS`] ahead.
pub fn alarm_after(at: Millis, now: Millis) -> Millis {
    at.min(now.saturating_add(ALARM_HORIZON_MS)).max(now.saturating_add(1))
}

pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

/// A deterministic 64-bit mix (SplitMix64). Jitter and fault injection draw from
/// it with seeds derived from ids, so a replay of the same inputs decides the same.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over bytes, for turning ids into seeds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A uniform draw in [0, 1) from a seed.
pub fn unit(seed: u64) -> f64 {
    (mix64(seed) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let s = rfc3339(1_700_000_000_123);
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_rfc3339(&s), Some(1_700_000_000_123));
    }

    #[test]
    fn an_alarm_is_never_armed_for_now() {
        // An overdue wake (a duty due 1.3 s ago) is armed 1 ms ahead.
        assert_eq!(alarm_after(11_000, 12_300), 12_301);
        assert_eq!(alarm_after(12_300, 12_300), 12_301);
        assert_eq!(alarm_after(12_302, 12_300), 12_302);
        assert_eq!(alarm_after(0, Millis::MAX), Millis::MAX);
    }

    #[test]
    fn a_far_wake_is_armed_within_the_horizon() {
        let now = 1_700_000_000_000;
        for far in [9_000_000_000_000_000, Millis::MAX, now + ALARM_HORIZON_MS + 1] {
            let at = alarm_after(far, now);
            assert_eq!(at, now + ALARM_HORIZON_MS);
            // Representable, so not read as 1970.
            assert!(DateTime::<Utc>::from_timestamp_millis(at).is_some());
        }
        assert_eq!(alarm_after(now + 5_000, now), now + 5_000);
    }

    /// Every actor arms through `actors::alarm_time`, which applies
    /// [`alarm_after`]: a `set_alarm` with a time of its own could be "now".
    #[test]
    fn every_alarm_is_armed_through_alarm_time() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/actors");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                for call in ["storage().set_alarm(", "storage.set_alarm("] {
                    if let Some(at) = line.find(call) {
                        let rest = &line[at + call.len()..];
                        assert!(rest.starts_with("super::alarm_time(") || rest.starts_with("self::alarm_time("), "{}:{}: {line}", path.display(), i + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn unit_is_in_range_and_spread() {
        let draws: Vec<f64> = (0..10_000u64).map(unit).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }
}
