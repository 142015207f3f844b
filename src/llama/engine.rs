//! The decoding thread: owns the llama.cpp model and context, admits jobs into sequences,
//! and advances every running sequence by one step of one shared batch.

use super::scheduler::Scheduler;
use super::EngineConfig;
use crate::config::ModelThreads;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaLoraAdapter, LlamaModel};
use sidekick_actors::ports::{EngineStats, GenEvent, GenerationJob, ModelError, ModelInfo};
use sidekick_actors::prompt::ChatTurn;
use sidekick_actors::sync::LockExt;
use sidekick_actors::watchdog::Heartbeats;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

/// Adapters kept loaded before the model is reloaded to free them (a few MB each).
const MAX_LOADED_ADAPTERS: usize = 8;

pub enum EngineCmd {
    Job(GenerationJob),
    /// Count the tokens of these turns with the chat template.
    Measure {
        turns: Vec<ChatTurn>,
        done: tokio::sync::oneshot::Sender<Result<usize, ModelError>>,
    },
    /// Serve other adapters once the replies in flight are done.
    Swap(Swap),
    Shutdown {
        deadline: Instant,
    },
}

/// A change of what is served, and who hears when it is done.
pub struct Swap {
    /// `Some(p)`: serve the personality `p` (`None`: none) from now on.
    pub personality: Option<Option<PathBuf>>,
    /// The feedback adapter to serve over the personality (`None`: none).
    pub feedback: Option<PathBuf>,
    pub done: Vec<tokio::sync::oneshot::Sender<Result<(), ModelError>>>,
}

impl Swap {
    /// A later request for the same free moment: its feedback adapter replaces this one's, and
    /// a personality either asked for stays asked for; everyone hears how the one swap went.
    pub(super) fn merge(&mut self, later: Swap) {
        if later.personality.is_some() {
            self.personality = later.personality;
        }
        self.feedback = later.feedback;
        self.done.extend(later.done);
    }

    pub(super) fn answer(self, result: &Result<(), ModelError>) {
        for done in self.done {
            let _ = done.send(result.clone());
        }
    }
}

/// Why a round of serving ended.
pub(super) enum Served {
    Shutdown,
    Swap(Swap),
}

/// llama.cpp's backend is process-wide and may be initialised only once.
pub fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| ModelError::Load(format!("llama.cpp backend: {e}")))
}

