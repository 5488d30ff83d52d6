//! Lexicon-based sentiment scoring.
//!
//! A small VADER-style scorer: it is explainable, needs no model, and its
//! few rules cover the cases that most often flip a naive word count.
//!
//! - Valences come from an embedded lexicon of ~190 positive and ~180
//!   negative English words weighted on VADER's −4..4 scale. Words not
//!   found verbatim are looked up by their [`tokenize::stem`] so "disappoints"
//!   matches "disappoint", but only for stems of four or more letters, where
//!   stems rarely collide with unrelated words ("cars" must not match "care").
//! - Negation: a negator ("not", "never", any "n't" word) among the three
//!   preceding words flips and damps the valence by VADER's −0.74.
//! - Intensifiers ("very", "extremely") add, and downtoners ("slightly")
//!   subtract, 0.293 in the direction of the valence, decaying with distance.
//! - "but" shifts weight to what follows it: ×0.5 before, ×1.5 after,
//!   within the sentence.
//!
//! The sum `s` is squashed to (−1, 1) with VADER's `s / √(s² + 15)`: one
//! clear word gives a moderate score (0.44 for "good") and many words that
//! agree approach ±1, without needing a per-document length normalization.

use std::sync::OnceLock;

use super::tokenize::{self, cmp_str, in_sorted};

/// Result of [`analyze`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentiment {
    /// Overall polarity in [-1, 1].
    pub score: f32,
    /// "positive" (score > 0.05), "negative" (< -0.05) or "neutral".
    pub label: &'static str,
    /// Number of words that contributed positively (after negation).
    pub positive: u32,
    /// Number of words that contributed negatively (after negation).
    pub negative: u32,
}

