//! Parsing `!commands`. Pure: text in, a [`Command`] or a short explanation out.

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Everyone,
    Admin,
    Owner,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SystemArg {
    Show,
    Reset,
    Set(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Ping,
    Help,
    Chat(String),
    Clear,
    System(SystemArg),
    ConfigShow,
    ConfigSet { key: String, value: String },
    Feedback { rating: u8, comment: String },
    BotData,
    RlMetrics,
    Adapter(crate::feedback::AdapterCommand),
    Engagement,
    SetRate(f64),
    SetTemp(f32),
    SetMaxLen(u32),
    MentionsOnly(bool),
    Allow(String),
    Deny { channel: String, purge: bool },
    Status,
    Restart,
}

impl Command {
    pub fn access(&self) -> Access {
        match self {
            Command::RlMetrics | Command::Engagement => Access::Owner,
            Command::SetRate(_)
            | Command::Adapter(_)
            | Command::SetTemp(_)
            | Command::SetMaxLen(_)
            | Command::MentionsOnly(_)
            | Command::Allow(_)
            | Command::Deny { .. }
            | Command::Status
            | Command::Restart => Access::Admin,
            _ => Access::Everyone,
        }
    }
}

/// The short answer to someone who may not run a command.
pub fn refusal(needed: Access) -> &'static str {
    match needed {
        Access::Owner => "Only the bot's owner can do that.",
        _ => "Only admins can do that.",
    }
}

/// One line of `!help`.
pub struct HelpEntry {
    pub usage: &'static str,
    pub what: &'static str,
    pub access: Access,
}

pub const HELP: &[HelpEntry] = &[
    HelpEntry { usage: "!ping", what: "check that I'm awake", access: Access::Everyone },
    HelpEntry { usage: "!chat <message>", what: "talk to me", access: Access::Everyone },
    HelpEntry { usage: "!clear", what: "forget this channel's conversation", access: Access::Everyone },
    HelpEntry { usage: "!system [<prompt>|reset]", what: "show, set or reset this channel's system prompt", access: Access::Everyone },
    HelpEntry { usage: "!config [<key> <value>]", what: "show or change generation settings for this channel", access: Access::Everyone },
    HelpEntry { usage: "!feedback <1-5> [comment]", what: "rate my last reply (or the reply you answer)", access: Access::Everyone },
    HelpEntry { usage: "!botdata", what: "which channels I learn from, and how to opt a channel out", access: Access::Everyone },
    HelpEntry { usage: "!help", what: "this list", access: Access::Everyone },
    HelpEntry { usage: "!setrate <0-1>", what: "how often I join in unasked", access: Access::Admin },
    HelpEntry { usage: "!settemp <0-1>", what: "default temperature", access: Access::Admin },
    HelpEntry { usage: "!setmaxlen <50-500>", what: "default reply length in tokens", access: Access::Admin },
    HelpEntry { usage: "!mentions_only on|off", what: "answer only when mentioned", access: Access::Admin },
    HelpEntry { usage: "!allow #channel", what: "add a channel to the allowlist", access: Access::Admin },
    HelpEntry {
        usage: "!deny #channel [purge]",
        what: "remove a channel from the allowlist; `purge` also deletes what I stored from it",
        access: Access::Admin,
    },
    HelpEntry { usage: "!status", what: "uptime, model, queue, replies and errors, memory", access: Access::Admin },
    HelpEntry {
        usage: "!adapter [rollback|off|on]",
        what: "the learned adapter: show it, go back to the previous one, serve the base model, or serve the newest again",
        access: Access::Admin,
    },
    HelpEntry { usage: "!restart", what: "restart the actors and reload the model", access: Access::Admin },
    HelpEntry { usage: "!rl_metrics", what: "learning statistics", access: Access::Owner },
    HelpEntry { usage: "!engagement", what: "this channel's engagement", access: Access::Owner },
];

