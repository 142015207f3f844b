//! Work the bot hands to a process of its own, so the daemon never does it itself.

/// `sidekick fetch`, started by an admin's `!fetch`.
pub trait HistoryJobs: Send + Sync + 'static {
    /// Starts a fetch of the allowlisted channels' history. The receiver hears one line when it
    /// ends: its counts, or why it failed. `Err` says why it could not start (one is running).
    fn start_fetch(&self) -> Result<tokio::sync::oneshot::Receiver<String>, String>;
}
