//! A store in memory.

use crate::channel_key::ChannelKey;
use crate::history::HistoryMessage;
use crate::ports::{
    ChannelSettings, ChannelSummary, FeedbackEvent, FeedbackJournal, Forgotten, GlobalSettings, HistoryLog, MessageLog, ReplyJournal,
    ReplyRecord, SettingsStore, StatsStore, StoreError, StoredMessage, TrainingMarks,
};
use crate::sync::LockExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    messages: HashMap<ChannelKey, Vec<StoredMessage>>,
    /// Where each channel's conversation starts after `!clear`.
    cursors: HashMap<ChannelKey, usize>,
    settings: HashMap<ChannelKey, ChannelSettings>,
    global: GlobalSettings,
    feedback: BTreeMap<u64, FeedbackEvent>,
    next_feedback: u64,
    replies: BTreeMap<u64, ReplyRecord>,
    next_reply: u64,
    links: HashMap<String, u64>,
    stats: HashMap<String, u64>,
    history: BTreeMap<(String, u64), HistoryMessage>,
    history_cursors: HashMap<ChannelKey, u64>,
    training_marks: TrainingMarks,
}

impl MemoryStore {
    /// The kept history, in channel then time order.
    pub fn history(&self) -> Vec<HistoryMessage> {
        self.0.lock_or_recover().history.values().cloned().collect()
    }

    /// Every message stored in `channel`, oldest first.
    pub fn messages(&self, channel: &ChannelKey) -> Vec<StoredMessage> {
        self.0.lock_or_recover().messages.get(channel).cloned().unwrap_or_default()
    }

    pub fn replies(&self) -> Vec<ReplyRecord> {
        self.0.lock_or_recover().replies.values().cloned().collect()
    }
}

