//! One round of serving: the llama.cpp context, its sequences, and the shared batch every
//! running reply advances in by one step.

use super::engine::{EngineCmd, Served, Swap};
use super::slots::{choose_slot, plan_reuse, Reuse};
use super::threads::AutoThreads;
use super::EngineConfig;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use sidekick_actors::metric_names as m;
use sidekick_actors::params::GenerationParams;
use sidekick_actors::ports::{EngineStats, FinishReason, GenEvent, GenerationJob, ModelError};
use sidekick_actors::prompt::{turns_to_drop, ChatTurn, Role};
use sidekick_actors::stream_text::{TextStream, DEFAULT_STOPS};
use sidekick_actors::sync::LockExt;
use sidekick_actors::watchdog::Heartbeats;
use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

struct Active {
    job: GenerationJob,
    sampler: LlamaSampler,
    /// Tokens to feed at the next step: the rest of the prompt, or the last sampled token.
    pending: Vec<LlamaToken>,
    in_batch: usize,
    logits_at: Option<i32>,
    generated: usize,
    max_new: usize,
    text: TextStream,
    /// Every token sampled, for the reply journal.
    sampled: Vec<u32>,
}

#[derive(Default)]
struct Slot {
    key: Option<String>,
    /// Tokens of this sequence that are in the KV cache, in position order.
    cached: Vec<LlamaToken>,
    last_used: u64,
    active: Option<Active>,
}

pub(super) struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    batch: LlamaBatch<'static>,
    /// Sequence i lives in slot i; slot 0 holds the shared prefix and never runs a job.
    slots: Vec<Slot>,
    pub(super) waiting: VecDeque<GenerationJob>,
    tick: u64,
    per_sequence: usize,
    batch_tokens: usize,
    context_tokens: usize,
    parallel: usize,
    heartbeats: Heartbeats,
    stats: Arc<Mutex<EngineStats>>,
    prefix_reuse: bool,
    /// The adapter this context serves (file name), reported with each reply.
    adapter: Option<String>,
    /// A swap asked for: no new admissions until the running replies finish.
    swap: Option<Swap>,
    /// `model.threads = auto`: the thread count, tuned by timing generation steps.
    auto_threads: Option<AutoThreads>,
    /// The count the context was made with.
    threads: u32,
}