/// Word valences on VADER's scale, sorted by word for binary search.
#[rustfmt::skip]
const LEXICON: &[(&str, f32)] = &[
    ("abandon", -1.9), ("abundant", 1.5), ("abuse", -3.2), ("abysmal", -3.1),
    ("accident", -2.1), ("accomplish", 1.8), ("accomplished", 1.9), ("achievement", 2.0),
    ("admire", 2.1), ("adorable", 2.2), ("advantage", 1.4), ("affordable", 1.2),
    ("afraid", -2.2), ("aggressive", -1.8), ("agony", -3.0), ("alarming", -2.0),
    ("amazed", 2.2), ("amazing", 2.8), ("anger", -2.7), ("angrily", -2.0), ("angry", -2.3),
    ("annoyed", -1.9), ("annoying", -2.1), ("anxious", -1.7), ("appalling", -3.0),
    ("appealing", 1.7), ("appreciate", 1.9), ("appreciated", 1.9), ("arrogant", -2.2),
    ("ashamed", -2.1), ("atrocious", -3.1), ("awesome", 3.1), ("awful", -2.5), ("bad", -2.5),
    ("beautiful", 2.9), ("beloved", 2.5), ("benefit", 1.6), ("best", 3.2), ("betray", -3.0),
    ("better", 1.9), ("bitter", -1.8), ("blame", -1.4), ("bless", 1.8), ("bliss", 2.7),
    ("boost", 1.4), ("boring", -1.3), ("brave", 2.2), ("breakthrough", 2.0), ("bright", 1.9),
    ("brilliant", 2.8), ("broke", -1.5), ("broken", -2.1), ("bug", -1.0), ("buggy", -1.9),
    ("burden", -1.9), ("calm", 1.3), ("capable", 1.6), ("catastrophe", -3.4),
    ("catastrophic", -3.4), ("celebrate", 2.7), ("chaos", -2.0), ("charming", 2.4),
    ("cheat", -2.1), ("cheer", 2.3), ("cheerful", 2.5), ("clean", 1.7), ("clever", 2.0),
    ("comfort", 1.5), ("comfortable", 1.8), ("complain", -1.5), ("complaint", -1.5),
    ("confident", 2.2), ("confused", -1.3), ("confusing", -1.5), ("convenient", 1.6),
    ("cool", 1.3), ("corrupt", -2.6), ("courage", 2.2), ("crash", -1.7), ("crashed", -1.7),
    ("creative", 1.9), ("crisis", -3.1), ("cruel", -2.8), ("damage", -2.2), ("damaged", -1.9),
    ("danger", -2.4), ("dangerous", -2.1), ("dead", -3.3), ("death", -2.9), ("defeat", -2.0),
    ("defective", -1.9), ("delay", -1.3), ("delayed", -1.3), ("delicious", 2.7),
    ("delight", 2.9), ("delighted", 2.9), ("dependable", 1.8), ("depressed", -2.3),
    ("depressing", -2.2), ("despair", -2.9), ("destroy", -2.6), ("destroyed", -2.6),
    ("difficult", -1.5), ("dirty", -1.9), ("disappoint", -2.3), ("disappointed", -2.3),
    ("disappointing", -2.2), ("disaster", -3.1), ("disgusting", -2.9), ("dislike", -1.6),
    ("dreadful", -2.8), ("dull", -1.7), ("easy", 1.9), ("effective", 2.1), ("efficient", 1.8),
    ("elegant", 2.1), ("enjoy", 2.2), ("enjoyable", 2.3), ("enjoyed", 2.3),
    ("enthusiastic", 2.4), ("error", -1.4), ("evil", -3.4), ("excellence", 3.0),
    ("excellent", 3.2), ("exceptional", 2.8), ("excited", 2.4), ("exciting", 2.2),
    ("expensive", -1.0), ("fabulous", 2.7), ("fail", -2.5), ("failed", -2.3), ("failure", -2.8),
    ("fair", 1.3), ("fake", -2.1), ("fantastic", 2.6), ("fault", -1.7), ("faulty", -1.8),
    ("favorable", 2.1), ("favorite", 2.0), ("fear", -2.2), ("filthy", -2.8), ("fine", 0.8),
    ("flaw", -1.6), ("flawed", -1.8), ("flawless", 2.6), ("fortunate", 1.9), ("fraud", -2.8),
    ("fresh", 1.3), ("friendly", 2.2), ("frustrated", -2.1), ("frustrating", -2.1),
    ("fun", 2.3), ("furious", -2.8), ("gain", 1.4), ("garbage", -2.3), ("generous", 2.3),
    ("gentle", 1.8), ("genuine", 1.6), ("glad", 2.0), ("glorious", 2.4), ("glowing", 2.0),
    ("good", 1.9), ("gorgeous", 3.0), ("grace", 1.8), ("grateful", 2.0), ("great", 3.1),
    ("grief", -2.2), ("gross", -2.1), ("guilty", -1.8), ("happy", 2.7), ("harm", -2.5),
    ("harmful", -2.5), ("harmony", 1.7), ("hate", -2.7), ("hated", -3.2), ("hateful", -3.3),
    ("hatred", -3.0), ("healthy", 1.7), ("hell", -3.6), ("helpful", 1.8), ("heroic", 2.6),
    ("honest", 2.3), ("hope", 1.9), ("hopeful", 2.0), ("hopeless", -2.0), ("horrible", -2.5),
    ("horrific", -3.4), ("hostile", -2.2), ("hostility", -2.3), ("hurt", -2.4), ("ideal", 1.6),
    ("ignorant", -2.0), ("ill", -1.8), ("impressed", 2.1), ("impressive", 2.3),
    ("improve", 1.9), ("improved", 2.1), ("improvement", 2.0), ("inadequate", -1.7),
    ("incompetent", -2.5), ("incredible", 2.5), ("inferior", -2.2), ("injury", -2.4),
    ("innovative", 1.8), ("insecure", -1.8), ("inspire", 2.2), ("inspiring", 2.2),
    ("insult", -2.2), ("intelligent", 2.0), ("interesting", 1.7), ("jealous", -2.0),
    ("joy", 2.8), ("joyful", 2.9), ("kindness", 2.5), ("laugh", 2.3), ("lazy", -1.5),
    ("lie", -1.8), ("lively", 1.8), ("lonely", -1.9), ("lose", -1.7), ("loss", -1.3),
    ("lost", -1.3), ("love", 3.2), ("loved", 2.9), ("lovely", 2.8), ("loves", 2.7),
    ("loving", 2.9), ("loyal", 2.1), ("lucky", 1.9), ("mad", -2.2), ("magnificent", 2.9),
    ("marvelous", 2.9), ("masterpiece", 3.1), ("mediocre", -1.6), ("mess", -1.5),
    ("miserable", -2.2), ("misery", -2.7), ("mistake", -1.4), ("nasty", -2.6), ("neat", 1.5),
    ("negative", -2.7), ("nice", 1.8), ("nightmare", -3.2), ("noisy", -1.3),
    ("optimistic", 1.8), ("outage", -1.9), ("outstanding", 3.0), ("pain", -2.3),
    ("painful", -2.2), ("panic", -2.4), ("paradise", 3.2), ("passion", 2.0), ("pathetic", -2.7),
    ("peace", 2.5), ("peaceful", 2.2), ("perfect", 2.7), ("pleasant", 2.3), ("pleased", 1.9),
    ("pleasing", 2.0), ("pleasure", 2.6), ("polite", 1.9), ("poor", -2.1), ("poorly", -2.0),
    ("popular", 1.8), ("positive", 2.3), ("powerful", 1.8), ("praise", 2.6), ("precious", 2.7),
    ("problem", -1.7), ("productive", 1.6), ("profit", 1.4), ("progress", 1.6),
    ("promising", 2.0), ("proud", 2.1), ("reassuring", 1.9), ("recommend", 1.5),
    ("recommended", 1.6), ("refreshing", 2.2), ("regret", -2.1), ("reject", -1.7),
    ("rejected", -2.1), ("reliable", 1.9), ("relief", 2.1), ("remarkable", 2.3),
    ("respect", 2.1), ("reward", 2.1), ("rich", 2.0), ("robust", 1.6), ("rotten", -2.6),
    ("rude", -2.0), ("ruin", -2.8), ("sad", -2.1), ("sadly", -1.9), ("safe", 1.9),
    ("satisfied", 1.8), ("satisfying", 2.0), ("scam", -2.8), ("scandal", -2.8),
    ("scared", -1.9), ("scary", -2.2), ("secure", 1.4), ("shame", -2.1), ("shocking", -1.7),
    ("sick", -2.3), ("sincere", 1.7), ("slow", -1.2), ("smart", 1.7), ("smile", 2.4),
    ("smooth", 1.2), ("solid", 1.3), ("sorry", -0.8), ("splendid", 2.8), ("stable", 1.2),
    ("stellar", 2.8), ("strong", 2.1), ("stunning", 2.6), ("stupid", -2.4), ("success", 2.7),
    ("successful", 2.8), ("suffer", -2.5), ("suffering", -2.6), ("superb", 3.1),
    ("superior", 2.4), ("support", 1.7), ("supportive", 2.2), ("sweet", 2.0),
    ("terrible", -2.5), ("terrific", 2.9), ("terrified", -3.0), ("thank", 1.5), ("thanks", 1.9),
    ("thoughtful", 1.9), ("threat", -2.4), ("thrilled", 2.6), ("thriving", 2.1),
    ("toxic", -2.6), ("tragedy", -3.4), ("tragic", -3.2), ("tremendous", 2.2),
    ("trouble", -1.7), ("trust", 2.3), ("trusted", 2.1), ("ugly", -2.3), ("unfair", -2.1),
    ("unhappy", -1.8), ("unpleasant", -2.1), ("unreliable", -2.0), ("unstable", -1.5),
    ("upset", -1.6), ("useful", 1.9), ("useless", -1.8), ("valuable", 2.1), ("vibrant", 2.2),
    ("victory", 2.8), ("violent", -2.9), ("vulnerable", -1.4), ("war", -2.9), ("warm", 1.4),
    ("waste", -1.8), ("weak", -1.9), ("welcome", 2.0), ("win", 2.8), ("winner", 2.8),
    ("winning", 2.4), ("wise", 2.0), ("wonderful", 2.7), ("worried", -1.2), ("worry", -1.9),
    ("worse", -2.1), ("worst", -3.1), ("worthless", -1.9), ("worthy", 1.9), ("wow", 2.8),
    ("wrong", -2.1),
];

