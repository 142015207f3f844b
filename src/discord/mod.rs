//! The Discord gateway (serenity): connects to Discord (or a REST proxy / test double at
//! `discord.api_base`), turns events into messages for the actor tree, and delivers replies.

mod deliver;
mod handler;

use crate::config::Config;
use ractor::ActorRef;
use serenity::all::{GatewayIntents, HttpBuilder, ShardManager, UserId};
use serenity::client::ClientBuilder;
use sidekick_actors::RootMsg;
use std::sync::Arc;

/// Discord's own address; any other `api_base` is a proxy.
pub const DISCORD: &str = "https://discord.com";

/// A connected gateway; dropping it does not disconnect, [`Gateway::shutdown`] does.
pub struct Gateway {
    shards: Arc<ShardManager>,
    task: tokio::task::JoinHandle<()>,
    pub bot_id: UserId,
    pub owner_id: Option<UserId>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no Discord token (set DISCORD_TOKEN in .env)")]
    NoToken,
    #[error("cannot reach Discord at {base}: {source} (check discord.api_base / DISCORD_API_BASE and the token)")]
    Unreachable { base: String, source: serenity::Error },
    #[error("Discord client failed to start: {0}")]
    Client(#[from] serenity::Error),
}

pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::DIRECT_MESSAGE_REACTIONS
}

/// Connects and starts dispatching events to `root`.
pub async fn connect(config: &Config, root: ActorRef<RootMsg>) -> Result<Gateway, GatewayError> {
    let token = config.secrets.discord_token.clone().ok_or(GatewayError::NoToken)?;
    let base = config.discord.api_base.trim_end_matches('/').to_string();
    let mut builder = HttpBuilder::new(&token);
    if base != DISCORD {
        // serenity's rate limiter ignores the proxy, so requests would still go to Discord:
        // the proxy must do the rate limiting (as a self-hosted REST proxy does).
        builder = builder.proxy(base.clone()).ratelimiter_disabled(true);
    }
    let http = builder.build();
    // serenity quietly falls back to Discord's own gateway when this lookup fails; with a
    // proxy that would leave it talking to the wrong place, so a failure here is an error.
    http.get_gateway().await.map_err(|source| GatewayError::Unreachable { base: base.clone(), source })?;
    let me = http.get_current_user().await.map_err(|source| GatewayError::Unreachable { base: base.clone(), source })?;
    let owner_id = match config.secrets.owner_id {
        Some(id) => Some(UserId::new(id)),
        None => http.get_current_application_info().await.ok().and_then(|app| app.owner).map(|u| u.id),
    };
    let handler = handler::Handler::new(handler::Router {
        root,
        bot_id: me.id,
        owner_id,
        admins: config.secrets.admin_users.iter().map(|id| UserId::new(*id)).collect(),
        seen: Default::default(),
    });
    let mut client = ClientBuilder::new_with_http(http, intents()).event_handler(handler).await?;
    let shards = client.shard_manager.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = client.start().await {
            tracing::error!(error = %e, "Discord connection ended");
        }
    });
    tracing::info!(bot = %me.name, "connected to Discord");
    Ok(Gateway { shards, task, bot_id: me.id, owner_id })
}

impl Gateway {
    /// Closes the connection; replies already queued in the tree still finish.
    pub async fn shutdown(self) {
        self.shards.shutdown_all().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}
