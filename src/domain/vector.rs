//! The in-memory core of one exact vector index shard.
//!
//! A `VectorIndexActor` shard persists its rows in SQLite and keeps a
//! [`ShardIndex`] as a cache. Search is brute force and exact: at the shard
//! sizes we run (tens of thousands of 384-dimensional vectors) a flat scan is a
//! few milliseconds, needs no training, never loses recall and never drifts
//! after deletes, which an approximate graph index would.
//!
//! Layout is chosen for the scan:
//! * every vector lives in one contiguous `Vec<f32>` (`slot * dim ..`), so the
//!   loop streams memory linearly and never chases pointers;
//! * vectors are stored L2-normalized, so cosine is a plain dot product;
//! * namespace and category filters are interned to `u32` codes held in their
//!   own dense arrays, so a filtered-out row costs one integer compare and its
//!   vector is never touched;
//! * the best `k` are kept in a fixed-capacity binary heap of `(score, slot)`
//!   allocated once per query, so the loop allocates nothing per vector.
//!
//! Deletion is `swap_remove`: the last row moves into the hole and the id map
//! is patched, keeping storage dense with O(dim) work.
//!
//! Everything is deterministic: ties are broken by id, the dot product sums in
//! a fixed order, and no hashing order leaks into a result.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a stored vector belongs to. `content_id`/`version`/`chunk` are the
/// source of truth for grouping and cleanup (the id string is never parsed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorMeta {
    pub content_id: String,
    pub version: u32,
    pub chunk: u32,
    pub category: Option<String>,
}

/// One search result: the vector id, its cosine similarity to the query in
/// [-1, 1], and its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub meta: VectorMeta,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorError {
    #[error("vector has {got} dimensions, expected {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("vector contains NaN or infinite values")]
    NotFinite,
    #[error("vector blob of {len} bytes is not a whole number of f32 values")]
    BadBlob { len: usize },
}

/// Whether `values` can be stored in an index of `dim` dimensions.
pub fn check_vector(dim: usize, values: &[f32]) -> Result<(), VectorError> {
    if values.len() != dim {
        return Err(VectorError::Dimension { expected: dim, got: values.len() });
    }
    if !values.iter().all(|x| x.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    Ok(())
}

/// What a shard has been told about one content item: the highest version
/// that has been current, or that the item is deleted. It admits a write only
/// for that version or a newer one, and nothing once the item is deleted, so a
/// retried old run can neither overwrite the current vectors nor bring back a
/// deleted item's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    pub version: u32,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FenceError {
    #[error("superseded by version {current} (refused a write of version {got})")]
    Superseded { got: u32, current: u32 },
    #[error("content deleted")]
    Deleted,
}

impl Fence {
    /// The fence after admitting a write of `version`.
    pub fn admit(self, version: u32) -> Result<Fence, FenceError> {
        if self.deleted {
            return Err(FenceError::Deleted);
        }
        if version < self.version {
            return Err(FenceError::Superseded { got: version, current: self.version });
        }
        Ok(Fence { version, deleted: false })
    }

    pub fn tombstone(self) -> Fence {
        Fence { deleted: true, ..self }
    }
}

// ---------------------------------------------------------------------------
// Blobs, ids and sharding
// ---------------------------------------------------------------------------

/// Little-endian `f32`s back to back: 4 bytes per value, the most compact
/// lossless form for a SQLite BLOB column (JSON would be 3-4x larger and slow
/// to parse).
pub fn encode_f32_le(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Inverse of [`encode_f32_le`]. `None` if the length is not a multiple of 4.
pub fn decode_f32_le(b: &[u8]) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(b.len() / 4);
    decode_into(b, &mut out).then_some(out)
}

/// Appends the decoded values to `out` without a temporary buffer, so rows
/// loaded from SQLite can go straight into flat storage. Returns `false`
/// (appending nothing) if the length is not a multiple of 4.
pub fn decode_into(b: &[u8], out: &mut Vec<f32>) -> bool {
    if !b.len().is_multiple_of(4) {
        return false;
    }
    out.reserve(b.len() / 4);
    out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    true
}

/// 64-bit FNV-1a. Stable across platforms and releases (unlike `std`'s
/// randomly seeded hasher), which is what a persisted shard assignment needs.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard that owns every vector of `content_id`: FNV-1a 64 of the id,
/// modulo `shards`. All chunks and versions of one content land on the same
/// shard, so replacing or deleting a content touches a single actor.
/// `shards == 0` is treated as one shard.
pub fn shard_for(content_id: &str, shards: u32) -> u32 {
    if shards == 0 {
        return 0;
    }
    (fnv1a64(content_id.as_bytes()) % u64::from(shards)) as u32
}

/// `"{content_id}:{version}:{chunk}"`: unique per chunk of each version, so a
/// new version can be written next to the old one before the old is removed.
pub fn vector_id(content_id: &str, version: u32, chunk: u32) -> String {
    format!("{content_id}:{version}:{chunk}")
}

// ---------------------------------------------------------------------------
// Math
// ---------------------------------------------------------------------------

/// Number of independent accumulators in [`dot`]. Separate partial sums break
/// the floating-point dependency chain, which is what lets the compiler keep
/// several SIMD lanes / pipelines busy; the summation order stays fixed, so
/// results are bit-for-bit reproducible.
const LANES: usize = 16;

/// Dot product over the common prefix of `a` and `b`.
///
/// Summation order is fixed (16 running sums, folded onto 4, then added
/// pairwise, then the tail), so the result is bit-for-bit the same on every
/// platform and whichever `block_sums` implementation is compiled in.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let v = block_sums(ca, cb);
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    // The shape of this finish matters for speed: with it LLVM keeps the
    // accumulators as whole 4-wide registers; `(v0 + v2) + (v1 + v3)` made it
    // split them into 2-wide halves.
    ((v[0] + v[1]) + (v[2] + v[3])) + tail
}

/// Portable version: `LANES` running sums over whole blocks, folded onto 4
/// lane-wise. LLVM auto-vectorizes this at opt-level 2/3 (not at "s"/"z").
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn block_sums(ca: std::slice::ChunksExact<'_, f32>, cb: std::slice::ChunksExact<'_, f32>) -> [f32; 4] {
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    let mut v = [0.0f32; 4];
    for c in acc.chunks_exact(4) {
        for (vi, ci) in v.iter_mut().zip(c) {
            *vi += ci;
        }
    }
    v
}

