//! Removing a content's vectors from Vectorize, which has no delete by
//! metadata: a pure state machine of filtered queries (see [`DeletePlan`]).

use super::vectorize_payloads::{
    Cond, Filter, QueryOptions, DELETE_MAX_ROUNDS, DELETE_MAX_VERSIONS, DELETE_WINDOW, TOP_K_MAX,
};
use crate::domain::pipeline::StageError;
use crate::domain::vector::Hit;

#[derive(Debug, Clone, Copy, PartialEq)]
enum DeleteStep {
    /// Which old versions exist? A page that is not full is the whole set.
    Discover,
    /// Chunks `lo..lo + DELETE_WINDOW` of one version: always one page.
    Window { version: u32, lo: u32 },
    /// Is anything of this version left at chunk `from` or above?
    Probe { version: u32, from: u32 },
}

/// `delete_content` for Vectorize, as a pure state machine.
///
/// Vectorize has no delete-by-metadata, and its writes apply asynchronously
/// (a deleted id keeps showing up in queries for a few seconds). Re-running
/// one query until it comes back empty would keep seeing the same page, and
/// the kept version's own vectors could crowd old ones out of the 100-result
/// page. So the plan asks questions whose answers are complete:
///
/// 1. *Discover*: `content_id = id`, `version != keep` (`version ∉ known ∪
///    {keep}` once versions are known). A page of fewer than 100 hits is all
///    that is left: delete it and stop. A full page names versions to sweep.
/// 2. *Window* per discovered version: `version = v`, `chunk ∈ [lo, lo+100)`.
///    Chunk numbers of one version are distinct, so a window always fits in
///    one page. If chunk `lo+49` is there, the next window follows.
/// 3. *Probe*: `version = v`, `chunk ≥ lo+100`. Not full: the version is done.
///    Full: chunks were missing below (an earlier, interrupted cleanup), so
///    the windows go on from there.
/// 4. Discover again, excluding the versions swept, until a page is not full.
///
/// Each id goes to `deleteByIds` once per call; hits of other content, of
/// the kept version or of a newer one are never deleted (a defence in case a
/// filter is not applied). A content of a few hundred chunks per version finishes well
/// within [`DELETE_MAX_ROUNDS`]; a larger one fails transiently and the retry
/// resumes (deleting an id twice is harmless). Needs metadata indexes on
/// `content_id`, `version` and `chunk` (see [`super::vectorize_payloads::METADATA_INDEXES`]).
#[derive(Debug, Clone)]
pub struct DeletePlan {
    content_id: String,
    keep: Option<u32>,
    /// Old versions found, sorted. (Vecs, not sets: a few hundred entries
    /// at most, and no new collection code in the Worker binary.)
    known: Vec<u32>,
    /// Per-version work, the next step last.
    tasks: Vec<DeleteStep>,
    discover: bool,
    deleted: Vec<String>,
    rounds: u32,
    current: Option<DeleteStep>,
}

impl DeletePlan {
    pub fn new(content_id: &str, keep: Option<u32>) -> Self {
        DeletePlan {
            content_id: content_id.to_string(),
            keep,
            known: Vec::new(),
            tasks: Vec::new(),
            discover: true,
            deleted: Vec::new(),
            rounds: 0,
            current: None,
        }
    }

    /// Whether the plan leaves `version` alone: the kept one, and any newer
    /// one. A run that replaces its version's vectors sweeps the older ones
    /// only; a newer version's write may already be visible (Vectorize has
    /// no fence), and it is that version's own to keep.
    fn keeps(&self, version: u32) -> bool {
        self.keep.is_some_and(|k| version >= k)
    }

