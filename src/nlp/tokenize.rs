//! Shared tokenization: words, sentences, stopwords and a light stemmer.
//!
//! Every other `nlp` module goes through this file so that "what is a word"
//! and "what is a sentence" are decided in exactly one place; chunk
//! boundaries, embedding features, summary scores and keywords then agree
//! with each other.
//!
//! Design choices:
//! - Everything works on byte ranges produced by `char_indices`, so a range
//!   can never split a UTF-8 character.
//! - Han ideographs and kana are emitted as one-character words: those
//!   scripts do not separate words with spaces, and single characters (plus
//!   the bigrams the embedder builds from them) are the usual cheap proxy.
//! - The stemmer is a deliberately small suffix stripper rather than full
//!   Porter: it only has to make plural/singular and common inflections
//!   collide, and it must stay cheap and predictable. Non-ASCII words are
//!   left unstemmed because the rules are English-only.

/// A word occurrence in the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte offset of the word's first character in the input.
    pub start: usize,
    /// Byte offset one past the word's last character.
    pub end: usize,
    /// Lowercased word with typographic apostrophes normalized to `'`.
    pub lower: String,
    /// [`stem`] of `lower` for content words; a copy of `lower` otherwise.
    pub stem: String,
    /// True when the word carries meaning (see [`is_content`]).
    pub content: bool,
}

/// Common English function words, sorted for binary search.
///
/// Contractions are included with a plain apostrophe because [`normalize`]
/// maps `’` to `'` before lookup.
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

/// Lowercased words that end with a period but almost never end a sentence
/// (titles and Latin abbreviations). Sorted for binary search. Ambiguous
/// ones such as "etc." or "Inc." are left to the next-word-is-lowercase rule.
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

