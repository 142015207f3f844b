//! Purges and `!forgetme`, as the tree carries them out. The words to delete may be in the
//! store, in the vector index, in the training queue, and in the memory of any open
//! conversation; each is asked in order, so nothing writes them back:
//!
//! 1. conversations drop them from memory, each after the message it is handling (a reply in
//!    flight finishes first) — a purged channel forgets everything, the others only the turns
//!    that quoted the purged channel or the forgotten person;
//! 2. the retrieval actor removes their vectors (after any batch it is embedding);
//! 3. the store deletes them (messages, settings, journaled replies that quote them, feedback,
//!    vector metadata) and the feedback actor drops their samples.

use super::{RootMsg, RootState};
use crate::channel_key::ChannelKey;
use crate::conversation::ChannelMsg;
use crate::feedback::{Dropped, FeedbackMsg};
use crate::retrieval::RetrievalMsg;
use crate::timeouts;
use crate::tree::{ForgetReport, PurgeReport};
use ractor::{ActorRef, RpcReplyPort};

/// The answer of a call that was answered in time.
fn success<T>(result: Result<ractor::rpc::CallResult<T>, ractor::MessagingErr<RetrievalMsg>>) -> Option<T> {
    match result {
        Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
        _ => None,
    }
}

/// Sends each conversation the message `make` builds and waits until each has handled it
/// (after the message it is handling now), or until the purge's time is up.
async fn tell<F>(conversations: Vec<ActorRef<ChannelMsg>>, make: F)
where
    F: Fn(RpcReplyPort<()>) -> ChannelMsg + Clone + Send + Sync + 'static,
{
    let asked: Vec<_> = conversations
        .into_iter()
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let _ = c.call(make, Some(timeouts::PURGE)).await;
            })
        })
        .collect();
    for one in asked {
        let _ = one.await;
    }
}

impl RootState {
    pub(super) fn purge(
        &mut self,
        myself: &ActorRef<RootMsg>,
        channel: ChannelKey,
        requester: ChannelKey,
        reply: RpcReplyPort<PurgeReport>,
    ) {
        // Its threads go with it.
        let mut purged = vec![channel];
        match self.args.store.threads_of(&channel) {
            Ok(threads) => purged.extend(threads),
            Err(e) => tracing::warn!(%channel, error = %e, "could not list a channel's threads"),
        }
        // Messages to it wait until it is done (they are turned away meanwhile).
        self.purging.extend(purged.iter().copied().filter(|c| *c != requester));
        let targets: Vec<_> =
            purged.iter().filter(|c| **c != requester).filter_map(|c| self.channels.get(c)).map(|(a, _)| a.clone()).collect();
        let others: Vec<_> =
            self.channels.iter().filter(|(k, _)| !purged.contains(k) && **k != requester).map(|(_, (a, _))| a.clone()).collect();
        let (store, retrieval, feedback, myself) = (self.args.store.clone(), self.retrieval.get(), self.feedback.get(), myself.clone());
        tokio::spawn(async move {
            tell(targets, ChannelMsg::Purged).await;
            for gone in purged.iter().copied() {
                tell(others.clone(), move |done| ChannelMsg::Drop(Dropped::Channel(gone), done)).await;
            }
            let mut report = PurgeReport { messages: 0, vectors: Some(0) };
            for gone in purged.iter().copied() {
                let vectors = match &retrieval {
                    Some(r) => success(r.call(|reply| RetrievalMsg::Purge { channel: gone, reply }, Some(timeouts::RETRIEVAL_PURGE)).await),
                    None => Some(0),
                };
                report.vectors = report.vectors.zip(vectors).map(|(a, b)| a + b);
                match store.purge_channel(&gone) {
                    Ok(n) => report.messages += n,
                    Err(e) => tracing::error!(channel = %gone, error = %e, "could not purge a channel"),
                }
                if let Some(feedback) = &feedback {
                    let _ = feedback.send_message(FeedbackMsg::Drop(Dropped::Channel(gone)));
                }
                let _ = myself.send_message(RootMsg::Purged(gone));
            }
            let _ = reply.send(report);
        });
    }

    pub(super) fn forget_user(&mut self, user: String, requester: ChannelKey, reply: RpcReplyPort<ForgetReport>) {
        let others: Vec<_> = self.channels.iter().filter(|(k, _)| **k != requester).map(|(_, (a, _))| a.clone()).collect();
        let (store, retrieval, feedback) = (self.args.store.clone(), self.retrieval.get(), self.feedback.get());
        tokio::spawn(async move {
            let dropped = Dropped::User { user: user.clone(), replies: Vec::new() };
            tell(others, move |done| ChannelMsg::Drop(dropped.clone(), done)).await;
            let vectors = match &retrieval {
                Some(r) => {
                    success(r.call(|reply| RetrievalMsg::PurgeUser { user: user.clone(), reply }, Some(timeouts::RETRIEVAL_PURGE)).await)
                }
                None => Some(0),
            };
            let forgotten = store.forget_user(&user).unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not forget a user");
                Default::default()
            });
            if let Some(feedback) = &feedback {
                let _ = feedback.send_message(FeedbackMsg::Drop(Dropped::User { user, replies: forgotten.replies.clone() }));
            }
            let report =
                ForgetReport { messages: forgotten.messages, replies: forgotten.replies.len(), feedback: forgotten.feedback, vectors };
            let _ = reply.send(report);
        });
    }
}
