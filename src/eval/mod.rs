//! `sidekick eval`: how close the bot sounds to the server, on the held-out split, for the
//! base model and each adapter asked for: perplexity of the real replies through llama.cpp,
//! and replies generated to the same contexts compared with the real ones (style, length,
//! vocabulary, and how well a classifier tells them apart). A Markdown report with a chart,
//! and the same figures as JSON.

pub mod metrics;
mod report;

use crate::config::Config;
use crate::history::dataset::Example;
use crate::llama::offline::OfflineModel;
use crate::train::data::Dataset;
use serde::{Deserialize, Serialize};
use sidekick_actors::history::windows::Split;
use sidekick_actors::params::GenerationParams;
use std::path::PathBuf;

pub use report::write_report;

/// One model to evaluate: a label and the adapters applied (none: the base model).
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub adapters: Vec<(PathBuf, f32)>,
}

/// The figures of one variant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub label: String,
    pub perplexity: f64,
    /// Mean cosine between the embeddings of generated and real replies to the same context.
    pub style_similarity: f64,
    /// Words per reply.
    pub mean_length: f64,
    pub length_wasserstein: f64,
    pub length_ks: f64,
    pub top500_jaccard: f64,
    pub distinct_2: f64,
    /// Cross-validated AUC of a classifier telling generated from real (0.5: it cannot).
    pub detectability_auc: f64,
    /// Mean log-prob margin of the chosen over the rejected reply of the held-out preference
    /// pairs (what DPO raises); `None` when the dataset has none.
    pub preference_margin: Option<f64>,
    pub lengths: Vec<f64>,
    pub samples: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub examples: usize,
    pub real_mean_length: f64,
    pub real_distinct_2: f64,
    pub real_lengths: Vec<f64>,
    pub variants: Vec<Figures>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Data(#[from] crate::train::data::DataError),
    #[error("the dataset has no held-out examples to evaluate on")]
    NoHeldout,
    #[error("{0}")]
    Engine(String),
    #[error("the embedding model: {0}")]
    Embedder(String),
}

/// What evaluation shows while it writes replies.
pub trait EvalProgress {
    fn start(&mut self, label: &str, total: usize);
    fn one(&mut self);
}

impl EvalProgress for () {
    fn start(&mut self, _: &str, _: usize) {}
    fn one(&mut self) {}
}

pub fn run(config: &Config, variants: &[Variant], progress: &mut dyn EvalProgress) -> Result<Evaluation, EvalError> {
    let sha256 = crate::history::dpo::file_sha256(&config.model.path).map_err(|e| EvalError::Engine(e.to_string()))?;
    let dataset = Dataset::read(&config.storage.path.join("dataset"), &sha256)?;
    let examples = dataset.newest_heldout(config.train.eval_examples).to_vec();
    if examples.is_empty() {
        return Err(EvalError::NoHeldout);
    }
    let real: Vec<String> = examples.iter().map(|e| e.messages.last().map(|t| t.content.clone()).unwrap_or_default()).collect();
    let real_lengths: Vec<f64> = real.iter().map(|r| metrics::words(r).len() as f64).collect();
    let embedder = crate::retrieval::Embedder::open(&config.retrieval).map_err(|e| EvalError::Embedder(e.to_string()))?;
    let embed = |texts: &[String]| -> Result<Vec<Vec<f32>>, EvalError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            let refs: Vec<&str> = chunk.iter().map(|t| if t.trim().is_empty() { "…" } else { t.as_str() }).collect();
            out.extend(embedder.embed(&refs).map_err(|e| EvalError::Embedder(e.to_string()))?);
        }
        Ok(out)
    };
    let real_vectors = embed(&real)?;
    let threads = config.train.threads() as u32;
    let heldout_pairs: Vec<_> = dataset.pairs.iter().filter(|p| p.split == Split::Heldout).cloned().collect();
    let mut figures = Vec::new();
    for variant in variants {
        let perplexity = crate::train::heldout_ppl(&config.model.path, &variant.adapters, &examples, threads as usize)
            .map_err(|e| EvalError::Engine(e.to_string()))?;
        let preference_margin = crate::train::preference_margin(&config.model.path, &variant.adapters, &heldout_pairs, threads as usize)
            .map_err(|e| EvalError::Engine(e.to_string()))?;
        progress.start(&variant.label, examples.len());
        let generated = generate(config, variant, &examples, threads, progress)?;
        let vectors = embed(&generated)?;
        let lengths: Vec<f64> = generated.iter().map(|g| metrics::words(g).len() as f64).collect();
        figures.push(Figures {
            label: variant.label.clone(),
            perplexity,
            style_similarity: metrics::mean_cosine(&vectors, &real_vectors),
            mean_length: metrics::mean(&lengths),
            length_wasserstein: metrics::wasserstein(&lengths, &real_lengths),
            length_ks: metrics::ks(&lengths, &real_lengths),
            top500_jaccard: metrics::top_words_jaccard(&generated, &real, 500),
            distinct_2: metrics::distinct_2(&generated),
            detectability_auc: metrics::detectability_auc(&real_vectors, &vectors, 5),
            preference_margin,
            lengths,
            samples: real.iter().cloned().zip(generated).take(5).collect(),
        });
    }
    Ok(Evaluation {
        examples: examples.len(),
        real_mean_length: metrics::mean(&real_lengths),
        real_distinct_2: metrics::distinct_2(&real),
        real_lengths,
        variants: figures,
    })
}

/// The variant's replies to each example's context, with the serving sampler and a seed per
/// example (the same for every variant).
fn generate(
    config: &Config,
    variant: &Variant,
    examples: &[Example],
    threads: u32,
    progress: &mut dyn EvalProgress,
) -> Result<Vec<String>, EvalError> {
    let engine = |e: sidekick_actors::ports::ModelError| EvalError::Engine(e.to_string());
    let mut model = OfflineModel::open(&config.model.path, &variant.adapters).map_err(engine)?;
    let prompts: Vec<Vec<u32>> =
        examples.iter().map(|e| model.prompt(&e.messages[..e.messages.len() - 1])).collect::<Result<_, _>>().map_err(engine)?;
    let params = GenerationParams { max_tokens: config.generation.max_tokens.min(64), ..config.generation };
    let mut session = model.session(1024, threads).map_err(engine)?;
    let mut out = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        out.push(session.generate(prompt, &params, config.train.seed as u32 ^ i as u32).map_err(engine)?);
        progress.one();
    }
    Ok(out)
}

/// The variants `sidekick eval` compares: the base model, then each adapter file given (or,
/// with none given, the served personality).
pub fn variants(config: &Config, adapters: &[PathBuf]) -> Vec<Variant> {
    let mut out = vec![Variant { label: "base".into(), adapters: Vec::new() }];
    let dir = &config.rl.adapters_dir;
    let chosen: Vec<PathBuf> = if adapters.is_empty() {
        crate::train::personality::PersonalityManifest::read(dir).serving.iter().map(|f| dir.join(f)).collect()
    } else {
        adapters.to_vec()
    };
    for path in chosen {
        let label = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        out.push(Variant { label, adapters: vec![(path, 1.0)] });
    }
    out
}

/// Where the report goes.
pub fn report_dir(config: &Config) -> PathBuf {
    config.storage.path.join("eval")
}