/// Byte ranges of the words in `text`.
///
/// A word is a run of alphanumeric characters; an apostrophe is kept when it
/// sits between two word characters ("don't", "Curie's"). Each ideograph is
/// its own word.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(text.len() / 5 + 1);
    let mut start: Option<usize> = None;
    let mut prev_word_char = false;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if is_ideograph(c) {
            if let Some(s) = start.take() {
                spans.push((s, i));
            }
            spans.push((i, i + c.len_utf8()));
            prev_word_char = false;
        } else if is_word_char(c) {
            // A leading combining mark has nothing to attach to.
            if start.is_none() && !is_combining_mark(c) {
                start = Some(i);
            }
            prev_word_char = start.is_some();
        } else if is_apostrophe(c)
            && start.is_some()
            && prev_word_char
            && iter.peek().is_some_and(|&(_, n)| n.is_alphanumeric() && !is_ideograph(n))
        {
            prev_word_char = false;
        } else {
            if let Some(s) = start.take() {
                spans.push((s, i));
            }
            prev_word_char = false;
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Lowercase `word` and map the typographic apostrophe to `'`.
pub fn normalize(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if c == '\u{2019}' {
            out.push('\'');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Whether a normalized (lowercase) word is an English stopword.
pub fn is_stopword(lower: &str) -> bool {
    STOPWORDS.binary_search(&lower).is_ok()
}

/// Whether a normalized word is worth indexing: not a stopword, contains a
/// letter (pure numbers are dropped), and is either at least two characters
/// or a single ideograph.
pub fn is_content(lower: &str) -> bool {
    let mut chars = lower.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if chars.next().is_none() {
        return is_ideograph(first);
    }
    lower.chars().any(char::is_alphabetic) && !is_stopword(lower)
}

/// All words of `text` with their normalized and stemmed forms.
pub fn tokens(text: &str) -> Vec<Token> {
    word_spans(text)
        .into_iter()
        .map(|(start, end)| {
            let lower = normalize(&text[start..end]);
            let content = is_content(&lower);
            let stem = if content { stem(&lower) } else { lower.clone() };
            Token { start, end, lower, stem, content }
        })
        .collect()
}

/// Whether the text between two adjacent words lets them form a phrase:
/// only whitespace and hyphens, so "machine learning" and "state-of-the-art"
/// join but "Paris, France" or "end. Start" do not.
pub fn joins(gap: &str) -> bool {
    gap.chars().all(|c| c.is_whitespace() || matches!(c, '-' | '\u{2010}' | '\u{2011}'))
}

/// Stems of the content words of `text`, in order.
pub fn content_stems(text: &str) -> Vec<String> {
    tokens(text).into_iter().filter(|t| t.content).map(|t| t.stem).collect()
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

fn has_vowel(s: &str) -> bool {
    s.bytes().any(is_vowel)
}

/// Replace `suffix` with `replacement` if what remains is a plausible stem
/// (at least `min_stem` bytes and containing a vowel).
fn replace_suffix(w: &mut String, suffix: &str, replacement: &str, min_stem: usize) -> bool {
    match w.strip_suffix(suffix) {
        Some(stem) if stem.len() >= min_stem && has_vowel(stem) => {
            let keep = stem.len();
            w.truncate(keep);
            w.push_str(replacement);
            true
        }
        _ => false,
    }
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
    let mut w = word.to_string();
    if !w.is_ascii() || w.len() <= 3 {
        return w;
    }
    // Possessives: "curie's" → "curie", "students'" → "students".
    if w.ends_with("'s") {
        w.truncate(w.len() - 2);
    } else if w.ends_with('\'') {
        w.truncate(w.len() - 1);
    }
    if w.len() <= 3 {
        return w;
    }

    // Plurals.
    if w.ends_with("sses") {
        w.truncate(w.len() - 2);
    } else if w.ends_with("ies") {
        if w.len() > 4 {
            w.truncate(w.len() - 2);
        } else {
            w.truncate(w.len() - 1);
        }
    } else if let Some(keep) = es_plural_stem_len(&w) {
        w.truncate(keep);
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.truncate(w.len() - 1);
    }

    // Derivational / inflectional suffixes; first match wins.
    let mut verbal = false;
    let _ = replace_suffix(&mut w, "ization", "ize", 3)
        || replace_suffix(&mut w, "ational", "ate", 3)
        || replace_suffix(&mut w, "ation", "ate", 3)
        || replace_suffix(&mut w, "ness", "", 3)
        || replace_suffix(&mut w, "ment", "", 3)
        || replace_suffix(&mut w, "ingly", "", 3)
        || replace_suffix(&mut w, "edly", "", 3)
        // "happily" → "happi", but keep "family" (stem "fami" too short).
        || (w.ends_with("ily") && replace_suffix(&mut w, "ly", "", 5))
        || (!w.ends_with("ily") && replace_suffix(&mut w, "ly", "", 3))
        || replace_suffix(&mut w, "ful", "", 3)
        || {
            verbal = replace_suffix(&mut w, "ing", "", 3);
            verbal
        }
        // "speed", "agreed": an "eed" ending is not a past tense to strip.
        || {
            verbal = !w.ends_with("eed") && replace_suffix(&mut w, "ed", "", 3);
            verbal
        };

    let b = w.as_bytes();
    let n = b.len();
    if verbal
        && n >= 4
        && b[n - 1] == b[n - 2]
        && !is_vowel(b[n - 1])
        && !matches!(b[n - 1], b'l' | b's' | b'z')
    {
        w.truncate(n - 1);
    }
    if w.len() >= 4 && w.ends_with('e') {
        w.truncate(w.len() - 1);
    }
    let b = w.as_bytes();
    let n = b.len();
    if n > 3 && b[n - 1] == b'y' && !is_vowel(b[n - 2]) {
        w.truncate(n - 1);
        w.push('i');
    }
    w
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

/// Whether the period at char index `dot` ends the word before it as a
/// known non-terminal abbreviation or a single-letter initial ("J. Smith").
/// `next` is the first non-whitespace character after the period.
fn is_abbreviation(chars: &[(usize, char)], dot: usize, text: &str, next: Option<char>) -> bool {
    let end = chars[dot].0;
    let mut k = dot;
    while k > 0 && !chars[k - 1].1.is_whitespace() {
        k -= 1;
    }
    let word = text[chars.get(k).map_or(end, |c| c.0)..end]
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() {
        return false;
    }
    if word.len() > 8 {
        return false;
    }
    let lower = word.to_ascii_lowercase();
    if next.is_some_and(|c| c.is_ascii_digit())
        && NUMBER_ABBREVIATIONS.binary_search(&lower.as_str()).is_ok()
    {
        return true;
    }
    let mut it = word.chars();
    if let (Some(c), None) = (it.next(), it.next()) {
        return c.is_uppercase();
    }
    NON_TERMINAL_ABBREVIATIONS.binary_search(&lower.as_str()).is_ok()
}

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
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut out = Vec::new();
    let push = |s: usize, e: usize, out: &mut Vec<(usize, usize)>| {
        if let Some(r) = trimmed(text, s, e) {
            out.push(r);
        }
    };
    let n = chars.len();
    let mut start = 0usize;
    let mut i = 0usize;
    while i < n {
        let (b, c) = chars[i];
        if c == '\n' {
            let mut j = i;
            let mut newlines = 0;
            while j < n && chars[j].1.is_whitespace() {
                if chars[j].1 == '\n' {
                    newlines += 1;
                }
                j += 1;
            }
            let next_lower = chars.get(j).is_some_and(|c| c.1.is_lowercase());
            if newlines >= 2 || !next_lower {
                push(start, b, &mut out);
                start = byte_at(j);
            }
            i = j;
            continue;
        }
        if !is_terminator(c) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut only_dots = c == '.';
        while j < n && (is_terminator(chars[j].1) || is_closer(chars[j].1)) {
            if is_terminator(chars[j].1) && chars[j].1 != '.' {
                only_dots = false;
            }
            j += 1;
        }
        let boundary = if is_cjk_terminator(c) {
            true
        } else {
            match chars.get(j) {
                None => true,
                Some(&(_, next)) if next.is_whitespace() => {
                    if only_dots {
                        let mut k = j;
                        while k < n && chars[k].1.is_whitespace() {
                            k += 1;
                        }
                        let next = chars.get(k).map(|c| c.1);
                        let next_lower = next.is_some_and(char::is_lowercase);
                        let single_dot = j == i + 1;
                        !next_lower && !(single_dot && is_abbreviation(&chars, i, text, next))
                    } else {
                        true
                    }
                }
                Some(_) => false,
            }
        };
        if boundary {
            push(start, byte_at(j), &mut out);
            start = byte_at(j);
        }
        i = j;
    }
    push(start, text.len(), &mut out);
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
    fn lists_are_sorted_and_unique() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
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
