//! The fjall store under `data_storage/`: channel settings, the message log with a history
//! cursor per channel, and counters. Writes a user is told about are synced before returning.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use sidekick_actors::channel_key::ChannelKey;
use sidekick_actors::ports::{
    ChannelSettings, ChannelSummary, FeedbackEvent, FeedbackJournal, Forgotten, GlobalSettings, MessageLog, ReplyJournal, ReplyRecord,
    SettingsStore, StatsStore, StoreError, StoredMessage, TrainingMarks,
};
use sidekick_actors::sync::LockExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

mod history;
mod pairs;
mod privacy;
mod retention;
mod vectors;
pub use vectors::VectorMeta;

pub struct FjallStore {
    db: Database,
    /// The store's folder (for what it takes on disk).
    path: std::path::PathBuf,
    settings: Keyspace,
    messages: Keyspace,
    cursors: Keyspace,
    feedback: Keyspace,
    /// The reply journal: every reply with its prompt and sampled tokens.
    replies: Keyspace,
    /// Discord message id → reply id, so reactions and replies find the reply.
    reply_links: Keyspace,
    vectors: Keyspace,
    /// User messages stored and not yet embedded (`vectors.rs`): a crash between the two
    /// leaves them here, and the retriever catches them up at its next start.
    unindexed: Keyspace,
    stats: Keyspace,
    /// What is known about channels beyond their store key: a thread's parent and server.
    channels: Keyspace,
    /// The server's history (`history.rs`) and its fetch cursors.
    history: Keyspace,
    history_cursors: Keyspace,
    history_lock: Mutex<()>,
    /// Threads already recorded in `channels` since the store was opened.
    known_threads: Mutex<std::collections::HashSet<ChannelKey>>,
    /// Next message sequence number per channel, found on first use.
    next_seq: Mutex<HashMap<String, u64>>,
    stats_lock: Mutex<()>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A bot's writes are small and steady: fjall's defaults (512 MiB of journals, 64 MiB memtables
/// per keyspace) would let its disk and memory grow for weeks before levelling off. With
/// these, old journals are flushed and dropped early, and retention's deletes compact away.
const MAX_JOURNALS: u64 = 64 << 20;
const MAX_MEMTABLE: u64 = 8 << 20;

/// The settings key holding [`GlobalSettings`]; channel ids never start with `@`.
const GLOBAL: &str = "@global";
/// The settings key holding the training crash guard ([`TrainingMarks`]).
const TRAINING_MARKS: &str = "@training-marks";

fn message_prefix(channel: &ChannelKey) -> Vec<u8> {
    let mut key = channel.to_string().into_bytes();
    key.push(0);
    key
}

fn message_key(channel: &ChannelKey, seq: u64) -> Vec<u8> {
    let mut key = message_prefix(channel);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("message keys end in 8 bytes");
    u64::from_be_bytes(tail)
}

/// The sequence number of a keyspace's last key (keys ending in a big-endian u64).
fn last_seq(keyspace: &Keyspace) -> Result<Option<u64>, StoreError> {
    match keyspace.last_key_value() {
        Some(guard) => Ok(Some(seq_of(&guard.key().map_err(backend)?))),
        None => Ok(None),
    }
}

fn u64_of(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?))
}