/// Words that negate what follows, sorted; anything ending in "n't" too.
#[rustfmt::skip]
const NEGATORS: &[&str] = &[
    "cannot", "lack", "lacks", "neither", "never", "no", "nobody", "none", "nor", "not",
    "nothing", "nowhere", "rarely", "seldom", "without",
];

/// Words that strengthen the following sentiment word, sorted.
#[rustfmt::skip]
const BOOSTERS: &[&str] = &[
    "absolutely", "amazingly", "completely", "deeply", "especially", "exceptionally",
    "extremely", "highly", "hugely", "incredibly", "particularly", "pretty", "really",
    "remarkably", "so", "super", "thoroughly", "totally", "truly", "utterly", "very",
];

/// Words that weaken the following sentiment word, sorted.
#[rustfmt::skip]
const DAMPENERS: &[&str] = &[
    "barely", "hardly", "kinda", "marginally", "partly", "scarcely", "slightly", "somewhat",
];

const NEGATION_SCALAR: f32 = -0.74;
const BOOST: f32 = 0.293;
const WINDOW_DECAY: [f32; 3] = [1.0, 0.95, 0.9];
const BEFORE_BUT: f32 = 0.5;
const AFTER_BUT: f32 = 1.5;
const NORMALIZATION_ALPHA: f32 = 15.0;
const NEUTRAL_BAND: f32 = 0.05;
const MIN_STEM_LOOKUP: usize = 4;

