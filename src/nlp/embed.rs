//! Dense text embeddings by signed feature hashing.
//!
//! The offline providers need a vector per chunk for similarity search
//! without a model, network or vocabulary file. The hashing trick gives a
//! fixed-size vector from an open vocabulary in a single pass. It is
//! deterministic: the hash is fixed (not std's randomly seeded hasher) and
//! the sums below do not depend on iteration order, so stored vectors stay
//! comparable with freshly computed ones.
//!
//! Features (all from [`tokenize`], so they agree with keywords and
//! summaries):
//! - content-word stems, weight 1.0: topic words carry most of the signal
//!   and stemming makes "cats"/"cat" identical;
//! - bigrams of consecutive content stems within a phrase, weight 0.5:
//!   adds some word-order/compound information ("machine learning");
//! - boundary-marked character trigrams of each content stem ("<ca", "cat",
//!   "at>"), with a total weight of 1.2 per word (each of its `n` trigrams
//!   gets 1.2/√n, below the whole word's 1.0 from two trigrams on): catches
//!   misspellings the stemmer cannot ("honeyombs" still shares most trigrams
//!   with "honeycomb"). Trigrams come from the stem, not the surface word,
//!   because suffix trigrams such as "ing>" and "es>" are shared by unrelated
//!   words and, with no corpus statistics to discount them, only add noise.
//!   `make eval` measured both choices: surface trigrams at 0.8 gave vector
//!   nDCG@10 0.645 and hybrid below keyword; stem trigrams at 1.2 put hybrid
//!   above both (docs/benchmarks.md).
//!
//! Each distinct feature contributes `weight · (1 + ln tf)` (sublinear tf,
//! so repetition helps but does not swamp), to bucket `h mod 384` with the
//! sign taken from the top bit of `h`, so collisions cancel in expectation
//! instead of piling up. The hash is FNV-1a 64 over a feature-kind tag byte
//! and the feature's UTF-8 bytes (parts separated by 0xFF, which never
//! occurs in UTF-8), finished with MurmurHash3's `fmix64` so that both the
//! low bits (bucket) and the top bit (sign) are well mixed.
//!
//! Equal features are grouped in a small open-addressing table and their
//! weights summed in fixed point (2^-24 units), so the result does not
//! depend on the order features are visited.
//!
//! The vector is L2-normalized, so [`cosine`] of two embeddings is their
//! dot product; text without content words embeds to all zeros.

use super::tokenize::{self, fnv1a, FNV_OFFSET};

/// Embedding dimension.
pub const EMBED_DIM: usize = 384;

const UNIGRAM_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.5;
const TRIGRAM_WORD_WEIGHT: f32 = 1.2;
/// Longer words only contribute trigrams from their first characters, which
/// bounds the work for pathological "words" such as base64 blobs.
const MAX_TRIGRAM_CHARS: usize = 32;

const TAG_UNIGRAM: u8 = 1;
const TAG_BIGRAM: u8 = 2;
const TAG_TRIGRAM: u8 = 3;

/// MurmurHash3 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Hash of a feature: kind tag, then parts separated by 0xFF.
fn feature_hash(tag: u8, parts: &[&str]) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, &[tag]);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h = fnv1a(h, &[0xFF]);
        }
        h = fnv1a(h, part.as_bytes());
    }
    fmix64(h)
}

/// Fixed-point scale for feature weights. Integer sums are associative, so
/// the result does not depend on the order in which equal features meet.
const FIXED_ONE: f64 = (1u64 << 24) as f64;

/// Round a non-negative value to the nearest integer. The `as` truncation
/// is a single instruction, while `f64::round` is a library call on
/// baseline x86-64, and this runs once per distinct feature.
fn round_non_negative(x: f64) -> u64 {
    (x + 0.5) as u64
}

fn to_fixed(weight: f32) -> u32 {
    round_non_negative(f64::from(weight) * FIXED_ONE) as u32
}

/// One distinct feature: its hash, summed fixed-point weight and count.
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    mass: u64,
    tf: u32,
}

/// Groups equal feature hashes with open addressing (linear probing,
/// doubling at 70% load). The hashes are already well mixed, so their low
/// bits index the table directly; this is several times cheaper than
/// sorting the features, and memory follows the number of distinct
/// features rather than of occurrences.
struct FeatureTable {
    slots: Vec<Slot>,
    used: usize,
}

impl FeatureTable {
    fn with_capacity(features: usize) -> Self {
        let capacity = (features * 2).next_power_of_two().clamp(64, 1 << 16);
        FeatureTable { slots: vec![Slot::default(); capacity], used: 0 }
    }

