//! Document fingerprints for near-duplicate detection.
//!
//! Two sketches are computed over the same set of lowercase word 3-shingles:
//!
//! * **MinHash** (128 × 32-bit minima) is what duplicate detection uses: the
//!   fraction of equal slots between two signatures is an unbiased estimate
//!   of the Jaccard similarity of the shingle sets, with a standard error of
//!   at most `0.5 / sqrt(128) ≈ 0.044`. A few edited words in a 1–2 KB text
//!   only touch ~3 shingles each, so copies stay well above the threshold
//!   while independently written texts on the same topic share almost no
//!   3-shingles and score near zero.
//! * **SimHash-64** is reported as the document's compact `fingerprint`
//!   (16 hex chars): close documents have close bit patterns, useful as a
//!   cheap key downstream, but it is too coarse to decide duplicates alone.
//!
//! All hashing is hand-rolled and seeded with constants instead of using
//! `std`'s `DefaultHasher`, whose output may change between Rust releases:
//! signatures are persisted, and a silent change would make every stored
//! fingerprint incomparable.

use super::text::words;

/// Bumped whenever shingling or hashing changes; stored with each record so
/// an index written by an incompatible build is skipped, not misread.
pub const SCHEME_VERSION: u8 = 1;

pub const SHINGLE_WORDS: usize = 3;
pub const MINHASH_SIZE: usize = 128;

/// Estimated Jaccard similarity at or above which two documents are near
/// duplicates. 0.5 keeps a margin on both sides: on a 210-word article, 3
/// randomly changed words scored 0.95, 10 scored 0.73, 20 scored 0.56 and an
/// appended sentence 0.95, while an independently written article on the
/// same topic scored below 0.1. A true Jaccard of 0.4 is 2.3 standard errors
/// below the threshold, so false positives are rare.
pub const DUPLICATE_THRESHOLD: f64 = 0.5;

pub type Signature = [u32; MINHASH_SIZE];

#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub simhash: u64,
    pub minhash: Signature,
    /// Hash of the normalized word sequence: equal values mean identical
    /// text up to case, whitespace and punctuation.
    pub content_hash: u64,
    /// Number of shingles (with repeats); 0 means no words, and such a
    /// document can never be a duplicate of anything.
    pub shingles: u32,
}

impl Fingerprint {
    pub fn simhash_hex(&self) -> String {
        format!("{:016x}", self.simhash)
    }
}

/// 64 seeds, each yielding two 32-bit hash functions (the two halves of one
/// 64-bit mix), so 128 MinHash functions cost 64 mixes per shingle.
const SEEDS: [u64; MINHASH_SIZE / 2] = {
    let mut seeds = [0u64; MINHASH_SIZE / 2];
    let mut state = 0x5EED_A11A_1A2E_0001u64;
    let mut i = 0;
    while i < seeds.len() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        seeds[i] = fmix64(state);
        i += 1;
    }
    seeds
};

pub fn fingerprint(text: &str) -> Fingerprint {
    let mut minhash = [u32::MAX; MINHASH_SIZE];
    let mut bits = [0i32; 64];
    let mut shingles = 0u32;
    let mut content_hash = FNV_OFFSET;
    let mut window = [0u64; SHINGLE_WORDS];
    let mut seen = 0usize;

    let mut add_shingle = |h: u64, minhash: &mut Signature| {
        shingles = shingles.saturating_add(1);
        for (bit, counter) in bits.iter_mut().enumerate() {
            *counter += if h >> bit & 1 == 1 { 1 } else { -1 };
        }
        for (pair, &seed) in minhash.chunks_exact_mut(2).zip(SEEDS.iter()) {
            let x = fmix64(h ^ seed);
            pair[0] = pair[0].min(x as u32);
            pair[1] = pair[1].min((x >> 32) as u32);
        }
    };

    for word in words(text) {
        let wh = word_hash(word);
        content_hash = fnv_u64(content_hash, wh);
        window.rotate_left(1);
        window[SHINGLE_WORDS - 1] = wh;
        seen += 1;
        if seen >= SHINGLE_WORDS {
            add_shingle(shingle_hash(&window), &mut minhash);
        }
    }
    // Texts shorter than a shingle are one shingle of all their words, so
    // "Hello world" still matches itself.
    if seen > 0 && seen < SHINGLE_WORDS {
        add_shingle(shingle_hash(&window[SHINGLE_WORDS - seen..]), &mut minhash);
    }

    let mut simhash = 0u64;
    for (bit, &counter) in bits.iter().enumerate() {
        if counter > 0 {
            simhash |= 1 << bit;
        }
    }
    Fingerprint {
        simhash,
        minhash,
        content_hash,
        shingles,
    }
}

/// Estimated Jaccard similarity of two signatures.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    let equal = a.iter().zip(b.iter()).filter(|(x, y)| x == y).count();
    equal as f64 / MINHASH_SIZE as f64
}

/// Slot matches needed to reach `threshold`.
pub fn required_matches(threshold: f64) -> usize {
    ((threshold * MINHASH_SIZE as f64).ceil() as usize).min(MINHASH_SIZE)
}

/// Like [`similarity`], but gives up as soon as `required` matches can no
/// longer be reached. Almost every stored document is unrelated, so a scan
/// over the whole index mostly stops after the first block or two.
pub fn similarity_at_least(a: &Signature, b: &[u32], required: usize) -> Option<f64> {
    let allowed_misses = MINHASH_SIZE.saturating_sub(required);
    let mut misses = 0usize;
    // Fixed-width blocks compile to a few SIMD compares each.
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        let block: u32 = ca.iter().zip(cb).map(|(x, y)| u32::from(x != y)).sum();
        misses += block as usize;
        if misses > allowed_misses {
            return None;
        }
    }
    Some((MINHASH_SIZE - misses) as f64 / MINHASH_SIZE as f64)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Case-insensitive hash of one word, without allocating a lowercase copy.
