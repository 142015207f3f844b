//! The server's history: every human message the bot may learn from, whether it was fetched
//! from Discord, imported from an export, or seen live, in one form. The rules that decide what
//! is kept (`filters`), how much each voice weighs (`balance`) and how messages become training
//! examples (`windows`) are pure and tested here; reading and writing are the binary's.

pub mod balance;
pub mod filters;
pub mod windows;

use crate::channel_key::ChannelKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One message of a server's history, as kept for training. The same message fetched,
/// imported or seen live is the same record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// Discord's message id (ids grow with time).
    pub id: u64,
    /// With its server and, for a thread, its parent (whose allowlist entry decides for it).
    #[serde(with = "crate::channel_key::whole")]
    pub channel: ChannelKey,
    pub guild: Option<u64>,
    pub author_id: u64,
    /// The author's user name (what a prompt shows before their words).
    pub author: String,
    pub content: String,
    pub at_ms: u64,
    /// The message it answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// Reactions on it: emoji (a custom one by name) → count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, u32>,
}

impl HistoryMessage {
    /// Reactions of every kind.
    pub fn reaction_count(&self) -> u32 {
        self.reactions.values().sum()
    }
}

/// A message offered to the history by a fetch or an import, with what the filters need to
/// know of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    pub message: HistoryMessage,
    pub kind: filters::Kind,
    pub from_bot: bool,
}

impl Offered {
    pub fn verdict(&self, global: &crate::ports::GlobalSettings) -> Verdict {
        let m = &self.message;
        admit(global, &m.channel, m.author_id, self.kind, self.from_bot, &m.content)
    }
}

/// Admits what the rules allow of `offered`: the kept messages and the counts.
pub fn sort(global: &crate::ports::GlobalSettings, offered: Vec<Offered>) -> (Vec<HistoryMessage>, Admitted) {
    let mut counts = Admitted::default();
    let mut kept = Vec::with_capacity(offered.len());
    for o in offered {
        let verdict = o.verdict(global);
        counts.count(verdict);
        if verdict == Verdict::Keep {
            kept.push(o.message);
        }
    }
    (kept, counts)
}

/// What became of a batch of messages offered to the history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    pub kept: usize,
    /// Bots' messages, system messages and bare links (`filters`).
    pub filtered: usize,
    /// From people who opted out, or channels the bot may not learn from.
    pub refused: usize,
}

/// What the rules say of one message offered to the history (`governance.rs` and `filters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Filtered(filters::Dropped),
    /// A DM, a channel the bot may not learn from, or someone who opted out.
    Refused,
}

/// The one gate every path into the history goes through: fetch, import and live messages.
pub fn admit(
    global: &crate::ports::GlobalSettings,
    channel: &ChannelKey,
    author_id: u64,
    kind: filters::Kind,
    from_bot: bool,
    content: &str,
) -> Verdict {
    if channel.is_dm() || channel.is_console() || !global.may_keep(channel, Some(&author_id.to_string())) {
        return Verdict::Refused;
    }
    match filters::verdict(kind, from_bot, content) {
        Some(dropped) => Verdict::Filtered(dropped),
        None => Verdict::Keep,
    }
}

impl Admitted {
    pub fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Keep => self.kept += 1,
            Verdict::Filtered(_) => self.filtered += 1,
            Verdict::Refused => self.refused += 1,
        }
    }
}

impl std::ops::AddAssign for Admitted {
    fn add_assign(&mut self, other: Admitted) {
        self.kept += other.kept;
        self.filtered += other.filtered;
        self.refused += other.refused;
    }
}
