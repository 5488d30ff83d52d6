//! tmp
pub mod tokenize;
pub mod chunk;
pub mod embed;
pub mod summarize;
pub mod extract;
