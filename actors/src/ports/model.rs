//! The language model port: a loaded model serving many sequences at once.

use crate::params::GenerationParams;
use crate::prompt::ChatTurn;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Cancels a generation from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

/// Two flags are equal when they are the same flag (events carrying one compare in tests).
impl PartialEq for CancelFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One request to the language model.
#[derive(Debug)]
pub struct GenerationJob {
    /// Cache affinity: jobs with the same slot key reuse each other's decoded prefix.
    pub slot: String,
    pub turns: Vec<ChatTurn>,
    pub params: GenerationParams,
    pub seed: u32,
    pub events: mpsc::UnboundedSender<GenEvent>,
    pub cancel: CancelFlag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    EndOfTurn,
    MaxTokens,
    ContextFull,
    Cancelled,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// The prompt was formatted and admitted to a sequence.
    Started {
        prompt: String,
        prompt_tokens: usize,
        reused_tokens: usize,
        dropped_turns: usize,
        prompt_ids: Vec<u32>,
        adapter: Option<String>,
    },
    Token(String),
    /// `reply_ids` are the sampled tokens, with the end-of-turn token if the model stopped.
    Finished {
        tokens: usize,
        reason: FinishReason,
        reply_ids: Vec<u32>,
    },
    Failed(ModelError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("could not load the model: {0}")]
    Load(String),
    #[error("the model is not running")]
    Unavailable,
    #[error("that message is too long for me ({tokens} tokens; I can read {limit})")]
    PromptTooLong { tokens: usize, limit: usize },
    #[error("the model failed while generating: {0}")]
    Decode(String),
    #[error("the adapter cannot be served: {0}")]
    Adapter(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: String,
    pub context_tokens: u32,
    pub parallel_sequences: u32,
    pub threads: u32,
    /// `model.threads = auto`: the count in use is [`EngineStats::threads`].
    #[serde(default)]
    pub threads_auto: bool,
    pub load_seconds: f64,
    pub chat_template: String,
}

/// What the model is doing now, and the most it has done at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub waiting: usize,
    pub in_flight: usize,
    /// The most sequences that advanced together in one decode.
    pub peak_sequences_per_batch: usize,
    pub decode_steps: u64,
    /// KV cells each reply gets (prompt and answer together).
    pub sequence_tokens: usize,
    /// Threads a decoding step uses now.
    pub threads: u32,
}

/// A loaded language model serving many sequences at once.
pub trait LanguageModel: Send + Sync + 'static {
    /// Queues a job; events arrive on `job.events`. Never blocks on decoding.
    fn submit(&self, job: GenerationJob) -> Result<(), ModelError>;
    fn info(&self) -> ModelInfo;
    fn stats(&self) -> EngineStats;
    /// How many tokens `turns` take once the chat template is applied.
    fn measure(&self, turns: Vec<ChatTurn>, done: tokio::sync::oneshot::Sender<Result<usize, ModelError>>);
    /// Serves `adapter` (a LoRA GGUF; `None`: the base model) from the next free moment on:
    /// replies in flight finish on the old weights, new ones wait for the swap. `done` hears
    /// when it happened.
    fn set_adapter(&self, adapter: Option<std::path::PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>);
    /// Serves the personality adapter `personality` (`None`: none) with no feedback adapter
    /// over it (one trained on another personality does not fit), like [`Self::set_adapter`].
    fn set_personality(&self, personality: Option<std::path::PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>);
    /// Stops taking jobs, lets running ones finish for up to `grace`, cancels the rest and
    /// waits for the decoding thread to end.
    fn shutdown(&self, grace: Duration);
}

/// Loads a [`LanguageModel`]; called once at start and again on restart.
pub trait ModelLoader: Send + Sync + 'static {
    fn load(&self) -> Result<Arc<dyn LanguageModel>, ModelError>;
}
