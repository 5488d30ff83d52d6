//! Shared tokenization: words, sentences, stopwords and a light stemmer.
//!
//! Every other `nlp` module goes through this file so that "what is a word"
//! and "what is a sentence" are decided in exactly one place; chunk
//! boundaries, embedding features, summary scores and keywords then agree
//! with each other.
//!
//! Design choices:
//! - Everything works on byte ranges whose ends are character boundaries
//!   (scanners walk bytes but only stop on ASCII bytes or decoded character
//!   starts), so a range can never split a UTF-8 character.
//! - Han ideographs and kana are emitted as one-character words: those
//!   scripts do not separate words with spaces, and single characters (plus
//!   the bigrams the embedder builds from them) are the usual cheap proxy.
//! - The stemmer is a deliberately small suffix stripper rather than full
//!   Porter: it only has to make plural/singular and common inflections
//!   collide, and it must stay cheap and predictable. Non-ASCII words are
//!   left unstemmed because the rules are English-only.
//! - Hash maps use [`FnvBuildHasher`] instead of std's randomly seeded
//!   hasher: faster for short keys, and no hidden source of randomness.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from state `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// A [`Hasher`] running FNV-1a 64: deterministic and fast for short keys.
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(FNV_OFFSET)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }
}

/// Builds [`FnvHasher`]s.
pub type FnvBuildHasher = BuildHasherDefault<FnvHasher>;
/// A `HashMap` with deterministic FNV hashing.
pub type FnvHashMap<K, V> = HashMap<K, V, FnvBuildHasher>;

/// A word occurrence in the source text.
///
/// The normalized forms borrow from the input whenever no change is needed
/// (lowercase ASCII words, stems that are prefixes of the word), so
/// tokenizing typical English text allocates for only a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// Byte offset of the word's first character in the input.
    pub start: usize,
    /// Byte offset one past the word's last character.
    pub end: usize,
    /// Lowercased word with typographic apostrophes normalized to `'`.
    pub lower: Cow<'a, str>,
    /// [`stem`] of `lower` for content words; empty for other words.
    pub stem: Cow<'a, str>,
    /// True when the word carries meaning (see [`is_content`]).
    pub content: bool,
}

/// Common English function words, sorted (lookups go through a packed
/// index, see [`is_stopword`]).
///
/// Contractions are included with a plain apostrophe because [`normalize`]
/// maps `’` to `'` before lookup.
#[rustfmt::skip]
pub const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "almost", "also", "although",
    "always", "am", "among", "an", "and", "another", "any", "anyone", "anything", "are",
    "aren't", "around", "as", "at", "be", "became", "because", "been", "before", "being",
    "below", "between", "both", "but", "by", "can", "can't", "cannot", "could", "couldn't",
    "did", "didn't", "do", "does", "doesn't", "doing", "don't", "done", "down", "during",
    "each", "either", "else", "enough", "etc", "even", "ever", "every", "few", "for", "from",
    "further", "get", "gets", "got", "had", "hadn't", "has", "hasn't", "have", "haven't",
    "having", "he", "he'd", "he'll", "he's", "her", "here", "here's", "hers", "herself",
    "him", "himself", "his", "how", "how's", "however", "i", "i'd", "i'll", "i'm", "i've",
    "if", "in", "into", "is", "isn't", "it", "it's", "its", "itself", "just", "least", "less",
    "let's", "like", "made", "make", "many", "may", "me", "might", "more", "most", "much",
    "must", "mustn't", "my", "myself", "neither", "never", "no", "nor", "not", "now", "of",
    "off", "often", "on", "once", "one", "only", "or", "other", "others", "otherwise",
    "ought", "our", "ours", "ourselves", "out", "over", "own", "per", "perhaps", "quite",
    "rather", "really", "same", "see", "shall", "shan't", "she", "she'd", "she'll", "she's",
    "should", "shouldn't", "since", "so", "some", "something", "still", "such", "than",
    "that", "that's", "the", "their", "theirs", "them", "themselves", "then", "there",
    "there's", "these", "they", "they'd", "they'll", "they're", "they've", "this", "those",
    "though", "through", "thus", "to", "too", "toward", "towards", "under", "until", "up",
    "upon", "us", "use", "used", "very", "via", "was", "wasn't", "we", "we'd", "we'll",
    "we're", "we've", "well", "were", "weren't", "what", "what's", "whatever", "when",
    "when's", "where", "where's", "whether", "which", "while", "who", "who's", "whom",
    "whose", "why", "why's", "will", "with", "within", "without", "won't", "would",
    "wouldn't", "yet", "you", "you'd", "you'll", "you're", "you've", "your", "yours",
    "yourself", "yourselves",
];

