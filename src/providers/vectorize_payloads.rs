//! Vectorize (V2) payloads: upsert batches, query options and filters, and the
//! parsing of query matches, within the service's documented limits.

use serde::Serialize;
use serde_json::Value;

use super::types::{VectorItem, VectorQuery};
use crate::domain::pipeline::StageError;
use crate::domain::vector::{Hit, VectorMeta};

// Index setup (once per index; filters only see vectors written after their
// metadata index exists):
//
//   wrangler vectorize create actorline-chunks --dimensions=768 --metric=cosine
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=content_id --type=string
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=category --type=string
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=version --type=number
//   wrangler vectorize create-metadata-index actorline-chunks --property-name=chunk --type=number
//
// `category` serves search filters; `content_id`, `version` and `chunk` serve
// `delete_content` (Vectorize cannot delete by metadata; see `DeletePlan`).

/// Every metadata property the code filters on, with its index type. The
/// README's deploy steps create exactly these (checked by `tests/deploy.rs`),
/// and a filter on any other property matches nothing in Vectorize.
pub const METADATA_INDEXES: &[(&str, &str)] =
    &[("content_id", "string"), ("category", "string"), ("version", "number"), ("chunk", "number")];

/// How much of a string a metadata index holds: its first 64 bytes, cut at
/// a UTF-8 character boundary (metadata-filtering.mdx). A filter value is
/// matched against that prefix, so one longer than it would match nothing.
pub const INDEXED_STRING_BYTES: usize = 64;

/// The part of `s` a string metadata index holds: the longest prefix of at
/// most [`INDEXED_STRING_BYTES`] that ends on a character boundary. A
/// filter on it matches every value that shares the prefix; the search
/// drops the others against the catalog's own category.
pub fn indexed_prefix(s: &str) -> &str {
    crate::domain::byte_prefix(s, INDEXED_STRING_BYTES)
}

/// Vectors per `upsert` call through a Worker binding.
pub const UPSERT_BATCH: usize = 1000;
/// Ids per `deleteByIds` call: the service answers more with "VECTOR_DELETE_ERROR
/// (code = 40007): too many ids in payload; max id count is 100".
pub const DELETE_IDS_BATCH: usize = 100;
/// Most ids one `getByIds` call takes (as many as a query returns with
/// values and metadata).
pub const GET_IDS_BATCH: usize = 20;
/// How long a write may take to become visible before the index stage gives
/// up for now (its retry writes again); within the stage's timeout.
pub const VISIBLE_WAIT_MS: i64 = 20_000;
/// How often a write's visibility is asked for.
pub const VISIBLE_POLL_MS: u64 = 250;
/// Queries return only the indexed metadata: every property the code reads
/// is in [`METADATA_INDEXES`], and client-api.mdx allows `topK` up to 100
/// with `"indexed"` but only 20 with `"all"` (or with `returnValues`).
pub const RETURN_METADATA: &str = "indexed";
/// `topK` limit with [`RETURN_METADATA`] and without values.
pub const TOP_K_MAX: u32 = 100;
/// Vectorize ids are at most 64 bytes.
pub const ID_MAX_BYTES: usize = 64;
/// Namespaces are at most 64 bytes.
pub const NAMESPACE_MAX_BYTES: usize = 64;
/// Queries one `delete_content` call may make before giving up (transient).
pub const DELETE_MAX_ROUNDS: u32 = 20;
/// Chunk numbers swept per window query: equal to [`TOP_K_MAX`], so a window
/// of one version always fits in one page, and its ids in one `deleteByIds`
/// call (`TOP_K_MAX <= DELETE_IDS_BATCH`, checked by a test).
pub const DELETE_WINDOW: u32 = TOP_K_MAX;
/// At most this many versions are excluded in a discovery filter (a filter
/// must stay under 2 KiB of JSON).
pub const DELETE_MAX_VERSIONS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VectorizeMetadata<'a> {
    pub content_id: &'a str,
    pub version: u32,
    pub chunk: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VectorizeVector<'a> {
    pub id: &'a str,
    pub values: &'a [f32],
    pub namespace: &'a str,
    pub metadata: VectorizeMetadata<'a>,
}

