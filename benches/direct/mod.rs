//! llama.cpp driven directly, the serving benchmark's baselines: the same model, context
//! parameters (`sidekick::llama::context_params`), sampler chain and seed as the bot, with
//! nothing of the bot around them.
#![allow(dead_code)]

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use sidekick::config::{Config, ModelThreads};
use sidekick::daemon::engine_config;
use sidekick_actors::params::GenerationParams;
use std::time::{Duration, Instant};

pub struct Direct {
    model: LlamaModel,
    config: Config,
}

/// One sequence's reply: tokens generated, time to the first, time in all.
pub struct Reply {
    pub tokens: usize,
    pub first: Duration,
    pub total: Duration,
}

impl Reply {
    /// Tokens per second after the first (the generation rate, as the bot's is measured).
    pub fn rate(&self) -> f64 {
        self.tokens.saturating_sub(1) as f64 / (self.total - self.first).as_secs_f64()
    }
}

/// What [`Direct::batch`] measured.
pub struct Batch {
    pub replies: Vec<Reply>,
    /// Prompt tokens read (those not shared with the system prompt).
    pub new_tokens: usize,
    /// Time to read them all.
    pub read: Duration,
    /// The median time of one decoding step of all running replies.
    pub step: Duration,
    pub wall: Duration,
}

impl Batch {
    pub fn tokens(&self) -> usize {
        self.replies.iter().map(|r| r.tokens).sum()
    }
}

impl Direct {
    pub fn load(config: &Config) -> Direct {
        let backend = sidekick::llama::backend().unwrap();
        let model = LlamaModel::load_from_file(backend, &config.model.path, &LlamaModelParams::default()).unwrap();
        Direct { model, config: config.clone() }
    }

    /// A context as the bot's engine makes it, with `threads` for every step.
    pub fn context(&self, threads: u32) -> LlamaContext<'_> {
        let mut config = self.config.clone();
        config.model.threads = ModelThreads::Fixed(threads);
        config.model.threads_batch = threads;
        let params = sidekick::llama::context_params(&engine_config(&config));
        self.model.new_context(sidekick::llama::backend().unwrap(), params).unwrap()
    }

    fn tokens(&self, prompt: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(prompt.as_bytes(), true, true)
    }

    /// One reply to `prompt` (the exact text the bot gave its model), read whole.
    pub fn reply(&self, prompt: &str, params: &GenerationParams, seed: u32, threads: u32) -> Reply {
        self.batch(&[prompt.to_string()], None, params, seed, threads).replies.remove(0)
    }

    /// Replies to all `prompts` at once, one sequence each, every step one batch: prompts
    /// read in chunks of `model.batch_tokens`, then one token per unfinished reply per step.
    /// What every prompt shares with `shared_with` (the system prompt, which the bot decodes
    /// once at start) is decoded before the clock starts and copied to each sequence, as the
    /// bot's engine does.
    pub fn batch(&self, prompts: &[String], shared_with: Option<&str>, params: &GenerationParams, seed: u32, threads: u32) -> Batch {
        let mut ctx = self.context(threads);
        let chunk = self.config.model.batch_tokens as usize;
        let mut batch = LlamaBatch::new(chunk.max(prompts.len()), 1);
        let all: Vec<Vec<LlamaToken>> = prompts.iter().map(|p| self.tokens(p)).collect();
        let shared = shared_with.map_or(0, |other| {
            let other = self.tokens(other);
            // At least one token of each prompt is read, as the engine leaves one.
            all.iter().map(|t| t.iter().zip(&other).take_while(|(a, b)| a == b).count().min(t.len() - 1)).min().unwrap_or(0)
        });
        for (c, part) in all[0][..shared].chunks(chunk).enumerate() {
            batch.clear();
            for (i, t) in part.iter().enumerate() {
                batch.add(*t, (c * chunk + i) as i32, &[0], false).unwrap();
            }
            ctx.decode(&mut batch).unwrap();
        }
        for seq in 0..prompts.len() {
            ctx.kv_cache_seq_cp(0, seq as i32 + 1, Some(0), Some(shared as u32)).unwrap();
        }
        let started = Instant::now();
        let mut samplers: Vec<_> = prompts.iter().map(|_| sidekick::llama::sampler(&self.model, params, seed)).collect();
        // (sequence, position, token, wants logits)
        let mut feed: Vec<(usize, i32, LlamaToken, bool)> = Vec::new();
        for (seq, tokens) in all.iter().enumerate() {
            let last = tokens.len() - 1;
            feed.extend(tokens.iter().enumerate().skip(shared).map(|(i, t)| (seq, i as i32, *t, i == last)));
        }
        let new_tokens = feed.len();
        let mut positions: Vec<i32> = vec![0; prompts.len()];
        let mut replies: Vec<Reply> = prompts.iter().map(|_| Reply { tokens: 0, first: Duration::ZERO, total: Duration::ZERO }).collect();
        // Each sequence's next token, sampled as soon as its logits exist (llama.cpp keeps
        // only the last decode's logits); `None` once it has finished.
        let mut next: Vec<Option<LlamaToken>> = vec![None; prompts.len()];
        let mut sample = |seq: usize, at: i32, ctx: &LlamaContext, next: &mut Vec<Option<LlamaToken>>| {
            let token = samplers[seq].sample(ctx, at);
            let reply = &mut replies[seq];
            if self.model.vocab().is_eog(token) {
                reply.total = started.elapsed();
                return;
            }
            if reply.tokens == 0 {
                reply.first = started.elapsed();
            }
            reply.tokens += 1;
            if reply.tokens == params.max_tokens as usize {
                reply.total = started.elapsed();
                return;
            }
            next[seq] = Some(token);
        };
        for part in feed.chunks(chunk) {
            batch.clear();
            let mut ends = Vec::new();
            for &(seq, pos, token, logits) in part {
                batch.add(token, pos, &[seq as i32 + 1], logits).unwrap();
                positions[seq] = pos + 1;
                if logits {
                    ends.push((seq, batch.n_tokens() - 1));
                }
            }
            ctx.decode(&mut batch).unwrap();
            for (seq, at) in ends {
                sample(seq, at, &ctx, &mut next);
            }
        }
        let read = started.elapsed();
        let mut steps = Vec::new();
        loop {
            let feeding: Vec<(usize, LlamaToken)> = next.iter_mut().enumerate().filter_map(|(seq, t)| Some((seq, t.take()?))).collect();
            if feeding.is_empty() {
                break;
            }
            batch.clear();
            for &(seq, token) in &feeding {
                batch.add(token, positions[seq], &[seq as i32 + 1], true).unwrap();
                positions[seq] += 1;
            }
            let step = Instant::now();
            ctx.decode(&mut batch).unwrap();
            steps.push(step.elapsed().as_secs_f64());
            for (i, &(seq, _)) in feeding.iter().enumerate() {
                sample(seq, i as i32, &ctx, &mut next);
            }
        }
        steps.sort_by(f64::total_cmp);
        let step = Duration::from_secs_f64(steps.get(steps.len() / 2).copied().unwrap_or_default());
        let wall = started.elapsed();
        Batch { replies, new_tokens, read, step, wall }
    }

    /// How many tokens `text` is.
    pub fn count(&self, text: &str) -> usize {
        self.tokens(text).len()
    }
}
