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
}

/// The namespace every content vector lives in; tenants would get their own.
pub const DEFAULT_NAMESPACE: &str = "content";
