//! Finding and deleting what the store keeps from one person, and saying what it keeps:
//! scans, because they are rare (`!forgetme`, `!botdata`) and the logs are keyed by channel.

use super::{backend, seq_of, u64_of, FjallStore};
use sidekick_actors::channel_key::ChannelKey;
use sidekick_actors::ports::{ChannelSummary, FeedbackEvent, Forgotten, ReplyRecord, StoreError, StoredMessage};
use std::collections::HashSet;

/// Old journal entries name no speakers; one quoting a forgotten message is found by its text,
/// for texts long enough not to match by chance.
const MATCHED_TEXT_CHARS: usize = 12;

/// The channel a message log key belongs to (`<channel>\0<seq>`).
pub(super) fn channel_of(key: &[u8]) -> Option<ChannelKey> {
    String::from_utf8_lossy(&key[..key.len().checked_sub(9)?]).parse().ok()
}

impl FjallStore {
    pub(super) fn forget(&self, user_id: &str) -> Result<Forgotten, StoreError> {
        let mut batch = self.db.batch();
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
        for guard in self.reply_links.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if u64_of(&value).is_ok_and(|id| replies.contains(&id)) {
                batch.remove(&self.reply_links, key);
            }
        }
        for guard in self.feedback.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(event) = serde_json::from_slice::<FeedbackEvent>(&value) else { continue };
            if event.user_id.as_deref().unwrap_or(&event.user) == user_id {
                batch.remove(&self.feedback, key);
                forgotten.feedback += 1;
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
                    let since_ms = serde_json::from_slice::<StoredMessage>(&value).map_or(0, |m| m.at_ms);
                    out.push(ChannelSummary { channel, messages: 1, since_ms });
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
