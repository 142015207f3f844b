//! `sidekick dataset`: the training set, built from the history deterministically for a seed.
//!
//! Under `<storage.path>/dataset/` (replaced whole, never half-written):
//! - `train.jsonl`, `heldout.jsonl`: one SFT example a line, `{"id", "channel", "weight",
//!   "tokens", "messages": [{"role", "content"}, ...]}`: the system prompt, the messages before
//!   the answer as user turns (`name: text`), the answer as the assistant's turn;
//! - `pairs.jsonl`: one preference pair a line, `{"id", "channel", "split", "signal", "prompt":
//!   [turns], "chosen", "rejected"}`;
//! - `manifest.json`: the seed, the rules, the counts, the source (messages, newest id per
//!   channel, a digest) and the base model's sha256: training compares it to tell whether the
//!   data changed.

use super::dpo::{self, PairModel, RejectedCache};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sidekick_actors::feedback::pairs::PreferencePair;
use sidekick_actors::history::balance;
use sidekick_actors::history::windows::{self, example_turns, Split, WindowRules};
use sidekick_actors::history::HistoryMessage;
use sidekick_actors::ports::GlobalSettings;
use sidekick_actors::prompt::ChatTurn;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("the history is empty: run `sidekick fetch` or `sidekick import <export>` first; nothing was written")]
    Empty,
    #[error("none of the {0} messages kept may be learned from now (allowlist or opt-outs changed); nothing was written")]
    NothingAllowed(usize),
    #[error("no conversation has {0} messages in a row yet, so there is no example to build; nothing was written")]
    TooShort(usize),
    #[error("the model: {0}")]
    Model(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

#[derive(Debug, Clone)]
pub struct DatasetOptions {
    pub seed: u64,
    pub rules: WindowRules,
    pub system_prompt: String,
    /// Build preference pairs (needs the model to write the rejected replies).
    pub pairs: bool,
    pub rejected_tokens: u32,
}

/// One SFT example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The answer's message id.
    pub id: u64,
    pub channel: String,
    pub weight: f64,
    pub tokens: usize,
    pub messages: Vec<ChatTurn>,
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub id: u64,
    pub channel: String,
    pub split: Split,
    /// Reactions on the chosen reply, counted up to 5.
    pub signal: u32,
    pub prompt: Vec<ChatTurn>,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub messages_in: usize,
    /// Kept in the history, but no longer allowed (`!deny` without purge, a later opt-out).
    pub excluded: usize,
    pub channels: usize,
    pub train: usize,
    pub heldout: usize,
    pub pairs: usize,
    /// Preference pairs from the reply journal (a reply written again with 🔁 that then got
    /// a good vote, against the one it replaced).
    #[serde(default)]
    pub feedback_pairs: usize,
    /// Each user's share of the messages and of the weight, largest first.
    pub users: Vec<UserShare>,
    /// Messages by reaction boost: "1.0", "1.05-1.25", "1.3-1.45", "1.5".
    pub boosts: BTreeMap<String, usize>,
    pub train_tokens: usize,
    pub max_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserShare {
    pub user: String,
    pub before: f64,
    pub after: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub seed: u64,
    pub rules: WindowRules,
    pub source: Source,
    pub base_model_sha256: String,
    pub stats: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub messages: usize,
    /// The newest message id per channel: what the data was built up to.
    pub newest: BTreeMap<String, u64>,
    /// sha256 over every message used, in order.
    pub digest: String,
}

pub struct Built {
    pub train: Vec<Example>,
    pub heldout: Vec<Example>,
    pub pairs: Vec<Pair>,
    /// Pairs from the reply journal (🔁 and good votes), in the served model's tokens.
    pub feedback_pairs: Vec<PreferencePair>,
    pub manifest: Manifest,
}

/// Builds the dataset from the history as the rules allow now.
pub fn build(
    history: Vec<HistoryMessage>,
    global: &GlobalSettings,
    options: &DatasetOptions,
    model: &mut dyn PairModel,
    cache: &mut RejectedCache,
) -> Result<Built, DatasetError> {
    if history.is_empty() {
        return Err(DatasetError::Empty);
    }
    let messages_in = history.len();
    // The history was admitted when it was kept; the governance of now decides again.
    let messages: Vec<HistoryMessage> =
        history.into_iter().filter(|m| global.may_keep(&m.channel, Some(&m.author_id.to_string()))).collect();
    if messages.is_empty() {
        return Err(DatasetError::NothingAllowed(messages_in));
    }
    let voices: Vec<(u64, u32)> = messages.iter().map(|m| (m.author_id, m.reaction_count())).collect();
    let weights = balance::weights(&voices);
    let mut stats = Stats { messages_in, excluded: messages_in - messages.len(), ..Stats::default() };
    stats.users = user_shares(&messages, &weights);
    for (_, reactions) in &voices {
        *stats.boosts.entry(boost_bucket(balance::boost(*reactions)).into()).or_default() += 1;
    }
    let (mut train, mut heldout, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
    let mut hasher = Sha256::new();
    let mut newest = BTreeMap::new();
    let mut start = 0;
    while start < messages.len() {
        let channel = messages[start].channel;
        let end = start + messages[start..].iter().take_while(|m| m.channel == channel).count();
        let (these, their_weights) = (&messages[start..end], &weights[start..end]);
        stats.channels += 1;
        newest.insert(channel.to_string(), these.last().map_or(0, |m| m.id));
        for m in these {
            hasher.update(serde_json::to_vec(m).expect("serializable"));
        }
        let seed = options.seed ^ channel.discord_id().unwrap_or_default();
        for window in windows::windows(these, their_weights, &options.rules, seed) {
            let slice = &these[window.messages.clone()];
            let turns = example_turns(&options.system_prompt, slice);
            let tokens = model.tokens(&turns).map_err(DatasetError::Model)?;
            let answer = slice.last().expect("windows are never empty");
            let weight = six_places(window.weight);
            let example = Example { id: answer.id, channel: channel.to_string(), weight, tokens, messages: turns };
            if options.pairs {
                if let Some(pair) = dpo::pair(&example, answer, window.split, options, model, cache)? {
                    pairs.push(pair);
                }
            }
            match window.split {
                Split::Train => train.push(example),
                Split::Heldout => heldout.push(example),
            }
        }
        start = end;
    }
    if train.is_empty() && heldout.is_empty() {
        return Err(DatasetError::TooShort(options.rules.min_messages));
    }
    stats.train = train.len();
    stats.heldout = heldout.len();
    stats.pairs = pairs.len();
    stats.train_tokens = train.iter().map(|e| e.tokens).sum();
    stats.max_tokens = train.iter().chain(&heldout).map(|e| e.tokens).max().unwrap_or(0);
    let source = Source { messages: messages.len(), newest, digest: format!("{:x}", hasher.finalize()) };
    let manifest = Manifest { format: 1, seed: options.seed, rules: options.rules, source, base_model_sha256: model.identity(), stats };
    Ok(Built { train, heldout, pairs, feedback_pairs: Vec::new(), manifest })
}

fn user_shares(messages: &[HistoryMessage], weights: &[f64]) -> Vec<UserShare> {
    let n = messages.len() as f64;
    let mut names: HashMap<u64, &str> = HashMap::new();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for m in messages {
        names.insert(m.author_id, &m.author);
        *counts.entry(m.author_id).or_default() += 1;
    }
    let users: Vec<u64> = messages.iter().map(|m| m.author_id).collect();
    let after = balance::shares(&users, weights);
    let mut out: Vec<UserShare> = counts
        .iter()
        .map(|(u, c)| UserShare { user: names[u].to_string(), before: six_places(*c as f64 / n), after: six_places(after[u]) })
        .collect();
    out.sort_by(|a, b| b.before.total_cmp(&a.before).then(a.user.cmp(&b.user)));
    out
}

/// Six decimals are plenty, and survive a trip through JSON unchanged.
fn six_places(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn boost_bucket(boost: f64) -> &'static str {
    if boost <= 1.0 {
        "1.0"
    } else if boost < 1.275 {
        "1.05-1.25"
    } else if boost < balance::MAX_BOOST {
        "1.3-1.45"
    } else {
        "1.5"
    }
}

/// Writes the dataset to `dir`, replacing what was there only once all of it is written.
pub fn write(built: &Built, dir: &Path) -> Result<(), DatasetError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| DatasetError::Io(p, e)
    };
    let staging = dir.with_extension("new");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    write_lines(&staging.join("train.jsonl"), &built.train).map_err(io(&staging))?;
    write_lines(&staging.join("heldout.jsonl"), &built.heldout).map_err(io(&staging))?;
    write_lines(&staging.join("pairs.jsonl"), &built.pairs).map_err(io(&staging))?;
    write_lines(&staging.join("feedback_pairs.jsonl"), &built.feedback_pairs).map_err(io(&staging))?;
    let manifest = serde_json::to_vec_pretty(&built.manifest).expect("serializable");
    crate::files::write_atomically(&staging.join("manifest.json"), &manifest).map_err(io(&staging))?;
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&staging, dir).map_err(io(dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn write_lines<T: Serialize>(path: &Path, items: &[T]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The statistics as a person reads them.
pub fn show(stats: &Stats) -> String {
    let mut out = format!(
        "messages in: {} ({} no longer allowed, left out), {} channel(s)\nexamples: {} train, {} held out; preference pairs: {} from the history, {} from 🔁 and votes\n",
        stats.messages_in, stats.excluded, stats.channels, stats.train, stats.heldout, stats.pairs, stats.feedback_pairs
    );
    let mean = stats.train_tokens.checked_div(stats.train).unwrap_or(0);
    out.push_str(&format!("tokens: {} in training examples (mean {mean}, longest {})\n", stats.train_tokens, stats.max_tokens));
    let boosts: Vec<String> = stats.boosts.iter().map(|(b, n)| format!("{b}x: {n}")).collect();
    out.push_str(&format!("reaction boost: {}\n", boosts.join(", ")));
    out.push_str(&format!("voices: {} (share of messages -> share of weight)\n", stats.users.len()));
    for u in stats.users.iter().take(8) {
        out.push_str(&format!("  {:<20} {:>5.1}% -> {:>5.1}%\n", u.user, u.before * 100.0, u.after * 100.0));
    }
    out
}

#[cfg(test)]
mod tests;
