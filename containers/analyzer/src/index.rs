//! Persistent near-duplicate index.
//!
//! In memory, signatures live in one flat `Vec<u32>` (128 per document) so a
//! brute-force scan is a linear walk over contiguous memory with no pointer
//! chasing or per-document allocation; at 100k documents that is ~51 MB and
//! a few milliseconds per query thanks to the early exit in
//! `similarity_at_least`. LSH banding would be faster still but can miss
//! candidates, and exhaustive comparison is what makes results exact with
//! respect to the MinHash estimate.
//!
//! On disk, the index is an append-only JSON-lines log (`fingerprints.jsonl`):
//! human-inspectable, trivially recoverable, and replayed on start. Each
//! record is written with a single `write` before the HTTP response is sent,
//! so a crash can only tear the last line, which replay truncates away. The
//! log is compacted on open once superseded versions dominate it.
//!
//! Every document belongs to a scope (the Worker sends the tenant) and is
//! only ever compared with documents of the same scope, so one tenant never
//! learns another's content ids. Deleting a document appends a removal line,
//! so a deleted item stops being flagged as the original of new copies.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::analysis::fingerprint::{
    required_matches, similarity_at_least, Fingerprint, Signature, DUPLICATE_THRESHOLD,
    MINHASH_SIZE, SCHEME_VERSION,
};

pub const LOG_FILE: &str = "fingerprints.jsonl";

/// Most near duplicates returned per query.
pub const MAX_MATCHES: usize = 10;

/// Compact on open when the log holds this many times more lines than live
/// documents (and is not tiny), bounding replay time after many re-versions
/// and removals.
const COMPACT_RATIO: usize = 2;
const COMPACT_MIN_RECORDS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub id: String,
    pub similarity: f64,
}

/// What `open` found in the log; logged at startup for operators.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    pub records: usize,
    /// Removal lines replayed; they bloat the log like superseded records.
    pub removals: usize,
    pub documents: usize,
    /// Complete lines that failed to parse or came from another scheme.
    pub skipped: usize,
    /// Bytes of a torn final line removed after a crash.
    pub truncated_bytes: u64,
    pub compacted: bool,
}

/// What [`Index::restore`] did with the lines it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// Lines taken into the index and appended to this log.
    pub applied: usize,
    /// Stale versions, forgotten ids, and lines that are not this scheme's.
    pub skipped: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Replaced,
    /// An older version than the stored one: kept out of the index so an
    /// out-of-order redelivery cannot roll a document back.
    Stale,
    /// A removed id: the Worker deletes items for good (their ids are never
    /// used again), so an analysis that was in flight during the delete and
    /// lands after it must not bring the fingerprint back.
    Forgotten,
}

/// What [`Index::check_and_record`] found and did.
#[derive(Debug)]
pub struct Checked {
    pub matches: Vec<Match>,
    pub upsert: Upsert,
    /// The line written for the document, when one was (`Inserted` or
    /// `Replaced`): what the Worker keeps to restore a wiped disk.
    pub record: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// Fingerprint scheme, see `fingerprint::SCHEME_VERSION`.
    s: u8,
    id: String,
    /// Absent in logs written before scopes existed: those read as `""`,
    /// which is also what a request without a scope gets, so no scheme bump.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    shingles: u32,
    content: String,
    simhash: String,
    /// 128 minima as 1024 hex chars: half the size of a JSON number array
    /// and a fixed width that is cheap to validate.
    minhash: String,
}

/// Log line forgetting a document for good: `{"s":1,"removed":"<id>"}`.
/// Replay drops the id and ignores any later record for it.
#[derive(Serialize, Deserialize)]
struct Removal {
    s: u8,
    removed: String,
}

/// One complete, valid log line. The fingerprint is boxed so a removal
/// line does not carry 512 unused bytes.
enum Line {
    Record(Record, Box<Fingerprint>),
    Removal(String),
}

struct Entries {
    ids: Vec<Box<str>>,
    scopes: Vec<Box<str>>,
    versions: Vec<Option<u32>>,
    shingles: Vec<u32>,
    content: Vec<u64>,
    simhash: Vec<u64>,
    signatures: Vec<u32>,
    slots: HashMap<Box<str>, usize>,
    /// Removed ids (see [`Upsert::Forgotten`]).
    forgotten: HashSet<Box<str>>,
}

struct Inner {
    entries: Entries,
    log: File,
}

pub struct Index {
    inner: Mutex<Inner>,
    /// Mirrors the entry count so health checks never wait on a scan.
    len: AtomicUsize,
    fsync: bool,
    path: PathBuf,
}

