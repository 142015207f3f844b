//! A command's arguments: declared once in the table, parsed from `!` text here, and (for
//! slash commands) offered to Discord with the same names, kinds and ranges.

use std::collections::HashMap;

/// What one argument accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgKind {
    /// The rest of the line, spaces and all.
    Text,
    /// One word; `suggestions` are offered as choices where the client can show them, and
    /// the command itself says what is wrong with any other word.
    Word {
        suggestions: &'static [&'static str],
    },
    /// One of these words, nothing else.
    Choice(&'static [&'static str]),
    Integer {
        min: i64,
        max: i64,
    },
    Number {
        min: f64,
        max: f64,
    },
    /// A channel, as a mention (`<#123>`) or a bare id.
    Channel,
    /// A user, as a mention (`<@123>`) or a bare id.
    User,
    /// on/off (also true/false, yes/no).
    Switch,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: ArgKind,
    pub required: bool,
}

impl ArgSpec {
    pub const fn required(name: &'static str, help: &'static str, kind: ArgKind) -> Self {
        Self { name, help, kind, required: true }
    }
    pub const fn optional(name: &'static str, help: &'static str, kind: ArgKind) -> Self {
        Self { name, help, kind, required: false }
    }
}

/// A parsed argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Text(String),
    Integer(i64),
    Number(f64),
    /// A channel id.
    Channel(String),
    /// A user id.
    User(String),
    Switch(bool),
}

/// Parsed arguments by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(HashMap<&'static str, ArgValue>);

impl Args {
    pub fn set(&mut self, name: &'static str, value: ArgValue) {
        self.0.insert(name, value);
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name)? {
            ArgValue::Text(t) | ArgValue::Channel(t) | ArgValue::User(t) => Some(t),
            _ => None,
        }
    }

    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.0.get(name)? {
            ArgValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        match self.0.get(name)? {
            ArgValue::Number(n) => Some(*n),
            ArgValue::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub fn switch(&self, name: &str) -> Option<bool> {
        match self.0.get(name)? {
            ArgValue::Switch(b) => Some(*b),
            _ => None,
        }
    }
}

/// Reads `input` against `specs`, in order: a `Text` argument takes the rest of the line,
/// the others one word each. `None` when something is missing, left over or out of range
/// (the caller answers with the command's usage).
pub fn parse(specs: &[ArgSpec], input: &str) -> Option<Args> {
    let mut rest = input.trim();
    let mut args = Args::default();
    for spec in specs {
        if rest.is_empty() {
            if spec.required {
                return None;
            }
            continue;
        }
        let raw = match spec.kind {
            ArgKind::Text => std::mem::take(&mut rest),
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let (word, tail) = rest.split_at(end);
                rest = tail.trim_start();
                word
            }
        };
        args.set(spec.name, value(spec.kind, raw)?);
    }
    rest.is_empty().then_some(args)
}

/// Reads values given by name (a slash command's options) against `specs`, each checked as
/// its `!` twin would be. `None` when a required one is missing, a name is unknown, or a
/// value does not fit its kind.
pub fn from_named<'a>(specs: &[ArgSpec], values: impl IntoIterator<Item = (&'a str, String)>) -> Option<Args> {
    let mut args = Args::default();
    for (name, raw) in values {
        let spec = specs.iter().find(|s| s.name == name)?;
        args.set(spec.name, value(spec.kind, &raw)?);
    }
    specs.iter().filter(|s| s.required).all(|s| args.0.contains_key(s.name)).then_some(args)
}