/// The lexicon keyed by stem, built once. When several words share a stem
/// the first (alphabetically) wins.
fn stemmed_lexicon() -> &'static [(String, f32)] {
    static TABLE: OnceLock<Vec<(String, f32)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<(String, f32)> = LEXICON
            .iter()
            .map(|&(w, v)| (tokenize::stem(w), v))
            .filter(|(s, _)| s.len() >= MIN_STEM_LOOKUP)
            .collect();
        table.sort_by(|a, b| a.0.cmp(&b.0));
        table.dedup_by(|a, b| a.0 == b.0);
        table
    })
}

/// Valence of a lowercase word, 0.0 if it carries none.
pub fn valence(lower: &str) -> f32 {
    if !tokenize::is_content(lower) {
        return 0.0;
    }
    valence_of(lower, &tokenize::stem_cow(lower))
}

/// Valence of a content word given its precomputed stem.
fn valence_of(lower: &str, stem: &str) -> f32 {
    if let Ok(i) = LEXICON.binary_search_by(|(w, _)| cmp_str(w, lower)) {
        return LEXICON[i].1;
    }
    if stem.len() < MIN_STEM_LOOKUP {
        return 0.0;
    }
    let table = stemmed_lexicon();
    table.binary_search_by(|(s, _)| cmp_str(s, stem)).map_or(0.0, |i| table[i].1)
}

fn is_negator(lower: &str) -> bool {
    lower.ends_with("n't") || in_sorted(NEGATORS, lower)
}