impl Index {
    /// Opens (creating if needed) the index in `dir`, replaying its log.
    ///
    /// With `fsync`, every append is also `fdatasync`ed: survives power loss,
    /// not just process crashes, at the cost of a disk flush per request.
    pub fn open(dir: &Path, fsync: bool) -> io::Result<(Index, LoadReport)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut report = LoadReport::default();
        let mut entries = Entries::new();

        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let good_len = replay(&mut log, &mut entries, &mut report)?;
        let file_len = log.metadata()?.len();
        if good_len < file_len {
            report.truncated_bytes = file_len - good_len;
            log.set_len(good_len)?;
            log.sync_all()?;
        }

        let lines = report.records + report.removals;
        // A compacted log holds a line per live document and per forgotten id.
        let kept = entries.ids.len() + entries.forgotten.len();
        if lines >= COMPACT_MIN_RECORDS && lines > COMPACT_RATIO * kept.max(1) {
            log = compact(dir, &path, &entries)?;
            report.compacted = true;
        }
        log.seek(SeekFrom::End(0))?;

        report.documents = entries.ids.len();
        let index = Index {
            len: AtomicUsize::new(entries.ids.len()),
            inner: Mutex::new(Inner { entries, log }),
            fsync,
            path,
        };
        Ok((index, report))
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// Finds near duplicates of `fp` among the other ids of `scope`, then
    /// records `fp` as the current fingerprint of `id`, now in `scope` (a
    /// document re-analyzed under another scope moves there).
    ///
    /// Both happen under one lock so two near-identical documents arriving
    /// concurrently still see each other (one of them flags the other). The
    /// record is durably appended before memory changes: if the write fails
    /// the caller gets an error and memory still matches the log.
    pub fn check_and_insert(
        &self,
        id: &str,
        scope: &str,
        version: Option<u32>,
        fp: &Fingerprint,
    ) -> io::Result<(Vec<Match>, Upsert)> {
        let checked = self.check_and_record(id, scope, version, fp)?;
        Ok((checked.matches, checked.upsert))
    }

    /// [`Self::check_and_insert`], also answering the log line it wrote
    /// (what [`Self::record_of`] would give, without encoding it again).
    pub fn check_and_record(
        &self,
        id: &str,
        scope: &str,
        version: Option<u32>,
        fp: &Fingerprint,
    ) -> io::Result<Checked> {
        let mut inner = self.lock();
        let matches =
            inner
                .entries
                .near_duplicates(id, scope, fp, DUPLICATE_THRESHOLD, MAX_MATCHES);
        let upsert = inner.entries.classify(id, version);
        let mut record = None;
        if !matches!(upsert, Upsert::Stale | Upsert::Forgotten) {
            record = Some(self.append(&mut inner.log, &Record::new(id, scope, version, fp))?);
            inner.entries.upsert(id, scope, version, fp);
            self.len.store(inner.entries.ids.len(), Ordering::Relaxed);
        }
        Ok(Checked {
            matches,
            upsert,
            record,
        })
    }

