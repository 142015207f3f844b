//! Preference pairs (seed 003): from channels the bot may learn from, a human reply with
//! reactions (counted up to 5) and at least 4 tokens is *chosen*; *rejected* is what the base
//! model says to the same context, written by the served engine (llama.cpp) and cached, so a
//! second build costs nothing and gives the same pairs.

use super::dataset::{DatasetError, DatasetOptions, Example, Pair};
use sha2::{Digest, Sha256};
use sidekick_actors::history::windows::Split;
use sidekick_actors::history::HistoryMessage;
use sidekick_actors::params::GenerationParams;
use sidekick_actors::ports::{CancelFlag, GenEvent, GenerationJob, LanguageModel};
use sidekick_actors::prompt::{ChatTurn, Role};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reactions beyond this count no more.
pub const MAX_SIGNAL: u32 = 5;
/// A chosen reply shorter than this says too little to prefer.
pub const MIN_CHOSEN_TOKENS: usize = 4;

/// What the dataset asks of the model.
pub trait PairModel {
    /// Tokens of these turns as the chat template writes them.
    fn tokens(&mut self, turns: &[ChatTurn]) -> Result<usize, String>;
    /// The base model's reply to `turns`.
    fn reply(&mut self, turns: &[ChatTurn], seed: u32, max_tokens: u32) -> Result<String, String>;
    /// What identifies the model (its file's sha256).
    fn identity(&self) -> String;
}

/// The pair an example makes, if its answer qualifies.
pub fn pair(
    example: &Example,
    answer: &HistoryMessage,
    split: Split,
    options: &DatasetOptions,
    model: &mut dyn PairModel,
    cache: &mut RejectedCache,
) -> Result<Option<Pair>, DatasetError> {
    let reactions = answer.reaction_count();
    if reactions == 0 {
        return Ok(None);
    }
    let tokens = text_tokens(model, &answer.content)?;
    if tokens < MIN_CHOSEN_TOKENS {
        return Ok(None);
    }
    let prompt = example.messages[..example.messages.len() - 1].to_vec();
    let seed = (options.seed ^ answer.id) as u32;
    let key = cache_key(&model.identity(), &prompt, seed, options.rejected_tokens);
    let rejected = match cache.get(&key) {
        Some(text) => text,
        None => {
            let text = model.reply(&prompt, seed, options.rejected_tokens).map_err(DatasetError::Model)?;
            cache.put(key, &text).map_err(|e| DatasetError::Io(cache.path.clone(), e))?;
            text
        }
    };
    Ok(Some(Pair {
        id: answer.id,
        channel: example.channel.clone(),
        split,
        signal: reactions.min(MAX_SIGNAL),
        prompt,
        chosen: answer.content.clone(),
        rejected,
    }))
}

/// Tokens of a text alone: the template's turn with it, less the template's empty turn.
fn text_tokens(model: &mut dyn PairModel, text: &str) -> Result<usize, DatasetError> {
    let with = model.tokens(&[ChatTurn::new(Role::Assistant, text)]).map_err(DatasetError::Model)?;
    let without = model.tokens(&[ChatTurn::new(Role::Assistant, "")]).map_err(DatasetError::Model)?;
    Ok(with.saturating_sub(without))
}

fn cache_key(model: &str, prompt: &[ChatTurn], seed: u32, max_tokens: u32) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update(serde_json::to_vec(prompt).expect("serializable"));
    h.update(seed.to_le_bytes());
    h.update(max_tokens.to_le_bytes());
    format!("{:x}", h.finalize())
}

/// Rejected replies already written, one JSON line each, appended as they are made so an
/// interrupted build keeps its work.
pub struct RejectedCache {
    path: PathBuf,
    known: HashMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheLine {
    key: String,
    text: String,
}

impl RejectedCache {
    pub fn open(path: &Path) -> RejectedCache {
        let known = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            // A line cut short by a crash is simply written again.
            .filter_map(|l| serde_json::from_str::<CacheLine>(l).ok())
            .map(|l| (l.key, l.text))
            .collect();
        RejectedCache { path: path.to_path_buf(), known }
    }

