//! Model text on its way into an answer: the streamed pieces are coalesced
//! into deltas that end at a sentence end (or, for a long run-on, at a word),
//! never inside a `[n]`, so each delta's citations can be checked on their
//! own before it is committed; a citation naming no retrieved source is
//! dropped from the text.

use std::collections::BTreeSet;

/// A delta without a sentence end is released at a word once it is this long.
pub const DELTA_MAX_CHARS: usize = 240;

/// Collects streamed pieces and releases them as deltas.
#[derive(Debug, Default, Clone)]
pub struct Coalescer {
    pending: String,
}

impl Coalescer {
    /// Adds a piece; returns the text that is ready to be a delta, if any.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.pending.push_str(piece);
        let cut = release_point(&self.pending)?;
        let rest = self.pending.split_off(cut);
        Some(std::mem::replace(&mut self.pending, rest))
    }

    /// Everything still held (the stream has ended).
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then_some(rest)
    }
}

/// Where the pending text can be cut: after the last sentence end (a
/// terminator followed by whitespace, or a newline) outside citations; for a
/// long text without one, before the last whitespace outside citations. A
/// `[` that may still become a citation (only its numbers so far) is cut
/// before; one that cannot is text, so a stray bracket does not hold the
/// rest of the answer back.
fn release_point(text: &str) -> Option<usize> {
    let mut last_sentence = None;
    let mut last_space = None;
    let mut prev = ' ';
    let mut skip_to = 0;
    for (i, c) in text.char_indices() {
        if i < skip_to {
            continue;
        }
        match c {
            '[' => {
                if let Some((_, len)) = parse_citation(&text[i..]) {
                    skip_to = i + len;
                    prev = ']';
                    continue;
                }
                if may_become_citation(&text[i..]) {
                    return last_sentence.filter(|&i| i > 0);
                }
            }
            '\n' => last_sentence = Some(i),
            c if c.is_whitespace() => {
                if matches!(prev, '.' | '!' | '?' | '…' | ':') {
                    last_sentence = Some(i);
                }
                last_space = Some(i);
            }
            _ => {}
        }
        prev = c;
    }
    last_sentence.or_else(|| last_space.filter(|_| text.chars().count() > DELTA_MAX_CHARS)).filter(|&i| i > 0)
}

/// Whether `s`, a `[` and what followed it so far, is the start of a
/// citation still arriving: short, unclosed, and only numbers, ranges and
/// separators inside.
fn may_become_citation(s: &str) -> bool {
    s.len() <= MAX_CITATION_INNER + 1 && s[1..].chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | ' ' | '-' | '–'))
}

/// `text` with every citation checked against `valid` source numbers: a
/// `[n]` (or `[n, m]`) naming no valid source loses those numbers, and an
/// emptied bracket is removed with the space before it. Checked again until
/// nothing changes: a removal can join what is left into a new citation
/// (`[[9]3]` leaves `[3]`).
pub fn check_citations(text: &str, valid: &BTreeSet<u32>) -> String {
    let mut text = check_citations_once(text, valid);
    loop {
        let next = check_citations_once(&text, valid);
        // Each change removes a bracket pair or respells one: it ends.
        if next == text {
            return text;
        }
        text = next;
    }
}

fn check_citations_once(text: &str, valid: &BTreeSet<u32>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (open, end, numbers) in citations(text) {
        out.push_str(&text[at..open]);
        let kept: Vec<String> = numbers.iter().filter(|n| valid.contains(n)).map(u32::to_string).collect();
        if kept.is_empty() {
            while out.ends_with(' ') {
                out.pop();
            }
        } else {
            out.push('[');
            out.push_str(&kept.join(", "));
            out.push(']');
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The citations in `text`, in order: where each starts and ends (bytes)
/// and the numbers it names. A `[` that starts no citation is text.
fn citations(text: &str) -> impl Iterator<Item = (usize, usize, Vec<u32>)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        while let Some(open) = text[at..].find('[').map(|o| at + o) {
            match parse_citation(&text[open..]) {
                Some((numbers, len)) => {
                    at = open + len;
                    return Some((open, at, numbers));
                }
                None => at = open + 1,
            }
        }
        None
    })
}

/// The longest inside of a citation's brackets, in bytes.
const MAX_CITATION_INNER: usize = 40;