    /// Forgets `id` for good: its fingerprint now, and any analysis of it
    /// that lands later ([`Upsert::Forgotten`]). An id not stored yet is
    /// recorded too, since the removal can overtake an analysis in flight.
    /// Like inserts, the removal line is durable before memory changes; a
    /// repeated removal writes nothing, so retries do not grow the log.
    /// Returns whether a fingerprint was stored.
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        let mut inner = self.lock();
        if inner.entries.forgotten.contains(id) {
            return Ok(false);
        }
        let removal = Removal {
            s: SCHEME_VERSION,
            removed: id.to_owned(),
        };
        self.append(&mut inner.log, &removal)?;
        let stored = inner.entries.remove(id);
        self.len.store(inner.entries.ids.len(), Ordering::Relaxed);
        Ok(stored)
    }

    /// The log line that gives `id` its current fingerprint, if one is
    /// stored: what the Worker keeps so that [`Self::restore`] can bring it
    /// back into a container whose disk was wiped.
    pub fn record_of(&self, id: &str) -> Option<String> {
        let inner = self.lock();
        let slot = *inner.entries.slots.get(id)?;
        serde_json::to_string(&inner.entries.record_at(slot)).ok()
    }

    /// Takes log lines that an earlier run of this service wrote (a
    /// container's disk does not outlive its sleep, so the Worker keeps them
    /// and gives them back), as replay does: a stale version, a forgotten id
    /// or a line of another scheme changes nothing. What is taken is
    /// appended to this log in one write.
    pub fn restore(&self, lines: &[u8]) -> io::Result<Restored> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut done = Restored::default();
        let mut taken = Vec::new();
        for line in lines.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !Line::parse(line).is_some_and(|l| inner.entries.apply(&l)) {
                done.skipped += 1;
                continue;
            }
            taken.extend_from_slice(line);
            taken.push(b'\n');
            done.applied += 1;
        }
        self.len.store(inner.entries.ids.len(), Ordering::Relaxed);
        if !taken.is_empty() {
            // Memory is ahead of the log if this fails: the caller answers
            // 500 and the Worker gives the same lines again, which classify
            // as replacements and are written then.
            self.write_lines(&mut inner.log, &taken)?;
        }
        Ok(done)
    }

    /// Near duplicates of `fp` in `scope` excluding `id`, best first,
    /// without inserting.
    pub fn near_duplicates(
        &self,
        id: &str,
        scope: &str,
        fp: &Fingerprint,
        threshold: f64,
    ) -> Vec<Match> {
        self.lock()
            .entries
            .near_duplicates(id, scope, fp, threshold, MAX_MATCHES)
    }

    /// Appends one JSON line with a single `write`, so a crash can only tear
    /// the last line (see `replay`).
    /// Appends `value` as one line; answers the line (without its newline).
    fn append(&self, log: &mut File, value: &impl Serialize) -> io::Result<String> {
        let mut line = serde_json::to_string(value).map_err(io::Error::other)?;
        line.push('\n');
        self.write_lines(log, line.as_bytes())?;
        line.pop();
        Ok(line)
    }

    /// Complete lines, in one `write` (and one sync with `fsync`).
    fn write_lines(&self, log: &mut File, lines: &[u8]) -> io::Result<()> {
        log.write_all(lines)?;
        if self.fsync {
            log.sync_data()?;
        }
        Ok(())
    }

    /// Flushes the log to stable storage; called on graceful shutdown.
    pub fn sync(&self) -> io::Result<()> {
        self.lock().log.sync_all()
    }

    /// A panic while holding the lock cannot leave entries half-updated
    /// (the log write happens first and `upsert`/`remove` do not panic), so a
    /// poisoned lock is safe to keep using rather than failing every request.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Entries {
    /// The record of the document in `slot`, as its log line holds it.
    fn record_at(&self, slot: usize) -> Record {
        let mut minhash: Signature = [0; MINHASH_SIZE];
        minhash.copy_from_slice(&self.signatures[slot * MINHASH_SIZE..(slot + 1) * MINHASH_SIZE]);
        let fp = Fingerprint {
            simhash: self.simhash[slot],
            content_hash: self.content[slot],
            shingles: self.shingles[slot],
            minhash,
        };
        Record::new(&self.ids[slot], &self.scopes[slot], self.versions[slot], &fp)
    }

    fn new() -> Self {
        Entries {
            ids: Vec::new(),
            scopes: Vec::new(),
            versions: Vec::new(),
            shingles: Vec::new(),
            content: Vec::new(),
            simhash: Vec::new(),
            signatures: Vec::new(),
            slots: HashMap::new(),
            forgotten: HashSet::new(),
        }
    }

    fn classify(&self, id: &str, version: Option<u32>) -> Upsert {
        if self.forgotten.contains(id) {
            return Upsert::Forgotten;
        }
        match self.slots.get(id) {
            None => Upsert::Inserted,
            Some(&slot) => match (self.versions[slot], version) {
                (Some(stored), Some(incoming)) if incoming < stored => Upsert::Stale,
                _ => Upsert::Replaced,
            },
        }
    }

    fn upsert(&mut self, id: &str, scope: &str, version: Option<u32>, fp: &Fingerprint) {
        match self.slots.get(id) {
            Some(&slot) => {
                if *self.scopes[slot] != *scope {
                    self.scopes[slot] = scope.into();
                }
                self.versions[slot] = version;
                self.shingles[slot] = fp.shingles;
                self.content[slot] = fp.content_hash;
                self.simhash[slot] = fp.simhash;
                self.signatures[slot * MINHASH_SIZE..(slot + 1) * MINHASH_SIZE]
                    .copy_from_slice(&fp.minhash);
            }
            None => {
                let slot = self.ids.len();
                self.ids.push(id.into());
                self.scopes.push(scope.into());
                self.versions.push(version);
                self.shingles.push(fp.shingles);
                self.content.push(fp.content_hash);
                self.simhash.push(fp.simhash);
                self.signatures.extend_from_slice(&fp.minhash);
                self.slots.insert(id.into(), slot);
            }
        }
    }

    /// Takes one log line as replay does, and says whether it changed
    /// anything: an older version than the stored one, a record of a
    /// forgotten id, and a repeated removal do not.
    fn apply(&mut self, line: &Line) -> bool {
        match line {
            Line::Record(record, fp) => {
                let taken = !matches!(
                    self.classify(&record.id, record.version),
                    Upsert::Stale | Upsert::Forgotten
                );
                if taken {
                    self.upsert(&record.id, &record.scope, record.version, fp);
                }
                taken
            }
            Line::Removal(id) => {
                let new = !self.forgotten.contains(id.as_str());
                self.remove(id);
                new
            }
        }
    }

    /// Swap-removes `id`'s slot so the flat vectors stay dense for the scan,
    /// and re-points the entry that moved into it; the id stays forgotten.
    /// Returns whether it was stored.
    fn remove(&mut self, id: &str) -> bool {
        self.forgotten.insert(id.into());
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        self.ids.swap_remove(slot);
        self.scopes.swap_remove(slot);
        self.versions.swap_remove(slot);
        self.shingles.swap_remove(slot);
        self.content.swap_remove(slot);
        self.simhash.swap_remove(slot);
        self.signatures
            .copy_within(last * MINHASH_SIZE.., slot * MINHASH_SIZE);
        self.signatures.truncate(last * MINHASH_SIZE);
        if slot != last {
            if let Some(moved) = self.slots.get_mut(&*self.ids[slot]) {
                *moved = slot;
            }
        }
        true
    }

    fn near_duplicates(
        &self,
        id: &str,
        scope: &str,
        fp: &Fingerprint,
        threshold: f64,
        limit: usize,
    ) -> Vec<Match> {
        if fp.shingles == 0 || limit == 0 {
            return Vec::new();
        }
        let required = required_matches(threshold);
        let own = self.slots.get(id).copied();
        let mut found: Vec<(usize, f64)> = Vec::new();
        for (slot, stored) in self.signatures.chunks_exact(MINHASH_SIZE).enumerate() {
            if Some(slot) == own || self.shingles[slot] == 0 || *self.scopes[slot] != *scope {
                continue;
            }
            // Exact check first: identical normalized text is a duplicate
            // regardless of sketch noise.
            let sim = if self.content[slot] == fp.content_hash {
                Some(1.0)
            } else {
                similarity_at_least(&fp.minhash, stored, required)
            };
            if let Some(sim) = sim {
                found.push((slot, sim));
            }
        }
        found.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.ids[a.0].cmp(&self.ids[b.0]))
        });
        found.truncate(limit);
        found
            .into_iter()
            .map(|(slot, similarity)| Match {
                id: self.ids[slot].to_string(),
                similarity,
            })
            .collect()
    }
}

