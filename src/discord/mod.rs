//! The Discord gateway (serenity): connects to Discord (or a REST proxy / test double at
//! `discord.api_base`), turns events into messages for the actor tree, delivers replies, and
//! reports on the connection: its state to the watchdog, readiness to systemd, and a close
//! no reconnect can fix as a reason to exit.

mod buttons;
mod deliver;
mod handler;
pub mod slash;
mod stream;

use crate::config::{Config, MessageContent};
use ractor::ActorRef;
use serenity::all::{GatewayIntents, Http, HttpBuilder, ShardManager, UserId};
use serenity::client::ClientBuilder;
use serenity::gateway::{ConnectionStage, GatewayError as Close};
use sidekick_actors::liveness::{ExitRequest, GatewayHealth, ServiceManager, EXIT_CONFIG, EXIT_FAILED, WITHOUT_MESSAGE_CONTENT};
use sidekick_actors::ports::{BoxFuture, Connection, Connector};
use sidekick_actors::RootMsg;
use std::sync::Arc;
use std::time::Duration;

/// Discord's own address; any other `api_base` is a proxy.
pub const DISCORD: &str = "https://discord.com";

/// A connected gateway; dropping it does not disconnect, [`Gateway::shutdown`] does.
pub struct Gateway {
    shards: Arc<ShardManager>,
    task: Option<ClientTask>,
    monitor: tokio::task::JoinHandle<()>,
    /// What a new client needs, should the first one have to be replaced.
    restart: Restart,
    pub bot_id: UserId,
    pub owner_id: Option<UserId>,
}

/// How to start the client again without the Message Content intent.
struct Restart {
    token: String,
    base: String,
    handler: Arc<handler::Handler>,
    health: GatewayHealth,
    service: Arc<dyn ServiceManager>,
    mode: MessageContent,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no Discord token (set DISCORD_TOKEN in .env)")]
    NoToken,
    #[error("cannot reach Discord at {base}: {source} (check discord.api_base / DISCORD_API_BASE and the token)")]
    Unreachable { base: String, source: serenity::Error },
    #[error("Discord refused the token (401 Unauthorized). Reset it in the developer portal (Bot → Reset Token) and put the new one in DISCORD_TOKEN in .env")]
    TokenRefused,
    #[error("Discord client failed to start: {0}")]
    Client(#[from] serenity::Error),
}

/// What the bot asks Discord for; the Message Content intent is privileged and optional.
pub fn intents(message_content: bool) -> GatewayIntents {
    let intents = GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::DIRECT_MESSAGE_REACTIONS;
    if message_content {
        intents | GatewayIntents::MESSAGE_CONTENT
    } else {
        intents
    }
}

/// The REST client for `base` (Discord's own address, or a proxy that rate-limits for us).
fn http_for(token: &str, base: &str) -> Http {
    let mut builder = HttpBuilder::new(token);
    if base != DISCORD {
        // serenity's rate limiter ignores the proxy, so requests would still go to Discord:
        // the proxy must do the rate limiting (as a self-hosted REST proxy does).
        builder = builder.proxy(base).ratelimiter_disabled(true);
    }
    builder.build()
}

type ClientTask = tokio::task::JoinHandle<Result<(), serenity::Error>>;
/// A started client: its shards, the task running it, and the task watching it.
type Started = (Arc<ShardManager>, ClientTask, tokio::task::JoinHandle<()>);

/// Starts a client on `handler` with or without the Message Content intent, and its monitor.
async fn start_client(restart: &Restart, message_content: bool) -> Result<Started, GatewayError> {
    let http = http_for(&restart.token, &restart.base);
    let mut client = ClientBuilder::new_with_http(http, intents(message_content)).event_handler_arc(restart.handler.clone()).await?;
    let shards = client.shard_manager.clone();
    let task = tokio::spawn(async move { client.start().await });
    let monitor = tokio::spawn(monitor(shards.clone(), restart.health.clone(), restart.service.clone()));
    Ok((shards, task, monitor))
}

/// Connects and starts dispatching events to `root`; `health` follows the connection, and
/// `service` hears when it is first up.
pub async fn connect(
    config: &Config,
    root: ActorRef<RootMsg>,
    health: GatewayHealth,
    service: Arc<dyn ServiceManager>,
) -> Result<Gateway, GatewayError> {
    let token = config.secrets.discord_token.clone().ok_or(GatewayError::NoToken)?;
    let base = config.discord.api_base.trim_end_matches('/').to_string();
    let http = http_for(&token, &base);
    // serenity quietly falls back to Discord's own gateway when this lookup fails; with a
    // proxy that would leave it talking to the wrong place, so a failure here is an error.
    let unreachable = |source: serenity::Error| match &source {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) if r.status_code.as_u16() == 401 => {
            GatewayError::TokenRefused
        }
        _ => GatewayError::Unreachable { base: base.clone(), source },
    };
    http.get_gateway().await.map_err(unreachable)?;
    let me = http.get_current_user().await.map_err(unreachable)?;
    let owner_id = match config.secrets.owner_id {
        Some(id) => Some(UserId::new(id)),
        None => http.get_current_application_info().await.ok().and_then(|app| app.owner).map(|u| u.id),
    };
    let handler = Arc::new(handler::Handler::new(handler::Router {
        root,
        bot_id: me.id,
        owner_id,
        admins: config.secrets.admin_users.iter().map(|id| UserId::new(*id)).collect(),
        seen: Default::default(),
        threads: Default::default(),
        register: config.discord.register,
        stream: config.discord.stream,
        edits: Arc::new(stream::Streaming::new(Duration::from_millis(config.discord.edit_interval_ms))),
        buttons: config
            .discord
            .buttons
            .then(|| Arc::new(buttons::Buttons::new(Duration::from_secs_f64(config.discord.buttons_minutes * 60.0)))),
        registered: Default::default(),
        health: health.clone(),
        guild_names: Default::default(),
    }));
    let mode = config.discord.message_content;
    let restart = Restart { token, base, handler, health, service, mode };
    let message_content = mode != MessageContent::Off;
    restart.health.set_without_message_content(!message_content);
    if !message_content {
        tracing::info!("{WITHOUT_MESSAGE_CONTENT}");
    }
    let (shards, task, monitor) = start_client(&restart, message_content).await?;
    tracing::info!(bot = %me.name, "connected to Discord");
    Ok(Gateway { shards, task: Some(task), monitor, restart, bot_id: me.id, owner_id })
}

