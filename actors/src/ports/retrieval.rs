//! The retrieval port: embeddings plus a vector index over the server's messages.

use crate::channel_key::ChannelKey;
use crate::governance::Scope;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A message to embed and index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexItem {
    pub channel: ChannelKey,
    pub guild: Option<String>,
    pub author: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub text: String,
    pub at_ms: u64,
    /// Its sequence number in the channel's message log, so the store can tell which stored
    /// messages still wait for a vector (a crash between storing and embedding).
    #[serde(default)]
    pub seq: Option<u64>,
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
    /// What the index takes in memory.
    #[serde(default)]
    pub bytes: u64,
    pub rebuilds: u64,
    /// Why retrieval is off, when it is.
    pub degraded: Option<String>,
}

/// Embeddings plus a vector index over the server's messages. Calls block (embedding runs
/// ONNX); the retrieval actor keeps them off the async runtime.
pub trait Retriever: Send + Sync + 'static {
    fn index(&self, items: &[IndexItem]) -> Result<(), RetrievalError>;
    /// The `k` indexed messages most similar to `text` that `scope` admits.
    fn query(&self, text: &str, scope: &Scope, k: usize) -> Result<Vec<crate::context::Hit>, RetrievalError>;
    /// Removes a channel's vectors; returns how many.
    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, RetrievalError>;
    /// Removes the vectors of what `user_id` wrote; returns how many.
    fn purge_user(&self, user_id: &str) -> Result<usize, RetrievalError>;
    /// Removes the vectors of messages said before `before_ms` (retention); returns how many.
    fn prune_before(&self, before_ms: u64) -> Result<usize, RetrievalError>;
    fn save(&self) -> Result<(), RetrievalError>;
    fn stats(&self) -> RetrievalStats;
}

/// Opens the retriever (loading or rebuilding its index); called at start and on restart.
pub trait RetrieverLoader: Send + Sync + 'static {
    fn load(&self) -> Result<Arc<dyn Retriever>, RetrievalError>;
}