impl Record {
    fn new(id: &str, scope: &str, version: Option<u32>, fp: &Fingerprint) -> Self {
        let mut minhash = String::with_capacity(MINHASH_SIZE * 8);
        for v in fp.minhash {
            minhash.push_str(&format!("{v:08x}"));
        }
        Record {
            s: SCHEME_VERSION,
            id: id.to_owned(),
            scope: scope.to_owned(),
            version,
            shingles: fp.shingles,
            content: format!("{:016x}", fp.content_hash),
            simhash: format!("{:016x}", fp.simhash),
            minhash,
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        if self.s != SCHEME_VERSION
            || self.minhash.len() != MINHASH_SIZE * 8
            || !self.minhash.is_ascii()
        {
            return None;
        }
        let mut minhash: Signature = [0; MINHASH_SIZE];
        for (i, slot) in minhash.iter_mut().enumerate() {
            *slot = u32::from_str_radix(&self.minhash[i * 8..(i + 1) * 8], 16).ok()?;
        }
        let fp = Fingerprint {
            simhash: u64::from_str_radix(&self.simhash, 16).ok()?,
            content_hash: u64::from_str_radix(&self.content, 16).ok()?,
            shingles: self.shingles,
            minhash,
        };
        Some(fp)
    }
}

impl Line {
    /// Records are tried first (they are nearly every line); a removal line
    /// lacks their required fields, so it falls through to the second parse.
    /// Lines of another scheme are invalid, like corrupt ones.
    fn parse(line: &[u8]) -> Option<Line> {
        if let Ok(record) = serde_json::from_slice::<Record>(line) {
            let fp = record.fingerprint()?;
            return Some(Line::Record(record, Box::new(fp)));
        }
        let removal = serde_json::from_slice::<Removal>(line).ok()?;
        (removal.s == SCHEME_VERSION).then_some(Line::Removal(removal.removed))
    }
}

/// Replays the log into `entries`; returns the length of the valid prefix
/// (everything up to the end of the last complete line).
fn replay(log: &mut File, entries: &mut Entries, report: &mut LoadReport) -> io::Result<u64> {
    log.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*log);
    let mut line = Vec::with_capacity(2048);
    let mut good_len = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // Torn final write: drop it; the request that produced it never
            // got a response, so the client will retry.
            break;
        }
        good_len += n as u64;
        match Line::parse(&line) {
            Some(l) => {
                match l {
                    Line::Record(..) => report.records += 1,
                    Line::Removal(_) => report.removals += 1,
                }
                entries.apply(&l);
            }
            None if line.iter().all(u8::is_ascii_whitespace) => {}
            None => report.skipped += 1,
        }
    }
    Ok(good_len)
}

