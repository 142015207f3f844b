//! Keeping training off the decoder's cores.
//!
//! candle-core 0.11.1 (CPU backend, no mkl/accelerate) has two sources of threads:
//!
//! 1. **matmul** (the `gemm` crate) runs with `Parallelism::Rayon(get_num_threads())`,
//!    where `candle_core::utils::get_num_threads()` is `RAYON_NUM_THREADS` or the number of
//!    physical cores. Its tasks run on the *current* rayon pool, so the trainer's private
//!    pool (`LoraConfig::threads`, entered with `ThreadPool::install` around every forward,
//!    backward and update) bounds them: with 1 thread they run one after another.
//! 2. **element-wise ops on ≥ 64 Ki elements** use candle's own process-wide "barrier pool"
//!    of `CANDLE_NUM_THREADS − 1` workers (falling back to `RAYON_NUM_THREADS`, then the
//!    physical core count), created once at first use, spinning briefly between ops. It
//!    ignores rayon pools; only the environment variable limits it, and only if it is set
//!    before candle's first such op. Call [`limit_candle_threads`] at the top of `main`
//!    (before spawning threads), or export `CANDLE_NUM_THREADS=1`.
//!
//! A batch of several examples with `LoraConfig::threads` ≥ 2 runs one whole example per
//! thread instead ([`crate::parallel`]). Keep `CANDLE_NUM_THREADS=1` then: the barrier pool
//! serves one caller at a time, so two examples would queue for it (2 threads on 2 cores:
//! 1.85x one thread's tokens/s with 1, 0.75x with 2).

/// Sets `CANDLE_NUM_THREADS` (unless already set) so candle's element-wise pool stays
/// within `n` threads, the caller included. Call it before any other thread is spawned:
/// changing the environment races with concurrent `getenv` calls (e.g. from C code).
pub fn limit_candle_threads(n: usize) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", n.max(1).to_string());
    }
}

/// Threads candle's element-wise ops use (the calling thread plus its barrier-pool workers).
/// Creates that pool if it does not exist yet, freezing its size.
pub fn candle_elementwise_threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

pub(crate) fn build_pool(n: usize) -> crate::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("sidekick-trainer-{i}"))
        .build()
        .map_err(|e| crate::TrainError::ThreadPool(e.to_string()))
}
