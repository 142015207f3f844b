//! Finding and deleting what the store keeps from one person, and saying what it keeps:
//! scans, because they are rare (`!forgetme`, `!botdata`) and the logs are keyed by channel.

use super::{backend, seq_of, u64_of, FjallStore};
use sidekick_actors::channel_key::ChannelKey;
use sidekick_actors::ports::{ChannelSummary, FeedbackEvent, Forgotten, ReplyRecord, StoreError, StoredMessage};
use sidekick_actors::sync::LockExt;
use std::collections::HashSet;

/// Old journal entries name no speakers; one quoting a forgotten message is found by its text,
/// for texts long enough not to match by chance.
const MATCHED_TEXT_CHARS: usize = 12;

/// The channel a message log key belongs to (`<channel>\0<seq>`).
pub(super) fn channel_of(key: &[u8]) -> Option<ChannelKey> {
    String::from_utf8_lossy(&key[..key.len().checked_sub(9)?]).parse().ok()
}

/// What the `channels` keyspace keeps about a thread.
#[derive(serde::Serialize, serde::Deserialize)]
struct ThreadEntry {
    guild: Option<u64>,
    parent: u64,
}

impl FjallStore {
    /// Records a thread's parent the first time it is written to, so the parent's purge and
    /// allowlist reach it, and an index rebuild knows where it belongs.
    pub(super) fn remember_thread(&self, channel: &ChannelKey) -> Result<(), StoreError> {
        let ChannelKey::Thread { guild, parent: Some(parent), .. } = *channel else { return Ok(()) };
        if !self.known_threads.lock_or_recover().insert(*channel) {
            return Ok(());
        }
        let entry = serde_json::to_vec(&ThreadEntry { guild, parent }).map_err(backend)?;
        self.channels.insert(channel.to_string(), entry).map_err(backend)
    }

    /// The key `channel` has with what is known about it (a thread with its parent).
    pub fn known(&self, channel: ChannelKey) -> ChannelKey {
        let Some(id) = channel.discord_id().filter(|_| !channel.is_dm()) else { return channel };
        match self.channels.get(channel.to_string()).ok().flatten().and_then(|v| serde_json::from_slice::<ThreadEntry>(&v).ok()) {
            Some(t) => ChannelKey::Thread { guild: t.guild.or(channel.guild_id()), parent: Some(t.parent), thread: id },
            None => channel,
        }
    }