impl MessageLog for MemoryStore {
    fn append_message(&self, channel: &ChannelKey, message: &StoredMessage) -> Result<u64, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let log = inner.messages.entry(*channel).or_default();
        log.push(message.clone());
        Ok(log.len() as u64 - 1)
    }

    fn recent_history(&self, channel: &ChannelKey, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let inner = self.0.lock_or_recover();
        let start = inner.cursors.get(channel).copied().unwrap_or(0);
        let log = inner.messages.get(channel).map(|l| &l[start.min(l.len())..]).unwrap_or(&[]);
        Ok(log[log.len().saturating_sub(limit)..].to_vec())
    }

    fn replace_message(&self, channel: &ChannelKey, seq: u64, content: &str) -> Result<bool, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let Some(message) = inner.messages.get_mut(channel).and_then(|log| log.get_mut(seq as usize)) else { return Ok(false) };
        message.content = content.to_string();
        Ok(true)
    }

    fn clear_history(&self, channel: &ChannelKey) -> Result<(), StoreError> {
        let mut inner = self.0.lock_or_recover();
        let end = inner.messages.get(channel).map_or(0, Vec::len);
        inner.cursors.insert(*channel, end);
        Ok(())
    }

    fn forget_user(&self, user_id: &str) -> Result<Forgotten, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let mut forgotten = Forgotten::default();
        for log in inner.messages.values_mut() {
            let before = log.len();
            log.retain(|m| m.user_id.as_deref() != Some(user_id));
            forgotten.messages += before - log.len();
        }
        forgotten.replies = inner.replies.iter().filter(|(_, r)| r.speakers.iter().any(|s| s == user_id)).map(|(id, _)| *id).collect();
        inner.replies.retain(|_, r| !r.speakers.iter().any(|s| s == user_id));
        let before = inner.feedback.len();
        inner.feedback.retain(|_, e| e.user_id.as_deref() != Some(user_id));
        forgotten.feedback = before - inner.feedback.len();
        let before = inner.history.len();
        inner.history.retain(|_, m| m.author_id.to_string() != user_id);
        forgotten.messages += before - inner.history.len();
        Ok(forgotten)
    }

    fn channel_summaries(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        let inner = self.0.lock_or_recover();
        Ok(inner
            .messages
            .iter()
            .filter(|(_, log)| !log.is_empty())
            .map(|(channel, log)| ChannelSummary {
                channel: *channel,
                guild: log[0].guild.as_deref().and_then(|g| g.parse().ok()),
                messages: log.len(),
                since_ms: log[0].at_ms,
            })
            .collect())
    }

    fn user_message_count(&self, user_id: &str) -> Result<usize, StoreError> {
        let inner = self.0.lock_or_recover();
        Ok(inner.messages.values().flatten().filter(|m| m.user_id.as_deref() == Some(user_id)).count())
    }

    fn threads_of(&self, parent: &ChannelKey) -> Result<Vec<ChannelKey>, StoreError> {
        let inner = self.0.lock_or_recover();
        let parent = parent.discord_id();
        Ok(inner.messages.keys().filter(|k| matches!(k, ChannelKey::Thread { parent: p, .. } if *p == parent)).copied().collect())
    }

    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, StoreError> {
        let mut inner = self.0.lock_or_recover();
        inner.settings.remove(channel);
        inner.cursors.remove(channel);
        let quoted = |r: &ReplyRecord| r.channel == *channel || r.sources.contains(channel);
        let gone: Vec<u64> = inner.replies.iter().filter(|(_, r)| quoted(r)).map(|(id, _)| *id).collect();
        inner.replies.retain(|_, r| !quoted(r));
        inner.links.retain(|_, id| !gone.contains(id));
        inner.feedback.retain(|_, e| e.channel != *channel);
        let name = channel.to_string();
        inner.history.retain(|(c, _), _| *c != name);
        inner.history_cursors.remove(channel);
        Ok(inner.messages.remove(channel).map_or(0, |m| m.len()))
    }

    fn prune_messages(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let mut gone = 0;
        let Inner { messages, cursors, history, .. } = &mut *inner;
        for (channel, log) in messages.iter_mut() {
            let old = log.iter().take_while(|m| m.at_ms < before_ms).count();
            log.drain(..old);
            if let Some(cursor) = cursors.get_mut(channel) {
                *cursor = cursor.saturating_sub(old);
            }
            gone += old;
        }
        messages.retain(|_, log| !log.is_empty());
        let before = history.len();
        history.retain(|_, m| m.at_ms >= before_ms);
        Ok(gone + before - history.len())
    }
}

impl SettingsStore for MemoryStore {
    fn channel_settings(&self, channel: &ChannelKey) -> Result<ChannelSettings, StoreError> {
        Ok(self.0.lock_or_recover().settings.get(channel).cloned().unwrap_or_default())
    }
    fn save_channel_settings(&self, channel: &ChannelKey, settings: &ChannelSettings) -> Result<(), StoreError> {
        self.0.lock_or_recover().settings.insert(*channel, settings.clone());
        Ok(())
    }
    fn global_settings(&self) -> Result<GlobalSettings, StoreError> {
        Ok(self.0.lock_or_recover().global.clone())
    }
    fn save_global_settings(&self, settings: &GlobalSettings) -> Result<(), StoreError> {
        self.0.lock_or_recover().global = settings.clone();
        Ok(())
    }
}

impl FeedbackJournal for MemoryStore {
    fn append_feedback(&self, event: &FeedbackEvent) -> Result<u64, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let seq = inner.next_feedback;
        inner.next_feedback += 1;
        inner.feedback.insert(seq, event.clone());
        Ok(seq)
    }
    fn feedback_since(&self, from: u64) -> Result<Vec<(u64, FeedbackEvent)>, StoreError> {
        Ok(self.0.lock_or_recover().feedback.range(from..).map(|(k, v)| (*k, v.clone())).collect())
    }
    fn training_marks(&self) -> Result<TrainingMarks, StoreError> {
        Ok(self.0.lock_or_recover().training_marks.clone())
    }
    fn save_training_marks(&self, marks: &TrainingMarks) -> Result<(), StoreError> {
        self.0.lock_or_recover().training_marks = marks.clone();
        Ok(())
    }
    fn prune_feedback(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let before = inner.feedback.len();
        inner.feedback.retain(|_, e| e.at_ms >= before_ms);
        Ok(before - inner.feedback.len())
    }
}

