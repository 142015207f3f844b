//! The retrieval adapter: fastembed embeddings and a usearch index, with what each vector
//! stands for kept in the fjall store. The index file is a cache of the store: when it is
//! missing, unreadable, or built with another model or dimension, it is rebuilt from the
//! message log.

mod embedder;
mod file;

use crate::config::Config;
use crate::store::{FjallStore, VectorMeta};
pub use embedder::{Embedder, DIMENSIONS};
use sidekick_actors::context::Hit;
use sidekick_actors::governance::{Place, Scope};
use sidekick_actors::metric_names as m;
use sidekick_actors::ports::{IndexItem, RetrievalError, RetrievalStats, Retriever, RetrieverLoader};
use sidekick_actors::sync::LockExt;
use sidekick_actors::ChannelKey;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// bf16 halves the memory of f32 at no measurable loss of recall for these embeddings, and
/// unlike f16 it needs no SIMD kernels (which take minutes to build) to search fast.
pub const SCALAR: ScalarKind = ScalarKind::BF16;
/// Searches and additions that may run at once (usearch needs a slot for each).
const THREADS: usize = 16;
/// Messages embedded at once while rebuilding.
const REBUILD_BATCH: usize = 64;
/// Messages read from the store at once while rebuilding: sorted by length within a window
/// (batches pad to their longest text, so similar lengths together embed about twice as
/// fast) without holding the whole log in memory.
const REBUILD_WINDOW: usize = 4096;

fn index_error(e: impl std::fmt::Display) -> RetrievalError {
    RetrievalError::Index(e.to_string())
}

pub struct Loader {
    config: crate::config::RetrievalConfig,
    index_path: PathBuf,
    store: Arc<FjallStore>,
}

impl Loader {
    pub fn new(config: &Config, store: Arc<FjallStore>) -> Loader {
        Loader { config: config.retrieval.clone(), index_path: config.retrieval.index_file(&config.storage.path), store }
    }
}

impl RetrieverLoader for Loader {
    fn load(&self) -> Result<Arc<dyn Retriever>, RetrievalError> {
        if !self.config.enabled {
            return Err(RetrievalError::Unavailable("turned off (retrieval.enabled = false)".into()));
        }
        let embedder = Embedder::open(&self.config)?;
        Ok(Arc::new(LocalRetriever::open(embedder, self.index_path.clone(), self.store.clone())?))
    }
}

pub struct LocalRetriever {
    embedder: Embedder,
    index: Mutex<Index>,
    /// Where each vector's message was said, for filtering searches by scope.
    places: Mutex<HashMap<u64, Place>>,
    path: PathBuf,
    store: Arc<FjallStore>,
    rebuilds: AtomicU64,
}

/// An empty index as Sidekick builds them: 384 dimensions, cosine, bf16.
pub fn new_index() -> Result<Index, RetrievalError> {
    let options = IndexOptions { dimensions: DIMENSIONS, metric: MetricKind::Cos, quantization: SCALAR, ..Default::default() };
    let index = Index::new(&options).map_err(index_error)?;
    index.reserve_capacity_and_threads(1024, THREADS).map_err(index_error)?;
    Ok(index)
}

impl LocalRetriever {
    fn manifest(&self) -> file::Manifest {
        file::Manifest {
            model: self.embedder.model_id.clone(),
            dimensions: DIMENSIONS,
            scalar: format!("{SCALAR:?}"),
            length: None,
            sha256: None,
        }
    }

    pub fn open(embedder: Embedder, path: PathBuf, store: Arc<FjallStore>) -> Result<LocalRetriever, RetrievalError> {
        let places = Mutex::new(HashMap::new());
        let retriever = LocalRetriever { embedder, index: Mutex::new(new_index()?), places, path, store, rebuilds: AtomicU64::new(0) };
        match retriever.load_saved() {
            Ok(index) => {
                *retriever.index.lock_or_recover() = index;
                retriever.catch_up()?;
            }
            Err(why) => {
                if retriever.path.exists() || retriever.store.vector_entries().next().is_some() {
                    tracing::warn!(index = %retriever.path.display(), %why, "rebuilding the vector index from the store");
                }
                retriever.rebuild()?;
            }
        }
        *retriever.places.lock_or_recover() = retriever.store.vector_entries().filter_map(|(k, m)| Some((k, m.place()?))).collect();
        Ok(retriever)
    }

