//! A conservative (high) estimate of how many tokens a subword tokenizer
//! (WordPiece, BPE) makes of a text, to keep model inputs under a token cap
//! the service enforces but does not let us truncate to (bge-base: 512).
//!
//! It never runs the real tokenizer (a vocabulary would add megabytes to the
//! Worker); it counts, per piece of text:
//! * whitespace: nothing;
//! * every other non-alphanumeric character (punctuation, code symbols,
//!   CJK ideographs, kana, hangul, emoji, letters outside ASCII): one token
//!   each, as BERT's tokenizer splits each of them off on its own;
//! * a run of ASCII letters: one token per 4 letters, started (common words
//!   are one token, long or rare ones split into pieces);
//! * a run mixing letters and digits, or with an inner capital (`a3f9c2`,
//!   `getUserById`): one token per character, as identifiers and hashes
//!   split into single characters;
//! * a run of digits: one token per 2 digits, started.
//!
//! A byte-level BPE ([`Vocabulary::ByteLevel`], Llama 3's) has no token for
//! a rare character: it may take one per UTF-8 byte (an emoji four), so
//! there a character outside ASCII counts its bytes.

/// How a model's tokenizer treats a character outside ASCII.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vocabulary {
    /// WordPiece (bge): a token of its own.
    WordPiece,
    /// Byte-level BPE (Llama 3): up to a token per UTF-8 byte.
    ByteLevel,
}

impl Vocabulary {
    fn cost(self, c: char) -> usize {
        match self {
            Vocabulary::WordPiece => 1,
            Vocabulary::ByteLevel => c.len_utf8(),
        }
    }
}

/// Estimated tokens of a whole text, for a WordPiece vocabulary.
pub fn estimate_tokens(text: &str) -> usize {
    token_prefix(text, usize::MAX).1
}

/// [`estimate_tokens`] for the vocabulary `vocab`.
pub fn estimate_tokens_in(vocab: Vocabulary, text: &str) -> usize {
    token_prefix_in(vocab, text, usize::MAX).1
}

/// The longest prefix of `text` whose estimate is at most `max_tokens`, cut on
/// a character boundary, with its estimate (WordPiece).
pub fn token_prefix(text: &str, max_tokens: usize) -> (&str, usize) {
    token_prefix_in(Vocabulary::WordPiece, text, max_tokens)
}

/// [`token_prefix`] for the vocabulary `vocab`.
pub fn token_prefix_in(vocab: Vocabulary, text: &str, max_tokens: usize) -> (&str, usize) {
    let mut total = 0usize; // tokens of everything before the current run
    let mut run = Run::default();
    for (at, c) in text.char_indices() {
        if c.is_ascii_alphanumeric() {
            let grown = run.push(c);
            if total + grown.cost() > max_tokens {
                return (&text[..at], total + run.cost());
            }
            run = grown;
            continue;
        }
        total += run.cost();
        run = Run::default();
        if c.is_whitespace() {
            continue;
        }
        let cost = vocab.cost(c);
        if total + cost > max_tokens {
            return (&text[..at], total);
        }
        total += cost;
    }
    (text, total + run.cost())
}

/// A run of ASCII alphanumerics being read.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    len: usize,
    letters: bool,
    digits: bool,
    inner_capital: bool,
    last_lower: bool,
}

impl Run {
    fn push(self, c: char) -> Run {
        Run {
            len: self.len + 1,
            letters: self.letters || c.is_ascii_alphabetic(),
            digits: self.digits || c.is_ascii_digit(),
            inner_capital: self.inner_capital || (self.last_lower && c.is_ascii_uppercase()),
            last_lower: c.is_ascii_lowercase(),
        }
    }

    fn cost(&self) -> usize {
        match (self.letters, self.digits) {
            _ if self.len == 0 => 0,
            (true, true) => self.len,
            (true, false) if self.inner_capital => self.len,
            (true, false) => self.len.div_ceil(4),
            (false, _) => self.len.div_ceil(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_symbols_and_cjk_are_counted_conservatively() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("   \n\t"), 0);
        assert_eq!(estimate_tokens("the cat sat"), 3);
        assert_eq!(estimate_tokens("radioactivity"), 4, "13 letters: 4 pieces at most");
        assert_eq!(estimate_tokens("Hello, world!"), 6);
        assert_eq!(estimate_tokens("東京は日本の首都です。"), 11, "one per CJK character and mark");
        assert_eq!(estimate_tokens("a3f9c2"), 6, "hashes count per character");
        assert_eq!(estimate_tokens("getUserById"), 11, "camelCase counts per character");
        assert_eq!(estimate_tokens("2026"), 2);
        assert_eq!(estimate_tokens("café"), 2, "a non-ASCII letter is its own token");
        assert_eq!(estimate_tokens("fn f(x: u8) -> u8 { x }"), 15);
    }

    #[test]
    fn a_byte_level_vocabulary_counts_rare_characters_by_their_bytes() {
        use Vocabulary::ByteLevel;
        assert_eq!(estimate_tokens_in(ByteLevel, "the cat sat"), 3, "ASCII as before");
        assert_eq!(estimate_tokens_in(ByteLevel, "café"), 3);
        assert_eq!(estimate_tokens_in(ByteLevel, "東京"), 6);
        assert_eq!(estimate_tokens_in(ByteLevel, "🎉🎉"), 8);
        assert_eq!(token_prefix_in(ByteLevel, "🎉🎉", 5), ("🎉", 4));
    }

    #[test]
    fn the_prefix_is_the_longest_that_fits() {
        let text = "alpha beta gamma delta";
        assert_eq!(token_prefix(text, 100), (text, estimate_tokens(text)));
        let (p, n) = token_prefix(text, 4);
        assert_eq!(p, "alpha beta gamm", "a word that would cross the cap is cut");
        assert_eq!(n, 4);
        assert_eq!(token_prefix(text, 0), ("", 0));
        assert_eq!(token_prefix("日本語", 2), ("日本", 2));
        assert_eq!(token_prefix("a, b", 1), ("a", 1));
    }

    #[test]
    fn every_prefix_stays_within_its_cap() {
        let texts = [
            "Marie Curie (1867–1934) won two Nobel prizes; her notes are still radioactive.",
            "let v: Vec<u32> = xs.iter().map(|x| x * 2).collect::<Vec<_>>();",
            "深度学习模型的输入长度有限，长文本必须截断。",
        ];
        for t in texts {
            for cap in 0..=estimate_tokens(t) + 1 {
                let (p, n) = token_prefix(t, cap);
                assert!(n <= cap, "{t:?} cap {cap}");
                assert_eq!(n, estimate_tokens(p), "{t:?} cap {cap}");
                assert!(t.starts_with(p));
            }
        }
    }
}