fn word_hash(word: &str) -> u64 {
    let mut h = FNV_OFFSET;
    let mut utf8 = [0u8; 4];
    for c in word.chars().flat_map(char::to_lowercase) {
        let c = if c == '\u{2019}' { '\'' } else { c };
        for &b in c.encode_utf8(&mut utf8).as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
    fmix64(h)
}

fn fnv_u64(mut h: u64, x: u64) -> u64 {
    for b in x.to_le_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Order-sensitive combination, so "a b c" and "c b a" differ.
fn shingle_hash(words: &[u64]) -> u64 {
    words.iter().fold(0x243F_6A88_85A3_08D3u64, |acc, &w| {
        fmix64(acc ^ w).rotate_left(17)
    })
}

/// MurmurHash3 finalizer: full avalanche, so seeds xor-ed into one input
/// give independent-looking hash functions.
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ~1.6 KB of English prose used by duplicate-detection tests.
    pub(crate) const ARTICLE: &str = "City officials announced on Tuesday that the long-delayed \
        renovation of the central library will begin next spring, ending years of debate over how \
        to fund the project. The plan calls for a new reading room on the second floor, expanded \
        children's areas, and a rooftop garden that will double as an outdoor classroom during the \
        summer months. According to the mayor's office, the total cost is estimated at forty-two \
        million dollars, with roughly half coming from a state grant approved last year and the \
        remainder from municipal bonds. Critics on the council argued that the money would be \
        better spent on neighborhood branches, several of which have reduced their opening hours \
        because of staffing shortages. Library director Maria Alvarez said the renovation would \
        not affect branch budgets and that the central building had become unsafe in places, \
        pointing to leaking windows and an outdated heating system that failed twice last winter. \
        Construction is expected to take about two years, during which a temporary location in a \
        former department store downtown will offer lending services, public computers, and \
        study spaces. Residents will be able to comment on the final design at three public \
        meetings scheduled for the coming month, and the architects have promised to publish \
        detailed drawings online before the first session.";

    /// Same topic, independently written.
    pub(crate) const SAME_TOPIC: &str = "After a decade of arguments about money, work on the \
        downtown library is finally set to start. Council members approved a budget of about \
        forty million dollars for the overhaul, which will add a roof terrace, bigger spaces for \
        kids, and a modern reading hall. Some residents worry that smaller libraries in outer \
        districts keep losing hours while the flagship gets a makeover. The library's director \
        defended the plan, noting that the old heating failed repeatedly and that rainwater gets \
        in through the windows. While the main building is closed, services will move to an empty \
        retail space nearby. Public hearings on the design are planned for next month.";

    pub(crate) fn edited_copy() -> String {
        ARTICLE
            .replace("Tuesday", "Wednesday")
            .replace("second floor", "third floor")
            .replace("forty-two", "forty-five")
            .replace("leaking windows", "broken windows")
            + " A spokesperson added that updates will be posted on the city website every week."
    }

    #[test]
    fn identical_text_is_identical() {
        let a = fingerprint(ARTICLE);
        let b = fingerprint(&ARTICLE.to_uppercase().replace(", ", " ; "));
        assert_eq!(a, b);
        assert_eq!(similarity(&a.minhash, &b.minhash), 1.0);
        assert_eq!(a.simhash_hex().len(), 16);
    }

    #[test]
    fn edited_copy_is_near_duplicate() {
        let a = fingerprint(ARTICLE);
        let b = fingerprint(&edited_copy());
        let sim = similarity(&a.minhash, &b.minhash);
        assert!(sim >= 0.75, "edited copy similarity {sim}");
        assert!(a.content_hash != b.content_hash);
        let required = required_matches(DUPLICATE_THRESHOLD);
        assert_eq!(
            similarity_at_least(&a.minhash, &b.minhash, required),
            Some(sim)
        );
        // SimHash of near copies differs in few bits.
        assert!(
            (a.simhash ^ b.simhash).count_ones() <= 12,
            "{:x} {:x}",
            a.simhash,
            b.simhash
        );
    }

    #[test]
    fn same_topic_is_not_duplicate() {
        let a = fingerprint(ARTICLE);
        let c = fingerprint(SAME_TOPIC);
        let sim = similarity(&a.minhash, &c.minhash);
        assert!(sim < 0.1, "unrelated similarity {sim}");
        assert_eq!(
            similarity_at_least(
                &a.minhash,
                &c.minhash,
                required_matches(DUPLICATE_THRESHOLD)
            ),
            None
        );
    }

    #[test]
    fn short_and_empty_texts() {
        let a = fingerprint("Hello world");
        assert_eq!(a.shingles, 1);
        assert_eq!(a, fingerprint("hello, WORLD!"));
        assert_ne!(a.minhash, fingerprint("world hello").minhash);
        let e = fingerprint(" ... ");
        assert_eq!(e.shingles, 0);
        assert!(e.minhash.iter().all(|&x| x == u32::MAX));
    }

    #[test]
    fn hashing_is_stable_across_builds() {
        // Persisted signatures depend on these exact values.
        let f = fingerprint("the quick brown fox");
        assert_eq!(f.shingles, 2);
        assert_eq!(format!("{:016x}", f.content_hash), "92738e2daa08d1be");
        assert_eq!(f.simhash_hex(), "93ab0850402a0640");
        assert_eq!((f.minhash[0], f.minhash[127]), (0x62d7_c3b0, 0x570c_3d79));
    }
}
