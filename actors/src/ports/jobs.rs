//! Work the bot hands to a process of its own, so the daemon never does it itself.

/// `sidekick fetch`, started by an admin's `!fetch`; the fetch, dataset and training run
/// behind `!train`.
pub trait HistoryJobs: Send + Sync + 'static {
    /// Starts a fetch of the allowlisted channels' history. The receiver hears one line when it
    /// ends: its counts, or why it failed. `Err` says why it could not start (one is running).
    fn start_fetch(&self) -> Result<tokio::sync::oneshot::Receiver<String>, String>;

    /// Starts learning the server's voice: a fetch (when a token is configured), the dataset,
    /// then `sidekick train` on one thread. The receiver hears how it ended (the figures and
    /// whether the gate let it be served). `Err` says why it could not start.
    fn start_train(&self) -> Result<tokio::sync::oneshot::Receiver<String>, String>;
    /// What the training run is doing, or how the last one ended.
    fn train_status(&self) -> String;
}