    fn get(&self, key: &str) -> Option<String> {
        self.known.get(key).cloned()
    }

    fn put(&mut self, key: String, text: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut line = serde_json::to_vec(&CacheLine { key: key.clone(), text: text.to_string() }).expect("serializable");
        line.push(b'\n');
        file.write_all(&line)?;
        self.known.insert(key, text.to_string());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The served engine, driven from a blocking thread.
pub struct EnginePairModel {
    pub engine: Arc<dyn LanguageModel>,
    pub params: GenerationParams,
    pub sha256: String,
    /// What each turn adds to a prompt after the same system turn: examples share most of
    /// their turns, and a prompt's tokens are its turns' (the template is tokenized piece by
    /// piece), so each turn is tokenized once.
    turn_costs: HashMap<(Option<ChatTurn>, ChatTurn), usize>,
}

impl EnginePairModel {
    pub fn new(engine: Arc<dyn LanguageModel>, params: GenerationParams, sha256: String) -> Self {
        Self { engine, params, sha256, turn_costs: HashMap::new() }
    }

    fn measure(&self, turns: Vec<ChatTurn>) -> Result<usize, String> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.engine.measure(turns, done);
        answer.blocking_recv().map_err(|_| "the engine stopped".to_string())?.map_err(|e| e.to_string())
    }

    /// A turn's tokens after `system` (the template may add a default system turn of its own
    /// when there is none, so the difference is taken against the same start).
    fn cost(&mut self, system: &Option<ChatTurn>, turn: &ChatTurn) -> Result<usize, String> {
        let key = (system.clone(), turn.clone());
        if let Some(cost) = self.turn_costs.get(&key) {
            return Ok(*cost);
        }
        let start: Vec<ChatTurn> = system.iter().cloned().collect();
        let base = self.base(system)?;
        let cost = self.measure(start.into_iter().chain([turn.clone()]).collect())?.saturating_sub(base);
        self.turn_costs.insert(key, cost);
        Ok(cost)
    }

    fn base(&mut self, system: &Option<ChatTurn>) -> Result<usize, String> {
        let key = (None, system.clone().unwrap_or_else(|| ChatTurn::new(Role::System, "")));
        if let Some(base) = self.turn_costs.get(&key) {
            return Ok(*base);
        }
        let base = self.measure(system.iter().cloned().collect())?;
        self.turn_costs.insert(key, base);
        Ok(base)
    }
}

impl PairModel for EnginePairModel {
    fn tokens(&mut self, turns: &[ChatTurn]) -> Result<usize, String> {
        let (system, rest) = match turns.split_first() {
            Some((first, rest)) if first.role == Role::System => (Some(first.clone()), rest),
            _ => (None, turns),
        };
        let mut total = self.base(&system)?;
        for turn in rest {
            total += self.cost(&system, turn)?;
        }
        Ok(total)
    }

    fn reply(&mut self, turns: &[ChatTurn], seed: u32, max_tokens: u32) -> Result<String, String> {
        let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let params = GenerationParams { max_tokens, ..self.params };
        let job = GenerationJob { slot: "dataset".into(), turns: turns.to_vec(), params, seed, events, cancel: CancelFlag::default() };
        self.engine.submit(job).map_err(|e| e.to_string())?;
        let mut text = String::new();
        while let Some(event) = heard.blocking_recv() {
            match event {
                GenEvent::Token(t) => text.push_str(&t),
                GenEvent::Finished { .. } => return Ok(text.trim().to_string()),
                GenEvent::Failed(e) => return Err(e.to_string()),
                GenEvent::Started { .. } => {}
            }
        }
        Err("the engine stopped".into())
    }

    fn identity(&self) -> String {
        self.sha256.clone()
    }
}

/// A file's sha256, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}
