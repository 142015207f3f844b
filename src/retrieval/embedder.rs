//! all-MiniLM-L6-v2 (int8 ONNX) through fastembed, on an ONNX Runtime loaded from `models/`.

use crate::config::RetrievalConfig;
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use sidekick_actors::ports::RetrievalError;
use sidekick_actors::sync::LockExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

pub const DIMENSIONS: usize = 384;

pub struct Embedder {
    model: Mutex<TextEmbedding>,
    /// Names the model, so an index built with another one is noticed.
    pub model_id: String,
}

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
        // 256 tokens: the model's positions stop at 512, and chat lines are short. One thread:
        // ONNX Runtime's thread pool spin-waits between runs, which starves llama.cpp's threads
        // on a small box (measured: 8-channel throughput fell from ~92 to ~62 tokens/s).
        let options = InitOptionsUserDefined::new().with_environment(env).with_max_length(256).with_intra_threads(1);
        let model = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| unavailable(format!("cannot load the embedding model: {e}")))?;
        Ok(Embedder { model: Mutex::new(model), model_id })
    }

    /// Unit-length 384-dimensional embeddings, one per text (fastembed normalises them).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, RetrievalError> {
        let mut model = self.model.lock_or_recover();
        model.embed(texts, Some(16)).map_err(|e| RetrievalError::Embed(e.to_string()))
    }
}
