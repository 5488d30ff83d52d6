//! The search bench's corpus: synthetic text with the statistics of real
//! text, so that search cost is measured on a realistic shape.
//!
//! The pipeline bench's documents (`support::document`) draw every word from
//! 20, so every query term is in every document and a keyword search ranks
//! the whole corpus; real text follows Zipf's law and most terms are in few
//! documents. Here, words are pseudo-words ranked by frequency (30,000 of
//! them, Zipf exponent 1), documents mix English function words (about 40% of
//! running text, as in English) with content words, and each of 12 topics
//! over-uses its own 300 words, the way a subject's vocabulary does.
//! Everything is a pure function of its seed: runs and resumed runs (`search
//! --state`) generate the same documents and queries.
//!
//! The queries mix single words, topic pairs and sentences; the
//! "head terms" queries use only the most frequent content words, which are
//! in nearly every document: the keyword search's worst case, reported apart.

use std::sync::OnceLock;

pub const TOPICS: &[&str] = &["astronomy", "cooking", "finance", "gardening", "medicine", "music", "oceans", "robotics", "sports", "travel", "weather", "history"];

const VOCABULARY: usize = 30_000;
const TOPIC_WORDS: usize = 300;
const FUNCTION_WORDS: &[&str] = &["the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "with", "as", "was", "on", "by", "at", "from", "this", "be", "or"];

struct Model {
    words: Vec<String>,
    /// Cumulative Zipf weights over `words` (rank order).
    cdf: Vec<f64>,
    /// Per topic: ranks of its own words.
    topic_words: Vec<Vec<usize>>,
}

fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let words = vocabulary();
        let mut cdf = Vec::with_capacity(words.len());
        let mut sum = 0.0;
        for r in 0..words.len() {
            sum += 1.0 / (r as f64 + 1.0);
            cdf.push(sum);
        }
        let topic_words = (0..TOPICS.len())
            .map(|t| {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                // From the middle of the frequency range: topic words are
                // neither everywhere nor unique.
                (0..TOPIC_WORDS).map(|_| 200 + next(&mut seed) as usize % (VOCABULARY / 3)).collect()
            })
            .collect();
        Model { words, cdf, topic_words }
    })
}

fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

fn unit(seed: &mut u64) -> f64 {
    next(seed) as f64 / (1u64 << 31) as f64
}

/// Distinct pronounceable pseudo-words ("tavo", "krenimal"), shortest first,
/// so the frequent words are the short ones, as in natural languages.
fn vocabulary() -> Vec<String> {
    const ONSETS: &[&str] = &["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr", "pl", "sh"];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou"];
    const CODAS: &[&str] = &["", "", "n", "r", "l", "s", "m"];
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(VOCABULARY);
    let mut seed = 7u64;
    let mut syllables = 2;
    while out.len() < VOCABULARY {
        for _ in 0..VOCABULARY * 2 {
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(ONSETS[next(&mut seed) as usize % ONSETS.len()]);
                w.push_str(VOWELS[next(&mut seed) as usize % VOWELS.len()]);
                w.push_str(CODAS[next(&mut seed) as usize % CODAS.len()]);
            }
            if !FUNCTION_WORDS.contains(&w.as_str()) && seen.insert(w.clone()) {
                out.push(w);
                if out.len() == VOCABULARY {
                    break;
                }
            }
        }
        syllables += 1;
    }
    out
}

fn zipf_rank(m: &Model, seed: &mut u64) -> usize {
    let x = unit(seed) * m.cdf[m.cdf.len() - 1];
    m.cdf.partition_point(|c| *c < x).min(m.words.len() - 1)
}

fn content_word(m: &Model, topic: usize, seed: &mut u64) -> usize {
    if unit(seed) < 0.3 {
        // A topic word, itself Zipf-distributed within the topic's list.
        let list = &m.topic_words[topic];
        let i = zipf_rank(m, seed) % list.len();
        list[i]
    } else {
        zipf_rank(m, seed)
    }
}

fn topic_index(topic: &str) -> usize {
    TOPICS.iter().position(|t| *t == topic).unwrap_or(0)
}

/// A document of about `bytes` bytes on `topic`, varied by `seed`.
pub fn document(topic: &str, seed: usize, bytes: usize) -> String {
    let m = model();
    let t = topic_index(topic);
    let mut s = (seed as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5851_f42d;
    let mut out = String::with_capacity(bytes + 64);
    while out.len() < bytes {
        let len = 8 + next(&mut s) as usize % 14;
        for i in 0..len {
            let w = if unit(&mut s) < 0.4 {
                FUNCTION_WORDS[zipf_rank(m, &mut s) % FUNCTION_WORDS.len()]
            } else {
                m.words[content_word(m, t, &mut s)].as_str()
            };
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        out.push_str(". ");
    }
    out
}

/// The queries: (text, whether it is a head-terms query).
pub fn queries() -> Vec<(String, bool)> {
    let m = model();
    let mut s = 0xfeed_u64;
    let mut out = Vec::new();
    let mid = |s: &mut u64| m.words[300 + next(s) as usize % 5_000].clone();
    let topical = |t: usize, s: &mut u64| m.words[m.topic_words[t][next(s) as usize % 40]].clone();
    for i in 0..5 {
        out.push((mid(&mut s), false));
        out.push((format!("{} {}", topical(i, &mut s), topical(i, &mut s)), false));
        out.push((format!("{} {} {}", TOPICS[i + 5], topical(i + 5, &mut s), mid(&mut s)), false));
        out.push((format!("the {} of {} and {} in {}", topical(i, &mut s), mid(&mut s), topical(i, &mut s), mid(&mut s)), false));
    }
    for i in 0..4 {
        out.push(((0..2 + i).map(|r| m.words[r * 2 + i % 2].clone()).collect::<Vec<_>>().join(" "), true));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        assert_eq!(document("music", 3, 2048), document("music", 3, 2048));
        assert_ne!(document("music", 3, 2048), document("music", 4, 2048));
        let d = document("oceans", 1, 2048);
        assert!((2048..2400).contains(&d.len()), "{}", d.len());
        assert_eq!(queries(), queries());
    }

    #[test]
    fn word_frequencies_are_skewed_like_text() {
        // Document frequency of a mid-rank word is far below the head's.
        let docs: Vec<String> = (0..300).map(|i| document(TOPICS[i % TOPICS.len()], i, 2048)).collect();
        let df = |w: &str| docs.iter().filter(|d| d.split(|c: char| !c.is_alphanumeric()).any(|x| x.eq_ignore_ascii_case(w))).count();
        let m = model();
        assert!(df(&m.words[0]) > 250, "head word df {}", df(&m.words[0]));
        assert!(df(&m.words[3000]) < 30, "mid word df {}", df(&m.words[3000]));
        assert!(df("the") > 290);
    }
}
