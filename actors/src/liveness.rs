//! Whether the process should go on: the tree and the watchdog ask it to end (so the service
//! manager starts a fresh one) when the bot can no longer do its job, the gateway reports on
//! the Discord connection, and the service manager hears that the bot is ready and alive.

use crate::sync::LockExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Exit code for a tree that stopped for good (systemd restarts the service).
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a problem only the operator can fix (systemd does not restart).
pub const EXIT_CONFIG: u8 = 2;

/// Why the process should end, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRequest {
    pub code: u8,
    /// One line for the operator: the cause, and the fix when there is one.
    pub why: String,
}

/// Where any part of the bot asks the process to end; the first request wins.
#[derive(Clone)]
pub struct Exit(Arc<watch::Sender<Option<ExitRequest>>>);

impl Exit {
    pub fn new() -> (Exit, watch::Receiver<Option<ExitRequest>>) {
        let (tx, rx) = watch::channel(None);
        (Exit(Arc::new(tx)), rx)
    }

    pub fn request(&self, code: u8, why: impl Into<String>) {
        let why = why.into();
        self.0.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            tracing::error!(code, %why, "the bot cannot go on");
            *slot = Some(ExitRequest { code, why });
            true
        });
    }
}

impl Default for Exit {
    /// An exit nobody listens to (tests of parts that may request one).
    fn default() -> Self {
        Exit::new().0
    }
}

/// The Discord connection as the gateway last saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatewayState {
    pub connected: bool,
    /// The last heartbeat's round trip.
    pub latency: Option<Duration>,
    /// When `connected` last changed.
    pub since: Instant,
}

/// What running without the Message Content intent means, for the log and `!status`.
pub const WITHOUT_MESSAGE_CONTENT: &str = "Running without the Message Content intent: I answer mentions, replies to me, DMs and slash \
     commands; chance replies and learning from history are off (discord.message_content; the intent is turned on in the developer \
     portal, Bot → Privileged Gateway Intents).";

/// What the gateway knows of Discord, shared between the gateway (which writes) and the
/// watchdog and control socket (which read); empty when there is no gateway (the console).
#[derive(Clone, Default)]
pub struct GatewayHealth {
    state: Arc<Mutex<Option<GatewayState>>>,
    /// Discord refused the Message Content intent and the gateway runs without it.
    without_message_content: Arc<std::sync::atomic::AtomicBool>,
    /// The text channels Discord has shown, by id: `#name (server)`, for people to read.
    channel_names: Arc<Mutex<std::collections::BTreeMap<u64, String>>>,
}

impl GatewayHealth {
    /// Records the connection's state; `since` moves only when `connected` changes.
    pub fn report(&self, connected: bool, latency: Option<Duration>, now: Instant) {
        let mut state = self.state.lock_or_recover();
        let since = match *state {
            Some(s) if s.connected == connected => s.since,
            _ => now,
        };
        *state = Some(GatewayState { connected, latency, since });
    }

    pub fn get(&self) -> Option<GatewayState> {
        *self.state.lock_or_recover()
    }

    /// The gateway runs without the Message Content intent (refused by Discord, or not asked).
    pub fn set_without_message_content(&self, without: bool) {
        self.without_message_content.store(without, std::sync::atomic::Ordering::Release);
    }

    pub fn without_message_content(&self) -> bool {
        self.without_message_content.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records (or renames) a channel; `None` forgets a deleted one.
    pub fn name_channel(&self, id: u64, name: Option<String>) {
        let mut names = self.channel_names.lock_or_recover();
        match name {
            Some(name) => names.insert(id, name),
            None => names.remove(&id),
        };
    }

    pub fn channel_names(&self) -> std::collections::BTreeMap<u64, String> {
        self.channel_names.lock_or_recover().clone()
    }
}

/// How long the gateway has been disconnected beyond `max`, if it has.
pub fn disconnected_too_long(state: Option<GatewayState>, now: Instant, max: Duration) -> Option<Duration> {
    let state = state.filter(|s| !s.connected)?;
    let down = now.saturating_duration_since(state.since);
    (down > max).then_some(down)
}

/// The service manager (systemd): told once the bot is ready and, on every watchdog tick
/// while it is healthy, that it is alive.
pub trait ServiceManager: Send + Sync + 'static {
    fn ready(&self);
    fn alive(&self);
    fn stopping(&self);
}

/// What the tree needs to tell the outside world it is done for, and to watch Discord.
#[derive(Clone)]
pub struct Liveness {
    pub exit: Exit,
    pub gateway: GatewayHealth,
    /// Disconnected from Discord longer than this, the process ends for the service manager
    /// to start a fresh one (`discord.max_disconnected_seconds`).
    pub max_disconnected: Duration,
    pub service: Arc<dyn ServiceManager>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            exit: Exit::default(),
            gateway: GatewayHealth::default(),
            max_disconnected: Duration::from_secs(300),
            service: Arc::new(NoServiceManager),
        }
    }
}

/// No service manager (the console, tests).
pub struct NoServiceManager;

impl ServiceManager for NoServiceManager {
    fn ready(&self) {}
    fn alive(&self) {}
    fn stopping(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_request_wins() {
        let (exit, rx) = Exit::new();
        exit.request(EXIT_CONFIG, "the token was refused");
        exit.request(EXIT_FAILED, "later");
        assert_eq!(rx.borrow().as_ref().map(|r| (r.code, r.why.as_str())), Some((2, "the token was refused")));
    }

    #[test]
    fn only_a_long_disconnection_counts() {
        let t0 = Instant::now();
        let health = GatewayHealth::default();
        let max = Duration::from_secs(300);
        assert_eq!(disconnected_too_long(health.get(), t0, max), None, "no gateway, nothing to watch");
        health.report(false, None, t0);
        health.report(false, None, t0 + Duration::from_secs(200));
        assert_eq!(health.get().unwrap().since, t0, "still the same outage");
        assert_eq!(disconnected_too_long(health.get(), t0 + Duration::from_secs(300), max), None);
        assert_eq!(disconnected_too_long(health.get(), t0 + Duration::from_secs(301), max), Some(Duration::from_secs(301)));
        health.report(true, Some(Duration::from_millis(40)), t0 + Duration::from_secs(302));
        assert_eq!(disconnected_too_long(health.get(), t0 + Duration::from_secs(900), max), None);
    }
}
