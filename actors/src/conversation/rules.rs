//! How every channel chats: the `[chat]` section of `sidekick.toml`, stated once here.

use crate::engagement::EngagementRules;
use crate::prompt::DEFAULT_SYSTEM_PROMPT;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatRules {
    /// Commands start with this (1-3 characters).
    pub prefix: String,
    pub system_prompt: String,
    /// How many turns of history go into a prompt.
    pub history_turns: usize,
    /// Longer messages are cut to this many characters before they reach the model.
    pub max_message_chars: usize,
    /// Messages waiting in one channel beyond this get one "busy" notice instead of replies.
    pub queue_limit: usize,
    /// Engagement falls to half in this many minutes.
    pub engagement_half_life_minutes: f64,
    /// A conversation idle this long is let go (everything it holds is in the store); the
    /// next message starts it again.
    pub idle_minutes: f64,
    /// At most this many conversations are open; the least recently used idle one goes first.
    pub max_open_channels: usize,
}

impl Default for ChatRules {
    fn default() -> Self {
        Self {
            prefix: "!".into(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            history_turns: 20,
            max_message_chars: 4000,
            queue_limit: 4,
            engagement_half_life_minutes: EngagementRules::default().half_life_ms as f64 / 60_000.0,
            idle_minutes: 30.0,
            max_open_channels: 500,
        }
    }
}

impl ChatRules {
    /// How long a conversation may sit idle before it is let go.
    pub fn idle_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.idle_minutes * 60.0)
    }

    pub fn engagement(&self) -> EngagementRules {
        EngagementRules { half_life_ms: (self.engagement_half_life_minutes * 60_000.0) as u64, ..Default::default() }
    }

    /// Why these rules cannot be used, in one line naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefix.is_empty() || self.prefix.chars().any(char::is_whitespace) || self.prefix.chars().count() > 3 {
            return Err(format!("chat.prefix must be 1-3 characters without spaces, got {:?}", self.prefix));
        }
        let range = |key: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("chat.{key} must be between {lo} and {hi}, got {v}"))
            }
        };
        range("history_turns", self.history_turns, 1, 200)?;
        range("max_message_chars", self.max_message_chars, 100, 100_000)?;
        range("queue_limit", self.queue_limit, 1, 100)?;
        range("max_open_channels", self.max_open_channels, 1, 1_000_000)?;
        if !(0.1..=10_080.0).contains(&self.idle_minutes) {
            return Err(format!("chat.idle_minutes must be between 0.1 and 10080, got {}", self.idle_minutes));
        }
        if !(0.1..=10_080.0).contains(&self.engagement_half_life_minutes) {
            return Err(format!(
                "chat.engagement_half_life_minutes must be between 0.1 and 10080, got {}",
                self.engagement_half_life_minutes
            ));
        }
        Ok(())
    }
}
