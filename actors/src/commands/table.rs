//! Every command, once: its name, usage, help, who may run it, its arguments and how they
//! become a [`Command`]. `!help`, access checks, the `!` parser and the slash commands all
//! read this table, so they cannot drift apart. A new command is one entry here plus its
//! handler in `conversation/commands.rs`.

use super::args::{ArgKind, ArgSpec, Args};
use super::{Access, AdapterCommand, Command, SystemArg};

pub struct CommandSpec {
    pub name: &'static str,
    /// As `!help` shows it, with `!` standing for the configured prefix.
    pub usage: &'static str,
    /// An example shown after a usage mistake, when the usage alone is not enough.
    pub example: Option<&'static str>,
    pub help: &'static str,
    pub access: Access,
    /// Only the asker needs the answer (ephemeral as a slash command).
    pub private: bool,
    pub args: &'static [ArgSpec],
    /// The command from its parsed arguments; `None` when they do not make one.
    pub build: fn(&Args) -> Option<Command>,
}

const CONFIG_KEYS: &[&str] = &["temperature", "top_p", "top_k", "repeat_penalty", "max_tokens"];

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ping",
        usage: "!ping",
        example: None,
        help: "check that I'm awake",
        access: Access::Everyone,
        private: false,
        args: &[],
        build: |_| Some(Command::Ping),
    },
    CommandSpec {
        name: "chat",
        usage: "!chat <message>",
        example: None,
        help: "talk to me",
        access: Access::Everyone,
        private: false,
        args: &[ArgSpec::required("message", "what to say", ArgKind::Text)],
        build: |a| Some(Command::Chat(a.text("message")?.to_string())),
    },
    CommandSpec {
        name: "retry",
        usage: "!retry",
        example: None,
        help: "write my last reply here again, differently (the 🔁 button does the same)",
        access: Access::Everyone,
        private: false,
        args: &[],
        build: |_| Some(Command::Retry),
    },
    CommandSpec {
        name: "clear",
        usage: "!clear",
        example: None,
        help: "forget this channel's conversation",
        access: Access::Everyone,
        private: false,
        args: &[],
        build: |_| Some(Command::Clear),
    },
    CommandSpec {
        name: "system",
        usage: "!system [<prompt>|reset]",
        example: None,
        help: "show, set or reset this channel's system prompt",
        access: Access::Everyone,
        private: false,
        args: &[ArgSpec::optional("prompt", "the new system prompt, or `reset` for the default", ArgKind::Text)],
        build: |a| {
            Some(Command::System(match a.text("prompt") {
                None => SystemArg::Show,
                Some("reset") => SystemArg::Reset,
                Some(prompt) => SystemArg::Set(prompt.to_string()),
            }))
        },
    },
    CommandSpec {
        name: "config",
        usage: "!config [<key> <value>]",
        example: Some("!config temperature 0.9"),
        help: "show or change generation settings for this channel",
        access: Access::Everyone,
        private: true,
        args: &[
            ArgSpec::optional("key", "the setting", ArgKind::Word { suggestions: CONFIG_KEYS }),
            ArgSpec::optional("value", "its new value", ArgKind::Word { suggestions: &[] }),
        ],
        build: |a| match (a.text("key"), a.text("value")) {
            (None, _) => Some(Command::ConfigShow),
            (Some(key), Some(value)) => Some(Command::ConfigSet { key: key.to_string(), value: value.to_string() }),
            (Some(_), None) => None,
        },
    },
    CommandSpec {
        name: "feedback",
        usage: "!feedback <1-5> [comment]",
        example: Some("!feedback 4 nice one"),
        help: "rate my last reply (or the reply you answer)",
        access: Access::Everyone,
        private: false,
        args: &[
            ArgSpec::required("rating", "1 (bad) to 5 (great)", ArgKind::Integer { min: 1, max: 5 }),
            ArgSpec::optional("comment", "what you thought of it", ArgKind::Text),
        ],
        build: |a| Some(Command::Feedback { rating: a.integer("rating")? as u8, comment: a.text("comment").unwrap_or("").to_string() }),
    },
    CommandSpec {
        name: "botdata",
        usage: "!botdata",
        example: None,
        help: "which channels I learn from, and how to opt a channel out",
        access: Access::Everyone,
        private: true,
        args: &[],
        build: |_| Some(Command::BotData),
    },
    CommandSpec {
        name: "forgetme",
        usage: "!forgetme [undo]",
        example: None,
        help: "delete everything I kept from you and keep nothing more (`undo` to opt back in)",
        access: Access::Everyone,
        private: true,
        args: &[ArgSpec::optional("undo", "opt back in", ArgKind::Choice(&["undo"]))],
        build: |a| Some(Command::Forget { user: None, undo: a.text("undo").is_some() }),
    },
    CommandSpec {
        name: "purge",
        usage: "!purge",
        example: None,
        help: "delete everything I kept from this channel (admins; in a DM, you)",
        access: Access::Everyone,
        private: true,
        args: &[],
        build: |_| Some(Command::Purge),
    },
    CommandSpec {
        name: "fetch",
        usage: "!fetch",
        example: None,
        help: "read the allowlisted channels' history for learning this server's voice, in the background (admins)",
        access: Access::Admin,
        private: false,
        args: &[],
        build: |_| Some(Command::Fetch),
    },
    CommandSpec {
        name: "train",
        usage: "!train [status]",
        example: Some("!train status"),
        help: "learn this server's voice from its history in the background (fetch, dataset, training, the gate); `status` says how far it got (admins)",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::optional("status", "how far it got", ArgKind::Choice(&["status"]))],
        build: |a| Some(Command::Train { status: a.text("status").is_some() }),
    },
    CommandSpec {
        name: "help",
        usage: "!help",
        example: None,
        help: "this list",
        access: Access::Everyone,
        private: true,
        args: &[],
        build: |_| Some(Command::Help),
    },
    CommandSpec {
        name: "setrate",
        usage: "!setrate <0-1>",
        example: Some("!setrate 0.1"),
        help: "how often I join in unasked",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::required("rate", "chance of joining in unasked", ArgKind::Number { min: 0.0, max: 1.0 })],
        build: |a| Some(Command::SetRate(a.number("rate")?)),
    },
    CommandSpec {
        name: "settemp",
        usage: "!settemp <0-1>",
        example: Some("!settemp 0.8"),
        help: "default temperature",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::required("temperature", "sampling temperature", ArgKind::Number { min: 0.0, max: 1.0 })],
        build: |a| Some(Command::SetTemp(a.number("temperature")? as f32)),
    },
    CommandSpec {
        name: "setmaxlen",
        usage: "!setmaxlen <50-500>",
        example: Some("!setmaxlen 150"),
        help: "default reply length in tokens",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::required("tokens", "reply length in tokens", ArgKind::Integer { min: 50, max: 500 })],
        build: |a| Some(Command::SetMaxLen(a.integer("tokens")? as u32)),
    },
    CommandSpec {
        name: "mentions_only",
        usage: "!mentions_only on|off",
        example: None,
        help: "answer only when mentioned",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::required("on", "on or off", ArgKind::Switch)],
        build: |a| Some(Command::MentionsOnly(a.switch("on")?)),
    },
    CommandSpec {
        name: "allow",
        usage: "!allow #channel",
        example: None,
        help: "add a channel to the allowlist",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::required("channel", "the channel", ArgKind::Channel)],
        build: |a| Some(Command::Allow(a.text("channel")?.to_string())),
    },
    CommandSpec {
        name: "deny",
        usage: "!deny #channel [purge]",
        example: None,
        help: "remove a channel from the allowlist; `purge` also deletes what I stored from it",
        access: Access::Admin,
        private: false,
        args: &[
            ArgSpec::required("channel", "the channel", ArgKind::Channel),
            ArgSpec::optional("purge", "also delete what was stored from it", ArgKind::Choice(&["purge"])),
        ],
        build: |a| Some(Command::Deny { channel: a.text("channel")?.to_string(), purge: a.text("purge").is_some() }),
    },
    CommandSpec {
        name: "forget",
        usage: "!forget @user [undo]",
        example: Some("!forget <@123456789012345678>"),
        help: "delete everything I kept from a user and keep nothing more (`undo` to let them back in)",
        access: Access::Admin,
        private: true,
        args: &[
            ArgSpec::required("user", "the user", ArgKind::User),
            ArgSpec::optional("undo", "let them back in", ArgKind::Choice(&["undo"])),
        ],
        build: |a| Some(Command::Forget { user: Some(a.text("user")?.to_string()), undo: a.text("undo").is_some() }),
    },
    CommandSpec {
        name: "lock",
        usage: "!lock system|config on|off",
        example: Some("!lock system on"),
        help: "restrict `!system` or `!config` to admins, or open them to everyone again",
        access: Access::Admin,
        private: false,
        args: &[
            ArgSpec::required("command", "which command", ArgKind::Choice(&["system", "config"])),
            ArgSpec::required("on", "on or off", ArgKind::Switch),
        ],
        build: |a| Some(Command::Lock { command: a.text("command")?.to_string(), on: a.switch("on")? }),
    },
    CommandSpec {
        name: "status",
        usage: "!status",
        example: None,
        help: "uptime, model, queue, replies and errors, memory",
        access: Access::Admin,
        private: false,
        args: &[],
        build: |_| Some(Command::Status),
    },
    CommandSpec {
        name: "adapter",
        usage: "!adapter [rollback|off|on]",
        example: None,
        help: "the learned adapter: show it, go back to the previous one, serve the base model, or serve the newest again",
        access: Access::Admin,
        private: false,
        args: &[ArgSpec::optional("action", "what to do with it", ArgKind::Choice(&["rollback", "off", "on"]))],
        build: |a| {
            Some(Command::Adapter(match a.text("action") {
                None => AdapterCommand::Show,
                Some("rollback") => AdapterCommand::Rollback,
                Some("off") => AdapterCommand::Off,
                Some(_) => AdapterCommand::On,
            }))
        },
    },
    CommandSpec {
        name: "restart",
        usage: "!restart",
        example: None,
        help: "restart the actors and reload the model",
        access: Access::Admin,
        private: false,
        args: &[],
        build: |_| Some(Command::Restart),
    },
    CommandSpec {
        name: "rl_metrics",
        usage: "!rl_metrics",
        example: None,
        help: "learning statistics",
        access: Access::Owner,
        private: true,
        args: &[],
        build: |_| Some(Command::RlMetrics),
    },
    CommandSpec {
        name: "engagement",
        usage: "!engagement",
        example: None,
        help: "this channel's engagement",
        access: Access::Owner,
        private: true,
        args: &[],
        build: |_| Some(Command::Engagement),
    },
];

/// The command called `name` (any case).
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamKey;

    #[test]
    fn names_are_unique_and_usages_start_with_them() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert!(COMMANDS[..i].iter().all(|c| c.name != spec.name), "{} twice", spec.name);
            assert!(spec.usage.starts_with(&format!("!{}", spec.name)), "{}", spec.usage);
            assert!(
                spec.args.iter().rev().skip(1).all(|a| a.kind != ArgKind::Text),
                "{}: only the last argument may take the rest",
                spec.name
            );
        }
    }

    #[test]
    fn config_keys_are_the_parameters() {
        let names: Vec<&str> = ParamKey::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(CONFIG_KEYS, names.as_slice());
    }
}
