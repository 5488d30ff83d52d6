// Generated from Stage::ALL (src/protocol.rs) by `UPDATE_STAGES=1 cargo test --lib stages`: do not edit.
/** Pipeline stages in order (contract: stage names). */
export const STAGES = Object.freeze(['validate', 'chunk', 'embed', 'index', 'summarize', 'extract', 'analyze', 'publish']);
