//! Seed 003's filters, exactly and no more: a bot's messages, system messages (joins, pins,
//! boosts: told by the message's type, not by its text) and messages that are only links go;
//! everything else stays as it was written.

/// What kind of message Discord says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Written by a person: a plain message or a reply.
    Chat,
    /// Made by Discord: a join, a pin, a boost, a thread started, a call...
    System,
}

impl Kind {
    /// Discord's numeric message type (API): 0 is a message, 19 a reply, 20 a slash command's
    /// answer and 23 a context-menu command's (both written by a bot, so filtered as bots'),
    /// everything else is Discord's own.
    pub fn of_api_type(kind: u64) -> Kind {
        match kind {
            0 | 19 | 20 | 23 => Kind::Chat,
            _ => Kind::System,
        }
    }

    /// DiscordChatExporter's type name.
    pub fn of_export_type(kind: &str) -> Kind {
        match kind {
            "Default" | "Reply" | "ChatInputCommand" | "ContextMenuCommand" => Kind::Chat,
            _ => Kind::System,
        }
    }
}

/// Why a message is left out of the history, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Bot,
    System,
    OnlyLinks,
    /// Nothing to learn from: no text at all (an attachment alone).
    Empty,
}

/// Seed 003's filter.
pub fn verdict(kind: Kind, from_bot: bool, content: &str) -> Option<Dropped> {
    if from_bot {
        Some(Dropped::Bot)
    } else if kind == Kind::System {
        Some(Dropped::System)
    } else if content.trim().is_empty() {
        Some(Dropped::Empty)
    } else if only_links(content) {
        Some(Dropped::OnlyLinks)
    } else {
        None
    }
}

/// Every word is a link (`<https://…>` counts too).
fn only_links(content: &str) -> bool {
    content.split_whitespace().all(|w| {
        let w = w.trim_start_matches('<').trim_end_matches('>');
        w.starts_with("http://") || w.starts_with("https://")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bots_system_messages_and_bare_links_go() {
        assert_eq!(verdict(Kind::Chat, true, "beep"), Some(Dropped::Bot));
        assert_eq!(verdict(Kind::of_api_type(7), false, "Welcome!"), Some(Dropped::System), "a join, by type, whatever its text");
        assert_eq!(verdict(Kind::of_export_type("ChannelPinnedMessage"), false, ""), Some(Dropped::System));
        assert_eq!(verdict(Kind::Chat, false, "https://example.com"), Some(Dropped::OnlyLinks));
        assert_eq!(verdict(Kind::Chat, false, "<https://a.io> https://b.io"), Some(Dropped::OnlyLinks));
        assert_eq!(verdict(Kind::Chat, false, "   "), Some(Dropped::Empty));
        for kept in ["lol", "GGGGGG", "nooooo!!!", "😂😂", "look https://example.com", "u", "BRUH that's wild"] {
            assert_eq!(verdict(Kind::of_api_type(0), false, kept), None, "{kept} stays as it is");
        }
        assert_eq!(verdict(Kind::of_export_type("Reply"), false, "yes"), None);
    }
}
