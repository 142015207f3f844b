//! The llama.cpp adapter: a [`LanguageModel`] whose decoding runs on its own OS thread.

mod engine;
pub mod offline;
pub mod render;
mod scheduler;
pub mod slots;
mod threads;
pub use threads::can_set_threads;

pub use engine::{backend, context_params};
use engine::{EngineCmd, Swap};
pub use scheduler::sampler;
use sidekick_actors::ports::{EngineStats, GenerationJob, LanguageModel, ModelError, ModelInfo, ModelLoader};
use sidekick_actors::prompt::ChatTurn;
use sidekick_actors::sync::LockExt;
use sidekick_actors::watchdog::Heartbeats;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Replies being generated now, by the last engine to report (one per process in practice).
static GENERATING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a reply is being generated: bulk work (embedding history) keeps off the cores then.
pub fn generating() -> bool {
    GENERATING.load(Ordering::Relaxed) > 0
}

/// Fault injection (the console's Force stop test): the engine thread stops in its next
/// step, as inside a llama.cpp call that never returns, and the reply in progress with it.
static STALLED: AtomicBool = AtomicBool::new(false);

#[cfg(feature = "fault-injection")]
pub fn stall_engine() {
    STALLED.store(true, Ordering::SeqCst);
}

/// Holds the engine thread for good once [`STALLED`] is set (never in a release build).
fn stall_if_injected() {
    while STALLED.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How to run the model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_path: PathBuf,
    /// KV cache cells shared by all sequences.
    pub context_tokens: u32,
    /// Replies generated at once, each in its own sequence of one shared batch.
    pub parallel: u32,
    /// Threads for generation; `auto` tunes the count for every step while serving.
    pub threads: crate::config::ModelThreads,
    /// Threads for prompt processing (many tokens per step); with `auto`, tuned as above.
    pub threads_batch: u32,
    pub batch_tokens: u32,
    /// Turns decoded once at start into a shared sequence that every prompt can start from
    /// (the default system prompt).
    pub shared_prefix: Vec<ChatTurn>,
    /// Disables llama.cpp's flash attention (for exact comparisons).
    pub flash_attention: bool,
    /// Reuse decoded prompt prefixes across turns (off only to measure what it saves).
    pub prefix_reuse: bool,
    /// The LoRA adapter to serve (`None`: the base model). Swaps update it, so a model that
    /// is reloaded serves what was served before.
    pub adapter: Arc<Mutex<Option<PathBuf>>>,
    /// The personality adapter (`sidekick train`), served under the feedback adapter; `None`
    /// when there is none or it cannot be loaded. Swaps update it, like `adapter`.
    pub personality: Arc<Mutex<Option<PathBuf>>>,
}

impl EngineConfig {
    /// The model at `model_path` with the configuration's defaults.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        let defaults = crate::config::ModelConfig::default();
        Self {
            model_path: model_path.into(),
            context_tokens: defaults.context_tokens,
            parallel: defaults.parallel,
            threads: defaults.threads,
            threads_batch: defaults.threads_batch,
            batch_tokens: defaults.batch_tokens,
            shared_prefix: Vec::new(),
            flash_attention: true,
            prefix_reuse: true,
            adapter: Arc::default(),
            personality: Arc::default(),
        }
    }
}

/// Loads the model on a fresh decoding thread.
pub struct LlamaLoader {
    pub config: EngineConfig,
    pub heartbeats: Heartbeats,
}

impl ModelLoader for LlamaLoader {
    fn load(&self) -> Result<Arc<dyn LanguageModel>, ModelError> {
        Ok(Arc::new(LlamaEngine::start(self.config.clone(), self.heartbeats.clone())?))
    }
}

/// The handle to a running decoding thread.
pub struct LlamaEngine {
    commands: mpsc::Sender<EngineCmd>,
    closing: Arc<AtomicBool>,
    info: ModelInfo,
    stats: Arc<Mutex<EngineStats>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LlamaEngine {
    /// Starts the decoding thread and waits until the model is loaded.
    pub fn start(config: EngineConfig, heartbeats: Heartbeats) -> Result<Self, ModelError> {
        if !config.model_path.is_file() {
            return Err(ModelError::Load(format!(
                "model file {} not found; run `./run.sh setup` to install the bundled model",
                config.model_path.display()
            )));
        }
        let (commands, inbox) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("llama-decode".into())
            .spawn(move || engine::run(config, ready_tx, inbox, heartbeats, shared))
            .map_err(|e| ModelError::Load(format!("cannot start the decoding thread: {e}")))?;
        let info = ready_rx.recv().map_err(|_| ModelError::Load("the decoding thread died while loading".into()))??;
        Ok(Self { commands, closing: Arc::default(), info, stats, thread: Mutex::new(Some(thread)) })
    }

    fn swap(&self, swap: Swap) {
        if let Err(mpsc::SendError(EngineCmd::Swap(swap))) = self.commands.send(EngineCmd::Swap(swap)) {
            swap.answer(&Err(ModelError::Unavailable));
        }
    }
}

impl LanguageModel for LlamaEngine {
    fn submit(&self, job: GenerationJob) -> Result<(), ModelError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ModelError::Unavailable);
        }
        self.commands.send(EngineCmd::Job(job)).map_err(|_| ModelError::Unavailable)
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn stats(&self) -> EngineStats {
        *self.stats.lock_or_recover()
    }

    fn measure(&self, turns: Vec<ChatTurn>, done: tokio::sync::oneshot::Sender<Result<usize, ModelError>>) {
        if let Err(mpsc::SendError(EngineCmd::Measure { done, .. })) = self.commands.send(EngineCmd::Measure { turns, done }) {
            let _ = done.send(Err(ModelError::Unavailable));
        }
    }

    fn set_adapter(&self, adapter: Option<PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>) {
        self.swap(Swap { personality: None, feedback: adapter, done: vec![done] });
    }

    fn set_personality(&self, personality: Option<PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>) {
        self.swap(Swap { personality: Some(personality), feedback: None, done: vec![done] });
    }

    fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::Release);
        let _ = self.commands.send(EngineCmd::Shutdown { deadline: Instant::now() + grace });
        let thread = self.thread.lock_or_recover().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        // Ends the thread without waiting: in-flight jobs see their streams end.
        let _ = self.commands.send(EngineCmd::Shutdown { deadline: Instant::now() });
    }
}