    fn add(&mut self, hash: u64, weight: u32) {
        if (self.used + 1) * 10 > self.slots.len() * 7 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.tf == 0 {
                *slot = Slot { hash, mass: u64::from(weight), tf: 1 };
                self.used += 1;
                return;
            }
            if slot.hash == hash {
                slot.mass += u64::from(weight);
                slot.tf += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.tf > 0) {
            let mut i = slot.hash as usize & mask;
            while self.slots[i].tf != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.tf > 0)
    }
}

/// Push the boundary-marked trigrams of `word` ("<ca", "cat", "at>"),
/// hashing straight from the word's bytes.
fn push_trigrams(word: &str, feats: &mut FeatureTable) {
    // Byte offsets of the first MAX_TRIGRAM_CHARS characters and the end.
    let mut bounds = [0usize; MAX_TRIGRAM_CHARS + 1];
    let mut m = 0;
    for (i, _) in word.char_indices().take(MAX_TRIGRAM_CHARS) {
        bounds[m] = i;
        m += 1;
    }
    if m == 0 {
        return;
    }
    bounds[m] = word.char_indices().nth(m).map_or(word.len(), |(i, _)| i);
    let weight = to_fixed(TRIGRAM_WORD_WEIGHT / (m as f32).sqrt());
    let seed = fnv1a(FNV_OFFSET, &[TAG_TRIGRAM]);
    // Trigram k covers padded positions k..k+3 of "<" + word + ">", i.e.
    // characters k-1 ..= k+1 clipped to the word, plus the markers.
    for k in 0..m {
        let mut h = seed;
        if k == 0 {
            h = fnv1a(h, b"<");
        }
        let first = k.saturating_sub(1);
        let last = (k + 1).min(m - 1);
        h = fnv1a(h, &word.as_bytes()[bounds[first]..bounds[last + 1]]);
        if k + 1 == m {
            h = fnv1a(h, b">");
        }
        feats.add(fmix64(h), weight);
    }
}

/// Embed `text` into a new [`EMBED_DIM`]-dimensional unit vector.
pub fn embed(text: &str) -> Vec<f32> {
    let mut out = vec![0.0; EMBED_DIM];
    embed_into(text, &mut out);
    out
}

/// Embed `text` into `out`, overwriting it.
///
/// `out` should have [`EMBED_DIM`] elements; other lengths do not panic but
/// produce vectors that are not comparable with standard ones.
pub fn embed_into(text: &str, out: &mut [f32]) {
    out.fill(0.0);
    if out.is_empty() {
        return;
    }
    let toks = tokenize::tokens(text);
    let mut feats = FeatureTable::with_capacity(toks.len() * 4);
    let (unigram, bigram) = (to_fixed(UNIGRAM_WEIGHT), to_fixed(BIGRAM_WEIGHT));
    let mut prev: Option<&str> = None;
    let mut prev_end = 0usize;
    for t in &toks {
        if !tokenize::joins(&text[prev_end..t.start]) {
            prev = None;
        }
        prev_end = t.end;
        if !t.content {
            continue;
        }
        feats.add(feature_hash(TAG_UNIGRAM, &[t.stem.as_ref()]), unigram);
        if let Some(p) = prev {
            feats.add(feature_hash(TAG_BIGRAM, &[p, t.stem.as_ref()]), bigram);
        }
        prev = Some(t.stem.as_ref());
        push_trigrams(t.stem.as_ref(), &mut feats);
    }

    // Each distinct feature adds its value to its bucket in fixed point;
    // integer sums make the result independent of the visiting order.
    let dim = out.len() as u64;
    let mut acc = vec![0i64; out.len()];
    for slot in feats.iter() {
        let tf = f64::from(slot.tf);
        let value = slot.mass as f64 / tf * (1.0 + tf.ln());
        let (bucket, value) = ((slot.hash % dim) as usize, round_non_negative(value) as i64);
        acc[bucket] += if slot.hash >> 63 == 1 { -value } else { value };
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = (*a as f64 / FIXED_ONE) as f32;
    }

    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        out.iter_mut().for_each(|x| *x /= norm);
    } else {
        out.fill(0.0);
    }
}

