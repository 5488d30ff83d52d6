//! Hybrid search fusion: combining keyword and vector rankings, collapsing
//! chunk hits to content, and cutting highlighted snippets.
//!
//! Reciprocal rank fusion is used instead of mixing raw scores because BM25
//! scores and cosine similarities live on unrelated scales; ranks are
//! comparable across any retriever, and RRF needs no per-corpus tuning.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::vector::Hit;
use crate::nlp::tokenize::is_stopword;

/// One fused result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedDoc {
    pub content_id: String,
    pub score: f32,
}

/// The RRF damping constant from Cormack et al. (2009): large enough that the
/// top few ranks of one list cannot drown agreement between lists.
pub const RRF_K: f32 = 60.0;

/// Reciprocal rank fusion of any number of ranked lists (best first).
/// Score = Σ 1/(RRF_K + rank) with rank starting at 1. Ties broken by
/// content_id. Returns best first, at most `k`.
///
/// A doc repeated inside one list counts once, at its best (first) rank;
/// later entries keep their positional rank.
pub fn rrf(lists: &[Vec<String>], k: usize) -> Vec<RankedDoc> {
    let weighted: Vec<(&[String], f32)> = lists.iter().map(|l| (l.as_slice(), 1.0)).collect();
    rrf_weighted(&weighted, k)
}

/// [`rrf`] with a weight per list: score = Σ weight/(RRF_K + rank). Lets the
/// caller lean a hybrid search towards keywords or semantics. Lists with a
/// weight that is not a positive finite number are ignored.
pub fn rrf_weighted(lists: &[(&[String], f32)], k: usize) -> Vec<RankedDoc> {
    if k == 0 {
        return Vec::new();
    }
    // Summed in f64 in list order, reported as f32: deterministic, and equal
    // rank patterns (e.g. ranks 1+2 vs 2+1) land on the same f32 and tie.
    let mut scores: HashMap<&str, f64> = HashMap::new();
    for (list, weight) in lists {
        if !(weight.is_finite() && *weight > 0.0) {
            continue;
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(list.len());
        for (i, id) in list.iter().enumerate() {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let rank = i as f64 + 1.0;
            *scores.entry(id.as_str()).or_insert(0.0) += f64::from(*weight) / (f64::from(RRF_K) + rank);
        }
    }
    let mut out: Vec<RankedDoc> =
        scores.into_iter().map(|(id, s)| RankedDoc { content_id: id.to_string(), score: s as f32 }).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.content_id.cmp(&b.content_id)));
    out.truncate(k);
    out
}

/// A content's best vector hit: its score, and the chunk and version it
/// came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHit {
    pub content_id: String,
    pub score: f32,
    pub chunk: u32,
    pub version: u32,
}

impl ContentHit {
    /// The chunk whose text is this hit's passage in the item's indexed
    /// text, if it is that version's ([`text_version`]; `None`: not known,
    /// taken as agreeing). Right after a new version is indexed the old
    /// one's vectors linger a few seconds (Vectorize deletes are
    /// asynchronous), and while a newer version runs its vectors are written
    /// before its text: either way the chunk numbers are not the text's.
    pub fn chunk_of(&self, indexed_version: Option<u32>) -> Option<u32> {
        indexed_version.is_none_or(|v| v == self.version).then_some(self.chunk)
    }
}

/// The version whose text an item's keyword row holds: as the row recorded
/// it, or for a row from before it did (migrations/0007), the item's
/// version once it is `indexed`; not known while a newer version runs.
pub fn text_version(recorded: Option<u32>, item_version: Option<u32>, indexed: bool) -> Option<u32> {
    recorded.or(item_version.filter(|_| indexed))
}

