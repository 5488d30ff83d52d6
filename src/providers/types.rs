//! Plain data exchanged with providers.

use serde::{Deserialize, Serialize};

use crate::protocol::{Entity, Keyword, Sentiment};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub keywords: Vec<Keyword>,
    pub entities: Vec<Entity>,
    pub sentiment: Sentiment,
}

pub use crate::domain::vector::{Hit as VectorMatch, VectorMeta};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorItem {
    pub id: String,
    pub namespace: String,
    pub values: Vec<f32>,
    pub meta: VectorMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorQuery {
    pub vector: Vec<f32>,
    pub top_k: u32,
    /// One namespace; empty means all of them (the operator's search).
    pub namespace: String,
    #[serde(default)]
    pub category: Option<String>,
}


#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeRequest {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub text: String,
    /// Near duplicates are found only among documents of the same scope:
    /// the item's vector namespace (its tenant's, or the public one), so an
    /// analysis never names another tenant's items.
    #[serde(default)]
    pub scope: String,
}

/// The namespace of vectors written before tenants existed, and of upserts
/// that name none. Items now live in their tenant's namespace or the public
/// one (`domain::principal::Ownership::namespace`).
pub const DEFAULT_NAMESPACE: &str = "content";
