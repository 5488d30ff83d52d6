//! Flesch reading ease, Flesch–Kincaid grade and reading time.
//!
//! Both Flesch formulas are calibrated for English; they are still reported
//! for other languages because downstream ranking only compares documents
//! against each other, where a consistent (if biased) measure is enough.

use serde::Serialize;

use super::text::words;

/// Average adult silent reading speed for non-fiction prose.
pub const WORDS_PER_MINUTE: f64 = 230.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readability {
    pub flesch_reading_ease: f64,
    pub flesch_kincaid_grade: f64,
    pub sentences: u32,
    pub words: u32,
    pub syllables: u32,
}

pub fn readability(text: &str) -> Readability {
    let mut word_count = 0u32;
    let mut syllable_count = 0u32;
    for w in words(text) {
        word_count = word_count.saturating_add(1);
        syllable_count = syllable_count.saturating_add(syllables(w));
    }
    let sentences = count_sentences(text);
    if word_count == 0 || sentences == 0 {
        return Readability {
            flesch_reading_ease: 0.0,
            flesch_kincaid_grade: 0.0,
            sentences,
            words: word_count,
            syllables: syllable_count,
        };
    }
    let wps = f64::from(word_count) / f64::from(sentences);
    let spw = f64::from(syllable_count) / f64::from(word_count);
    Readability {
        flesch_reading_ease: round2(206.835 - 1.015 * wps - 84.6 * spw),
        flesch_kincaid_grade: round2(0.39 * wps + 11.8 * spw - 15.59),
        sentences,
        words: word_count,
        syllables: syllable_count,
    }
}

/// Seconds to read `words` words; any non-empty text takes at least a second
/// so clients can treat 0 as "nothing to read".
pub fn reading_time_seconds(words: u32) -> u32 {
    if words == 0 {
        return 0;
    }
    let secs = (f64::from(words) * 60.0 / WORDS_PER_MINUTE).ceil();
    (secs as u32).max(1)
}

/// Abbreviations whose trailing period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd",
    "co", "no", "fig", "approx", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec", "z.b", "bzw", "usw", "ca",
];

/// Counts sentences: runs of `.!?…` followed by whitespace or the end, blank
/// lines (headings and list items rarely carry punctuation), and a trailing
/// unterminated fragment. Periods after known abbreviations, single-letter
/// initials and inside numbers ("3.14") are not boundaries.
pub fn count_sentences(text: &str) -> u32 {
    let chars: Vec<char> = text.chars().collect();
    let mut count = 0u32;
    let mut has_word = false;
    let mut word_start: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            has_word = true;
            if word_start.is_none() {
                word_start = Some(i);
            }
            i += 1;
            continue;
        }
        if matches!(c, '.' | '!' | '?' | '…') {
            let token: String = word_start
                .map(|s| chars[s..i].iter().collect())
                .unwrap_or_default();
            let mut j = i;
            while j < chars.len() && matches!(chars[j], '.' | '!' | '?' | '…') {
                j += 1;
            }
            // Closing quotes/brackets belong to the sentence they end.
            while j < chars.len() && matches!(chars[j], '"' | '\'' | ')' | ']' | '”' | '’' | '»')
            {
                j += 1;
            }
            let at_break = j >= chars.len() || chars[j].is_whitespace();
            let only_period = chars[i..j].iter().all(|&ch| !matches!(ch, '!' | '?' | '…'));
            let abbreviation = only_period && j - i == 1 && is_abbreviation(&token);
            if at_break && has_word && !abbreviation {
                count += 1;
                has_word = false;
            }
            // "e.g." continues the token so the whole abbreviation is matched.
            if c == '.' && !at_break {
                i = j;
                continue;
            }
            word_start = None;
            i = j;
            continue;
        }
        if c == '\n' && has_word {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\n' && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '\n' {
                count += 1;
                has_word = false;
            }
        }
        word_start = None;
        i += 1;
    }
    if has_word {
        count += 1;
    }
    count
}

fn is_abbreviation(token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let mut chars = token.chars();
    if let (Some(first), None) = (chars.next(), chars.next()) {
        // Initials ("J. R. R. Tolkien"); a lone digit ("version 2.") still ends.
        return first.is_alphabetic() && first.is_uppercase();
    }
    let lower = token.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

/// English syllable estimate: vowel groups, minus silent endings, plus a few
/// hiatus patterns. Exact counting needs a pronunciation dictionary; this
/// heuristic is within one syllable for the vast majority of words, which is
/// all the Flesch formulas need since they average over the whole text.
pub fn syllables(word: &str) -> u32 {
    let w: Vec<char> = word
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphabetic())
        .collect();
    if w.is_empty() {
        // Numbers and symbols are read aloud as at least one syllable.
        return u32::from(word.chars().any(|c| c.is_alphanumeric()));
    }
    let s: String = w.iter().collect();
    if let Some(&(_, n)) = EXCEPTIONS.iter().find(|(e, _)| *e == s) {
        return n;
    }
    if w.len() <= 3 {
        return 1;
    }

    let n = w.len();
    let ends = |suffix: &str| s.ends_with(suffix);
    let mut end = n;
    if ends("e") {
        let consonant_le = ends("le") && n > 2 && !is_vowel(w[n - 3], false);
        if !consonant_le {
            end -= 1;
        }
    } else if ends("es") {
        let consonant_les = ends("les") && n > 3 && !is_vowel(w[n - 4], false);
        let sibilant = ["ses", "zes", "xes", "ces", "ges", "ches", "shes"]
            .iter()
            .any(|x| ends(x));
        if consonant_les {
            end -= 1;
        } else if !sibilant {
            end -= 2;
        }
    } else if ends("ed") && !ends("ted") && !ends("ded") {
        end -= 2;
    }

    let stem = &w[..end];
    let mut count = 0u32;
    let mut prev_vowel = false;
    for (i, &c) in stem.iter().enumerate() {
        let v = is_vowel(c, i > 0);
        if v && !prev_vowel {
            count += 1;
        }
        prev_vowel = v;
    }
    // Hiatus: "pi-a-no", "ra-di-o", "ac-tu-al" are two syllables, but not
    // after the consonants that palatalise them ("na-tion", "spe-cial", "qual").
    for i in 1..stem.len().saturating_sub(1) {
        let (p, a, b) = (stem[i - 1], stem[i], stem[i + 1]);
        let split = match (a, b) {
            ('i', 'a' | 'o' | 'u') => !matches!(p, 'c' | 't' | 's' | 'g' | 'x'),
            ('u', 'a' | 'o') => !matches!(p, 'q' | 'g'),
            _ => false,
        };
        if split {
            count += 1;
        }
    }
    // "be-ing", "go-ing", "play-ing": the vowel group swallowed the -ing.
    if n >= 5 && s.ends_with("ing") && is_vowel(w[n - 4], true) {
        count += 1;
    }
    if s.ends_with("sm") {
        count += 1;
    }
    count.max(1)
}

