//! `model.threads`: a fixed number of generation threads, or `auto`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// How many threads decode with: `auto` (the default) times steps and uses every core while
/// that is faster, fewer while other work on the box makes it slower (`sidekick_actors::thread_tuner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelThreads {
    #[default]
    Auto,
    Fixed(u32),
}

impl ModelThreads {
    /// The count to start with: every core for `auto`.
    pub fn initial(self) -> u32 {
        match self {
            ModelThreads::Auto => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            ModelThreads::Fixed(n) => n,
        }
    }
}

impl fmt::Display for ModelThreads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelThreads::Auto => f.write_str("auto"),
            ModelThreads::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for ModelThreads {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ModelThreads::Auto => s.serialize_str("auto"),
            ModelThreads::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ModelThreads {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(ModelThreads::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("model.threads must be \"auto\" or a number, got {w:?}"))),
            Raw::Number(n) => u32::try_from(n)
                .map(ModelThreads::Fixed)
                .map_err(|_| serde::de::Error::custom(format!("model.threads must be between 1 and 256, got {n}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Model {
        threads: ModelThreads,
    }

    #[test]
    fn reads_auto_or_a_number_and_writes_it_back() {
        for (text, want) in [("threads = \"auto\"", ModelThreads::Auto), ("threads = 3", ModelThreads::Fixed(3))] {
            let model: Model = toml::from_str(text).unwrap();
            assert_eq!(model.threads, want);
            assert_eq!(toml::to_string(&model).unwrap().trim(), text);
        }
        let err = toml::from_str::<Model>("threads = \"many\"").err().unwrap().to_string();
        assert!(err.contains("must be \"auto\" or a number"), "{err}");
    }
}
