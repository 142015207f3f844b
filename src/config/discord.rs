//! `[discord]`: how the bot meets Discord: where, with which intents, and how it answers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    pub api_base: String,
    /// Disconnected from Discord longer than this, the process ends so systemd starts a fresh one.
    pub max_disconnected_seconds: f64,
    /// Where the slash commands are registered.
    pub register: SlashRegistration,
    /// Replies are posted after the first words and edited as they are written.
    pub stream: bool,
    /// Whether to ask Discord for the privileged Message Content intent.
    pub message_content: MessageContent,
    /// A streamed reply is edited at most this often (Discord allows 5 edits per 5 s in a
    /// channel, shared by all replies in it; the bot keeps to that too).
    pub edit_interval_ms: u64,
    /// 👍 👎 🔁 under each reply (and ⏹ while it is streamed).
    pub buttons: bool,
    /// The buttons leave a reply after this long, or when a newer reply follows.
    pub buttons_minutes: f64,
}

/// The Message Content intent: `auto` asks for it and runs without it if Discord refuses
/// (close 4014); `on` makes a refusal fatal (exit 2); `off` never asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageContent {
    Auto,
    On,
    Off,
}

/// Where the slash commands are registered: in each server at ready (at once), for the whole
/// application (Discord may take a while to show changes), or not at all (`!` commands only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlashRegistration {
    Guild,
    Global,
    Off,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            api_base: "https://discord.com".into(),
            max_disconnected_seconds: 300.0,
            register: SlashRegistration::Guild,
            stream: true,
            message_content: MessageContent::Auto,
            edit_interval_ms: 1000,
            buttons: true,
            buttons_minutes: 60.0,
        }
    }
}

impl DiscordConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            return Err(format!("discord.api_base (or DISCORD_API_BASE) must start with http:// or https://, got {:?}", self.api_base));
        }
        if !(200..=60_000).contains(&self.edit_interval_ms) {
            return Err(format!("discord.edit_interval_ms must be between 200 and 60000, got {}", self.edit_interval_ms));
        }
        if !(0.05..=10_080.0).contains(&self.buttons_minutes) {
            return Err(format!("discord.buttons_minutes must be between 0.05 and 10080 (a week), got {}", self.buttons_minutes));
        }
        if !(10.0..=86_400.0).contains(&self.max_disconnected_seconds) {
            return Err(format!("discord.max_disconnected_seconds must be between 10 and 86400, got {}", self.max_disconnected_seconds));
        }
        Ok(())
    }
}
