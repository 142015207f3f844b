//! The small traits through which the actors reach the outside world (storage, the language
//! model), and the values that cross them. Adapters live in the `sidekick` binary.

use crate::engagement::Engagement;
use crate::params::{GenerationParams, ParamKey};
use crate::prompt::{ChatTurn, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A channel's identity: `console`, or `discord:<channel id>`.
pub type ChannelId = String;

/// A message as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub role: Role,
    pub author: String,
    pub content: String,
    pub at_ms: u64,
    #[serde(default)]
    pub message_id: Option<String>,
    /// The Discord server it was said in (none for DMs and the console).
    #[serde(default)]
    pub guild: Option<String>,
}

impl StoredMessage {
    pub fn turn(&self) -> ChatTurn {
        ChatTurn::new(self.role, self.content.clone())
    }
}

/// Per-key parameter overrides; unset keys follow the global configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParamOverrides {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub repeat_penalty: Option<f32>,
    pub max_tokens: Option<u32>,
}

impl ParamOverrides {
    pub fn apply(&self, base: &GenerationParams) -> GenerationParams {
        GenerationParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_p: self.top_p.unwrap_or(base.top_p),
            top_k: self.top_k.unwrap_or(base.top_k),
            repeat_penalty: self.repeat_penalty.unwrap_or(base.repeat_penalty),
            max_tokens: self.max_tokens.unwrap_or(base.max_tokens),
        }
    }

    /// Records `key` of `params` as an override.
    pub fn set_from(&mut self, key: ParamKey, params: &GenerationParams) {
        match key {
            ParamKey::Temperature => self.temperature = Some(params.temperature),
            ParamKey::TopP => self.top_p = Some(params.top_p),
            ParamKey::TopK => self.top_k = Some(params.top_k),
            ParamKey::RepeatPenalty => self.repeat_penalty = Some(params.repeat_penalty),
            ParamKey::MaxTokens => self.max_tokens = Some(params.max_tokens),
        }
    }
}

/// What a channel keeps besides its messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelSettings {
    pub system_prompt: Option<String>,
    pub params: ParamOverrides,
    pub engagement: Engagement,
    /// Sequence number of the bot's last reply in the channel's log.
    pub last_reply_seq: Option<u64>,
    /// The same reply's id in the reply journal.
    pub last_reply_id: Option<u64>,
}

/// Settings admins change for the whole bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalSettings {
    /// Chance of joining in unasked, before engagement raises it.
    pub reply_rate: f64,
    pub mentions_only: bool,
    /// Discord channel ids the bot talks and learns in; empty means every channel.
    pub allowlist: BTreeSet<String>,
    /// `!settemp` and `!setmaxlen`.
    pub params: ParamOverrides,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        Self { reply_rate: 0.05, mentions_only: false, allowlist: BTreeSet::new(), params: ParamOverrides::default() }
    }
}

impl GlobalSettings {
    /// Whether the bot may talk in Discord channel `id` (`None` for DMs and the console).
    pub fn allows(&self, discord_channel: Option<&str>) -> bool {
        match discord_channel {
            Some(id) => self.allowlist.is_empty() || self.allowlist.contains(id),
            None => true,
        }
    }
}

/// Where a piece of feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackSource {
    Command,
    Reaction,
    ReactionRemoved,
}

/// One feedback event, journaled before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackEvent {
    pub channel: ChannelId,
    /// The reply it is about: a sequence number in the channel's log and/or a Discord message id.
    pub reply_seq: Option<u64>,
    /// The reply's entry in the reply journal, when it could be found.
    #[serde(default)]
    pub reply_id: Option<u64>,
    pub reply_message_id: Option<String>,
    pub source: FeedbackSource,
    pub rating: Option<u8>,
    pub emoji: Option<String>,
    pub comment: String,
    pub user: String,
    pub at_ms: u64,
    /// The reward in [-1, 1] this event gives its reply (see `reward.rs`); a removed
    /// reaction carries the negation of the reaction it undoes.
    #[serde(default)]
    pub reward: f32,
}

