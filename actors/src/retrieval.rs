//! The retrieval actor: embeds stored messages in batches off the reply path, answers
//! "what was said before about this?" for prompts, and saves the index. Without an embedding
//! model it runs degraded: it says so once and answers every query with nothing.

use crate::context::Hit;
use crate::metric_names as m;
use crate::ports::{IndexItem, RetrievalStats, Retriever, RetrieverLoader};
use crate::watchdog::Heartbeats;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages are embedded in batches of up to this many.
const BATCH: usize = 32;
/// While the model is generating, indexing waits (embedding competes for the same cores)
/// unless this many messages are already waiting.
const MAX_DEFERRED: usize = 256;
/// A partial batch waits at most this long.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const SAVE_EVERY: Duration = Duration::from_secs(300);

pub enum RetrievalMsg {
    Index(IndexItem),
    Flush,
    Query {
        text: String,
        /// Where the hits may come from (see `governance.rs`).
        scope: crate::governance::Scope,
        k: usize,
        reply: RpcReplyPort<Vec<Hit>>,
    },
    Purge {
        channel: crate::channel_key::ChannelKey,
        reply: RpcReplyPort<usize>,
    },
    /// Removes the vectors of what a user wrote.
    PurgeUser {
        user: String,
        reply: RpcReplyPort<usize>,
    },
    /// Retention: removes the vectors of messages said before `before_ms`.
    Prune {
        before_ms: u64,
        reply: RpcReplyPort<usize>,
    },
    /// Embeds what is pending and saves the index.
    Save(Option<RpcReplyPort<()>>),
    Stats(RpcReplyPort<RetrievalStats>),
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
    /// A batch finished embedding (sent by the actor's own blocking task).
    Indexed {
        items: usize,
        seconds: f64,
    },
}

pub struct RetrievalActor;

/// What a purge removes.
pub enum Purge {
    Channel(crate::channel_key::ChannelKey, RpcReplyPort<usize>),
    User(String, RpcReplyPort<usize>),
    Before(u64, RpcReplyPort<usize>),
}

impl Purge {
    fn run(self, retriever: &Arc<dyn Retriever>) -> Result<(), ActorProcessingErr> {
        match self {
            Purge::Channel(channel, reply) => {
                let _ = reply.send(retriever.purge_channel(&channel)?);
            }
            Purge::User(user, reply) => {
                let _ = reply.send(retriever.purge_user(&user)?);
            }
            Purge::Before(at_ms, reply) => {
                let gone = retriever.prune_before(at_ms)?;
                publish_size(retriever.as_ref());
                let _ = reply.send(gone);
            }
        }
        Ok(())
    }
}

pub struct RetrievalState {
    retriever: Result<Arc<dyn Retriever>, String>,
    pending: Vec<IndexItem>,
    /// A batch is being embedded; the next waits for it so batches stay in order.
    embedding: bool,
    /// Purges asked for while a batch was being embedded: they run once it is in, so it cannot
    /// bring back what they delete.
    deferred: Vec<Purge>,
    /// Tells whether the model is generating.
    heartbeats: Heartbeats,
}

impl Actor for RetrievalActor {
    type Msg = RetrievalMsg;
    type State = RetrievalState;
    type Arguments = (Arc<dyn RetrieverLoader>, Heartbeats);

    async fn pre_start(
        &self,
        myself: ActorRef<RetrievalMsg>,
        (loader, heartbeats): Self::Arguments,
    ) -> Result<RetrievalState, ActorProcessingErr> {
        let retriever = match tokio::task::spawn_blocking(move || loader.load()).await? {
            Ok(r) => {
                metrics::gauge!(m::RETRIEVAL_DEGRADED).set(0.0);
                publish_size(r.as_ref());
                Ok(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "retrieval is off: replies go on without earlier messages as context");
                metrics::gauge!(m::RETRIEVAL_DEGRADED).set(1.0);
                Err(e.to_string())
            }
        };
        myself.send_interval(FLUSH_EVERY, || RetrievalMsg::Flush);
        myself.send_interval(SAVE_EVERY, || RetrievalMsg::Save(None));
        Ok(RetrievalState { retriever, pending: Vec::new(), embedding: false, deferred: Vec::new(), heartbeats })
    }

