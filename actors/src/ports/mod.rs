//! The small traits through which the actors reach the outside world, and the values that
//! cross them. Adapters live in the `sidekick` binary; in-memory ones for tests in
//! [`crate::testing`].

mod gateway;
mod jobs;
mod learning;
mod model;
mod retrieval;
mod store;

pub use crate::feedback::manifest::{AdapterManifest, AdapterVersion};
pub use gateway::{BoxFuture, Connection, Connector};
pub use jobs::HistoryJobs;
pub use learning::{LearnError, Learning, Personality, PolicyTrainer, TrainReport, TrainSample};
pub use model::{CancelFlag, EngineStats, FinishReason, GenEvent, GenerationJob, LanguageModel, ModelError, ModelInfo, ModelLoader};
pub use retrieval::{IndexItem, RetrievalError, RetrievalStats, Retriever, RetrieverLoader};
pub use store::{
    ChannelSettings, ChannelSummary, FeedbackEvent, FeedbackJournal, FeedbackSource, Forgotten, GlobalSettings, HistoryLog, MessageLog,
    ParamOverrides, ReplyJournal, ReplyRecord, SettingsStore, StatsStore, Store, StoreError, StoredMessage, TrainingMarks,
};