/// `!help` for someone with `access`.
pub fn help_text(prefix: &str, access: Access) -> String {
    let mut out = String::from("Commands:\n");
    for entry in HELP.iter().filter(|e| e.access <= access) {
        let usage = entry.usage.replacen('!', prefix, 1);
        out.push_str(&format!("`{usage}` — {}\n", entry.what));
    }
    out.trim_end().to_string()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("I don't know `{prefix}{name}`. Try `{prefix}help`.")]
    Unknown { prefix: String, name: String },
    #[error("usage: `{0}`")]
    Usage(String),
}

/// Parses `text` if it starts with `prefix`; `Ok(None)` for ordinary chat.
pub fn parse(prefix: &str, text: &str) -> Result<Option<Command>, CommandError> {
    let Some(rest) = text.trim_start().strip_prefix(prefix) else { return Ok(None) };
    let (name, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let usage = |u: &str| CommandError::Usage(u.replacen('!', prefix, 1));
    let command = match name.to_ascii_lowercase().as_str() {
        "ping" => Command::Ping,
        "help" => Command::Help,
        "clear" => Command::Clear,
        "chat" if args.is_empty() => return Err(usage("!chat <message>")),
        "chat" => Command::Chat(args.to_string()),
        "system" => match args {
            "" => Command::System(SystemArg::Show),
            "reset" => Command::System(SystemArg::Reset),
            prompt => Command::System(SystemArg::Set(prompt.to_string())),
        },
        "config" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (None, _, _) => Command::ConfigShow,
                (Some(key), Some(value), None) => Command::ConfigSet { key: key.to_string(), value: value.to_string() },
                _ => return Err(usage("!config <key> <value>")),
            }
        }
        "feedback" => {
            let (rating, comment) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            match rating.parse::<u8>() {
                Ok(r @ 1..=5) => Command::Feedback { rating: r, comment: comment.trim().to_string() },
                _ => return Err(usage("!feedback <rating 1-5> [comment]")),
            }
        }
        "botdata" => Command::BotData,
        "rl_metrics" => Command::RlMetrics,
        "adapter" => Command::Adapter(match args {
            "" => crate::feedback::AdapterCommand::Show,
            "rollback" => crate::feedback::AdapterCommand::Rollback,
            "off" => crate::feedback::AdapterCommand::Off,
            "on" => crate::feedback::AdapterCommand::On,
            _ => return Err(usage("!adapter [rollback|off|on]")),
        }),
        "engagement" => Command::Engagement,
        "setrate" => Command::SetRate(number(args, 0.0, 1.0).ok_or_else(|| usage("!setrate <0-1>, e.g. !setrate 0.1"))?),
        "settemp" => Command::SetTemp(number(args, 0.0, 1.0).ok_or_else(|| usage("!settemp <0-1>, e.g. !settemp 0.8"))? as f32),
        "setmaxlen" => match args.parse::<u32>() {
            Ok(n @ 50..=500) => Command::SetMaxLen(n),
            _ => return Err(usage("!setmaxlen <50-500>, e.g. !setmaxlen 150")),
        },
        "mentions_only" => match args.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Command::MentionsOnly(true),
            "off" | "false" | "no" => Command::MentionsOnly(false),
            _ => return Err(usage("!mentions_only on|off")),
        },
        "allow" => Command::Allow(channel_ref(args).ok_or_else(|| usage("!allow #channel"))?),
        "deny" => {
            let (target, purge) = match args.strip_suffix("purge") {
                Some(rest) => (rest.trim(), true),
                None => (args, false),
            };
            Command::Deny { channel: channel_ref(target).ok_or_else(|| usage("!deny #channel [purge]"))?, purge }
        }
        "status" => Command::Status,
        "restart" => Command::Restart,
        _ => return Err(CommandError::Unknown { prefix: prefix.to_string(), name: name.to_string() }),
    };
    Ok(Some(command))
}

fn number(text: &str, min: f64, max: f64) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && (min..=max).contains(v))
}