    /// The saved index, if it is readable and was built like this one would be.
    fn load_saved(&self) -> Result<Index, String> {
        let manifest = file::read_manifest(&self.path)?;
        if !manifest.built_like(&self.manifest()) {
            return Err(format!(
                "built with {} ({} dimensions, {}), not {}",
                manifest.model, manifest.dimensions, manifest.scalar, self.embedder.model_id
            ));
        }
        let index = new_index().map_err(|e| e.to_string())?;
        file::load(&index, &self.path, &manifest)?;
        if index.dimensions() != DIMENSIONS {
            return Err(format!("loaded {} dimensions", index.dimensions()));
        }
        // Loading resets the capacity and search slots.
        index.reserve_capacity_and_threads(index.size() + 1024, THREADS).map_err(|e| e.to_string())?;
        Ok(index)
    }

    /// Adds what the store has and the saved index lacks: vectors written since the last save,
    /// and stored messages never embedded (the process ended between storing and embedding).
    fn catch_up(&self) -> Result<(), RetrievalError> {
        let missing: Vec<(u64, VectorMeta)> = {
            let index = self.index.lock_or_recover();
            self.store.vector_entries().filter(|(key, _)| !index.contains(*key)).collect()
        };
        for chunk in missing.chunks(REBUILD_BATCH) {
            let texts: Vec<&str> = chunk.iter().map(|(_, m)| m.text.as_str()).collect();
            let vectors = self.embedder.embed(&texts)?;
            self.add(chunk.iter().map(|(k, _)| *k).zip(vectors))?;
        }
        let waiting: Vec<IndexItem> = self
            .store
            .unindexed_messages()
            .map_err(index_error)?
            .into_iter()
            .map(|(channel, seq, m)| item_of(channel, Some(seq), m))
            .collect();
        for chunk in waiting.chunks(REBUILD_BATCH) {
            self.index(chunk)?;
        }
        if !missing.is_empty() || !waiting.is_empty() {
            tracing::info!(vectors = missing.len(), messages = waiting.len(), "vector index caught up with the store");
        }
        Ok(())
    }

    /// Re-embeds every stored user message into a fresh index, showing progress on stderr.
    /// The log is read in windows, so a rebuild of months holds one window in memory.
    fn rebuild(&self) -> Result<(), RetrievalError> {
        metrics::counter!(m::INDEX_REBUILDS).increment(1);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        *self.index.lock_or_recover() = new_index()?;
        self.store.clear_vector_meta().map_err(index_error)?;
        self.store.clear_unindexed().map_err(index_error)?;
        let mut progress = Progress::new(self.store.approximate_message_count());
        let mut messages = self.store.user_messages().peekable();
        while messages.peek().is_some() {
            let mut window: Vec<IndexItem> = messages.by_ref().take(REBUILD_WINDOW).map(|(c, m)| item_of(c, None, m)).collect();
            window.sort_by_key(|item| item.text.len());
            for chunk in window.chunks(REBUILD_BATCH) {
                self.index(chunk)?;
                progress.advance(chunk.len());
            }
        }
        progress.finish();
        self.save()
    }

    /// Removes the vectors whose metadata `matches` from the index and the store.
    fn remove(&self, matches: impl Fn(&VectorMeta) -> bool) -> Result<usize, RetrievalError> {
        let keys: Vec<u64> = self.store.vector_entries().filter(|(_, m)| matches(m)).map(|(k, _)| k).collect();
        {
            let index = self.index.lock_or_recover();
            let mut places = self.places.lock_or_recover();
            for key in &keys {
                index.remove(*key).map_err(index_error)?;
                places.remove(key);
            }
        }
        self.store.remove_vector_meta(&keys).map_err(index_error)?;
        Ok(keys.len())
    }

    fn add(&self, vectors: impl Iterator<Item = (u64, Vec<f32>)>) -> Result<(), RetrievalError> {
        let index = self.index.lock_or_recover();
        for (key, vector) in vectors {
            if index.size() + 1 > index.capacity() {
                index.reserve_capacity_and_threads((index.capacity() * 2).max(1024), THREADS).map_err(index_error)?;
            }
            index.add(key, &vector).map_err(index_error)?;
        }
        Ok(())
    }
}

