//! The Prometheus `/metrics` endpoint.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use sidekick_actors::metric_names as m;
use std::net::SocketAddr;

/// Installs the global recorder and serves `/metrics` on `addr`. Needs a Tokio runtime.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for name in m::HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), m::LATENCY_BUCKETS)?;
    }
    builder.install().map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr} (metrics.listen): {e}"))?;
    describe();
    register_at_zero();
    Ok(())
}

/// Every labelled series exists from the start, at zero: dashboards show "none" rather
/// than "no data", and `increase()` sees the first event.
fn register_at_zero() {
    for kind in m::ERROR_KINDS {
        metrics::counter!(m::ERRORS, "kind" => *kind).increment(0);
    }
    for actor in m::ACTORS {
        metrics::counter!(m::ACTOR_RESTARTS, "actor" => *actor).increment(0);
    }
    for source in m::FEEDBACK_SOURCES {
        metrics::counter!(m::FEEDBACK_EVENTS, "source" => *source).increment(0);
    }
    for counter in [
        m::MESSAGES_SEEN,
        m::REPLIES_SENT,
        m::TOKENS_GENERATED,
        m::PROMPT_TOKENS,
        m::PROMPT_TOKENS_REUSED,
        m::REPLIES_JOURNALED,
        m::TRAINING_STEPS,
        m::ADAPTER_SWAPS,
        m::INDEX_REBUILDS,
    ] {
        metrics::counter!(counter).increment(0);
    }
    for what in ["messages", "vectors", "feedback", "stats"] {
        metrics::counter!(m::PRUNED, "what" => what).increment(0);
    }
    for why in ["idle", "least recently used", "retention"] {
        metrics::counter!(m::CHANNELS_LET_GO, "why" => why).increment(0);
    }
    for gauge in [
        m::QUEUE_DEPTH,
        m::INFLIGHT_SEQUENCES,
        m::MODEL_THREADS,
        m::LAST_LOSS,
        m::ADAPTER_VERSION,
        m::LAST_ADAPTER_SAVE,
        m::INDEX_SIZE,
        m::OPEN_CHANNELS,
        m::STORE_BYTES,
        m::INDEX_BYTES,
    ] {
        metrics::gauge!(gauge).increment(0.0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(m::MESSAGES_SEEN, "Chat messages received");
    describe_counter!(m::REPLIES_SENT, "Replies completed");
    describe_histogram!(m::REPLY_LATENCY, Unit::Seconds, "Message received to reply complete");
    describe_histogram!(m::TIME_TO_FIRST_TOKEN, Unit::Seconds, "Message received to first reply token");
    describe_counter!(m::TOKENS_GENERATED, "Tokens generated");
    describe_counter!(m::PROMPT_TOKENS, "Prompt tokens given to the model");
    describe_counter!(m::PROMPT_TOKENS_REUSED, "Prompt tokens served from the KV cache");
    describe_gauge!(m::QUEUE_DEPTH, "Jobs waiting for a free sequence");
    describe_gauge!(m::INFLIGHT_SEQUENCES, "Replies being generated now");
    describe_gauge!(m::MODEL_THREADS, "Threads a decoding step uses now (model.threads = auto tunes it)");
    describe_gauge!(m::MODEL_LOAD_SECONDS, Unit::Seconds, "Time the last model load took");
    describe_counter!(m::ACTOR_RESTARTS, "Actors restarted by the supervisor");
    describe_gauge!(m::UPTIME_SECONDS, Unit::Seconds, "Seconds since start");
    describe_counter!(m::ERRORS, "Errors by kind");
    describe_counter!(m::WATCHDOG_STALLS, "Busy components that stopped sending heartbeats");
    describe_histogram!(m::EMBED_SECONDS, Unit::Seconds, "Time to embed and index one batch");
    describe_histogram!(m::QUERY_SECONDS, Unit::Seconds, "Time to embed a query and search the index");
    describe_gauge!(m::INDEX_SIZE, "Vectors in the retrieval index");
    describe_counter!(m::INDEX_REBUILDS, "Index rebuilds from the store");
    describe_gauge!(m::RETRIEVAL_DEGRADED, "1 while retrieval is off");
    describe_counter!(m::REPLIES_JOURNALED, "Replies journaled for learning");
    describe_counter!(m::FEEDBACK_EVENTS, "Feedback events by source");
    describe_gauge!(m::REWARD_MEAN, "Mean reward over the last 100 and all events");
    describe_counter!(m::TRAINING_STEPS, "LoRA training steps");
    describe_histogram!(m::TRAIN_STEP_SECONDS, Unit::Seconds, "Time one training step took");
    describe_gauge!(m::LAST_LOSS, "Loss of the last training step");
    describe_gauge!(m::ADAPTER_VERSION, "Adapter version served (0: the base model)");
    describe_counter!(m::ADAPTER_SWAPS, "Adapters swapped into the running model");
    describe_gauge!(m::LAST_ADAPTER_SAVE, Unit::Seconds, "Unix time of the last adapter save");
    describe_gauge!(m::OPEN_CHANNELS, "Conversation actors open now");
    describe_counter!(m::CHANNELS_LET_GO, "Conversations let go, idle or least recently used");
    describe_gauge!(m::STORE_BYTES, Unit::Bytes, "What the store takes on disk");
    describe_gauge!(m::INDEX_BYTES, Unit::Bytes, "What the retrieval index takes in memory");
    describe_counter!(m::PRUNED, "Records dropped by retention, by kind");
}