/// Rewrites the log with one record per live document and one removal line
/// per forgotten id (superseded versions are gone) via write-to-temp and
/// rename, so a crash mid-compaction leaves either the old or the new log.
fn compact(dir: &Path, path: &Path, entries: &Entries) -> io::Result<File> {
    let tmp = dir.join(format!("{LOG_FILE}.tmp"));
    {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for slot in 0..entries.ids.len() {
            serde_json::to_writer(&mut out, &entries.record_at(slot)).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
        }
        for id in &entries.forgotten {
            let removal = Removal {
                s: SCHEME_VERSION,
                removed: id.to_string(),
            };
            serde_json::to_writer(&mut out, &removal).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        // Persist the rename itself; not supported on every platform.
        let _ = d.sync_all();
    }
    OpenOptions::new().read(true).append(true).open(path)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;

    /// Unique temp dir removed on drop, so tests need no extra crates.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::AtomicU32;
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("analyzer-{tag}-{}-{nanos}-{n}", std::process::id()));
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::TempDir;
    use super::*;
    use crate::analysis::fingerprint::fingerprint;
    use crate::analysis::fingerprint::tests::{edited_copy, ARTICLE, SAME_TOPIC};

    #[test]
    fn a_wiped_index_restored_from_its_records_flags_copies_again() {
        let first = TempDir::new("restore-a");
        let (index, _) = Index::open(&first.0, false).expect("open");
        let written = index.check_and_record("orig", "t1", Some(2), &fingerprint(ARTICLE)).expect("insert");
        index.check_and_insert("gone", "t1", Some(1), &fingerprint(SAME_TOPIC)).expect("insert");
        let kept = [index.record_of("orig").expect("orig's record"), index.record_of("gone").expect("gone's record")];
        // The line an analysis answers is the one its log holds.
        assert_eq!((written.upsert, written.record.as_deref()), (Upsert::Inserted, Some(kept[0].as_str())));
        let stale = index.check_and_record("orig", "t1", Some(1), &fingerprint(ARTICLE)).expect("stale");
        assert_eq!((stale.upsert, stale.record), (Upsert::Stale, None));
        assert_eq!(index.record_of("nobody"), None);
        index.remove("gone").expect("remove");
        assert_eq!(index.record_of("gone"), None, "a forgotten id has no record");

        // A fresh disk: nothing flagged until the records come back.
        let second = TempDir::new("restore-b");
        let (fresh, _) = Index::open(&second.0, false).expect("open");
        assert!(fresh.near_duplicates("copy", "t1", &fingerprint(&edited_copy()), DUPLICATE_THRESHOLD).is_empty());
        let body = format!("{}\n\nnot json\n{}\n", kept[0], r#"{"s":1,"removed":"gone"}"#);
        let done = fresh.restore(body.as_bytes()).expect("restore");
        assert_eq!(done, Restored { applied: 2, skipped: 1 });
        assert_eq!(fresh.len(), 1);
        let (m, _) = fresh.check_and_insert("copy", "t1", None, &fingerprint(&edited_copy())).expect("insert");
        assert_eq!(m.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["orig"]);
        // Other scopes still see nothing of it; a forgotten id's record stays out.
        assert!(fresh.near_duplicates("x", "t2", &fingerprint(&edited_copy()), DUPLICATE_THRESHOLD).is_empty());
        assert_eq!(fresh.restore(kept[1].as_bytes()).expect("restore"), Restored { applied: 0, skipped: 1 });
        // An older version than the one held is stale.
        let (older, _) = (kept[0].replace("\"version\":2", "\"version\":1"), ());
        assert_eq!(fresh.restore(older.as_bytes()).expect("restore"), Restored { applied: 0, skipped: 1 });
        drop(fresh);
        // What was restored is in the new disk's log too.
        let (reopened, report) = Index::open(&second.0, false).expect("reopen");
        assert_eq!((reopened.len(), report.removals), (2, 1));
    }

    #[test]
    fn flags_edited_copy_but_not_same_topic() {
        let dir = TempDir::new("dups");
        let (index, _) = Index::open(&dir.0, false).expect("open");
        let (m, u) = index
            .check_and_insert("orig", "", Some(1), &fingerprint(ARTICLE))
            .expect("insert");
        assert!(m.is_empty());
        assert_eq!(u, Upsert::Inserted);

        let (m, _) = index
            .check_and_insert("other", "", None, &fingerprint(SAME_TOPIC))
            .expect("insert");
        assert!(m.is_empty(), "same-topic text flagged: {m:?}");

        let (m, _) = index
            .check_and_insert("copy", "", None, &fingerprint(&edited_copy()))
            .expect("insert");
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].id, "orig");
        assert!(m[0].similarity >= 0.75);

        // A verbatim copy matches both, the exact one first.
        let (m, _) = index
            .check_and_insert("verbatim", "", None, &fingerprint(ARTICLE))
            .expect("insert");
        let ids: Vec<&str> = m.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["orig", "copy"]);
        assert_eq!(m[0].similarity, 1.0);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn new_version_replaces_and_never_matches_itself() {
        let dir = TempDir::new("versions");
        let (index, _) = Index::open(&dir.0, false).expect("open");
        index
            .check_and_insert("doc", "", Some(1), &fingerprint(ARTICLE))
            .expect("v1");
        let (m, u) = index
            .check_and_insert("doc", "", Some(2), &fingerprint(&edited_copy()))
            .expect("v2");
        assert!(m.is_empty(), "matched its own previous version: {m:?}");
        assert_eq!(u, Upsert::Replaced);
        assert_eq!(index.len(), 1);

        // The stored fingerprint is now v2's: the exact v2 text matches at 1.0.
        let m = index.near_duplicates("probe", "", &fingerprint(&edited_copy()), 0.5);
        assert_eq!(
            m,
            vec![Match {
                id: "doc".into(),
                similarity: 1.0
            }]
        );

        let (_, u) = index
            .check_and_insert("doc", "", Some(1), &fingerprint(SAME_TOPIC))
            .expect("stale");
        assert_eq!(u, Upsert::Stale);
        assert_eq!(
            index
                .near_duplicates("probe", "", &fingerprint(&edited_copy()), 0.5)
                .len(),
            1
        );
    }

    #[test]
    fn survives_reopen_including_torn_last_line() {
        let dir = TempDir::new("reopen");
        {
            let (index, _) = Index::open(&dir.0, true).expect("open");
            index
                .check_and_insert("a", "", Some(1), &fingerprint(ARTICLE))
                .expect("a");
            index
                .check_and_insert("b", "", Some(1), &fingerprint(SAME_TOPIC))
                .expect("b");
            index
                .check_and_insert("a", "", Some(2), &fingerprint(ARTICLE))
                .expect("a2");
        }
        // Simulate a crash in the middle of writing a record.
        let path = dir.0.join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("log");
        f.write_all(br#"{"s":1,"id":"torn","shingles":3,"content":"00"#)
            .expect("torn");
        drop(f);
        let torn_len = fs::metadata(&path).expect("meta").len();

        let (index, report) = Index::open(&dir.0, false).expect("reopen");
        assert_eq!(report.records, 3);
        assert_eq!(report.documents, 2);
        assert_eq!(report.skipped, 0);
        assert!(report.truncated_bytes > 0);
        assert_eq!(
            fs::metadata(&path).expect("meta").len(),
            torn_len - report.truncated_bytes
        );
        assert_eq!(index.len(), 2);
        let m = index.near_duplicates("new", "", &fingerprint(&edited_copy()), 0.5);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "a");

        // Appends after recovery start on a clean line and replay again.
        index
            .check_and_insert(
                "c",
                "",
                None,
                &fingerprint("Completely different words here today."),
            )
            .expect("c");
        drop(index);
        let (index, report) = Index::open(&dir.0, false).expect("third open");
        assert_eq!(
            (report.records, report.documents, report.skipped),
            (4, 3, 0)
        );
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn skips_corrupt_middle_lines() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join(LOG_FILE);
        let good = serde_json::to_string(&Record::new("x", "", None, &fingerprint(ARTICLE)))
            .expect("json");
        fs::write(&path, format!("{good}\nnot json\n{{\"s\":99}}\n\n")).expect("write");
        let (index, report) = Index::open(&dir.0, false).expect("open");
        assert_eq!((report.records, report.skipped, index.len()), (1, 2, 1));
    }

    #[test]
    fn compacts_superseded_versions() {
        let dir = TempDir::new("compact");
        let fp = fingerprint(ARTICLE);
        {
            let (index, _) = Index::open(&dir.0, false).expect("open");
            for v in 0..(COMPACT_MIN_RECORDS as u32 + 10) {
                index
                    .check_and_insert(&format!("doc-{}", v % 3), "", Some(v), &fp)
                    .expect("insert");
            }
        }
        let (index, report) = Index::open(&dir.0, false).expect("reopen");
        assert!(report.compacted);
        assert_eq!(index.len(), 3);
        drop(index);
        let (index, report) = Index::open(&dir.0, false).expect("reopen compacted");
        assert_eq!(
            (report.records, report.documents, report.compacted),
            (3, 3, false)
        );
        assert_eq!(index.near_duplicates("probe", "", &fp, 0.5).len(), 3);
    }

    fn ids(matches: &[Match]) -> Vec<&str> {
        matches.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn scopes_isolate_near_duplicates() {
        let dir = TempDir::new("scopes");
        let fp = fingerprint(ARTICLE);
        {
            let (index, _) = Index::open(&dir.0, false).expect("open");
            index.check_and_insert("a", "t1", None, &fp).expect("a");
            let (m, _) = index.check_and_insert("b", "t2", None, &fp).expect("b");
            assert!(m.is_empty(), "flagged across scopes: {m:?}");
            let (m, _) = index.check_and_insert("c", "t1", None, &fp).expect("c");
            assert_eq!(ids(&m), ["a"]);

            // Re-analyzed under another scope, a document moves there.
            index.check_and_insert("a", "t2", None, &fp).expect("move");
            assert_eq!(ids(&index.near_duplicates("p", "t1", &fp, 0.5)), ["c"]);
            assert_eq!(index.near_duplicates("p", "", &fp, 0.5), []);
        }
        let (index, _) = Index::open(&dir.0, false).expect("reopen");
        assert_eq!(ids(&index.near_duplicates("p", "t2", &fp, 0.5)), ["a", "b"]);
        assert_eq!(ids(&index.near_duplicates("p", "t1", &fp, 0.5)), ["c"]);
    }

    #[test]
    fn record_without_scope_loads_into_the_empty_scope() {
        let dir = TempDir::new("old-format");
        let fp = fingerprint(ARTICLE);
        let line = serde_json::to_string(&Record::new("old", "", Some(4), &fp)).expect("json");
        assert!(!line.contains("scope"), "{line}");
        fs::write(dir.0.join(LOG_FILE), format!("{line}\n")).expect("write");
        let (index, report) = Index::open(&dir.0, false).expect("open");
        assert_eq!((report.records, report.skipped, index.len()), (1, 0, 1));
        assert_eq!(ids(&index.near_duplicates("p", "", &fp, 0.5)), ["old"]);
        assert_eq!(index.near_duplicates("p", "tenant", &fp, 0.5), []);
        // Its version survived too: an older one is still stale.
        let (_, u) = index
            .check_and_insert("old", "", Some(3), &fp)
            .expect("stale");
        assert_eq!(u, Upsert::Stale);
    }

    #[test]
    fn removal_forgets_for_good_even_before_the_record_lands() {
        let dir = TempDir::new("remove");
        let copy = fingerprint(&edited_copy());
        {
            let (index, _) = Index::open(&dir.0, false).expect("open");
            index
                .check_and_insert("orig", "t", Some(5), &fingerprint(ARTICLE))
                .expect("orig");
            assert_eq!(
                ids(&index.near_duplicates("copy", "t", &copy, 0.5)),
                ["orig"]
            );
            assert!(index.remove("orig").expect("remove"));
            assert!(!index.remove("orig").expect("again"), "second removal");
            // A removal that overtakes the document's analysis.
            assert!(!index.remove("in-flight").expect("unknown"));
            assert_eq!(index.near_duplicates("copy", "t", &copy, 0.5), []);
            assert!(index.is_empty());
            // Analyses that land after the removal are answered, not stored.
            for id in ["orig", "in-flight"] {
                let (_, u) = index
                    .check_and_insert(id, "t", Some(6), &fingerprint(ARTICLE))
                    .expect("late");
                assert_eq!(u, Upsert::Forgotten, "{id}");
            }
            assert!(index.is_empty());
        }
        // One record and two removals reached the log; the late ones did not.
        let (index, report) = Index::open(&dir.0, false).expect("reopen");
        assert_eq!(
            (
                report.records,
                report.removals,
                report.documents,
                report.skipped
            ),
            (1, 2, 0, 0)
        );
        assert_eq!(index.near_duplicates("copy", "t", &copy, 0.5), []);
        let (_, u) = index
            .check_and_insert("orig", "t", Some(1), &fingerprint(ARTICLE))
            .expect("after reopen");
        assert_eq!((u, index.len()), (Upsert::Forgotten, 0));
    }

    #[test]
    fn removal_keeps_the_moved_slot_consistent() {
        let dir = TempDir::new("swap");
        let (index, _) = Index::open(&dir.0, false).expect("open");
        let texts = [
            ARTICLE,
            SAME_TOPIC,
            "Completely different words here today.",
        ];
        for (i, text) in texts.iter().enumerate() {
            index
                .check_and_insert(&format!("d{i}"), "", Some(1), &fingerprint(text))
                .expect("insert");
        }
        // d0 is slot 0, so the last document (d2) moves into it.
        assert!(index.remove("d0").expect("remove"));
        assert_eq!(index.len(), 2);
        for (i, text) in texts.iter().enumerate().skip(1) {
            let m = index.near_duplicates("p", "", &fingerprint(text), 0.5);
            assert_eq!(ids(&m), [format!("d{i}")], "{m:?}");
        }
        // The moved entry is still found by id: re-versioning replaces it
        // in place and it never matches itself.
        let (m, u) = index
            .check_and_insert("d2", "", Some(2), &fingerprint(texts[2]))
            .expect("d2 v2");
        assert_eq!((m.len(), u, index.len()), (0, Upsert::Replaced, 2));
        assert!(index.remove("d2").expect("remove moved"));
        assert!(index.remove("d1").expect("remove last"));
        assert!(index.is_empty());
    }

    #[test]
    fn compaction_keeps_live_documents_and_removals_only() {
        let dir = TempDir::new("compact-removed");
        let fp = fingerprint(ARTICLE);
        let n = COMPACT_MIN_RECORDS;
        {
            let (index, _) = Index::open(&dir.0, false).expect("open");
            for version in [1, 2] {
                for i in 0..n {
                    index
                        .check_and_insert(&format!("doc-{i}"), "", Some(version), &fp)
                        .expect("insert");
                }
            }
            for i in 2..n {
                index.remove(&format!("doc-{i}")).expect("remove");
            }
            assert_eq!(index.len(), 2);
        }
        let (index, report) = Index::open(&dir.0, false).expect("reopen");
        assert!(report.compacted);
        assert_eq!(
            (report.records, report.removals, index.len()),
            (2 * n, n - 2, 2)
        );
        drop(index);
        let log = fs::read_to_string(dir.0.join(LOG_FILE)).expect("log");
        assert_eq!(
            log.lines().count(),
            n,
            "2 live records and {} removals",
            n - 2
        );
        let (index, report) = Index::open(&dir.0, false).expect("reopen compacted");
        assert_eq!(
            (report.records, report.removals, report.compacted),
            (2, n - 2, false)
        );
        assert_eq!(
            ids(&index.near_duplicates("p", "", &fp, 0.5)),
            ["doc-0", "doc-1"]
        );
        let (_, u) = index
            .check_and_insert("doc-9", "", Some(3), &fp)
            .expect("late");
        assert_eq!(u, Upsert::Forgotten, "removals survive compaction");
    }
}

