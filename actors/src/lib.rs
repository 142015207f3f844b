//! Sidekick's behaviour: the actor tree, the messages between actors, and the pure rules they
//! follow. The outside world (llama.cpp, fjall, Discord, Prometheus) is reached through the
//! traits in [`ports`], implemented by the `sidekick` binary, and in memory by [`testing`]
//! (feature `test-support`) for actor tests that run in seconds without a model.

pub mod channel_key;
pub mod clock;
pub mod commands;
pub mod context;
pub mod conversation;
pub mod edit_pacing;
pub mod engagement;
pub mod feedback;
pub mod gateway;
pub mod governance;
pub mod handle;
pub mod history;
pub mod human;
pub mod liveness;
pub mod metric_names;
pub mod model;
pub mod params;
pub mod ports;
pub mod prompt;
pub mod restart;
pub mod retrieval;
pub mod reward;
pub mod split;
pub mod stats;
pub mod stream_text;
pub mod supervisor;
pub mod sync;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod thread_tuner;
pub mod timeouts;
pub mod tree;
pub mod watchdog;

pub use channel_key::ChannelKey;
pub use conversation::{ChannelDefaults, ChannelMsg, ChatRules, Inbound, ReplyEvent};
pub use supervisor::{Pruned, RootMsg, RootSupervisor, TreeArgs};
pub use tree::TreeStatus;
