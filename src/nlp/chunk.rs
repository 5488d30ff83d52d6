//! Sentence-aware chunking for retrieval.
//!
//! Chunks are built from whole sentences so that each embedded chunk reads
//! as coherent text and a fact is never cut in half; the trailing
//! `overlap_sentences` of one chunk are repeated at the start of the next so
//! a question about a boundary still finds both sides. Only a sentence longer
//! than twice the target is split, at whitespace (or, for a single giant
//! "word", at a character boundary), because an unsplittable multi-kilobyte
//! chunk would defeat the size budget downstream.
//!
//! Sizes are measured in characters, not bytes, so CJK and emoji text gets
//! chunks of a comparable amount of content.

use super::tokenize;

/// Default chunk size in characters.
pub const DEFAULT_CHUNK_CHARS: usize = 800;
/// Default number of trailing sentences repeated at the start of the next chunk.
pub const DEFAULT_OVERLAP_SENTENCES: usize = 1;

/// A piece of the input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk in the sequence, from 0.
    pub index: u32,
    /// `input[start..end]`, verbatim.
    pub text: String,
    /// Byte offset into the input.
    pub start: usize,
    /// Byte offset one past the end of the chunk.
    pub end: usize,
}

/// A sentence (or piece of an over-long sentence) with its position in
/// characters, so span lengths are O(1) to compute while packing.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    char_start: usize,
    char_end: usize,
}

/// Split `text` into chunks of about `target_chars` characters.
///
/// Sentences are packed greedily while the chunk stays within
/// `target_chars` (a chunk always takes at least one new sentence, so a
/// single long sentence makes a chunk longer than the target). Each chunk
/// after the first starts with the last `overlap_sentences` sentences of the
/// previous one, but never with all of them, so every chunk adds new text.
/// Empty or whitespace-only input yields no chunks; any other input yields
/// at least one. A `target_chars` of 0 is treated as 1.
pub fn chunk_text(text: &str, target_chars: usize, overlap_sentences: usize) -> Vec<Chunk> {
    let target = target_chars.max(1);
    let units = units(text, target);
    let n = units.len();
    let span = |s: usize, e: usize| units[e - 1].char_end - units[s].char_start;

    let mut chunks = Vec::new();
    let mut first = 0usize;
    let mut covered = 0usize;
    while covered < n {
        let mut end = covered + 1;
        while end < n && span(first, end + 1) <= target {
            end += 1;
        }
        let (start_byte, end_byte) = (units[first].start, units[end - 1].end);
        chunks.push(Chunk {
            index: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            text: text[start_byte..end_byte].to_string(),
            start: start_byte,
            end: end_byte,
        });
        covered = end;
        first = end.saturating_sub(overlap_sentences).max(first + 1);
    }
    chunks
}

/// Sentences of `text`, with any sentence over `2 * target` characters
/// split into pieces of at most `target` characters.
fn units(text: &str, target: usize) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut prev_byte = 0usize;
    let mut prev_char = 0usize;
    let mut add = |start: usize, end: usize, units: &mut Vec<Unit>| {
        let char_start = prev_char + text[prev_byte..start].chars().count();
        let char_end = char_start + text[start..end].chars().count();
        units.push(Unit { start, end, char_start, char_end });
        prev_byte = end;
        prev_char = char_end;
    };
    for (s, e) in tokenize::sentences(text) {
        let len = text[s..e].chars().count();
        if len > target.saturating_mul(2) {
            for (ps, pe) in split_long(text, s, e, target) {
                add(ps, pe, &mut units);
            }
        } else {
            add(s, e, &mut units);
        }
    }
    units
}