#[cfg(test)]
mod scale {
    use super::tests_support::TempDir;
    use super::*;
    use crate::analysis::fingerprint::fingerprint;

    /// Replay and brute-force query cost at the documented capacity.
    /// Ignored by default (slow in debug builds); run with
    /// `cargo test --release -p analyzer scale -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn hundred_thousand_documents() {
        const N: u32 = 100_000;
        let dir = TempDir::new("scale");
        let mut fp = fingerprint("seed text for the scale test");
        let mut state = 0x1234_5678_9abc_def0u64;
        {
            let mut out = io::BufWriter::new(File::create(dir.0.join(LOG_FILE)).expect("log"));
            for i in 0..N {
                for slot in fp.minhash.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *slot = state as u32;
                }
                fp.content_hash = u64::from(i);
                serde_json::to_writer(&mut out, &Record::new(&format!("doc-{i}"), "", None, &fp))
                    .expect("write");
                out.write_all(b"\n").expect("newline");
            }
            out.flush().expect("flush");
        }
        let started = std::time::Instant::now();
        let (index, report) = Index::open(&dir.0, false).expect("open");
        eprintln!("replay {N}: {:?}", started.elapsed());
        assert_eq!((index.len(), report.documents), (N as usize, N as usize));

        let probe = fingerprint("another unrelated probe document with some words in it");
        let started = std::time::Instant::now();
        for i in 0..20 {
            let (m, _) = index
                .check_and_insert(&format!("probe-{i}"), "", None, &probe)
                .expect("insert");
            assert!(m.len() == i.min(MAX_MATCHES));
        }
        eprintln!("check_and_insert over {N}: {:?}", started.elapsed() / 20);
    }
}
