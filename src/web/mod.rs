//! `sidekick console`: a small web page to run, watch and tune the bot, for an owner who
//! would rather not use a terminal. It runs `sidekick run` as its child (or watches one
//! already running), shows its status, logs and statistics live, changes the settings the
//! admin commands change (through the daemon's control socket, so the same store writes),
//! and starts fetch, dataset, train, eval and backup.
//!
//! Safe by default: loopback only unless it serves HTTPS (`console.tls_cert`) or
//! `console.allow_plain_http` is set, a login token in the store's folder, a CSRF token on
//! every change. Everything it serves is in the binary.

mod actions;
mod auth;
mod bot;
mod logs;
mod page;
mod routes;
mod service;
mod tls;

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
        "console.listen {0} is not a loopback address: anyone on the network could reach the page, and the login token would cross it in clear. Listen on 127.0.0.1 (and reach it through an SSH tunnel), serve HTTPS (console.tls_cert and console.tls_key, PEM files), or set console.allow_plain_http = true"
    )]
    NotLoopback(SocketAddr),
    #[error("console.tls_cert and console.tls_key go together: set both, or neither")]
    HalfTls,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot read or make the login token in {0}: {1}")]
    Token(PathBuf, std::io::Error),
}

/// Where the console will listen, refusing a non-loopback address unless allowed.
pub fn listen_address(config: &Config) -> Result<SocketAddr, ConsoleError> {
    let console = &config.console;
    let addr: SocketAddr = console.listen.parse().map_err(|_| ConsoleError::BadAddress(console.listen.clone()))?;
    if console.tls_cert.as_os_str().is_empty() != console.tls_key.as_os_str().is_empty() {
        return Err(ConsoleError::HalfTls);
    }
    if !addr.ip().is_loopback() && !console.tls() && !console.allow_plain_http {
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
    /// HTTPS, when configured.
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Console {
    pub async fn bind(config: &Config, options: ConsoleOptions) -> Result<Console, ConsoleError> {
        let addr = listen_address(config)?;
        let tls = if config.console.tls() { Some(tls::server_config(&config.console.tls_cert, &config.console.tls_key)?) } else { None };
        if !addr.ip().is_loopback() && tls.is_none() {
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
            service: service::SystemdUnit::detect(&config.console.service),
        };
        if let Some(unit) = &launch.service {
            logs.push(&format!(
                "console: the bot is the systemd service {}: Start and Stop go through systemctl, the log is its journal",
                unit.name
            ));
        }
        let bot = bot::Bot::new(launch, logs.clone());
        let jobs = actions::Jobs::new(options.program, config.file.clone(), config.storage.path.join("backups"), logs);
        let state = routes::AppState::new(config, auth::Keys::new(token.clone()).secure(tls.is_some()), bot, jobs);
        if options.start {
            let _ = state.bot.start();
        }
        Ok(Console { addr, token, token_created, state, listener, tls })
    }

    /// The URL that logs a browser in.
    pub fn login_url(&self) -> String {
        format!("{}/login?token={}", self.url(), self.token)
    }

    /// `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until `stop` turns true; then stops a bot this console started (gracefully)
    /// and leaves one it found running.
    pub async fn serve(self, mut stop: tokio::sync::watch::Receiver<bool>, grace: Duration) -> std::io::Result<()> {
        let bot = self.state.bot.clone();
        let watcher = tokio::spawn(bot.clone().watch());
        let journal = bot.service().map(|unit| unit.follow_journal(bot.logs.clone()));
        let closing = self.state.closing.clone();
        let app = routes::router(self.state);
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
            // Live log streams never end by themselves; graceful shutdown waits for them.
            let _ = closing.send(true);
        };
        match self.tls {
            Some(config) => axum::serve(tls::TlsListener::new(self.listener, config), app).with_graceful_shutdown(shutdown).await?,
            None => axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await?,
        }
        if bot.started_here() {
            tracing::info!("stopping the bot this console started");
            let _ = bot.stop();
            if !bot.stopped(grace * 2 + Duration::from_secs(10)).await {
                let _ = bot.force_stop();
                bot.stopped(Duration::from_secs(5)).await;
            }
        }
        watcher.abort();
        if let Some(journal) = journal {
            journal.abort();
        }
        Ok(())
    }
}
