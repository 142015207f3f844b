//! The decoding thread: owns the llama.cpp model and context, admits jobs into sequences,
//! and advances every running sequence by one step of one shared batch.

use super::scheduler::Scheduler;
use super::EngineConfig;
use llama_cpp_2::context::params::LlamaContextParams;
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
    /// Serve another adapter once the replies in flight are done.
    SetAdapter {
        adapter: Option<PathBuf>,
        done: tokio::sync::oneshot::Sender<Result<(), ModelError>>,
    },
    Shutdown {
        deadline: Instant,
    },
}

/// Why a round of serving ended.
/// An adapter to serve (`None`: the base model), and who hears when it is served.
pub(super) type SwapRequest = (Option<PathBuf>, tokio::sync::oneshot::Sender<Result<(), ModelError>>);

pub(super) enum Served {
    Shutdown,
    Swap { adapter: Option<PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>> },
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
        let mut scheduler = match setup.open_or_base(&weights.model, &mut weights.adapters, &mut weights.serving) {
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
            Served::Swap { adapter, done } => {
                carried = std::mem::take(&mut scheduler.waiting);
                drop(scheduler);
                let swapped = weights.swap(backend, &config, adapter);
                let gone = matches!(swapped, Err(ModelError::Load(_)));
                let _ = done.send(swapped);
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
        threads: config.threads,
        load_seconds: started.elapsed().as_secs_f64(),
        chat_template: template.to_string(),
    }
}

/// The model, the adapters loaded into it, and the one being served.
struct Weights {
    model: LlamaModel,
    /// Adapters stay loaded for the model's lifetime (llama-cpp-2 cannot free one), so each
    /// file is loaded once and a rollback reuses it.
    adapters: HashMap<PathBuf, LlamaLoraAdapter>,
    serving: Option<PathBuf>,
}

impl Weights {
    /// The model file, with the adapter `config` says to serve (the base model if it fails).
    fn load(backend: &LlamaBackend, config: &EngineConfig) -> Result<Weights, ModelError> {
        let model = LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load(format!("{}: {e} (is it a GGUF model file?)", config.model_path.display())))?;
        let mut weights = Weights { model, adapters: HashMap::new(), serving: config.adapter.lock_or_recover().clone() };
        if let Some(path) = weights.serving.clone() {
            if let Err(e) = load_adapter(&mut weights.model, &mut weights.adapters, &path) {
                // A bad adapter must not keep the bot from answering: serve the base model.
                tracing::error!(error = %e, "serving the base model");
                weights.serving = None;
                *config.adapter.lock_or_recover() = None;
            }
        }
        Ok(weights)
    }

    /// Serves `adapter` from the next round on. A failed reload of the model is
    /// `ModelError::Load`: the engine cannot go on.
    fn swap(&mut self, backend: &LlamaBackend, config: &EngineConfig, adapter: Option<PathBuf>) -> Result<(), ModelError> {
        let cached = adapter.as_ref().is_some_and(|p| self.adapters.contains_key(p));
        if !cached && self.adapters.len() >= MAX_LOADED_ADAPTERS {
            // llama.cpp frees adapters only with their model: reload it (well under a second
            // for a small model) so months of swaps do not pile up in memory.
            self.adapters.clear();
            self.model = LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default()).map_err(|e| {
                tracing::error!(error = %e, "could not reload the model to free old adapters");
                ModelError::Load(format!("reloading the model: {e}"))
            })?;
            // The adapter served until now must be loaded again into the new model.
            if let Some(path) = self.serving.clone() {
                if load_adapter(&mut self.model, &mut self.adapters, &path).is_err() {
                    self.serving = None;
                }
            }
        }
        if let Some(path) = &adapter {
            load_adapter(&mut self.model, &mut self.adapters, path)?;
        }
        tracing::info!(adapter = ?adapter, "serving a new adapter");
        self.serving = adapter;
        *config.adapter.lock_or_recover() = self.serving.clone();
        Ok(())
    }
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
    /// [`Setup::open_round`] with `serving`; when that adapter cannot be applied, the base
    /// model (an adapter that loads but fails must not stop the bot).
    fn open_or_base<'m>(
        &self,
        model: &'m LlamaModel,
        adapters: &mut HashMap<PathBuf, LlamaLoraAdapter>,
        serving: &mut Option<PathBuf>,
    ) -> Result<Scheduler<'m>, ModelError> {
        match self.open_round(model, adapters, serving.as_deref()) {
            Err(e) if serving.is_some() => {
                tracing::error!(error = %e, adapter = ?serving, "serving the base model instead");
                *serving = None;
                *self.config.adapter.lock_or_recover() = None;
                self.open_round(model, adapters, None)
            }
            other => other,
        }
    }

    /// A fresh context serving `adapter`, with the shared prefix decoded.
    fn open_round<'m>(
        &self,
        model: &'m LlamaModel,
        adapters: &mut HashMap<PathBuf, LlamaLoraAdapter>,
        adapter: Option<&Path>,
    ) -> Result<Scheduler<'m>, ModelError> {
        let config = self.config;
        let mut ctx = model
            .new_context(self.backend, context_params(config))
            .map_err(|e| ModelError::Load(format!("cannot create a llama.cpp context: {e}")))?;
        if let Some(loaded) = adapter.and_then(|p| adapters.get_mut(p)) {
            ctx.lora_adapter_set(loaded, 1.0).map_err(|e| ModelError::Adapter(format!("llama.cpp cannot apply it: {e}")))?;
        }
        let label = adapter.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let mut scheduler = Scheduler::new(model, ctx, self.template.clone(), config, self.heartbeats.clone(), self.stats.clone(), label);
        scheduler.warm_shared_prefix(&config.shared_prefix)?;
        Ok(scheduler)
    }
}

fn context_params(config: &EngineConfig) -> LlamaContextParams {
    let threads = |n: u32| n.max(1) as i32;
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_tokens))
        .with_n_batch(config.batch_tokens)
        .with_n_ubatch(config.batch_tokens)
        .with_n_seq_max(config.parallel + 1)
        .with_kv_unified(true)
        .with_n_threads(threads(config.threads))
        .with_n_threads_batch(threads(config.threads_batch))
        .with_flash_attention_policy(if config.flash_attention {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO
        } else {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
        })
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
fn chat_template(model: &LlamaModel) -> (LlamaChatTemplate, String) {
    let probe = [LlamaChatMessage::new("user".into(), "hi".into()).expect("no NUL")];
    if let Ok(t) = model.chat_template(None) {
        if model.apply_chat_template(&t, &probe, true).is_ok() {
            return (t, "from the model file".into());
        }
        tracing::warn!("the model's chat template is not one llama.cpp knows; using ChatML");
    }
    (LlamaChatTemplate::new("chatml").expect("no NUL"), "chatml (default)".into())
}
