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