/// Length in bytes of the longest entry in [`STOPWORDS`].
const MAX_STOPWORD_LEN: usize = 10;

/// Lowercased words that end with a period but almost never end a sentence
/// (titles and Latin abbreviations). Sorted for binary search. Ambiguous
/// ones such as "etc." or "Inc." are left to the next-word-is-lowercase rule.
#[rustfmt::skip]
const NON_TERMINAL_ABBREVIATIONS: &[&str] = &[
    "al", "approx", "capt", "cf", "col", "dept", "dr", "e.g", "eg", "est", "ft", "gen", "i.e",
    "ie", "jr", "lt", "messrs", "mr", "mrs", "ms", "mt", "prof", "rev", "sgt", "sr", "st", "vs",
];

/// Abbreviations that only continue the sentence before a number ("No. 5",
/// "Fig. 2"); "the answer is no." must still end a sentence.
const NUMBER_ABBREVIATIONS: &[&str] = &["fig", "figs", "no", "nos", "op", "p", "pp", "vol"];

/// Han ideographs and Japanese kana: scripts written without spaces.
pub fn is_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Combining marks that `char::is_alphanumeric` rejects but which belong to
/// the preceding letter in decomposed text (e.g. `e` + U+0301).
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

fn is_word_char(c: char) -> bool {
    (c.is_alphanumeric() || is_combining_mark(c)) && !is_ideograph(c)
}

/// The character starting at byte `i`, if `i` is a char boundary in range.
#[inline]
fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// Iterator over the byte ranges of the words in a text; see [`word_spans`].
///
/// It walks bytes and only decodes characters outside ASCII, since this runs
/// over every input several times.
#[derive(Debug, Clone)]
pub struct WordSpans<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> WordSpans<'a> {
    /// Scan `text` from the start.
    pub fn new(text: &'a str) -> Self {
        WordSpans { text, pos: 0 }
    }
}

/// Byte classes for the word scanner's fast path.
const SEPARATOR: u8 = 0;
const WORD: u8 = 1;
/// The apostrophe and every non-ASCII byte need character-level rules.
const SPECIAL: u8 = 2;

const BYTE_CLASS: [u8; 256] = {
    let mut table = [SPECIAL; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = if (b as u8).is_ascii_alphanumeric() { WORD } else { SEPARATOR };
        b += 1;
    }
    table[b'\'' as usize] = SPECIAL;
    table
};