/// Groups chunk hits by content (best chunk score per content, its chunk
/// and version), best first: score descending then content_id ascending.
/// A score tie between chunks of one content goes to the lower chunk number.
/// Hits with a NaN score are ignored.
pub fn group_by_content(hits: &[Hit]) -> Vec<ContentHit> {
    let mut best: HashMap<&str, (f32, u32, u32)> = HashMap::new();
    for h in hits {
        if h.score.is_nan() {
            continue;
        }
        let cand = (h.score + 0.0, h.meta.chunk, h.meta.version);
        best.entry(h.meta.content_id.as_str())
            .and_modify(|cur| {
                if cand.0 > cur.0 || (cand.0 == cur.0 && cand.1 < cur.1) {
                    *cur = cand;
                }
            })
            .or_insert(cand);
    }
    let mut out: Vec<ContentHit> = best
        .into_iter()
        .map(|(id, (score, chunk, version))| ContentHit { content_id: id.to_string(), score, chunk, version })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.content_id.cmp(&b.content_id)));
    out
}

/// Most words one keyword query sends to FTS5.
const MAX_KEYWORD_TERMS: usize = 32;

/// FTS5 `MATCH` text for a user query: its words, lowercased, quoted (so no
/// input is ever FTS syntax), deduplicated and OR-ed. Stopwords are left out
/// when the query has other words: "the" is in every document and FTS5 ranks
/// every row a term matches, so one stopword made a sentence query rank the
/// whole index, while its bm25 weight is next to nothing. A query of
/// stopwords only keeps them. `None` when the query has no words.
pub fn fts_match(query: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for w in query.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
        }
        if words.len() == MAX_KEYWORD_TERMS {
            break;
        }
    }
    let content: Vec<&String> = words.iter().filter(|w| !is_stopword(w)).collect();
    let chosen: Vec<&String> = if content.is_empty() { words.iter().collect() } else { content };
    (!chosen.is_empty()).then(|| chosen.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR "))
}

/// A display excerpt plus the byte ranges (`start..end` into `text`) of the
/// matched query terms, so the UI can highlight without re-searching and
/// without any markup inside the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snippet {
    pub text: String,
    pub highlights: Vec<(usize, usize)>,
}

const ELLIPSIS: &str = "…";
/// Bounds the matching work for pathological queries.
const MAX_TERMS: usize = 16;
const MAX_TERM_CHARS: usize = 64;

/// A snippet of at most `max_chars` characters (the "…" marks included) from
/// `text`, centred on the first occurrence of any query term.
///
/// * Whitespace runs (newlines included) are collapsed to one space first, so
///   the excerpt reads as one line.
/// * Query terms are the alphanumeric runs of `query`, matched
///   case-insensitively. A term that occurs as a whole word anywhere is only
///   matched as a whole word; a term that never does (a stem, or CJK text
///   without spaces) is matched as a substring. The excerpt centres on the
///   first whole-word match, or the first substring match if there is none,
///   or starts at the beginning if nothing matches.
/// * Cuts fall on whitespace when one is near, otherwise on a char boundary,
///   and are marked with "…" (when `max_chars >= 3`).
/// * `highlights` are sorted, non-overlapping byte ranges into
///   `Snippet::text`, each covering a match lying fully inside the excerpt.
pub fn snippet(text: &str, query: &str, max_chars: usize) -> Snippet {
    let norm = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if max_chars == 0 || norm.is_empty() {
        return Snippet { text: String::new(), highlights: Vec::new() };
    }
    let matches = find_matches(&norm, &query_terms(query));
    let anchor = matches.iter().find(|m| m.whole).or_else(|| matches.first()).map(|m| (m.start, m.end));

    // Char index -> byte offset, with a sentinel for the end.
    let offs: Vec<usize> = norm.char_indices().map(|(b, _)| b).chain(std::iter::once(norm.len())).collect();
    let is_space: Vec<bool> = norm.chars().map(char::is_whitespace).collect();
    let n = is_space.len();
    let char_at = |byte: usize| offs.partition_point(|&o| o < byte);

    let (ws, we) = if n <= max_chars {
        (0, n)
    } else {
        let (a_s, a_e) = anchor.map(|(s, e)| (char_at(s), char_at(e))).unwrap_or((0, 0));
        window(n, max_chars, a_s, a_e, &is_space)
    };
    let ell = max_chars >= 3;
    let lead = if ws > 0 && ell { ELLIPSIS } else { "" };
    let trail = if we < n && ell { ELLIPSIS } else { "" };
    let (bs, be) = (offs[ws], offs[we]);

    let mut out = String::with_capacity(lead.len() + (be - bs) + trail.len());
    out.push_str(lead);
    out.push_str(&norm[bs..be]);
    out.push_str(trail);

    let mut highlights: Vec<(usize, usize)> = Vec::new();
    for m in &matches {
        if m.start < bs || m.end > be {
            continue;
        }
        let r = (m.start - bs + lead.len(), m.end - bs + lead.len());
        match highlights.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => highlights.push(r),
        }
    }
    Snippet { text: out, highlights }
}