/// The widest range a citation may name (`[1-3]` is 1, 2 and 3): a
/// wider one is not taken for a citation.
const MAX_CITATION_RANGE: u32 = 20;

/// The numbers of a citation at the start of `s` (`[3]`, `[1, 2]`, `[1,2]`,
/// and ranges, `[1-3]` or `[1–3]`, as their numbers) and its length in bytes.
fn parse_citation(s: &str) -> Option<(Vec<u32>, usize)> {
    // Only as far as the longest citation reaches: a text of many `[` and
    // no `]` would otherwise be scanned to its end from each one.
    let close = s.bytes().take(MAX_CITATION_INNER + 2).position(|b| b == b']')?;
    let inner = s.get(1..close)?;
    if inner.is_empty() || inner.len() > MAX_CITATION_INNER {
        return None;
    }
    let mut numbers = Vec::new();
    for part in inner.split(',') {
        match part.split_once(['-', '–']) {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?);
                if a > b || b - a > MAX_CITATION_RANGE {
                    return None;
                }
                numbers.extend(a..=b);
            }
            None => numbers.push(part.trim().parse::<u32>().ok()?),
        }
    }
    Some((numbers, close + 1))
}

/// `text` without its claims that cite a withheld source (content since
/// deleted, or that the reader may no longer read). A claim is the text up
/// to and including a citation, and on to its sentence's end when the
/// citation stands inside the sentence (`Per [2], it rose.`); one citing any
/// withheld number is dropped whole, the sentences before its citation too,
/// so nothing it drew from the source stays. Text after the last claim
/// cites nothing and is kept.
pub fn redact(text: &str, withheld: &BTreeSet<u32>) -> String {
    redact_deltas(&[text], withheld).concat()
}

/// Each delta of an answer as [`redact`] leaves the text they join to: a
/// claim may begin in one delta and cite in the next, so the claims are
/// found in the joined text and each delta keeps its bytes outside them.
/// The redacted deltas join to the redacted completed text.
pub fn redact_deltas(deltas: &[&str], withheld: &BTreeSet<u32>) -> Vec<String> {
    let joined = deltas.concat();
    let dropped = withheld_claims(&joined, withheld);
    let mut start = 0;
    deltas
        .iter()
        .map(|d| {
            let (from, to) = (start, start + d.len());
            start = to;
            let mut kept = String::with_capacity(d.len());
            let mut at = from;
            for &(a, b) in dropped.iter().filter(|(a, b)| *a < to && *b > from) {
                kept.push_str(&joined[at..a.max(at)]);
                at = b.min(to);
            }
            kept.push_str(&joined[at.min(to)..to]);
            kept
        })
        .collect()
}

/// The byte ranges of the claims in `text` that cite a withheld number.
fn withheld_claims(text: &str, withheld: &BTreeSet<u32>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if withheld.is_empty() {
        return out;
    }
    // A claim runs from the previous claim's end to its citation's claim
    // end; citations inside that range belong to the same claim.
    let (mut claim_start, mut claim): (usize, Option<(usize, bool)>) = (0, None);
    for (open, end, numbers) in citations(text) {
        let cites = numbers.iter().any(|n| withheld.contains(n));
        let ends = claim_end(text, open, end);
        claim = match claim {
            Some((until, hit)) if open < until => Some((until.max(ends), hit || cites)),
            Some((until, hit)) => {
                if hit {
                    out.push((claim_start, until));
                }
                claim_start = until;
                Some((ends, cites))
            }
            None => Some((ends, cites)),
        };
    }
    if let Some((until, true)) = claim {
        out.push((claim_start, until));
    }
    out
}

/// Where the claim of the citation at `open..end` ends. A citation after a
/// finished sentence (`Tall. [1]`) ends its claim; one inside a sentence
/// (`According to [2], it is tall.`, `Tall [1].`) cites the whole sentence,
/// so the claim runs to the sentence's end (a terminator followed by
/// whitespace or the text's end, or a newline).
fn claim_end(text: &str, open: usize, end: usize) -> usize {
    let is_end = |c: char| matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？');
    if text[..open].trim_end().ends_with(is_end) {
        return end;
    }
    let rest = &text[end..];
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            return end + i;
        }
        if is_end(c) && chars.peek().is_none_or(|(_, next)| next.is_whitespace()) {
            return end + i + c.len_utf8();
        }
    }
    text.len()
}