impl Retriever for LocalRetriever {
    fn index(&self, items: &[IndexItem]) -> Result<(), RetrievalError> {
        if items.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
        let vectors = self.embedder.embed(&texts)?;
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            let key = self.store.next_vector_key().map_err(index_error)?;
            let meta = VectorMeta {
                channel: item.channel.to_string(),
                guild: item.guild.clone(),
                author: item.author.clone(),
                text: item.text.clone(),
                at_ms: item.at_ms,
                user_id: item.user_id.clone(),
                parent: match item.channel {
                    ChannelKey::Thread { parent, .. } => parent,
                    _ => None,
                },
            };
            entries.push((key, meta));
        }
        let embedded: Vec<(ChannelKey, u64)> = items.iter().filter_map(|i| Some((i.channel, i.seq?))).collect();
        self.store.put_vector_meta(&entries, &embedded).map_err(index_error)?;
        self.places.lock_or_recover().extend(entries.iter().filter_map(|(k, m)| Some((*k, m.place()?))));
        self.add(entries.iter().map(|(k, _)| *k).zip(vectors))
    }

    fn query(&self, text: &str, scope: &Scope, k: usize) -> Result<Vec<Hit>, RetrievalError> {
        let vector = self.embedder.embed(&[text])?.remove(0);
        let found = {
            let index = self.index.lock_or_recover();
            if index.size() == 0 {
                return Ok(Vec::new());
            }
            // Only what the scope admits is searched, so a conversation's k best come from
            // where it may look, however much else there is.
            let places = self.places.lock_or_recover();
            index.filtered_search(&vector, k, |key| places.get(&key).is_some_and(|p| scope.admits(p))).map_err(index_error)?
        };
        let mut hits = Vec::with_capacity(found.keys.len());
        for (key, distance) in found.keys.iter().zip(&found.distances) {
            let Some(meta) = self.store.vector_meta(*key).map_err(index_error)? else { continue };
            let Some(place) = meta.place() else { continue };
            hits.push(Hit {
                key: *key,
                similarity: 1.0 - distance,
                place,
                author: meta.author,
                user_id: meta.user_id,
                text: meta.text,
                from_bot: false,
            });
        }
        Ok(hits)
    }

    fn purge_channel(&self, channel: &ChannelKey) -> Result<usize, RetrievalError> {
        let name = channel.to_string();
        self.remove(|m| m.channel == name)
    }

    fn purge_user(&self, user_id: &str) -> Result<usize, RetrievalError> {
        self.remove(|m| m.user_id.as_deref() == Some(user_id))
    }

    fn prune_before(&self, before_ms: u64) -> Result<usize, RetrievalError> {
        self.remove(|m| m.at_ms < before_ms)
    }

    fn save(&self) -> Result<(), RetrievalError> {
        // usearch writes the live index to the file under the lock (no copy of it in memory);
        // the lock is let go before the file is synced and checksummed.
        file::save(&self.path, self.manifest(), |tmp| self.index.lock_or_recover().save(tmp).map_err(|e| e.to_string()))
            .map_err(index_error)
    }

    fn stats(&self) -> RetrievalStats {
        let index = self.index.lock_or_recover();
        RetrievalStats {
            vectors: index.size(),
            bytes: index.memory_usage() as u64,
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            degraded: None,
        }
    }
}

/// A stored message as the index takes it.
fn item_of(channel: ChannelKey, seq: Option<u64>, m: sidekick_actors::ports::StoredMessage) -> IndexItem {
    IndexItem { channel, user_id: m.user_id, guild: m.guild, author: m.author, text: m.content, at_ms: m.at_ms, seq }
}

/// A progress bar on stderr (a line per tenth when stderr is not a terminal).
struct Progress {
    total: usize,
    done: usize,
    shown_tenths: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress { total, done: 0, shown_tenths: 0, tty: std::io::stderr().is_terminal() }
    }

    fn advance(&mut self, n: usize) {
        self.done += n;
        // The total is an estimate (bot messages count in it too).
        self.total = self.total.max(self.done);
        let tenths = self.done * 10 / self.total.max(1);
        if self.tty {
            let filled = self.done * 30 / self.total.max(1);
            eprint!("\rrebuilding the vector index [{}{}] {}/{}", "#".repeat(filled), " ".repeat(30 - filled), self.done, self.total);
            let _ = std::io::stderr().flush();
        } else if tenths > self.shown_tenths {
            self.shown_tenths = tenths;
            eprintln!("rebuilding the vector index: {}/{} messages", self.done, self.total);
        }
    }

    fn finish(&self) {
        if self.tty && self.total > 0 {
            eprintln!();
        }
    }
}
