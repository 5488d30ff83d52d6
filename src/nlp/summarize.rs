//! Extractive summarization.
//!
//! Picking whole sentences (rather than generating text) is the only
//! approach that is cheap, deterministic and cannot invent facts without a
//! model. Sentences are scored Luhn-style by how much of the document's
//! vocabulary they carry:
//!
//! - each content stem is worth its document frequency divided by the
//!   highest frequency, so the document's main topics dominate;
//! - the sum is divided by √(content words), a middle ground between
//!   rewarding coverage (long sentences) and density (short ones);
//! - early sentences get a decaying bonus (`1 + 0.25/(1+i)`), since
//!   documents usually state their point first;
//! - sentences under 6 or over 40 words are scaled down, as fragments and
//!   run-ons make poor summaries.
//!
//! The chosen sentences are emitted in document order so the summary reads
//! naturally.

use super::tokenize::{self, FnvHashMap};

/// Upper bound on the length of a summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 600;

const POSITION_BONUS: f32 = 0.25;
const MIN_GOOD_WORDS: usize = 6;
const MAX_GOOD_WORDS: usize = 40;

/// Summarize `text` with at most `max_sentences` of its own sentences.
///
/// Texts with no more than `max_sentences` sentences are returned whole
/// (whitespace collapsed). The result never exceeds [`MAX_SUMMARY_CHARS`]
/// characters; a longer one is cut at a word boundary and ends with "…".
pub fn summarize(text: &str, max_sentences: usize) -> String {
    if max_sentences == 0 {
        return String::new();
    }
    let sents = tokenize::sentences(text);
    let chosen: Vec<usize> = if sents.len() <= max_sentences {
        (0..sents.len()).collect()
    } else {
        top_sentences(text, &sents, max_sentences)
    };

    let mut out = String::new();
    // A char is at most 4 bytes, so past this length the cap is certain to
    // apply and the rest of a huge input need not be copied.
    let enough = MAX_SUMMARY_CHARS * 4 + 4;
    'sentences: for i in chosen {
        let (s, e) = sents[i];
        for word in text[s..e].split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
            if out.len() > enough {
                break 'sentences;
            }
        }
    }
    truncate_chars(&out, MAX_SUMMARY_CHARS)
}

/// Indices of the `k` best sentences, in document order.
fn top_sentences(text: &str, sents: &[(usize, usize)], k: usize) -> Vec<usize> {
    let toks = tokenize::tokens(text);
    let mut tf: FnvHashMap<&str, u32> =
        FnvHashMap::with_capacity_and_hasher(toks.len(), Default::default());
    for t in toks.iter().filter(|t| t.content) {
        *tf.entry(t.stem.as_ref()).or_insert(0) += 1;
    }
    let max_tf = tf.values().copied().max().unwrap_or(1).max(1);

    let mut scored: Vec<(f32, usize)> = Vec::with_capacity(sents.len());
    let mut ti = 0usize;
    for (i, &(s, e)) in sents.iter().enumerate() {
        while ti < toks.len() && toks[ti].start < s {
            ti += 1;
        }
        let (mut words, mut content, mut sum) = (0usize, 0usize, 0.0f32);
        while ti < toks.len() && toks[ti].start < e {
            let t = &toks[ti];
            words += 1;
            if t.content {
                content += 1;
                let w = tf.get(t.stem.as_ref()).copied().unwrap_or(0) as f32 / max_tf as f32;
                sum += w;
            }
            ti += 1;
        }
        let score = if content == 0 {
            0.0
        } else {
            let base = sum / (content as f32).sqrt();
            let position = 1.0 + POSITION_BONUS / (1.0 + i as f32);
            let length = if words < MIN_GOOD_WORDS {
                words as f32 / MIN_GOOD_WORDS as f32
            } else if words > MAX_GOOD_WORDS {
                MAX_GOOD_WORDS as f32 / words as f32
            } else {
                1.0
            };
            base * position * length
        };
        scored.push((score, i));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut picked: Vec<usize> = scored.into_iter().take(k).map(|(_, i)| i).collect();
    picked.sort_unstable();
    picked
}

/// Cut `s` to at most `max` characters, preferring a word boundary in the
/// last quarter and marking the cut with "…".
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    // Byte offset of the (max-1)th char leaves room for the ellipsis.
    let cut = s.char_indices().nth(max - 1).map_or(s.len(), |(b, _)| b);
    let head = &s[..cut];
    let head = match head.rfind(char::is_whitespace) {
        Some(p) if head[..p].chars().count() >= max - max / 4 => &head[..p],
        _ => head,
    };
    let mut out = head.trim_end().to_string();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEES: &str = "Honeybees are essential pollinators for many food crops. \
        Farmers rely on honeybees to pollinate almonds, apples and berries. \
        The weather was pleasant last Tuesday. \
        Honeybee colonies have declined sharply because of pesticides, parasites and habitat loss. \
        My cousin enjoys painting. \
        Protecting honeybee colonies from pesticides helps farmers and their crops alike. \
        Lunch was served at noon in the old hall.";

    #[test]
    fn picks_the_key_sentences_in_order() {
        let summary = summarize(BEES, 3);
        assert_eq!(
            summary,
            "Honeybees are essential pollinators for many food crops. \
             Honeybee colonies have declined sharply because of pesticides, parasites and habitat loss. \
             Protecting honeybee colonies from pesticides helps farmers and their crops alike."
        );
    }

    #[test]
    fn single_sentence_summary_is_the_most_central() {
        let summary = summarize(BEES, 1);
        assert!(summary.contains("honeybee") || summary.contains("Honeybee"), "{summary}");
        assert!(!summary.contains("weather"));
    }

    #[test]
    fn short_text_is_returned_whole() {
        assert_eq!(summarize("One.  Two\n\nthree.", 5), "One. Two three.");
        assert_eq!(summarize("Only one sentence here", 1), "Only one sentence here");
        assert_eq!(summarize("", 3), "");
        assert_eq!(summarize("Anything at all.", 0), "");
    }

    #[test]
    fn is_deterministic() {
        assert_eq!(summarize(BEES, 2), summarize(BEES, 2));
    }

    #[test]
    fn output_is_capped_at_a_char_boundary() {
        let sentence = "Émile wrote ünïcödé poetry about honeybees in Zürich cafés. ";
        let text = sentence.repeat(40);
        let summary = summarize(&text, 30);
        assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
        assert!(summary.ends_with('…'));
        assert!(summary.chars().count() > MAX_SUMMARY_CHARS - MAX_SUMMARY_CHARS / 4);
        // The cut lands between words.
        assert!(!summary.trim_end_matches('…').ends_with(' '));
        let head = summary.trim_end_matches('…');
        assert!(text.contains(head));
    }

    #[test]
    fn truncate_without_spaces_cuts_mid_word() {
        let s = "字".repeat(700);
        let t = truncate_chars(&s, 10);
        assert_eq!(t, format!("{}…", "字".repeat(9)));
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
