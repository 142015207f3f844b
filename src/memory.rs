//! Giving freed memory back to the system. A training step allocates and frees hundreds of
//! megabytes (activations, gradients); glibc keeps what was freed in its arenas, fragmented,
//! so the resident size of a bot that trains for weeks creeps up by what no later allocation
//! happens to reuse. Trimming after each step hands those pages back.

/// Returns the heap's free pages to the system (glibc); nothing elsewhere.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