impl ReplyJournal for MemoryStore {
    fn append_reply(&self, reply: &ReplyRecord) -> Result<u64, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let id = inner.next_reply;
        inner.next_reply += 1;
        inner.replies.insert(id, reply.clone());
        Ok(id)
    }
    fn reply(&self, id: u64) -> Result<Option<ReplyRecord>, StoreError> {
        Ok(self.0.lock_or_recover().replies.get(&id).cloned())
    }
    fn link_reply(&self, id: u64, message_ids: &[String]) -> Result<(), StoreError> {
        let mut inner = self.0.lock_or_recover();
        for message in message_ids {
            inner.links.insert(message.clone(), id);
        }
        Ok(())
    }
    fn reply_for_message(&self, message_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.0.lock_or_recover().links.get(message_id).copied())
    }
    fn prune_replies(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let before = inner.replies.len();
        inner.replies.retain(|_, r| r.at_ms >= before_ms);
        Ok(before - inner.replies.len())
    }
}

impl HistoryLog for MemoryStore {
    fn keep_history(&self, messages: &[HistoryMessage], cursor: Option<(ChannelKey, u64)>) -> Result<(), StoreError> {
        let mut inner = self.0.lock_or_recover();
        for m in messages {
            inner.history.insert((m.channel.to_string(), m.id), m.clone());
        }
        if let Some((channel, at)) = cursor {
            inner.history_cursors.insert(channel, at);
        }
        Ok(())
    }
    fn history_cursor(&self, channel: &ChannelKey) -> Result<Option<u64>, StoreError> {
        Ok(self.0.lock_or_recover().history_cursors.get(channel).copied())
    }
    fn history_count(&self, guild: u64, user: Option<&str>) -> Result<(usize, usize), StoreError> {
        let inner = self.0.lock_or_recover();
        let here: Vec<&HistoryMessage> = inner.history.values().filter(|m| m.guild == Some(guild)).collect();
        let theirs = here.iter().filter(|m| user.is_some_and(|u| m.author_id.to_string() == u)).count();
        Ok((here.len(), theirs))
    }
    fn react(&self, channel: &ChannelKey, message_id: u64, emoji: &str, added: bool) -> Result<(), StoreError> {
        let mut inner = self.0.lock_or_recover();
        if let Some(m) = inner.history.get_mut(&(channel.to_string(), message_id)) {
            let count = m.reactions.entry(emoji.to_string()).or_default();
            *count = if added { *count + 1 } else { count.saturating_sub(1) };
            if *count == 0 {
                m.reactions.remove(emoji);
            }
        }
        Ok(())
    }
}

impl StatsStore for MemoryStore {
    fn add_stat(&self, name: &str, delta: u64) -> Result<(), StoreError> {
        *self.0.lock_or_recover().stats.entry(name.to_string()).or_default() += delta;
        Ok(())
    }
    fn stat(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.0.lock_or_recover().stats.get(name).copied().unwrap_or(0))
    }
    fn keep_extreme(&self, name: &str, value: u64, keep: crate::stats::Extreme) -> Result<(), StoreError> {
        let mut inner = self.0.lock_or_recover();
        let slot = inner.stats.entry(name.to_string()).or_default();
        *slot = keep.keep(*slot, value);
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn prune_hourly(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut inner = self.0.lock_or_recover();
        let before = inner.stats.len();
        inner.stats.retain(|name, _| crate::stats::hour_of(name).is_none_or(|hour| hour >= crate::stats::hour(before_ms)));
        Ok(before - inner.stats.len())
    }
    fn disk_bytes(&self) -> u64 {
        0
    }
}
