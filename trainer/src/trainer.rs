//! REINFORCE with a running baseline on LoRA weights, Adam with decoupled decay.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};
use crate::lora::{LoraConfig, LoraWeights, Target};
use crate::model::{log_softmax_last, BaseModel};

/// One piece of feedback: the reply the model gave to `prompt`, and how good it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub prompt: Vec<u32>,
    pub reply: Vec<u32>,
    pub reward: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Policy loss `−mean(advantage · mean_token_logprob)` plus the decay penalty `½·wd·Σ‖B‖²`.
    pub loss: f32,
    pub mean_advantage: f32,
    /// Tokens run through the model (prompt + reply, after truncation).
    pub tokens: usize,
    pub seconds: f64,
    /// Steps taken so far, this one included.
    pub step: u64,
    /// Gradient norm before clipping.
    pub grad_norm: f32,
    /// The reward baseline after this step.
    pub baseline: f32,
}

/// What a caller persists to resume training exactly (also stored in written adapters).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainerState {
    pub baseline: f32,
    pub step: u64,
}

/// A LoRA adapter under training. `Send`: keep it on a background thread.
pub struct Trainer {
    pub(crate) base: Arc<BaseModel>,
    pub(crate) cfg: LoraConfig,
    pub(crate) lora: LoraWeights,
    /// Adam moments, one `(m, v)` per A and per B, in `lora.pairs` order.
    pub(crate) adam: Vec<(Tensor, Tensor)>,
    pub(crate) adam_t: i32,
    pub(crate) state: TrainerState,
    pub(crate) pool: Arc<rayon::ThreadPool>,
    /// Data-parallel workers for batches of several examples (none with one thread).
    pub(crate) workers: Arc<crate::parallel::Workers>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl Trainer {
    /// A fresh adapter: A random from `seed`, B zero, so it starts equal to the base.
    pub fn new(base: Arc<BaseModel>, cfg: LoraConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let lora = LoraWeights::new(&base, &cfg, seed)?;
        Self::with_weights(base, cfg, lora, TrainerState::default())
    }

    pub(crate) fn with_weights(base: Arc<BaseModel>, cfg: LoraConfig, lora: LoraWeights, state: TrainerState) -> Result<Self> {
        let mut adam = Vec::with_capacity(lora.pairs.len() * 2);
        for (_, _, a, b) in &lora.pairs {
            for p in [a, b] {
                adam.push((p.as_tensor().zeros_like()?, p.as_tensor().zeros_like()?));
            }
        }
        let pool = Arc::new(crate::threads::build_pool(cfg.threads)?);
        let workers = Arc::new(crate::parallel::Workers::new(cfg.threads)?);
        Ok(Self { base, cfg, lora, adam, adam_t: 0, state, pool, workers })
    }

    pub fn config(&self) -> &LoraConfig {
        &self.cfg
    }

    pub fn base(&self) -> &Arc<BaseModel> {
        &self.base
    }

    pub fn state(&self) -> TrainerState {
        self.state
    }

    /// Restores the baseline and step counter (e.g. kept by the caller across restarts).
    pub fn set_state(&mut self, state: TrainerState) {
        self.state = state;
    }

    /// Log-softmax over the vocabulary at every position (row i predicts token i+1).
    pub fn next_token_logprobs(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.pool.install(|| {
            let lt = self.lora.tensors(self.base.config().n_layer, self.cfg.scale(), false);
            let logits = self.base.forward(tokens, Some(&lt), 0)?;
            Ok(log_softmax_last(&logits)?.to_vec2::<f32>()?)
        })
    }

    /// `Σ log p(reply_i | prompt, reply_<i)` under base + adapter (no truncation).
    pub fn reply_logprob(&self, prompt: &[u32], reply: &[u32]) -> Result<f32> {
        check_pair(prompt, reply)?;
        self.pool.install(|| {
            let lt = self.lora.tensors(self.base.config().n_layer, self.cfg.scale(), false);
            let lp = self.reply_token_logprobs(prompt, reply, &lt)?;
            Ok(lp.sum_all()?.to_scalar::<f32>()?)
        })
    }

    /// One REINFORCE step over `batch` (samples weigh equally, whatever their length).
    pub fn step(&mut self, batch: &[Sample]) -> Result<StepReport> {
        if batch.is_empty() {
            return Err(TrainError::InvalidSample("empty batch".into()));
        }
        for s in batch {
            check_pair(&s.prompt, &s.reply)?;
            if !s.reward.is_finite() {
                return Err(TrainError::InvalidSample(format!("reward {} is not finite", s.reward)));
            }
            self.base.check_tokens(&s.prompt)?;
            self.base.check_tokens(&s.reply)?;
        }
        let pool = Arc::clone(&self.pool);
        let saved = self.state;
        let result = pool.install(|| self.step_inner(batch));
        if result.is_err() {
            self.state = saved; // a failed step leaves no trace
        }
        result
    }

    fn step_inner(&mut self, batch: &[Sample]) -> Result<StepReport> {
        let start = Instant::now();
        let n_layer = self.base.config().n_layer;
        let lt = self.lora.tensors(n_layer, self.cfg.scale(), true);
        let params: Vec<Tensor> = self.lora.pairs.iter().flat_map(|(_, _, a, b)| [a.as_tensor().clone(), b.as_tensor().clone()]).collect();
        let momentum = self.cfg.baseline_momentum;
        // Each sample's advantage is against the baseline before it (a fresh trainer's is 0,
        // so a lone reward teaches); the baseline moves in batch order, before any gradient.
        let advantages: Vec<f32> = batch
            .iter()
            .map(|s| {
                let adv = s.reward - self.state.baseline;
                self.state.baseline = momentum * self.state.baseline + (1.0 - momentum) * s.reward;
                adv
            })
            .collect();
        let adv_sum: f32 = advantages.iter().sum();
        let this = &*self;
        let summed = this.workers.gradients(&this.pool, batch.len(), &params, |i| {
            let (prompt, reply) = truncate(&batch[i].prompt, &batch[i].reply, this.cfg.max_tokens);
            let mean_lp = this.reply_token_logprobs(prompt, reply, &lt)?.mean_all()?;
            let loss = (mean_lp * (-(advantages[i] as f64) / batch.len() as f64))?;
            Ok(crate::parallel::Item { loss, tokens: prompt.len() + reply.len(), learn: advantages[i] != 0.0 })
        })?;
        let (policy_loss, tokens, grads) = (summed.loss, summed.tokens, summed.grads);
        let (grads, grad_norm) = finish(grads, &params)?;
        if !grad_norm.is_finite() {
            return Err(TrainError::InvalidSample("non-finite gradient; step skipped".into()));
        }
        let clip = if self.cfg.max_grad_norm > 0.0 && grad_norm > self.cfg.max_grad_norm {
            (self.cfg.max_grad_norm / grad_norm) as f64
        } else {
            1.0
        };
        let penalty = self.adam_update(&grads, clip, self.cfg.learning_rate as f64)?;
        self.state.step += 1;
        Ok(StepReport {
            loss: policy_loss + penalty,
            mean_advantage: adv_sum / batch.len() as f32,
            tokens,
            seconds: start.elapsed().as_secs_f64(),
            step: self.state.step,
            grad_norm,
            baseline: self.state.baseline,
        })
    }

    /// Adam on every A and B; decoupled decay on B only (B = 0 is "no adapter", while A is
    /// just a random projection). Returns the decay penalty `½·wd·Σ‖B‖²` for reporting.
    pub(crate) fn adam_update(&mut self, grads: &[Tensor], clip: f64, lr: f64) -> Result<f32> {
        self.adam_t += 1;
        let wd = self.cfg.weight_decay as f64;
        let bc1 = 1.0 - BETA1.powi(self.adam_t);
        let bc2 = 1.0 - BETA2.powi(self.adam_t);
        let mut penalty = 0f32;
        let vars = self.lora.pairs.iter().flat_map(|(_, _, a, b)| [(a, false), (b, true)]);
        for ((var, decays), (g, (m, v))) in vars.zip(grads.iter().zip(self.adam.iter_mut())) {
            let g = (g * clip)?;
            *m = ((&*m * BETA1)? + (&g * (1.0 - BETA1))?)?;
            *v = ((&*v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&*m / bc1)? / ((&*v / bc2)?.sqrt()? + ADAM_EPS)?)?;
            let p = var.as_tensor();
            let mut new = (p - (update * lr)?)?;
            if decays && wd > 0.0 {
                penalty += 0.5 * wd as f32 * p.sqr()?.sum_all()?.to_scalar::<f32>()?;
                new = (new - (p * (lr * wd))?)?;
            }
            var.set(&new)?;
        }
        Ok(penalty)
    }

    /// Log-probs `(reply.len(),)` of each reply token given everything before it.
    pub(crate) fn reply_token_logprobs(&self, prompt: &[u32], reply: &[u32], lt: &crate::lora::LoraTensors) -> Result<Tensor> {
        let mut tokens = Vec::with_capacity(prompt.len() + reply.len());
        tokens.extend_from_slice(prompt);
        tokens.extend_from_slice(&reply[..reply.len() - 1]);
        let logits = self.base.forward(&tokens, Some(lt), prompt.len() - 1)?;
        let targets = Tensor::from_vec(reply.to_vec(), (reply.len(), 1), &Device::Cpu)?;
        Ok(log_softmax_last(&logits)?.gather(&targets, 1)?.squeeze(1)?)
    }

    /// The adapted projections, for inspection: `(layer, target)` pairs in tensor order.
    pub fn adapted(&self) -> Vec<(usize, Target)> {
        self.lora.pairs.iter().map(|(l, t, _, _)| (*l, *t)).collect()
    }
}

/// The summed gradients (zeros where a parameter got none) and their global L2 norm.
pub(crate) fn finish(grads: Vec<Option<Tensor>>, params: &[Tensor]) -> Result<(Vec<Tensor>, f32)> {
    let grads: Vec<Tensor> =
        grads.into_iter().zip(params).map(|(g, p)| g.map_or_else(|| p.zeros_like(), Ok)).collect::<candle_core::Result<_>>()?;
    let mut sq = 0f64;
    for g in &grads {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok((grads, sq.sqrt() as f32))
}

pub(crate) fn check_pair(prompt: &[u32], reply: &[u32]) -> Result<()> {
    if prompt.is_empty() {
        return Err(TrainError::InvalidSample("empty prompt (the first reply token needs context)".into()));
    }
    if reply.is_empty() {
        return Err(TrainError::InvalidSample("empty reply: nothing to learn from".into()));
    }
    Ok(())
}

/// Cuts the prompt from the left so prompt+reply ≤ max_tokens; if the reply alone is too
/// long, keeps the last prompt token and the reply's first `max_tokens − 1` tokens.
pub(crate) fn truncate<'a>(prompt: &'a [u32], reply: &'a [u32], max_tokens: usize) -> (&'a [u32], &'a [u32]) {
    if prompt.len() + reply.len() <= max_tokens {
        return (prompt, reply);
    }
    if reply.len() < max_tokens {
        let keep = max_tokens - reply.len();
        (&prompt[prompt.len() - keep..], reply)
    } else {
        (&prompt[prompt.len() - 1..], &reply[..max_tokens - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_the_end_of_the_prompt() {
        let (p, r) = truncate(&[1, 2, 3, 4], &[5, 6], 4);
        assert_eq!((p, r), (&[3u32, 4][..], &[5u32, 6][..]));
        let (p, r) = truncate(&[1, 2], &[5, 6, 7, 8], 3);
        assert_eq!((p, r), (&[2u32][..], &[5u32, 6][..]));
        let (p, r) = truncate(&[1], &[5], 8);
        assert_eq!((p, r), (&[1u32][..], &[5u32][..]));
    }
}
