//! What the bot may keep, show and learn from: one rule set for every data path (live
//! messages, retrieval, feedback, training, and the history import and dataset that come
//! later). Pure functions over the admins' settings, tested here.
//!
//! - **Allowlist.** With a non-empty allowlist the bot talks in, stores, embeds and learns from
//!   allowlisted server channels only (a thread as its parent). DMs and the console are the
//!   asker's own: kept, but only ever shown back in the same conversation.
//! - **Opt-out.** A user who said `!forgetme` is never stored, shown or learned from.
//! - **Scope.** Background for a prompt comes from the same server's channels the bot may read,
//!   or, in a DM or on the console, from that conversation alone: never across servers, DMs or
//!   the console.

use crate::channel_key::ChannelKey;
use crate::ports::GlobalSettings;
use std::collections::BTreeSet;

/// Where earlier messages may come from for a prompt in a given channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A server channel: that server's channels, only the allowlisted ones when there is an
    /// allowlist (`None`: all of them).
    Server { guild: u64, channels: Option<BTreeSet<u64>> },
    /// A DM, the console, or a server channel whose server is unknown: that channel only.
    Conversation(ChannelKey),
}

/// Where a stored message was said, as the scope rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub channel: ChannelKey,
    pub guild: Option<u64>,
}

impl Place {
    /// The place of a message said in `channel` of `guild` (the key may not carry it).
    pub fn new(channel: ChannelKey, guild: Option<u64>) -> Place {
        Place { channel, guild: guild.or(channel.guild_id()) }
    }
}

impl Scope {
    /// Whether a message said at `place` may be shown in a prompt of this scope.
    pub fn admits(&self, place: &Place) -> bool {
        match self {
            Scope::Conversation(key) => place.channel == *key,
            Scope::Server { guild, channels } => {
                let in_server = place.guild == Some(*guild) && !place.channel.is_dm() && !place.channel.is_console();
                let allowed = match (channels, place.channel.allowlist_channel()) {
                    (None, _) => true,
                    (Some(ids), Some(id)) => ids.contains(&id),
                    (Some(_), None) => false,
                };
                in_server && allowed
            }
        }
    }
}

/// The hits a prompt in `scope` may show: said where the scope admits, by someone who has not
/// opted out. The retriever filters by scope already; this is checked again where the prompt
/// is made, so no retriever can leak.
pub fn shown(hits: Vec<crate::context::Hit>, scope: &Scope, global: &GlobalSettings) -> Vec<crate::context::Hit> {
    hits.into_iter().filter(|h| scope.admits(&h.place) && !global.opted_out(h.user_id.as_deref())).collect()
}

impl GlobalSettings {
    /// Whether `user` (a Discord user id; `None` on the console) opted out of being kept.
    pub fn opted_out(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| self.opted_out.contains(u))
    }

    /// Whether a message by `user` in `channel` may be stored, embedded and learned from.
    pub fn may_keep(&self, channel: &ChannelKey, user: Option<&str>) -> bool {
        self.allows(channel) && !self.opted_out(user)
    }

    /// Where background for a prompt in `channel` may come from.
    pub fn scope(&self, channel: &ChannelKey) -> Scope {
        match (channel.guild_id(), channel.allowlist_channel()) {
            (Some(guild), Some(_)) => {
                let channels = (!self.allowlist.is_empty()).then(|| self.allowlist.iter().filter_map(|id| id.parse().ok()).collect());
                Scope::Server { guild, channels }
            }
            _ => Scope::Conversation(*channel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(user: u64, channel: u64) -> ChannelKey {
        ChannelKey::Dm { user: Some(user), channel }
    }

    #[test]
    fn a_dm_sees_only_itself() {
        let global = GlobalSettings::default();
        let scope = global.scope(&dm(1, 10));
        assert!(scope.admits(&Place::new(dm(1, 10), None)));
        assert!(!scope.admits(&Place::new(dm(2, 20), None)), "another user's DM");
        assert!(!scope.admits(&Place::new(ChannelKey::Console, None)));
        assert!(!scope.admits(&Place::new(ChannelKey::guild(7, 1), Some(7))));
        assert!(!global.scope(&ChannelKey::Console).admits(&Place::new(dm(1, 10), None)));
    }

    #[test]
    fn a_server_channel_sees_its_server_and_only_what_the_allowlist_allows() {
        let mut global = GlobalSettings::default();
        let here = ChannelKey::guild(7, 1);
        let open = global.scope(&here);
        assert!(open.admits(&Place::new(ChannelKey::guild(7, 2), None)));
        assert!(!open.admits(&Place::new(ChannelKey::guild(8, 2), None)), "never another server");
        assert!(!open.admits(&Place::new(dm(1, 10), Some(7))), "never a DM, whatever it claims");
        global.allowlist.insert("1".into());
        let closed = global.scope(&here);
        assert!(closed.admits(&Place::new(here, None)));
        assert!(!closed.admits(&Place::new(ChannelKey::guild(7, 2), None)), "a channel off the allowlist");
        let thread = ChannelKey::Thread { guild: Some(7), parent: Some(1), thread: 5 };
        assert!(closed.admits(&Place::new(thread, None)), "a thread of an allowlisted channel");
    }

    #[test]
    fn what_may_be_kept() {
        let mut global = GlobalSettings::default();
        global.allowlist.insert("1".into());
        global.opted_out.insert("42".into());
        assert!(global.may_keep(&ChannelKey::guild(7, 1), Some("9")));
        assert!(!global.may_keep(&ChannelKey::guild(7, 2), Some("9")), "off the allowlist");
        assert!(!global.may_keep(&ChannelKey::guild(7, 1), Some("42")), "opted out");
        assert!(!global.may_keep(&dm(42, 3), Some("42")), "opted out, in a DM too");
        assert!(global.may_keep(&dm(9, 3), Some("9")));
        assert!(global.may_keep(&ChannelKey::Console, None));
    }
}
