//! The pipeline's stages. Each has one file here holding its work and its
//! [`StageSpec`]: retry policy inputs and the artifacts it reads and writes.
//! [`Stage::spec`] is the table the retry policy and the run actor read, and
//! [`execute`] runs a stage's work. The run actor calls it once per stage
//! attempt (several stages per activation); outputs go to the run's
//! `artifacts` table ([`artifacts`]) so a later stage (or a retried one)
//! reads them back after any restart.
//!
//! The specs build natively (their tests run with `cargo test --lib`); the
//! work touches the Workers runtime and builds for wasm32 only.

pub mod artifacts;

mod analyze;
mod chunk;
mod embed;
mod extract;
mod index;
mod publish;
mod summarize;
mod validate;

use artifacts::ArtifactKey;
#[cfg(target_arch = "wasm32")]
pub use artifacts::ArtifactStore;
#[cfg(target_arch = "wasm32")]
pub use runtime::{execute, StageContext, StageFailure};

use crate::protocol::Stage;

/// What the rest of the system knows about a stage besides its name.
#[derive(Debug)]
pub struct StageSpec {
    pub stage: Stage,
    /// Skipped, not failed, when it gives up: the run goes on without its output.
    pub optional: bool,
    /// Longest an attempt may take before it counts as a transient failure.
    pub timeout_ms: u64,
    /// A cap below `RETRY_MAX_ATTEMPTS`; `None` keeps the tuning's.
    pub max_attempts: Option<u32>,
    /// What its work reads: written by an earlier stage or the run's start
    /// ([`artifacts::RUN_START_WRITES`]). Besides these, every stage sees an
    /// upload's [`artifacts::EXTRACTED_TEXT`] as the document's body, and
    /// what its own earlier attempts wrote.
    pub reads: &'static [ArtifactKey],
    /// What its work may write.
    pub writes: &'static [ArtifactKey],
}

/// An attempt's time limit unless the stage's spec says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

impl Stage {
    /// The stage's row in the table (a new stage without one does not compile).
    pub fn spec(self) -> &'static StageSpec {
        match self {
            Stage::Validate => &validate::SPEC,
            Stage::Chunk => &chunk::SPEC,
            Stage::Embed => &embed::SPEC,
            Stage::Index => &index::SPEC,
            Stage::Summarize => &summarize::SPEC,
            Stage::Extract => &extract::SPEC,
            Stage::Analyze => &analyze::SPEC,
            Stage::Publish => &publish::SPEC,
        }
    }
}

/// The cancel reason of a run whose item was deleted.
pub const CONTENT_DELETED: &str = "content deleted";

#[cfg(target_arch = "wasm32")]
mod runtime {
    use worker::Env;

    use super::artifacts::{ArtifactStore, EXTRACTED_TEXT};
    use super::{analyze, chunk, embed, extract, index, publish, summarize, validate, CONTENT_DELETED};
    use crate::config::Config;
    use crate::domain::content::ContentDoc;
    use crate::domain::pipeline::{PipelineRun, StageError};
    use crate::error::ApiError;
    use crate::protocol::Stage;
    use crate::providers::Providers;

    /// How a stage attempt ended, beyond plain success or error.
    pub enum StageFailure {
        Error(StageError),
        /// A newer version exists or the item was deleted: the run stops as
        /// cancelled (with this reason), not failed, and writes nothing more.
        Superseded(String),
    }

    impl From<StageError> for StageFailure {
        fn from(e: StageError) -> Self {
            StageFailure::Error(e)
        }
    }

    /// The content actor's `superseded` (a newer version) and 404 (deleted) end
    /// the run as cancelled; anything else keeps its retry class.
    pub(super) fn superseded_or_transient(e: ApiError) -> StageFailure {
        match e {
            ApiError::Superseded(reason) => StageFailure::Superseded(reason),
            ApiError::NotFound(_) => StageFailure::Superseded(CONTENT_DELETED.into()),
            e => StageError::from(e).into(),
        }
    }

