//! Shared by the llama.cpp tests: one backend per process, the base model, the F32 copy.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use sidekick_trainer::BaseModel;

mod served;
pub use served::served;

pub fn backend() -> &'static LlamaBackend {
    static B: OnceLock<LlamaBackend> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = LlamaBackend::init().expect("llama backend");
        b.void_logs();
        b
    })
}

pub fn base() -> Arc<BaseModel> {
    static M: OnceLock<Arc<BaseModel>> = OnceLock::new();
    M.get_or_init(|| Arc::new(BaseModel::load(served()).expect("load base model"))).clone()
}

/// The F32 copy written by the trainer, once per test process.
pub fn f32_copy() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("smollm2-f32.gguf");
        sidekick_trainer::write_f32_copy(served(), &path).expect("write f32 copy");
        (dir, path)
    })
    .1
}

/// Tokenizes with llama.cpp (special tokens parsed, so ChatML markers are single tokens).
pub fn tokenize(text: &str) -> Vec<u32> {
    static M: OnceLock<LlamaModel> = OnceLock::new();
    let model = M.get_or_init(|| LlamaModel::load_from_file(backend(), served(), &LlamaModelParams::default()).expect("model"));
    model.vocab().tokenize(text.as_bytes(), false, true).into_iter().map(|t| t.0 as u32).collect()
}

pub fn chatml(user: &str) -> String {
    format!("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// llama.cpp's log-softmax at every position of `tokens` (flash attention off, F32 KV cache),
/// optionally with a LoRA adapter at scale 1.
pub fn llama_logprobs(model_path: &Path, lora: Option<&Path>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut model = LlamaModel::load_from_file(backend(), model_path, &LlamaModelParams::default()).expect("llama model");
    let mut adapter = lora.map(|p| model.lora_adapter_init(p).expect("llama.cpp loads the adapter"));
    let n = tokens.len() as u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n.max(64)))
        .with_n_batch(n.max(64))
        .with_n_ubatch(n.max(64))
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
        .with_type_k(KvCacheType::F32)
        .with_type_v(KvCacheType::F32);
    let mut ctx = model.new_context(backend(), params).expect("context");
    if let Some(a) = adapter.as_mut() {
        ctx.lora_adapter_set(a, 1.0).expect("set adapter");
    }
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], true).expect("batch add");
    }
    ctx.decode(&mut batch).expect("decode");
    (0..tokens.len())
        .map(|i| {
            let logits = ctx.get_logits_ith(i as i32);
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
            logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
        })
        .collect()
}

/// `Σ log p(reply | prompt)` from llama.cpp.
pub fn llama_reply_logprob(model_path: &Path, lora: Option<&Path>, prompt: &[u32], reply: &[u32]) -> f32 {
    let all: Vec<u32> = prompt.iter().chain(reply).copied().collect();
    let lp = llama_logprobs(model_path, lora, &all[..all.len() - 1]);
    reply.iter().enumerate().map(|(i, &t)| lp[prompt.len() - 1 + i][t as usize]).sum()
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

/// Max |a − b| over all positions and the whole vocabulary.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

/// Max |a − b| over positions, restricted to each position's top-k tokens under `b`.
pub fn max_abs_diff_topk(a: &[Vec<f32>], b: &[Vec<f32>], k: usize) -> f32 {
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(b) {
        let mut idx: Vec<usize> = (0..y.len()).collect();
        idx.sort_by(|&i, &j| y[j].total_cmp(&y[i]));
        for &i in &idx[..k] {
            worst = worst.max((x[i] - y[i]).abs());
        }
    }
    worst
}