impl Iterator for WordSpans<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let text = self.text;
        let bytes = text.as_bytes();
        let len = bytes.len();
        let class = |i: usize| BYTE_CLASS[usize::from(bytes[i])];
        let mut pos = self.pos;
        let mut start: Option<usize> = None;
        let mut prev_word_char = false;
        while pos < len {
            match class(pos) {
                WORD => {
                    start.get_or_insert(pos);
                    pos += 1;
                    while pos < len && class(pos) == WORD {
                        pos += 1;
                    }
                    prev_word_char = true;
                    continue;
                }
                SEPARATOR => {
                    if let Some(s) = start {
                        self.pos = pos + 1;
                        return Some((s, pos));
                    }
                    pos += 1;
                    while pos < len && class(pos) == SEPARATOR {
                        pos += 1;
                    }
                    continue;
                }
                _ => {}
            }
            let Some(c) = char_at(text, pos) else {
                break;
            };
            let i = pos;
            let c_len = c.len_utf8();
            if is_ideograph(c) {
                if let Some(s) = start {
                    // Emit the pending word; the ideograph is next.
                    self.pos = i;
                    return Some((s, i));
                }
                self.pos = i + c_len;
                return Some((i, i + c_len));
            }
            pos += c_len;
            if is_word_char(c) {
                // A leading combining mark has nothing to attach to.
                if start.is_none() && !is_combining_mark(c) {
                    start = Some(i);
                }
                prev_word_char = start.is_some();
                continue;
            }
            if is_apostrophe(c)
                && prev_word_char
                && char_at(text, pos).is_some_and(|n| n.is_alphanumeric() && !is_ideograph(n))
            {
                prev_word_char = false;
                continue;
            }
            if let Some(s) = start {
                self.pos = pos;
                return Some((s, i));
            }
        }
        self.pos = len;
        start.map(|s| (s, len))
    }
}

/// Byte ranges of the words in `text`.
///
/// A word is a run of alphanumeric characters; an apostrophe is kept when it
/// sits between two word characters ("don't", "Curie's"). Each ideograph is
/// its own word.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    WordSpans::new(text).collect()
}

/// Lowercase `word` and map the typographic apostrophe to `'`, borrowing
/// when it is already normalized.
pub fn normalize(word: &str) -> Cow<'_, str> {
    let (mut ascii, mut upper) = (true, false);
    for b in word.bytes() {
        ascii &= b.is_ascii();
        upper |= b.is_ascii_uppercase();
    }
    if ascii {
        if upper {
            Cow::Owned(word.to_ascii_lowercase())
        } else {
            Cow::Borrowed(word)
        }
    } else {
        let mut out = String::with_capacity(word.len());
        for c in word.chars() {
            if c == '\u{2019}' {
                out.push('\'');
            } else {
                out.extend(c.to_lowercase());
            }
        }
        Cow::Owned(out)
    }
}

/// Byte-wise string ordering, identical to `str`'s `Ord`.
///
/// The word lists here are searched for every token, and for such short
/// strings an inlined loop is several times faster than the `memcmp` call
/// behind the standard comparison.
#[inline]
pub fn cmp_str(a: &str, b: &str) -> Ordering {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

/// Whether `word` is in `list`, which must be sorted.
#[inline]
pub fn in_sorted(list: &[&str], word: &str) -> bool {
    list.binary_search_by(|probe| cmp_str(probe, word)).is_ok()
}

/// A word of at most 16 bytes packed into an integer, for cheap equality.
fn pack(word: &str) -> u128 {
    word.bytes().fold(0u128, |k, b| k << 8 | u128::from(b))
}

/// [`STOPWORDS`] grouped by (first byte, length), packed into integers.
/// A lookup is one table index plus a comparison or two; most content words
/// land in an empty group.
struct StopwordIndex {
    groups: Vec<Vec<u128>>,
}

fn group_of(first: u8, len: usize) -> usize {
    usize::from(first & 0x7f) * (MAX_STOPWORD_LEN + 1) + len
}

fn stopword_index() -> &'static StopwordIndex {
    static INDEX: OnceLock<StopwordIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut groups = vec![Vec::new(); 128 * (MAX_STOPWORD_LEN + 1)];
        for w in STOPWORDS {
            groups[group_of(w.as_bytes()[0], w.len())].push(pack(w));
        }
        StopwordIndex { groups }
    })
}

/// Whether a normalized (lowercase) word is an English stopword.
///
/// This runs for nearly every token, hence the grouped integer index
/// instead of a string search.
pub fn is_stopword(lower: &str) -> bool {
    let Some(&first) = lower.as_bytes().first() else {
        return false;
    };
    if lower.len() > MAX_STOPWORD_LEN || !first.is_ascii() {
        return false;
    }
    // Same first byte and length, so packing cannot collide.
    let key = pack(lower);
    stopword_index().groups[group_of(first, lower.len())].contains(&key)
}

