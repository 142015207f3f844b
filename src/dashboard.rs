//! What the web console shows of a running bot, gathered by the daemon for one control
//! request: its status, the settings the admin commands change, and the last day and week.

use crate::config::Config;
use crate::control::Status;
use crate::store::FjallStore;
use serde::{Deserialize, Serialize};
use sidekick_actors::liveness::GatewayHealth;
use sidekick_actors::ports::SettingsStore;
use sidekick_actors::stats::{self, Window};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dashboard {
    pub status: Status,
    /// The Discord connection, as a person reads it.
    pub discord: String,
    pub settings: Settings,
    pub day: Window,
    pub week: Window,
    /// Replies and messages seen per hour over the week, oldest first.
    pub hourly_replies: Vec<u64>,
    pub hourly_messages: Vec<u64>,
    /// The text channels Discord has shown since the bot connected: id → `#name (server)`.
    #[serde(default)]
    pub channels: std::collections::BTreeMap<String, String>,
}

/// The server-wide settings (`!setrate`, `!settemp`, `!setmaxlen`, `!mentions_only`,
/// `!allow`/`!deny`) with the configured defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub reply_rate: f64,
    pub temperature: f32,
    pub max_tokens: u32,
    pub mentions_only: bool,
    /// Channel ids; empty means every channel.
    pub allowlist: Vec<String>,
}

pub const WEEK_HOURS: u64 = 7 * 24;

pub fn gather(status: Status, config: &Config, store: &FjallStore, gateway: &GatewayHealth, now_ms: u64) -> Result<Dashboard, String> {
    let global = store.global_settings().map_err(|e| e.to_string())?;
    let params = global.params.apply(&config.generation);
    Ok(Dashboard {
        status,
        discord: discord(gateway),
        settings: Settings {
            reply_rate: global.reply_rate,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            mentions_only: global.mentions_only,
            allowlist: global.allowlist.into_iter().collect(),
        },
        day: stats::window(store, now_ms, 24),
        week: stats::window(store, now_ms, WEEK_HOURS),
        hourly_replies: stats::hourly(store, "replies", now_ms, WEEK_HOURS),
        hourly_messages: stats::hourly(store, "messages", now_ms, WEEK_HOURS),
        channels: gateway.channel_names().into_iter().map(|(id, name)| (id.to_string(), name)).collect(),
    })
}

fn discord(gateway: &GatewayHealth) -> String {
    let Some(state) = gateway.get() else { return "not connected yet".into() };
    let since = sidekick_actors::human::duration(state.since.elapsed());
    let mut shown = match (state.connected, state.latency) {
        (true, Some(latency)) => format!("connected ({} ms heartbeat)", latency.as_millis()),
        (true, None) => "connected".into(),
        (false, _) => format!("disconnected for {since}"),
    };
    if gateway.without_message_content() {
        shown.push_str(", without the Message Content intent");
    }
    shown
}
