//! `!commands`: what they are, who may run them, and parsing them. Pure: text in, a
//! [`Command`] or a short explanation out. The commands themselves are in [`table`].

pub mod args;
pub mod table;

pub use table::{CommandSpec, COMMANDS};

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

/// `!adapter` and its actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterCommand {
    Show,
    Rollback,
    Off,
    On,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Ping,
    Help,
    Chat(String),
    /// Write the channel's latest reply again (the 🔁 button; a reply to one names it).
    Retry,
    Clear,
    System(SystemArg),
    ConfigShow,
    ConfigSet {
        key: String,
        value: String,
    },
    Feedback {
        rating: u8,
        comment: String,
    },
    BotData,
    RlMetrics,
    Adapter(AdapterCommand),
    Engagement,
    SetRate(f64),
    SetTemp(f32),
    SetMaxLen(u32),
    MentionsOnly(bool),
    Allow(String),
    Deny {
        channel: String,
        purge: bool,
    },
    Status,
    Restart,
    /// `!forgetme [undo]`: the asker; `!forget <user> [undo]`: a user, by an admin.
    Forget {
        user: Option<String>,
        undo: bool,
    },
    /// `!purge`: everything kept from this channel.
    Purge,
    /// `!fetch`: the server's history, in the background.
    Fetch,
    /// `!train [status]`: learn the server's voice in the background, or say how far it got.
    Train {
        status: bool,
    },
    /// `!lock system|config on|off`.
    Lock {
        command: String,
        on: bool,
    },
}

/// A command with the table entry it came from (its access, usage and visibility).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub spec: &'static CommandSpec,
    pub command: Command,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommandSpec({})", self.name)
    }
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl CommandSpec {
    /// The usage line with the configured prefix.
    pub fn usage(&self, prefix: &str) -> String {
        self.usage.replacen('!', prefix, 1)
    }

    /// The answer to a mistake in this command's arguments.
    pub fn usage_error(&self, prefix: &str) -> CommandError {
        let example = self.example.map(|e| format!(", e.g. `{}`", e.replacen('!', prefix, 1))).unwrap_or_default();
        CommandError::Usage { usage: self.usage(prefix), example }
    }

    /// The command from its arguments given as text.
    pub fn parse_args(&'static self, prefix: &str, text: &str) -> Result<Parsed, CommandError> {
        let command = args::parse(self.args, text).and_then(|a| (self.build)(&a)).ok_or_else(|| self.usage_error(prefix))?;
        Ok(Parsed { spec: self, command })
    }
}

impl CommandSpec {
    /// The command from values given by name (a slash command's options).
    pub fn from_named<'a>(
        &'static self,
        prefix: &str,
        values: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Parsed, CommandError> {
        let command = args::from_named(self.args, values).and_then(|a| (self.build)(&a)).ok_or_else(|| self.usage_error(prefix))?;
        Ok(Parsed { spec: self, command })
    }
}

/// The short answer to someone who may not run a command.
pub fn refusal(needed: Access) -> &'static str {
    match needed {
        Access::Owner => "Only the bot's owner can do that.",
        _ => "Only admins can do that.",
    }
}

/// `!help` for someone with `access`.
pub fn help_text(prefix: &str, access: Access) -> String {
    let mut out = String::from("Commands:\n");
    for spec in COMMANDS.iter().filter(|c| c.access <= access) {
        out.push_str(&format!("`{}` — {}\n", spec.usage(prefix), spec.help));
    }
    out.trim_end().to_string()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("I don't know `{prefix}{name}`. Try `{prefix}help`.")]
    Unknown { prefix: String, name: String },
    #[error("usage: `{usage}`{example}")]
    Usage { usage: String, example: String },
}

