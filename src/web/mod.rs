//! `sidekick console`: a small web page to run, watch and tune the bot, for an owner who
//! would rather not use a terminal. It runs `sidekick run` as its child (or watches one
//! already running), shows its status, logs and statistics live, changes the settings the
//! admin commands change (through the daemon's control socket, so the same store writes),
//! and starts fetch, dataset, train, eval and backup.
//!
//! Safe by default: loopback only unless `console.allow_plain_http`, a login token in the
//! store's folder, a CSRF token on every change. Everything it serves is in the binary.

mod actions;
mod auth;
mod bot;
mod logs;
mod page;
mod routes;

pub use auth::{COOKIE, CSRF_HEADER};
pub use logs::LogBook;

use crate::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the console needs besides the configuration.
pub struct ConsoleOptions {
    /// The `sidekick` binary to start as the bot and for the actions.
    pub program: PathBuf,
    /// Start the bot at once (`sidekick console --start`).
    pub start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console.listen {0:?} is not an address (host:port)")]
    BadAddress(String),
    #[error(
        "console.listen {0} is not a loopback address: anyone on the network could reach the page, and the login token would cross it in clear. Listen on 127.0.0.1 (and reach it through an SSH tunnel or a TLS reverse proxy), or set console.allow_plain_http = true"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot read or make the login token in {0}: {1}")]
    Token(PathBuf, std::io::Error),
}

/// Where the console will listen, refusing a non-loopback address unless allowed.
pub fn listen_address(config: &Config) -> Result<SocketAddr, ConsoleError> {
    let addr: SocketAddr = config.console.listen.parse().map_err(|_| ConsoleError::BadAddress(config.console.listen.clone()))?;
    if !addr.ip().is_loopback() && !config.console.allow_plain_http {
        return Err(ConsoleError::NotLoopback(addr));
    }
    Ok(addr)
}

/// A console serving on a bound address.
pub struct Console {
    pub addr: SocketAddr,
    /// The login token (printed once, when it was made).
    pub token: String,
    pub token_created: bool,
    state: routes::AppState,
    listener: tokio::net::TcpListener,
}

impl Console {
    pub async fn bind(config: &Config, options: ConsoleOptions) -> Result<Console, ConsoleError> {
        let addr = listen_address(config)?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the console serves plain HTTP on a non-loopback address (console.allow_plain_http): the login token crosses the network in clear");
        }
        let (token, token_created) =
            auth::load_or_create(&config.storage.path).map_err(|e| ConsoleError::Token(config.storage.path.clone(), e))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ConsoleError::Listen(addr, e))?;
        let addr = listener.local_addr().map_err(|e| ConsoleError::Listen(addr, e))?;
        let logs = LogBook::default();
        let launch = bot::Launch {
            program: options.program.clone(),
            config_file: config.file.clone(),
            socket: crate::control::socket_path(config),
            model_missing: config
                .check_model_file()
                .err()
                .map(|e| format!("{e}; run `./run.sh setup`, or fix model.path in sidekick.toml")),
        };
        let bot = bot::Bot::new(launch, logs.clone());
        let jobs = actions::Jobs::new(options.program, config.file.clone(), config.storage.path.join("backups"), logs);
        let state = routes::AppState::new(config, auth::Keys::new(token.clone()), bot, jobs);
        if options.start {
            let _ = state.bot.start();
        }
        Ok(Console { addr, token, token_created, state, listener })
    }

    /// The URL that logs a browser in.
    pub fn login_url(&self) -> String {
        format!("http://{}/login?token={}", self.addr, self.token)
    }

    /// Serves until `stop` turns true; then stops a bot this console started (gracefully)
    /// and leaves one it found running.
    pub async fn serve(self, mut stop: tokio::sync::watch::Receiver<bool>, grace: Duration) -> std::io::Result<()> {
        let bot = self.state.bot.clone();
        let watcher = tokio::spawn(bot.clone().watch());
        let closing = self.state.closing.clone();
        let app = routes::router(self.state);
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
            // Live log streams never end by themselves; graceful shutdown waits for them.
            let _ = closing.send(true);
        };
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await?;
        if bot.started_here() {
            tracing::info!("stopping the bot this console started");
            let _ = bot.stop();
            if !bot.stopped(grace * 2 + Duration::from_secs(10)).await {
                let _ = bot.force_stop();
                bot.stopped(Duration::from_secs(5)).await;
            }
        }
        watcher.abort();
        Ok(())
    }
}