pub fn run(
    config: EngineConfig,
    ready: mpsc::SyncSender<Result<ModelInfo, ModelError>>,
    inbox: mpsc::Receiver<EngineCmd>,
    heartbeats: Heartbeats,
    stats: Arc<Mutex<EngineStats>>,
) {
    let started = Instant::now();
    let (backend, mut weights) = match backend().and_then(|b| Ok((b, Weights::load(b, &config)?))) {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (template, template_name) = chat_template(&weights.model);
    let setup = Setup { backend, config: &config, template, heartbeats, stats };
    let mut ready = Some(ready);
    let mut carried = VecDeque::new();
    loop {
        // A swap needs `&mut model`, so each context lives for one round of serving.
        // Matched at once: a binding would keep `model` borrowed past the swap below.
        let mut scheduler = match setup.open_or_base(&mut weights) {
            Ok(mut s) => {
                s.waiting = std::mem::take(&mut carried);
                s
            }
            Err(e) => {
                match ready.take() {
                    Some(ready) => drop(ready.send(Err(e))),
                    None => tracing::error!(error = %e, "the model cannot go on"),
                }
                fail_all(&mut carried);
                return;
            }
        };
        if let Some(ready) = ready.take() {
            if ready.send(Ok(model_info(&config, started, &template_name))).is_err() {
                return;
            }
        }
        match scheduler.serve(&inbox) {
            Served::Shutdown => return,
            Served::Swap(swap) => {
                carried = std::mem::take(&mut scheduler.waiting);
                drop(scheduler);
                let swapped = weights.swap(backend, &config, swap.personality.clone(), swap.feedback.clone());
                let gone = matches!(swapped, Err(ModelError::Load(_)));
                swap.answer(&swapped);
                if gone {
                    fail_all(&mut carried);
                    return;
                }
            }
        }
    }
}

fn fail_all(jobs: &mut VecDeque<GenerationJob>) {
    for job in jobs.drain(..) {
        let _ = job.events.send(GenEvent::Failed(ModelError::Unavailable));
    }
}

fn model_info(config: &EngineConfig, started: Instant, template: &str) -> ModelInfo {
    ModelInfo {
        name: config.model_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        path: config.model_path.display().to_string(),
        context_tokens: config.context_tokens,
        parallel_sequences: config.parallel,
        threads: config.threads.initial(),
        threads_auto: config.threads == ModelThreads::Auto,
        load_seconds: started.elapsed().as_secs_f64(),
        chat_template: template.to_string(),
    }
}

/// The model, the adapters loaded into it, and the ones being served.
struct Weights {
    model: LlamaModel,
    /// Adapters stay loaded for the model's lifetime (llama-cpp-2 cannot free one), so each
    /// file is loaded once and a rollback reuses it.
    adapters: HashMap<PathBuf, LlamaLoraAdapter>,
    /// The feedback adapter.
    serving: Option<PathBuf>,
    /// The personality adapter under it.
    personality: Option<PathBuf>,
}

impl Weights {
    /// The model file, with the adapters `config` says to serve (without one that fails).
    fn load(backend: &LlamaBackend, config: &EngineConfig) -> Result<Weights, ModelError> {
        let model = LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load(format!("{}: {e} (is it a GGUF model file?)", config.model_path.display())))?;
        let serving = config.adapter.lock_or_recover().clone();
        let personality = config.personality.lock_or_recover().clone();
        let mut weights = Weights { model, adapters: HashMap::new(), serving, personality };
        if let Some(path) = weights.personality.clone() {
            if let Err(e) = load_adapter(&mut weights.model, &mut weights.adapters, &path) {
                tracing::error!(error = %e, "serving without the personality adapter");
                weights.personality = None;
                *config.personality.lock_or_recover() = None;
            }
        }
        if let Err(e) = weights.applied(weights.serving.clone().as_deref()).and_then(|p| weights.load_file(p.as_deref())) {
            // A bad adapter must not keep the bot from answering.
            tracing::error!(error = %e, "serving without the feedback adapter");
            weights.serving = None;
            *config.adapter.lock_or_recover() = None;
        }
        Ok(weights)
    }

    /// The one file llama.cpp applies for `feedback` over the served personality.
    fn applied(&self, feedback: Option<&Path>) -> Result<Option<PathBuf>, ModelError> {
        applied(self.personality.as_deref(), feedback)
    }

    fn load_file(&mut self, path: Option<&Path>) -> Result<(), ModelError> {
        path.map_or(Ok(()), |p| load_adapter(&mut self.model, &mut self.adapters, p))
    }

    /// Serves `feedback` over `personality` (`None`: the one served now) from the next round
    /// on; on an error what was served stays. A failed reload of the model is
    /// `ModelError::Load`: the engine cannot go on.
    fn swap(
        &mut self,
        backend: &LlamaBackend,
        config: &EngineConfig,
        personality: Option<Option<PathBuf>>,
        feedback: Option<PathBuf>,
    ) -> Result<(), ModelError> {
        let personality = personality.unwrap_or_else(|| self.personality.clone());
        // The personality alone first: a file that is not an adapter for this model is named
        // as such, not as a failed combination.
        let wanted = [personality.clone(), applied(personality.as_deref(), feedback.as_deref())?];
        let missing = wanted.iter().flatten().filter(|p| !self.adapters.contains_key(*p)).count();
        if missing > 0 && self.adapters.len() + missing > MAX_LOADED_ADAPTERS {
            // llama.cpp frees adapters only with their model: reload it (well under a second
            // for a small model) so months of swaps do not pile up in memory.
            self.adapters.clear();
            self.model = LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default()).map_err(|e| {
                tracing::error!(error = %e, "could not reload the model to free old adapters");
                ModelError::Load(format!("reloading the model: {e}"))
            })?;
            // What was served until now must be loaded again into the new model.
            if self.applied(self.serving.clone().as_deref()).and_then(|p| self.load_file(p.as_deref())).is_err() {
                self.serving = None;
            }
        }
        for path in wanted.iter().flatten() {
            self.load_file(Some(path))?;
        }
        tracing::info!(adapter = ?feedback, personality = ?personality, "serving new adapters");
        (self.serving, self.personality) = (feedback, personality);
        *config.adapter.lock_or_recover() = self.serving.clone();
        *config.personality.lock_or_recover() = self.personality.clone();
        Ok(())
    }

    /// The file names served, for the reply journal: the feedback adapter's over the personality's.
    fn label(&self) -> Option<String> {
        let names: Vec<String> = [&self.serving, &self.personality]
            .into_iter()
            .flatten()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        (!names.is_empty()).then(|| names.join(" over "))
    }
}

/// The one file llama.cpp applies for `feedback` over `personality`: llama-cpp-2 sets one
/// adapter per context, so both are served as one with their ranks side by side.
fn applied(personality: Option<&Path>, feedback: Option<&Path>) -> Result<Option<PathBuf>, ModelError> {
    match (personality, feedback) {
        (None, feedback) => Ok(feedback.map(Path::to_path_buf)),
        (Some(personality), None) => Ok(Some(personality.to_path_buf())),
        (Some(personality), Some(feedback)) => combined(personality, feedback).map(Some),
    }
}

/// `<feedback dir>/combined/<feedback>+<personality>.gguf`, written again unless it is newer
/// than both files; older combinations are removed.
fn combined(personality: &Path, feedback: &Path) -> Result<PathBuf, ModelError> {
    let stem = |p: &Path| p.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let dir = feedback.parent().unwrap_or(Path::new(".")).join("combined");
    let path = dir.join(format!("{}+{}.gguf", stem(feedback), stem(personality)));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(made), Some(a), Some(b)) = (modified(&path), modified(personality), modified(feedback)) {
        if made >= a && made >= b {
            return Ok(path);
        }
    }
    let failed = |e: String| ModelError::Adapter(format!("combining {} with {}: {e}", feedback.display(), personality.display()));
    std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for old in entries.flatten().map(|e| e.path()).filter(|p| *p != path) {
            let _ = std::fs::remove_file(old);
        }
    }
    sidekick_trainer::combine_adapters(&[(personality, 1.0), (feedback, 1.0)], &path).map_err(|e| failed(e.to_string()))?;
    Ok(path)
}