impl FjallStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| backend(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNALS)
            .open()
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        let open = |name: &str| db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE)).map_err(backend);
        Ok(Self {
            settings: open("settings")?,
            messages: open("messages")?,
            cursors: open("cursors")?,
            feedback: open("feedback")?,
            replies: open("replies")?,
            reply_links: open("reply_links")?,
            vectors: open("vectors")?,
            unindexed: open("unindexed")?,
            stats: open("stats")?,
            channels: open("channels")?,
            history: open("history")?,
            history_cursors: open("history_cursors")?,
            history_lock: Mutex::default(),
            path: path.to_path_buf(),
            db,
            known_threads: Mutex::default(),
            next_seq: Mutex::default(),
            stats_lock: Mutex::default(),
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        let persist = || self.db.persist(PersistMode::SyncAll).map_err(backend);
        // An fsync on a slow disk (an SD card) can take a while; actors call this from the
        // runtime, so let its other tasks (the Discord heartbeat, /metrics) move to another
        // worker meanwhile. Only a multi-threaded runtime can do that.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(persist),
            _ => persist(),
        }
    }

    fn history_start(&self, channel: &ChannelKey) -> Result<u64, StoreError> {
        match self.cursors.get(channel.to_string()).map_err(backend)? {
            Some(v) => u64_of(&v),
            None => Ok(0),
        }
    }

    /// The next sequence number of a channel's message log.
    fn take_seq(&self, channel: &ChannelKey) -> Result<u64, StoreError> {
        self.next_in(&channel.to_string(), || match self.messages.prefix(message_prefix(channel)).next_back() {
            Some(guard) => Ok(Some(seq_of(&guard.key().map_err(backend)?))),
            None => Ok(None),
        })
    }

    /// Hands out sequence numbers for `counter`, continuing after `last()` found on disk.
    fn next_in(&self, counter: &str, last: impl FnOnce() -> Result<Option<u64>, StoreError>) -> Result<u64, StoreError> {
        let mut next = self.next_seq.lock_or_recover();
        if let Some(seq) = next.get_mut(counter) {
            *seq += 1;
            return Ok(*seq - 1);
        }
        // Deleting the newest entries (a purge, `!forgetme`) must not hand their ids out again:
        // the journals refer to each other by id, and adapters record how far they learned.
        let seq = last()?.max(self.high_water(counter)?).map_or(0, |s| s + 1);
        next.insert(counter.to_string(), seq + 1);
        Ok(seq)
    }

    fn high_water(&self, counter: &str) -> Result<Option<u64>, StoreError> {
        match self.stats.get(format!("@high-water {counter}")).map_err(backend)? {
            Some(v) => u64_of(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Records, in `batch`, the newest id `keyspace` has handed out as `counter`, before some of
    /// its entries are deleted.
    fn keep_high_water(&self, batch: &mut fjall::OwnedWriteBatch, counter: &str, keyspace: &Keyspace) -> Result<(), StoreError> {
        if let Some(last) = last_seq(keyspace)?.max(self.high_water(counter)?) {
            batch.insert(&self.stats, format!("@high-water {counter}"), last.to_be_bytes());
        }
        Ok(())
    }

    /// Every user message of every channel, oldest first within a channel: what the vector
    /// index is rebuilt from.
    pub fn user_messages(&self) -> impl Iterator<Item = (ChannelKey, StoredMessage)> + '_ {
        // Messages come in channel order: look each channel up once (a thread's parent).
        let mut last: Option<ChannelKey> = None;
        self.messages.iter().filter_map(move |guard| {
            let (key, value) = guard.into_inner().ok()?;
            let channel = privacy::channel_of(&key)?;
            let channel = match last {
                Some(known) if known == channel => known,
                _ => *last.insert(self.known(channel)),
            };
            let message: StoredMessage = serde_json::from_slice(&value).ok()?;
            (message.role == sidekick_actors::prompt::Role::User).then_some((channel, message))
        })
    }

    /// Copies a consistent snapshot of every keyspace into a new store at `dest` (which must
    /// not hold one) and syncs it; writes made meanwhile go on. Returns the records copied.
    pub fn backup_to(&self, dest: &Path) -> Result<usize, StoreError> {
        use fjall::Readable;
        let snapshot = self.db.snapshot();
        let copy = Database::builder(dest).open().map_err(|e| backend(format!("cannot create {}: {e}", dest.display())))?;
        let mut records = 0;
        for (name, keyspace) in self.keyspaces() {
            let target = copy.keyspace(name, KeyspaceCreateOptions::default).map_err(backend)?;
            let mut batch = copy.batch();
            for (i, guard) in snapshot.iter(keyspace).enumerate() {
                let (key, value) = guard.into_inner().map_err(backend)?;
                batch.insert(&target, key, value);
                records += 1;
                // In chunks, so a store of months does not have to fit in memory at once.
                if i % 10_000 == 9_999 {
                    std::mem::replace(&mut batch, copy.batch()).commit().map_err(backend)?;
                }
            }
            batch.commit().map_err(backend)?;
        }
        copy.persist(PersistMode::SyncAll).map_err(backend)?;
        Ok(records)
    }

    fn keyspaces(&self) -> [(&'static str, &Keyspace); 12] {
        [
            ("history", &self.history),
            ("history_cursors", &self.history_cursors),
            ("channels", &self.channels),
            ("settings", &self.settings),
            ("messages", &self.messages),
            ("cursors", &self.cursors),
            ("feedback", &self.feedback),
            ("replies", &self.replies),
            ("reply_links", &self.reply_links),
            ("vectors", &self.vectors),
            ("unindexed", &self.unindexed),
            ("stats", &self.stats),
        ]
    }

    /// Number of messages in a channel's log (for tests and `status`).
    pub fn message_count(&self, channel: &ChannelKey) -> usize {
        self.messages.prefix(message_prefix(channel)).count()
    }

    /// The whole feedback journal, oldest first.
    pub fn feedback_events(&self) -> Result<Vec<FeedbackEvent>, StoreError> {
        Ok(self.feedback_since(0)?.into_iter().map(|(_, e)| e).collect())
    }
}

impl SettingsStore for FjallStore {
    fn channel_settings(&self, channel: &ChannelKey) -> Result<ChannelSettings, StoreError> {
        match self.settings.get(channel.to_string()).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("settings of {channel}: {e}"))),
            None => Ok(ChannelSettings::default()),
        }
    }

    fn save_channel_settings(&self, channel: &ChannelKey, settings: &ChannelSettings) -> Result<(), StoreError> {
        let json = serde_json::to_vec(settings).map_err(backend)?;
        self.settings.insert(channel.to_string(), json).map_err(backend)?;
        self.sync()
    }

    fn global_settings(&self) -> Result<GlobalSettings, StoreError> {
        match self.settings.get(GLOBAL).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("global settings: {e}"))),
            None => Ok(GlobalSettings::default()),
        }
    }

    fn save_global_settings(&self, settings: &GlobalSettings) -> Result<(), StoreError> {
        let json = serde_json::to_vec(settings).map_err(backend)?;
        self.settings.insert(GLOBAL, json).map_err(backend)?;
        self.sync()
    }
}