/// Split `text[start..end]` at whitespace into pieces of at most `target`
/// characters; a whitespace-free run longer than `target` is cut at
/// character boundaries.
fn split_long(text: &str, start: usize, end: usize, target: usize) -> Vec<(usize, usize)> {
    // (start, end, chars) of each whitespace-free segment, themselves capped.
    let mut segments: Vec<(usize, usize, usize)> = Vec::new();
    let mut seg: Option<(usize, usize)> = None; // (start byte, chars so far)
    for (off, c) in text[start..end].char_indices() {
        let b = start + off;
        if c.is_whitespace() {
            if let Some((s, n)) = seg.take() {
                segments.push((s, b, n));
            }
            continue;
        }
        match &mut seg {
            Some((s, n)) if *n == target => {
                segments.push((*s, b, *n));
                seg = Some((b, 1));
            }
            Some((_, n)) => *n += 1,
            None => seg = Some((b, 1)),
        }
    }
    if let Some((s, n)) = seg {
        segments.push((s, end, n));
    }

    let mut pieces = Vec::new();
    let mut cur: Option<(usize, usize, usize)> = None;
    for (s, e, n) in segments {
        cur = match cur {
            None => Some((s, e, n)),
            Some((cs, ce, cn)) => {
                let joined = cn + text[ce..s].chars().count() + n;
                if joined <= target {
                    Some((cs, e, joined))
                } else {
                    pieces.push((cs, ce));
                    Some((s, e, n))
                }
            }
        };
    }
    if let Some((cs, ce, _)) = cur {
        pieces.push((cs, ce));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(chunks: &[Chunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn empty_and_whitespace_give_no_chunks() {
        assert!(chunk_text("", 100, 1).is_empty());
        assert!(chunk_text(" \n\t  \n", 100, 1).is_empty());
    }

    #[test]
    fn short_text_is_one_chunk() {
        let text = "  One sentence. Another one!  ";
        let chunks = chunk_text(text, DEFAULT_CHUNK_CHARS, DEFAULT_OVERLAP_SENTENCES);
        assert_eq!(
            chunks,
            vec![Chunk { index: 0, text: "One sentence. Another one!".into(), start: 2, end: 28 }]
        );
        assert_eq!(texts(&chunk_text("?", 10, 1)), vec!["?"]);
    }

    #[test]
    fn packs_sentences_with_overlap() {
        // Each sentence is 10 chars; with the separating space two fit in 21.
        let text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc. Dddd dddd. Eeee eeee.";
        let chunks = chunk_text(text, 21, 1);
        assert_eq!(
            texts(&chunks),
            vec![
                "Aaaa aaaa. Bbbb bbbb.",
                "Bbbb bbbb. Cccc cccc.",
                "Cccc cccc. Dddd dddd.",
                "Dddd dddd. Eeee eeee."
            ]
        );
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index as usize, i);
            assert_eq!(&text[c.start..c.end], c.text);
        }
        // Consecutive chunks share exactly the last sentence.
        assert_eq!(chunks[1].start, 11);
        assert_eq!(chunks[0].end, 21);
    }

    #[test]
    fn no_overlap_partitions_the_text() {
        let text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc. Dddd dddd. Eeee eeee.";
        let chunks = chunk_text(text, 21, 0);
        assert_eq!(
            texts(&chunks),
            vec!["Aaaa aaaa. Bbbb bbbb.", "Cccc cccc. Dddd dddd.", "Eeee eeee."]
        );
    }

    #[test]
    fn overlap_never_repeats_a_whole_chunk() {
        let text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc.";
        // Target smaller than a sentence: one sentence per chunk, and an
        // overlap would make the next chunk a superset, so none is added.
        let chunks = chunk_text(text, 10, 3);
        assert_eq!(texts(&chunks), vec!["Aaaa aaaa.", "Bbbb bbbb.", "Cccc cccc."]);
        // Large overlap with larger chunks keeps all but the first sentence.
        let chunks = chunk_text(text, 21, 5);
        assert_eq!(texts(&chunks), vec!["Aaaa aaaa. Bbbb bbbb.", "Bbbb bbbb. Cccc cccc."]);
    }

    #[test]
    fn long_sentence_is_kept_up_to_twice_target() {
        let text = "Short one. This sentence is rather long indeed. End.";
        let chunks = chunk_text(text, 20, 0);
        assert_eq!(
            texts(&chunks),
            vec!["Short one.", "This sentence is rather long indeed.", "End."]
        );
    }

    #[test]
    fn very_long_sentence_is_split_at_whitespace() {
        let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
        let chunks = chunk_text(text, 20, 0);
        assert_eq!(
            texts(&chunks),
            vec!["alpha beta gamma", "delta epsilon zeta", "eta theta iota kappa", "lambda mu"]
        );
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 20));
    }

    #[test]
    fn giant_word_is_cut_at_char_boundaries() {
        let text = "é".repeat(25);
        let chunks = chunk_text(&text, 10, 1);
        let lens: Vec<usize> = chunks.iter().map(|c| c.text.chars().count()).collect();
        assert_eq!(lens, vec![10, 10, 5]);
        assert_eq!(chunks[2].end, text.len());
    }

    #[test]
    fn default_sized_document_covers_all_text() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
        let text = sentence.repeat(60);
        let chunks = chunk_text(&text, DEFAULT_CHUNK_CHARS, DEFAULT_OVERLAP_SENTENCES);
        assert!(chunks.len() > 4);
        assert_eq!(chunks[0].start, 0);
        assert_eq!(chunks.last().map(|c| c.end), Some(text.trim_end().len()));
        for pair in chunks.windows(2) {
            // Overlap of exactly one 63-char sentence plus its trailing space.
            assert_eq!(pair[0].end - pair[1].start, sentence.trim_end().len());
            assert!(pair[0].text.chars().count() <= DEFAULT_CHUNK_CHARS);
        }
    }
}