/// Whether a normalized word is worth indexing: not a stopword, contains a
/// letter (pure numbers are dropped), and is either at least two characters
/// or a single ideograph.
pub fn is_content(lower: &str) -> bool {
    if lower.is_ascii() {
        return lower.len() >= 2
            && lower.bytes().any(|b| b.is_ascii_alphabetic())
            && !is_stopword(lower);
    }
    let mut chars = lower.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if chars.next().is_none() {
        return is_ideograph(first);
    }
    lower.chars().any(char::is_alphabetic)
}

/// Whether `text` has a word to index, without allocating its tokens: a
/// check that runs before a size limit must cost nothing per word.
pub fn has_words(text: &str) -> bool {
    WordSpans::new(text).next().is_some()
}

/// All words of `text` with their normalized and stemmed forms.
pub fn tokens(text: &str) -> Vec<Token<'_>> {
    // English averages about six bytes per word including the separator.
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    for (start, end) in WordSpans::new(text) {
        let lower = normalize(&text[start..end]);
        let content = is_content(&lower);
        let stem = if !content {
            Cow::Borrowed("")
        } else {
            match &lower {
                Cow::Borrowed(word) => stem_cow(word),
                Cow::Owned(word) => Cow::Owned(stem_cow(word).into_owned()),
            }
        };
        out.push(Token { start, end, lower, stem, content });
    }
    out
}

/// Whether the text between two adjacent words lets them form a phrase:
/// only whitespace and hyphens, so "machine learning" and "state-of-the-art"
/// join but "Paris, France" or "end. Start" do not.
pub fn joins(gap: &str) -> bool {
    gap.chars().all(|c| c.is_whitespace() || matches!(c, '-' | '\u{2010}' | '\u{2011}'))
}