    /// Ids sent for deletion so far.
    pub fn removed(&self) -> u32 {
        self.deleted.len() as u32
    }

    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The next query to run, `Ok(None)` when done, or a transient error when
    /// [`DELETE_MAX_ROUNDS`] queries did not finish.
    pub fn next_query(&mut self) -> Result<Option<QueryOptions>, StageError> {
        let step = match self.tasks.last() {
            Some(t) => *t,
            None if self.discover => DeleteStep::Discover,
            None => {
                self.current = None;
                return Ok(None);
            }
        };
        if self.rounds >= DELETE_MAX_ROUNDS {
            return Err(StageError::transient(format!(
                "Vectorize cleanup of {} not finished after {DELETE_MAX_ROUNDS} queries ({} vectors removed so far)",
                self.content_id,
                self.removed()
            )));
        }
        self.rounds += 1;
        self.current = Some(step);
        let content_id = Some(Cond::Eq { eq: self.content_id.clone() });
        let filter = match step {
            DeleteStep::Discover => {
                let version = if self.known.is_empty() {
                    self.keep.map(|k| Cond::Ne { ne: k })
                } else {
                    Some(Cond::Nin { nin: self.known.iter().copied().chain(self.keep).collect() })
                };
                Filter { content_id, version, ..Filter::default() }
            }
            DeleteStep::Window { version, lo } => Filter {
                content_id,
                version: Some(Cond::Eq { eq: version }),
                chunk: Some(Cond::Range { gte: lo, lt: lo.saturating_add(DELETE_WINDOW) }),
                ..Filter::default()
            },
            DeleteStep::Probe { version, from } => Filter {
                content_id,
                version: Some(Cond::Eq { eq: version }),
                chunk: Some(Cond::Gte { gte: from }),
                ..Filter::default()
            },
        };
        Ok(Some(QueryOptions::new(TOP_K_MAX, None, filter)))
    }

