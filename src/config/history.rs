//! The sections for learning a server's voice: `[dataset]` (how the history becomes examples)
//! and `[train]` (how the personality adapter is trained and gated).

use super::{refuse, ConfigError};
use serde::{Deserialize, Serialize};

/// `sidekick dataset`: how the history becomes training examples.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// A silence longer than this starts a new conversation.
    pub session_gap_minutes: u64,
    /// Fewest and most messages in an example (the last is the answer).
    pub min_messages: usize,
    pub max_messages: usize,
    /// The newest share of each channel held out for evaluation.
    pub heldout_fraction: f64,
    /// The dataset is the same for the same seed and history.
    pub seed: u64,
    /// The longest rejected reply the model writes for a preference pair.
    pub rejected_max_tokens: u32,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        let w = sidekick_actors::history::windows::WindowRules::default();
        Self {
            session_gap_minutes: w.session_gap_minutes,
            min_messages: w.min_messages,
            max_messages: w.max_messages,
            heldout_fraction: w.heldout_fraction,
            seed: 0,
            rejected_max_tokens: 64,
        }
    }
}

impl DatasetConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=self.max_messages).contains(&self.min_messages) || self.max_messages > 64 {
            return Err(refuse(format!(
                "dataset.min_messages must be at least 2 and at most dataset.max_messages (at most 64), got {} and {}",
                self.min_messages, self.max_messages
            )));
        }
        if !(0.0..0.9).contains(&self.heldout_fraction) {
            return Err(refuse(format!("dataset.heldout_fraction must be at least 0 and under 0.9, got {}", self.heldout_fraction)));
        }
        if self.session_gap_minutes == 0 || !(1..=1024).contains(&self.rejected_max_tokens) {
            return Err(refuse("dataset.session_gap_minutes must be at least 1 and dataset.rejected_max_tokens 1-1024"));
        }
        Ok(())
    }

    pub fn windows(&self) -> sidekick_actors::history::windows::WindowRules {
        sidekick_actors::history::windows::WindowRules {
            min_messages: self.min_messages,
            max_messages: self.max_messages,
            session_gap_minutes: self.session_gap_minutes,
            heldout_fraction: self.heldout_fraction,
        }
    }
}

/// `sidekick train` and `!train`: LoRA on the projections below, SFT then DPO.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub rank: usize,
    pub alpha: f32,
    /// The projections adapted, by their GGUF names.
    pub targets: Vec<String>,
    /// SFT's peak learning rate (cosine schedule after `warmup_steps`).
    pub learning_rate: f32,
    pub warmup_steps: u64,
    /// SFT optimizer steps; each accumulates the gradients of `batch_size` examples.
    pub steps: u64,
    pub batch_size: usize,
    /// Prompt + reply tokens trained on; prompts are cut from the left.
    pub max_tokens: usize,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    /// DPO: strength of the preference, learning rate, and passes over the pairs.
    pub dpo_beta: f32,
    pub dpo_learning_rate: f32,
    pub dpo_epochs: u32,
    /// CPU threads; 0 means every core (`!train` in the daemon uses one).
    pub threads: usize,
    /// A checkpoint every this many steps: a killed run resumes from the last one.
    pub checkpoint_every: u64,
    /// A new adapter is served only if its held-out perplexity is at most this much above
    /// the served one's (0.05 = 5 %).
    pub max_ppl_rise: f64,
    /// Held-out examples the gate and `sidekick eval` score (the newest).
    pub eval_examples: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            targets: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map(String::from).to_vec(),
            learning_rate: 1e-3,
            warmup_steps: 5,
            steps: 50,
            batch_size: 8,
            max_tokens: 160,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            dpo_beta: 0.1,
            dpo_learning_rate: 1e-4,
            dpo_epochs: 2,
            threads: 0,
            checkpoint_every: 10,
            max_ppl_rise: 0.05,
            eval_examples: 200,
            seed: 0,
        }
    }
}

impl TrainConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=256).contains(&self.rank) || self.alpha.is_nan() || self.alpha <= 0.0 {
            return Err(refuse(format!("train.rank must be 1-256 and train.alpha above 0, got {} and {}", self.rank, self.alpha)));
        }
        if let Some(t) = self.targets.iter().find(|t| sidekick_trainer::Target::from_gguf_name(t).is_none()) {
            return Err(refuse(format!(
                "train.targets: {t:?} is not a projection (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down)"
            )));
        }
        if self.targets.is_empty() || self.steps == 0 || self.batch_size == 0 || self.checkpoint_every == 0 {
            return Err(refuse("train.targets, train.steps, train.batch_size and train.checkpoint_every must not be empty or 0"));
        }
        if !(16..=4096).contains(&self.max_tokens) {
            return Err(refuse(format!("train.max_tokens must be between 16 and 4096, got {}", self.max_tokens)));
        }
        let rate = |r: f32| r.is_finite() && r > 0.0 && r < 1.0;
        if !rate(self.learning_rate) || !rate(self.dpo_learning_rate) || self.dpo_beta.is_nan() || self.dpo_beta <= 0.0 {
            return Err(refuse("train.learning_rate and train.dpo_learning_rate must be in (0, 1), train.dpo_beta above 0"));
        }
        if !(0.0..=1.0).contains(&self.max_ppl_rise) || self.eval_examples == 0 {
            return Err(refuse("train.max_ppl_rise must be between 0 and 1, train.eval_examples at least 1"));
        }
        Ok(())
    }

    pub fn targets(&self) -> Vec<sidekick_trainer::Target> {
        self.targets.iter().filter_map(|t| sidekick_trainer::Target::from_gguf_name(t)).collect()
    }

    /// Threads for a standalone run: the configured count, or every core.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
