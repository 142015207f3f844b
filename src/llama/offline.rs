//! llama.cpp outside the serving loop, for the commands that read or score text in bulk
//! (`sidekick train` tokenizes examples, `sidekick eval` scores and writes replies): the same
//! model file, chat template, tokenization and sampler as serving, with any adapters applied
//! at their scales, in a context of its own.

use super::engine::{backend, chat_template};
use super::render::render;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use sidekick_actors::params::GenerationParams;
use sidekick_actors::ports::ModelError;
use sidekick_actors::prompt::{ChatTurn, Role};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

/// The model file with its chat template, and adapters loaded into it.
pub struct OfflineModel {
    model: LlamaModel,
    template: LlamaChatTemplate,
    adapter: Option<(LlamaLoraAdapter, f32)>,
    /// Holds the file that combines several adapters while it is in use.
    _combined: Option<tempfile::TempDir>,
}

fn load_error(path: &Path) -> impl FnOnce(String) -> ModelError + '_ {
    move |e| ModelError::Load(format!("{}: {e}", path.display()))
}

impl OfflineModel {
    /// The model at `path` with `adapters` (file, scale) applied to every context it opens.
    pub fn open(path: &Path, adapters: &[(PathBuf, f32)]) -> Result<OfflineModel, ModelError> {
        let backend = backend()?;
        let mut model =
            LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| load_error(path)(e.to_string()))?;
        // llama-cpp-2 applies one adapter per context: several are combined into one file.
        let (file, scale, combined) = match adapters {
            [] => return Ok(Self::with(model, None, None)),
            [(file, scale)] => (file.clone(), *scale, None),
            several => {
                let dir = tempfile::tempdir().map_err(|e| ModelError::Adapter(e.to_string()))?;
                let file = dir.path().join("combined.gguf");
                let parts: Vec<(&Path, f32)> = several.iter().map(|(p, s)| (p.as_path(), *s)).collect();
                sidekick_trainer::combine_adapters(&parts, &file).map_err(|e| ModelError::Adapter(e.to_string()))?;
                (file, 1.0, Some(dir))
            }
        };
        let adapter = model.lora_adapter_init(&file).map_err(|e| ModelError::Adapter(format!("{}: {e}", file.display())))?;
        Ok(Self::with(model, Some((adapter, scale)), combined))
    }

    fn with(model: LlamaModel, adapter: Option<(LlamaLoraAdapter, f32)>, combined: Option<tempfile::TempDir>) -> OfflineModel {
        let (template, _) = chat_template(&model);
        OfflineModel { model, template, adapter, _combined: combined }
    }

    /// A prompt's tokens and its last turn's (the reply, with the template's end of turn):
    /// `turns` ends with the assistant's turn.
    pub fn prompt_and_reply(&self, turns: &[ChatTurn]) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
        let Some((last, before)) = turns.split_last().filter(|(l, _)| l.role == Role::Assistant) else {
            return Err(ModelError::Decode("an example must end with the assistant's turn".into()));
        };
        let _ = last;
        let (_, prompt) = render(&self.model, &self.template, before, true)?;
        let (_, whole) = render(&self.model, &self.template, turns, false)?;
        if whole.len() <= prompt.len() || whole[..prompt.len()] != prompt[..] {
            return Err(ModelError::Decode("the chat template does not extend the prompt with the reply".into()));
        }
        let ids = |t: &[LlamaToken]| t.iter().map(|t| t.0 as u32).collect::<Vec<u32>>();
        Ok((ids(&prompt), ids(&whole[prompt.len()..])))
    }

    /// The tokens of `turns` as a prompt to answer.
    pub fn prompt(&self, turns: &[ChatTurn]) -> Result<Vec<u32>, ModelError> {
        let (_, tokens) = render(&self.model, &self.template, turns, true)?;
        Ok(tokens.iter().map(|t| t.0 as u32).collect())
    }

    /// A context for up to `n_ctx` tokens on `threads` threads.
    pub fn session(&mut self, n_ctx: u32, threads: u32) -> Result<Session<'_>, ModelError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_ubatch(n_ctx.min(512))
            .with_n_threads(threads.max(1) as i32)
            .with_n_threads_batch(threads.max(1) as i32);
        let mut ctx = self.model.new_context(backend()?, params).map_err(|e| ModelError::Load(format!("a llama.cpp context: {e}")))?;
        if let Some((adapter, scale)) = self.adapter.as_mut() {
            ctx.lora_adapter_set(adapter, *scale).map_err(|e| ModelError::Adapter(e.to_string()))?;
        }
        Ok(Session { model: &self.model, ctx, n_ctx: n_ctx as usize, cached: Vec::new() })
    }
}

