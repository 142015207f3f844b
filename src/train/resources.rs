//! Whether this machine has the memory a training run at `train.max_tokens` needs, asked
//! before the run starts rather than found out by the kernel halfway.

use sidekick_trainer::ModelConfig;

/// Bytes a run needs, roughly: the base model dequantized to f32, and per token the
/// activations kept for the backward pass (each layer's projections and attention, the
/// logits and their gradient), doubled for the autograd graph's copies.
pub fn needed_bytes(model: &ModelConfig, max_tokens: usize) -> u64 {
    let (d, ff, v, l) = (model.n_embd as u64, model.n_ff as u64, model.vocab as u64, model.n_layer as u64);
    let weights = 4 * (l * (4 * d * d + 3 * d * ff) + 2 * v * d);
    let per_token = 4 * (l * (16 * d + 6 * ff) + 3 * v) * 2;
    let attention = 4 * l * (model.n_head as u64) * (max_tokens as u64).pow(2) * 3;
    weights + per_token * max_tokens as u64 + attention
}

/// Memory available now: `/proc/meminfo`'s MemAvailable (or `SIDEKICK_MEMORY_AVAILABLE_MB`,
/// which tests use to stand for a smaller machine).
pub fn available_bytes() -> Option<u64> {
    if let Some(mb) = std::env::var("SIDEKICK_MEMORY_AVAILABLE_MB").ok().and_then(|v| v.parse::<u64>().ok()) {
        return Some(mb << 20);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

pub fn check_memory(model: &ModelConfig, max_tokens: usize) -> Result<(), String> {
    let needed = needed_bytes(model, max_tokens);
    match available_bytes() {
        Some(available) if available < needed => Err(format!(
            "too little memory: training at train.max_tokens = {max_tokens} needs about {} MB and {} MB are available; lower train.max_tokens or free memory",
            needed >> 20,
            available >> 20
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M's shape, whose 256-token step peaked at 2.1 GB when measured.
    fn smollm2() -> ModelConfig {
        ModelConfig {
            architecture: "llama".into(),
            n_layer: 30,
            n_head: 9,
            n_head_kv: 3,
            n_embd: 576,
            n_ff: 1536,
            vocab: 49152,
            rope_theta: 100_000.0,
            rms_eps: 1e-5,
            n_ctx_train: 8192,
        }
    }

    #[test]
    fn the_estimate_is_near_the_measured_peak_and_grows_with_the_tokens() {
        let at_256 = needed_bytes(&smollm2(), 256);
        assert!((2_000_000_000..2_600_000_000).contains(&at_256), "{at_256}");
        assert!(needed_bytes(&smollm2(), 4096) > 10 * at_256, "attention grows with the square of the tokens");
    }
}
