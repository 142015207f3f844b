//! `sidekick train`: the personality adapter, SFT then DPO on the dataset, on this machine's
//! CPU, with `sidekick-trainer` (the same trainer as feedback learning). Checkpoints let a
//! killed run resume with the same result; the finished adapter is served only if it passes
//! the gate ([`personality::gate`]).

pub mod commands;
pub mod data;
pub mod personality;
mod progress;
pub(crate) mod resources;

use crate::config::Config;
use crate::llama::offline::OfflineModel;
use data::{batch_indices, DataError, Dataset};
use personality::{PersonalityManifest, PersonalityVersion};
pub use progress::{Progress, TrainBar, TrainLog};
use serde::{Deserialize, Serialize};
use sidekick_trainer::{cosine_learning_rate, BaseModel, LoraConfig, Preference, TrainError, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainFailure {
    #[error("{0}")]
    Data(#[from] DataError),
    #[error("the model cannot be trained here: {0}")]
    Model(String),
    #[error("{0}")]
    Memory(String),
    #[error("training: {0}")]
    Trainer(#[from] TrainError),
    #[error("llama.cpp: {0}")]
    Engine(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl TrainFailure {
    /// Input the user can fix (no dataset, another model, too little memory): exit 2.
    pub fn is_input(&self) -> bool {
        matches!(self, TrainFailure::Data(_) | TrainFailure::Model(_) | TrainFailure::Memory(_))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainFailure + '_ {
    move |e| TrainFailure::Io(path.to_path_buf(), e)
}

/// Where a run keeps its checkpoint, until it ends.
const RUN_DIR: &str = "personality-run";

/// What a checkpoint belongs to, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    dataset_digest: String,
    settings: serde_json::Value,
    /// SFT steps done, then DPO steps done.
    sft_done: u64,
    dpo_done: u64,
    last_loss: f32,
    seconds: f64,
}

/// What a finished run made.
#[derive(Debug, Clone)]
pub struct Trained {
    pub version: PersonalityVersion,
    pub path: PathBuf,
    pub resumed_at: Option<(u64, u64)>,
}

fn lora(config: &Config, threads: usize) -> LoraConfig {
    let t = &config.train;
    LoraConfig {
        rank: t.rank,
        alpha: t.alpha,
        targets: t.targets(),
        learning_rate: t.learning_rate,
        weight_decay: t.weight_decay,
        max_grad_norm: t.max_grad_norm,
        max_tokens: t.max_tokens,
        threads,
        ..LoraConfig::default()
    }
}

/// Trains a personality adapter from `<storage.path>/dataset/` and gates it.
pub fn run(config: &Config, threads: usize, progress: &mut dyn Progress) -> Result<Trained, TrainFailure> {
    let started = Instant::now();
    let model_path = &config.model.path;
    let sha256 = crate::history::dpo::file_sha256(model_path).map_err(io(model_path))?;
    // What the user can fix is checked before anything heavy is loaded.
    let unsupported = |e: TrainError| match e {
        TrainError::UnsupportedArchitecture(_)
        | TrainError::MissingMetadata(_)
        | TrainError::MissingTensor(_)
        | TrainError::NotGguf { .. } => TrainFailure::Model(e.to_string()),
        e => e.into(),
    };
    let shape = sidekick_trainer::model_config(model_path).map_err(unsupported)?;
    resources::check_memory(&shape, config.train.max_tokens).map_err(TrainFailure::Memory)?;
    let dataset = Dataset::read(&config.storage.path.join("dataset"), &sha256)?;
    let base = Arc::new(BaseModel::load(model_path).map_err(unsupported)?);
    let tokenizer = OfflineModel::open(model_path, &[]).map_err(|e| TrainFailure::Engine(e.to_string()))?;
    let examples = data::sft_examples(&tokenizer, &dataset.train)?;
    let mut preferences = data::preferences(
        &tokenizer,
        &dataset.pairs.iter().filter(|p| p.split == sidekick_actors::history::windows::Split::Train).cloned().collect::<Vec<_>>(),
    )?;
    preferences.extend(data::feedback_preferences(&dataset.feedback_pairs));
    drop(tokenizer);

    let dir = config.rl.adapters_dir.clone();
    let run_dir = dir.join(RUN_DIR);
    std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;
    let cfg = lora(config, threads);
    let settings = serde_json::to_value(&config.train).expect("serializable");
    let t = &config.train;
    let dpo_steps = if preferences.is_empty() { 0 } else { (preferences.len().div_ceil(t.batch_size) as u64) * u64::from(t.dpo_epochs) };
    let fresh = RunState {
        dataset_digest: dataset.manifest.source.digest.clone(),
        settings,
        sft_done: 0,
        dpo_done: 0,
        last_loss: f32::NAN,
        seconds: 0.0,
    };
    let (mut trainer, mut state, resumed_at) = resume_or_start(&run_dir, &fresh, &base, &cfg, t.seed)?;
    progress.start(t.steps + dpo_steps, state.sft_done + state.dpo_done);

    // SFT.
    while state.sft_done < t.steps {
        let step = state.sft_done;
        let batch: Vec<_> = batch_indices(examples.len(), t.batch_size, step, t.seed).into_iter().map(|i| examples[i].clone()).collect();
        let lr = cosine_learning_rate(t.learning_rate, step, t.warmup_steps, t.steps);
        let report = trainer.sft_step(&batch, lr)?;
        state.sft_done += 1;
        state.last_loss = report.loss;
        progress.step(report.loss, report.tokens, report.seconds);
        if state.sft_done % t.checkpoint_every == 0 || state.sft_done == t.steps {
            checkpoint(&run_dir, &trainer, &mut state, started)?;
        }
    }
    // DPO, against the SFT adapter: its log-probs of each pair, computed once and kept.
    if dpo_steps > 0 {
        reference_logprobs(&run_dir, &trainer, &mut preferences)?;
        while state.dpo_done < dpo_steps {
            let step = state.dpo_done;
            let batch: Vec<Preference> =
                batch_indices(preferences.len(), t.batch_size, step, t.seed ^ 0xD0).into_iter().map(|i| preferences[i].clone()).collect();
            let lr = cosine_learning_rate(t.dpo_learning_rate, step, 0, dpo_steps);
            let report = trainer.dpo_step(&batch, t.dpo_beta, lr)?;
            state.dpo_done += 1;
            state.last_loss = report.loss;
            progress.step(report.loss, report.tokens, report.seconds);
            if state.dpo_done % t.checkpoint_every == 0 || state.dpo_done == dpo_steps {
                checkpoint(&run_dir, &trainer, &mut state, started)?;
            }
        }
    }
    progress.done();
    let manifest = PersonalityManifest::read(&dir);
    let version = manifest.next_version();
    let file = format!("personality-v{version}.gguf");
    let path = dir.join(&file);
    trainer.write_adapter(&path)?;
    let seconds = state.seconds + started.elapsed().as_secs_f64();
    let entry = PersonalityVersion {
        version,
        file,
        created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        dataset_digest: dataset.manifest.source.digest.clone(),
        dataset_seed: dataset.manifest.seed,
        settings: fresh.settings.clone(),
        sft_steps: state.sft_done,
        dpo_steps: state.dpo_done,
        final_loss: state.last_loss,
        train_seconds: seconds,
        heldout_ppl: f64::NAN,
        compared_with: String::new(),
        compared_ppl: f64::NAN,
        served: false,
        refused: None,
    };
    let version = gate_and_record(config, &dataset, &sha256, entry, threads, progress)?;
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(Trained { version, path, resumed_at })
}

/// A trainer, its run's state, and where a resumed run took up (SFT and DPO steps done).
type Started = (Trainer, RunState, Option<(u64, u64)>);

/// Resumes the run in `run_dir` if it is for the same data and settings, else starts anew.
fn resume_or_start(run_dir: &Path, fresh: &RunState, base: &Arc<BaseModel>, cfg: &LoraConfig, seed: u64) -> Result<Started, TrainFailure> {
    let state_path = run_dir.join("state.json");
    let checkpoint_path = run_dir.join("checkpoint.safetensors");
    let saved: Option<RunState> = std::fs::read(&state_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(saved) = saved.filter(|s| s.dataset_digest == fresh.dataset_digest && s.settings == fresh.settings) {
        if let Ok(trainer) = Trainer::load_checkpoint(base.clone(), cfg.clone(), &checkpoint_path) {
            let at = (saved.sft_done, saved.dpo_done);
            tracing::info!(sft = at.0, dpo = at.1, "resuming the training run from its checkpoint");
            return Ok((trainer, saved, Some(at)));
        }
    }
    // Another dataset or other settings: the old run's files mean nothing now.
    let _ = std::fs::remove_file(&checkpoint_path);
    let _ = std::fs::remove_file(run_dir.join("reference.json"));
    Ok((Trainer::new(base.clone(), cfg.clone(), seed)?, fresh.clone(), None))
}

fn checkpoint(run_dir: &Path, trainer: &Trainer, state: &mut RunState, started: Instant) -> Result<(), TrainFailure> {
    trainer.save_checkpoint(run_dir.join("checkpoint.safetensors"))?;
    let mut saved = state.clone();
    saved.seconds += started.elapsed().as_secs_f64();
    // The state names the checkpoint just written: written second, so it never points ahead.
    let path = run_dir.join("state.json");
    crate::files::write_atomically(&path, &serde_json::to_vec_pretty(&saved).expect("serializable")).map_err(io(&path))
}

/// The SFT adapter's log-probs of each pair's replies: DPO's frozen reference.
fn reference_logprobs(run_dir: &Path, trainer: &Trainer, preferences: &mut [Preference]) -> Result<(), TrainFailure> {
    let path = run_dir.join("reference.json");
    let cached: Option<Vec<(f32, f32)>> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let refs = match cached.filter(|c| c.len() == preferences.len()) {
        Some(refs) => refs,
        None => {
            let refs = preferences
                .iter()
                .map(|p| Ok((trainer.reply_logprob(&p.prompt, &p.chosen)?, trainer.reply_logprob(&p.prompt, &p.rejected)?)))
                .collect::<Result<Vec<_>, TrainError>>()?;
            crate::files::write_atomically(&path, &serde_json::to_vec(&refs).expect("serializable")).map_err(io(&path))?;
            refs
        }
    };
    for (p, (c, r)) in preferences.iter_mut().zip(refs) {
        p.reference_chosen = c;
        p.reference_rejected = r;
    }
    Ok(())
}

/// Held-out perplexity through llama.cpp of the model with `adapters`, on `examples`.
pub fn heldout_ppl(
    model_path: &Path,
    adapters: &[(PathBuf, f32)],
    examples: &[crate::history::dataset::Example],
    threads: usize,
) -> Result<f64, TrainFailure> {
    let engine = |e: sidekick_actors::ports::ModelError| TrainFailure::Engine(e.to_string());
    let mut model = OfflineModel::open(model_path, adapters).map_err(engine)?;
    let tokens: Vec<(Vec<u32>, Vec<u32>)> =
        examples.iter().map(|e| model.prompt_and_reply(&e.messages)).collect::<Result<_, _>>().map_err(engine)?;
    let mut session = model.session(1024, threads as u32).map_err(engine)?;
    let (mut logprob, mut count) = (0f64, 0usize);
    for (prompt, reply) in &tokens {
        let (lp, n) = session.reply_logprob(prompt, reply).map_err(engine)?;
        logprob += lp;
        count += n;
    }
    Ok((-logprob / count.max(1) as f64).exp())
}

/// The mean log-prob margin of each pair's chosen reply over its rejected one through
/// llama.cpp with `adapters` (what DPO raises); `None` without pairs.
pub fn preference_margin(
    model_path: &Path,
    adapters: &[(PathBuf, f32)],
    pairs: &[crate::history::dataset::Pair],
    threads: usize,
) -> Result<Option<f64>, TrainFailure> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let engine = |e: sidekick_actors::ports::ModelError| TrainFailure::Engine(e.to_string());
    let mut model = OfflineModel::open(model_path, adapters).map_err(engine)?;
    let tokens = data::preferences(&model, pairs)?;
    let mut session = model.session(1024, threads as u32).map_err(engine)?;
    let mut total = 0f64;
    for p in &tokens {
        let (chosen, _) = session.reply_logprob(&p.prompt, &p.chosen).map_err(engine)?;
        let (rejected, _) = session.reply_logprob(&p.prompt, &p.rejected).map_err(engine)?;
        total += chosen - rejected;
    }
    Ok(Some(total / tokens.len() as f64))
}

/// Scores the new adapter and the served one (or the base model) on the newest held-out
/// examples; serves the new one only if it passes the gate. Records it either way.
fn gate_and_record(
    config: &Config,
    dataset: &Dataset,
    sha256: &str,
    mut entry: PersonalityVersion,
    threads: usize,
    progress: &mut dyn Progress,
) -> Result<PersonalityVersion, TrainFailure> {
    let dir = &config.rl.adapters_dir;
    let mut manifest = PersonalityManifest::read(dir);
    if manifest.base_model_sha256 != sha256 {
        // Adapters for another model file cannot be served with this one.
        manifest.base_model_sha256 = sha256.to_string();
        manifest.serving = None;
    }
    let heldout = if dataset.heldout.is_empty() {
        &dataset.train[dataset.train.len().saturating_sub(config.train.eval_examples)..]
    } else {
        dataset.newest_heldout(config.train.eval_examples)
    };
    let served = manifest.served(dir, sha256);
    let served_adapters: Vec<(PathBuf, f32)> = served.iter().map(|p| (p.clone(), 1.0)).collect();
    entry.compared_with = manifest.serving.clone().unwrap_or_else(|| "the base model".into());
    // A line per evaluation: each takes minutes, and `!train status` shows the latest.
    let mut eval = |name: &str, adapters: &[(PathBuf, f32)]| {
        progress.note(&format!("eval: scoring {name} on {} held-out examples", heldout.len()));
        let started = Instant::now();
        let ppl = heldout_ppl(&config.model.path, adapters, heldout, threads)?;
        progress.note(&format!("eval: {name}, held-out perplexity {ppl:.2} ({:.0} s)", started.elapsed().as_secs_f64()));
        Ok::<f64, TrainFailure>(ppl)
    };
    entry.compared_ppl = eval(&entry.compared_with, &served_adapters)?;
    entry.heldout_ppl = eval(&entry.file, &[(dir.join(&entry.file), 1.0)])?;
    match personality::gate(entry.heldout_ppl, entry.compared_ppl, config.train.max_ppl_rise) {
        Ok(()) => {
            entry.served = true;
            manifest.serving = Some(entry.file.clone());
        }
        Err(why) => entry.refused = Some(why),
    }
    manifest.versions.push(entry.clone());
    manifest.write(dir).map_err(io(dir))?;
    Ok(entry)
}