/// What every round of serving shares, set once when the thread starts.
struct Setup<'c> {
    backend: &'static LlamaBackend,
    config: &'c EngineConfig,
    template: LlamaChatTemplate,
    heartbeats: Heartbeats,
    stats: Arc<Mutex<EngineStats>>,
}

impl Setup<'_> {
    /// [`Setup::open_round`] with what `weights` serves; when the feedback adapter cannot be
    /// applied, without it (an adapter that loads but fails must not stop the bot).
    fn open_or_base<'m>(&self, weights: &'m mut Weights) -> Result<Scheduler<'m>, ModelError> {
        let label = weights.label();
        let applied = weights.applied(weights.serving.clone().as_deref());
        let Weights { model, adapters, serving, personality } = weights;
        let model: &'m LlamaModel = model;
        match applied.and_then(|applied| self.open_round(model, adapters, applied.as_deref(), label)) {
            Err(e) if serving.is_some() => {
                tracing::error!(error = %e, adapter = ?serving, "serving without the feedback adapter");
                *serving = None;
                *self.config.adapter.lock_or_recover() = None;
                let label = personality.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
                self.open_round(model, adapters, personality.as_deref(), label)
            }
            other => other,
        }
    }

    /// A fresh context applying `adapter`, with the shared prefix decoded.
    fn open_round<'m>(
        &self,
        model: &'m LlamaModel,
        adapters: &mut HashMap<PathBuf, LlamaLoraAdapter>,
        adapter: Option<&Path>,
        label: Option<String>,
    ) -> Result<Scheduler<'m>, ModelError> {
        let config = self.config;
        let mut ctx = model
            .new_context(self.backend, context_params(config))
            .map_err(|e| ModelError::Load(format!("cannot create a llama.cpp context: {e}")))?;
        if let Some(loaded) = adapter.and_then(|p| adapters.get_mut(p)) {
            ctx.lora_adapter_set(loaded, 1.0).map_err(|e| ModelError::Adapter(format!("llama.cpp cannot apply it: {e}")))?;
        }
        let mut scheduler = Scheduler::new(model, ctx, self.template.clone(), config, self.heartbeats.clone(), self.stats.clone(), label);
        scheduler.warm_shared_prefix(&config.shared_prefix)?;
        Ok(scheduler)
    }
}

/// The context the engine serves with (public for the benchmark's llama.cpp baseline).
pub fn context_params(config: &EngineConfig) -> LlamaContextParams {
    let threads = |n: u32| n.max(1) as i32;
    // With `auto` every step, prompt or not, starts at every core; the tuner moves both.
    let batch_threads = match config.threads {
        ModelThreads::Auto => config.threads.initial(),
        ModelThreads::Fixed(_) => config.threads_batch,
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_tokens))
        .with_n_batch(config.batch_tokens)
        .with_n_ubatch(config.batch_tokens)
        .with_n_seq_max(config.parallel + 1)
        .with_kv_unified(true)
        .with_n_threads(threads(config.threads.initial()))
        .with_n_threads_batch(threads(batch_threads))
        .with_flash_attention_policy(if config.flash_attention {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO
        } else {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
        });
    // The KV cache in 8 bits halves its memory (the default 8,192 cells: 190 MB in f16 for
    // SmolLM2-135M); llama.cpp reads a quantized V cache only through flash attention.
    let cache = if config.flash_attention { KvCacheType::Q8_0 } else { KvCacheType::F16 };
    params.with_type_k(cache).with_type_v(cache)
}

fn load_adapter(model: &mut LlamaModel, adapters: &mut HashMap<PathBuf, LlamaLoraAdapter>, path: &Path) -> Result<(), ModelError> {
    if adapters.contains_key(path) {
        return Ok(());
    }
    if !path.is_file() {
        return Err(ModelError::Adapter(format!("{} not found", path.display())));
    }
    let adapter = model
        .lora_adapter_init(path)
        .map_err(|e| ModelError::Adapter(format!("{}: {e} (not a LoRA GGUF for this model?)", path.display())))?;
    adapters.insert(path.to_path_buf(), adapter);
    Ok(())
}

/// The model's own template, if llama.cpp can apply it; ChatML otherwise.
pub(super) fn chat_template(model: &LlamaModel) -> (LlamaChatTemplate, String) {
    let probe = [LlamaChatMessage::new("user".into(), "hi".into()).expect("no NUL")];
    if let Ok(t) = model.chat_template(None) {
        if model.apply_chat_template(&t, &probe, true).is_ok() {
            return (t, "from the model file".into());
        }
        tracing::warn!("the model's chat template is not one llama.cpp knows; using ChatML");
    }
    (LlamaChatTemplate::new("chatml").expect("no NUL"), "chatml (default)".into())
}