impl MessageLog for FjallStore {
    fn append_message(&self, channel: &ChannelKey, message: &StoredMessage) -> Result<u64, StoreError> {
        self.remember_thread(channel)?;
        let seq = self.take_seq(channel)?;
        let json = serde_json::to_vec(message).map_err(backend)?;
        let key = message_key(channel, seq);
        let mut batch = self.db.batch();
        if message.role == sidekick_actors::prompt::Role::User {
            batch.insert(&self.unindexed, key.clone(), Vec::<u8>::new());
        }
        batch.insert(&self.messages, key, json);
        batch.commit().map_err(backend)?;
        self.sync()?;
        Ok(seq)
    }

    fn recent_history(&self, channel: &ChannelKey, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let start = self.history_start(channel)?;
        let mut out = Vec::with_capacity(limit);
        for guard in self.messages.prefix(message_prefix(channel)).rev() {
            if out.len() == limit {
                break;
            }
            let (key, value) = guard.into_inner().map_err(backend)?;
            if seq_of(&key) < start {
                break;
            }
            match serde_json::from_slice(&value) {
                Ok(message) => out.push(message),
                // One unreadable record must not cost the whole conversation.
                Err(e) => tracing::warn!(%channel, error = %e, "skipping an unreadable message"),
            }
        }
        out.reverse();
        Ok(out)
    }

    fn replace_message(&self, channel: &ChannelKey, seq: u64, content: &str) -> Result<bool, StoreError> {
        let key = message_key(channel, seq);
        let Some(value) = self.messages.get(&key).map_err(backend)? else { return Ok(false) };
        let mut message: StoredMessage = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(format!("message: {e}")))?;
        message.content = content.to_string();
        self.messages.insert(key, serde_json::to_vec(&message).map_err(backend)?).map_err(backend)?;
        self.sync()?;
        Ok(true)
    }

    fn clear_history(&self, channel: &ChannelKey) -> Result<(), StoreError> {
        let next = self.take_seq(channel)?; // the first sequence number after the clear
        self.cursors.insert(channel.to_string(), next.to_be_bytes()).map_err(backend)?;
        self.sync()
    }

    fn forget_user(&self, user_id: &str) -> Result<Forgotten, StoreError> {
        self.forget(user_id)
    }

    fn channel_summaries(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        self.summaries()
    }

    fn user_message_count(&self, user_id: &str) -> Result<usize, StoreError> {
        self.count_by(user_id)
    }

    fn threads_of(&self, parent: &ChannelKey) -> Result<Vec<ChannelKey>, StoreError> {
        self.threads(parent)
    }

    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, StoreError> {
        self.purge(channel)
    }

    fn prune_messages(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.prune_messages_before(before_ms)
    }
}

impl FeedbackJournal for FjallStore {
    fn append_feedback(&self, event: &FeedbackEvent) -> Result<u64, StoreError> {
        let seq = self.next_in(GLOBAL, || last_seq(&self.feedback))?;
        let json = serde_json::to_vec(event).map_err(backend)?;
        self.feedback.insert(seq.to_be_bytes(), json).map_err(backend)?;
        self.sync()?;
        Ok(seq)
    }

