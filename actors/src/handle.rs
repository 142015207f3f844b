//! Where others find the current instance of a supervised actor.

use crate::sync::RwLockExt;
use ractor::ActorRef;
use std::sync::{Arc, RwLock};

/// A shared slot holding a child's current [`ActorRef`]: the supervisor fills it when it
/// (re)starts the child and empties it when the child stops, so holders never keep talking
/// to a dead instance.
pub struct ActorHandle<M: ractor::Message>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M: ractor::Message> Clone for ActorHandle<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: ractor::Message> Default for ActorHandle<M> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<M: ractor::Message> ActorHandle<M> {
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.read_or_recover().clone()
    }
    pub fn set(&self, actor: Option<ActorRef<M>>) {
        *self.0.write_or_recover() = actor;
    }
}
