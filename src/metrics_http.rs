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
    builder
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr} (metrics.listen): {e}"))?;
    describe();
    Ok(())
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
    describe_gauge!(m::MODEL_LOAD_SECONDS, Unit::Seconds, "Time the last model load took");
    describe_counter!(m::ACTOR_RESTARTS, "Actors restarted by the supervisor");
    describe_gauge!(m::UPTIME_SECONDS, Unit::Seconds, "Seconds since start");
    describe_counter!(m::ERRORS, "Errors by kind");
    describe_counter!(m::WATCHDOG_STALLS, "Busy components that stopped sending heartbeats");
}
