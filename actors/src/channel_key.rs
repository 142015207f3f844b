//! Which conversation a message belongs to, typed once for both crates.
//!
//! The store key (`Display`/`FromStr`) names the channel and nothing else: `console`,
//! `discord:<channel id>` for a server channel or thread (Discord gives a thread an id of its
//! own), `discord-dm:<channel id>` for a direct message. These are the strings stores have
//! always used, so a store written before the key was typed opens unchanged. What else is known
//! about the channel (its server, a thread's parent, a DM's user) travels with the key when the
//! gateway knows it, but is not part of its identity: two keys are equal when their store keys
//! are.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

#[derive(Debug, Clone, Copy)]
pub enum ChannelKey {
    /// The terminal of `sidekick chat`.
    Console,
    /// A text channel of a Discord server.
    Guild { guild: Option<u64>, channel: u64 },
    /// A thread or forum post, with the channel it belongs to.
    Thread { guild: Option<u64>, parent: Option<u64>, thread: u64 },
    /// A direct message with one user.
    Dm { user: Option<u64>, channel: u64 },
}

const CONSOLE: &str = "console";
const GUILD_PREFIX: &str = "discord:";
const DM_PREFIX: &str = "discord-dm:";

impl ChannelKey {
    /// A server channel whose server is known.
    pub fn guild(guild: u64, channel: u64) -> Self {
        Self::Guild { guild: Some(guild), channel }
    }

    /// What identifies the channel in the store: its kind and id.
    fn identity(&self) -> (u8, u64) {
        match *self {
            Self::Console => (0, 0),
            Self::Guild { channel, .. } => (1, channel),
            Self::Thread { thread, .. } => (1, thread),
            Self::Dm { channel, .. } => (2, channel),
        }
    }

    /// The Discord channel (or thread) id, if this is a Discord conversation.
    pub fn discord_id(&self) -> Option<u64> {
        match *self {
            Self::Console => None,
            Self::Guild { channel, .. } | Self::Dm { channel, .. } => Some(channel),
            Self::Thread { thread, .. } => Some(thread),
        }
    }

    /// The server it belongs to, when known (never for DMs and the console).
    pub fn guild_id(&self) -> Option<u64> {
        match *self {
            Self::Guild { guild, .. } | Self::Thread { guild, .. } => guild,
            Self::Console | Self::Dm { .. } => None,
        }
    }

    /// The channel whose allowlist entry and purge decide for this one: a server channel
    /// itself, a thread's parent (the thread itself when its parent is unknown); none for DMs
    /// and the console, which are always the asker's own.
    pub fn allowlist_channel(&self) -> Option<u64> {
        match *self {
            Self::Guild { channel, .. } => Some(channel),
            Self::Thread { parent, thread, .. } => Some(parent.unwrap_or(thread)),
            Self::Console | Self::Dm { .. } => None,
        }
    }

    pub fn is_dm(&self) -> bool {
        matches!(self, Self::Dm { .. })
    }

    pub fn is_console(&self) -> bool {
        matches!(self, Self::Console)
    }

    /// Discord channels have many speakers, so their names go into the prompt; the console
    /// has one.
    pub fn names_speakers(&self) -> bool {
        !self.is_console()
    }
}

impl PartialEq for ChannelKey {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for ChannelKey {}

impl Hash for ChannelKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Console => f.write_str(CONSOLE),
            Self::Guild { channel: id, .. } | Self::Thread { thread: id, .. } => write!(f, "{GUILD_PREFIX}{id}"),
            Self::Dm { channel, .. } => write!(f, "{DM_PREFIX}{channel}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a channel key (console, discord:<id> or discord-dm:<id>)")]
pub struct BadChannelKey(pub String);

impl FromStr for ChannelKey {
    type Err = BadChannelKey;