/// A reply of the bot, journaled with what training on it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub channel: ChannelId,
    /// Its sequence number in the channel's message log.
    pub reply_seq: u64,
    /// The exact text given to the model, and its tokens.
    pub prompt: String,
    pub prompt_tokens: Vec<u32>,
    /// The tokens the model sampled (with the end-of-turn token when it stopped by itself).
    pub reply_tokens: Vec<u32>,
    pub text: String,
    /// The adapter that served it (`None`: the base model).
    pub adapter: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Backend(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Durable state. Every method that returns after a write has made it durable, so a user
/// can be told about it.
pub trait Store: Send + Sync + 'static {
    fn channel_settings(&self, channel: &str) -> Result<ChannelSettings, StoreError>;
    fn save_channel_settings(&self, channel: &str, settings: &ChannelSettings) -> Result<(), StoreError>;
    /// Appends to the channel's message log; returns the message's sequence number.
    fn append_message(&self, channel: &str, message: &StoredMessage) -> Result<u64, StoreError>;
    /// The last `limit` messages of the current conversation (after the last clear), oldest first.
    fn recent_history(&self, channel: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// Starts a new conversation: earlier messages stay in the log but leave the history.
    fn clear_history(&self, channel: &str) -> Result<(), StoreError>;
    /// Deletes everything kept about a channel (messages, settings); returns how many messages.
    fn purge_channel(&self, channel: &str) -> Result<usize, StoreError>;
    fn global_settings(&self) -> Result<GlobalSettings, StoreError>;
    fn save_global_settings(&self, settings: &GlobalSettings) -> Result<(), StoreError>;
    /// Journals a feedback event durably; returns its sequence number.
    fn append_feedback(&self, event: &FeedbackEvent) -> Result<u64, StoreError>;
    /// Journal entries with their sequence numbers, from `from` on.
    fn feedback_since(&self, from: u64) -> Result<Vec<(u64, FeedbackEvent)>, StoreError>;
    fn feedback_events(&self) -> Result<Vec<FeedbackEvent>, StoreError> {
        Ok(self.feedback_since(0)?.into_iter().map(|(_, e)| e).collect())
    }
    /// Journals a reply durably; returns its id.
    fn append_reply(&self, reply: &ReplyRecord) -> Result<u64, StoreError>;
    fn reply(&self, id: u64) -> Result<Option<ReplyRecord>, StoreError>;
    /// Remembers that reply `id` was delivered as these (Discord) messages.
    fn link_reply(&self, id: u64, message_ids: &[String]) -> Result<(), StoreError>;
    fn reply_for_message(&self, message_id: &str) -> Result<Option<u64>, StoreError>;
    /// Drops journaled replies older than `before_ms` (and their links); returns how many.
    fn prune_replies(&self, before_ms: u64) -> Result<usize, StoreError>;
    fn add_stat(&self, name: &str, delta: u64) -> Result<(), StoreError>;
    fn stat(&self, name: &str) -> Result<u64, StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
}

/// Cancels a generation from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

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
    /// A later adapter change replaced this one before it was made.
    #[error("a later adapter change replaced this one")]
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: String,
    pub context_tokens: u32,
    pub parallel_sequences: u32,
    pub threads: u32,
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
}

/// A loaded language model serving many sequences at once.
pub trait LanguageModel: Send + Sync + 'static {
    /// Queues a job; events arrive on `job.events`. Never blocks on decoding.
    fn submit(&self, job: GenerationJob) -> Result<(), ModelError>;
    fn info(&self) -> ModelInfo;
    fn stats(&self) -> EngineStats;
    /// Serves `adapter` (a LoRA GGUF; `None`: the base model) from the next free moment on:
    /// replies in flight finish on the old weights, new ones wait for the swap. `done` hears
    /// when it happened.
    fn set_adapter(&self, adapter: Option<std::path::PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>);
    /// Stops taking jobs, lets running ones finish for up to `grace`, cancels the rest and
    /// waits for the decoding thread to end.
    fn shutdown(&self, grace: Duration);
}