/// Checks one raw value against its kind.
pub fn value(kind: ArgKind, raw: &str) -> Option<ArgValue> {
    let raw = raw.trim();
    Some(match kind {
        ArgKind::Text | ArgKind::Word { .. } => ArgValue::Text(raw.to_string()),
        ArgKind::Choice(choices) => {
            let lower = raw.to_ascii_lowercase();
            ArgValue::Text(choices.iter().find(|c| **c == lower)?.to_string())
        }
        ArgKind::Integer { min, max } => ArgValue::Integer(raw.parse::<i64>().ok().filter(|n| (min..=max).contains(n))?),
        ArgKind::Number { min, max } => ArgValue::Number(raw.parse::<f64>().ok().filter(|v| v.is_finite() && (min..=max).contains(v))?),
        ArgKind::Channel => ArgValue::Channel(snowflake(raw, &["<#"])?),
        ArgKind::User => ArgValue::User(snowflake(raw, &["<@!", "<@"])?),
        ArgKind::Switch => ArgValue::Switch(match raw.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            _ => return None,
        }),
    })
}

/// A Discord id given bare or as a mention opening with one of `openers`.
fn snowflake(raw: &str, openers: &[&str]) -> Option<String> {
    let id = openers.iter().find_map(|o| raw.strip_prefix(o).and_then(|r| r.strip_suffix('>'))).unwrap_or(raw);
    (!id.is_empty() && id.len() <= 20 && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ArgSpec] =
        &[ArgSpec::required("rating", "1-5", ArgKind::Integer { min: 1, max: 5 }), ArgSpec::optional("comment", "why", ArgKind::Text)];

    #[test]
    fn words_then_the_rest_of_the_line() {
        let args = parse(SPECS, "4  nice one, really ").unwrap();
        assert_eq!(args.integer("rating"), Some(4));
        assert_eq!(args.text("comment"), Some("nice one, really"));
        assert_eq!(parse(SPECS, "5").unwrap().text("comment"), None);
    }

    #[test]
    fn missing_extra_or_out_of_range_is_refused() {
        assert_eq!(parse(SPECS, ""), None);
        assert_eq!(parse(SPECS, "9"), None);
        assert_eq!(parse(SPECS, "four"), None);
        let one_word = [ArgSpec::required("what", "", ArgKind::Choice(&["on", "off"]))];
        assert_eq!(parse(&one_word, "on off"), None, "a word left over");
        assert_eq!(parse(&one_word, "ON").unwrap().text("what"), Some("on"));
    }

    #[test]
    fn named_values_are_checked_as_the_same_words_would_be() {
        let named = |values: &[(&'static str, &str)]| from_named(SPECS, values.iter().map(|(n, v)| (*n, v.to_string())));
        let args = named(&[("comment", "nice one"), ("rating", "4")]).unwrap();
        assert_eq!(args, parse(SPECS, "4 nice one").unwrap(), "any order, the same arguments");
        assert_eq!(named(&[("comment", "nice one")]), None, "the required rating is missing");
        assert_eq!(named(&[("rating", "9")]), None, "out of range");
        assert_eq!(named(&[("rating", "4"), ("mood", "good")]), None, "no such argument");
    }

    #[test]
    fn channels_switches_and_numbers() {
        assert_eq!(value(ArgKind::Channel, "<#123>"), Some(ArgValue::Channel("123".into())));
        assert_eq!(value(ArgKind::Channel, "456"), Some(ArgValue::Channel("456".into())));
        assert_eq!(value(ArgKind::Channel, "general"), None);
        assert_eq!(value(ArgKind::User, "<@!42>"), Some(ArgValue::User("42".into())));
        assert_eq!(value(ArgKind::User, "<@42>"), Some(ArgValue::User("42".into())));
        assert_eq!(value(ArgKind::User, "<#42>"), None, "a channel is not a user");
        assert_eq!(value(ArgKind::Switch, "Yes"), Some(ArgValue::Switch(true)));
        assert_eq!(value(ArgKind::Switch, "maybe"), None);
        assert_eq!(value(ArgKind::Number { min: 0.0, max: 1.0 }, "NaN"), None);
        assert_eq!(value(ArgKind::Number { min: 0.0, max: 1.0 }, "0.25"), Some(ArgValue::Number(0.25)));
    }
}