/// Words the heuristic gets wrong often enough to matter in real prose.
const EXCEPTIONS: &[(&str, u32)] = &[
    ("area", 3),
    ("areas", 3),
    ("idea", 3),
    ("ideas", 3),
    ("via", 2),
    ("science", 2),
    ("every", 2),
    ("business", 2),
    ("being", 2),
    ("create", 2),
    ("created", 3),
    ("creates", 2),
    ("people", 2),
    ("the", 1),
];

fn is_vowel(c: char, y_is_vowel: bool) -> bool {
    match c {
        'a' | 'e' | 'i' | 'o' | 'u' => true,
        'y' => y_is_vowel,
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'æ' | 'è' | 'é' | 'ê' | 'ë' | 'ì' | 'í' | 'î' | 'ï'
        | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ù' | 'ú' | 'û' | 'ü' | 'ý' | 'ÿ' => true,
        _ => false,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syllables_of_known_words() {
        let cases = [
            ("cat", 1),
            ("the", 1),
            ("jumps", 1),
            ("jumped", 1),
            ("make", 1),
            ("makes", 1),
            ("queue", 1),
            ("table", 2),
            ("tables", 2),
            ("simple", 2),
            ("people", 2),
            ("over", 2),
            ("lazy", 2),
            ("wanted", 2),
            ("horses", 2),
            ("going", 2),
            ("lion", 2),
            ("nation", 2),
            ("computer", 3),
            ("beautiful", 3),
            ("syllable", 3),
            ("piano", 3),
            ("actual", 3),
            ("radio", 3),
            ("various", 3),
            ("difficulty", 4),
            ("readability", 5),
            ("Hello", 2),
            ("2024", 1),
            ("--", 0),
        ];
        for (word, expected) in cases {
            assert_eq!(syllables(word), expected, "syllables({word:?})");
        }
    }

    #[test]
    fn sentence_boundaries() {
        assert_eq!(count_sentences("One. Two! Three? Four"), 4);
        assert_eq!(
            count_sentences("Dr. Smith paid $3.50 for e.g. tea. Then left..."),
            2
        );
        assert_eq!(count_sentences("J. R. R. Tolkien wrote books."), 1);
        assert_eq!(count_sentences("A heading\n\nBody text here."), 2);
        assert_eq!(count_sentences("\"Really?\" she asked."), 2);
        assert_eq!(count_sentences("..."), 0);
        assert_eq!(count_sentences(""), 0);
    }

    #[test]
    fn flesch_of_known_passages() {
        // 9 words, 1 sentence, 11 syllables.
        let r = readability("The quick brown fox jumps over the lazy dog.");
        assert_eq!((r.words, r.sentences, r.syllables), (9, 1, 11));
        assert!((r.flesch_reading_ease - 94.30).abs() < 0.01, "{r:?}");
        assert!((r.flesch_kincaid_grade - 2.34).abs() < 0.01, "{r:?}");

        // 15 words, 2 sentences, 29 syllables:
        // FRE = 206.835 - 1.015 * 7.5 - 84.6 * 29/15 = 35.66
        // FKGL = 0.39 * 7.5 + 11.8 * 29/15 - 15.59 = 10.15
        let r = readability(
            "Readability formulas estimate the difficulty of a passage. \
             They combine sentence length with word length.",
        );
        assert_eq!((r.words, r.sentences, r.syllables), (15, 2, 29));
        assert!((r.flesch_reading_ease - 35.66).abs() < 0.01, "{r:?}");
        assert!((r.flesch_kincaid_grade - 10.15).abs() < 0.01, "{r:?}");
    }

    #[test]
    fn empty_and_wordless_text() {
        let r = readability("?!");
        assert_eq!((r.words, r.sentences, r.flesch_reading_ease), (0, 0, 0.0));
    }

    #[test]
    fn reading_time() {
        assert_eq!(reading_time_seconds(0), 0);
        assert_eq!(reading_time_seconds(1), 1);
        assert_eq!(reading_time_seconds(230), 60);
        assert_eq!(reading_time_seconds(231), 61);
    }
}