/// Connects, then hands the connection to the actor tree as its gateway child
/// (`sidekick_actors::gateway`): the supervisor sees it fail and restarts it with a fresh
/// connection, within the tree's restart limits. A refusal at start is returned at once.
pub async fn supervised(
    config: &Config,
    root: ActorRef<RootMsg>,
    health: GatewayHealth,
    service: Arc<dyn ServiceManager>,
) -> Result<(), GatewayError> {
    let first = connect(config, root.clone(), health.clone(), service.clone()).await?;
    let connector = Arc::new(DiscordConnector { config: config.clone(), health, service });
    // A tree already gone closes the connection when the message is dropped.
    let _ = root.send_message(RootMsg::Connected { connector, first: Box::new(first) });
    Ok(())
}

/// Makes the gateway child's connections.
struct DiscordConnector {
    config: Config,
    health: GatewayHealth,
    service: Arc<dyn ServiceManager>,
}

impl Connector for DiscordConnector {
    fn connect(&self, root: ActorRef<RootMsg>) -> BoxFuture<'_, Result<Box<dyn Connection>, ExitRequest>> {
        Box::pin(async move {
            match connect(&self.config, root, self.health.clone(), self.service.clone()).await {
                Ok(gateway) => Ok(Box::new(gateway) as Box<dyn Connection>),
                Err(e) => Err(ExitRequest { code: e.exit_code(), why: e.to_string() }),
            }
        })
    }
}

impl Connection for Gateway {
    fn ended(&mut self) -> BoxFuture<'_, ExitRequest> {
        Box::pin(Gateway::ended(self))
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(Gateway::shutdown(*self))
    }
}

