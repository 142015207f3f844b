//! What a conversation may ask of the tree: a narrow handle instead of the root's whole
//! message type, so a channel cannot route, drain or restart children on its own.

use crate::channel_key::ChannelKey;
use ractor::{DerivedActorRef, RpcReplyPort};
use std::time::Duration;

/// The tree's figures for `!status` and `sidekick status`.
#[derive(Debug, Clone)]
pub struct TreeStatus {
    pub model: Option<crate::ports::ModelInfo>,
    pub engine: Option<crate::ports::EngineStats>,
    pub retrieval: Option<crate::ports::RetrievalStats>,
    pub channels: usize,
    /// The open conversations, least recently used first (the next to go at the cap).
    pub open: Vec<crate::channel_key::ChannelKey>,
    pub uptime: Duration,
    pub restarts: u64,
    /// The adapter served (`None`: the base model).
    pub adapter: Option<crate::ports::AdapterVersion>,
    /// How long ago the last reply was completed.
    pub last_reply: Option<Duration>,
    /// The gateway runs without the Message Content intent: only messages addressed to the
    /// bot have their text.
    pub without_message_content: bool,
}

/// What a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub messages: usize,
    /// `None` when removing the vectors did not finish in time (they go at the next rebuild).
    pub vectors: Option<usize>,
}

/// What forgetting a user deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    pub messages: usize,
    pub replies: usize,
    pub feedback: usize,
    pub vectors: Option<usize>,
}

pub enum TreeRequest {
    /// `!restart`: stop every conversation and the model, and load the model again.
    RestartTree,
    /// Delete everything kept from `channel`: its conversation is stopped first (unless it is
    /// the `requester`, which forgets on its own), so nothing in memory writes it back.
    Purge {
        channel: ChannelKey,
        requester: ChannelKey,
        reply: RpcReplyPort<PurgeReport>,
    },
    /// Delete everything kept from a user, everywhere: every other conversation is stopped
    /// and starts again from the store.
    ForgetUser {
        user: String,
        requester: ChannelKey,
        reply: RpcReplyPort<ForgetReport>,
    },
    Status(RpcReplyPort<TreeStatus>),
}

/// The root supervisor, as a conversation sees it.
pub type TreeHandle = DerivedActorRef<TreeRequest>;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("the actor tree is stopping")]
    Gone,
    #[error("the actor tree is busy; try again in a moment")]
    Busy,
}

/// Asks the tree for its status, waiting at most `wait`.
pub async fn status(tree: &TreeHandle, wait: Duration) -> Result<TreeStatus, TreeError> {
    ask(tree, wait, TreeRequest::Status).await
}

/// Sends the request `make` builds around a reply port, and waits at most `wait` for the answer.
pub async fn ask<T: Send + 'static>(
    tree: &TreeHandle,
    wait: Duration,
    make: impl FnOnce(RpcReplyPort<T>) -> TreeRequest,
) -> Result<T, TreeError> {
    let (tx, rx) = ractor::concurrency::oneshot();
    tree.send_message(make(tx.into())).map_err(|_| TreeError::Gone)?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(_)) => Err(TreeError::Gone),
        Err(_) => Err(TreeError::Busy),
    }
}