    async fn post_stop(&self, _: ActorRef<RetrievalMsg>, state: &mut RetrievalState) -> Result<(), ActorProcessingErr> {
        if let Ok(r) = &state.retriever {
            let (r, items) = (r.clone(), std::mem::take(&mut state.pending));
            tokio::task::spawn_blocking(move || {
                if !items.is_empty() {
                    let _ = r.index(&items);
                }
                r.save()
            })
            .await??;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RetrievalMsg>,
        msg: RetrievalMsg,
        state: &mut RetrievalState,
    ) -> Result<(), ActorProcessingErr> {
        #[cfg(feature = "fault-injection")]
        if matches!(msg, RetrievalMsg::InjectPanic) {
            panic!("injected panic in the retrieval actor");
        }
        let Ok(retriever) = state.retriever.clone() else {
            return degraded(msg, state);
        };
        match msg {
            RetrievalMsg::Index(item) => {
                state.pending.push(item);
                if state.pending.len() >= BATCH {
                    state.start_batch(&myself, &retriever);
                }
            }
            RetrievalMsg::Flush => state.start_batch(&myself, &retriever),
            RetrievalMsg::Indexed { items, seconds } => {
                state.embedding = false;
                for purge in std::mem::take(&mut state.deferred) {
                    let retriever = retriever.clone();
                    tokio::task::spawn_blocking(move || purge.run(&retriever)).await??;
                }
                metrics::histogram!(m::EMBED_SECONDS).record(seconds);
                metrics::histogram!(m::EMBED_BATCH_SIZE).record(items as f64);
                publish_size(retriever.as_ref());
                if state.pending.len() >= BATCH {
                    state.start_batch(&myself, &retriever);
                }
            }
            RetrievalMsg::Query { text, scope, k, reply } => {
                // Queries run beside a batch being embedded, never behind it.
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let hits = retriever.query(&text, &scope, k).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "retrieval query failed");
                        m::count_error("retrieval_query");
                        Vec::new()
                    });
                    metrics::histogram!(m::QUERY_SECONDS).record(started.elapsed().as_secs_f64());
                    let _ = reply.send(hits);
                });
            }
            RetrievalMsg::Purge { channel, reply } => {
                state.pending.retain(|i| i.channel != channel);
                state.purge(Purge::Channel(channel, reply), &retriever).await?;
            }
            RetrievalMsg::PurgeUser { user, reply } => {
                state.pending.retain(|i| i.user_id.as_deref() != Some(user.as_str()));
                state.purge(Purge::User(user, reply), &retriever).await?;
            }
            RetrievalMsg::Prune { before_ms, reply } => {
                state.pending.retain(|i| i.at_ms >= before_ms);
                state.purge(Purge::Before(before_ms, reply), &retriever).await?;
            }
            RetrievalMsg::Save(reply) => {
                let items = std::mem::take(&mut state.pending);
                tokio::task::spawn_blocking(move || {
                    if !items.is_empty() {
                        retriever.index(&items)?;
                    }
                    retriever.save()
                })
                .await??;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            RetrievalMsg::Stats(reply) => {
                let _ = reply.send(retriever.stats());
            }
            #[cfg(feature = "fault-injection")]
            RetrievalMsg::InjectPanic => unreachable!("handled above"),
        }
        Ok(())
    }
}

impl RetrievalState {
    /// Purges now, or once the batch being embedded is in.
    async fn purge(&mut self, purge: Purge, retriever: &Arc<dyn Retriever>) -> Result<(), ActorProcessingErr> {
        if self.embedding {
            self.deferred.push(purge);
            return Ok(());
        }
        let retriever = retriever.clone();
        tokio::task::spawn_blocking(move || purge.run(&retriever)).await?
    }

    fn start_batch(&mut self, myself: &ActorRef<RetrievalMsg>, retriever: &Arc<dyn Retriever>) {
        if self.embedding || self.pending.is_empty() {
            return;
        }
        if self.heartbeats.is_busy("model") && self.pending.len() < MAX_DEFERRED {
            return; // the flush timer tries again
        }
        self.embedding = true;
        let take = self.pending.len().min(BATCH);
        let items: Vec<IndexItem> = self.pending.drain(..take).collect();
        let (retriever, myself) = (retriever.clone(), myself.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            if let Err(e) = retriever.index(&items) {
                tracing::warn!(error = %e, "could not index {} messages", items.len());
                m::count_error("retrieval_index");
            }
            let _ = myself.send_message(RetrievalMsg::Indexed { items: items.len(), seconds: started.elapsed().as_secs_f64() });
        });
    }
}

/// The index's size, as metrics.
fn publish_size(retriever: &dyn Retriever) {
    let stats = retriever.stats();
    metrics::gauge!(m::INDEX_SIZE).set(stats.vectors as f64);
    metrics::gauge!(m::INDEX_BYTES).set(stats.bytes as f64);
}

/// Without a retriever every query finds nothing and every index request is dropped.
fn degraded(msg: RetrievalMsg, state: &RetrievalState) -> Result<(), ActorProcessingErr> {
    match msg {
        RetrievalMsg::Query { reply, .. } => {
            let _ = reply.send(Vec::new());
        }
        RetrievalMsg::Purge { reply, .. } | RetrievalMsg::PurgeUser { reply, .. } | RetrievalMsg::Prune { reply, .. } => {
            let _ = reply.send(0);
        }
        RetrievalMsg::Save(Some(reply)) => {
            let _ = reply.send(());
        }
        RetrievalMsg::Stats(reply) => {
            let why = state.retriever.as_ref().err().cloned();
            let _ = reply.send(RetrievalStats { degraded: why, ..Default::default() });
        }
        _ => {}
    }
    Ok(())
}
