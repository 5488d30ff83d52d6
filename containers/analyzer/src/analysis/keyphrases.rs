//! RAKE keyphrase extraction (Rose et al., 2010).
//!
//! RAKE needs no corpus statistics, so every document can be scored on its
//! own, which matters for a stateless analysis step: candidates are maximal
//! runs of content words between stopwords and punctuation; each word scores
//! degree/frequency (words that co-occur in longer phrases score higher); a
//! phrase scores the sum of its words.

use std::collections::HashMap;

use serde::Serialize;

use super::stopwords::{lang_index, membership, EN_RAKE_BIT};
use super::text::{is_apostrophe, lower_into, words};

/// Candidates longer than this are dropped (as rake-nltk does): long runs
/// are usually missing-stopword artefacts, e.g. in a language we do not
/// have a list for, not real keyphrases.
pub const MAX_PHRASE_WORDS: usize = 4;

pub const MAX_KEYPHRASES: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keyphrase {
    pub phrase: String,
    pub score: f64,
}

/// Extracts up to `limit` keyphrases, lowercase, best first.
///
/// `lang` selects the stopword list (a code from `stopwords::LANGS`);
/// unknown codes, including "und", fall back to English, the most likely
/// language of short technical text.
pub fn extract(text: &str, lang: &str, limit: usize) -> Vec<Keyphrase> {
    let lang_bit = lang_index(lang).unwrap_or(0);
    let stop_mask = if lang_bit == 0 {
        1 | EN_RAKE_BIT
    } else {
        1u8 << lang_bit
    };

    let mut candidates: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut buf = String::new();
    let flush = |current: &mut Vec<String>, candidates: &mut Vec<Vec<String>>| {
        if !current.is_empty() && current.len() <= MAX_PHRASE_WORDS {
            candidates.push(std::mem::take(current));
        } else {
            current.clear();
        }
    };

    // Single line breaks are just wrapping, but a blank line ends a title,
    // heading or list item even without punctuation.
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut current, &mut candidates);
            continue;
        }
        for (i, fragment) in line.split(is_phrase_delimiter).enumerate() {
            if i > 0 {
                flush(&mut current, &mut candidates);
            }
            for word in words(fragment) {
                let lower = lower_into(&mut buf, word);
                let is_stop = membership(lower) & stop_mask != 0;
                let is_noise = lower.chars().count() < 2 || !lower.chars().any(char::is_alphabetic);
                if is_stop || is_noise {
                    flush(&mut current, &mut candidates);
                } else {
                    current.push(lower.to_owned());
                }
            }
        }
    }
    flush(&mut current, &mut candidates);

    // word -> (frequency, degree)
    let mut stats: HashMap<&str, (u32, u32)> = HashMap::new();
    for phrase in &candidates {
        let len = u32::try_from(phrase.len()).unwrap_or(u32::MAX);
        for w in phrase {
            let entry = stats.entry(w.as_str()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += len;
        }
    }

    // Unique phrases in first-occurrence order, so ties break by position.
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut scored: Vec<Keyphrase> = Vec::new();
    for phrase in &candidates {
        let joined = phrase.join(" ");
        if seen.insert(joined.clone(), ()).is_some() {
            continue;
        }
        let score: f64 = phrase
            .iter()
            .map(|w| {
                let (freq, deg) = stats.get(w.as_str()).copied().unwrap_or((1, 1));
                f64::from(deg) / f64::from(freq.max(1))
            })
            .sum();
        scored.push(Keyphrase {
            phrase: joined,
            score: round3(score),
        });
    }
    // Stable sort keeps first-occurrence order among equal scores.
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(limit);
    scored
}

/// Punctuation ends a candidate phrase; word joiners (hyphen, apostrophe)
/// are handled by the tokenizer and must not split here.
fn is_phrase_delimiter(c: char) -> bool {
    !(c.is_alphanumeric() || c.is_whitespace() || c == '-' || is_apostrophe(c))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example from the RAKE paper (Rose et al., 2010, fig. 1.1).
    const RAKE_PAPER: &str = "Compatibility of systems of linear constraints over the set of \
        natural numbers. Criteria of compatibility of a system of linear Diophantine equations, \
        strict inequations, and nonstrict inequations are considered. Upper bounds for components \
        of a minimal set of solutions and algorithms of construction of minimal generating sets of \
        solutions for all types of systems are given. These criteria and the corresponding \
        algorithms for constructing a minimal supporting set of solutions can be used in solving \
        all the considered types of systems and systems of mixed types.";

    #[test]
    fn reproduces_rake_paper_scores() {
        let got = extract(RAKE_PAPER, "en", 10);
        let top: Vec<(&str, f64)> = got.iter().map(|k| (k.phrase.as_str(), k.score)).collect();
        assert_eq!(
            &top[..3],
            &[
                ("minimal generating sets", 8.667),
                ("linear diophantine equations", 8.5),
                ("minimal supporting set", 7.667),
            ]
        );
        assert_eq!(top[3], ("minimal set", 4.667));
        assert_eq!(top[4], ("linear constraints", 4.5));
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|k| k.phrase == k.phrase.to_lowercase()));
    }

    #[test]
    fn respects_limit_and_drops_noise() {
        let got = extract("The 2024 budget: a b c. Budget cuts!", "en", 1);
        assert_eq!(
            got,
            vec![Keyphrase {
                phrase: "budget cuts".into(),
                score: 3.5
            }]
        );
        assert!(extract("the of and", "en", 10).is_empty());
    }

    #[test]
    fn uses_language_stopwords() {
        let got = extract(
            "Die Analyse der Daten und die Verarbeitung großer Datenmengen",
            "de",
            10,
        );
        let phrases: Vec<&str> = got.iter().map(|k| k.phrase.as_str()).collect();
        assert!(
            phrases.contains(&"verarbeitung großer datenmengen"),
            "{phrases:?}"
        );
        assert!(phrases.contains(&"analyse"), "{phrases:?}");
    }
}
