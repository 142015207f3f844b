//! Every metric Sidekick exports. The README lists them; keep the two in step.

pub const MESSAGES_SEEN: &str = "sidekick_messages_seen_total";
pub const REPLIES_SENT: &str = "sidekick_replies_sent_total";
pub const REPLY_LATENCY: &str = "sidekick_reply_latency_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "sidekick_time_to_first_token_seconds";
pub const TOKENS_GENERATED: &str = "sidekick_tokens_generated_total";
pub const PROMPT_TOKENS: &str = "sidekick_prompt_tokens_total";
pub const PROMPT_TOKENS_REUSED: &str = "sidekick_prompt_tokens_reused_total";
pub const QUEUE_DEPTH: &str = "sidekick_queue_depth";
pub const INFLIGHT_SEQUENCES: &str = "sidekick_inflight_sequences";
pub const MODEL_THREADS: &str = "sidekick_model_threads";
pub const MODEL_LOAD_SECONDS: &str = "sidekick_model_load_seconds";
pub const ACTOR_RESTARTS: &str = "sidekick_actor_restarts_total";
pub const UPTIME_SECONDS: &str = "sidekick_uptime_seconds";
pub const ERRORS: &str = "sidekick_errors_total";
pub const WATCHDOG_STALLS: &str = "sidekick_watchdog_stalls_total";
pub const EMBED_SECONDS: &str = "sidekick_embed_seconds";
pub const EMBED_BATCH_SIZE: &str = "sidekick_embed_batch_size";
pub const QUERY_SECONDS: &str = "sidekick_retrieval_query_seconds";
pub const INDEX_SIZE: &str = "sidekick_index_vectors";
pub const INDEX_REBUILDS: &str = "sidekick_index_rebuilds_total";
pub const RETRIEVAL_DEGRADED: &str = "sidekick_retrieval_degraded";
pub const REPLIES_JOURNALED: &str = "sidekick_rl_replies_journaled_total";
pub const FEEDBACK_EVENTS: &str = "sidekick_rl_feedback_events_total";
pub const REWARD_MEAN: &str = "sidekick_rl_reward_mean";
pub const TRAINING_STEPS: &str = "sidekick_rl_training_steps_total";
pub const TRAIN_STEP_SECONDS: &str = "sidekick_rl_train_step_seconds";
pub const LAST_LOSS: &str = "sidekick_rl_last_loss";
pub const ADAPTER_VERSION: &str = "sidekick_rl_adapter_version";
pub const ADAPTER_SWAPS: &str = "sidekick_rl_adapter_swaps_total";
pub const LAST_ADAPTER_SAVE: &str = "sidekick_rl_last_save_timestamp_seconds";
pub const DISCORD_CONNECTED: &str = "sidekick_discord_connected";
pub const DISCORD_LATENCY: &str = "sidekick_discord_latency_seconds";
pub const OPEN_CHANNELS: &str = "sidekick_open_channels";
pub const CHANNELS_LET_GO: &str = "sidekick_channels_let_go_total";
pub const STORE_BYTES: &str = "sidekick_store_bytes";
pub const INDEX_BYTES: &str = "sidekick_index_bytes";
pub const PRUNED: &str = "sidekick_pruned_total";

/// Histograms are exported with these bucket bounds (seconds) so Grafana can take quantiles.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0];
pub const HISTOGRAMS: &[&str] = &[REPLY_LATENCY, TIME_TO_FIRST_TOKEN, EMBED_SECONDS, QUERY_SECONDS, TRAIN_STEP_SECONDS];
/// Bounds for `EMBED_BATCH_SIZE` (messages per batch).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Label values exported at zero from the start, so every dashboard series exists before
/// the first event of its kind.
pub const ERROR_KINDS: &[&str] = &[
    "generation",
    "model_unavailable",
    "model_submit",
    "actor_failed",
    "channel_start",
    "decode",
    "context_full",
    "stall",
    "discord_send",
    "training",
    "adapter_save",
    "adapter_swap",
    "retention",
];
pub const ACTORS: &[&str] = &["model", "retrieval", "feedback", "watchdog", "conversation"];
pub const FEEDBACK_SOURCES: &[&str] = &["command", "reaction", "reaction_removed"];

/// Counts an error of `kind` (a short snake_case word).
pub fn count_error(kind: &'static str) {
    metrics::counter!(ERRORS, "kind" => kind).increment(1);
}