/// One context: score replies, or write them.
pub struct Session<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    n_ctx: usize,
    /// The tokens in the KV cache: the next request reuses the prefix it shares with them
    /// (every example starts with the same system prompt, a third of its tokens).
    cached: Vec<u32>,
}

impl Session<'_> {
    /// `Σ log p(reply | prompt)` and the reply's length, the prompt cut from the left to fit.
    pub fn reply_logprob(&mut self, prompt: &[u32], reply: &[u32]) -> Result<(f64, usize), ModelError> {
        if reply.is_empty() || reply.len() + 1 > self.n_ctx {
            return Err(ModelError::PromptTooLong { tokens: prompt.len() + reply.len(), limit: self.n_ctx });
        }
        let keep = (self.n_ctx - reply.len()).min(prompt.len()).max(1);
        let prompt = &prompt[prompt.len() - keep..];
        let tokens: Vec<u32> = prompt.iter().chain(&reply[..reply.len() - 1]).copied().collect();
        // The logits from the prompt's last token on are needed, so that one is decoded again.
        let reused = self.reuse_prefix(&tokens, prompt.len() - 1)?;
        let mut batch = LlamaBatch::new(tokens.len() - reused, 1);
        for (i, &t) in tokens.iter().enumerate().skip(reused) {
            batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 >= prompt.len()).map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        self.ctx.decode(&mut batch).map_err(|e| ModelError::Decode(e.to_string()))?;
        self.cached = tokens;
        let mut total = 0f64;
        for (j, &target) in reply.iter().enumerate() {
            let logits = self.ctx.get_logits_ith((prompt.len() - 1 + j - reused) as i32);
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
            total += logits[target as usize] as f64 - lse;
        }
        Ok((total, reply.len()))
    }

    /// Keeps the cached tokens `tokens` starts with (at most `limit`), drops the rest from
    /// the KV cache, and says how many were kept.
    fn reuse_prefix(&mut self, tokens: &[u32], limit: usize) -> Result<usize, ModelError> {
        let shared = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count().min(limit);
        if shared == 0 {
            self.ctx.clear_kv_cache();
        } else {
            self.ctx.clear_kv_cache_seq(Some(0), Some(shared as u32), None).map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        self.cached.truncate(shared);
        Ok(shared)
    }

    /// A reply to `prompt` with the serving sampler, at most `max_tokens` long.
    pub fn generate(&mut self, prompt: &[u32], params: &GenerationParams, seed: u32) -> Result<String, ModelError> {
        let room = self.n_ctx.saturating_sub(params.max_tokens as usize + 1);
        let prompt = &prompt[prompt.len().saturating_sub(room)..];
        let reused = self.reuse_prefix(prompt, prompt.len().saturating_sub(1))?;
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        for (i, &t) in prompt.iter().enumerate().skip(reused) {
            batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 == prompt.len()).map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        self.ctx.decode(&mut batch).map_err(|e| ModelError::Decode(e.to_string()))?;
        let mut sampler = super::scheduler::sampler(self.model, params, seed);
        // Bytes, since one character may span two tokens.
        let mut text: Vec<u8> = Vec::new();
        for pos in (prompt.len() as i32..).take(params.max_tokens as usize) {
            let token = sampler.sample(&self.ctx, batch.n_tokens() - 1);
            if self.model.vocab().is_eog(token) {
                break;
            }
            text.extend(self.model.vocab().token_to_piece(token, false, None));
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(|e| ModelError::Decode(e.to_string()))?;
            self.ctx.decode(&mut batch).map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        // The sampled tokens are in the cache too; only the prompt is known to be reusable.
        self.cached = prompt.to_vec();
        let _ = self.ctx.clear_kv_cache_seq(Some(0), Some(prompt.len() as u32), None);
        Ok(String::from_utf8_lossy(&text).trim().to_string())
    }
}