/// The char window `[start, end)` of a text of `n > max_chars` chars, leaving
/// room for the ellipses and keeping the anchor `[a_s, a_e)` inside.
fn window(n: usize, max_chars: usize, a_s: usize, a_e: usize, is_space: &[bool]) -> (usize, usize) {
    let ell = max_chars >= 3;
    // Room when cut on both sides.
    let both = if ell { max_chars - 2 } else { max_chars };
    let one = if ell { max_chars - 1 } else { max_chars };
    let start = if a_e - a_s > both { a_s } else { ((a_s + a_e) / 2).saturating_sub(both / 2) }.min(n - both);
    let (mut ws, mut we) = if start == 0 {
        (0, one)
    } else if start + both >= n {
        (n - one, n)
    } else {
        (start, start + both)
    };

    // Prefer cutting at whitespace, if one is within a third of the window
    // and moving there does not cut into the anchor.
    let slack = (we - ws) / 3;
    if ws > 0 && !is_space[ws - 1] && !is_space[ws] {
        let limit = (ws + slack).min(a_s);
        if let Some(p) = (ws..limit).find(|&i| is_space[i]) {
            ws = p + 1;
        }
    }
    if we < n && !is_space[we - 1] && !is_space[we] {
        let limit = (we.saturating_sub(slack)).max(a_e).max(ws);
        if let Some(p) = (limit..we).rev().find(|&i| is_space[i]) {
            we = p;
        }
    }
    while ws < we && is_space[ws] {
        ws += 1;
    }
    while we > ws && is_space[we - 1] {
        we -= 1;
    }
    (ws, we)
}

/// Simple one-to-one case folding: the first char of the lowercase mapping
/// (so 'İ' folds to 'i' rather than "i\u{307}") and final sigma as sigma.
/// Keeping one folded char per original char keeps byte ranges exact.
fn fold(c: char) -> char {
    let l = c.to_lowercase().next().unwrap_or(c);
    if l == 'ς' {
        'σ'
    } else {
        l
    }
}

