//! Sidekick's behaviour: the actor tree, the messages between actors, and the pure rules they
//! follow. The outside world (llama.cpp, fjall, Discord, Prometheus) is reached through the
//! traits in [`ports`], implemented by the `sidekick` binary.

pub mod channel_commands;
pub mod commands;
pub mod context;
pub mod conversation;
pub mod engagement;
pub mod feedback;
pub mod human;
pub mod metric_names;
pub mod model;
pub mod params;
pub mod ports;
pub mod prompt;
pub mod restart;
pub mod retrieval;
pub mod reward;
pub mod split;
pub mod stream_text;
pub mod supervisor;
pub mod watchdog;

pub use conversation::{ChannelDefaults, ChannelMsg, Inbound, ReplyEvent};
pub use supervisor::{RootMsg, RootSupervisor, TreeArgs, TreeStatus};
