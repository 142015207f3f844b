//! SIGTERM/SIGINT, through signal-hook, turned into a future.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::watch;

/// Resolves (the receiver sees `true`) at the first SIGTERM or SIGINT.
pub fn shutdown_requested() -> anyhow::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            tracing::info!(signal, "shutdown requested");
            let _ = tx.send(true);
        }
    })?;
    Ok(rx)
}
