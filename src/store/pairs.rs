//! The preference pairs the reply journal holds (🔁 and the votes after it), for
//! `sidekick dataset`; which ones count is `sidekick_actors::feedback::pairs`.

use super::{backend, FjallStore};
use sidekick_actors::feedback::pairs::{preference_pairs, PreferencePair};
use sidekick_actors::ports::{FeedbackJournal, GlobalSettings, ReplyRecord, StoreError};
use std::collections::HashMap;

impl FjallStore {
    /// The pairs as the journal and the governance of now make them.
    pub fn preference_pairs(&self, global: &GlobalSettings) -> Result<Vec<PreferencePair>, StoreError> {
        let mut replies: HashMap<u64, ReplyRecord> = HashMap::new();
        for guard in self.replies.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let Ok(id) = <[u8; 8]>::try_from(&key[..]).map(u64::from_be_bytes) else { continue };
            match serde_json::from_slice(&value) {
                Ok(reply) => {
                    replies.insert(id, reply);
                }
                Err(e) => tracing::warn!(id, error = %e, "skipping an unreadable reply record"),
            }
        }
        let journal = self.feedback_since(0)?.into_iter().map(|(_, event)| event);
        Ok(preference_pairs(&replies, journal, global))
    }
}