/// Parses `text` if it starts with `prefix`; `Ok(None)` for ordinary chat.
pub fn parse(prefix: &str, text: &str) -> Result<Option<Parsed>, CommandError> {
    let Some(rest) = text.trim_start().strip_prefix(prefix) else { return Ok(None) };
    let (name, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let spec = table::find(name).ok_or_else(|| CommandError::Unknown { prefix: prefix.to_string(), name: name.to_string() })?;
    spec.parse_args(prefix, args).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> Result<Option<Command>, CommandError> {
        parse("!", text).map(|p| p.map(|p| p.command))
    }

    fn access(name: &str) -> Access {
        table::find(name).unwrap().access
    }

    #[test]
    fn plain_text_is_not_a_command() {
        assert_eq!(command("hello there"), Ok(None));
        assert_eq!(command("!"), Ok(None));
        assert_eq!(command("! wow"), Ok(None));
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(command("!ping"), Ok(Some(Command::Ping)));
        assert_eq!(command("  !PING  "), Ok(Some(Command::Ping)));
        assert_eq!(command("!chat how are you"), Ok(Some(Command::Chat("how are you".into()))));
        assert_eq!(command("!system"), Ok(Some(Command::System(SystemArg::Show))));
        assert_eq!(command("!system reset"), Ok(Some(Command::System(SystemArg::Reset))));
        assert_eq!(command("!system be a pirate"), Ok(Some(Command::System(SystemArg::Set("be a pirate".into())))));
        assert_eq!(command("!config"), Ok(Some(Command::ConfigShow)));
        assert_eq!(command("!config temperature 0.5"), Ok(Some(Command::ConfigSet { key: "temperature".into(), value: "0.5".into() })));
        assert_eq!(parse("?", "?ping").unwrap().unwrap().command, Command::Ping);
    }

    #[test]
    fn mistakes_get_a_short_explanation() {
        assert_eq!(command("!dance").unwrap_err().to_string(), "I don't know `!dance`. Try `!help`.");
        assert_eq!(command("!chat").unwrap_err().to_string(), "usage: `!chat <message>`");
        assert_eq!(
            command("!config temperature").unwrap_err().to_string(),
            "usage: `!config [<key> <value>]`, e.g. `!config temperature 0.9`"
        );
        assert_eq!(parse("?", "?setrate 2").unwrap_err().to_string(), "usage: `?setrate <0-1>`, e.g. `?setrate 0.1`");
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
        assert_eq!(help_text("!", Access::Owner).lines().count(), COMMANDS.len() + 1, "every command, once");
    }

    #[test]
    fn admin_and_owner_commands_validate_their_arguments() {
        assert_eq!(command("!setrate 0.1"), Ok(Some(Command::SetRate(0.1))));
        assert!(command("!setrate 2").unwrap_err().to_string().contains("!setrate <0-1>"));
        assert_eq!(command("!settemp 0.9"), Ok(Some(Command::SetTemp(0.9))));
        assert!(command("!settemp 1.5").is_err());
        assert_eq!(command("!setmaxlen 150"), Ok(Some(Command::SetMaxLen(150))));
        assert!(command("!setmaxlen 20").is_err());
        assert_eq!(command("!mentions_only on"), Ok(Some(Command::MentionsOnly(true))));
        assert_eq!(command("!allow <#123>"), Ok(Some(Command::Allow("123".into()))));
        assert_eq!(command("!deny 456"), Ok(Some(Command::Deny { channel: "456".into(), purge: false })));
        assert_eq!(command("!deny <#456> purge"), Ok(Some(Command::Deny { channel: "456".into(), purge: true })));
        assert!(command("!allow general").is_err());
        assert_eq!(command("!feedback 4 nice one"), Ok(Some(Command::Feedback { rating: 4, comment: "nice one".into() })));
        assert_eq!(command("!feedback 5"), Ok(Some(Command::Feedback { rating: 5, comment: String::new() })));
        assert!(command("!feedback 9 wow").is_err());
        assert_eq!(access("status"), Access::Admin);
        assert_eq!(command("!adapter rollback"), Ok(Some(Command::Adapter(AdapterCommand::Rollback))));
        assert_eq!(access("adapter"), Access::Admin);
        assert!(command("!adapter sideways").is_err());
        assert_eq!(access("engagement"), Access::Owner);
        assert_eq!(access("ping"), Access::Everyone);
    }
}