fn check_vector(what: &str, values: &[f32], dim: usize) -> Result<(), StageError> {
    if values.len() != dim {
        return Err(StageError::terminal(format!(
            "{what} has {} dimensions; the Vectorize index has {dim}",
            values.len()
        )));
    }
    if values.iter().any(|x| !x.is_finite()) {
        return Err(StageError::terminal(format!("{what} contains non-finite values")));
    }
    Ok(())
}

fn check_namespace(ns: &str) -> Result<(), StageError> {
    if ns.len() > NAMESPACE_MAX_BYTES {
        return Err(StageError::terminal(format!("namespace {ns:?} is longer than {NAMESPACE_MAX_BYTES} bytes")));
    }
    Ok(())
}

/// Upsert payloads in batches of at most [`UPSERT_BATCH`], after checking
/// every vector's id, namespace, dimension and values.
pub fn upsert_batches(items: &[VectorItem], dim: usize) -> Result<Vec<Vec<VectorizeVector<'_>>>, StageError> {
    for it in items {
        if it.id.is_empty() || it.id.len() > ID_MAX_BYTES {
            return Err(StageError::terminal(format!("vector id {:?} must be 1 to {ID_MAX_BYTES} bytes", it.id)));
        }
        check_namespace(&it.namespace)?;
        check_vector(&format!("vector {}", it.id), &it.values, dim)?;
    }
    Ok(items
        .chunks(UPSERT_BATCH)
        .map(|batch| {
            batch
                .iter()
                .map(|it| VectorizeVector {
                    id: &it.id,
                    values: &it.values,
                    namespace: if it.namespace.is_empty() { super::DEFAULT_NAMESPACE } else { &it.namespace },
                    metadata: VectorizeMetadata {
                        content_id: &it.meta.content_id,
                        version: it.meta.version,
                        chunk: it.meta.chunk,
                        category: it.meta.category.as_deref(),
                    },
                })
                .collect()
        })
        .collect())
}

/// One metadata condition. Vectorize allows one operator per property,
/// except a lower bound combined with an upper bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cond<T> {
    Eq {
        #[serde(rename = "$eq")]
        eq: T,
    },
    Ne {
        #[serde(rename = "$ne")]
        ne: T,
    },
    Nin {
        #[serde(rename = "$nin")]
        nin: Vec<T>,
    },
    Range {
        #[serde(rename = "$gte")]
        gte: T,
        #[serde(rename = "$lt")]
        lt: T,
    },
    Gte {
        #[serde(rename = "$gte")]
        gte: T,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<Cond<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Cond<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Cond<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Cond<u32>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.content_id.is_none() && self.category.is_none() && self.version.is_none() && self.chunk.is_none()
    }
}

/// Options of `index.query(vector, options)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryOptions {
    pub top_k: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub return_values: bool,
    pub return_metadata: &'static str,
    /// Vectorize rejects an empty filter object, so an empty one is omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl QueryOptions {
    pub(crate) fn new(top_k: u32, namespace: Option<String>, filter: Filter) -> Self {
        QueryOptions {
            top_k: top_k.clamp(1, TOP_K_MAX),
            namespace: namespace.filter(|n| !n.is_empty()),
            return_values: false,
            return_metadata: RETURN_METADATA,
            filter: (!filter.is_empty()).then_some(filter),
        }
    }
}

/// The options for a search query: its namespace, `topK` capped at
/// [`TOP_K_MAX`], and the category filter when one is asked for. Checks the
/// query vector first (a wrong dimension is terminal).
pub fn search_query_options(q: &VectorQuery, dim: usize) -> Result<QueryOptions, StageError> {
    check_vector("query vector", &q.vector, dim)?;
    check_namespace(&q.namespace)?;
    let filter = Filter {
        category: q.category.as_deref().filter(|c| !c.is_empty()).map(|c| Cond::Eq { eq: indexed_prefix(c).to_string() }),
        ..Filter::default()
    };
    Ok(QueryOptions::new(q.top_k, Some(q.namespace.clone()), filter))
}