/// Loads a [`LanguageModel`]; called once at start and again on restart.
pub trait ModelLoader: Send + Sync + 'static {
    fn load(&self) -> Result<Arc<dyn LanguageModel>, ModelError>;
}

/// A message to embed and index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexItem {
    pub channel: ChannelId,
    pub guild: Option<String>,
    pub author: String,
    pub text: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetrievalError {
    #[error("retrieval is unavailable: {0}")]
    Unavailable(String),
    #[error("embedding failed: {0}")]
    Embed(String),
    #[error("vector index: {0}")]
    Index(String),
}

/// Size and health of the retrieval index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalStats {
    pub vectors: usize,
    pub rebuilds: u64,
    /// Why retrieval is off, when it is.
    pub degraded: Option<String>,
}

/// Embeddings plus a vector index over the server's messages. Calls block (embedding runs
/// ONNX); the retrieval actor keeps them off the async runtime.
pub trait Retriever: Send + Sync + 'static {
    fn index(&self, items: &[IndexItem]) -> Result<(), RetrievalError>;
    /// The `k` indexed messages most similar to `text` said in `guild`.
    fn query(&self, text: &str, guild: Option<&str>, k: usize) -> Result<Vec<crate::context::Hit>, RetrievalError>;
    /// Removes a channel's vectors; returns how many.
    fn purge_channel(&self, channel: &str) -> Result<usize, RetrievalError>;
    fn save(&self) -> Result<(), RetrievalError>;
    fn stats(&self) -> RetrievalStats;
}

/// Opens the retriever (loading or rebuilding its index); called at start and on restart.
pub trait RetrieverLoader: Send + Sync + 'static {
    fn load(&self) -> Result<Arc<dyn Retriever>, RetrievalError>;
}

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

/// One saved adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterVersion {
    pub version: u64,
    /// File name under the adapters folder.
    pub file: String,
    pub step: u64,
    pub rewards_seen: u64,
    /// The last feedback journal entry it learned from.
    pub trained_through: Option<u64>,
    pub baseline: f32,
    pub saved_at_ms: u64,
}

/// `models/adapters/manifest.json`: the saved adapters, which one is served, for which base.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdapterManifest {
    pub base_model_sha256: String,
    pub versions: Vec<AdapterVersion>,
    /// The served version; `None` serves the base model.
    pub active: Option<u64>,
    /// Versions served before the active one, most recent last (`!adapter rollback` pops).
    pub previous: Vec<u64>,
    /// The next version number (numbers are never reused, even after the base model changed).
    pub next_version: u64,
    /// The version training continues from (`None`: a fresh adapter on the base model).
    pub train_from: Option<u64>,
}

impl AdapterManifest {
    pub fn version(&self, v: u64) -> Option<&AdapterVersion> {
        self.versions.iter().find(|a| a.version == v)
    }
    pub fn latest(&self) -> Option<&AdapterVersion> {
        self.versions.iter().max_by_key(|a| a.version)
    }
}

/// Trains a LoRA adapter on the served model. Calls block for seconds: they run on the
/// feedback actor's training thread, never on the async runtime.
pub trait PolicyTrainer: Send + 'static {
    fn step(&mut self, batch: &[TrainSample]) -> Result<TrainReport, LearnError>;
    /// Writes the adapter as a GGUF file llama.cpp loads.
    fn save(&mut self, path: &std::path::Path) -> Result<(), LearnError>;
}

/// Where adapters live, and how a trainer is opened.
pub trait Learning: Send + Sync + 'static {
    /// The sha256 of the base model file adapters are trained for.
    fn base_model_sha256(&self) -> Result<String, LearnError>;
    fn adapters_dir(&self) -> std::path::PathBuf;
    fn read_manifest(&self) -> Result<Option<AdapterManifest>, LearnError>;
    /// Durable and atomic: a crash leaves the old manifest or the new one.
    fn write_manifest(&self, manifest: &AdapterManifest) -> Result<(), LearnError>;
    /// A trainer starting from `resume` (a saved adapter) or from the base model.
    fn open_trainer(&self, resume: Option<&AdapterVersion>) -> Result<Box<dyn PolicyTrainer>, LearnError>;
}
