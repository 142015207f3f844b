//! Retention, every hour: messages older than `storage.keep_messages_days` leave the message
//! log, the server's history and the vector index; hourly counters older than 400 days go.
//! It runs beside the root's loop (a first prune of months takes a while), one at a time.

use super::{RootMsg, RootState};
use crate::metric_names as m;
use crate::ports::Store;
use crate::retrieval::RetrievalMsg;
use crate::stats::KEEP_HOURLY_DAYS;
use crate::timeouts;
use ractor::{ActorRef, RpcReplyPort};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: u64 = 86_400_000;

/// What one pass dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub vectors: usize,
    pub hourly_stats: usize,
}

impl RootState {
    /// Starts a retention pass; while one runs, an hourly one is skipped and one asked for
    /// (with `reply`) waits for it to end.
    pub(super) fn prune(&self, myself: &ActorRef<RootMsg>, reply: Option<RpcReplyPort<Pruned>>) {
        if self.pruning.swap(true, Ordering::AcqRel) {
            if let Some(reply) = reply {
                myself.send_after(Duration::from_millis(200), move || RootMsg::Prune(Some(reply)));
            }
            return;
        }
        let pass = Pass {
            root: myself.clone(),
            store: self.args.store.clone(),
            retrieval: self.retrieval.get(),
            now_ms: self.args.defaults.clock.now_ms(),
            keep_messages: self.args.keep_messages,
            running: self.pruning.clone(),
        };
        tokio::spawn(async move {
            let pruned = pass.run().await;
            if let Some(reply) = reply {
                let _ = reply.send(pruned);
            }
        });
    }
}

struct Pass {
    root: ActorRef<RootMsg>,
    store: Arc<dyn Store>,
    retrieval: Option<ActorRef<RetrievalMsg>>,
    now_ms: u64,
    keep_messages: Option<Duration>,
    running: Arc<AtomicBool>,
}

impl Pass {
    async fn run(self) -> Pruned {
        let mut pruned = Pruned::default();
        let store = self.store.clone();
        let (now, keep) = (self.now_ms, self.keep_messages);
        let before_ms = keep.map(|keep| now.saturating_sub(keep.as_millis() as u64));
        let from_store = tokio::task::spawn_blocking(move || {
            let messages = match before_ms {
                Some(before) => store.prune_messages(before),
                None => Ok(0),
            };
            (messages, store.prune_hourly(now.saturating_sub(KEEP_HOURLY_DAYS * DAY_MS)))
        })
        .await;
        match from_store {
            Ok((messages, hourly)) => {
                pruned.messages = messages.unwrap_or_else(|e| failed("messages", e));
                pruned.hourly_stats = hourly.unwrap_or_else(|e| failed("hourly counters", e));
            }
            Err(e) => tracing::error!(error = %e, "the retention pass panicked"),
        }
        if pruned.messages > 0 {
            // Open conversations hold their recent history: they start again from the store.
            let _ = self.root.send_message(RootMsg::LetGoIdle(super::idle::LetGo::All("retention")));
        }
        if let (Some(before_ms), Some(retrieval)) = (before_ms, &self.retrieval) {
            match retrieval.call(|reply| RetrievalMsg::Prune { before_ms, reply }, Some(timeouts::RETRIEVAL_PURGE)).await {
                Ok(ractor::rpc::CallResult::Success(n)) => pruned.vectors = n,
                _ => {
                    failed("vectors", "the retrieval actor did not answer");
                }
            }
        }
        metrics::counter!(m::PRUNED, "what" => "messages").increment(pruned.messages as u64);
        metrics::counter!(m::PRUNED, "what" => "vectors").increment(pruned.vectors as u64);
        metrics::counter!(m::PRUNED, "what" => "stats").increment(pruned.hourly_stats as u64);
        self.running.store(false, Ordering::Release);
        pruned
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> usize {
    tracing::warn!(%error, "retention could not drop old {what}; the next pass tries again");
    m::count_error("retention");
    0
}
