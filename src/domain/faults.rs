//! Fault injection (`FAULTS=embed=0.3,analyze=1.0`).
//!
//! A fault is decided from a hash of (run, stage, attempt) rather than a global
//! RNG, so an injected failure is reproducible from the journal.

use super::time::{fnv1a, unit};
use crate::protocol::Stage;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rates: Vec<(Stage, f64)>,
}

impl Faults {
    /// Unknown stages and unparsable rates are ignored: faults are a test aid
    /// and must never take the Worker down.
    pub fn parse(spec: &str) -> Self {
        let rates = spec
            .split(',')
            .filter_map(|part| {
                let (name, rate) = part.split_once('=')?;
                let stage = name.trim().parse::<Stage>().ok()?;
                let rate = rate.trim().parse::<f64>().ok()?;
                rate.is_finite().then_some((stage, rate.clamp(0.0, 1.0)))
            })
            .collect();
        Faults { rates }
    }

    pub fn is_empty(&self) -> bool {
        self.rates.iter().all(|(_, r)| *r == 0.0)
    }

    pub fn probability(&self, stage: Stage) -> f64 {
        self.rates.iter().rev().find(|(s, _)| *s == stage).map(|(_, r)| *r).unwrap_or(0.0)
    }

    /// Whether this attempt of this stage of this run fails.
    pub fn strikes(&self, run_id: &str, stage: Stage, attempt: u32) -> bool {
        let p = self.probability(stage);
        if p <= 0.0 {
            return false;
        }
        let seed = fnv1a(format!("{run_id}/{stage}/{attempt}").as_bytes());
        unit(seed) < p
    }

    pub fn describe(&self) -> String {
        self.rates.iter().map(|(s, r)| format!("{s}={r}")).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_garbage() {
        let f = Faults::parse("embed=0.3, index=1.0,bogus=1,analyze=x,chunk=7");
        assert_eq!(f.probability(Stage::Embed), 0.3);
        assert_eq!(f.probability(Stage::Index), 1.0);
        assert_eq!(f.probability(Stage::Analyze), 0.0);
        assert_eq!(f.probability(Stage::Chunk), 1.0);
        assert!(Faults::parse("").is_empty());
    }

    #[test]
    fn strike_rate_follows_probability() {
        let f = Faults::parse("embed=0.3");
        let hits = (0..10_000).filter(|i| f.strikes(&format!("run-{i}"), Stage::Embed, 1)).count();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(!f.strikes("run", Stage::Index, 1));
        let always = Faults::parse("embed=1.0");
        assert!((1..50).all(|a| always.strikes("r", Stage::Embed, a)));
    }
}