impl<'m> Scheduler<'m> {
    pub(super) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        template: LlamaChatTemplate,
        config: &EngineConfig,
        heartbeats: Heartbeats,
        stats: Arc<Mutex<EngineStats>>,
        adapter: Option<String>,
    ) -> Self {
        let parallel = config.parallel.max(1) as usize;
        let auto_threads = match config.threads {
            crate::config::ModelThreads::Auto => AutoThreads::new(&ctx, config.threads.initial()),
            crate::config::ModelThreads::Fixed(_) => None,
        };
        Self {
            model,
            ctx,
            template,
            batch: LlamaBatch::new(config.batch_tokens as usize, 1),
            slots: (0..=parallel).map(|_| Slot::default()).collect(),
            waiting: VecDeque::new(),
            tick: 0,
            per_sequence: config.context_tokens as usize / parallel,
            batch_tokens: config.batch_tokens as usize,
            context_tokens: config.context_tokens as usize,
            parallel,
            heartbeats,
            stats,
            prefix_reuse: config.prefix_reuse,
            adapter,
            swap: None,
            auto_threads,
            threads: config.threads.initial(),
        }
    }

    /// The prompt text for `turns` and its tokens, markup as control tokens and text as text.
    fn render(&self, turns: &[ChatTurn], add_assistant: bool) -> Result<(String, Vec<LlamaToken>), ModelError> {
        super::render::render(self.model, &self.template, turns, add_assistant)
    }

    /// Decodes the shared prefix into sequence 0, once.
    pub(super) fn warm_shared_prefix(&mut self, turns: &[ChatTurn]) -> Result<(), ModelError> {
        if turns.is_empty() {
            return Ok(());
        }
        let (_, tokens) = self.render(turns, false)?;
        for (i, chunk) in tokens.chunks(self.batch_tokens).enumerate() {
            self.batch.clear();
            for (j, token) in chunk.iter().enumerate() {
                let pos = (i * self.batch_tokens + j) as i32;
                self.batch.add(*token, pos, &[0], false).map_err(|e| ModelError::Decode(e.to_string()))?;
            }
            self.ctx.decode(&mut self.batch).map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        // The shared prefix's cells are counted once; the rest is split between sequences.
        self.per_sequence = self.context_tokens.saturating_sub(tokens.len()) / self.parallel;
        self.slots[0].cached = tokens;
        Ok(())
    }

    pub(super) fn serve(&mut self, inbox: &mpsc::Receiver<EngineCmd>) -> Served {
        let mut deadline: Option<Instant> = None;
        loop {
            let busy = self.active_count() > 0 || !self.waiting.is_empty();
            self.heartbeats.beat("model", busy);
            // Before possibly blocking, so the gauges never show work that has ended.
            self.publish_gauges();
            let first = if busy {
                inbox.try_recv().ok()
            } else {
                match inbox.recv_timeout(Duration::from_secs(1)) {
                    Ok(cmd) => Some(cmd),
                    // Draining: the last reply just ended, so go on to the deadline check
                    // (waiting here for a command that never comes hung SIGTERM for good).
                    Err(mpsc::RecvTimeoutError::Timeout) if deadline.is_some() => None,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(EngineCmd::Shutdown { deadline: Instant::now() }),
                }
            };
            for cmd in first.into_iter().chain(std::iter::from_fn(|| inbox.try_recv().ok())) {
                match cmd {
                    EngineCmd::Job(job) => self.waiting.push_back(job),
                    EngineCmd::Measure { turns, done } => {
                        let _ = done.send(self.render(&turns, false).map(|(_, tokens)| tokens.len()));
                    }
                    EngineCmd::Swap(later) => match self.swap.as_mut() {
                        Some(pending) => pending.merge(later),
                        None => self.swap = Some(later),
                    },
                    EngineCmd::Shutdown { deadline: d } => deadline = Some(deadline.map_or(d, |old| old.min(d))),
                }
            }
            if let Some(deadline) = deadline {
                for job in self.waiting.drain(..) {
                    let _ = job.events.send(GenEvent::Failed(ModelError::Unavailable));
                }
                if self.active_count() == 0 || Instant::now() >= deadline {
                    for idx in 1..self.slots.len() {
                        self.finish(idx, FinishReason::Shutdown);
                    }
                    self.publish_gauges();
                    if let Some(swap) = self.swap.take() {
                        swap.answer(&Err(ModelError::Unavailable));
                    }
                    return Served::Shutdown;
                }
            }
            if self.swap.is_some() && self.active_count() == 0 {
                return Served::Swap(self.swap.take().expect("checked"));
            }
            if self.swap.is_none() {
                self.admit();
            }
            self.publish_gauges();
            if self.active_count() > 0 {
                self.step();
            }
        }
    }

    fn active_count(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    fn publish_gauges(&self) {
        let in_flight = self.active_count();
        metrics::gauge!(m::QUEUE_DEPTH).set(self.waiting.len() as f64);
        metrics::gauge!(m::INFLIGHT_SEQUENCES).set(in_flight as f64);
        super::GENERATING.store(in_flight, std::sync::atomic::Ordering::Relaxed);
        let mut stats = self.stats.lock_or_recover();
        stats.waiting = self.waiting.len();
        stats.in_flight = in_flight;
        stats.sequence_tokens = self.per_sequence;
        stats.threads = self.auto_threads.as_ref().map_or(self.threads, |a| a.threads());
    }

    fn admit(&mut self) {
        while let Some(job) = self.waiting.pop_front() {
            if job.cancel.is_cancelled() || job.events.is_closed() {
                continue;
            }
            let view: Vec<_> = self.slots[1..].iter().map(|s| (s.key.as_deref(), s.last_used, s.active.is_some())).collect();
            let Some(free) = choose_slot(&job.slot, &view) else {
                self.waiting.push_front(job);
                return;
            };
            self.start(free + 1, job);
        }
    }

    /// Formats the job's turns, dropping the oldest until prompt and reply fit a sequence.
    fn prepare(&self, job: &GenerationJob) -> Result<(String, Vec<LlamaToken>, usize), ModelError> {
        let room_for_reply = (job.params.max_tokens as usize).min(self.per_sequence / 2);
        let budget = self.per_sequence - room_for_reply;
        let has_system = job.turns.first().is_some_and(|t| t.role == Role::System);
        let mut dropped = 0;
        let mut first_try = true;
        loop {
            let turns: Vec<ChatTurn> = match has_system {
                true => job.turns[..1].iter().chain(&job.turns[1 + dropped..]).cloned().collect(),
                false => job.turns[dropped..].to_vec(),
            };
            let (prompt, tokens) = self.render(&turns, true)?;
            if tokens.len() <= budget {
                return Ok((prompt, tokens, dropped));
            }
            let conversation = job.turns.len() - usize::from(has_system);
            if first_try {
                // Estimate each turn's cost once, then confirm by formatting for real.
                first_try = false;
                let costs: Vec<usize> = job
                    .turns
                    .iter()
                    .map(|t| self.render(std::slice::from_ref(t), false).map(|(_, tokens)| tokens.len()))
                    .collect::<Result<_, _>>()?;
                if let Some(estimate) = turns_to_drop(&costs, has_system, budget) {
                    dropped = estimate.max(1);
                    continue;
                }
            }
            if dropped + 1 >= conversation {
                return Err(ModelError::PromptTooLong { tokens: tokens.len(), limit: budget });
            }
            dropped += 1;
        }
    }

    fn start(&mut self, idx: usize, job: GenerationJob) {
        self.tick += 1;
        tracing::trace!(slot = idx, key = %job.slot, "admit");
        let (prompt, tokens, dropped) = match self.prepare(&job) {
            Ok(v) => v,
            Err(e) => {
                let _ = job.events.send(GenEvent::Failed(e));
                return;
            }
        };
        let cached: Vec<&[LlamaToken]> = self.slots.iter().map(|s| s.cached.as_slice()).collect();
        let plan = if self.prefix_reuse { plan_reuse(&tokens, idx, &cached) } else { Reuse::Own(0) };
        let reused = match plan {
            Reuse::Own(n) => {
                self.remove_from(idx, n);
                n
            }
            Reuse::Copy { from, n } => {
                self.remove_from(idx, 0);
                let _ = self.ctx.kv_cache_seq_cp(from as i32, idx as i32, Some(0), Some(n as u32));
                self.slots[idx].cached = self.slots[from].cached[..n].to_vec();
                n
            }
        };
        metrics::counter!(m::PROMPT_TOKENS).increment(tokens.len() as u64);
        metrics::counter!(m::PROMPT_TOKENS_REUSED).increment(reused as u64);
        let prompt_ids = tokens.iter().map(|t| t.0 as u32).collect();
        let _ = job.events.send(GenEvent::Started {
            prompt,
            prompt_tokens: tokens.len(),
            reused_tokens: reused,
            dropped_turns: dropped,
            prompt_ids,
            adapter: self.adapter.clone(),
        });
        let max_new = (job.params.max_tokens as usize).min(self.per_sequence.saturating_sub(tokens.len())).max(1);
        let slot = &mut self.slots[idx];
        slot.key = Some(job.slot.clone());
        slot.last_used = self.tick;
        slot.active = Some(Active {
            sampler: sampler(self.model, &job.params, job.seed),
            pending: tokens[reused..].to_vec(),
            in_batch: 0,
            logits_at: None,
            generated: 0,
            max_new,
            text: TextStream::new(DEFAULT_STOPS),
            sampled: Vec::new(),
            job,
        });
    }

    /// Drops sequence `idx`'s cache from position `from` on.
    fn remove_from(&mut self, idx: usize, from: usize) {
        let _ = self.ctx.kv_cache_seq_rm(idx as i32, Some(from as u32), None);
        self.slots[idx].cached.truncate(from);
    }

    /// One decode of one batch holding the next tokens of every running sequence.
    fn step(&mut self) {
        super::stall_if_injected();
        self.batch.clear();
        let mut room = self.batch_tokens;
        let n = self.slots.len() - 1;
        // Rotate who goes first so long prompts cannot starve the others of batch room.
        for k in 0..n {
            let idx = 1 + (k + self.tick as usize) % n;
            let slot = &mut self.slots[idx];
            let Some(active) = slot.active.as_mut() else { continue };
            let take = active.pending.len().min(room);
            active.in_batch = take;
            active.logits_at = None;
            for (j, token) in active.pending[..take].iter().enumerate() {
                let last = j + 1 == active.pending.len();
                let pos = (slot.cached.len() + j) as i32;
                self.batch.add(*token, pos, &[idx as i32], last).expect("batch sized to batch_tokens");
                if last {
                    active.logits_at = Some(self.batch.n_tokens() - 1);
                }
            }
            room -= take;
        }
        self.tick += 1;
        if self.batch.n_tokens() == 0 {
            return;
        }
        {
            let together = self.slots.iter().filter(|s| s.active.as_ref().is_some_and(|a| a.in_batch > 0)).count();
            let mut stats = self.stats.lock_or_recover();
            stats.decode_steps += 1;
            stats.peak_sequences_per_batch = stats.peak_sequences_per_batch.max(together);
        }
        // A generation step has one token per reply; prompt steps are timed apart from them.
        let generating = self.auto_threads.is_some() && self.slots.iter().filter_map(|s| s.active.as_ref()).all(|a| a.in_batch <= 1);
        if let Some(auto) = self.auto_threads.as_mut() {
            auto.before_step();
        }
        let decode_started = Instant::now();
        let decoded = self.ctx.decode(&mut self.batch);
        let took = decode_started.elapsed();
        tracing::trace!(tokens = self.batch.n_tokens(), ms = took.as_millis() as u64, "decode");
        if let (Some(auto), true, Ok(())) = (self.auto_threads.as_mut(), generating, &decoded) {
            auto.after_step(self.batch.n_tokens() as usize, took);
        }
        match decoded {
            Ok(()) => {}
            Err(DecodeError::NoKvCacheSlot) => {
                self.free_cache_space();
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "llama_decode failed");
                m::count_error("decode");
                for idx in 1..self.slots.len() {
                    if let Some(active) = self.slots[idx].active.take() {
                        let _ = active.job.events.send(GenEvent::Failed(ModelError::Decode(e.to_string())));
                        self.remove_from(idx, 0);
                    }
                }
                return;
            }
        }
        for idx in 1..self.slots.len() {
            let slot = &mut self.slots[idx];
            let Some(active) = slot.active.as_mut() else { continue };
            slot.cached.extend(active.pending.drain(..active.in_batch));
            active.in_batch = 0;
            let Some(at) = active.logits_at.take() else { continue };
            let token = active.sampler.sample(&self.ctx, at);
            active.sampled.push(token.0 as u32);
            if self.model.vocab().is_eog(token) {
                self.finish(idx, FinishReason::EndOfTurn);
                continue;
            }
            let piece = self.model.vocab().token_to_piece(token, false, None);
            let active = self.slots[idx].active.as_mut().expect("checked above");
            active.generated += 1;
            metrics::counter!(m::TOKENS_GENERATED).increment(1);
            let shown = active.text.push(&piece);
            if !shown.is_empty() {
                let _ = active.job.events.send(GenEvent::Token(shown));
            }
            if active.text.stopped() {
                self.finish(idx, FinishReason::EndOfTurn);
            } else if active.generated >= active.max_new {
                self.finish(idx, FinishReason::MaxTokens);
            } else {
                active.pending.push(token);
            }
        }
        for idx in 1..self.slots.len() {
            if let Some(active) = &self.slots[idx].active {
                if active.job.cancel.is_cancelled() || active.job.events.is_closed() {
                    self.finish(idx, FinishReason::Cancelled);
                }
            }
        }
    }

    /// The KV cache is full: evict the least recently used idle sequence, or, when every
    /// sequence is running, end the one holding the most cells.
    fn free_cache_space(&mut self) {
        let idle = (1..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none() && !self.slots[i].cached.is_empty())
            .min_by_key(|&i| self.slots[i].last_used);
        if let Some(idx) = idle {
            self.remove_from(idx, 0);
            self.slots[idx].key = None;
            return;
        }
        let biggest = (1..self.slots.len()).filter(|&i| self.slots[i].active.is_some()).max_by_key(|&i| self.slots[i].cached.len());
        if let Some(idx) = biggest {
            m::count_error("context_full");
            self.finish(idx, FinishReason::ContextFull);
        }
    }

    fn finish(&mut self, idx: usize, reason: FinishReason) {
        let Some(mut active) = self.slots[idx].active.take() else { return };
        let rest = active.text.finish();
        if !rest.is_empty() {
            let _ = active.job.events.send(GenEvent::Token(rest));
        }
        let reply_ids = std::mem::take(&mut active.sampled);
        let _ = active.job.events.send(GenEvent::Finished { tokens: active.generated, reason, reply_ids });
        self.slots[idx].last_used = self.tick;
        // A finished reply's cache stays for the channel's next turn; an interrupted one
        // may be half-written, so it goes.
        if !matches!(reason, FinishReason::EndOfTurn | FinishReason::MaxTokens) {
            self.remove_from(idx, 0);
            self.slots[idx].key = None;
        }
    }
}

/// The seed's sampler chain: repeat penalty, top-k, top-p, temperature, then a seeded draw.
pub fn sampler(model: &LlamaModel, params: &GenerationParams, seed: u32) -> LlamaSampler {
    let mut chain = vec![
        LlamaSampler::penalties(model.n_vocab(), 64, params.repeat_penalty, 0.0, 0.0),
        LlamaSampler::top_k(params.top_k as i32),
        LlamaSampler::top_p(params.top_p, 1),
    ];
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(seed));
    }
    LlamaSampler::chain_simple(chain)
}