/// The source numbers cited in `text`.
pub fn cited(text: &str) -> BTreeSet<u32> {
    citations(text).flat_map(|(_, _, numbers)| numbers).collect()
}

/// Whether the text says the sources do not answer the question.
pub fn says_unknown(text: &str) -> bool {
    let lower = text.to_lowercase().replace('’', "'");
    ["don't know", "do not know", "does not contain", "don't contain", "do not contain", "cannot answer", "can't answer"]
        .iter()
        .any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(ns: &[u32]) -> BTreeSet<u32> {
        ns.iter().copied().collect()
    }

    #[test]
    fn claims_citing_a_withheld_source_are_dropped_whole() {
        // The extractive answerer's deltas: a sentence, then its citation.
        let extractive = "The beacon is 31 metres tall. [1] It was lit in 1851. [2] Both are true. [1, 2]";
        assert_eq!(redact(extractive, &valid(&[])), extractive);
        assert_eq!(redact(extractive, &valid(&[1])), " It was lit in 1851. [2]");
        assert_eq!(redact(extractive, &valid(&[2])), "The beacon is 31 metres tall. [1]");
        assert_eq!(redact(extractive, &valid(&[1, 2])), "");
        // A model's style: the citation before the period; uncited text
        // after the last citation stays; a bracket that is no citation is text.
        let generated = "Tall [1]. Old, see [note] and [2]. Nothing else is known.";
        assert_eq!(redact(generated, &valid(&[2])), "Tall [1]. Nothing else is known.");
        assert_eq!(redact(generated, &valid(&[1])), " Old, see [note] and [2]. Nothing else is known.");
        // A citation that opens its sentence cites all of it, up to the
        // sentence's end (not a decimal point), and the citations inside
        // that sentence belong to the same claim.
        let leading = "According to [2], the budget is $4.5M. It rose [1]. Per [2], costs [1] fell\nDone.";
        assert_eq!(redact(leading, &valid(&[2])), " It rose [1].\nDone.");
        assert_eq!(redact(leading, &valid(&[1])), "According to [2], the budget is $4.5M.\nDone.");
        assert_eq!(redact("Per [1], X [2] is Y. Z.", &valid(&[2])), " Z.");
        assert_eq!(redact("Per [3], all of it", &valid(&[3])), "");
        // Deltas are redacted as the text they join to, also when a claim
        // begins in one delta and cites in the next.
        let deltas = ["The beacon is 31 metres tall. [1]", " It was lit in 1851. [2]", " Both are true. [1, 2]"];
        assert_eq!(redact_deltas(&deltas, &valid(&[2])), ["The beacon is 31 metres tall. [1]", "", ""]);
        let split = ["A is tall.", " B is old", " [2]. C is new [1].", " Done."];
        let redacted = redact_deltas(&split, &valid(&[2]));
        assert_eq!(redacted, ["", "", " C is new [1].", " Done."]);
        assert_eq!(redacted.concat(), redact(&split.concat(), &valid(&[2])));
        let multibyte = ["Été é. [1]", " ünï [2]", "。 日本"];
        assert_eq!(redact_deltas(&multibyte, &valid(&[1])).concat(), " ünï [2]。 日本");
        assert_eq!(redact_deltas(&multibyte, &valid(&[2])).concat(), "Été é. [1] 日本");
        assert_eq!(redact_deltas(&["Été é [1] ünï [2] 日本"], &valid(&[2])).concat(), "", "one sentence without an end: all of it");
    }

    #[test]
    fn pieces_are_released_at_sentence_ends_never_inside_a_citation() {
        let mut c = Coalescer::default();
        assert_eq!(c.push("Lisbon is the"), None);
        assert_eq!(c.push(" capital [1"), None);
        assert_eq!(c.push("]. It has"), Some("Lisbon is the capital [1].".to_string()));
        assert_eq!(c.push(" trams [2]."), None, "no whitespace after the end yet");
        assert_eq!(c.push(" Done"), Some(" It has trams [2].".to_string()));
        assert_eq!(c.finish(), Some(" Done".to_string()));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn a_stray_bracket_does_not_hold_the_answer_back() {
        let mut c = Coalescer::default();
        assert_eq!(c.push("A [note. B is y. C is z. D"), Some("A [note. B is y. C is z.".to_string()));
        // One that may still be a citation is waited for.
        assert_eq!(c.push(" is w. E [1, "), Some(" D is w.".to_string()));
        assert_eq!(c.push("2-3]. F"), Some(" E [1, 2-3].".to_string()));
        assert_eq!(c.finish(), Some(" F".to_string()));
    }

    #[test]
    fn ranges_are_citations_of_each_number() {
        // Respelled as their numbers, checked number by number.
        assert_eq!(check_citations("A [1-3]. B [2–3].", &valid(&[1, 2, 3])), "A [1, 2, 3]. B [2, 3].");
        assert_eq!(check_citations("A [1-3].", &valid(&[1, 3])), "A [1, 3].");
        assert_eq!(check_citations("A [7-9].", &valid(&[1])), "A.");
        assert_eq!(cited("X [1, 3-4]."), valid(&[1, 3, 4]));
        // Redacted as the numbers they name.
        assert_eq!(redact("Budget is 4M [2-3]. Lisbon [1].", &valid(&[2])), " Lisbon [1].");
        // Backwards, too wide or not numbers: text.
        assert_eq!(cited("[3-1] [1-99] [a-b] [1-]"), valid(&[]));
    }

    #[test]
    fn a_long_run_on_is_released_at_a_word() {
        let mut c = Coalescer::default();
        let long = "word ".repeat(60);
        let out = c.push(&long).expect("released");
        assert!(out.len() < long.len() && out.ends_with("word"));
        let mut all = out;
        all.push_str(&c.finish().unwrap());
        assert_eq!(all, long);
    }

    #[test]
    fn joined_deltas_are_the_stream() {
        let text = "One [1]. Two: three [2, 3]!\nFour [4]? Five";
        for size in 1..8 {
            let mut c = Coalescer::default();
            let mut out = String::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(size) {
                let piece: String = chunk.iter().collect();
                if let Some(d) = c.push(&piece) {
                    assert!(d.matches('[').count() == d.matches(']').count(), "{d:?}");
                    out.push_str(&d);
                }
            }
            out.push_str(&c.finish().unwrap_or_default());
            assert_eq!(out, text);
        }
    }

    #[test]
    fn citations_to_unknown_sources_are_dropped() {
        let v = valid(&[1, 2]);
        assert_eq!(check_citations("A [1]. B [9]. C [2, 7].", &v), "A [1]. B. C [2].");
        assert_eq!(check_citations("x [0] y", &v), "x y");
        assert_eq!(check_citations("keep [note] and [1,2]", &v), "keep [note] and [1, 2]");
        assert_eq!(check_citations("open [1", &v), "open [1");
        // A removed citation leaves no new one behind ([[9]3] is not [3]).
        assert_eq!(check_citations("A [[9]3].", &v), "A.");
        assert_eq!(check_citations("Lovely [[8]8].", &v), "Lovely.");
        assert_eq!(check_citations("x [[[9]9]9] y [1,2]", &v), "x y [1, 2]");
        assert_eq!(check_citations("Kept [[1]2] as is.", &v), "Kept [[1]2] as is.");
        assert_eq!(check_citations("dollars [[9]1].", &valid(&[])), "dollars.");
        assert_eq!(cited("A [1]. B [3, 2]. [x]"), valid(&[1, 2, 3]));
        // Nesting as deep as a source chunk allows peels to nothing, and a
        // run of `[` with no `]` is text (each looks only as far as a
        // citation can reach).
        let deep = format!("A [{}9{}].", "[".repeat(1_500), "]9".repeat(1_500));
        assert_eq!(check_citations(&deep, &v), "A.");
        let open = format!("B {}", "[".repeat(3_000));
        assert_eq!(check_citations(&open, &v), open);
    }

    #[test]
    fn unknown_answers_are_recognised() {
        assert!(says_unknown("I don't know: none of the sources answers that."));
        assert!(says_unknown("I do not know."));
        assert!(says_unknown("The sources don’t contain that."));
        assert!(!says_unknown("Lisbon is the capital [1]."));
    }
}
