//! Letting idle conversations go. A conversation keeps nothing the store does not have
//! (its history, settings and engagement are written as each message is handled), so one
//! that sat idle for `chat.idle_minutes`, or the least recently used one when
//! `chat.max_open_channels` are open, is simply stopped; the next message starts it again.

use super::RootState;
use crate::channel_key::ChannelKey;
use crate::metric_names as m;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Which conversations to let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// Those idle for longer than `chat.idle_minutes` (every minute).
    Idle,
    /// Every one not busy, for this reason (retention dropped what they hold in memory).
    All(&'static str),
}

impl RootState {
    pub(super) fn let_go_of(&mut self, which: LetGo) {
        match which {
            LetGo::Idle => self.let_go_idle(),
            LetGo::All(why) => {
                let idle: Vec<ChannelKey> = self.channels.keys().filter(|key| self.is_idle(key)).copied().collect();
                for key in idle {
                    self.let_go(key, why);
                }
            }
        }
    }

    /// A message for `key` arrived: it is the most recently used.
    pub(super) fn touch(&mut self, key: ChannelKey) {
        self.used.insert(key, Instant::now());
    }

    /// Stops every conversation idle for longer than `chat.idle_minutes`.
    fn let_go_idle(&mut self) {
        let idle_after = self.args.defaults.chat.idle_after();
        let now = Instant::now();
        let idle: Vec<ChannelKey> = self
            .channels
            .keys()
            .filter(|key| self.is_idle(key) && now.duration_since(self.last_used(key)) >= idle_after)
            .copied()
            .collect();
        for key in idle {
            self.let_go(key, "idle");
        }
    }

    /// Before a conversation is opened: with `chat.max_open_channels` open, the least
    /// recently used idle one goes (when every one is busy, the new one opens over the cap).
    pub(super) fn make_room(&mut self) {
        if self.channels.len() < self.args.defaults.chat.max_open_channels {
            return;
        }
        let oldest = self.channels.keys().filter(|key| self.is_idle(key)).min_by_key(|key| self.last_used(key)).copied();
        match oldest {
            Some(key) => self.let_go(key, "least recently used"),
            None => tracing::warn!(open = self.channels.len(), "every open conversation is busy; opening one over chat.max_open_channels"),
        }
    }

    /// Nothing waits for it: no message queued or being answered, no purge under way.
    fn is_idle(&self, key: &ChannelKey) -> bool {
        self.channels.get(key).is_some_and(|(_, pending)| pending.load(Ordering::Acquire) == 0) && !self.purging.contains(key)
    }

    /// The open conversations, least recently used first.
    pub(super) fn open_by_use(&self) -> Vec<ChannelKey> {
        let mut open: Vec<ChannelKey> = self.channels.keys().copied().collect();
        open.sort_by_key(|key| (self.last_used(key), key.to_string()));
        open
    }

    fn last_used(&self, key: &ChannelKey) -> Instant {
        self.used.get(key).copied().unwrap_or(self.started)
    }

    /// Stops the conversation; forgotten first, so its end is not taken for a failure.
    fn let_go(&mut self, key: ChannelKey, why: &'static str) {
        let Some((actor, _)) = self.channels.remove(&key) else { return };
        self.children.remove(&actor.get_id());
        self.used.remove(&key);
        actor.stop(Some(why.into()));
        tracing::debug!(channel = %key, why, "conversation let go");
        metrics::counter!(m::CHANNELS_LET_GO, "why" => why).increment(1);
        self.publish_open();
    }

    pub(super) fn publish_open(&self) {
        metrics::gauge!(m::OPEN_CHANNELS).set(self.channels.len() as f64);
    }
}
