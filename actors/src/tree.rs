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
    pub uptime: Duration,
    pub restarts: u64,
    /// The adapter served (`None`: the base model).
    pub adapter: Option<crate::ports::AdapterVersion>,
    /// How long ago the last reply was completed.
    pub last_reply: Option<Duration>,
}

pub enum TreeRequest {
    /// `!restart`: stop every conversation and the model, and load the model again.
    RestartTree,
    /// Stop a conversation so it starts afresh from the store (after its data was purged).
    Forget(ChannelKey),
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
    let (tx, rx) = ractor::concurrency::oneshot();
    tree.send_message(TreeRequest::Status(tx.into())).map_err(|_| TreeError::Gone)?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(_)) => Err(TreeError::Gone),
        Err(_) => Err(TreeError::Busy),
    }
}
