//! Learning in memory: the manifest in a field, a trainer that counts its steps and "saves"
//! by recording the file name.

use crate::ports::{AdapterManifest, AdapterVersion, LearnError, Learning, Personality, PolicyTrainer, TrainReport, TrainSample};
use crate::sync::LockExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the fake learning saw, shared with its trainers.
#[derive(Default, Debug, Clone)]
pub struct LearningLog {
    pub steps: usize,
    /// The reward of every sample trained on, in order.
    pub rewards: Vec<f32>,
    pub saved: Vec<String>,
    pub removed: Vec<String>,
    /// The version each trainer was opened from (`None`: a fresh adapter).
    pub opened_from: Vec<Option<u64>>,
}

/// Version `v` as training would have saved it: `adapter-vN.gguf`, `10 v` steps.
pub fn adapter_version(v: u64) -> AdapterVersion {
    AdapterVersion {
        version: v,
        file: format!("adapter-v{v}.gguf"),
        step: v * 10,
        rewards_seen: v,
        trained_through: Some(v),
        baseline: 0.0,
        saved_at_ms: v,
    }
}

pub struct FakeLearning {
    pub dir: PathBuf,
    pub sha256: String,
    /// What the gate says of every new adapter (`None`: it passes).
    pub refuse: Mutex<Option<String>>,
    manifest: Mutex<Option<AdapterManifest>>,
    log: Arc<Mutex<LearningLog>>,
    personality: Mutex<Option<Personality>>,
    /// Opening a trainer panics (a broken native library).
    pub panic_on_open: std::sync::atomic::AtomicBool,
    on_step: StepHook,
}

/// Called at the start of every step (to look at the world while it runs).
type StepHook = Arc<Mutex<Option<Arc<dyn Fn() + Send + Sync>>>>;

impl Default for FakeLearning {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/adapters"),
            sha256: "base".into(),
            refuse: Mutex::default(),
            manifest: Mutex::default(),
            log: Arc::default(),
            personality: Mutex::default(),
            panic_on_open: Default::default(),
            on_step: Arc::default(),
        }
    }
}

impl FakeLearning {
    pub fn manifest(&self) -> Option<AdapterManifest> {
        self.manifest.lock_or_recover().clone()
    }
    pub fn log(&self) -> LearningLog {
        self.log.lock_or_recover().clone()
    }
    /// `hook` runs at the start of every step, on the training thread.
    pub fn on_step(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.on_step.lock_or_recover() = Some(Arc::new(hook));
    }
}

struct FakeTrainer(Arc<Mutex<LearningLog>>, StepHook);

impl PolicyTrainer for FakeTrainer {
    fn step(&mut self, batch: &[TrainSample]) -> Result<TrainReport, LearnError> {
        let hook = self.1.lock_or_recover().clone();
        if let Some(hook) = hook {
            hook();
        }
        let mut log = self.0.lock_or_recover();
        log.steps += 1;
        log.rewards.extend(batch.iter().map(|s| s.reward));
        Ok(TrainReport { loss: 1.0, seconds: 0.0, tokens: 1, baseline: 0.0, samples: batch.len() })
    }
    fn save(&mut self, path: &Path) -> Result<(), LearnError> {
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        self.0.lock_or_recover().saved.push(file);
        Ok(())
    }
}

impl Learning for FakeLearning {
    /// `base`, or `base+<personality file>` when one is served.
    fn base_model_sha256(&self) -> Result<String, LearnError> {
        match self.personality.lock_or_recover().as_ref() {
            Some(p) => Ok(format!("{}+{}", self.sha256, p.path.file_name().unwrap_or_default().to_string_lossy())),
            None => Ok(self.sha256.clone()),
        }
    }
    fn personality(&self) -> Option<String> {
        self.personality.lock_or_recover().as_ref().map(|p| p.summary.clone())
    }
    fn set_personality(&self, personality: Option<Personality>) {
        *self.personality.lock_or_recover() = personality;
    }
    fn adapters_dir(&self) -> PathBuf {
        self.dir.clone()
    }
    fn read_manifest(&self) -> Result<Option<AdapterManifest>, LearnError> {
        Ok(self.manifest())
    }
    fn write_manifest(&self, manifest: &AdapterManifest) -> Result<(), LearnError> {
        *self.manifest.lock_or_recover() = Some(manifest.clone());
        Ok(())
    }
    fn remove_adapter(&self, file: &str) -> Result<(), LearnError> {
        self.log.lock_or_recover().removed.push(file.to_string());
        Ok(())
    }
    fn gate(&self, _candidate: &Path, _served: Option<&Path>) -> Result<(), String> {
        self.refuse.lock_or_recover().clone().map_or(Ok(()), Err)
    }
    fn open_trainer(&self, resume: Option<&AdapterVersion>) -> Result<Box<dyn PolicyTrainer>, LearnError> {
        if self.panic_on_open.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("the test broke the trainer");
        }
        self.log.lock_or_recover().opened_from.push(resume.map(|v| v.version));
        Ok(Box::new(FakeTrainer(self.log.clone(), self.on_step.clone())))
    }
}
