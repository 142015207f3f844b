//! systemd's notify protocol (`Type=notify`): READY=1 once Discord is connected, WATCHDOG=1
//! from every watchdog tick while the bot is healthy, STOPPING=1 on the way out. Without
//! `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use sd_notify::NotifyState;
use sidekick_actors::liveness::ServiceManager;

pub struct Systemd;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "could not notify the service manager");
    }
}

impl ServiceManager for Systemd {
    fn ready(&self) {
        notify(&[NotifyState::Ready, NotifyState::Status("connected to Discord")]);
    }

    fn alive(&self) {
        notify(&[NotifyState::Watchdog]);
    }

    fn stopping(&self) {
        notify(&[NotifyState::Stopping]);
    }
}