/// Which of `passages` best matches `query`: the most whole-word matches of
/// its terms, then the most matches of any kind; the first on a tie (and when
/// nothing matches). What a keyword-only hit gives an answer as its source,
/// a passage rather than the whole document.
pub fn best_passage(passages: &[&str], query: &str) -> usize {
    let terms = query_terms(query);
    let mut best = (0, (0, 0));
    for (i, p) in passages.iter().enumerate() {
        let matches = find_matches(p, &terms);
        let score = (matches.iter().filter(|m| m.whole).count(), matches.len());
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// The chunks of `body` as the chunk stage cut them (deterministic).
fn stage_chunks(body: &str) -> Vec<crate::nlp::chunk::Chunk> {
    use crate::nlp::chunk::{chunk_text, DEFAULT_CHUNK_CHARS, DEFAULT_OVERLAP_SENTENCES};
    chunk_text(body, DEFAULT_CHUNK_CHARS, DEFAULT_OVERLAP_SENTENCES)
}

/// The text of chunk `n` of `body`: a vector hit's source text.
pub fn chunk_passage(body: &str, n: u32) -> Option<String> {
    stage_chunks(body).into_iter().nth(n as usize).map(|c| c.text)
}

/// A keyword-only hit's source text: its chunk (as the chunk stage cuts it)
/// that best matches `query`, never the whole body, which may be far larger
/// than an answer can hold.
pub fn keyword_passage(body: &str, query: &str) -> String {
    let chunks = stage_chunks(body);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    chunks.get(best_passage(&texts, query)).map(|c| c.text.clone()).unwrap_or_default()
}

/// Case-folded, deduplicated alphanumeric runs of the query, in order.
fn query_terms(query: &str) -> Vec<Vec<char>> {
    let mut terms: Vec<Vec<char>> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let t: Vec<char> = word.chars().map(fold).take(MAX_TERM_CHARS).collect();
        if !terms.contains(&t) {
            terms.push(t);
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Match {
    start: usize,
    end: usize,
    whole: bool,
}

/// Byte ranges of every match of every term in `text`, sorted by position.
fn find_matches(text: &str, terms: &[Vec<char>]) -> Vec<Match> {
    if terms.is_empty() {
        return Vec::new();
    }
    // The text case-folded char by char, each folded char remembering the
    // byte range of the original char.
    let folded: Vec<(char, usize, usize)> = text.char_indices().map(|(b, c)| (fold(c), b, b + c.len_utf8())).collect();
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);

    let mut all = Vec::new();
    for term in terms {
        let m = term.len();
        if m == 0 || m > folded.len() {
            continue;
        }
        let mut found: Vec<Match> = Vec::new();
        let mut i = 0;
        while i + m <= folded.len() {
            if folded[i..i + m].iter().zip(term).all(|(f, t)| f.0 == *t) {
                let (start, end) = (folded[i].1, folded[i + m - 1].2);
                let whole = !is_word(text[..start].chars().next_back()) && !is_word(text[end..].chars().next());
                found.push(Match { start, end, whole });
                i += m;
            } else {
                i += 1;
            }
        }
        if found.iter().any(|f| f.whole) {
            found.retain(|f| f.whole);
        }
        all.extend(found);
    }
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::vector::VectorMeta;

    #[test]
    fn a_keyword_hits_source_is_its_best_chunk_not_its_body() {
        let filler = "Harbor cranes lift containers onto ships at dawn. ".repeat(400);
        let body = format!("{filler}The quokka census counted every quokka on the island. {filler}");
        let passage = keyword_passage(&body, "quokka census");
        assert!(passage.contains("quokka census"), "{passage}");
        assert!(passage.len() <= 2 * crate::nlp::chunk::DEFAULT_CHUNK_CHARS, "{} bytes of a {}-byte body", passage.len(), body.len());
        assert!(keyword_passage(&body, "zebra").len() <= 2 * crate::nlp::chunk::DEFAULT_CHUNK_CHARS, "no match: still one chunk");
        assert_eq!(keyword_passage("", "quokka"), "");
    }

    #[test]
    fn the_best_passage_has_the_most_whole_word_matches() {
        let passages = ["Harbor cranes lift containers.", "The tide tables: tide, tidal and tides.", "Tide charts, tide tables and tide clocks."];
        assert_eq!(best_passage(&passages, "tide tables"), 2, "four whole matches beat three whole and a partial one");
        assert_eq!(best_passage(&passages, "tidal"), 1);
        assert_eq!(best_passage(&passages, "zebra"), 0, "nothing matches: the first");
        assert_eq!(best_passage(&[], "tide"), 0);
    }

    #[test]
    fn fts_match_quotes_dedupes_and_drops_stopwords() {
        assert_eq!(fts_match("The study OF the Lava"), Some("\"study\" OR \"lava\"".into()));
        // Only stopwords: keep them rather than match nothing.
        assert_eq!(fts_match("the and of"), Some("\"the\" OR \"and\" OR \"of\"".into()));
        // FTS syntax in input is split into plain words.
        assert_eq!(fts_match("title:foo NEAR(a b) \"x"), Some("\"title\" OR \"foo\" OR \"near\" OR \"b\" OR \"x\"".into()));
        assert_eq!(fts_match("  --- !!! "), None);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(fts_match(&many).unwrap().matches(" OR ").count(), MAX_KEYWORD_TERMS - 1);
    }

    fn list(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-7
    }

    #[test]
    fn rrf_known_lists() {
        let keyword = list(&["a", "b", "c"]);
        let vector = list(&["b", "d", "a"]);
        let out = rrf(&[keyword, vector], 10);
        let ids: Vec<&str> = out.iter().map(|d| d.content_id.as_str()).collect();
        // b: 1/62 + 1/61, a: 1/61 + 1/63, c: 1/63, d: 1/62.
        assert_eq!(ids, vec!["b", "a", "d", "c"]);
        assert!(close(out[0].score, 1.0 / 62.0 + 1.0 / 61.0));
        assert!(close(out[1].score, 1.0 / 61.0 + 1.0 / 63.0));
        assert!(close(out[2].score, 1.0 / 62.0));
        assert!(close(out[3].score, 1.0 / 63.0));

        assert_eq!(rrf(&[list(&["a", "b", "c"])], 2).len(), 2);
        assert!(rrf(&[list(&["a"])], 0).is_empty());
        assert!(rrf(&[], 5).is_empty());
        assert!(rrf(&[vec![], vec![]], 5).is_empty());
    }

    #[test]
    fn rrf_agreement_beats_single_list_and_ties_by_id() {
        // "both" is last in both lists but still beats the heads of each.
        let l1 = list(&["x1", "x2", "x3", "both"]);
        let l2 = list(&["y1", "y2", "y3", "both"]);
        let out = rrf(&[l1, l2], 3);
        assert_eq!(out[0].content_id, "both");
        // x1 and y1 have equal scores: ordered by id.
        assert_eq!(out[1].content_id, "x1");
        assert_eq!(out[2].content_id, "y1");
        assert_eq!(out[1].score, out[2].score);

        // Symmetric rank patterns tie exactly across three lists.
        let out = rrf(&[list(&["p", "q", "r"]), list(&["q", "r", "p"]), list(&["r", "p", "q"])], 3);
        assert_eq!(out.iter().map(|d| d.content_id.as_str()).collect::<Vec<_>>(), vec!["p", "q", "r"]);
        assert!(out.windows(2).all(|w| w[0].score == w[1].score));

        // Duplicates within one list count once, at the first rank.
        let out = rrf(&[list(&["a", "a", "b"])], 5);
        assert!(close(out[0].score, 1.0 / 61.0));
        assert!(close(out[1].score, 1.0 / 63.0));
    }

    #[test]
    fn rrf_weighted_leans() {
        let kw = list(&["k", "s"]);
        let sem = list(&["s", "k"]);
        let out = rrf_weighted(&[(&kw, 2.0), (&sem, 1.0)], 2);
        assert_eq!(out[0].content_id, "k");
        let out = rrf_weighted(&[(&kw, 1.0), (&sem, 3.0)], 2);
        assert_eq!(out[0].content_id, "s");
        let out = rrf_weighted(&[(&kw, f32::NAN), (&sem, -1.0)], 2);
        assert!(out.is_empty());
    }

    fn hit(content: &str, chunk: u32, score: f32) -> Hit {
        Hit {
            id: format!("{content}:1:{chunk}"),
            score,
            meta: VectorMeta { content_id: content.into(), version: 1, chunk, category: None },
        }
    }

    #[test]
    fn groups_chunks_by_content() {
        let hits = vec![
            hit("a", 0, 0.5),
            hit("b", 3, 0.9),
            hit("a", 2, 0.8),
            hit("c", 1, 0.8),
            hit("b", 1, 0.7),
            hit("c", 0, 0.8),
            hit("d", 0, f32::NAN),
        ];
        let grouped: Vec<(String, f32, u32)> = group_by_content(&hits).into_iter().map(|h| (h.content_id, h.score, h.chunk)).collect();
        assert_eq!(grouped, vec![("b".to_string(), 0.9, 3), ("a".to_string(), 0.8, 2), ("c".to_string(), 0.8, 0)]);
        assert!(group_by_content(&[]).is_empty());
    }

    #[test]
    fn a_lingering_older_versions_chunk_is_not_the_new_texts_passage() {
        let old = ContentHit { content_id: "a".into(), score: 0.9, chunk: 4, version: 1 };
        assert_eq!(old.chunk_of(Some(2)), None, "version 2 is indexed: chunk 4 of version 1 is not its text");
        assert_eq!(old.chunk_of(Some(1)), Some(4));
        assert_eq!(old.chunk_of(None), Some(4), "a newer version in progress: the text is still the indexed one's");
    }

    /// While version 2 runs, its vectors are indexed before its text: the
    /// keyword row still holds version 1's and says so, so a version 2
    /// chunk number is not applied to it.
    #[test]
    fn the_text_is_the_version_its_keyword_row_recorded() {
        let new = ContentHit { content_id: "a".into(), score: 0.9, chunk: 4, version: 2 };
        assert_eq!(text_version(Some(1), Some(2), false), Some(1));
        assert_eq!(new.chunk_of(text_version(Some(1), Some(2), false)), None);
        assert_eq!(text_version(Some(2), Some(2), true), Some(2));
        // Rows from before the version was recorded.
        assert_eq!(text_version(None, Some(2), true), Some(2));
        assert_eq!(text_version(None, Some(2), false), None);
    }

    fn hl(s: &Snippet) -> Vec<&str> {
        s.highlights.iter().map(|&(a, b)| &s.text[a..b]).collect()
    }

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn short_text_is_whole_with_highlights() {
        let s = snippet("The  quick\nbrown fox", "QUICK fox", 100);
        assert_eq!(s.text, "The quick brown fox");
        assert_eq!(hl(&s), vec!["quick", "fox"]);
        assert_eq!(s.highlights, vec![(4, 9), (16, 19)]);
    }

    #[test]
    fn centred_on_first_match_and_cut_at_whitespace() {
        let filler = "lorem ipsum dolor sit amet ".repeat(20);
        let text = format!("{filler}the needle is here {filler}");
        let s = snippet(&text, "needle", 60);
        assert!(chars(&s.text) <= 60, "{}", s.text);
        assert!(s.text.starts_with('…') && s.text.ends_with('…'));
        assert_eq!(hl(&s), vec!["needle"]);
        let inner = s.text.trim_start_matches('…').trim_end_matches('…');
        // Cut at whitespace: the kept ends are whole filler words.
        let words: Vec<&str> = inner.split(' ').collect();
        for w in [words[0], words[words.len() - 1]] {
            assert!(["lorem", "ipsum", "dolor", "sit", "amet", "the", "is", "here"].contains(&w), "{w:?} in {inner:?}");
        }
        // Roughly centred.
        let pos = chars(&s.text[..s.highlights[0].0]) as i64;
        let after = chars(&s.text[s.highlights[0].1..]) as i64;
        assert!((pos - after).abs() <= 14, "{}", s.text);
    }

    #[test]
    fn whole_words_preferred_then_substring() {
        // "index" appears inside "indexing" first, then as a word: the word wins.
        let text = format!("indexing {} the index itself", "pad ".repeat(40));
        let s = snippet(&text, "index", 30);
        assert_eq!(hl(&s), vec!["index"]);
        assert!(s.text.contains("the index"), "{}", s.text);
        assert!(!s.text.contains("indexing"));

        // No whole-word occurrence: substring match.
        let s = snippet("reindexing everything", "index", 100);
        assert_eq!(hl(&s), vec!["index"]);
        assert_eq!(s.highlights, vec![(2, 7)]);
    }

    #[test]
    fn no_match_starts_at_beginning() {
        let text = "alpha beta gamma delta epsilon zeta eta theta";
        let s = snippet(text, "omega", 20);
        assert!(s.text.starts_with("alpha"));
        assert!(s.text.ends_with('…'));
        assert!(chars(&s.text) <= 20);
        assert!(s.highlights.is_empty());
        let s = snippet(text, "", 20);
        assert!(s.text.starts_with("alpha"));
    }

    #[test]
    fn multibyte_text() {
        let text = format!("{}café résumé naïve 🎉 party {}", "éèê ".repeat(30), "ü😀 ".repeat(30));
        let s = snippet(&text, "RÉSUMÉ party", 40);
        assert!(chars(&s.text) <= 40);
        assert_eq!(hl(&s), vec!["résumé", "party"]);
        // Case-insensitive on non-ASCII.
        let s = snippet("ÉCOLE publique", "école", 50);
        assert_eq!(hl(&s), vec!["ÉCOLE"]);

        // CJK has no spaces: cut at chars, substring match.
        let cjk = "我们在东京的办公室里讨论了向量搜索的设计方案和实现细节".repeat(5);
        let s = snippet(&cjk, "向量搜索", 12);
        assert!(chars(&s.text) <= 12, "{}", s.text);
        assert_eq!(hl(&s)[0], "向量搜索");

        // Every max_chars over mixed text: never panics, always in bounds.
        let mixed = "Ünïcödé 🎉🎉 text İstanbul ΣΊΣΥΦΟΣ 東京 x".repeat(3);
        for max in 0..80 {
            for q in ["", "istanbul", "東京", "🎉", "σίσυφος", "i", "x"] {
                let s = snippet(&mixed, q, max);
                assert!(chars(&s.text) <= max, "{max} {q}: {}", s.text);
                for &(a, b) in &s.highlights {
                    assert!(a < b && b <= s.text.len());
                    assert!(s.text.is_char_boundary(a) && s.text.is_char_boundary(b));
                }
                assert!(s.highlights.windows(2).all(|w| w[0].1 < w[1].0));
            }
        }
        // 'İ' lowercases to two chars; a match still maps to original bytes.
        let s = snippet("İstanbul", "istanbul", 20);
        assert_eq!(hl(&s), vec!["İstanbul"]);
        // Final sigma folds like sigma.
        let s = snippet("ΣΊΣΥΦΟΣ rolled", "σίσυφος", 20);
        assert_eq!(hl(&s), vec!["ΣΊΣΥΦΟΣ"]);
    }

    #[test]
    fn random_text_invariants() {
        // splitmix64 over a pool of ASCII, accented, emoji, CJK and spaces.
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let pool: Vec<char> = "ab AB é É ü 🎉 東京 İ ς Σ\n\t.,".chars().collect();
        for _ in 0..400 {
            let len = (next() % 120) as usize;
            let text: String = (0..len).map(|_| pool[(next() % pool.len() as u64) as usize]).collect();
            let qlen = (next() % 6) as usize;
            let query: String = (0..qlen).map(|_| pool[(next() % pool.len() as u64) as usize]).collect();
            let terms = query_terms(&query);
            let max = (next() % 50) as usize;
            let s = snippet(&text, &query, max);
            assert!(chars(&s.text) <= max);
            assert!(!s.text.contains('\n') && !s.text.contains('\t'));
            let mut prev_end = 0;
            for &(a, b) in &s.highlights {
                assert!(a >= prev_end && a < b && b <= s.text.len(), "{text:?} {query:?} {max}: {s:?}");
                prev_end = b;
                let folded: Vec<char> = s.text[a..b].chars().map(fold).collect();
                // Merged overlapping matches are a concatenation of terms'
                // overlaps; at least one term must start the range.
                assert!(terms.iter().any(|t| folded.starts_with(t)), "{text:?} {query:?}: {s:?}");
            }
        }
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        assert_eq!(snippet("", "", 10), Snippet { text: String::new(), highlights: vec![] });
        assert_eq!(snippet("", "x", 10).text, "");
        assert_eq!(snippet("   \n\t ", "x", 10).text, "");
        assert_eq!(snippet("hello", "hello", 0).text, "");
        assert_eq!(snippet("hello", "!!! ???", 10).text, "hello");
        assert_eq!(snippet("hello world", "world", 1).text.chars().count(), 1);
        assert_eq!(snippet("hello world", "world", 2).text.chars().count(), 2);
        let s = snippet("a very long matching word: supercalifragilistic", "supercalifragilistic", 8);
        assert!(chars(&s.text) <= 8);
    }
}
