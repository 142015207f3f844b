//! Seconds per training step on 1 CPU thread (or `THREADS`), for 64/128/256-token samples.
//!
//! `cargo run --release -p sidekick-trainer --example train_bench [model.gguf]`

use std::sync::Arc;
use std::time::Instant;

use sidekick_trainer::{BaseModel, LoraConfig, Sample, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::var("THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    // Before anything else: candle's element-wise pool is sized once, from the environment.
    sidekick_trainer::threads::limit_candle_threads(threads);
    let path =
        std::env::args().nth(1).unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/SmolLM2-135M-Instruct.Q4_1.gguf").into());
    let t = Instant::now();
    let base = Arc::new(BaseModel::load(&path)?);
    println!(
        "loaded {path} in {:.2}s; candle element-wise threads: {}",
        t.elapsed().as_secs_f64(),
        sidekick_trainer::threads::candle_elementwise_threads()
    );
    let vocab = base.config().vocab as u64;
    let mut trainer = Trainer::new(base, LoraConfig { threads, max_tokens: 1024, ..LoraConfig::default() }, 1)?;
    let mut x = 12345u64;
    let mut tok = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) % vocab) as u32
    };
    for n in [64usize, 128, 256] {
        // A chat-like split: three quarters context, one quarter reply.
        let reply_len = n / 4;
        let sample =
            Sample { prompt: (0..n - reply_len).map(|_| tok()).collect(), reply: (0..reply_len).map(|_| tok()).collect(), reward: 1.0 };
        trainer.step(std::slice::from_ref(&sample))?; // warm-up
        let reps = 3;
        let mut secs = 0.0;
        for _ in 0..reps {
            secs += trainer.step(std::slice::from_ref(&sample))?.seconds;
        }
        let t = Instant::now();
        trainer.reply_logprob(&sample.prompt, &sample.reply)?;
        println!(
            "{n:>4} tokens ({} prompt + {reply_len} reply), {threads} thread(s): {:.3} s/step, forward only {:.3} s",
            n - reply_len,
            secs / reps as f64,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