/// Stems of the content words of `text`, in order.
pub fn content_stems(text: &str) -> Vec<String> {
    tokens(text).into_iter().filter(|t| t.content).map(|t| t.stem.into_owned()).collect()
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

fn has_vowel(s: &str) -> bool {
    s.bytes().any(is_vowel)
}

/// Length of `w` without `suffix` if what remains is a plausible stem (at
/// least `min_stem` bytes and containing a vowel).
fn strip(w: &str, suffix: &str, min_stem: usize) -> Option<usize> {
    w.strip_suffix(suffix).filter(|stem| stem.len() >= min_stem && has_vowel(stem)).map(str::len)
}

/// Length of the stem when `w` is an "-es" plural of a sibilant ending
/// ("boxes", "churches", "buses"); `None` otherwise.
fn es_plural_stem_len(w: &str) -> Option<usize> {
    let base = w.strip_suffix("es")?;
    let sibilant = base.ends_with('x')
        || base.ends_with("ch")
        || base.ends_with("sh")
        || base.ends_with('z')
        || (base.ends_with('s') && !base.ends_with("ss"));
    (sibilant && base.len() >= 3).then_some(base.len())
}

/// A light English suffix-stripping stemmer.
///
/// Handles possessives, plurals (-s, -es, -ies), and the suffixes -ization,
/// -ational, -ation, -ness, -ment, -ingly, -edly, -ly, -ful, -ing, -ed, then
/// undoubles a final consonant after -ing/-ed ("running" → "run"), drops a
/// final "e" ("make"/"making" → "mak") and turns a final consonant+"y" into
/// "i" ("study"/"studies" → "studi"). The goal is collisions between forms
/// of one word, not readable stems. Non-ASCII input is returned unchanged.
pub fn stem(word: &str) -> String {
    stem_cow(word).into_owned()
}

/// [`stem`] without allocating when the stem is a prefix of the word,
/// which is every case except the final "y" → "i".
pub fn stem_cow(word: &str) -> Cow<'_, str> {
    if !word.is_ascii() || word.len() <= 3 {
        return Cow::Borrowed(word);
    }
    let mut w = word;
    // Possessives: "curie's" → "curie", "students'" → "students".
    if let Some(base) = w.strip_suffix("'s").or_else(|| w.strip_suffix('\'')) {
        w = base;
    }
    if w.len() <= 3 {
        return Cow::Borrowed(w);
    }

    // Plurals.
    if w.ends_with("sses") {
        w = &w[..w.len() - 2];
    } else if w.ends_with("ies") {
        w = &w[..w.len() - if w.len() > 4 { 2 } else { 1 }];
    } else if let Some(keep) = es_plural_stem_len(w) {
        w = &w[..keep];
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w = &w[..w.len() - 1];
    }

    // Derivational / inflectional suffixes, dispatched on the last letter
    // so only the few candidate suffixes are tried. A replacement such as
    // "-ation" → "-ate" would always be followed by the final-e drop below,
    // so it is written directly as the truncation to "-at".
    let mut verbal = false;
    let mut replaced = false;
    let mut replace = |n: Option<usize>| {
        replaced |= n.is_some();
        n.map(|n| n + 2) // keep "-iz"/"-at"
    };
    let cut = match w.as_bytes().last() {
        Some(b'n') => replace(strip(w, "ization", 3).or_else(|| strip(w, "ation", 3))),
        Some(b'l') => replace(strip(w, "ational", 3)).or_else(|| strip(w, "ful", 3)),
        Some(b's') => strip(w, "ness", 3),
        Some(b't') => strip(w, "ment", 3),
        Some(b'y') => strip(w, "ingly", 3).or_else(|| strip(w, "edly", 3)).or_else(|| {
            // "happily" → "happi", but keep "family" (stem "fami" too short).
            strip(w, "ly", if w.ends_with("ily") { 5 } else { 3 })
        }),
        Some(b'g') => {
            let n = strip(w, "ing", 3);
            verbal = n.is_some();
            n
        }
        // "speed", "agreed": an "eed" ending is not a past tense to strip.
        Some(b'd') if !w.ends_with("eed") => {
            let n = strip(w, "ed", 3);
            verbal = n.is_some();
            n
        }
        _ => None,
    };
    if let Some(n) = cut {
        w = &w[..n];
    }

    let b = w.as_bytes();
    let n = b.len();
    if verbal
        && n >= 4
        && b[n - 1] == b[n - 2]
        && !is_vowel(b[n - 1])
        && !matches!(b[n - 1], b'l' | b's' | b'z')
    {
        w = &w[..n - 1];
    }
    if !replaced && w.len() >= 4 && w.ends_with('e') {
        w = &w[..w.len() - 1];
    }
    let b = w.as_bytes();
    let n = b.len();
    if n > 3 && b[n - 1] == b'y' && !is_vowel(b[n - 2]) {
        let mut owned = String::with_capacity(n);
        owned.push_str(&w[..n - 1]);
        owned.push('i');
        return Cow::Owned(owned);
    }
    Cow::Borrowed(w)
}

/// Trim surrounding whitespace from `text[start..end]`; `None` if nothing is left.
fn trimmed(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let slice = &text[start..end];
    let lead = slice.len() - slice.trim_start().len();
    let inner = slice.trim();
    if inner.is_empty() {
        None
    } else {
        Some((start + lead, start + lead + inner.len()))
    }
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '‼' | '⁇')
}

/// Terminators used by scripts without inter-sentence spaces.
fn is_cjk_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

/// Closing punctuation that belongs to the sentence it follows.
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '」' | '』' | '）')
}

