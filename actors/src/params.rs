//! Generation parameters, their allowed ranges, and the rule for changing one by name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How the model samples a reply. Defaults come from the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub repeat_penalty: f32,
    pub max_tokens: u32,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self { temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1, max_tokens: 120 }
    }
}

/// A parameter a user may set with `!config <key> <value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKey {
    Temperature,
    TopP,
    TopK,
    RepeatPenalty,
    MaxTokens,
}

impl ParamKey {
    pub const ALL: [ParamKey; 5] = [Self::Temperature, Self::TopP, Self::TopK, Self::RepeatPenalty, Self::MaxTokens];

    pub fn name(self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::TopP => "top_p",
            Self::TopK => "top_k",
            Self::RepeatPenalty => "repeat_penalty",
            Self::MaxTokens => "max_tokens",
        }
    }

    /// Inclusive range of accepted values.
    pub fn range(self) -> (f64, f64) {
        match self {
            Self::Temperature => (0.0, 2.0),
            Self::TopP => (0.0, 1.0),
            Self::TopK => (1.0, 200.0),
            Self::RepeatPenalty => (1.0, 2.0),
            Self::MaxTokens => (1.0, 4096.0),
        }
    }

    fn is_integer(self) -> bool {
        matches!(self, Self::TopK | Self::MaxTokens)
    }

    pub fn parse(name: &str) -> Option<ParamKey> {
        Self::ALL.into_iter().find(|k| k.name() == name.to_ascii_lowercase())
    }
}

/// Why a parameter change was refused; the message is shown to the user as it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown setting `{0}`; settings: temperature, top_p, top_k, repeat_penalty, max_tokens")]
    UnknownKey(String),
    #[error("`{key}` needs a number, got `{value}`")]
    NotANumber { key: &'static str, value: String },
    #[error("`{key}` must be a whole number, got `{value}`")]
    NotAnInteger { key: &'static str, value: String },
    #[error("`{key}` must be between {min} and {max}, got {value}")]
    OutOfRange { key: &'static str, min: f64, max: f64, value: String },
}

impl GenerationParams {
    pub fn get(&self, key: ParamKey) -> f64 {
        match key {
            ParamKey::Temperature => self.temperature as f64,
            ParamKey::TopP => self.top_p as f64,
            ParamKey::TopK => self.top_k as f64,
            ParamKey::RepeatPenalty => self.repeat_penalty as f64,
            ParamKey::MaxTokens => self.max_tokens as f64,
        }
    }

    /// The value of `key` as a user wrote it: `0.7`, not `0.699999988079071`.
    pub fn show(&self, key: ParamKey) -> String {
        match key {
            ParamKey::Temperature => self.temperature.to_string(),
            ParamKey::TopP => self.top_p.to_string(),
            ParamKey::TopK => self.top_k.to_string(),
            ParamKey::RepeatPenalty => self.repeat_penalty.to_string(),
            ParamKey::MaxTokens => self.max_tokens.to_string(),
        }
    }

    /// Validates `value` for `key` and returns the changed parameters; `self` is untouched
    /// when the value is refused.
    pub fn with(&self, key: &str, value: &str) -> Result<GenerationParams, ParamError> {
        let key = ParamKey::parse(key).ok_or_else(|| ParamError::UnknownKey(key.to_string()))?;
        let number: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| ParamError::NotANumber { key: key.name(), value: value.to_string() })?;
        if key.is_integer() && number.fract() != 0.0 {
            return Err(ParamError::NotAnInteger { key: key.name(), value: value.to_string() });
        }
        let (min, max) = key.range();
        if !(min..=max).contains(&number) {
            return Err(ParamError::OutOfRange { key: key.name(), min, max, value: value.to_string() });
        }
        let mut next = *self;
        match key {
            ParamKey::Temperature => next.temperature = number as f32,
            ParamKey::TopP => next.top_p = number as f32,
            ParamKey::TopK => next.top_k = number as u32,
            ParamKey::RepeatPenalty => next.repeat_penalty = number as f32,
            ParamKey::MaxTokens => next.max_tokens = number as u32,
        }
        Ok(next)
    }

    /// Checks every field against its range; used for values read from a config file.
    pub fn validate(&self) -> Result<(), ParamError> {
        for key in ParamKey::ALL {
            let value = self.get(key);
            let (min, max) = key.range();
            if !(min..=max).contains(&value) || !value.is_finite() {
                return Err(ParamError::OutOfRange { key: key.name(), min, max, value: format!("{value}") });
            }
        }
        Ok(())
    }
}

impl fmt::Display for GenerationParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "temperature={} top_p={} top_k={} repeat_penalty={} max_tokens={}",
            self.temperature, self.top_p, self.top_k, self.repeat_penalty, self.max_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_values() {
        let p = GenerationParams::default();
        assert_eq!((p.temperature, p.top_p, p.top_k, p.repeat_penalty, p.max_tokens), (0.7, 0.9, 40, 1.1, 120));
        p.validate().unwrap();
    }

    #[test]
    fn setting_a_value_changes_only_that_value() {
        let p = GenerationParams::default().with("temperature", "0.9").unwrap();
        assert_eq!(p.temperature, 0.9);
        assert_eq!(p.top_k, 40);
        assert_eq!(GenerationParams::default().with("MAX_TOKENS", "200").unwrap().max_tokens, 200);
        assert_eq!(p.show(ParamKey::Temperature), "0.9");
        assert_eq!(p.show(ParamKey::TopK), "40");
    }

    #[test]
    fn refusals_name_the_key_and_the_range() {
        let p = GenerationParams::default();
        let e = p.with("temperature", "3").unwrap_err();
        assert_eq!(e.to_string(), "`temperature` must be between 0 and 2, got 3");
        assert!(matches!(p.with("top_k", "2.5"), Err(ParamError::NotAnInteger { .. })));
        assert!(matches!(p.with("top_p", "abc"), Err(ParamError::NotANumber { .. })));
        assert!(matches!(p.with("top_p", "NaN"), Err(ParamError::NotANumber { .. })));
        assert!(matches!(p.with("warmth", "1"), Err(ParamError::UnknownKey(_))));
        assert!(p.with("max_tokens", "0").unwrap_err().to_string().contains("between 1 and 4096"));
    }
}