    /// The key as the store holds it; what the store key does not say (server, parent,
    /// user) is unknown.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = |digits: &str| digits.parse::<u64>().map_err(|_| BadChannelKey(s.to_string()));
        if s == CONSOLE {
            Ok(Self::Console)
        } else if let Some(rest) = s.strip_prefix(DM_PREFIX) {
            Ok(Self::Dm { user: None, channel: id(rest)? })
        } else if let Some(rest) = s.strip_prefix(GUILD_PREFIX) {
            Ok(Self::Guild { guild: None, channel: id(rest)? })
        } else {
            Err(BadChannelKey(s.to_string()))
        }
    }
}

/// Serialized as the store key, so records that name a channel read as before.
impl Serialize for ChannelKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a key with all that is known about it (a thread's parent, a server), for
/// records that must carry it across processes: `#[serde(with = "channel_key::whole")]`.
pub mod whole {
    use super::ChannelKey;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Whole {
        key: ChannelKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guild: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<u64>,
    }

    pub fn serialize<S: Serializer>(key: &ChannelKey, serializer: S) -> Result<S::Ok, S::Error> {
        let parent = match *key {
            ChannelKey::Thread { parent, .. } => parent,
            _ => None,
        };
        Whole { key: *key, guild: key.guild_id(), parent }.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ChannelKey, D::Error> {
        let Whole { key, guild, parent } = Whole::deserialize(deserializer)?;
        Ok(match key {
            ChannelKey::Guild { channel, .. } if parent.is_some() => ChannelKey::Thread { guild, parent, thread: channel },
            ChannelKey::Guild { channel, .. } => ChannelKey::Guild { guild, channel },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_key_keeps_its_server_and_parent_across_json() {
        #[derive(Serialize, Deserialize)]
        struct Holder(#[serde(with = "whole")] ChannelKey);
        for key in [
            ChannelKey::Thread { guild: Some(7), parent: Some(42), thread: 43 },
            ChannelKey::guild(7, 42),
            ChannelKey::Console,
            ChannelKey::Dm { user: None, channel: 5 },
        ] {
            let json = serde_json::to_string(&Holder(key)).unwrap();
            let back = serde_json::from_str::<Holder>(&json).unwrap().0;
            assert_eq!(format!("{back:?}"), format!("{key:?}"), "{json}");
        }
    }

    #[test]
    fn store_keys_are_the_strings_stores_always_had() {
        let cases = [
            (ChannelKey::Console, "console"),
            (ChannelKey::guild(7, 42), "discord:42"),
            (ChannelKey::Thread { guild: Some(7), parent: Some(42), thread: 43 }, "discord:43"),
            (ChannelKey::Dm { user: Some(9), channel: 44 }, "discord-dm:44"),
        ];
        for (key, text) in cases {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<ChannelKey>().unwrap(), key, "{text} parses back to the same channel");
            assert_eq!(serde_json::to_string(&key).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn identity_is_the_channel_not_what_is_known_about_it() {
        let parsed: ChannelKey = "discord:43".parse().unwrap();
        let thread = ChannelKey::Thread { guild: Some(7), parent: Some(42), thread: 43 };
        assert_eq!(parsed, thread);
        let set: std::collections::HashSet<_> = [parsed, thread].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_ne!(ChannelKey::guild(7, 44), ChannelKey::Dm { user: None, channel: 44 }, "a DM is never a server channel");
    }

    #[test]
    fn threads_answer_to_their_parent() {
        let thread = ChannelKey::Thread { guild: Some(7), parent: Some(42), thread: 43 };
        assert_eq!(thread.allowlist_channel(), Some(42));
        assert_eq!(thread.guild_id(), Some(7));
        assert_eq!(ChannelKey::Dm { user: Some(9), channel: 44 }.allowlist_channel(), None);
        assert!(!ChannelKey::Console.names_speakers());
    }

    #[test]
    fn anything_else_is_refused_with_the_text() {
        for bad in ["", "discord:", "discord:abc", "slack:1", "discord-dm:-4"] {
            let err = bad.parse::<ChannelKey>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
