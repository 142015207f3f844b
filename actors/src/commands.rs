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
}

impl Command {
    pub fn access(&self) -> Access {
        Access::Everyone
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
    HelpEntry { usage: "!help", what: "this list", access: Access::Everyone },
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
                (Some(key), Some(value), None) => {
                    Command::ConfigSet { key: key.to_string(), value: value.to_string() }
                }
                _ => return Err(usage("!config <key> <value>")),
            }
        }
        _ => return Err(CommandError::Unknown { prefix: prefix.to_string(), name: name.to_string() }),
    };
    Ok(Some(command))
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
        assert_eq!(
            parse("!", "!config temperature 0.5"),
            Ok(Some(Command::ConfigSet { key: "temperature".into(), value: "0.5".into() }))
        );
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
    }
}