/// Sentiment of `text`.
pub fn analyze(text: &str) -> Sentiment {
    let toks = tokenize::tokens(text);
    let mut sum = 0.0f32;
    let (mut positive, mut negative) = (0u32, 0u32);
    let mut ti = 0usize;
    for (_, end) in tokenize::sentences(text) {
        let first = ti;
        while ti < toks.len() && toks[ti].start < end {
            ti += 1;
        }
        let sentence = &toks[first..ti];
        let but = sentence.iter().position(|t| t.lower == "but");
        for (i, t) in sentence.iter().enumerate() {
            // Lexicon entries are all content words, so the many stopwords
            // skip the lookup.
            if !t.content {
                continue;
            }
            let base = valence_of(&t.lower, &t.stem);
            if base == 0.0 {
                continue;
            }
            let mut v = base;
            let mut negated = false;
            for (d, decay) in WINDOW_DECAY.iter().enumerate() {
                let Some(prev) = i.checked_sub(d + 1).map(|p| sentence[p].lower.as_ref()) else {
                    break;
                };
                if in_sorted(BOOSTERS, prev) {
                    v += base.signum() * BOOST * decay;
                } else if in_sorted(DAMPENERS, prev) {
                    v -= base.signum() * BOOST * decay;
                }
                negated |= is_negator(prev);
            }
            if negated {
                v *= NEGATION_SCALAR;
            }
            match but {
                Some(b) if i < b => v *= BEFORE_BUT,
                Some(b) if i > b => v *= AFTER_BUT,
                _ => {}
            }
            sum += v;
            if v > 0.0 {
                positive = positive.saturating_add(1);
            } else if v < 0.0 {
                negative = negative.saturating_add(1);
            }
        }
    }
    let score = if sum.is_finite() {
        (sum / (sum * sum + NORMALIZATION_ALPHA).sqrt()).clamp(-1.0, 1.0)
    } else {
        sum.signum()
    };
    let label = if score > NEUTRAL_BAND {
        "positive"
    } else if score < -NEUTRAL_BAND {
        "negative"
    } else {
        "neutral"
    };
    Sentiment { score, label, positive, negative }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_balanced() {
        assert!(LEXICON.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(NEGATORS.windows(2).all(|w| w[0] < w[1]));
        assert!(BOOSTERS.windows(2).all(|w| w[0] < w[1]));
        assert!(DAMPENERS.windows(2).all(|w| w[0] < w[1]));
        let pos = LEXICON.iter().filter(|e| e.1 > 0.0).count();
        let neg = LEXICON.iter().filter(|e| e.1 < 0.0).count();
        assert!(pos >= 150 && neg >= 150, "{pos} positive, {neg} negative");
        assert!(LEXICON.iter().all(|e| e.1 != 0.0 && e.1.abs() <= 4.0));
        assert!(
            LEXICON.iter().all(|e| tokenize::is_content(e.0)),
            "lexicon words must be content words"
        );
    }

    #[test]
    fn stems_never_conflict_in_sign() {
        for &(w, v) in LEXICON {
            let s = tokenize::stem(w);
            for &(w2, v2) in LEXICON {
                if tokenize::stem(w2) == s && s.len() >= MIN_STEM_LOOKUP {
                    assert_eq!(v.signum(), v2.signum(), "{w} vs {w2}");
                }
            }
        }
    }

    #[test]
    fn valence_lookup() {
        assert!((valence("good") - 1.9).abs() < 1e-6);
        assert!(valence("disappoints") < 0.0);
        assert!(valence("celebrating") > 0.0);
        assert_eq!(valence("cars"), 0.0);
        assert_eq!(valence("table"), 0.0);
        assert_eq!(valence(""), 0.0);
    }

    #[test]
    fn single_word_known_score() {
        let s = analyze("This is good.");
        let expected = 1.9 / (1.9f32 * 1.9 + 15.0).sqrt();
        assert!((s.score - expected).abs() < 1e-6);
        assert_eq!((s.label, s.positive, s.negative), ("positive", 1, 0));
    }

    #[test]
    fn negation_flips_sign() {
        let s = analyze("This is not good.");
        assert!(s.score < -0.05);
        assert_eq!((s.label, s.positive, s.negative), ("negative", 0, 1));
        assert_eq!(analyze("The food was not bad at all").label, "positive");
        assert_eq!(analyze("I don't love it").label, "negative");
        assert_eq!(analyze("It isn’t terrible").label, "positive");
        // Outside the three-word window the negation no longer applies.
        assert_eq!(analyze("Not that it matters much, good.").label, "positive");
        assert_eq!(analyze("No problem").label, "positive");
    }

    #[test]
    fn intensifiers_and_dampeners() {
        let good = analyze("good").score;
        let very = analyze("very good").score;
        let extremely = analyze("extremely bad").score;
        let slightly = analyze("slightly bad").score;
        assert!(very > good);
        assert!(extremely < analyze("bad").score);
        assert!(slightly > analyze("bad").score && slightly < 0.0);
    }

    #[test]
    fn but_shifts_weight_to_the_second_clause() {
        let s = analyze("The design is great but the battery is terrible.");
        assert_eq!(s.label, "negative");
        assert_eq!((s.positive, s.negative), (1, 1));
        let s = analyze("The battery is terrible but the design is great.");
        assert_eq!(s.label, "positive");
    }

    #[test]
    fn neutral_and_bounded() {
        let s = analyze("The meeting is at noon in room four.");
        assert_eq!((s.score, s.label, s.positive, s.negative), (0.0, "neutral", 0, 0));
        assert_eq!(analyze("").label, "neutral");
        let many = "wonderful ".repeat(10_000);
        let s = analyze(&many);
        assert!(s.score > 0.99 && s.score <= 1.0);
        assert_eq!(s.positive, 10_000);
    }

    #[test]
    fn mixed_review() {
        let review = "I absolutely love this phone. The screen is stunning and the camera is \
            excellent. Battery life is a bit disappointing, though.";
        let s = analyze(review);
        assert_eq!(s.label, "positive");
        assert_eq!((s.positive, s.negative), (3, 1));
        let rant = "Terrible service. The staff were rude and the food was awful. Never again.";
        assert_eq!(analyze(rant).label, "negative");
    }
}
