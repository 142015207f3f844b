//! Durable state, as a few narrow traits: each actor asks only for what it uses, and a fake
//! for tests implements only what the actor under test needs. Every method that returns after
//! a write has made it durable, so a user can be told about it.

use crate::channel_key::ChannelKey;
use crate::engagement::Engagement;
use crate::history::HistoryMessage;
use crate::params::{GenerationParams, ParamKey};
use crate::prompt::{ChatTurn, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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
    /// Its author's Discord id (none for the bot and the console; absent in old records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
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
    /// Discord user ids that asked to be forgotten (`!forgetme`): never stored, shown or
    /// learned from.
    pub opted_out: BTreeSet<String>,
    /// Commands admins restricted to admins (`!lock system on`).
    pub locked: BTreeSet<String>,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        Self {
            reply_rate: 0.05,
            mentions_only: false,
            allowlist: BTreeSet::new(),
            params: ParamOverrides::default(),
            opted_out: BTreeSet::new(),
            locked: BTreeSet::new(),
        }
    }
}

impl GlobalSettings {
    /// Whether the bot may talk in `channel` (DMs and the console always; a thread as its
    /// parent channel).
    pub fn allows(&self, channel: &ChannelKey) -> bool {
        match channel.allowlist_channel() {
            Some(id) => self.allowlist.is_empty() || self.allowlist.contains(&id.to_string()),
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

impl FeedbackSource {
    /// The `source` label of the feedback metric.
    pub fn label(self) -> &'static str {
        match self {
            FeedbackSource::Command => "command",
            FeedbackSource::Reaction => "reaction",
            FeedbackSource::ReactionRemoved => "reaction_removed",
        }
    }
}

/// One feedback event, journaled before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackEvent {
    pub channel: ChannelKey,
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
    /// Who gave it, as shown then (display names change; see `user_id`).
    pub user: String,
    /// Their Discord id (absent in old records and on the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub at_ms: u64,
    /// The reward in [-1, 1] this event gives its reply (see `reward.rs`); a removed
    /// reaction carries the negation of the reaction it undoes.
    #[serde(default)]
    pub reward: f32,
}

/// A reply of the bot, journaled with what training on it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub channel: ChannelKey,
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
    /// Discord ids of the people whose words are in the prompt (history and background), so
    /// `!forgetme` finds it; empty in old records, which are matched by their text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speakers: Vec<String>,
    /// Other channels whose words are in the prompt (as background), so a purge finds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ChannelKey>,
    /// The reply this one was written to replace (🔁): that one was rejected, and with a
    /// good vote on this one the two are a preference pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<u64>,
}

/// What `!forgetme` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub messages: usize,
    /// Journaled replies whose prompts quoted them (dropped from training).
    pub replies: Vec<u64>,
    pub feedback: usize,
}

/// How much the bot keeps from one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: ChannelKey,
    /// Its server, when known.
    pub guild: Option<u64>,
    pub messages: usize,
    /// When the oldest one kept was said.
    pub since_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Backend(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Each channel's messages, in order, and where its current conversation starts.
pub trait MessageLog: Send + Sync + 'static {
    /// Appends to the channel's message log; returns the message's sequence number.
    fn append_message(&self, channel: &ChannelKey, message: &StoredMessage) -> Result<u64, StoreError>;
    /// The last `limit` messages of the current conversation (after the last clear), oldest first.
    fn recent_history(&self, channel: &ChannelKey, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// Puts `content` in place of message `seq`'s (a reply written again); false when that
    /// message is no longer kept.
    fn replace_message(&self, channel: &ChannelKey, seq: u64, content: &str) -> Result<bool, StoreError>;
    /// Starts a new conversation: earlier messages stay in the log but leave the history.
    fn clear_history(&self, channel: &ChannelKey) -> Result<(), StoreError>;
    /// Deletes everything kept about a channel (messages, settings, its journaled replies and
    /// the feedback given there); returns how many messages.
    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, StoreError>;
    /// Deletes everything kept from user `user_id`: their messages, the journaled replies whose
    /// prompts quote them, and their feedback.
    fn forget_user(&self, user_id: &str) -> Result<Forgotten, StoreError>;
    /// Every channel with messages kept, with how many and since when.
    fn channel_summaries(&self) -> Result<Vec<ChannelSummary>, StoreError>;
    /// How many kept messages `user_id` wrote.
    fn user_message_count(&self, user_id: &str) -> Result<usize, StoreError>;
    /// The threads of `parent` that have messages kept (they follow its allowlist and purge).
    fn threads_of(&self, parent: &ChannelKey) -> Result<Vec<ChannelKey>, StoreError>;
    /// Deletes what was said before `before_ms` from every channel's log and from the server's
    /// history (`storage.keep_messages_days`); returns how many messages.
    fn prune_messages(&self, before_ms: u64) -> Result<usize, StoreError>;
}

/// Per-channel settings and the admins' settings for the whole bot.
pub trait SettingsStore: Send + Sync + 'static {
    fn channel_settings(&self, channel: &ChannelKey) -> Result<ChannelSettings, StoreError>;
    fn save_channel_settings(&self, channel: &ChannelKey, settings: &ChannelSettings) -> Result<(), StoreError>;
    fn global_settings(&self) -> Result<GlobalSettings, StoreError>;
    fn save_global_settings(&self, settings: &GlobalSettings) -> Result<(), StoreError>;
}

