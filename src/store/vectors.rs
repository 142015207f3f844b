//! What each vector of the retrieval index stands for: the index holds only numbers, the
//! store holds the rest (channel, server, author, text).

use super::{backend, last_seq, message_key, privacy, seq_of, FjallStore};
use serde::{Deserialize, Serialize};
use sidekick_actors::governance::Place;
use sidekick_actors::ports::{StoreError, StoredMessage};
use sidekick_actors::ChannelKey;

/// What a vector in the retrieval index stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorMeta {
    pub channel: String,
    pub guild: Option<String>,
    pub author: String,
    pub text: String,
    pub at_ms: u64,
    /// The author's Discord id (absent in old records), so `!forgetme` finds their vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The channel a thread belongs to, which decides where it may be shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
}

impl VectorMeta {
    /// Where the message was said, as the scope rules need it.
    pub fn place(&self) -> Option<Place> {
        let key: ChannelKey = self.channel.parse().ok()?;
        let guild = self.guild.as_deref().and_then(|g| g.parse().ok());
        let channel = match (key, self.parent) {
            (ChannelKey::Guild { channel, .. }, Some(parent)) => ChannelKey::Thread { guild, parent: Some(parent), thread: channel },
            (key, _) => key,
        };
        Some(Place::new(channel, guild))
    }
}

impl FjallStore {
    /// Records what each vector key stands for (the index holds only numbers); the stored
    /// messages they embed (channel and sequence number) no longer wait for a vector.
    pub fn put_vector_meta(&self, entries: &[(u64, VectorMeta)], embedded: &[(ChannelKey, u64)]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (key, meta) in entries {
            batch.insert(&self.vectors, key.to_be_bytes(), serde_json::to_vec(meta).map_err(backend)?);
        }
        for (channel, seq) in embedded {
            batch.remove(&self.unindexed, message_key(channel, *seq));
        }
        batch.commit().map_err(backend)
    }

    /// The stored user messages still waiting for a vector (written before a crash), with
    /// their channel and sequence number; markers of messages deleted meanwhile are dropped.
    pub fn unindexed_messages(&self) -> Result<Vec<(ChannelKey, u64, StoredMessage)>, StoreError> {
        let mut out = Vec::new();
        let mut gone = self.db.batch();
        for guard in self.unindexed.iter() {
            let key = guard.key().map_err(backend)?;
            let message = self.messages.get(&key).map_err(backend)?.and_then(|v| serde_json::from_slice::<StoredMessage>(&v).ok());
            match (privacy::channel_of(&key), message) {
                (Some(channel), Some(message)) => out.push((self.known(channel), seq_of(&key), message)),
                _ => gone.remove(&self.unindexed, key),
            }
        }
        gone.commit().map_err(backend)?;
        Ok(out)
    }

    /// No stored message waits for a vector (a rebuild embeds them all).
    pub fn clear_unindexed(&self) -> Result<(), StoreError> {
        self.unindexed.clear().map_err(backend)
    }

    /// How many records the message log holds, roughly (for a rebuild's progress).
    pub fn approximate_message_count(&self) -> usize {
        self.messages.approximate_len()
    }

    pub fn vector_meta(&self, key: u64) -> Result<Option<VectorMeta>, StoreError> {
        match self.vectors.get(key.to_be_bytes()).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| StoreError::Corrupt(format!("vector {key}: {e}"))),
            None => Ok(None),
        }
    }

    /// All vector keys with their metadata, in key order.
    pub fn vector_entries(&self) -> impl Iterator<Item = (u64, VectorMeta)> + '_ {
        self.vectors.iter().filter_map(|guard| {
            let (key, value) = guard.into_inner().ok()?;
            Some((seq_of(&key), serde_json::from_slice(&value).ok()?))
        })
    }

    pub fn remove_vector_meta(&self, keys: &[u64]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.keep_high_water(&mut batch, "@vectors", &self.vectors)?;
        for key in keys {
            batch.remove(&self.vectors, key.to_be_bytes());
        }
        batch.commit().map_err(backend)
    }

    pub fn clear_vector_meta(&self) -> Result<(), StoreError> {
        self.vectors.clear().map_err(backend)
    }

    /// A fresh key for a vector.
    pub fn next_vector_key(&self) -> Result<u64, StoreError> {
        self.next_in("@vectors", || last_seq(&self.vectors))
    }
}
