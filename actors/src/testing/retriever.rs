//! A retriever in memory: messages match a query by the words they share.

use crate::channel_key::ChannelKey;
use crate::context::Hit;
use crate::governance::{Place, Scope};
use crate::ports::{IndexItem, RetrievalError, RetrievalStats, Retriever, RetrieverLoader};
use crate::sync::LockExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct FakeRetriever {
    items: Mutex<Vec<IndexItem>>,
}

impl FakeRetriever {
    /// Everything indexed so far.
    pub fn indexed(&self) -> Vec<IndexItem> {
        self.items.lock_or_recover().clone()
    }
}

fn place(item: &IndexItem) -> Place {
    Place::new(item.channel, item.guild.as_deref().and_then(|g| g.parse().ok()))
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

impl Retriever for FakeRetriever {
    fn index(&self, items: &[IndexItem]) -> Result<(), RetrievalError> {
        self.items.lock_or_recover().extend_from_slice(items);
        Ok(())
    }

    fn query(&self, text: &str, scope: &Scope, k: usize) -> Result<Vec<Hit>, RetrievalError> {
        let asked = words(text);
        let items = self.items.lock_or_recover();
        let mut hits: Vec<Hit> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| scope.admits(&place(item)))
            .map(|(key, item)| {
                let found = words(&item.text);
                let shared = asked.intersection(&found).count() as f32;
                let similarity = shared / asked.union(&found).count().max(1) as f32;
                Hit {
                    key: key as u64,
                    similarity,
                    place: place(item),
                    author: item.author.clone(),
                    user_id: item.user_id.clone(),
                    text: item.text.clone(),
                    from_bot: false,
                }
            })
            .filter(|h| h.similarity > 0.0)
            .collect();
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        hits.truncate(k);
        Ok(hits)
    }

    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, RetrievalError> {
        let mut items = self.items.lock_or_recover();
        let before = items.len();
        items.retain(|i| i.channel != *channel);
        Ok(before - items.len())
    }

    fn purge_user(&self, user_id: &str) -> Result<usize, RetrievalError> {
        let mut items = self.items.lock_or_recover();
        let before = items.len();
        items.retain(|i| i.user_id.as_deref() != Some(user_id));
        Ok(before - items.len())
    }

    fn prune_before(&self, before_ms: u64) -> Result<usize, RetrievalError> {
        let mut items = self.items.lock_or_recover();
        let before = items.len();
        items.retain(|i| i.at_ms >= before_ms);
        Ok(before - items.len())
    }

    fn save(&self) -> Result<(), RetrievalError> {
        Ok(())
    }

    fn stats(&self) -> RetrievalStats {
        RetrievalStats { vectors: self.items.lock_or_recover().len(), ..Default::default() }
    }
}

/// Opens the shared [`FakeRetriever`], or none (`off`: retrieval degraded).
#[derive(Default)]
pub struct FakeRetrieverLoader {
    pub retriever: Arc<FakeRetriever>,
    pub off: bool,
}

impl RetrieverLoader for FakeRetrieverLoader {
    fn load(&self) -> Result<Arc<dyn Retriever>, RetrievalError> {
        if self.off {
            return Err(RetrievalError::Unavailable("off in this test".into()));
        }
        Ok(self.retriever.clone())
    }
}
