//! all-MiniLM-L6-v2 (int8 ONNX, rewritten at setup so its weights stay 8-bit: scripts/embedder_q8.py)
//! through fastembed, on an ONNX Runtime loaded from `models/`.

use crate::config::RetrievalConfig;
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use sidekick_actors::ports::RetrievalError;
use sidekick_actors::sync::LockExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

pub const DIMENSIONS: usize = 384;

pub struct Embedder {
    /// One thread: for what arrives while the bot talks (a message, a query).
    live: Mutex<TextEmbedding>,
    /// Every core, made at the first bulk batch (history, a rebuild) and used only while no
    /// reply is being generated; `None` inside until then.
    bulk: Mutex<Option<TextEmbedding>>,
    /// The bulk session's threads: the machine's cores, read once.
    cores: usize,
    config: RetrievalConfig,
    /// Names the model, so an index built with another one is noticed.
    pub model_id: String,
}

/// Batches at least this large are bulk work (the rebuild and import batches are 64).
const BULK_BATCH: usize = 32;
/// Texts per ONNX Runtime run: live batches are small; bulk ones are sorted by length by
/// their callers, so a larger run pads little.
const LIVE_RUN: usize = 16;
const BULK_RUN: usize = 64;

fn unavailable(e: impl std::fmt::Display) -> RetrievalError {
    RetrievalError::Unavailable(e.to_string())
}

/// ONNX Runtime's environment is process-wide: made once, from the first library asked for.
/// `init_from` fails (instead of panicking later) when the library is missing or unusable.
fn runtime(lib: &Path) -> Result<ort::environment::Environment, RetrievalError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    if !lib.is_file() {
        return Err(unavailable(format!(
            "ONNX Runtime library {} not found (retrieval.onnxruntime; `./run.sh setup` installs it)",
            lib.display()
        )));
    }
    ENV.get_or_init(|| {
        let builder = ort::init_from(lib).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
        builder.with_name("sidekick").build().map_err(|e| format!("ONNX Runtime: {e}"))
    })
    .clone()
    .map_err(unavailable)
}

impl Embedder {
    pub fn open(config: &RetrievalConfig) -> Result<Embedder, RetrievalError> {
        let (live, model_id) = session(config, 1)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Embedder { live: Mutex::new(live), bulk: Mutex::new(None), cores, config: config.clone(), model_id })
    }

    /// Unit-length 384-dimensional embeddings, one per text (fastembed normalises them).
    /// A bulk batch uses every core while no reply is being generated, so a history import
    /// does not slow a reply; each batch checks again.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, RetrievalError> {
        if texts.len() >= BULK_BATCH && self.cores > 1 && !crate::llama::generating() {
            let mut bulk = self.bulk.lock_or_recover();
            if bulk.is_none() {
                match session(&self.config, self.cores) {
                    Ok((session, _)) => *bulk = Some(session),
                    Err(e) => tracing::warn!(error = %e, "embedding on one thread"),
                }
            }
            if let Some(session) = bulk.as_mut() {
                return session.embed(texts, Some(BULK_RUN)).map_err(|e| RetrievalError::Embed(e.to_string()));
            }
        }
        let mut model = self.live.lock_or_recover();
        model.embed(texts, Some(LIVE_RUN)).map_err(|e| RetrievalError::Embed(e.to_string()))
    }
}

/// A session of the embedding model on `threads` threads, and the model's id.
fn session(config: &RetrievalConfig, threads: usize) -> Result<(TextEmbedding, String), RetrievalError> {
    let env = runtime(&config.onnxruntime)?;
    let read = |name: &str| {
        let path = config.model_dir.join(name);
        std::fs::read(&path).map_err(|e| unavailable(format!("cannot read {} (retrieval.model_dir): {e}", path.display())))
    };
    let onnx = read("model.onnx")?;
    let model_id = format!("all-MiniLM-L6-v2-int8/{}", onnx.len());
    // Only tokenizer.json ships with the model; fastembed also wants these three, of
    // which it reads the pad token and the maximum length.
    let files = TokenizerFiles {
        tokenizer_file: read("tokenizer.json")?,
        config_file: br#"{"pad_token_id":0}"#.to_vec(),
        special_tokens_map_file:
            br#"{"unk_token":"[UNK]","sep_token":"[SEP]","pad_token":"[PAD]","cls_token":"[CLS]","mask_token":"[MASK]"}"#.to_vec(),
        tokenizer_config_file: br#"{"model_max_length":256,"pad_token":"[PAD]"}"#.to_vec(),
    };
    let model = UserDefinedEmbeddingModel::new(onnx, files).with_pooling(Pooling::Mean);
    // 256 tokens: the model's positions stop at 512, and chat lines are short. The live
    // session has one thread: ONNX Runtime's pool spin-waits between runs, which starves
    // llama.cpp's threads on a small box (measured: 8-channel throughput fell from ~92 to ~62
    // tokens/s). The bulk session's threads do not spin, and it runs only between replies.
    // No arena: ONNX Runtime's CPU arena keeps the largest batch's activations for good
    // (attention over 64 x 256 tokens), which the next run rarely needs; without it they go
    // back to the allocator after each run.
    let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
    let options = InitOptionsUserDefined::new()
        .with_environment(env)
        .with_execution_providers(vec![cpu])
        .with_max_length(256)
        .with_intra_threads(threads)
        .with_session_config("session.intra_op.allow_spinning", "0");
    let model = TextEmbedding::try_new_from_user_defined(model, options)
        .map_err(|e| unavailable(format!("cannot load the embedding model: {e}")))?;
    Ok((model, model_id))
}
