//! The watchdog: keeps the uptime gauge and notices actors whose heartbeat stopped.

use crate::metric_names as m;
use crate::sync::LockExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Last sign of life of each busy component. A component beats while it has work; one that
/// has work but has not beaten for `stall_after` is reported as stalled.
#[derive(Clone, Default)]
pub struct Heartbeats(Arc<Mutex<HashMap<&'static str, Beat>>>);

#[derive(Clone, Copy)]
struct Beat {
    at: Instant,
    busy: bool,
}

impl Heartbeats {
    pub fn beat(&self, who: &'static str, busy: bool) {
        self.0.lock_or_recover().insert(who, Beat { at: Instant::now(), busy });
    }

    /// When `who` last beat (e.g. `reply`: the last reply sent).
    pub fn last(&self, who: &str) -> Option<Instant> {
        self.0.lock_or_recover().get(who).map(|b| b.at)
    }

    /// Whether `who` said it was busy at its last beat.
    pub fn is_busy(&self, who: &str) -> bool {
        self.0.lock_or_recover().get(who).is_some_and(|b| b.busy)
    }

    /// Components that are busy and silent for longer than `stall_after` at `now`.
    pub fn stalled(&self, now: Instant, stall_after: Duration) -> Vec<&'static str> {
        let beats = self.0.lock_or_recover();
        let mut out: Vec<_> =
            beats.iter().filter(|(_, b)| b.busy && now.saturating_duration_since(b.at) > stall_after).map(|(who, _)| *who).collect();
        out.sort_unstable();
        out
    }
}

pub struct WatchdogArgs {
    pub heartbeats: Heartbeats,
    pub liveness: crate::liveness::Liveness,
    /// Synced on every tick: bounds what a power cut can take of writes that are not synced
    /// one by one (counters, vector metadata).
    pub store: Option<std::sync::Arc<dyn crate::ports::StatsStore>>,
    pub started: Instant,
    pub tick: Duration,
    pub stall_after: Duration,
    /// Told when the model stalls, to load it again (a stuck decode never ends on its own).
    pub root: Option<ActorRef<crate::supervisor::RootMsg>>,
}

impl WatchdogArgs {
    /// Publishes the Discord connection's state, and asks the process to end when it has been
    /// down for too long (a fresh process gets a fresh connection; systemd starts it).
    fn watch_gateway(&self) {
        let state = self.liveness.gateway.get();
        if let Some(state) = state {
            metrics::gauge!(m::DISCORD_CONNECTED).set(if state.connected { 1.0 } else { 0.0 });
            metrics::gauge!(m::DISCORD_LATENCY).set(state.latency.map_or(0.0, |l| l.as_secs_f64()));
        }
        let max = self.liveness.max_disconnected;
        if let Some(down) = crate::liveness::disconnected_too_long(state, tokio::time::Instant::now(), max) {
            let why = format!(
                "Discord has been unreachable for {}; exiting so the service manager starts a fresh connection",
                crate::human::duration(down)
            );
            self.liveness.exit.request(crate::liveness::EXIT_FAILED, why);
        }
    }
}

pub enum WatchdogMsg {
    Tick,
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
    Uptime(ractor::RpcReplyPort<Duration>),
}

pub struct Watchdog;

impl Actor for Watchdog {
    type Msg = WatchdogMsg;
    type State = (WatchdogArgs, Vec<&'static str>);
    type Arguments = WatchdogArgs;

    async fn pre_start(&self, myself: ActorRef<WatchdogMsg>, args: WatchdogArgs) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.tick, || WatchdogMsg::Tick);
        let _ = myself.send_message(WatchdogMsg::Tick);
        Ok((args, Vec::new()))
    }

    async fn handle(
        &self,
        _: ActorRef<WatchdogMsg>,
        msg: WatchdogMsg,
        (args, reported): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WatchdogMsg::Tick => {
                metrics::gauge!(m::UPTIME_SECONDS).set(args.started.elapsed().as_secs_f64());
                let stalled = args.heartbeats.stalled(Instant::now(), args.stall_after);
                for who in stalled.iter().filter(|w| !reported.contains(w)) {
                    tracing::warn!(component = who, "no heartbeat while busy; it may be stuck");
                    metrics::counter!(m::WATCHDOG_STALLS, "component" => *who).increment(1);
                    if *who == "model" {
                        if let Some(root) = &args.root {
                            let _ = root.send_message(crate::supervisor::RootMsg::ModelStalled);
                        }
                    }
                }
                args.watch_gateway();
                if stalled.is_empty() {
                    // Only a bot whose parts are answering tells systemd it is alive; a stuck
                    // one is killed and restarted after `WatchdogSec`.
                    args.liveness.service.alive();
                }
                *reported = stalled;
                if let Some(store) = &args.store {
                    metrics::gauge!(m::STORE_BYTES).set(store.disk_bytes() as f64);
                    if let Err(e) = store.flush() {
                        tracing::error!(error = %e, "could not sync the store");
                    }
                }
            }
            WatchdogMsg::Uptime(reply) => {
                let _ = reply.send(args.started.elapsed());
            }
            #[cfg(feature = "fault-injection")]
            WatchdogMsg::InjectPanic => panic!("injected panic in the watchdog"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_silent_components_are_stalled() {
        let beats = Heartbeats::default();
        beats.beat("model", true);
        beats.beat("idle", false);
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(beats.stalled(later, Duration::from_secs(10)), vec!["model"]);
        assert!(beats.stalled(Instant::now(), Duration::from_secs(10)).is_empty());
    }
}
