//! Adapter training on this machine's CPU: the [`Learning`] port over `sidekick-trainer`
//! (candle), with the adapters and their manifest under `rl.adapters_dir`.

use crate::config::RlConfig;
use sha2::{Digest, Sha256};
pub use sidekick_actors::ports::Personality;
use sidekick_actors::ports::{AdapterManifest, AdapterVersion, LearnError, Learning, PolicyTrainer, TrainReport, TrainSample};
use sidekick_actors::sync::{LockExt, RwLockExt};
use sidekick_trainer::{BaseModel, LoraConfig, Sample, Trainer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub struct LocalLearning {
    model_path: PathBuf,
    dir: PathBuf,
    lora: LoraConfig,
    /// The model file's sha256, computed once (seconds for a large model).
    model_sha256: OnceLock<Result<String, LearnError>>,
    /// The dequantized base model (~4 bytes a weight), loaded on the first training step,
    /// with the served personality adapter folded in; dropped when the personality changes.
    base: Mutex<Option<Arc<BaseModel>>>,
    /// The personality adapter served under the feedback adapter (`sidekick train`).
    personality: RwLock<Option<Personality>>,
    gate: GateRules,
}

/// What the gate scores a new feedback adapter on: the newest held-out examples of the
/// dataset (`sidekick dataset`), on one thread beside serving.
#[derive(Debug, Clone)]
pub struct GateRules {
    pub dataset: PathBuf,
    pub examples: usize,
    pub max_rise: f64,
}

impl GateRules {
    /// At most 50 examples: a save is scored twice on one core, in a couple of minutes.
    pub fn new(config: &crate::config::Config) -> GateRules {
        GateRules {
            dataset: config.storage.path.join("dataset"),
            examples: config.train.eval_examples.min(50),
            max_rise: config.train.max_ppl_rise,
        }
    }
}

const MANIFEST: &str = "manifest.json";

impl LocalLearning {
    pub fn new(model_path: &Path, rl: &RlConfig, personality: Option<Personality>, gate: GateRules) -> Self {
        let lora = LoraConfig {
            rank: rl.rank,
            alpha: rl.alpha,
            learning_rate: rl.learning_rate as f32,
            weight_decay: rl.weight_decay as f32,
            max_tokens: rl.max_train_tokens,
            threads: rl.threads,
            ..LoraConfig::default()
        };
        Self {
            model_path: model_path.to_path_buf(),
            dir: rl.adapters_dir.clone(),
            lora,
            model_sha256: OnceLock::new(),
            base: Mutex::new(None),
            personality: RwLock::new(personality),
            gate,
        }
    }

    fn base(&self) -> Result<Arc<BaseModel>, LearnError> {
        let mut base = self.base.lock_or_recover();
        if let Some(b) = base.as_ref() {
            return Ok(b.clone());
        }
        let mut loaded = BaseModel::load(&self.model_path).map_err(|e| LearnError::Load(format!("{}: {e}", self.model_path.display())))?;
        if let Some(p) = self.served_personality() {
            // Served at scale 1 under the feedback adapter, so folded in at scale 1.
            loaded = loaded.with_adapter(&p.path, 1.0).map_err(|e| LearnError::Load(format!("{}: {e}", p.path.display())))?;
        }
        let loaded = Arc::new(loaded);
        *base = Some(loaded.clone());
        Ok(loaded)
    }

    fn served_personality(&self) -> Option<Personality> {
        self.personality.read_or_recover().clone()
    }

    fn model_sha256(&self) -> Result<String, LearnError> {
        self.model_sha256
            .get_or_init(|| sha256_file(&self.model_path).map_err(|e| LearnError::Load(format!("{}: {e}", self.model_path.display()))))
            .clone()
    }

    /// The adapter the manifest says to serve, if it was trained for this model file.
    pub fn served_adapter(&self) -> Option<PathBuf> {
        let manifest = self.read_manifest().ok()??;
        let active = manifest.version(manifest.active?)?;
        match self.base_model_sha256() {
            Ok(sha) if sha == manifest.base_model_sha256 => Some(self.dir.join(&active.file)),
            _ => {
                tracing::warn!("the saved adapters were trained for another model file or personality; set aside");
                None
            }
        }
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl Learning for LocalLearning {
    fn base_model_sha256(&self) -> Result<String, LearnError> {
        let model = self.model_sha256()?;
        match self.served_personality() {
            // An adapter of a few MB: hashed again on each call, it always matches the file.
            Some(p) => Ok(format!("{model}+{}", sha256_file(&p.path).map_err(|e| LearnError::Load(format!("{}: {e}", p.path.display())))?)),
            None => Ok(model),
        }
    }

    fn personality(&self) -> Option<String> {
        self.served_personality().map(|p| p.summary)
    }

    fn set_personality(&self, personality: Option<Personality>) {
        *self.personality.write_or_recover() = personality;
        // The next trainer folds the new voice into its frozen weights.
        *self.base.lock_or_recover() = None;
    }

    fn adapters_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn read_manifest(&self) -> Result<Option<AdapterManifest>, LearnError> {
        let path = self.dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| LearnError::Files(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LearnError::Files(format!("{}: {e}", path.display()))),
        }
    }

    fn write_manifest(&self, manifest: &AdapterManifest) -> Result<(), LearnError> {
        let mut manifest = manifest.clone();
        // For people reading the file: which personality these adapters refine.
        manifest.personality = self.served_personality().and_then(|p| p.path.file_name().map(|n| n.to_string_lossy().into_owned()));
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| LearnError::Files(e.to_string()))?;
        crate::files::write_atomically(&self.dir.join(MANIFEST), &json)
            .map_err(|e| LearnError::Files(format!("{}: {e}", self.dir.display())))
    }

    fn remove_adapter(&self, file: &str) -> Result<(), LearnError> {
        match std::fs::remove_file(self.dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LearnError::Files(format!("{file}: {e}"))),
            _ => Ok(()),
        }
    }

    fn gate(&self, candidate: &Path, served: Option<&Path>) -> Result<(), String> {
        let sha256 = self.model_sha256().map_err(|e| e.to_string())?;
        let dataset = match crate::train::data::Dataset::read(&self.gate.dataset, &sha256) {
            Ok(dataset) if !dataset.heldout.is_empty() => dataset,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::info!(reason = %e, "no held-out set to gate the new adapter on; serving it");
                return Ok(());
            }
        };
        let heldout = dataset.newest_heldout(self.gate.examples);
        let under: Vec<(PathBuf, f32)> = self.served_personality().into_iter().map(|p| (p.path, 1.0)).collect();
        let perplexity = |feedback: Option<&Path>| {
            let adapters: Vec<(PathBuf, f32)> = under.iter().cloned().chain(feedback.map(|p| (p.to_path_buf(), 1.0))).collect();
            crate::train::heldout_ppl(&self.model_path, &adapters, heldout, 1).map_err(|e| format!("scoring it: {e}"))
        };
        let (new, old) = (perplexity(Some(candidate))?, perplexity(served)?);
        tracing::info!(new, old, "the gate scored the new adapter");
        crate::train::personality::gate(new, old, self.gate.max_rise)
    }

    fn open_trainer(&self, resume: Option<&AdapterVersion>) -> Result<Box<dyn PolicyTrainer>, LearnError> {
        let base = self.base()?;
        let load = |e: sidekick_trainer::TrainError| LearnError::Load(e.to_string());
        let trainer = match resume {
            // The file carries the trainer's own baseline and step as they were when it was
            // written; they are exact even when the manifest was written a step early.
            Some(v) => Trainer::load_adapter(base, self.lora.clone(), self.dir.join(&v.file)).map_err(load)?,
            None => Trainer::new(base, self.lora.clone(), 0x5eed).map_err(load)?,
        };
        Ok(Box::new(CandleTrainer(trainer)))
    }
}

