//! Retention: what is older than the operator keeps leaves the store, in chunks, without
//! reading what stays. A channel's keys are in time order (sequence numbers and Discord ids
//! grow with time), so each channel is read only up to its first message that stays.

use super::{backend, seq_of, FjallStore, GLOBAL};
use fjall::Keyspace;
use sidekick_actors::ports::StoreError;
use sidekick_actors::stats::hour_of;
use sidekick_actors::sync::LockExt;

/// Deletes are committed this many at a time, so a first prune of months stays small in memory.
const CHUNK: usize = 10_000;

/// The time field every message record has.
#[derive(serde::Deserialize)]
struct Said {
    at_ms: u64,
}

fn said_before(value: &[u8], before_ms: u64) -> Option<bool> {
    serde_json::from_slice::<Said>(value).ok().map(|s| s.at_ms < before_ms)
}

/// The first key after every key of `key`'s channel (`<channel>\0<8 bytes>`).
fn next_channel(key: &[u8]) -> Vec<u8> {
    let mut next = key[..key.len() - 8].to_vec();
    *next.last_mut().expect("keys start with a channel and a 0 byte") = 1;
    next
}

/// The first key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// Bytes allocated on disk to the entries of `dir` named in `names` (a file by its extension
/// or name, a folder by its name, with everything under it).
pub(super) fn allocated_bytes(dir: &std::path::Path, names: &[&str]) -> u64 {
    fn walk(path: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
        let own = meta.blocks() * 512;
        if !meta.is_dir() {
            return own;
        }
        own + std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| walk(&e.path())).sum::<u64>()
    }
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            names.iter().any(|n| name == *n || name.rsplit_once('.').is_some_and(|(_, ext)| ext == *n))
        })
        .map(|e| walk(&e.path()))
        .sum()
}

impl FjallStore {
    /// Deletes the records of `keyspace` (keyed `<channel>\0<8 bytes>`) said before
    /// `before_ms`; for the message log (`counted`), with their `unindexed` markers, and each
    /// channel's newest sequence number is kept, so a channel pruned empty does not hand its
    /// numbers out again (its `!clear` cursor and settings refer to them).
    pub(super) fn prune_said_before(&self, keyspace: &Keyspace, before_ms: u64, counted: bool) -> Result<usize, StoreError> {
        let mut gone = 0;
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut batch = self.db.batch();
            let mut in_batch = 0;
            let mut resume = None;
            // The newest key deleted in the channel being read.
            let mut newest: Option<Vec<u8>> = None;
            for guard in keyspace.range(from.clone()..) {
                let (key, value) = guard.into_inner().map_err(backend)?;
                if newest.as_ref().is_some_and(|n| n[..n.len() - 8] != key[..key.len() - 8]) {
                    self.keep_channel_high_water(&mut batch, newest.take().as_deref(), counted);
                }
                match said_before(&value, before_ms) {
                    Some(true) => {
                        batch.remove(keyspace, key.clone());
                        if counted {
                            batch.remove(&self.unindexed, key.clone());
                        }
                        gone += 1;
                        in_batch += 1;
                        if in_batch == CHUNK {
                            resume = Some(after(&key));
                            newest = Some(key.to_vec());
                            break;
                        }
                        newest = Some(key.to_vec());
                    }
                    // The rest of this channel is newer.
                    Some(false) => {
                        resume = Some(next_channel(&key));
                        break;
                    }
                    None => tracing::warn!("an unreadable record stays (retention cannot tell its age)"),
                }
            }
            self.keep_channel_high_water(&mut batch, newest.as_deref(), counted);
            batch.commit().map_err(backend)?;
            match resume {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(gone)
    }

    fn keep_channel_high_water(&self, batch: &mut fjall::OwnedWriteBatch, newest: Option<&[u8]>, counted: bool) {
        let Some(key) = newest.filter(|_| counted) else { return };
        let channel = String::from_utf8_lossy(&key[..key.len() - 9]);
        let seq = seq_of(key);
        if self.high_water(&channel).ok().flatten() < Some(seq) {
            batch.insert(&self.stats, format!("@high-water {channel}"), seq.to_be_bytes());
        }
    }

    pub(super) fn prune_messages_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        let messages = self.prune_said_before(&self.messages, before_ms, true)?;
        let history = {
            let _no_fetch_meanwhile = self.history_lock.lock_or_recover();
            self.prune_said_before(&self.history, before_ms, false)?
        };
        if messages + history > 0 {
            self.sync()?;
            tracing::info!(messages, history, "retention: dropped messages older than storage.keep_messages_days");
        }
        Ok(messages + history)
    }