    /// Takes the hits of the query [`next_query`](Self::next_query) returned
    /// and gives the ids to delete now (never one already sent).
    pub fn apply(&mut self, hits: &[Hit]) -> Vec<String> {
        let full = hits.len() >= TOP_K_MAX as usize;
        let ours = || hits.iter().filter(|h| h.meta.content_id == self.content_id);
        let mine: Vec<&Hit> = ours().filter(|h| !self.keeps(h.meta.version)).collect();
        match self.current.take() {
            Some(DeleteStep::Discover) => {
                let mut found_new = false;
                if full {
                    // A newer version is known too, so the next discovery
                    // looks past it, but it gets no sweep.
                    let versions: Vec<u32> = ours().map(|h| h.meta.version).collect();
                    for v in versions {
                        if self.known.len() < DELETE_MAX_VERSIONS {
                            if let Err(at) = self.known.binary_search(&v) {
                                self.known.insert(at, v);
                                if !self.keeps(v) {
                                    self.tasks.push(DeleteStep::Window { version: v, lo: 0 });
                                }
                                found_new = true;
                            }
                        }
                    }
                }
                // A page that is not full is everything that is left; a full
                // page that names no new version cannot make progress.
                self.discover = full && found_new;
            }
            Some(DeleteStep::Window { version, lo }) => {
                self.tasks.pop();
                let next = lo.saturating_add(DELETE_WINDOW);
                let top = next - 1;
                let has_top = mine.iter().any(|h| h.meta.version == version && h.meta.chunk == top);
                if next > lo {
                    self.tasks.push(if has_top {
                        DeleteStep::Window { version, lo: next }
                    } else {
                        DeleteStep::Probe { version, from: next }
                    });
                }
            }
            Some(DeleteStep::Probe { version, from }) => {
                self.tasks.pop();
                if full {
                    self.tasks.push(DeleteStep::Window { version, lo: from });
                }
            }
            None => return Vec::new(),
        }
        let mut ids: Vec<String> = Vec::new();
        for h in mine {
            if !self.deleted.contains(&h.id) && !ids.contains(&h.id) {
                ids.push(h.id.clone());
            }
        }
        self.deleted.extend(ids.iter().cloned());
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::vector::VectorMeta;
    use crate::protocol::ErrorClass;
    use crate::providers::vectorize_payloads::DELETE_IDS_BATCH;
    use serde_json::json;
    use std::collections::HashSet;

    /// An in-memory Vectorize with delayed deletes: ids passed to
    /// `deleteByIds` keep showing up in queries until `settle()`.
    struct FakeIndex {
        rows: Vec<Hit>,
        pending: HashSet<String>,
    }

    impl FakeIndex {
        fn new() -> Self {
            FakeIndex { rows: Vec::new(), pending: HashSet::new() }
        }
        fn add(&mut self, cid: &str, version: u32, chunks: u32) {
            for c in 0..chunks {
                self.rows.push(Hit {
                    id: format!("{cid}:{version}:{c}"),
                    score: 0.0,
                    meta: VectorMeta { content_id: cid.into(), version, chunk: c, category: None },
                });
            }
        }
        fn cond_u32(c: &Cond<u32>, x: u32) -> bool {
            match c {
                Cond::Eq { eq } => x == *eq,
                Cond::Ne { ne } => x != *ne,
                Cond::Nin { nin } => !nin.contains(&x),
                Cond::Range { gte, lt } => x >= *gte && x < *lt,
                Cond::Gte { gte } => x >= *gte,
            }
        }
        fn query(&self, o: &QueryOptions) -> Vec<Hit> {
            let f = o.filter.clone().unwrap_or_default();
            let mut out: Vec<Hit> = self
                .rows
                .iter()
                .filter(|h| match &f.content_id {
                    Some(Cond::Eq { eq }) => &h.meta.content_id == eq,
                    None => true,
                    other => panic!("unexpected content_id filter {other:?}"),
                })
                .filter(|h| f.version.as_ref().is_none_or(|c| Self::cond_u32(c, h.meta.version)))
                .filter(|h| f.chunk.as_ref().is_none_or(|c| Self::cond_u32(c, h.meta.chunk)))
                .cloned()
                .collect();
            // Similarity order is arbitrary as far as the plan is concerned:
            // put the newest versions and highest chunks first (worst case
            // for crowding out).
            out.sort_by(|a, b| b.meta.version.cmp(&a.meta.version).then(b.meta.chunk.cmp(&a.meta.chunk)));
            out.truncate(o.top_k as usize);
            out
        }
        fn delete(&mut self, ids: &[String]) {
            assert!(ids.len() <= DELETE_IDS_BATCH);
            self.pending.extend(ids.iter().cloned());
        }
        fn settle(&mut self) {
            let p = std::mem::take(&mut self.pending);
            self.rows.retain(|h| !p.contains(&h.id));
        }
        fn count(&self, cid: &str, version: u32) -> usize {
            self.rows.iter().filter(|h| h.meta.content_id == cid && h.meta.version == version).count()
        }
    }

    /// Runs a plan to completion against `ix` without settling deletes in
    /// between (the worst case for eventual consistency).
    fn run(ix: &mut FakeIndex, cid: &str, keep: Option<u32>) -> Result<u32, StageError> {
        let mut plan = DeletePlan::new(cid, keep);
        while let Some(q) = plan.next_query()? {
            assert_eq!(q.top_k, TOP_K_MAX);
            assert_eq!(q.return_metadata, "indexed");
            let hits = ix.query(&q);
            let ids = plan.apply(&hits);
            ix.delete(&ids);
        }
        ix.settle();
        Ok(plan.removed())
    }

    #[test]
    fn delete_small_content_takes_one_query() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 10);
        ix.add("b", 1, 10);
        let mut plan = DeletePlan::new("a", None);
        let q = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({ "topK": 100, "returnValues": false, "returnMetadata": "indexed", "filter": { "content_id": { "$eq": "a" } } })
        );
        let ids = plan.apply(&ix.query(&q));
        assert_eq!(ids.len(), 10);
        assert!(plan.next_query().unwrap().is_none());
        assert_eq!(plan.rounds(), 1);
        ix.delete(&ids);
        ix.settle();
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("b", 1), 10, "other content untouched");
    }

    #[test]
    fn delete_keeps_the_current_version_even_when_it_crowds_the_page() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 120);
        ix.add("a", 2, 80);
        let removed = run(&mut ix, "a", Some(2)).unwrap();
        assert_eq!(removed, 120);
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("a", 2), 80);
    }

    #[test]
    fn a_newer_versions_vectors_are_never_swept_even_when_they_crowd_the_page() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 10);
        ix.add("a", 3, 150);
        ix.add("a", 2, 5);
        assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), 10);
        assert_eq!((ix.count("a", 1), ix.count("a", 2), ix.count("a", 3)), (0, 5, 150));
        let mut ix = FakeIndex::new();
        ix.add("a", 2, 5);
        ix.add("a", 3, 7);
        assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), 0, "an older run's sweep leaves the newer version");
        assert_eq!(run(&mut ix, "a", None).unwrap(), 12, "a delete takes every version");
    }

    #[test]
    fn discovery_filters_exclude_the_kept_and_known_versions() {
        let mut plan = DeletePlan::new("a", Some(3));
        let q = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&q.filter).unwrap()["version"], json!({ "$ne": 3 }));
        // A full page of version 1 hits.
        let hits: Vec<Hit> = (0..100)
            .map(|c| Hit {
                id: format!("a:1:{c}"),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 1, chunk: c, category: None },
            })
            .collect();
        assert_eq!(plan.apply(&hits).len(), 100);
        let w = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&w.filter).unwrap(),
            json!({ "content_id": { "$eq": "a" }, "version": { "$eq": 1 }, "chunk": { "$gte": 0, "$lt": 100 } })
        );
        assert!(plan.apply(&hits).is_empty(), "ids are sent once");
        // Chunk 99 exists, so the next window follows.
        let w = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&w.filter).unwrap()["chunk"], json!({ "$gte": 100, "$lt": 200 }));
        assert!(plan.apply(&[]).is_empty());
        // Chunk 199 does not: probe above it.
        let p = plan.next_query().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&p.filter).unwrap(),
            json!({ "content_id": { "$eq": "a" }, "version": { "$eq": 1 }, "chunk": { "$gte": 200 } })
        );
        plan.apply(&[]);
        let d = plan.next_query().unwrap().unwrap();
        assert_eq!(serde_json::to_value(&d.filter).unwrap()["version"], json!({ "$nin": [1, 3] }));
        plan.apply(&[]);
        assert!(plan.next_query().unwrap().is_none());
        assert_eq!(plan.rounds(), 5);
    }

    #[test]
    fn delete_all_versions_of_a_large_content() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 260);
        ix.add("a", 2, 75);
        ix.add("a", 3, 3);
        ix.add("z", 1, 60);
        let removed = run(&mut ix, "a", None).unwrap();
        assert_eq!(removed, 338);
        for v in 1..=3 {
            assert_eq!(ix.count("a", v), 0);
        }
        assert_eq!(ix.count("z", 1), 60);
    }

    #[test]
    fn delete_exact_window_multiples() {
        for n in [49, 50, 51, 99, 100, 101, 199, 200, 201, 300] {
            let mut ix = FakeIndex::new();
            ix.add("a", 1, n);
            ix.add("a", 2, 5);
            assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), n, "n = {n}");
            assert_eq!(ix.count("a", 1), 0);
            assert_eq!(ix.count("a", 2), 5);
        }
    }

    #[test]
    fn nothing_to_delete_is_one_query() {
        let mut ix = FakeIndex::new();
        ix.add("a", 4, 70);
        let mut plan = DeletePlan::new("a", Some(4));
        while let Some(q) = plan.next_query().unwrap() {
            let hits = ix.query(&q);
            assert!(plan.apply(&hits).is_empty());
        }
        assert_eq!(plan.rounds(), 1);
        assert_eq!(plan.removed(), 0);
    }

    #[test]
    fn foreign_or_kept_hits_are_never_deleted() {
        // As if the index ignored the filter.
        let mut plan = DeletePlan::new("a", Some(2));
        plan.next_query().unwrap();
        let hits = vec![
            Hit {
                id: "b:1:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "b".into(), version: 1, chunk: 0, category: None },
            },
            Hit {
                id: "a:2:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 2, chunk: 0, category: None },
            },
            Hit {
                id: "a:1:0".into(),
                score: 0.0,
                meta: VectorMeta { content_id: "a".into(), version: 1, chunk: 0, category: None },
            },
        ];
        assert_eq!(plan.apply(&hits), vec!["a:1:0".to_string()]);
    }

    #[test]
    fn a_full_page_without_progress_stops() {
        // A full page of hits that all belong to someone else: no version to sweep.
        let mut plan = DeletePlan::new("a", None);
        plan.next_query().unwrap();
        let hits: Vec<Hit> = (0..TOP_K_MAX)
            .map(|c| Hit {
                id: format!("b:1:{c}"),
                score: 0.0,
                meta: VectorMeta { content_id: "b".into(), version: 1, chunk: c, category: None },
            })
            .collect();
        assert!(plan.apply(&hits).is_empty());
        assert!(plan.next_query().unwrap().is_none());
    }

    #[test]
    fn a_gap_left_by_an_interrupted_cleanup_is_crossed() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 300);
        ix.add("a", 2, 10);
        // An earlier cleanup deleted chunks 0..150 and then failed.
        ix.rows.retain(|h| !(h.meta.version == 1 && h.meta.chunk < 150));
        assert_eq!(run(&mut ix, "a", Some(2)).unwrap(), 150);
        assert_eq!(ix.count("a", 1), 0);
        assert_eq!(ix.count("a", 2), 10);
    }

    #[test]
    fn realistic_sizes_finish_in_one_call() {
        // Two old versions next to the kept one, of 300 chunks (a 200 KB
        // body of ordinary sentences) and of 500 (the chunker's worst case).
        // `run` fails past DELETE_MAX_ROUNDS, and the fake index rejects a
        // delete of more than DELETE_IDS_BATCH ids.
        for n in [300, 500] {
            let mut ix = FakeIndex::new();
            ix.add("a", 1, n);
            ix.add("a", 2, n);
            ix.add("a", 3, n);
            assert_eq!(run(&mut ix, "a", Some(3)).unwrap(), 2 * n, "n = {n}");
            assert_eq!((ix.count("a", 1), ix.count("a", 2), ix.count("a", 3)), (0, 0, n as usize));
        }
    }

    #[test]
    fn a_page_of_ids_fits_one_delete_call() {
        assert!(TOP_K_MAX as usize <= DELETE_IDS_BATCH);
        assert_eq!(DELETE_IDS_BATCH, 100, "the service's documented maximum");
        assert_eq!(TOP_K_MAX, 100, "the documented maximum with returnMetadata \"indexed\"");
    }

    #[test]
    fn too_many_rounds_is_transient_and_retries_finish() {
        let mut ix = FakeIndex::new();
        ix.add("a", 1, 4000);
        let e = run(&mut ix, "a", Some(9)).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.contains("not finished"));
        ix.settle();
        assert!(ix.count("a", 1) < 4000, "progress was made");
        let mut attempts = 0;
        while run(&mut ix, "a", Some(9)).is_err() {
            ix.settle();
            attempts += 1;
            assert!(attempts < 60, "retries converge");
        }
        assert_eq!(ix.count("a", 1), 0);
    }

    #[test]
    fn apply_without_a_query_does_nothing() {
        let mut plan = DeletePlan::new("a", None);
        let hit = Hit {
            id: "a:1:0".into(),
            score: 0.0,
            meta: VectorMeta { content_id: "a".into(), version: 1, chunk: 0, category: None },
        };
        assert!(plan.apply(&[hit]).is_empty());
    }
}
