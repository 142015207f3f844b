//! The learning port: where adapters live, and the trainer that makes them.

use crate::feedback::manifest::{AdapterManifest, AdapterVersion};

/// One reply to learn from: the prompt and reply tokens, and the reward it earned.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSample {
    pub prompt: Vec<u32>,
    pub reply: Vec<u32>,
    pub reward: f32,
}

/// What one training step did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub loss: f32,
    pub seconds: f64,
    pub tokens: usize,
    /// The running reward baseline after the step.
    pub baseline: f32,
    /// Rewarded replies the step learned from.
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    #[error("the trainer could not start: {0}")]
    Load(String),
    #[error("training failed: {0}")]
    Train(String),
    #[error("adapter files: {0}")]
    Files(String),
}

/// Trains a LoRA adapter on the served model. Calls block for seconds: they run on the
/// feedback actor's training thread, never on the async runtime.
pub trait PolicyTrainer: Send + 'static {
    fn step(&mut self, batch: &[TrainSample]) -> Result<TrainReport, LearnError>;
    /// Writes the adapter as a GGUF file llama.cpp loads.
    fn save(&mut self, path: &std::path::Path) -> Result<(), LearnError>;
}

/// The personality adapter (`sidekick train`) served under the feedback adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Personality {
    pub path: std::path::PathBuf,
    /// What `!adapter` says of it.
    pub summary: String,
}

/// Where adapters live, and how a trainer is opened.
pub trait Learning: Send + Sync + 'static {
    /// What adapters are trained on top of: the model file's sha256, and the personality
    /// adapter's after a `+` when one is served (feedback refines that voice, so a new
    /// personality sets the old feedback adapters aside).
    fn base_model_sha256(&self) -> Result<String, LearnError>;
    /// The personality adapter served under the feedback adapter, in a line for `!adapter`.
    fn personality(&self) -> Option<String> {
        None
    }
    /// A new personality is served: from now on adapters are trained on top of it (what
    /// [`Self::base_model_sha256`] and [`Self::open_trainer`] give changes with it).
    fn set_personality(&self, _personality: Option<Personality>) {}
    fn adapters_dir(&self) -> std::path::PathBuf;
    fn read_manifest(&self) -> Result<Option<AdapterManifest>, LearnError>;
    /// Durable and atomic: a crash leaves the old manifest or the new one.
    fn write_manifest(&self, manifest: &AdapterManifest) -> Result<(), LearnError>;
    /// Deletes an adapter file the manifest no longer keeps (a missing file is fine).
    fn remove_adapter(&self, file: &str) -> Result<(), LearnError>;
    /// The gate a new feedback adapter passes before it is served: `Err(why)` when its
    /// held-out perplexity rises too far over what is served now (`served`: `None` is no
    /// feedback adapter). Blocks for minutes; it runs off the actor.
    fn gate(&self, _candidate: &std::path::Path, _served: Option<&std::path::Path>) -> Result<(), String> {
        Ok(())
    }
    /// A trainer starting from `resume` (a saved adapter) or from the base model.
    fn open_trainer(&self, resume: Option<&AdapterVersion>) -> Result<Box<dyn PolicyTrainer>, LearnError>;
}
