//! What an isolate remembers of the API keys it looked up: each key's
//! verdict (its principal, or refused) for [`KEY_CACHE_MS`], keyed by the
//! key's SHA-256. A refusal is remembered too, so a client retrying with a
//! revoked or unknown key in a loop costs one catalog read per window, not
//! one per request. Refusals are kept apart from the keys that passed, so a
//! flood of made-up keys never pushes a working one out.

use std::collections::HashMap;

use super::broadcast::KEY_CACHE_MS;
use super::principal::Principal;
use super::time::Millis;

/// Entries per side; when full, expired ones go, then all if none had.
const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct KeyCache {
    passed: HashMap<String, (Principal, Millis)>,
    refused: HashMap<String, Millis>,
}

/// A remembered verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed(Principal),
    Refused,
}

impl KeyCache {
    /// The verdict on the key hashed `hash`, if one younger than
    /// [`KEY_CACHE_MS`] is remembered.
    pub fn get(&self, hash: &str, now: Millis) -> Option<Verdict> {
        let fresh = |at: Millis| now - at < KEY_CACHE_MS;
        if let Some((p, _)) = self.passed.get(hash).filter(|(_, at)| fresh(*at)) {
            return Some(Verdict::Passed(p.clone()));
        }
        self.refused.get(hash).filter(|at| fresh(**at)).map(|_| Verdict::Refused)
    }

    pub fn pass(&mut self, hash: String, p: Principal, now: Millis) {
        make_room(&mut self.passed, now, |(_, at)| *at);
        self.refused.remove(&hash);
        self.passed.insert(hash, (p, now));
    }

    pub fn refuse(&mut self, hash: String, now: Millis) {
        make_room(&mut self.refused, now, |at| *at);
        self.passed.remove(&hash);
        self.refused.insert(hash, now);
    }
}

fn make_room<V>(map: &mut HashMap<String, V>, now: Millis, at: impl Fn(&V) -> Millis) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| now - at(v) < KEY_CACHE_MS);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::Scope;

    #[test]
    fn verdicts_last_one_window() {
        let mut c = KeyCache::default();
        let p = Principal::api_key("a", "k", &[Scope::Read]);
        c.pass("good".into(), p.clone(), 1_000);
        c.refuse("bad".into(), 1_000);
        assert_eq!(c.get("good", 1_000 + KEY_CACHE_MS - 1), Some(Verdict::Passed(p)));
        assert_eq!(c.get("bad", 1_000 + KEY_CACHE_MS - 1), Some(Verdict::Refused));
        assert_eq!(c.get("good", 1_000 + KEY_CACHE_MS), None);
        assert_eq!(c.get("bad", 1_000 + KEY_CACHE_MS), None);
        assert_eq!(c.get("other", 1_000), None);
    }

    #[test]
    fn made_up_keys_never_push_out_a_working_one() {
        let mut c = KeyCache::default();
        let p = Principal::api_key("a", "k", &[Scope::Read]);
        c.pass("good".into(), p.clone(), 0);
        for i in 0..10 * MAX_ENTRIES {
            c.refuse(format!("made-up-{i}"), 1);
        }
        assert!(c.refused.len() <= MAX_ENTRIES);
        assert_eq!(c.get("good", 2), Some(Verdict::Passed(p)));
    }

    #[test]
    fn a_new_verdict_replaces_the_other() {
        let mut c = KeyCache::default();
        let p = Principal::api_key("a", "k", &[Scope::Read]);
        c.pass("k".into(), p, 0);
        c.refuse("k".into(), 1);
        assert_eq!(c.get("k", 2), Some(Verdict::Refused));
    }
}
