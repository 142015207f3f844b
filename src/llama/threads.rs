//! Changing a running context's thread count (`model.threads = auto`).
//!
//! llama.cpp takes a new count between steps (`llama_set_n_threads`), but llama-cpp-2 keeps
//! its context pointer private. Its `Debug` prints that pointer; it is read from there and
//! confirmed with llama.cpp's own getters before any use. Without a confirmed pointer the
//! context keeps the count it was made with.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_sys_2::llama_context;
use sidekick_actors::metric_names as m;
use sidekick_actors::thread_tuner::ThreadTuner;
use std::ptr::NonNull;
use std::time::Duration;

/// The tuner, and the context it sets the thread count of.
pub(super) struct AutoThreads {
    ctx: NonNull<llama_context>,
    applied: u32,
    tuner: ThreadTuner,
}

// SAFETY: the pointer is only used on the thread that owns the context, beside it.
unsafe impl Send for AutoThreads {}

impl AutoThreads {
    /// Tunes between 1 and `max` threads for `ctx`; `None` when its pointer cannot be confirmed.
    pub(super) fn new(ctx: &LlamaContext, max: u32) -> Option<Self> {
        let Some(raw) = raw_context(ctx) else {
            tracing::warn!("cannot change llama.cpp's thread count in this build; model.threads = auto keeps {max}");
            return None;
        };
        metrics::gauge!(m::MODEL_THREADS).set(f64::from(max));
        Some(Self { ctx: raw, applied: max, tuner: ThreadTuner::new(max) })
    }

    /// Sets the count the next step should use. `ctx` must be the context given to `new`.
    pub(super) fn before_step(&mut self) {
        let want = self.tuner.threads();
        if want != self.applied {
            // SAFETY: `ctx` was confirmed at `new` and the context outlives `self` (both are
            // fields of the scheduler, which drops them together).
            unsafe { llama_cpp_sys_2::llama_set_n_threads(self.ctx.as_ptr(), want as i32, want as i32) };
            tracing::debug!(from = self.applied, to = want, best = self.tuner.best(), "decoding threads");
            self.applied = want;
            metrics::gauge!(m::MODEL_THREADS).set(f64::from(want));
        }
    }

    /// A generation step of `tokens` tokens (one per running reply) took `took`.
    pub(super) fn after_step(&mut self, tokens: usize, took: Duration) {
        self.tuner.observe(tokens, took);
    }

    pub(super) fn threads(&self) -> u32 {
        self.applied
    }
}

/// Whether `model.threads = auto` can change `ctx`'s thread count (else it keeps its own).
pub fn can_set_threads(ctx: &LlamaContext) -> bool {
    raw_context(ctx).is_some()
}

/// The `llama_context` behind `ctx`, if its `Debug` shows one that llama.cpp agrees is it.
fn raw_context(ctx: &LlamaContext) -> Option<NonNull<llama_context>> {
    let shown = format!("{ctx:?}");
    let hex: String = shown.split_once("0x")?.1.chars().take_while(char::is_ascii_hexdigit).collect();
    let ptr = NonNull::new(usize::from_str_radix(&hex, 16).ok()? as *mut llama_context)?;
    // SAFETY: llama-cpp-2's Debug for a context prints exactly its `llama_context` pointer
    // (checked for the pinned version); the getters only read the context's parameters.
    let agrees = unsafe {
        llama_cpp_sys_2::llama_n_ctx(ptr.as_ptr()) == ctx.n_ctx()
            && llama_cpp_sys_2::llama_n_batch(ptr.as_ptr()) == ctx.n_batch()
            && llama_cpp_sys_2::llama_n_ubatch(ptr.as_ptr()) == ctx.n_ubatch()
    };
    agrees.then_some(ptr)
}