/// Every piece of feedback, in order.
pub trait FeedbackJournal: Send + Sync + 'static {
    /// Journals a feedback event durably; returns its sequence number.
    fn append_feedback(&self, event: &FeedbackEvent) -> Result<u64, StoreError>;
    /// Journal entries with their sequence numbers, from `from` on.
    fn feedback_since(&self, from: u64) -> Result<Vec<(u64, FeedbackEvent)>, StoreError>;
    /// The training crash guard (`feedback/crash.rs`); default when never saved.
    fn training_marks(&self) -> Result<TrainingMarks, StoreError>;
    /// Saves the crash guard durably (before the step it marks runs).
    fn save_training_marks(&self, marks: &TrainingMarks) -> Result<(), StoreError>;
    /// Drops feedback given before `before_ms` (its replies have left the reply journal, so
    /// nothing can be trained on it); returns how many events.
    fn prune_feedback(&self, before_ms: u64) -> Result<usize, StoreError>;
}

/// The replies of the training step running now, and those of steps that never ended (the
/// process died during them): these are not trained on again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingMarks {
    pub in_step: Vec<u64>,
    pub skipped: Vec<u64>,
}

/// Every reply with what training on it needs, and the Discord messages it was sent as.
pub trait ReplyJournal: Send + Sync + 'static {
    /// Journals a reply durably; returns its id.
    fn append_reply(&self, reply: &ReplyRecord) -> Result<u64, StoreError>;
    fn reply(&self, id: u64) -> Result<Option<ReplyRecord>, StoreError>;
    /// Remembers that reply `id` was delivered as these (Discord) messages.
    fn link_reply(&self, id: u64, message_ids: &[String]) -> Result<(), StoreError>;
    fn reply_for_message(&self, message_id: &str) -> Result<Option<u64>, StoreError>;
    /// Drops journaled replies older than `before_ms` (and their links); returns how many.
    fn prune_replies(&self, before_ms: u64) -> Result<usize, StoreError>;
}

/// Counters, and syncing what was written without a sync of its own.
pub trait StatsStore: Send + Sync + 'static {
    fn add_stat(&self, name: &str, delta: u64) -> Result<(), StoreError>;
    fn stat(&self, name: &str) -> Result<u64, StoreError>;
    /// Keeps the lowest or highest value seen in counter `name` (0: none yet).
    fn keep_extreme(&self, name: &str, value: u64, keep: crate::stats::Extreme) -> Result<(), StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
    /// Drops the hourly counters (`stats.rs`) of the hours before `before_ms`.
    fn prune_hourly(&self, before_ms: u64) -> Result<usize, StoreError>;
    /// What the store takes on disk, in bytes.
    fn disk_bytes(&self) -> u64;
}

/// The server's history, what its voice is learned from (`crate::history`).
pub trait HistoryLog: Send + Sync + 'static {
    /// Keeps these messages (already admitted), and moves the channel's fetch cursor in the same
    /// write, so a fetch killed at any moment resumes without a gap or a duplicate. Synced when
    /// a cursor moves; a live message (no cursor) is made durable by the message log's sync
    /// that follows it, and a later fetch would bring it back anyway.
    fn keep_history(&self, messages: &[HistoryMessage], cursor: Option<(ChannelKey, u64)>) -> Result<(), StoreError>;
    /// The newest message a fetch of `channel` has kept.
    fn history_cursor(&self, channel: &ChannelKey) -> Result<Option<u64>, StoreError>;
    /// How many messages the history keeps in `guild`'s channels, and how many of them `user`
    /// wrote (for `!botdata`; a scan).
    fn history_count(&self, guild: u64, user: Option<&str>) -> Result<(usize, usize), StoreError>;
    /// A reaction added or removed on a kept message (nothing if it is not kept).
    fn react(&self, channel: &ChannelKey, message_id: u64, emoji: &str, added: bool) -> Result<(), StoreError>;
}

/// The whole store, for the code that hands each actor its part.
pub trait Store: MessageLog + SettingsStore + FeedbackJournal + ReplyJournal + StatsStore + HistoryLog {}

impl<T: MessageLog + SettingsStore + FeedbackJournal + ReplyJournal + StatsStore + HistoryLog> Store for T {}