/// wasm SIMD version, used when the Worker is built with
/// `-C target-feature=+simd128`: the same sums in the same order as the
/// portable version, written with explicit `f32x4` ops so it stays vectorized
/// under the size-optimized (`opt-level = "z"`) release profile too.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn block_sums(ca: std::slice::ChunksExact<'_, f32>, cb: std::slice::ChunksExact<'_, f32>) -> [f32; 4] {
    use core::arch::wasm32::{f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, v128, v128_load};
    #[inline(always)]
    fn load(s: &[f32]) -> v128 {
        if s.len() < 4 {
            return f32x4_splat(0.0);
        }
        // SAFETY: `s` holds at least 4 f32 = 16 readable bytes, and wasm
        // `v128.load` has no alignment requirement.
        unsafe { v128_load(s.as_ptr().cast::<v128>()) }
    }
    let (mut s0, mut s1, mut s2, mut s3) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
    for (x, y) in ca.zip(cb) {
        if let (Some(x), Some(y)) = (x.get(..LANES), y.get(..LANES)) {
            s0 = f32x4_add(s0, f32x4_mul(load(&x[0..]), load(&y[0..])));
            s1 = f32x4_add(s1, f32x4_mul(load(&x[4..]), load(&y[4..])));
            s2 = f32x4_add(s2, f32x4_mul(load(&x[8..]), load(&y[8..])));
            s3 = f32x4_add(s3, f32x4_mul(load(&x[12..]), load(&y[12..])));
        }
    }
    let v = f32x4_add(f32x4_add(f32x4_add(f32x4_add(f32x4_splat(0.0), s0), s1), s2), s3);
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

/// Scales `v` to unit length in place. The norm is computed in `f64`, so huge
/// finite components cannot overflow it; a zero (or otherwise degenerate)
/// vector is left as zeros and will score 0 against everything.
pub fn normalize_in_place(v: &mut [f32]) {
    let sq: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    let norm = sq.sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = 1.0 / norm;
        for x in v.iter_mut() {
            *x = (f64::from(*x) * inv) as f32;
        }
    } else {
        v.fill(0.0);
    }
}

/// A score as reported: clamped to the cosine range (rounding can overshoot
/// 1 by an ulp) and with `-0.0` turned into `0.0` so `total_cmp` treats all
/// zero scores alike.
#[inline]
fn clean_score(s: f32) -> f32 {
    s.clamp(-1.0, 1.0) + 0.0
}

/// Result order: higher score first, then id ascending.
fn hit_order(a_score: f32, a_id: &str, b_score: f32, b_id: &str) -> Ordering {
    b_score.total_cmp(&a_score).then_with(|| a_id.cmp(b_id))
}

// ---------------------------------------------------------------------------
// Top-k
// ---------------------------------------------------------------------------

/// A fixed-capacity binary heap whose root is the *worst* kept candidate, so
/// rejecting a vector that cannot make the top `k` is one float compare.
struct TopK<'a> {
    buf: Vec<(f32, usize)>,
    cap: usize,
    ids: &'a [String],
}

impl<'a> TopK<'a> {
    fn new(cap: usize, ids: &'a [String]) -> Self {
        TopK { buf: Vec::with_capacity(cap), cap, ids }
    }