/// A channel given as a mention (`<#123>`) or a bare id.
fn channel_ref(text: &str) -> Option<String> {
    let t = text.trim();
    let id = t.strip_prefix("<#").and_then(|r| r.strip_suffix('>')).unwrap_or(t);
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_a_command() {
        assert_eq!(parse("!", "hello there"), Ok(None));
        assert_eq!(parse("!", "!"), Ok(None));
        assert_eq!(parse("!", "! wow"), Ok(None));
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse("!", "!ping"), Ok(Some(Command::Ping)));
        assert_eq!(parse("!", "  !PING  "), Ok(Some(Command::Ping)));
        assert_eq!(parse("!", "!chat how are you"), Ok(Some(Command::Chat("how are you".into()))));
        assert_eq!(parse("!", "!system"), Ok(Some(Command::System(SystemArg::Show))));
        assert_eq!(parse("!", "!system reset"), Ok(Some(Command::System(SystemArg::Reset))));
        assert_eq!(parse("!", "!system be a pirate"), Ok(Some(Command::System(SystemArg::Set("be a pirate".into())))));
        assert_eq!(parse("!", "!config"), Ok(Some(Command::ConfigShow)));
        assert_eq!(parse("!", "!config temperature 0.5"), Ok(Some(Command::ConfigSet { key: "temperature".into(), value: "0.5".into() })));
        assert_eq!(parse("?", "?ping"), Ok(Some(Command::Ping)));
    }

    #[test]
    fn mistakes_get_a_short_explanation() {
        assert_eq!(parse("!", "!dance").unwrap_err().to_string(), "I don't know `!dance`. Try `!help`.");
        assert_eq!(parse("!", "!chat").unwrap_err().to_string(), "usage: `!chat <message>`");
        assert_eq!(parse("!", "!config temperature").unwrap_err().to_string(), "usage: `!config <key> <value>`");
    }

    #[test]
    fn help_lists_commands_with_the_configured_prefix() {
        let help = help_text("?", Access::Everyone);
        assert!(help.contains("`?ping`"));
        assert!(help.contains("`?config [<key> <value>]`"));
        assert!(!help.contains("setrate"), "admin commands are shown to admins only");
        assert!(help_text("!", Access::Admin).contains("`!setrate <0-1>`"));
        assert!(!help_text("!", Access::Admin).contains("rl_metrics"));
        assert!(help_text("!", Access::Owner).contains("`!rl_metrics`"));
    }

    #[test]
    fn admin_and_owner_commands_validate_their_arguments() {
        assert_eq!(parse("!", "!setrate 0.1"), Ok(Some(Command::SetRate(0.1))));
        assert!(parse("!", "!setrate 2").unwrap_err().to_string().contains("!setrate <0-1>"));
        assert_eq!(parse("!", "!settemp 0.9"), Ok(Some(Command::SetTemp(0.9))));
        assert!(parse("!", "!settemp 1.5").is_err());
        assert_eq!(parse("!", "!setmaxlen 150"), Ok(Some(Command::SetMaxLen(150))));
        assert!(parse("!", "!setmaxlen 20").is_err());
        assert_eq!(parse("!", "!mentions_only on"), Ok(Some(Command::MentionsOnly(true))));
        assert_eq!(parse("!", "!allow <#123>"), Ok(Some(Command::Allow("123".into()))));
        assert_eq!(parse("!", "!deny 456"), Ok(Some(Command::Deny { channel: "456".into(), purge: false })));
        assert_eq!(parse("!", "!deny <#456> purge"), Ok(Some(Command::Deny { channel: "456".into(), purge: true })));
        assert!(parse("!", "!allow general").is_err());
        assert_eq!(parse("!", "!feedback 4 nice one"), Ok(Some(Command::Feedback { rating: 4, comment: "nice one".into() })));
        assert_eq!(parse("!", "!feedback 5"), Ok(Some(Command::Feedback { rating: 5, comment: String::new() })));
        assert!(parse("!", "!feedback 9 wow").is_err());
        assert_eq!(Command::Status.access(), Access::Admin);
        assert_eq!(parse("!", "!adapter rollback"), Ok(Some(Command::Adapter(crate::feedback::AdapterCommand::Rollback))));
        assert_eq!(Command::Adapter(crate::feedback::AdapterCommand::Show).access(), Access::Admin);
        assert!(parse("!", "!adapter sideways").is_err());
        assert_eq!(Command::Engagement.access(), Access::Owner);
        assert_eq!(Command::Ping.access(), Access::Everyone);
    }
}