    pub(super) fn threads(&self, parent: &ChannelKey) -> Result<Vec<ChannelKey>, StoreError> {
        let Some(parent) = parent.discord_id() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for guard in self.channels.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(entry) = serde_json::from_slice::<ThreadEntry>(&value) else { continue };
            if entry.parent == parent {
                if let Ok(ChannelKey::Guild { channel, .. }) = String::from_utf8_lossy(&key).parse::<ChannelKey>() {
                    out.push(ChannelKey::Thread { guild: entry.guild, parent: Some(parent), thread: channel });
                }
            }
        }
        Ok(out)
    }

    /// Deletes everything kept from a channel: its messages, settings and cursor, the journaled
    /// replies there or whose prompts quoted it, the links to them, the feedback given there,
    /// and the metadata of its vectors (the index itself is purged by the retrieval actor).
    pub(super) fn purge(&self, channel: &ChannelKey) -> Result<usize, StoreError> {
        let name = channel.to_string();
        let keys: Vec<_> = self.messages.prefix(super::message_prefix(channel)).filter_map(|g| g.key().ok()).collect();
        let mut batch = self.db.batch();
        for key in &keys {
            batch.remove(&self.messages, key.clone());
        }
        batch.remove(&self.settings, name.as_str());
        batch.remove(&self.cursors, name.as_str());
        batch.remove(&self.channels, name.as_str());
        let history = self.purge_history(&mut batch, channel)?;
        self.keep_high_water(&mut batch, "@replies", &self.replies)?;
        self.keep_high_water(&mut batch, super::GLOBAL, &self.feedback)?;
        let mut replies = HashSet::new();
        for guard in self.replies.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let quoted = serde_json::from_slice::<ReplyRecord>(&value).is_ok_and(|r| r.channel == *channel || r.sources.contains(channel));
            if quoted {
                replies.insert(seq_of(&key));
                batch.remove(&self.replies, key);
            }
        }
        self.unlink(&mut batch, &replies)?;
        for guard in self.feedback.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if serde_json::from_slice::<FeedbackEvent>(&value).is_ok_and(|e| e.channel == *channel) {
                batch.remove(&self.feedback, key);
            }
        }
        for (key, meta) in self.vector_entries() {
            if meta.channel == name {
                batch.remove(&self.vectors, key.to_be_bytes());
            }
        }
        batch.commit().map_err(backend)?;
        self.sync()?;
        Ok(keys.len() + history)
    }

    /// Removes, in `batch`, the links from Discord messages to these replies.
    fn unlink(&self, batch: &mut fjall::OwnedWriteBatch, replies: &HashSet<u64>) -> Result<(), StoreError> {
        for guard in self.reply_links.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if u64_of(&value).is_ok_and(|id| replies.contains(&id)) {
                batch.remove(&self.reply_links, key);
            }
        }
        Ok(())
    }

    pub(super) fn forget(&self, user_id: &str) -> Result<Forgotten, StoreError> {
        let mut batch = self.db.batch();
        self.keep_high_water(&mut batch, "@replies", &self.replies)?;
        self.keep_high_water(&mut batch, super::GLOBAL, &self.feedback)?;
        let mut forgotten = Forgotten::default();
        let mut texts = Vec::new();
        for guard in self.messages.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(message) = serde_json::from_slice::<StoredMessage>(&value) else { continue };
            if message.user_id.as_deref() == Some(user_id) {
                if message.content.chars().count() >= MATCHED_TEXT_CHARS {
                    texts.push(message.content);
                }
                batch.remove(&self.messages, key);
                forgotten.messages += 1;
            }
        }
        forgotten.messages += self.forget_history(&mut batch, user_id)?;
        let mut replies = HashSet::new();
        for guard in self.replies.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(reply) = serde_json::from_slice::<ReplyRecord>(&value) else { continue };
            let quoted = match reply.speakers.is_empty() {
                false => reply.speakers.iter().any(|s| s == user_id),
                true => texts.iter().any(|t| reply.prompt.contains(t.as_str())),
            };
            if quoted {
                replies.insert(seq_of(&key));
                batch.remove(&self.replies, key);
            }
        }
        self.unlink(&mut batch, &replies)?;
        for guard in self.feedback.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(event) = serde_json::from_slice::<FeedbackEvent>(&value) else { continue };
            if event.user_id.as_deref().unwrap_or(&event.user) == user_id {
                batch.remove(&self.feedback, key);
                forgotten.feedback += 1;
            }
        }
        for (key, meta) in self.vector_entries() {
            if meta.user_id.as_deref() == Some(user_id) {
                batch.remove(&self.vectors, key.to_be_bytes());
            }
        }
        batch.commit().map_err(backend)?;
        self.sync()?;
        forgotten.replies = replies.into_iter().collect();
        forgotten.replies.sort_unstable();
        Ok(forgotten)
    }

    pub(super) fn summaries(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        let mut out: Vec<ChannelSummary> = Vec::new();
        for guard in self.messages.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Some(channel) = channel_of(&key) else { continue };
            match out.last_mut() {
                Some(last) if last.channel == channel => last.messages += 1,
                // Keys are in channel order, then time: the first of a channel is its oldest.
                _ => {
                    let first = serde_json::from_slice::<StoredMessage>(&value).ok();
                    let since_ms = first.as_ref().map_or(0, |m| m.at_ms);
                    let guild = first.and_then(|m| m.guild).and_then(|g| g.parse().ok());
                    out.push(ChannelSummary { channel: self.known(channel), guild, messages: 1, since_ms });
                }
            }
        }
        Ok(out)
    }

    pub(super) fn count_by(&self, user_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for guard in self.messages.iter() {
            let (_, value) = guard.into_inner().map_err(backend)?;
            n += serde_json::from_slice::<StoredMessage>(&value).is_ok_and(|m| m.user_id.as_deref() == Some(user_id)) as usize;
        }
        Ok(n)
    }
}
