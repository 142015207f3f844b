//! Waits that depend on each other across actors, in one place so they stay in order.

use std::time::Duration;

/// How long an adapter swap may take: the decoding thread first lets the replies in flight
/// finish (each at most `generation.max_tokens` tokens), then rebuilds its context.
pub const ADAPTER_SWAP: Duration = Duration::from_secs(300);
/// A reply that gets no token from the model for this long ends with "try again" and frees
/// its sequence (`model.stall_seconds`); the watchdog calls a model this quiet stalled.
pub const REPLY_STALL: Duration = Duration::from_secs(30);
/// A reply asked while the model loads again (after a crash, a stall or `!restart`) waits
/// this long for it before saying "try again"; a load takes about a second.
pub const MODEL_RETURN: Duration = Duration::from_secs(30);
/// An admin's `!adapter` waits for the swap it asked for, and a little longer, so it hears
/// the swap's own answer rather than a timeout of its own.
pub const ADAPTER_COMMAND: Duration = ADAPTER_SWAP.saturating_add(Duration::from_secs(30));
/// `!rl_metrics` asks the learning actor; a longer wait means it is saving or swapping.
pub const RL_SUMMARY: Duration = Duration::from_secs(5);
/// `!status` and `sidekick status` ask the root supervisor.
pub const TREE_STATUS: Duration = Duration::from_secs(5);
/// The root asks each child for its figures within this.
pub const CHILD_STATUS: Duration = Duration::from_secs(2);
/// A retrieval query that takes longer is skipped: a reply never waits long for background.
pub const RETRIEVAL_QUERY: Duration = Duration::from_secs(2);
/// Removing a purged channel's vectors.
pub const RETRIEVAL_PURGE: Duration = Duration::from_secs(60);
/// A purge or `!forgetme`: the store's part, then the vectors'.
pub const PURGE: Duration = RETRIEVAL_PURGE.saturating_add(Duration::from_secs(15));
/// Saving the index or the adapter for a backup or at shutdown.
pub const CHECKPOINT: Duration = Duration::from_secs(120);
pub const SHUTDOWN_SAVE: Duration = Duration::from_secs(60);
/// Stopping a child when the tree stops.
pub const CHILD_STOP: Duration = Duration::from_secs(30);
pub const SAVING_CHILD_STOP: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_command_outwaits_the_swap_it_asked_for() {
        assert!(ADAPTER_COMMAND > ADAPTER_SWAP);
        assert!(TREE_STATUS > CHILD_STATUS, "the root answers after asking its children");
    }
}