    /// Whether `a` ranks below `b` in the final order.
    #[inline]
    fn worse(&self, a: (f32, usize), b: (f32, usize)) -> bool {
        match a.0.total_cmp(&b.0) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => self.ids[a.1] > self.ids[b.1],
        }
    }

    #[inline]
    fn offer(&mut self, score: f32, slot: usize) {
        if self.buf.len() < self.cap {
            self.buf.push((score, slot));
            self.sift_up(self.buf.len() - 1);
        } else if let Some(&root) = self.buf.first() {
            // Fast reject: strictly below the current worst.
            if score < root.0 {
                return;
            }
            if self.worse(root, (score, slot)) {
                self.buf[0] = (score, slot);
                self.sift_down(0);
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.worse(self.buf[i], self.buf[parent]) {
                self.buf.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.buf.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.worse(self.buf[l], self.buf[m]) {
                m = l;
            }
            if r < n && self.worse(self.buf[r], self.buf[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.buf.swap(i, m);
            i = m;
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<(f32, usize)> {
        let ids = self.ids;
        let mut v = self.buf;
        v.sort_by(|a, b| hit_order(a.0, &ids[a.1], b.0, &ids[b.1]));
        v
    }
}

// ---------------------------------------------------------------------------
// Interning
// ---------------------------------------------------------------------------

/// Code stored for "no category".
const NONE_CODE: u32 = u32::MAX;

/// Maps the few distinct namespace/category strings to dense codes, so the
/// scan filters on integers. Codes are never reused; the table only grows with
/// the number of distinct values ever seen, which is small.
#[derive(Debug, Clone, Default)]
struct Interner {
    codes: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.codes.get(s) {
            return *c;
        }
        // Saturates rather than wrapping into NONE_CODE; 4 billion distinct
        // namespaces cannot fit in memory anyway.
        let c = u32::try_from(self.names.len()).unwrap_or(NONE_CODE - 1).min(NONE_CODE - 1);
        self.codes.insert(s.to_string(), c);
        self.names.push(s.to_string());
        c
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.codes.get(s).copied()
    }

    fn name(&self, c: u32) -> &str {
        self.names.get(c as usize).map(String::as_str).unwrap_or("")
    }
}

// ---------------------------------------------------------------------------
// ShardIndex
// ---------------------------------------------------------------------------

/// An exact cosine index over fixed-dimension vectors, dense by slot.
///
/// Invariants (checked by the tests): `values.len() == len() * dim`; `ids`,
/// `metas`, `ns_codes`, `cat_codes` all have `len()` entries; `slots` maps
/// every id to its slot and nothing else.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    dim: usize,
    /// Row-major, L2-normalized, `slot * dim .. (slot + 1) * dim`.
    values: Vec<f32>,
    ids: Vec<String>,
    metas: Vec<VectorMeta>,
    /// Interned namespace per slot.
    ns_codes: Vec<u32>,
    /// Interned category per slot, [`NONE_CODE`] for none.
    cat_codes: Vec<u32>,
    namespaces: Interner,
    categories: Interner,
    slots: HashMap<String, usize>,
    /// The slots of each content id, so replacing or deleting an item's
    /// vectors costs its own vectors, not a scan of the shard.
    by_content: HashMap<String, Vec<usize>>,
}

impl ShardIndex {
    pub fn new(dim: usize) -> Self {
        ShardIndex {
            dim,
            values: Vec::new(),
            ids: Vec::new(),
            metas: Vec::new(),
            ns_codes: Vec::new(),
            cat_codes: Vec::new(),
            namespaces: Interner::default(),
            categories: Interner::default(),
            slots: HashMap::new(),
            by_content: HashMap::new(),
        }
    }

    /// Pre-allocates room for `additional` more vectors (e.g. before a bulk
    /// load from SQLite) so storage grows once instead of doubling repeatedly.
    pub fn reserve(&mut self, additional: usize) {
        self.values.reserve(additional.saturating_mul(self.dim));
        self.ids.reserve(additional);
        self.metas.reserve(additional);
        self.ns_codes.reserve(additional);
        self.cat_codes.reserve(additional);
        self.slots.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Drops every vector (keeps the dimension).
    pub fn clear(&mut self) {
        *self = ShardIndex::new(self.dim);
    }

    /// Approximate heap footprint in bytes: vectors plus ids/metadata. Lets
    /// the actor decide whether caching its shard fits the isolate's memory.
    pub fn memory_bytes(&self) -> usize {
        let strings: usize = self
            .ids
            .iter()
            .zip(&self.metas)
            .map(|(id, m)| 2 * id.len() + m.content_id.len() + m.category.as_ref().map_or(0, String::len))
            .sum();
        self.values.capacity() * 4
            + self.len() * (2 * std::mem::size_of::<String>() + std::mem::size_of::<VectorMeta>() + 8 + 16)
            + strings
            + self.len() * std::mem::size_of::<usize>()
            + self.by_content.keys().map(|c| c.len() + std::mem::size_of::<String>() + std::mem::size_of::<Vec<usize>>()).sum::<usize>()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    /// The stored (normalized) vector of `id`.
    pub fn values_of(&self, id: &str) -> Option<&[f32]> {
        let s = *self.slots.get(id)?;
        self.row(s)
    }

    pub fn meta_of(&self, id: &str) -> Option<&VectorMeta> {
        self.metas.get(*self.slots.get(id)?)
    }

    pub fn namespace_of(&self, id: &str) -> Option<&str> {
        let s = *self.slots.get(id)?;
        self.ns_codes.get(s).map(|c| self.namespaces.name(*c))
    }

    /// Every id, in slot order (not sorted; slot order changes on removal).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    #[inline]
    fn row(&self, slot: usize) -> Option<&[f32]> {
        let start = slot.checked_mul(self.dim)?;
        self.values.get(start..start.checked_add(self.dim)?)
    }

    /// Inserts or replaces `id`. The vector must have exactly `dim()` finite
    /// components; an L2-normalized copy is stored (a zero vector stays zero).
    /// Replacing keeps the slot, so nothing else moves.
    pub fn upsert(&mut self, id: &str, namespace: &str, values: &[f32], meta: VectorMeta) -> Result<(), VectorError> {
        check_vector(self.dim, values)?;
        let start = self.values.len();
        self.values.extend_from_slice(values);
        self.commit_tail(start, id, namespace, meta);
        Ok(())
    }

    /// [`upsert`](Self::upsert) straight from an [`encode_f32_le`] blob, as
    /// read from SQLite, decoding into the flat storage without a temporary
    /// vector.
    pub fn upsert_blob(&mut self, id: &str, namespace: &str, blob: &[u8], meta: VectorMeta) -> Result<(), VectorError> {
        if !blob.len().is_multiple_of(4) {
            return Err(VectorError::BadBlob { len: blob.len() });
        }
        if blob.len() / 4 != self.dim {
            return Err(VectorError::Dimension { expected: self.dim, got: blob.len() / 4 });
        }
        let start = self.values.len();
        decode_into(blob, &mut self.values);
        if !self.values[start..].iter().all(|x| x.is_finite()) {
            self.values.truncate(start);
            return Err(VectorError::NotFinite);
        }
        self.commit_tail(start, id, namespace, meta);
        Ok(())
    }

    /// The validated vector sits at `values[start..]`: normalize it and either
    /// make it a new slot or move it over the existing slot of `id`.
    fn commit_tail(&mut self, start: usize, id: &str, namespace: &str, meta: VectorMeta) {
        normalize_in_place(&mut self.values[start..]);
        let ns = self.namespaces.intern(namespace);
        let cat = match &meta.category {
            Some(c) => self.categories.intern(c),
            None => NONE_CODE,
        };
        if let Some(&slot) = self.slots.get(id) {
            let dst = slot * self.dim;
            self.values.copy_within(start.., dst);
            self.values.truncate(start);
            if self.metas[slot].content_id != meta.content_id {
                let old = std::mem::take(&mut self.metas[slot].content_id);
                self.unlist(&old, slot);
                self.by_content.entry(meta.content_id.clone()).or_default().push(slot);
            }
            self.metas[slot] = meta;
            self.ns_codes[slot] = ns;
            self.cat_codes[slot] = cat;
        } else {
            let slot = self.ids.len();
            self.by_content.entry(meta.content_id.clone()).or_default().push(slot);
            self.ids.push(id.to_string());
            self.metas.push(meta);
            self.ns_codes.push(ns);
            self.cat_codes.push(cat);
            self.slots.insert(id.to_string(), slot);
        }
    }

    /// Takes `slot` off the list of `content_id` (dropping an emptied list).
    fn unlist(&mut self, content_id: &str, slot: usize) {
        if let Some(list) = self.by_content.get_mut(content_id) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.by_content.remove(content_id);
            }
        }
    }

    /// Removes `id`; `false` if it was not there. The last row moves into the
    /// freed slot (`swap_remove`) and its map entry is updated.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        let content_id = std::mem::take(&mut self.metas[slot].content_id);
        self.unlist(&content_id, slot);
        if slot != last {
            // The last row moves into the freed slot.
            if let Some(list) = self.by_content.get_mut(&self.metas[last].content_id) {
                if let Some(s) = list.iter_mut().find(|s| **s == last) {
                    *s = slot;
                }
            }
            let d = self.dim;
            self.values.copy_within(last * d..(last + 1) * d, slot * d);
        }
        self.values.truncate(last * self.dim);
        self.ids.swap_remove(slot);
        self.metas.swap_remove(slot);
        self.ns_codes.swap_remove(slot);
        self.cat_codes.swap_remove(slot);
        if slot != last {
            if let Some(moved) = self.ids.get(slot) {
                if let Some(s) = self.slots.get_mut(moved.as_str()) {
                    *s = slot;
                }
            }
        }
        true
    }

    /// Removes every vector of `content_id` (all versions, or all but
    /// `keep_version`) and returns the removed ids, sorted, so the actor can
    /// delete the same rows from SQLite. Used when a new version is published
    /// (keep it, drop the rest) and when content is deleted (`None`).
    pub fn remove_content(&mut self, content_id: &str, keep_version: Option<u32>) -> Vec<String> {
        let mut doomed: Vec<String> = self
            .by_content
            .get(content_id)
            .into_iter()
            .flatten()
            .filter(|&&s| keep_version != Some(self.metas[s].version))
            .map(|&s| self.ids[s].clone())
            .collect();
        doomed.sort();
        for id in &doomed {
            self.remove(id);
        }
        doomed
    }

    /// Ids of every vector of `content_id`, sorted.
    pub fn ids_of_content(&self, content_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self.by_content.get(content_id).into_iter().flatten().map(|&s| self.ids[s].clone()).collect();
        v.sort();
        v
    }

    /// Exact top-`k` by cosine similarity, best first (score descending, then
    /// id ascending). Filters are applied before scoring, so a filtered query
    /// returns the true top-`k` among matching vectors rather than a filtered
    /// top-`k`. Empty if `k == 0`, the query has the wrong dimension or is not
    /// finite, or a filter names a namespace/category never stored. A zero
    /// query scores 0 against everything (ties ordered by id).
    pub fn query(&self, query: &[f32], k: usize, namespace: Option<&str>, category: Option<&str>) -> Vec<Hit> {
        if k == 0 || query.len() != self.dim || self.is_empty() || !query.iter().all(|x| x.is_finite()) {
            return Vec::new();
        }
        let ns = match namespace {
            Some(n) => match self.namespaces.get(n) {
                Some(c) => Some(c),
                None => return Vec::new(),
            },
            None => None,
        };
        let cat = match category {
            Some(n) => match self.categories.get(n) {
                Some(c) => Some(c),
                None => return Vec::new(),
            },
            None => None,
        };
        let mut q = query.to_vec();
        normalize_in_place(&mut q);

        let dim = self.dim;
        let mut top = TopK::new(k.min(self.len()), &self.ids);
        match (ns, cat) {
            (None, None) => {
                for (slot, row) in self.rows().enumerate() {
                    top.offer(clean_score(dot(&q, row)), slot);
                }
            }
            _ => {
                for (slot, (n, c)) in self.ns_codes.iter().zip(&self.cat_codes).enumerate() {
                    if ns.is_some_and(|x| x != *n) || cat.is_some_and(|x| x != *c) {
                        continue;
                    }
                    let row = &self.values[slot * dim..slot * dim + dim];
                    top.offer(clean_score(dot(&q, row)), slot);
                }
            }
        }
        top.into_sorted()
            .into_iter()
            .map(|(score, slot)| Hit { id: self.ids[slot].clone(), score, meta: self.metas[slot].clone() })
            .collect()
    }

    /// Rows in slot order. `dim == 0` yields one empty row per vector.
    fn rows(&self) -> impl Iterator<Item = &[f32]> {
        let dim = self.dim;
        (0..self.len()).map(move |s| &self.values[s * dim..s * dim + dim])
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.values.len(), self.len() * self.dim);
        assert_eq!(self.metas.len(), self.len());
        assert_eq!(self.ns_codes.len(), self.len());
        assert_eq!(self.cat_codes.len(), self.len());
        assert_eq!(self.slots.len(), self.len());
        let listed: usize = self.by_content.values().map(Vec::len).sum();
        assert_eq!(listed, self.len(), "every slot listed once under its content");
        for (c, list) in &self.by_content {
            assert!(!list.is_empty(), "no empty list kept for {c}");
            assert!(list.iter().all(|&s| &self.metas[s].content_id == c), "slots listed under {c}");
        }
        for (i, id) in self.ids.iter().enumerate() {
            assert_eq!(self.slots.get(id), Some(&i), "slot of {id}");
            let cat = self.metas[i].category.as_deref().map(|c| self.categories.get(c).unwrap()).unwrap_or(NONE_CODE);
            assert_eq!(self.cat_codes[i], cat);
        }
    }
}

/// Merges per-shard top-k lists into the global top-`k`, in the same order
/// as [`ShardIndex::query`]. An id seen more than once keeps its best score
/// (the first occurrence on a tie). Hits with a NaN score are dropped.
///
/// Because every shard returns its exact top-`k`, the merged list equals a
/// query over one index holding all shards' vectors.
pub fn merge_hits(lists: Vec<Vec<Hit>>, k: usize) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    let mut best: HashMap<String, Hit> = HashMap::new();
    for hit in lists.into_iter().flatten() {
        if hit.score.is_nan() {
            continue;
        }
        let hit = Hit { score: hit.score + 0.0, ..hit };
        match best.get_mut(&hit.id) {
            Some(prev) => {
                if hit.score.total_cmp(&prev.score) == Ordering::Greater {
                    *prev = hit;
                }
            }
            None => {
                best.insert(hit.id.clone(), hit);
            }
        }
    }
    let mut out: Vec<Hit> = best.into_values().collect();
    out.sort_by(|a, b| hit_order(a.score, &a.id, b.score, &b.id));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fence_admits_only_current_or_newer_and_nothing_after_delete() {
        let f = Fence::default().admit(2).unwrap();
        assert_eq!(f, Fence { version: 2, deleted: false });
        assert_eq!(f.admit(2), Ok(f), "a retried write of the current version");
        assert_eq!(f.admit(1), Err(FenceError::Superseded { got: 1, current: 2 }));
        let f3 = f.admit(3).unwrap();
        assert!(f3.admit(2).is_err());
        let dead = f3.tombstone();
        assert_eq!(dead.admit(3), Err(FenceError::Deleted));
        assert_eq!(dead.admit(9), Err(FenceError::Deleted));
        assert!(FenceError::Superseded { got: 1, current: 2 }.to_string().starts_with("superseded by version 2"));
    }

    use super::*;

    /// splitmix64: a tiny deterministic PRNG so tests need no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        fn f32(&mut self) -> f32 {
            ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn vec(&mut self, dim: usize) -> Vec<f32> {
            (0..dim).map(|_| self.f32()).collect()
        }
    }

    fn meta(content: &str, version: u32, chunk: u32, category: Option<&str>) -> VectorMeta {
        VectorMeta { content_id: content.into(), version, chunk, category: category.map(Into::into) }
    }

    const NAMESPACES: [&str; 3] = ["default", "docs", "mail"];
    const CATEGORIES: [Option<&str>; 3] = [None, Some("news"), Some("blog")];

    /// What was inserted, kept outside the index for the reference search.
    struct Row {
        id: String,
        ns: &'static str,
        values: Vec<f32>,
        meta: VectorMeta,
    }

    fn random_rows(rng: &mut Rng, n: usize, dim: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let content = format!("c{}", i / 3);
                let m = meta(&content, 1, (i % 3) as u32, CATEGORIES[rng.below(3)]);
                Row {
                    id: vector_id(&content, 1, (i % 3) as u32),
                    ns: NAMESPACES[rng.below(3)],
                    values: rng.vec(dim),
                    meta: m,
                }
            })
            .collect()
    }

    fn build(rows: &[Row], dim: usize) -> ShardIndex {
        let mut idx = ShardIndex::new(dim);
        for r in rows {
            idx.upsert(&r.id, r.ns, &r.values, r.meta.clone()).unwrap();
        }
        idx.check_invariants();
        idx
    }

    /// Plain f64 cosine, independent of the index's math.
    fn naive_cosine(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            d / (na * nb)
        }
    }

    /// Reference search: score everything that passes the filters with the
    /// same `dot` on normalized copies, sort all, take k.
    fn reference(rows: &[Row], q: &[f32], k: usize, ns: Option<&str>, cat: Option<&str>) -> Vec<(String, f32)> {
        let mut qn = q.to_vec();
        normalize_in_place(&mut qn);
        let mut all: Vec<(String, f32)> = rows
            .iter()
            .filter(|r| ns.is_none_or(|n| n == r.ns) && cat.is_none_or(|c| r.meta.category.as_deref() == Some(c)))
            .map(|r| {
                let mut v = r.values.clone();
                normalize_in_place(&mut v);
                (r.id.clone(), clean_score(dot(&qn, &v)))
            })
            .collect();
        all.sort_by(|a, b| hit_order(a.1, &a.0, b.1, &b.0));
        all.truncate(k);
        all
    }

    fn pairs(hits: &[Hit]) -> Vec<(String, f32)> {
        hits.iter().map(|h| (h.id.clone(), h.score)).collect()
    }

    #[test]
    fn blob_round_trip() {
        let v = vec![0.0, -0.0, 1.5, -3.25, f32::MIN_POSITIVE, f32::MAX, f32::INFINITY, 1e-42];
        let b = encode_f32_le(&v);
        assert_eq!(b.len(), v.len() * 4);
        assert_eq!(&b[8..12], &1.5f32.to_le_bytes());
        let back = decode_f32_le(&b).unwrap();
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let nan = decode_f32_le(&encode_f32_le(&[f32::NAN])).unwrap();
        assert!(nan[0].is_nan());

        assert_eq!(decode_f32_le(&b[..5]), None);
        assert_eq!(decode_f32_le(&[]), Some(vec![]));
        let mut out = vec![7.0];
        assert!(!decode_into(&b[..7], &mut out));
        assert_eq!(out, vec![7.0]);
        assert!(decode_into(&b[..8], &mut out));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], 7.0);
    }

    #[test]
    fn ids_and_fnv() {
        assert_eq!(vector_id("abc", 2, 7), "abc:2:7");
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_for_is_stable_and_spread() {
        assert_eq!(shard_for("anything", 0), 0);
        assert_eq!(shard_for("anything", 1), 0);
        // Pinned: a shard assignment is persisted, so it must never change.
        assert_eq!(shard_for("foobar", 8), (0x8594_4171_f739_67e8u64 % 8) as u32);
        assert_eq!(shard_for("doc-42", 8), shard_for("doc-42", 8));

        let mut rng = Rng(7);
        let uuid_like: Vec<String> = (0..10_000)
            .map(|_| {
                let (a, b) = (rng.next(), rng.next());
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    a & 0xffff,
                    (a >> 16) & 0xfff,
                    b >> 48,
                    b & 0xffff_ffff_ffff
                )
            })
            .collect();
        let sequential: Vec<String> = (0..10_000).map(|i| format!("content-{i}")).collect();
        for ids in [&uuid_like, &sequential] {
            for shards in [8u32, 5, 16] {
                let mut counts = vec![0usize; shards as usize];
                for id in ids.iter() {
                    let s = shard_for(id, shards);
                    assert!(s < shards);
                    counts[s as usize] += 1;
                }
                let expected = ids.len() as f64 / f64::from(shards);
                for c in &counts {
                    let dev = (*c as f64 - expected).abs() / expected;
                    assert!(dev <= 0.20, "{shards} shards: counts {counts:?}");
                }
            }
        }
    }

    #[test]
    fn normalize_and_dot() {
        let mut v = vec![3.0, 4.0];
        normalize_in_place(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 5];
        normalize_in_place(&mut z);
        assert_eq!(z, vec![0.0; 5]);
        // Huge finite components do not overflow the norm.
        let mut h = vec![f32::MAX, f32::MAX];
        normalize_in_place(&mut h);
        assert!((h[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!(h.iter().all(|x| x.is_finite()));

        let mut rng = Rng(3);
        for n in [0, 1, 15, 16, 17, 33, 384] {
            let (a, b) = (rng.vec(n), rng.vec(n));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-4, "n={n}");
        }
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0]), 1.0);
    }

    #[test]
    fn upsert_validates_and_replaces_in_place() {
        let mut idx = ShardIndex::new(3);
        assert_eq!(
            idx.upsert("a", "ns", &[1.0, 0.0], meta("c", 1, 0, None)),
            Err(VectorError::Dimension { expected: 3, got: 2 })
        );
        assert_eq!(idx.upsert("a", "ns", &[1.0, f32::NAN, 0.0], meta("c", 1, 0, None)), Err(VectorError::NotFinite));
        assert_eq!(
            idx.upsert("a", "ns", &[1.0, f32::INFINITY, 0.0], meta("c", 1, 0, None)),
            Err(VectorError::NotFinite)
        );
        assert!(idx.is_empty());
        idx.check_invariants();

        idx.upsert("a", "ns", &[2.0, 0.0, 0.0], meta("c", 1, 0, None)).unwrap();
        idx.upsert("b", "ns", &[0.0, 5.0, 0.0], meta("d", 1, 0, None)).unwrap();
        assert_eq!(idx.values_of("a"), Some(&[1.0, 0.0, 0.0][..]));
        assert_eq!(idx.len(), 2);

        idx.upsert("a", "other", &[0.0, 0.0, -3.0], meta("c", 2, 0, Some("news"))).unwrap();
        idx.check_invariants();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.values_of("a"), Some(&[0.0, 0.0, -1.0][..]));
        assert_eq!(idx.values_of("b"), Some(&[0.0, 1.0, 0.0][..]));
        assert_eq!(idx.meta_of("a").unwrap().version, 2);
        assert_eq!(idx.namespace_of("a"), Some("other"));
        assert_eq!(idx.ids().collect::<Vec<_>>(), vec!["a", "b"]);

        let hits = idx.query(&[0.0, 0.0, -1.0], 5, None, None);
        assert_eq!(hits[0].id, "a");
        assert_eq!(hits[0].score, 1.0);
        assert!(idx.query(&[0.0, 0.0, -1.0], 5, Some("ns"), None).iter().all(|h| h.id == "b"));
        assert_eq!(pairs(&idx.query(&[0.0, 0.0, 1.0], 5, None, Some("news"))), vec![("a".to_string(), -1.0)]);

        // Zero vector stays zero and scores 0.
        idx.upsert("z", "ns", &[0.0, 0.0, 0.0], meta("z", 1, 0, None)).unwrap();
        assert_eq!(idx.values_of("z"), Some(&[0.0, 0.0, 0.0][..]));
        let hits = idx.query(&[0.0, 1.0, 0.0], 3, None, None);
        assert_eq!(pairs(&hits), vec![("b".into(), 1.0), ("a".into(), 0.0), ("z".into(), 0.0)]);
        assert!(hits.iter().all(|h| h.score.is_sign_positive()));
    }

    #[test]
    fn upsert_blob_matches_upsert() {
        let mut rng = Rng(11);
        let v = rng.vec(8);
        let (mut a, mut b) = (ShardIndex::new(8), ShardIndex::new(8));
        a.upsert("x", "n", &v, meta("x", 1, 0, None)).unwrap();
        b.upsert_blob("x", "n", &encode_f32_le(&v), meta("x", 1, 0, None)).unwrap();
        assert_eq!(a.values_of("x"), b.values_of("x"));
        assert_eq!(b.upsert_blob("y", "n", &[0; 7], meta("y", 1, 0, None)), Err(VectorError::BadBlob { len: 7 }));
        assert_eq!(
            b.upsert_blob("y", "n", &[0; 8], meta("y", 1, 0, None)),
            Err(VectorError::Dimension { expected: 8, got: 2 })
        );
        let mut bad = v.clone();
        bad[3] = f32::NAN;
        assert_eq!(b.upsert_blob("y", "n", &encode_f32_le(&bad), meta("y", 1, 0, None)), Err(VectorError::NotFinite));
        b.check_invariants();
        // Replacing through a blob keeps the slot.
        let w = rng.vec(8);
        b.upsert_blob("x", "n", &encode_f32_le(&w), meta("x", 2, 0, None)).unwrap();
        a.upsert("x", "n", &w, meta("x", 2, 0, None)).unwrap();
        b.check_invariants();
        assert_eq!(b.len(), 1);
        assert_eq!(a.values_of("x"), b.values_of("x"));
    }

    #[test]
    fn remove_in_random_order_keeps_map_consistent() {
        let dim = 16;
        let mut rng = Rng(42);
        let mut rows = random_rows(&mut rng, 300, dim);
        let mut idx = build(&rows, dim);
        assert!(!idx.remove("nope"));
        while !rows.is_empty() {
            let i = rng.below(rows.len());
            let r = rows.swap_remove(i);
            assert!(idx.remove(&r.id));
            assert!(!idx.remove(&r.id));
            assert!(!idx.contains(&r.id));
            idx.check_invariants();
            if rows.len().is_multiple_of(37) {
                let q = rng.vec(dim);
                assert_eq!(pairs(&idx.query(&q, 10, None, None)), reference(&rows, &q, 10, None, None));
                for r in rows.iter().take(5) {
                    let mut v = r.values.clone();
                    normalize_in_place(&mut v);
                    assert_eq!(idx.values_of(&r.id), Some(&v[..]));
                    assert_eq!(idx.meta_of(&r.id), Some(&r.meta));
                }
            }
        }
        assert!(idx.is_empty());
        assert!(idx.query(&rng.vec(dim), 3, None, None).is_empty());
    }

    #[test]
    fn remove_content_with_keep_version() {
        let mut idx = ShardIndex::new(2);
        for v in 1..=3u32 {
            for c in 0..3u32 {
                idx.upsert(&vector_id("doc", v, c), "n", &[1.0, v as f32], meta("doc", v, c, None)).unwrap();
            }
        }
        idx.upsert("other:1:0", "n", &[0.0, 1.0], meta("other", 1, 0, None)).unwrap();
        assert_eq!(idx.ids_of_content("doc").len(), 9);

        let removed = idx.remove_content("doc", Some(3));
        assert_eq!(removed, vec!["doc:1:0", "doc:1:1", "doc:1:2", "doc:2:0", "doc:2:1", "doc:2:2"]);
        idx.check_invariants();
        assert_eq!(idx.ids_of_content("doc"), vec!["doc:3:0", "doc:3:1", "doc:3:2"]);
        assert_eq!(idx.ids_of_content("other"), vec!["other:1:0"]);
        assert!(idx.remove_content("doc", Some(3)).is_empty());
        assert!(idx.remove_content("missing", None).is_empty());

        assert_eq!(idx.remove_content("doc", None), vec!["doc:3:0", "doc:3:1", "doc:3:2"]);
        idx.check_invariants();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.query(&[0.0, 1.0], 5, None, None)[0].id, "other:1:0");
    }

    #[test]
    fn query_matches_naive_reference() {
        let dim = 24;
        let mut rng = Rng(1234);
        let rows = random_rows(&mut rng, 500, dim);
        let idx = build(&rows, dim);
        let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        for _ in 0..8 {
            let q = rng.vec(dim);
            for k in [1, 3, 10, 50, 499, 500, 10_000, usize::MAX] {
                for ns in [None, Some("docs"), Some("mail")] {
                    for cat in [None, Some("news"), Some("blog")] {
                        let got = idx.query(&q, k, ns, cat);
                        let want = reference(&rows, &q, k, ns, cat);
                        assert_eq!(pairs(&got), want, "k={k} ns={ns:?} cat={cat:?}");
                        for h in &got {
                            let r = by_id[h.id.as_str()];
                            assert_eq!(h.meta, r.meta);
                            assert!((f64::from(h.score) - naive_cosine(&q, &r.values)).abs() < 1e-5);
                            assert!(ns.is_none_or(|n| n == r.ns));
                            assert!(cat.is_none_or(|c| r.meta.category.as_deref() == Some(c)));
                        }
                    }
                }
            }
        }
        let q = rng.vec(dim);
        assert!(idx.query(&q, 0, None, None).is_empty());
        assert!(idx.query(&q[..5], 3, None, None).is_empty());
        assert!(idx.query(&q, 3, Some("unknown"), None).is_empty());
        assert!(idx.query(&q, 3, None, Some("unknown")).is_empty());
        let mut bad = q.clone();
        bad[0] = f32::NAN;
        assert!(idx.query(&bad, 3, None, None).is_empty());
        // A zero query ranks by id.
        let zero = idx.query(&vec![0.0; dim], 3, None, None);
        let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        assert_eq!(zero.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ids[..3].to_vec());
    }

    #[test]
    fn ties_are_broken_by_id() {
        let mut idx = ShardIndex::new(2);
        for id in ["e", "b", "d", "a", "c"] {
            idx.upsert(id, "n", &[1.0, 1.0], meta(id, 1, 0, None)).unwrap();
        }
        idx.upsert("best", "n", &[1.0, 0.0], meta("best", 1, 0, None)).unwrap();
        let ids = |k| idx.query(&[1.0, 0.0], k, None, None).into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(3), vec!["best", "a", "b"]);
        assert_eq!(ids(10), vec!["best", "a", "b", "c", "d", "e"]);
    }

    #[test]
    fn recall_at_10_is_exact() {
        let dim = 64;
        let mut rng = Rng(99);
        let rows = random_rows(&mut rng, 2_000, dim);
        let idx = build(&rows, dim);
        let (mut found, mut total) = (0usize, 0usize);
        for _ in 0..20 {
            let q = rng.vec(dim);
            let mut brute: Vec<(f64, &str)> =
                rows.iter().map(|r| (naive_cosine(&q, &r.values), r.id.as_str())).collect();
            brute.sort_by(|a, b| b.0.total_cmp(&a.0));
            let truth: Vec<&str> = brute.iter().take(10).map(|x| x.1).collect();
            let got = idx.query(&q, 10, None, None);
            found += got.iter().filter(|h| truth.contains(&h.id.as_str())).count();
            total += 10;
        }
        assert_eq!(found, total, "recall@10 must be 1.0");
    }

    #[test]
    fn merge_hits_across_shards_equals_single_index() {
        let dim = 20;
        let shards = 4u32;
        let mut rng = Rng(5);
        let rows = random_rows(&mut rng, 800, dim);
        let whole = build(&rows, dim);
        let mut parts: Vec<ShardIndex> = (0..shards).map(|_| ShardIndex::new(dim)).collect();
        for r in &rows {
            let s = shard_for(&r.meta.content_id, shards) as usize;
            parts[s].upsert(&r.id, r.ns, &r.values, r.meta.clone()).unwrap();
        }
        assert!(parts.iter().all(|p| !p.is_empty()));
        for _ in 0..20 {
            let q = rng.vec(dim);
            for k in [1, 10, 40] {
                for ns in [None, Some("docs")] {
                    let lists = parts.iter().map(|p| p.query(&q, k, ns, None)).collect();
                    assert_eq!(merge_hits(lists, k), whole.query(&q, k, ns, None));
                }
            }
        }
    }

    #[test]
    fn merge_hits_dedupes_and_orders() {
        let h = |id: &str, score: f32| Hit { id: id.into(), score, meta: meta(id, 1, 0, None) };
        let merged = merge_hits(
            vec![vec![h("a", 0.5), h("b", 0.4)], vec![h("a", 0.9), h("c", 0.4), h("n", f32::NAN)], vec![]],
            10,
        );
        assert_eq!(pairs(&merged), vec![("a".into(), 0.9), ("b".into(), 0.4), ("c".into(), 0.4)]);
        assert_eq!(merge_hits(vec![vec![h("a", 0.5)]], 0), vec![]);
        assert_eq!(merge_hits(vec![], 3), vec![]);
        let z = merge_hits(vec![vec![h("x", -0.0), h("w", 0.0)]], 2);
        assert_eq!(z.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["w", "x"]);
    }

    #[test]
    fn zero_dimension_does_not_panic() {
        let mut idx = ShardIndex::new(0);
        idx.upsert("a", "n", &[], meta("a", 1, 0, None)).unwrap();
        idx.upsert("b", "n", &[], meta("b", 1, 0, None)).unwrap();
        assert_eq!(idx.query(&[], 5, None, None).len(), 2);
        assert!(idx.remove("a"));
        idx.check_invariants();
        assert_eq!(idx.upsert_blob("c", "n", &[], meta("c", 1, 0, None)), Ok(()));
        assert!(idx.memory_bytes() > 0);
        idx.clear();
        assert!(idx.is_empty());
    }

    #[test]
    fn random_operations_match_a_model() {
        let dim = 8;
        let mut rng = Rng(77);
        let mut idx = ShardIndex::new(dim);
        // The model: id -> (namespace, raw values, meta).
        let mut model: HashMap<String, (&'static str, Vec<f32>, VectorMeta)> = HashMap::new();
        for step in 0..3_000 {
            let content = format!("c{}", rng.below(20));
            match rng.below(10) {
                0..=5 => {
                    let (v, c) = (rng.below(3) as u32, rng.below(4) as u32);
                    let id = vector_id(&content, v, c);
                    let ns = NAMESPACES[rng.below(3)];
                    // Now and then an id is written again under another item.
                    let owner = if rng.below(8) == 0 { format!("c{}", rng.below(20)) } else { content.clone() };
                    let m = meta(&owner, v, c, CATEGORIES[rng.below(3)]);
                    let vals = rng.vec(dim);
                    idx.upsert(&id, ns, &vals, m.clone()).unwrap();
                    model.insert(id, (ns, vals, m));
                }
                6 | 7 => {
                    let id = vector_id(&content, rng.below(3) as u32, rng.below(4) as u32);
                    assert_eq!(idx.remove(&id), model.remove(&id).is_some());
                }
                _ => {
                    let keep = if rng.below(2) == 0 { None } else { Some(rng.below(3) as u32) };
                    let mut want: Vec<String> = model
                        .iter()
                        .filter(|(_, (_, _, m))| m.content_id == content && keep != Some(m.version))
                        .map(|(id, _)| id.clone())
                        .collect();
                    want.sort();
                    for id in &want {
                        model.remove(id);
                    }
                    assert_eq!(idx.remove_content(&content, keep), want);
                }
            }
            assert_eq!(idx.len(), model.len());
            if step % 10 == 0 {
                idx.check_invariants();
            }
            if step % 100 == 0 {
                let rows: Vec<Row> = model
                    .iter()
                    .map(|(id, (ns, v, m))| Row { id: id.clone(), ns, values: v.clone(), meta: m.clone() })
                    .collect();
                let q = rng.vec(dim);
                for (ns, cat) in
                    [(None, None), (Some("docs"), None), (None, Some("blog")), (Some("mail"), Some("news"))]
                {
                    assert_eq!(pairs(&idx.query(&q, 7, ns, cat)), reference(&rows, &q, 7, ns, cat));
                }
                let mut ids = idx.ids_of_content(&content);
                ids.sort();
                let mut want: Vec<String> =
                    model.iter().filter(|(_, (_, _, m))| m.content_id == content).map(|(id, _)| id.clone()).collect();
                want.sort();
                assert_eq!(ids, want);
            }
        }
    }

    #[test]
    fn hit_serde_round_trip() {
        let hit = Hit { id: "c:1:0".into(), score: 0.25, meta: meta("c", 1, 0, Some("news")) };
        let json = serde_json::to_string(&hit).unwrap();
        assert_eq!(serde_json::from_str::<Hit>(&json).unwrap(), hit);
    }

    /// `cargo test --release -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_30k_x_384() {
        let (n, dim) = (30_000usize, 384usize);
        let mut rng = Rng(2024);
        let mut idx = ShardIndex::new(dim);
        idx.reserve(n);
        let t0 = std::time::Instant::now();
        let mut v = vec![0.0f32; dim];
        for i in 0..n {
            v.iter_mut().for_each(|x| *x = rng.f32());
            let content = format!("content-{}", i / 8);
            let id = vector_id(&content, 1, (i % 8) as u32);
            idx.upsert(&id, NAMESPACES[i % 3], &v, meta(&content, 1, (i % 8) as u32, CATEGORIES[i % 3])).unwrap();
        }
        let build = t0.elapsed();
        let mut times = Vec::new();
        let mut sink = 0.0f32;
        for _ in 0..41 {
            let q = rng.vec(dim);
            let t = std::time::Instant::now();
            let hits = idx.query(&q, 10, None, None);
            times.push(t.elapsed());
            sink += hits[0].score;
        }
        times.sort();
        let mut ftimes = Vec::new();
        for _ in 0..21 {
            let q = rng.vec(dim);
            let t = std::time::Instant::now();
            let hits = idx.query(&q, 10, Some("docs"), None);
            ftimes.push(t.elapsed());
            sink += hits[0].score;
        }
        ftimes.sort();
        println!(
            "built {n}x{dim} in {build:?} ({} MB); median query k=10: {:?} (min {:?}, max {:?}); namespace-filtered (1/3): {:?} [{sink}]",
            idx.memory_bytes() / (1 << 20),
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            ftimes[ftimes.len() / 2],
        );
        // What the index stage does per item: a new version's vectors, then the old ones dropped.
        let mut replace = Vec::new();
        for k in 0..51 {
            let content = format!("content-{k}");
            let t = std::time::Instant::now();
            for c in 0..8u32 {
                idx.upsert(&vector_id(&content, 2, c), NAMESPACES[0], &v, meta(&content, 2, c, None)).unwrap();
            }
            assert_eq!(idx.remove_content(&content, Some(2)).len(), 8);
            replace.push(t.elapsed());
        }
        replace.sort();
        println!("replace one item's 8 vectors among {n}: median {:?}", replace[replace.len() / 2]);
    }
}
