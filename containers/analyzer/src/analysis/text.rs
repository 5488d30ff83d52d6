//! Tokenization shared by every analysis so that "a word" means the same thing
//! for readability, keyphrases, language detection and fingerprints.

/// Iterator over word tokens of a text, borrowing from it (no allocation).
///
/// A word is a run of alphanumerics. Hyphens between alphanumerics are kept
/// ("state-of-the-art" is one word, as a reader counts it). An apostrophe is
/// kept only before a 1–2 letter tail, which keeps English contractions and
/// possessives whole ("don't", "we're", "john's") while splitting Romance
/// elisions ("l'analyse" -> "l", "analyse") so their articles hit stopwords.
pub struct Words<'a> {
    text: &'a str,
    pos: usize,
}

pub fn words(text: &str) -> Words<'_> {
    Words { text, pos: 0 }
}

pub fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = &self.text[self.pos..];
        let skip = rest.find(char::is_alphanumeric)?;
        let start = self.pos + skip;
        let mut end = start;
        for (off, c) in self.text[start..].char_indices() {
            if c.is_alphanumeric() {
                end = start + off + c.len_utf8();
                continue;
            }
            let after = &self.text[start + off + c.len_utf8()..];
            let joins = if c == '-' {
                after.chars().next().is_some_and(char::is_alphanumeric)
            } else if is_apostrophe(c) {
                short_tail(after)
            } else {
                false
            };
            if !joins {
                break;
            }
        }
        self.pos = end;
        Some(&self.text[start..end])
    }
}

/// True if `s` starts with 1–2 letters followed by a non-alphanumeric or the end.
fn short_tail(s: &str) -> bool {
    let mut letters = 0;
    for c in s.chars() {
        if c.is_alphabetic() {
            letters += 1;
            if letters > 2 {
                return false;
            }
        } else {
            return letters > 0 && !c.is_alphanumeric();
        }
    }
    letters > 0
}

/// Lowercases `word` into `buf` (reused across calls to avoid per-token
/// allocations) and folds the typographic apostrophe to ASCII so "don’t"
/// matches the stopword "don't".
pub fn lower_into<'b>(buf: &'b mut String, word: &str) -> &'b str {
    buf.clear();
    for c in word.chars() {
        if c == '\u{2019}' {
            buf.push('\'');
        } else {
            buf.extend(c.to_lowercase());
        }
    }
    buf.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<&str> {
        words(s).collect()
    }

    #[test]
    fn splits_on_punctuation_and_keeps_joiners() {
        assert_eq!(
            toks("Hello, world! State-of-the-art -- done."),
            ["Hello", "world", "State-of-the-art", "done"]
        );
        assert_eq!(toks("don't we're John's"), ["don't", "we're", "John's"]);
        assert_eq!(toks("l'analyse d’abord"), ["l", "analyse", "d", "abord"]);
        assert_eq!(toks("trailing- 'quoted' x'"), ["trailing", "quoted", "x"]);
        assert_eq!(toks("Über größe 3.14"), ["Über", "größe", "3", "14"]);
        assert!(toks("  ... !!! ").is_empty());
    }

    #[test]
    fn lowercases_and_folds_apostrophe() {
        let mut buf = String::new();
        assert_eq!(lower_into(&mut buf, "Don’T"), "don't");
        assert_eq!(lower_into(&mut buf, "ÜBER"), "über");
    }
}