/// Reads the shard's stage and heartbeat latency every second into `health`, and tells the
/// service manager the bot is ready the first time it is connected.
async fn monitor(shards: Arc<ShardManager>, health: GatewayHealth, service: Arc<dyn ServiceManager>) {
    let mut told_ready = false;
    loop {
        let (connected, latency) = {
            let runners = shards.runners.lock().await;
            let connected = runners.values().any(|r| r.stage == ConnectionStage::Connected);
            (connected, runners.values().find_map(|r| r.latency))
        };
        health.report(connected, latency, tokio::time::Instant::now());
        if connected && !told_ready {
            told_ready = true;
            service.ready();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a connection that ended for good means for the process: a close only the operator
/// can fix exits 2 (systemd does not restart it) with the cause and the fix; anything else 1.
pub fn exit_for(error: Option<&serenity::Error>) -> ExitRequest {
    let fix = |code: u16, why: &str| ExitRequest { code: EXIT_CONFIG, why: format!("Discord closed the connection with {code}: {why}") };
    match error {
        Some(serenity::Error::Gateway(Close::InvalidAuthentication)) => fix(
            4004,
            "the token was refused. Reset it in the developer portal (Bot → Reset Token) and put the new one in DISCORD_TOKEN in .env",
        ),
        Some(serenity::Error::Gateway(Close::InvalidShardData)) => fix(4010, "invalid shard data; run a single shard (the default)"),
        Some(serenity::Error::Gateway(Close::OverloadedShard)) => fix(4011, "the bot is in too many servers for one shard"),
        Some(serenity::Error::Gateway(Close::InvalidGatewayIntents)) => fix(4013, "the gateway intents asked for are invalid"),
        Some(serenity::Error::Gateway(Close::DisallowedGatewayIntents)) => {
            fix(4014, "the Message Content intent is not enabled (discord.message_content = \"on\" needs it). Turn it on in the developer portal (Bot → Privileged Gateway Intents), or set discord.message_content = \"auto\" to run without it")
        }
        Some(e) => ExitRequest { code: EXIT_FAILED, why: format!("the Discord connection ended: {e}") },
        None => ExitRequest { code: EXIT_FAILED, why: "the Discord connection ended".into() },
    }
}

impl GatewayError {
    /// A refused token is the operator's to fix (exit 2, not restarted); the rest may pass.
    pub fn exit_code(&self) -> u8 {
        match self {
            GatewayError::NoToken | GatewayError::TokenRefused => EXIT_CONFIG,
            _ => EXIT_FAILED,
        }
    }
}

impl Gateway {
    /// Resolves if the connection ends for good, with what that means for the process. With
    /// `discord.message_content = auto`, Discord refusing the intent (4014) is not the end:
    /// the client starts again without it.
    pub async fn ended(&mut self) -> ExitRequest {
        loop {
            let Some(task) = self.task.as_mut() else { return std::future::pending().await };
            let result = task.await;
            self.task = None;
            let refused = matches!(&result, Ok(Err(serenity::Error::Gateway(Close::DisallowedGatewayIntents))));
            if refused && self.restart.mode == MessageContent::Auto && !self.restart.health.without_message_content() {
                tracing::warn!("Discord refused the Message Content intent (4014); connecting without it. {WITHOUT_MESSAGE_CONTENT}");
                self.restart.health.set_without_message_content(true);
                self.monitor.abort();
                match start_client(&self.restart, false).await {
                    Ok((shards, task, monitor)) => {
                        (self.shards, self.task, self.monitor) = (shards, Some(task), monitor);
                        continue;
                    }
                    Err(e) => return ExitRequest { code: EXIT_FAILED, why: format!("could not connect again without the intent: {e}") },
                }
            }
            return match result {
                Ok(Ok(())) => exit_for(None),
                Ok(Err(e)) => exit_for(Some(&e)),
                Err(e) => ExitRequest { code: EXIT_FAILED, why: format!("the Discord connection task failed: {e}") },
            };
        }
    }

    /// Closes the connection; replies already queued in the tree still finish.
    pub async fn shutdown(self) {
        self.monitor.abort();
        self.shards.shutdown_all().await;
        if let Some(task) = self.task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_only_the_operator_can_fix_exit_2_with_the_fix() {
        let refused = exit_for(Some(&serenity::Error::Gateway(Close::InvalidAuthentication)));
        assert_eq!(refused.code, 2);
        assert!(refused.why.contains("4004") && refused.why.contains("token") && refused.why.contains("DISCORD_TOKEN"), "{}", refused.why);
        let intent = exit_for(Some(&serenity::Error::Gateway(Close::DisallowedGatewayIntents)));
        assert!(intent.code == 2 && intent.why.contains("Message Content"), "{}", intent.why);
        for close in [Close::InvalidShardData, Close::OverloadedShard, Close::InvalidGatewayIntents] {
            assert_eq!(exit_for(Some(&serenity::Error::Gateway(close))).code, 2);
        }
        assert_eq!(exit_for(Some(&serenity::Error::Other("boom"))).code, 1, "anything else: restart");
        assert_eq!(exit_for(None).code, 1);
        assert!(!refused.why.contains('\n'));
    }
}