/// Whether the period at byte `dot` ends the word before it as a known
/// non-terminal abbreviation or a single-letter initial ("J. Smith").
/// `next` is the first non-whitespace character after the period.
fn is_abbreviation(text: &str, dot: usize, next: Option<char>) -> bool {
    let before = &text[..dot];
    let word_start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace())
        .map_or(0, |(p, c)| p + c.len_utf8());
    let word = before[word_start..].trim_start_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() || word.len() > 8 {
        return false;
    }
    let lower = word.to_ascii_lowercase();
    if next.is_some_and(|c| c.is_ascii_digit()) && in_sorted(NUMBER_ABBREVIATIONS, &lower) {
        return true;
    }
    let mut it = word.chars();
    if let (Some(c), None) = (it.next(), it.next()) {
        return c.is_uppercase();
    }
    in_sorted(NON_TERMINAL_ABBREVIATIONS, &lower)
}

/// First byte at or after `i` that is not whitespace, and how many newlines
/// were skipped on the way.
fn skip_whitespace(text: &str, mut i: usize) -> (usize, usize) {
    let mut newlines = 0;
    while let Some(c) = char_at(text, i) {
        if !c.is_whitespace() {
            break;
        }
        newlines += usize::from(c == '\n');
        i += c.len_utf8();
    }
    (i, newlines)
}

/// Bytes the sentence scanner must look at: newline, ASCII terminators and
/// the lead bytes of non-ASCII characters (which may be terminators). Every
/// other byte is skipped without decoding.
const SENTENCE_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\n' as usize] = true;
    table[b'.' as usize] = true;
    table[b'!' as usize] = true;
    table[b'?' as usize] = true;
    let mut b = 0xC0;
    while b < 256 {
        table[b] = true;
        b += 1;
    }
    table
};