/// Cosine similarity of two vectors, in [-1, 1].
///
/// For embeddings from [`embed`] (unit length) this equals the dot product;
/// the norms are still divided out so other vectors work too. Zero vectors
/// score 0. Extra elements of the longer slice are ignored.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = na.sqrt() * nb.sqrt();
    if denom > 0.0 && denom.is_finite() && dot.is_finite() {
        (dot / denom).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: &str, b: &str) -> f32 {
        cosine(&embed(a), &embed(b))
    }

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn dimension_and_unit_norm() {
        let v = embed("Radioactivity was studied by Marie Curie in Paris.");
        assert_eq!(v.len(), EMBED_DIM);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn empty_and_stopword_text_is_zero() {
        for text in ["", "   ", "the and of it", "!!! ...", "42 1891"] {
            let v = embed(text);
            assert_eq!(v.len(), EMBED_DIM);
            assert!(v.iter().all(|&x| x == 0.0), "{text:?}");
            assert_eq!(cosine(&v, &v), 0.0);
        }
    }

    #[test]
    fn deterministic_and_identical_texts_score_one() {
        let text = "Rust compiles to WebAssembly for Cloudflare Workers.";
        let a = embed(text);
        let b = embed(text);
        assert_eq!(a, b);
        assert!((cosine(&a, &b) - 1.0).abs() < 1e-5);
        // embed_into overwrites stale contents.
        let mut buf = vec![7.0; EMBED_DIM];
        embed_into(text, &mut buf);
        assert_eq!(buf, a);
    }

    #[test]
    fn golden_output_is_stable() {
        // Pins the hash scheme: changing it silently would invalidate every
        // stored vector.
        let v = embed("cat");
        let nonzero: Vec<usize> =
            v.iter().enumerate().filter(|(_, x)| **x != 0.0).map(|(i, _)| i).collect();
        assert_eq!(nonzero.len(), 4, "one unigram and three trigrams");
        let u = feature_hash(TAG_UNIGRAM, &["cat"]);
        let idx = usize::try_from(u % EMBED_DIM as u64).unwrap();
        assert!(nonzero.contains(&idx));
    }

    #[test]
    fn misspellings_match_through_stem_trigrams() {
        let typo = "harveting honeyombs";
        let right = sim(typo, "harvesting honeycombs");
        // Shares only the "-ing"/"-s" endings, which stem trigrams drop.
        let suffixes = sim(typo, "castling openings");
        assert!(right > 0.3, "{right}");
        assert!(suffixes < 0.1, "{suffixes}");
    }

    #[test]
    fn case_and_number_variants_match() {
        assert!(sim("The CATS chase mice", "the cat chases mice") > 0.9);
        assert!(sim("Running servers", "run server") > 0.85);
        assert!(sim("DATABASE", "databases") > 0.85);
    }

    #[test]
    fn related_texts_beat_unrelated_by_a_margin() {
        let cases = [
            (
                "The cat sat on the mat and purred at the kittens.",
                "A kitten and a cat were sitting on mats, purring.",
                "Interest rates rose as the central bank fought inflation.",
            ),
            (
                "Marie Curie discovered radium and polonium through research on radioactivity.",
                "Curie's research into radioactive elements like radium won her a Nobel Prize.",
                "The football team won the championship after a penalty shootout.",
            ),
            (
                "Durable Objects give each actor a single-threaded home with storage.",
                "An actor lives in a durable object that owns its storage and runs single threaded.",
                "Bake the bread at high heat until the crust turns golden brown.",
            ),
            (
                "Stock markets fell sharply as investors sold technology shares.",
                "Technology stocks dropped while investors sold shares across markets.",
                "Hikers climbed the mountain trail to see the alpine lake.",
            ),
        ];
        for (a, related, unrelated) in cases {
            let r = sim(a, related);
            let u = sim(a, unrelated);
            assert!(r > u + 0.2, "related {r} vs unrelated {u} for {a:?}");
            assert!(r > 0.25, "related {r} for {a:?}");
            assert!(u.abs() < 0.2, "unrelated {u} for {a:?}");
        }
    }

    #[test]
    fn feature_table_groups_exactly_through_growth() {
        use std::collections::BTreeMap;
        let mut table = FeatureTable::with_capacity(1);
        let mut expected: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
        for i in 0..5000u64 {
            // Few distinct hashes in the low bits to force probing, and
            // enough distinct keys to force several doublings.
            let hash = fmix64(i % 1500) & !0xFF | (i % 7);
            let weight = u32::try_from(i % 13).unwrap();
            table.add(hash, weight);
            let e = expected.entry(hash).or_default();
            e.0 += u64::from(weight);
            e.1 += 1;
        }
        let mut got: Vec<(u64, (u64, u32))> =
            table.iter().map(|s| (s.hash, (s.mass, s.tf))).collect();
        got.sort_unstable();
        assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn many_distinct_words_embed_deterministically() {
        let text: String = (0..3000).map(|i| format!("word{i} ")).collect();
        let a = embed(&text);
        assert_eq!(a, embed(&text));
        assert!((norm(&a) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn cosine_handles_mismatched_and_zero_vectors() {
        assert_eq!(cosine(&[], &[]), 0.0);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0, 100.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[f32::NAN], &[1.0]), 0.0);
    }

    #[test]
    fn odd_output_lengths_do_not_panic() {
        let mut empty: [f32; 0] = [];
        embed_into("hello world", &mut empty);
        let mut small = [1.0f32; 3];
        embed_into("hello world", &mut small);
        assert!((norm(&small) - 1.0).abs() < 1e-5);
    }
}