    pub(super) fn prune_feedback_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        self.keep_high_water(&mut batch, GLOBAL, &self.feedback)?;
        let mut gone = 0;
        // Sequence numbers grow with time: the old ones come first.
        for guard in self.feedback.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if said_before(&value, before_ms) == Some(false) {
                break;
            }
            batch.remove(&self.feedback, key);
            gone += 1;
        }
        if gone > 0 {
            batch.commit().map_err(backend)?;
            self.sync()?;
        }
        Ok(gone)
    }

    pub(super) fn prune_hourly_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        let before_hour = sidekick_actors::stats::hour(before_ms);
        let mut batch = self.db.batch();
        let mut gone = 0;
        for guard in self.stats.iter() {
            let (key, _) = guard.into_inner().map_err(backend)?;
            if hour_of(&String::from_utf8_lossy(&key)).is_some_and(|hour| hour < before_hour) {
                batch.remove(&self.stats, key);
                gone += 1;
            }
        }
        batch.commit().map_err(backend)?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::super::FjallStore;
    use sidekick_actors::ports::{FeedbackEvent, FeedbackJournal, FeedbackSource, MessageLog, StatsStore, StoredMessage};
    use sidekick_actors::prompt::Role;
    use sidekick_actors::stats::hour_key;
    use sidekick_actors::ChannelKey;

    const DAY: u64 = 86_400_000;

    fn said(text: &str, at_ms: u64) -> StoredMessage {
        StoredMessage { role: Role::User, author: "ann".into(), content: text.into(), at_ms, message_id: None, guild: None, user_id: None }
    }

    fn texts(store: &FjallStore, channel: &ChannelKey) -> Vec<String> {
        store.recent_history(channel, 100).unwrap().into_iter().map(|m| m.content).collect()
    }

    #[test]
    fn retention_drops_each_channels_old_messages_and_never_reuses_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (ChannelKey::guild(1, 10), ChannelKey::guild(1, 11), ChannelKey::guild(1, 12));
        {
            let store = FjallStore::open(dir.path()).unwrap();
            for day in 0..5 {
                store.append_message(&a, &said(&format!("a{day}"), day * DAY)).unwrap();
            }
            store.append_message(&b, &said("b-old", 0)).unwrap();
            store.append_message(&b, &said("b-older-still", 1)).unwrap();
            store.append_message(&c, &said("c-new", 9 * DAY)).unwrap();
            store.clear_history(&b).unwrap();
            assert_eq!(store.unindexed_messages().unwrap().len(), 8, "none embedded yet");
            assert_eq!(store.prune_messages(3 * DAY).unwrap(), 3 + 2);
            assert_eq!(texts(&store, &a), ["a3", "a4"]);
            assert_eq!(store.message_count(&b), 0);
            assert_eq!(texts(&store, &c), ["c-new"]);
            assert_eq!(store.unindexed_messages().unwrap().len(), 3, "dropped messages wait for no vector");
            assert_eq!(store.prune_messages(3 * DAY).unwrap(), 0, "nothing left to drop");
        }
        // Reopened, channel b (pruned empty) goes on after its old numbers, so its `!clear`
        // cursor still starts the conversation before the new message.
        let store = FjallStore::open(dir.path()).unwrap();
        assert_eq!(store.append_message(&b, &said("b-new", 10 * DAY)).unwrap(), 2);
        assert_eq!(texts(&store, &b), ["b-new"]);
    }

    #[test]
    fn retention_drops_old_feedback_and_hourly_counters_of_over_400_days() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        let event = |at_ms| FeedbackEvent {
            channel: ChannelKey::guild(1, 10),
            reply_seq: None,
            reply_id: Some(1),
            reply_message_id: None,
            source: FeedbackSource::Command,
            rating: Some(5),
            emoji: None,
            comment: String::new(),
            user: "ann".into(),
            user_id: None,
            at_ms,
            reward: 1.0,
        };
        for day in 0..4 {
            store.append_feedback(&event(day * DAY)).unwrap();
        }
        assert_eq!(store.prune_feedback(2 * DAY).unwrap(), 2);
        assert_eq!(store.feedback_since(0).unwrap().iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(store.append_feedback(&event(5 * DAY)).unwrap(), 4);

        store.add_stat(&hour_key("replies", 0), 2).unwrap();
        store.add_stat(&hour_key("replies", 500 * DAY), 3).unwrap();
        store.add_stat("lifetime", 7).unwrap();
        assert_eq!(store.prune_hourly(100 * DAY).unwrap(), 1);
        assert_eq!(store.stat(&hour_key("replies", 0)).unwrap(), 0);
        assert_eq!(store.stat(&hour_key("replies", 500 * DAY)).unwrap(), 3);
        assert_eq!(store.stat("lifetime").unwrap(), 7);
        assert!(store.disk_bytes() > 0);
    }
}

#[cfg(test)]
mod disk_tests {
    use super::super::FjallStore;
    use sidekick_actors::ports::{MessageLog, StatsStore, StoredMessage};
    use sidekick_actors::prompt::Role;
    use sidekick_actors::ChannelKey;

    const DAY: u64 = 86_400_000;

    #[test]
    fn with_retention_the_store_on_disk_levels_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        let text = "x".repeat(8_000);
        let mut sizes = Vec::new();
        // 3.2 MB a day for 40 days (128 MB written), 7 days kept (22 MB live).
        for day in 0..40u64 {
            for i in 0..400u64 {
                let message = StoredMessage {
                    role: Role::User,
                    author: "ann".into(),
                    content: text.clone(),
                    at_ms: day * DAY + i,
                    message_id: None,
                    guild: None,
                    user_id: None,
                };
                store.append_message(&ChannelKey::guild(1, i % 10), &message).unwrap();
            }
            store.prune_messages((day * DAY).saturating_sub(7 * DAY)).unwrap();
            sizes.push(store.disk_bytes() as f64 / 1e6);
        }
        // The journal fills up to its 64 MiB cap and is dropped once flushed: a sawtooth whose
        // peaks stop rising (measured: 95.3 MB at most in days 10-25, 94.6 in days 25-40).
        let peak = |days: &[f64]| days.iter().cloned().fold(0.0, f64::max);
        assert!(peak(&sizes[25..]) < 64.0 * 1.05 + 2.0 * 22.4, "the store kept growing: {sizes:.1?}");
        assert!(peak(&sizes[25..]) <= peak(&sizes[10..25]) * 1.1, "its peaks still rise: {sizes:.1?}");
    }
}