    fn feedback_since(&self, from: u64) -> Result<Vec<(u64, FeedbackEvent)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.feedback.range(from.to_be_bytes()..) {
            let (key, value) = guard.into_inner().map_err(backend)?;
            match serde_json::from_slice(&value) {
                Ok(event) => out.push((seq_of(&key), event)),
                // One unreadable record must not cost the rest of the journal.
                Err(e) => tracing::warn!(seq = seq_of(&key), error = %e, "skipping an unreadable feedback record"),
            }
        }
        Ok(out)
    }

    fn training_marks(&self) -> Result<TrainingMarks, StoreError> {
        match self.settings.get(TRAINING_MARKS).map_err(backend)? {
            Some(json) => serde_json::from_slice(&json).map_err(backend),
            None => Ok(TrainingMarks::default()),
        }
    }

    fn save_training_marks(&self, marks: &TrainingMarks) -> Result<(), StoreError> {
        let json = serde_json::to_vec(marks).map_err(backend)?;
        self.settings.insert(TRAINING_MARKS, json).map_err(backend)?;
        self.sync()
    }

    fn prune_feedback(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.prune_feedback_before(before_ms)
    }
}

impl ReplyJournal for FjallStore {
    fn append_reply(&self, reply: &ReplyRecord) -> Result<u64, StoreError> {
        let id = self.next_in("@replies", || last_seq(&self.replies))?;
        let json = serde_json::to_vec(reply).map_err(backend)?;
        self.replies.insert(id.to_be_bytes(), json).map_err(backend)?;
        self.sync()?;
        Ok(id)
    }

    fn reply(&self, id: u64) -> Result<Option<ReplyRecord>, StoreError> {
        match self.replies.get(id.to_be_bytes()).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| StoreError::Corrupt(format!("reply {id}: {e}"))),
            None => Ok(None),
        }
    }

    fn link_reply(&self, id: u64, message_ids: &[String]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for message in message_ids {
            batch.insert(&self.reply_links, message.as_str(), id.to_be_bytes());
        }
        batch.commit().map_err(backend)?;
        self.sync()
    }

    fn prune_replies(&self, before_ms: u64) -> Result<usize, StoreError> {
        // Ids grow with time, so the old ones are a prefix of the keyspace.
        let mut gone = std::collections::HashSet::new();
        let mut batch = self.db.batch();
        self.keep_high_water(&mut batch, "@replies", &self.replies)?;
        for guard in self.replies.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let at_ms = serde_json::from_slice::<serde_json::Value>(&value).ok().and_then(|v| v["at_ms"].as_u64()).unwrap_or(0);
            if at_ms >= before_ms {
                break;
            }
            gone.insert(seq_of(&key));
            batch.remove(&self.replies, key);
        }
        if gone.is_empty() {
            return Ok(0);
        }
        for guard in self.reply_links.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if u64_of(&value).is_ok_and(|id| gone.contains(&id)) {
                batch.remove(&self.reply_links, key);
            }
        }
        batch.commit().map_err(backend)?;
        self.sync()?;
        Ok(gone.len())
    }

    fn reply_for_message(&self, message_id: &str) -> Result<Option<u64>, StoreError> {
        match self.reply_links.get(message_id).map_err(backend)? {
            Some(v) => u64_of(&v).map(Some),
            None => Ok(None),
        }
    }
}

impl StatsStore for FjallStore {
    fn add_stat(&self, name: &str, delta: u64) -> Result<(), StoreError> {
        // Read-add-write: channels count concurrently, so one at a time or counts are lost.
        let _one_at_a_time = self.stats_lock.lock_or_recover();
        let now = self.stat(name)? + delta;
        self.stats.insert(name, now.to_be_bytes()).map_err(backend)
    }

    fn keep_extreme(&self, name: &str, value: u64, keep: sidekick_actors::stats::Extreme) -> Result<(), StoreError> {
        let _one_at_a_time = self.stats_lock.lock_or_recover();
        let now = keep.keep(self.stat(name)?, value);
        self.stats.insert(name, now.to_be_bytes()).map_err(backend)
    }

    fn stat(&self, name: &str) -> Result<u64, StoreError> {
        match self.stats.get(name).map_err(backend)? {
            Some(v) => u64_of(&v),
            None => Ok(0),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.sync()
    }

    fn prune_hourly(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.prune_hourly_before(before_ms)
    }

    fn disk_bytes(&self) -> u64 {
        // What the files take, not their length: fjall's journal is a preallocated 64 MB file
        // that fills as it is written (`Database::disk_space` counts all of it).
        retention::allocated_bytes(&self.path, &["jnl", "keyspaces", "version"])
    }
}

#[cfg(test)]
mod tests;