/// A unit vector of `dim` values, for metadata-only scans: any vector will
/// do since the filter picks the rows, but cosine needs a non-zero one.
pub fn unit_vector(dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    if let Some(x) = v.first_mut() {
        *x = 1.0;
    }
    v
}

fn as_u32(v: &Value) -> Option<u32> {
    let n = match v {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        }
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    u32::try_from(n).ok()
}

fn parse_match(m: &Value) -> Option<Hit> {
    let id = m.get("id")?.as_str()?.to_string();
    let score = m.get("score")?.as_f64().filter(|s| s.is_finite())? as f32;
    let md = m.get("metadata")?;
    let content_id = md.get("content_id")?.as_str().filter(|s| !s.is_empty())?.to_string();
    let version = as_u32(md.get("version")?)?;
    let chunk = as_u32(md.get("chunk")?)?;
    let category = md.get("category").and_then(Value::as_str).map(str::to_string);
    Some(Hit { id, score, meta: VectorMeta { content_id, version, chunk, category } })
}

/// Hits from a query result `{count, matches: [{id, score, metadata}]}`.
/// A match without usable metadata (`content_id`, `version`, `chunk`) or
/// score is skipped: it cannot be attributed to a content item. Sorted like
/// the actor index: best score first, ties by id.
pub fn parse_query_matches(result: &Value) -> Result<Vec<Hit>, StageError> {
    let matches = result
        .get("matches")
        .and_then(Value::as_array)
        .ok_or_else(|| StageError::transient("Vectorize query result has no matches array"))?;
    let mut hits: Vec<Hit> = matches.iter().filter_map(parse_match).collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorClass;
    use serde_json::json;

    fn item(cid: &str, version: u32, chunk: u32, dim: usize, category: Option<&str>) -> VectorItem {
        VectorItem {
            id: format!("{cid}:{version}:{chunk}"),
            namespace: "content".into(),
            values: vec![0.5; dim],
            meta: VectorMeta { content_id: cid.into(), version, chunk, category: category.map(str::to_string) },
        }
    }

    #[test]
    fn upsert_payload_has_the_vectorize_shape() {
        let items = vec![item("c1", 2, 0, 4, Some("science")), item("c1", 2, 1, 4, None)];
        let batches = upsert_batches(&items, 4).unwrap();
        assert_eq!(batches.len(), 1);
        let v = serde_json::to_value(&batches[0]).unwrap();
        assert_eq!(
            v[0],
            json!({
                "id": "c1:2:0",
                "values": [0.5, 0.5, 0.5, 0.5],
                "namespace": "content",
                "metadata": { "content_id": "c1", "version": 2, "chunk": 0, "category": "science" }
            })
        );
        assert!(v[1]["metadata"].get("category").is_none(), "no null metadata values");
    }

    #[test]
    fn upserts_are_batched_by_1000() {
        let items: Vec<VectorItem> = (0..2500).map(|i| item("c", 1, i, 2, None)).collect();
        let b = upsert_batches(&items, 2).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        assert_eq!(b[2][499].id, "c:1:2499");
        assert!(upsert_batches(&[], 2).unwrap().is_empty());
    }

    #[test]
    fn upsert_rejects_bad_vectors_terminally() {
        let e = upsert_batches(&[item("c", 1, 0, 3, None)], 4).unwrap_err();
        assert_eq!(e.class, ErrorClass::Terminal);
        assert!(e.message.contains("3 dimensions"));

        let mut it = item("c", 1, 0, 2, None);
        it.values[1] = f32::INFINITY;
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        let mut it = item("c", 1, 0, 2, None);
        it.id = "x".repeat(65);
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        let mut it = item("c", 1, 0, 2, None);
        it.namespace = "n".repeat(65);
        assert_eq!(upsert_batches(&[it], 2).unwrap_err().class, ErrorClass::Terminal);

        // A real pipeline id fits: uuid + two u32s.
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(upsert_batches(&[item(uuid, u32::MAX, u32::MAX, 2, None)], 2).is_ok());
    }

    fn vq(dim: usize, top_k: u32, category: Option<&str>) -> VectorQuery {
        VectorQuery {
            vector: vec![0.1; dim],
            top_k,
            namespace: "content".into(),
            category: category.map(str::to_string),
        }
    }

    #[test]
    fn search_query_options_cap_top_k_and_filter_category() {
        let o = search_query_options(&vq(4, 200, Some("science")), 4).unwrap();
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            json!({
                "topK": 100,
                "namespace": "content",
                "returnValues": false,
                "returnMetadata": "indexed",
                "filter": { "category": { "$eq": "science" } }
            })
        );
        let o = search_query_options(&vq(4, 0, None), 4).unwrap();
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["topK"], 1);
        assert!(v.get("filter").is_none(), "no empty filter object");
        let o = search_query_options(&vq(4, 10, Some("")), 4).unwrap();
        assert!(o.filter.is_none());
    }

    /// A category past the 64 bytes a string index holds is filtered on the
    /// prefix the index holds, cut where Vectorize cuts it.
    #[test]
    fn a_long_category_is_filtered_on_its_indexed_prefix() {
        let long = "é".repeat(40); // 80 bytes
        let o = serde_json::to_value(search_query_options(&vq(4, 10, Some(&long)), 4).unwrap()).unwrap();
        assert_eq!(o["filter"]["category"]["$eq"], "é".repeat(32));
        assert_eq!(indexed_prefix(&format!("a{}", "é".repeat(40))), format!("a{}", "é".repeat(31)), "63 bytes: no half character");
        assert_eq!(indexed_prefix("science"), "science");
        assert_eq!(indexed_prefix(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(indexed_prefix(&"x".repeat(65)), "x".repeat(64));
    }

    #[test]
    fn search_query_checks_the_vector() {
        assert_eq!(search_query_options(&vq(3, 10, None), 4).unwrap_err().class, ErrorClass::Terminal);
        let mut q = vq(4, 10, None);
        q.vector[0] = f32::NAN;
        assert_eq!(search_query_options(&q, 4).unwrap_err().class, ErrorClass::Terminal);
    }

    #[test]
    fn unit_vector_is_unit() {
        let v = unit_vector(768);
        assert_eq!(v.len(), 768);
        assert_eq!(v.iter().map(|x| x * x).sum::<f32>(), 1.0);
        assert!(unit_vector(0).is_empty());
    }

    #[test]
    fn query_matches_map_to_hits_and_skip_missing_metadata() {
        let r = json!({
            "count": 5,
            "matches": [
                { "id": "a:1:0", "score": 0.5, "metadata": { "content_id": "a", "version": 1, "chunk": 0, "category": "x" } },
                { "id": "b:2:3", "score": 0.9, "metadata": { "content_id": "b", "version": 2.0, "chunk": "3" } },
                { "id": "c:1:0", "score": 0.8 },
                { "id": "d:1:0", "score": 0.7, "metadata": { "content_id": "d", "chunk": 0 } },
                { "id": "e:1:0", "score": 0.6, "metadata": { "content_id": "e", "version": 1.5, "chunk": 0 } },
                { "id": "f:1:0", "metadata": { "content_id": "f", "version": 1, "chunk": 0 } },
                { "id": "g:1:0", "score": 0.5, "metadata": { "content_id": "", "version": 1, "chunk": 0 } },
                { "id": "h:1:0", "score": 0.5, "metadata": { "content_id": "h", "version": 1, "chunk": 0, "category": 3 } }
            ]
        });
        let hits = parse_query_matches(&r).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, vec!["b:2:3", "a:1:0", "h:1:0"], "sorted by score, ties by id");
        assert_eq!(hits[0].meta, VectorMeta { content_id: "b".into(), version: 2, chunk: 3, category: None });
        assert_eq!(hits[1].meta.category.as_deref(), Some("x"));
        assert_eq!(hits[2].meta.category, None);
        assert!((hits[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn query_result_without_matches_is_an_error() {
        assert_eq!(parse_query_matches(&json!({ "count": 0 })).unwrap_err().class, ErrorClass::Transient);
        assert!(parse_query_matches(&json!({ "matches": [] })).unwrap().is_empty());
    }
}
