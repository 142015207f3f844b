//! The dataset as the trainer reads it: checked against the model it was built for, tokenized
//! with the served model's tokenizer and chat template, in a seeded order that a resumed run
//! recomputes exactly.

use crate::history::dataset::{Example as DatasetExample, Manifest, Pair};
use crate::llama::offline::OfflineModel;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sidekick_actors::feedback::pairs::PreferencePair;
use sidekick_actors::prompt::{ChatTurn, Role};
use sidekick_trainer::{Example, Preference};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no dataset in {0}: run `sidekick dataset` first (after `sidekick fetch` or `sidekick import`)")]
    Missing(PathBuf),
    #[error(
        "the dataset was built for another base model (sha256 {built:.12}…, this model is {model:.12}…): run `sidekick dataset` again"
    )]
    OtherModel { built: String, model: String },
    #[error("{0}: unreadable ({1}); run `sidekick dataset` again")]
    Unreadable(PathBuf, String),
    #[error("the dataset has no training examples")]
    Empty,
    #[error("tokenizing: {0}")]
    Tokenize(String),
}

/// The dataset files, read.
pub struct Dataset {
    pub manifest: Manifest,
    pub train: Vec<DatasetExample>,
    pub heldout: Vec<DatasetExample>,
    pub pairs: Vec<Pair>,
    /// Pairs from the reply journal, already in tokens (absent in older datasets).
    pub feedback_pairs: Vec<PreferencePair>,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Unreadable(path.to_path_buf(), e.to_string()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| DataError::Unreadable(path.to_path_buf(), e.to_string())))
        .collect()
}

impl Dataset {
    /// Reads `dir`, refusing a dataset built for a model other than `model_sha256`.
    pub fn read(dir: &Path, model_sha256: &str) -> Result<Dataset, DataError> {
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.is_file() {
            return Err(DataError::Missing(dir.to_path_buf()));
        }
        let bytes = std::fs::read(&manifest_path).map_err(|e| DataError::Unreadable(manifest_path.clone(), e.to_string()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| DataError::Unreadable(manifest_path.clone(), e.to_string()))?;
        if manifest.base_model_sha256 != model_sha256 {
            return Err(DataError::OtherModel { built: manifest.base_model_sha256.clone(), model: model_sha256.to_string() });
        }
        let dataset = Dataset {
            train: read_lines(&dir.join("train.jsonl"))?,
            heldout: read_lines(&dir.join("heldout.jsonl"))?,
            pairs: read_lines(&dir.join("pairs.jsonl"))?,
            feedback_pairs: match dir.join("feedback_pairs.jsonl") {
                path if path.is_file() => read_lines(&path)?,
                _ => Vec::new(),
            },
            manifest,
        };
        if dataset.train.is_empty() {
            return Err(DataError::Empty);
        }
        Ok(dataset)
    }

    /// The newest `n` held-out examples (the evaluation's and the gate's).
    pub fn newest_heldout(&self, n: usize) -> &[DatasetExample] {
        &self.heldout[self.heldout.len().saturating_sub(n)..]
    }
}

/// Tokens of an example's prompt and reply.
pub fn tokenize(model: &OfflineModel, turns: &[ChatTurn]) -> Result<(Vec<u32>, Vec<u32>), DataError> {
    model.prompt_and_reply(turns).map_err(|e| DataError::Tokenize(e.to_string()))
}

pub fn sft_examples(model: &OfflineModel, examples: &[DatasetExample]) -> Result<Vec<Example>, DataError> {
    examples
        .iter()
        .map(|e| {
            let (prompt, reply) = tokenize(model, &e.messages)?;
            Ok(Example { prompt, reply, weight: e.weight as f32 })
        })
        .collect()
}

/// Preference pairs with no reference yet (filled in after SFT).
pub fn preferences(model: &OfflineModel, pairs: &[Pair]) -> Result<Vec<Preference>, DataError> {
    pairs
        .iter()
        .map(|p| {
            let with = |reply: &str| {
                let mut turns = p.prompt.clone();
                turns.push(ChatTurn::new(Role::Assistant, reply));
                tokenize(model, &turns)
            };
            let (prompt, chosen) = with(&p.chosen)?;
            let (_, rejected) = with(&p.rejected)?;
            Ok(Preference { prompt, chosen, rejected, reference_chosen: 0.0, reference_rejected: 0.0, weight: p.signal.max(1) as f32 })
        })
        .collect()
}

/// The journal's pairs: the exact tokens the model read and wrote, weighted by their good votes.
pub fn feedback_preferences(pairs: &[PreferencePair]) -> Vec<Preference> {
    pairs
        .iter()
        .map(|p| Preference {
            prompt: p.prompt.clone(),
            chosen: p.chosen.clone(),
            rejected: p.rejected.clone(),
            reference_chosen: 0.0,
            reference_rejected: 0.0,
            weight: p.voters.max(1) as f32,
        })
        .collect()
}

/// The examples of step `step` (0-based): epochs of seeded permutations, `batch` at a time.
/// A function of its arguments alone, so a resumed run takes the same batches.
pub fn batch_indices(n: usize, batch: usize, step: u64, seed: u64) -> Vec<usize> {
    let first = step as usize * batch;
    let mut out = Vec::with_capacity(batch);
    let mut epoch = first / n;
    let mut order = permutation(n, seed, epoch);
    for k in first..first + batch {
        if k / n != epoch {
            epoch = k / n;
            order = permutation(n, seed, epoch);
        }
        out.push(order[k % n]);
    }
    out
}

fn permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order
}

#[cfg(test)]
mod tests {
    use super::batch_indices;

    #[test]
    fn batches_cover_each_epoch_once_and_are_the_same_when_asked_again() {
        let steps: Vec<Vec<usize>> = (0..5).map(|s| batch_indices(10, 4, s, 3)).collect();
        let first_epoch: std::collections::BTreeSet<usize> = steps.concat()[..10].iter().copied().collect();
        assert_eq!(first_epoch.len(), 10, "every example once per epoch");
        assert_eq!(steps[3], batch_indices(10, 4, 3, 3), "a resumed run takes the same batch");
        assert_ne!(batch_indices(10, 4, 0, 3), batch_indices(10, 4, 0, 4), "another seed, another order");
    }
}
