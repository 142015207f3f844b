//! Learning a voice from examples: supervised fine-tuning (next-token loss on the reply only,
//! weighted per example) and DPO on preference pairs, on the same LoRA weights, optimizer and
//! clipping as feedback training. One optimizer step per call; the caller's batch is the
//! gradient accumulation (examples run side by side on the trainer's threads, their gradients
//! summed in order: see [`crate::parallel`]).

use candle_core::Tensor;

use crate::error::{Result, TrainError};
use crate::parallel::Item;
use crate::trainer::{check_pair, finish, truncate, StepReport, Trainer};

/// One SFT example: the reply is learned, the prompt only read.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub prompt: Vec<u32>,
    pub reply: Vec<u32>,
    pub weight: f32,
}

/// One preference: `chosen` over `rejected` after the same prompt, with the frozen reference
/// model's summed log-probs of each (computed once, [`Trainer::reply_logprob`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preference {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    pub reference_chosen: f32,
    pub reference_rejected: f32,
    pub weight: f32,
}

/// Linear warm-up to the peak, then cosine decay to a tenth of it, over `total` steps.
pub fn cosine_learning_rate(peak: f32, step: u64, warmup: u64, total: u64) -> f32 {
    if step < warmup {
        return peak * (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f32 / span as f32).min(1.0);
    let floor = peak * 0.1;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
}

impl Trainer {
    /// One SFT step: loss `Σ wᵢ·NLLᵢ / Σ wᵢ`, NLLᵢ the mean negative log-prob of example i's
    /// reply tokens (its prompt cut from the left to `max_tokens`).
    pub fn sft_step(&mut self, batch: &[Example], learning_rate: f32) -> Result<StepReport> {
        let total: f32 = batch.iter().map(|e| e.weight).sum();
        self.check(batch.iter().map(|e| (&e.prompt, &e.reply)), total)?;
        let max_tokens = self.cfg.max_tokens;
        self.optimize(batch.len(), learning_rate, |trainer, i, lt| {
            let e = &batch[i];
            let (prompt, reply) = truncate(&e.prompt, &e.reply, max_tokens);
            let nll = trainer.reply_token_logprobs(prompt, reply, lt)?.mean_all()?.neg()?;
            Ok(((nll * (e.weight / total) as f64)?, prompt.len() + reply.len()))
        })
    }

    /// One DPO step: loss `−Σ wᵢ·log σ(β·((πc − rc) − (πr − rr))) / Σ wᵢ`, π the adapter's
    /// summed reply log-probs and r the reference's.
    pub fn dpo_step(&mut self, batch: &[Preference], beta: f32, learning_rate: f32) -> Result<StepReport> {
        let total: f32 = batch.iter().map(|p| p.weight).sum();
        self.check(batch.iter().flat_map(|p| [(&p.prompt, &p.chosen), (&p.prompt, &p.rejected)]), total)?;
        if !(beta.is_finite() && beta > 0.0) {
            return Err(TrainError::InvalidConfig(format!("DPO beta must be > 0, got {beta}")));
        }
        let max_tokens = self.cfg.max_tokens;
        self.optimize(batch.len(), learning_rate, |trainer, i, lt| {
            let p = &batch[i];
            let (pc, chosen) = truncate(&p.prompt, &p.chosen, max_tokens);
            let (pr, rejected) = truncate(&p.prompt, &p.rejected, max_tokens);
            let lc = trainer.reply_token_logprobs(pc, chosen, lt)?.sum_all()?;
            let lr = trainer.reply_token_logprobs(pr, rejected, lt)?.sum_all()?;
            let margin = ((lc - lr)? - (p.reference_chosen - p.reference_rejected) as f64)?;
            // −log σ(x) = softplus(−x) = log(1 + e^(−x)), written stably.
            let x = (margin * beta as f64)?;
            let loss = softplus(&x.neg()?)?;
            Ok(((loss * (p.weight / total) as f64)?, pc.len() + chosen.len() + pr.len() + rejected.len()))
        })
    }

    fn check<'a>(&self, pairs: impl Iterator<Item = (&'a Vec<u32>, &'a Vec<u32>)>, total_weight: f32) -> Result<()> {
        let mut any = false;
        for (prompt, reply) in pairs {
            any = true;
            check_pair(prompt, reply)?;
            self.base.check_tokens(prompt)?;
            self.base.check_tokens(reply)?;
        }
        if !any {
            return Err(TrainError::InvalidSample("empty batch".into()));
        }
        if !(total_weight.is_finite() && total_weight > 0.0) {
            return Err(TrainError::InvalidSample(format!("the weights must sum to a positive number, got {total_weight}")));
        }
        Ok(())
    }

    /// Runs `loss(i)` for every item with gradients, sums them, clips, and takes one AdamW step
    /// at `learning_rate`. A failed step leaves the weights as they were.
    fn optimize<F>(&mut self, n: usize, learning_rate: f32, loss: F) -> Result<StepReport>
    where
        F: Fn(&Trainer, usize, &crate::lora::LoraTensors) -> Result<(Tensor, usize)> + Sync,
    {
        let start = std::time::Instant::now();
        let lt = self.lora.tensors(self.base.config().n_layer, self.cfg.scale(), true);
        let params: Vec<Tensor> = self.lora.pairs.iter().flat_map(|(_, _, a, b)| [a.as_tensor().clone(), b.as_tensor().clone()]).collect();
        let this = &*self;
        let summed = this.workers.gradients(&this.pool, n, &params, |i| {
            let (loss, tokens) = loss(this, i, &lt)?;
            Ok(Item { loss, tokens, learn: true })
        })?;
        let (grads, grad_norm) = finish(summed.grads, &params)?;
        if !grad_norm.is_finite() || !summed.loss.is_finite() {
            return Err(TrainError::InvalidSample("non-finite loss or gradient; step skipped".into()));
        }
        let max = self.cfg.max_grad_norm;
        let clip = if max > 0.0 && grad_norm > max { (max / grad_norm) as f64 } else { 1.0 };
        let pool = std::sync::Arc::clone(&self.pool);
        pool.install(|| self.adam_update(&grads, clip, learning_rate as f64))?;
        self.state.step += 1;
        Ok(StepReport {
            loss: summed.loss,
            mean_advantage: 0.0,
            tokens: summed.tokens,
            seconds: start.elapsed().as_secs_f64(),
            step: self.state.step,
            grad_norm,
            baseline: self.state.baseline,
        })
    }
}

/// `log(1 + eˣ)` without overflow: `max(x, 0) + log(1 + e^(−|x|))`.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let positive = x.relu()?;
    let rest = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    positive + rest
}

#[cfg(test)]
mod tests {
    use super::cosine_learning_rate;

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_a_tenth() {
        assert!((cosine_learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-6);
        assert!((cosine_learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-6);
        assert!((cosine_learning_rate(1.0, 10, 10, 100) - 1.0).abs() < 1e-6);
        assert!((cosine_learning_rate(1.0, 55, 10, 100) - 0.55).abs() < 1e-3, "half way: between peak and floor");
        assert!((cosine_learning_rate(1.0, 100, 10, 100) - 0.1).abs() < 1e-6);
        assert!((cosine_learning_rate(1.0, 500, 10, 100) - 0.1).abs() < 1e-6, "stays at the floor");
    }
}