struct CandleTrainer(Trainer);

impl PolicyTrainer for CandleTrainer {
    fn step(&mut self, batch: &[TrainSample]) -> Result<TrainReport, LearnError> {
        let samples: Vec<Sample> =
            batch.iter().map(|s| Sample { prompt: s.prompt.clone(), reply: s.reply.clone(), reward: s.reward }).collect();
        let report = self.0.step(&samples).map_err(|e| LearnError::Train(e.to_string()));
        // The step's activations and gradients are freed now: give their pages back.
        crate::memory::release_freed();
        let report = report?;
        Ok(TrainReport {
            loss: report.loss,
            seconds: report.seconds,
            tokens: report.tokens,
            baseline: report.baseline,
            samples: samples.len(),
        })
    }

    fn save(&mut self, path: &Path) -> Result<(), LearnError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LearnError::Files(format!("{}: {e}", dir.display())))?;
        }
        self.0.write_adapter(path).map_err(|e| LearnError::Files(format!("{}: {e}", path.display())))
    }
}

/// A warning when a step of `rl.max_train_tokens` would need more than the memory available.
pub fn training_memory_warning(step_bytes: u64, available_bytes: u64, tokens: usize) -> Option<String> {
    (step_bytes > available_bytes).then(|| {
        format!(
            "a training step of rl.max_train_tokens = {tokens} needs about {:.1} GB, and {:.1} GB is available: \
             it may be killed for memory (it would then be skipped at the next start); lower rl.max_train_tokens or set rl.enabled = false",
            step_bytes as f64 / 1e9,
            available_bytes as f64 / 1e9
        )
    })
}

/// Says at start, in the log, when training would not fit in this machine's memory.
pub fn check_training_memory(model_path: &Path, rl: &RlConfig) {
    // The same estimate `sidekick train` checks against, from the model's GGUF header.
    let (Ok(shape), Some(available)) = (sidekick_trainer::model_config(model_path), crate::train::resources::available_bytes()) else {
        return;
    };
    let need = crate::train::resources::needed_bytes(&shape, rl.max_train_tokens);
    if let Some(warning) = training_memory_warning(need, available, rl.max_train_tokens) {
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn a_training_step_that_does_not_fit_is_warned_about_with_both_figures() {
        assert_eq!(training_memory_warning(2_100_000_000, 8_000_000_000, 256), None);
        let warning = training_memory_warning(23_900_000_000, 3_000_000_000, 4096).unwrap();
        assert!(warning.contains("rl.max_train_tokens = 4096 needs about 23.9 GB, and 3.0 GB is available"), "{warning}");
    }
}
