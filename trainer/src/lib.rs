//! LoRA training for Sidekick, on the served llama-architecture GGUF model, in llama.cpp's
//! own tensor layout so the written adapter loads straight into llama.cpp.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sidekick_trainer::{BaseModel, LoraConfig, Sample, Trainer};
//!
//! # fn main() -> Result<(), sidekick_trainer::TrainError> {
//! sidekick_trainer::threads::limit_candle_threads(1); // first thing in main()
//! let base = Arc::new(BaseModel::load("models/SmolLM2-135M-Instruct.Q4_1.gguf")?);
//! let handle = std::thread::spawn(move || -> Result<(), sidekick_trainer::TrainError> {
//!     let mut trainer = Trainer::new(base, LoraConfig { threads: 1, ..LoraConfig::default() }, 42)?;
//!     let report = trainer.step(&[Sample { prompt: vec![1, 2, 3], reply: vec![4, 5], reward: 1.0 }])?;
//!     println!("step {} loss {:.3} in {:.2}s", report.step, report.loss, report.seconds);
//!     trainer.write_adapter("data/lora.gguf") // llama.cpp: lora_adapter_init + lora_adapter_set
//! });
//! handle.join().expect("trainer thread")?;
//! # Ok(()) }
//! ```
//!
//! Public API:
//! - [`ModelConfig`] (from GGUF metadata), [`BaseModel::load`] (every tensor dequantized to
//!   f32, frozen), [`write_f32_copy`] (an all-F32 GGUF llama.cpp can load, for equivalence).
//! - [`LoraConfig`] / [`Target`]: rank 8, alpha 16, q+v, Adam lr 1e-3, decay 0.01 on B,
//!   clip 1.0, baseline momentum 0.9, 256 tokens, 1 thread by default.
//! - [`Trainer::new`] (A seeded random, B = 0 ⇒ equals the base),
//!   [`Trainer::next_token_logprobs`], [`Trainer::reply_logprob`], [`Trainer::step`]
//!   (REINFORCE: advantage = reward − EMA baseline, the baseline updated after each sample
//!   and starting at 0; loss = −advantage · mean token log-prob of the reply, averaged over
//!   the batch; Adam; global-norm clipping; decoupled decay of B toward 0),
//!   [`Trainer::write_adapter`] / [`Trainer::load_adapter`] (GGUF LoRA; the baseline and
//!   step are stored in it too, and [`Trainer::state`] / [`Trainer::set_state`] let the
//!   caller keep them elsewhere).
//! - [`Trainer::sft_step`] (weighted next-token loss on replies), [`Trainer::dpo_step`]
//!   (DPO against cached reference log-probs), [`cosine_learning_rate`], and
//!   [`Trainer::save_checkpoint`] / [`Trainer::load_checkpoint`] (adapter, Adam moments and
//!   counters: a killed run resumes exactly) for learning a server's voice.
//! - [`threads`]: how candle's CPU threads are bounded (private rayon pool of
//!   `LoraConfig::threads`, plus `CANDLE_NUM_THREADS` for candle's element-wise pool); a
//!   batch of several examples runs one example per thread, data parallel, with the same
//!   result as on one thread.
//!
//! All fallible calls return [`TrainError`]; bad files and samples never panic.

mod adapter;
mod checkpoint;
mod error;
mod gguf;
mod lora;
mod model;
mod ops;
mod parallel;
mod supervised;
pub mod threads;
mod trainer;

pub use adapter::combine_adapters;
pub use error::{Result, TrainError};
pub use gguf::{write_f32_copy, ModelConfig};
pub use lora::{LoraConfig, Target};

/// The shape of the model at `path`, read from its GGUF header only: a quick check that the
/// trainer supports it (llama architecture) before anything is loaded.
pub fn model_config(path: impl AsRef<std::path::Path>) -> Result<ModelConfig> {
    gguf::GgufFile::open(path.as_ref())?.model_config()
}
pub use model::BaseModel;
pub use supervised::{cosine_learning_rate, Example, Preference};
pub use trainer::{Sample, StepReport, Trainer, TrainerState};

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>() {}
    #[test]
    fn trainer_is_send() {
        is_send::<super::Trainer>();
        is_send::<std::sync::Arc<super::BaseModel>>();
    }
}