/// Byte ranges of the sentences in `text`, trimmed of surrounding whitespace.
///
/// Boundaries are:
/// - `.`, `!`, `?`, `…` (with any trailing quotes/brackets) followed by
///   whitespace or end of text; a `.` does not end a sentence after a known
///   abbreviation ("e.g.", "Dr."), a single-letter initial, or when the next
///   word starts lowercase ("approx. five", "3 p.m. today"). Decimals
///   ("3.14") never match because no whitespace follows the dot.
/// - `。！？` immediately (CJK text has no space after them).
/// - A blank line (paragraph break), always.
/// - A single newline when the next line does not start with a lowercase
///   letter, so headings and list items stand alone while hard-wrapped
///   prose continues.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut out = Vec::with_capacity(n / 80 + 1);
    let push = |s: usize, e: usize, out: &mut Vec<(usize, usize)>| {
        if let Some(r) = trimmed(text, s, e) {
            out.push(r);
        }
    };
    let mut start = 0usize;
    let mut i = 0usize;
    while i < n {
        let b = bytes[i];
        if !SENTENCE_BYTE[usize::from(b)] {
            i += 1;
            continue;
        }
        if b == b'\n' {
            let (j, newlines) = skip_whitespace(text, i);
            let next_lower = char_at(text, j).is_some_and(char::is_lowercase);
            if newlines >= 2 || !next_lower {
                push(start, i, &mut out);
                start = j;
            }
            i = j;
            continue;
        }
        let c = if b < 0x80 {
            char::from(b)
        } else if let Some(c) = char_at(text, i) {
            c
        } else {
            break;
        };
        if !is_terminator(c) {
            i += c.len_utf8();
            continue;
        }
        let mut j = i + c.len_utf8();
        let mut only_dots = c == '.';
        while let Some(d) = char_at(text, j) {
            if is_terminator(d) {
                only_dots &= d == '.';
            } else if !is_closer(d) {
                break;
            }
            j += d.len_utf8();
        }
        let boundary = if is_cjk_terminator(c) {
            true
        } else {
            match char_at(text, j) {
                None => true,
                Some(next) if next.is_whitespace() && only_dots => {
                    let next = char_at(text, skip_whitespace(text, j).0);
                    let single_dot = j == i + 1;
                    let continues = next.is_some_and(char::is_lowercase)
                        || (single_dot && is_abbreviation(text, i, next));
                    !continues
                }
                Some(next) => next.is_whitespace(),
            }
        };
        if boundary {
            push(start, j, &mut out);
            start = j;
        }
        i = j;
    }
    push(start, n, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence_texts(text: &str) -> Vec<&str> {
        sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    fn words(text: &str) -> Vec<&str> {
        word_spans(text).into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn has_words_agrees_with_tokens() {
        for text in ["", " \n\t ", "...!?", "\u{1}\u{1}", "a", "  word  ", "日本", "-- x --", "\u{1}é\u{1}"] {
            assert_eq!(has_words(text), !tokens(text).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn cmp_str_matches_std_ordering() {
        let words = ["", "a", "ab", "abc", "b", "ba", "é", "e", "zz", "z", "a'b", "A"];
        for a in words {
            for b in words {
                assert_eq!(cmp_str(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
        assert!(in_sorted(&["a", "b", "c"], "b"));
        assert!(!in_sorted(&["a", "b", "c"], "bb"));
        assert!(!in_sorted(&[], "a"));
    }

    #[test]
    fn lists_are_sorted_and_unique() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(STOPWORDS.iter().map(|w| w.len()).max(), Some(MAX_STOPWORD_LEN));
        assert!(STOPWORDS.iter().all(|w| w.is_ascii() && !w.is_empty()));
        assert!(STOPWORDS.iter().all(|w| is_stopword(w)));
        assert!(!is_stopword("") && !is_stopword("radium") && !is_stopword("thé"));
        assert!(NON_TERMINAL_ABBREVIATIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(NUMBER_ABBREVIATIONS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn words_keep_inner_apostrophes_only() {
        assert_eq!(
            words("Don't stop, 'quoted' Curie’s rock'n'roll 3.14 x-ray"),
            vec!["Don't", "stop", "quoted", "Curie’s", "rock'n'roll", "3", "14", "x", "ray"]
        );
        assert_eq!(words("it''s"), vec!["it", "s"]);
        assert_eq!(words("  ...  "), Vec::<&str>::new());
    }

    #[test]
    fn ideographs_are_single_words_and_other_scripts_runs() {
        assert_eq!(words("東京タワーabc"), vec!["東", "京", "タ", "ワ", "ー", "abc"]);
        assert_eq!(words("Привет мир café"), vec!["Привет", "мир", "café"]);
        // Decomposed é stays in one word.
        assert_eq!(words("cafe\u{301} ok"), vec!["cafe\u{301}", "ok"]);
    }

    #[test]
    fn fnv_hasher_matches_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = FnvHasher::default();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn normalize_lowercases_and_fixes_apostrophes() {
        assert_eq!(normalize("DON’T"), "don't");
        assert_eq!(normalize("ÉCOLE"), "école");
    }

    #[test]
    fn stopwords_and_content() {
        assert!(is_stopword("the"));
        assert!(is_stopword("don't"));
        assert!(!is_stopword("radium"));
        assert!(is_content("radium"));
        assert!(!is_content("the"));
        assert!(!is_content("1891"));
        assert!(!is_content("x"));
        assert!(is_content("東"));
        assert!(is_content("covid19"));
        assert!(!is_content(""));
    }

    #[test]
    fn stemmer_conflates_inflections() {
        let same = [
            ("cats", "cat"),
            ("boxes", "box"),
            ("churches", "church"),
            ("classes", "class"),
            ("studies", "study"),
            ("running", "run"),
            ("stopped", "stop"),
            ("jumps", "jumped"),
            ("jumping", "jump"),
            ("creation", "create"),
            ("created", "creating"),
            ("quickly", "quick"),
            ("happiness", "happy"),
            ("development", "develop"),
            ("makes", "making"),
            ("curie's", "curie"),
            ("organization", "organize"),
            ("helpful", "help"),
        ];
        for (a, b) in same {
            assert_eq!(stem(a), stem(b), "{a} vs {b}");
        }
        assert_eq!(stem("running"), "run");
        assert_eq!(stem("studies"), "studi");
        assert_eq!(stem("falling"), "fall");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("analysis"), "analysis");
        assert_eq!(stem("family"), "famili");
        assert_eq!(stem("speed"), "speed");
        assert_eq!(stem("string"), "string");
        assert_eq!(stem("thing"), "thing");
        assert_eq!(stem("play"), "play");
        assert_eq!(stem("quick"), "quick");
        assert_eq!(stem("bus"), "bus");
        assert_eq!(stem("naïve"), "naïve");
    }

    #[test]
    fn joins_only_across_space_and_hyphen() {
        assert!(joins(" "));
        assert!(joins(""));
        assert!(joins("-"));
        assert!(joins(" \n "));
        assert!(!joins(", "));
        assert!(!joins(". "));
    }

    #[test]
    fn tokens_mark_content_and_offsets() {
        let text = "The Cats ran";
        let toks = tokens(text);
        assert_eq!(toks.len(), 3);
        assert!(!toks[0].content);
        assert_eq!(toks[1].lower, "cats");
        assert_eq!(toks[1].stem, "cat");
        assert_eq!(toks[0].stem, "");
        // Lowercase ASCII words and prefix stems borrow from the input.
        assert!(matches!(toks[2].stem, Cow::Borrowed(_)));
        assert!(matches!(toks[2].lower, Cow::Borrowed(_)));
        assert_eq!(&text[toks[1].start..toks[1].end], "Cats");
        assert_eq!(content_stems(text), vec!["cat", "ran"]);
    }

    #[test]
    fn sentences_basic_punctuation() {
        assert_eq!(
            sentence_texts("Hello world. How are you? Great!  Fine"),
            vec!["Hello world.", "How are you?", "Great!", "Fine"]
        );
        assert_eq!(
            sentence_texts("He said \"stop.\" Then he left."),
            vec!["He said \"stop.\"", "Then he left."]
        );
        assert_eq!(sentence_texts("Wait?! Really..."), vec!["Wait?!", "Really..."]);
    }

    #[test]
    fn sentences_respect_abbreviations_and_decimals() {
        assert_eq!(
            sentence_texts("Use a metal, e.g. Copper or Iron. Dr. Smith agreed. Pi is 3.14 today."),
            vec!["Use a metal, e.g. Copper or Iron.", "Dr. Smith agreed.", "Pi is 3.14 today."]
        );
        assert_eq!(
            sentence_texts("J. R. R. Tolkien wrote it. It costs approx. five dollars."),
            vec!["J. R. R. Tolkien wrote it.", "It costs approx. five dollars."]
        );
        assert_eq!(
            sentence_texts("It works at Acme Inc. She disagrees."),
            vec!["It works at Acme Inc.", "She disagrees."]
        );
    }

    #[test]
    fn sentences_split_on_paragraphs_and_headings() {
        let text = "# Title\nFirst line wraps\nonto the next. Second.\n\nnew paragraph here";
        assert_eq!(
            sentence_texts(text),
            vec!["# Title", "First line wraps\nonto the next.", "Second.", "new paragraph here"]
        );
        assert_eq!(sentence_texts("- one\n- two\n"), vec!["- one", "- two"]);
    }

    #[test]
    fn sentences_cjk_and_edge_cases() {
        assert_eq!(sentence_texts("你好。世界！好吗？"), vec!["你好。", "世界！", "好吗？"]);
        assert!(sentences("").is_empty());
        assert!(sentences(" \n\t \n").is_empty());
        assert_eq!(sentence_texts("..."), vec!["..."]);
        assert_eq!(sentence_texts("no terminator"), vec!["no terminator"]);
        // Offsets are trimmed and ordered.
        let text = "  Ab.  Cd.  ";
        assert_eq!(sentences(text), vec![(2, 5), (7, 10)]);
        assert_eq!(
            sentence_texts("See No. 5 and Fig. 2 now. The answer is no. Good."),
            vec!["See No. 5 and Fig. 2 now.", "The answer is no.", "Good."]
        );
    }
}