    pub struct StageContext<'a> {
        pub env: &'a Env,
        pub cfg: &'a Config,
        pub run: &'a PipelineRun,
        pub doc: &'a ContentDoc,
        pub artifacts: &'a ArtifactStore,
    }

    impl StageContext<'_> {
        /// A rate-limited model is waited out unless this is the stage's last attempt.
        pub fn on_rate_limit(&self, stage: Stage) -> crate::providers::OnRateLimit {
            use crate::providers::OnRateLimit;
            if self.run.on_last_attempt(stage) { OnRateLimit::Fallback } else { OnRateLimit::Retry }
        }
    }

    pub async fn execute(stage: Stage, cx: &StageContext<'_>) -> Result<(), StageFailure> {
        let p = Providers::from_config(cx.env, cx.cfg);
        let extracted;
        let with_text;
        // Only an upload has extracted text: a JSON item's stages skip the lookup.
        let text = cx.doc.source.as_ref().and_then(|_| cx.artifacts.get_opt(EXTRACTED_TEXT));
        let cx = match text {
            Some(text) => {
                extracted = ContentDoc { body: text, ..cx.doc.clone() };
                with_text = StageContext { doc: &extracted, ..*cx };
                &with_text
            }
            _ => cx,
        };
        match stage {
            Stage::Validate => validate::run(cx, &p).await,
            Stage::Chunk => chunk::run(cx),
            Stage::Embed => embed::run(cx, &p).await,
            Stage::Index => index::run(cx, &p).await,
            Stage::Summarize => summarize::run(cx, &p).await,
            Stage::Extract => extract::run(cx, &p).await,
            Stage::Analyze => analyze::run(cx, &p).await,
            Stage::Publish => publish::run(cx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::artifacts::RUN_START_WRITES;
    use super::*;

    #[test]
    fn every_stage_has_its_own_spec() {
        for s in Stage::ALL {
            assert_eq!(s.spec().stage, s);
        }
    }

    #[test]
    fn a_stage_reads_only_what_the_start_or_an_earlier_stage_wrote() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            for key in s.spec().reads {
                let written_before = RUN_START_WRITES.contains(key) || Stage::ALL[..i].iter().any(|e| e.spec().writes.contains(key));
                assert!(written_before, "{s} reads {key:?}, which nothing before it writes");
            }
        }
    }

    #[test]
    fn every_written_artifact_is_written_by_one_stage() {
        let writes: Vec<ArtifactKey> = Stage::ALL.iter().flat_map(|s| s.spec().writes.iter().copied()).collect();
        for (i, key) in writes.iter().enumerate() {
            assert!(!writes[..i].contains(key), "{key:?} is written by two stages");
            assert!(!RUN_START_WRITES.contains(key), "{key:?} is written by a stage and the run's start");
        }
    }

    #[test]
    fn only_analyze_is_optional() {
        let optional: Vec<Stage> = Stage::ALL.into_iter().filter(|s| s.spec().optional).collect();
        assert_eq!(optional, [Stage::Analyze]);
    }

    /// The generated list of stage names the web client and its tests import.
    const STAGES_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/stages.js");

    #[test]
    fn web_stages_js_is_generated_from_the_stages() {
        let names: Vec<String> = Stage::ALL.iter().map(|s| format!("'{s}'")).collect();
        let generated = format!(
            "// Generated from Stage::ALL (src/protocol.rs) by `UPDATE_STAGES=1 cargo test --lib stages`: do not edit.\n\
             /** Pipeline stages in order (contract: stage names). */\n\
             export const STAGES = Object.freeze([{}]);\n",
            names.join(", ")
        );
        if std::env::var_os("UPDATE_STAGES").is_some() {
            std::fs::write(STAGES_JS, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(STAGES_JS).unwrap_or_default();
        assert!(committed == generated, "web/stages.js is stale: run `UPDATE_STAGES=1 cargo test --lib stages` and commit it");
    }
}
