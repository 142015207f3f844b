//! The server's history in the store: human messages kept for training, keyed by channel then
//! Discord id (ids grow with time, so a channel's keys are in time order and the same message
//! fetched twice, or fetched and imported, is one record), and a fetch cursor per channel.

use super::{backend, message_prefix, u64_of, FjallStore};
use sidekick_actors::channel_key::ChannelKey;
use sidekick_actors::history::HistoryMessage;
use sidekick_actors::ports::{HistoryLog, StoreError};
use sidekick_actors::sync::LockExt;

fn history_key(channel: &ChannelKey, id: u64) -> Vec<u8> {
    let mut key = message_prefix(channel);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl FjallStore {
    /// Every kept message, channel by channel, oldest first within each.
    pub fn history_messages(&self) -> impl Iterator<Item = Result<HistoryMessage, StoreError>> + '_ {
        self.history.iter().map(|guard| {
            let (_, value) = guard.into_inner().map_err(backend)?;
            serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(format!("a history record: {e}")))
        })
    }

    /// Number of messages in the history.
    pub fn history_len(&self) -> usize {
        self.history.len().unwrap_or(0)
    }

    /// Every channel's fetch cursor.
    pub fn history_cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.history_cursors.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            out.push((String::from_utf8_lossy(&key).into_owned(), u64_of(&value)?));
        }
        Ok(out)
    }

    /// Deletes, in `batch`, a channel's history and cursor.
    pub(super) fn purge_history(&self, batch: &mut fjall::OwnedWriteBatch, channel: &ChannelKey) -> Result<usize, StoreError> {
        let mut n = 0;
        for guard in self.history.prefix(message_prefix(channel)) {
            batch.remove(&self.history, guard.key().map_err(backend)?);
            n += 1;
        }
        batch.remove(&self.history_cursors, channel.to_string());
        Ok(n)
    }

    /// Deletes, in `batch`, everything a user wrote from the history.
    pub(super) fn forget_history(&self, batch: &mut fjall::OwnedWriteBatch, user_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for guard in self.history.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if serde_json::from_slice::<HistoryMessage>(&value).is_ok_and(|m| m.author_id.to_string() == user_id) {
                batch.remove(&self.history, key);
                n += 1;
            }
        }
        Ok(n)
    }
}

impl HistoryLog for FjallStore {
    fn keep_history(&self, messages: &[HistoryMessage], cursor: Option<(ChannelKey, u64)>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for m in messages {
            // So the parent's purge reaches a thread's history too.
            self.remember_thread(&m.channel)?;
            let key = history_key(&m.channel, m.id);
            // A message kept before keeps the reactions counted since, unless this copy has some.
            let merged = match self.history.get(&key).map_err(backend)? {
                Some(old) if m.reactions.is_empty() => {
                    let old: HistoryMessage = serde_json::from_slice(&old).map_err(backend)?;
                    HistoryMessage { reactions: old.reactions, ..m.clone() }
                }
                _ => m.clone(),
            };
            batch.insert(&self.history, key, serde_json::to_vec(&merged).map_err(backend)?);
        }
        if let Some((channel, at)) = cursor {
            batch.insert(&self.history_cursors, channel.to_string(), at.to_be_bytes());
        }
        batch.commit().map_err(backend)?;
        match cursor {
            Some(_) => self.sync(),
            None => Ok(()),
        }
    }

    fn history_cursor(&self, channel: &ChannelKey) -> Result<Option<u64>, StoreError> {
        self.history_cursors.get(channel.to_string()).map_err(backend)?.map(|v| u64_of(&v)).transpose()
    }

    fn history_count(&self, guild: u64, user: Option<&str>) -> Result<(usize, usize), StoreError> {
        let (mut here, mut theirs) = (0, 0);
        for message in self.history_messages() {
            let m = message?;
            if m.guild == Some(guild) {
                here += 1;
                theirs += usize::from(user.is_some_and(|u| m.author_id.to_string() == u));
            }
        }
        Ok((here, theirs))
    }

    fn react(&self, channel: &ChannelKey, message_id: u64, emoji: &str, added: bool) -> Result<(), StoreError> {
        // Read, change, write: one at a time, or two reactions at once would count as one.
        let _one_at_a_time = self.history_lock.lock_or_recover();
        let key = history_key(channel, message_id);
        let Some(value) = self.history.get(&key).map_err(backend)? else { return Ok(()) };
        let mut message: HistoryMessage = serde_json::from_slice(&value).map_err(backend)?;
        let count = message.reactions.entry(emoji.to_string()).or_default();
        *count = if added { *count + 1 } else { count.saturating_sub(1) };
        if *count == 0 {
            message.reactions.remove(emoji);
        }
        // A reaction count is never acknowledged to anyone: no sync of its own.
        self.history.insert(key, serde_json::to_vec(&message).map_err(backend)?).map_err(backend)
    }
}
