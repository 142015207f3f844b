//! `sidekick.toml`, environment overrides and `.env` secrets, validated at start. Every
//! refusal is one line naming the key or path and how to fix it.

use serde::{Deserialize, Serialize};
use sidekick_actors::context::ContextRules;
use sidekick_actors::feedback::RlRules;
use sidekick_actors::params::GenerationParams;
use sidekick_actors::ChatRules;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod discord;
mod history;
mod threads;
pub use discord::{DiscordConfig, MessageContent, SlashRegistration};
pub use history::{DatasetConfig, TrainConfig};
pub use threads::ModelThreads;

pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub generation: GenerationParams,
    pub chat: ChatRules,
    pub storage: StorageConfig,
    pub metrics: MetricsConfig,
    pub discord: DiscordConfig,
    pub shutdown: ShutdownConfig,
    pub retrieval: RetrievalConfig,
    pub rl: RlConfig,
    pub dataset: DatasetConfig,
    pub train: TrainConfig,
    pub console: ConsoleConfig,
    #[serde(skip)]
    pub secrets: Secrets,
    /// The file it was read from (a background `sidekick fetch` reads the same one).
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub context_tokens: u32,
    pub parallel: u32,
    pub threads: ModelThreads,
    pub threads_batch: u32,
    pub batch_tokens: u32,
    /// A fixed seed makes replies reproducible.
    pub seed: Option<u32>,
    /// A reply that gets no token for this long ends with "try again" and frees its sequence.
    pub stall_seconds: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Messages (the log, the server's history, their vectors) older than this many days are
    /// dropped hourly; `None` keeps them until deleted by hand.
    pub keep_messages_days: Option<u32>,
}

impl StorageConfig {
    pub fn keep_messages(&self) -> Option<std::time::Duration> {
        self.keep_messages_days.map(|days| std::time::Duration::from_secs(u64::from(days) * 86_400))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` for `/metrics`; empty turns the endpoint off.
    pub listen: String,
}

/// `sidekick console`, the web page that runs and tunes the bot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `host:port` of the page; a non-loopback address needs TLS or `allow_plain_http`.
    pub listen: String,
    /// Serve HTTPS with this certificate chain (PEM; empty: plain HTTP).
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM), with `tls_cert`.
    pub tls_key: PathBuf,
    /// Serve a non-loopback address over plain HTTP (the login token crosses the network
    /// readable by anyone on the path; configure TLS instead when you can).
    pub allow_plain_http: bool,
    /// The systemd unit of an installed bot: when systemd has it, the console drives it with
    /// `systemctl` and shows its journal instead of running `sidekick run` itself ("": never).
    pub service: String,
}

impl ConsoleConfig {
    /// Both TLS files are set.
    pub fn tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9465".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            allow_plain_http: false,
            service: "sidekick.service".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalConfig {
    pub enabled: bool,
    /// Folder with `model.onnx` and `tokenizer.json` (all-MiniLM-L6-v2 int8).
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// The vector index file; empty means `<storage.path>/vectors.usearch`.
    pub index_path: PathBuf,
    pub top_k: usize,
    pub min_similarity: f32,
    pub max_context_chars: usize,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        let rules = ContextRules::default();
        Self {
            enabled: true,
            model_dir: "models/embed/all-MiniLM-L6-v2-int8".into(),
            onnxruntime: "models/onnxruntime/libonnxruntime.so.1.31.1".into(),
            index_path: PathBuf::new(),
            top_k: rules.top_k,
            min_similarity: rules.min_similarity,
            max_context_chars: rules.max_chars,
        }
    }
}

impl RetrievalConfig {
    /// What goes into a prompt: nothing when retrieval is off.
    pub fn context_rules(&self) -> ContextRules {
        ContextRules {
            top_k: if self.enabled { self.top_k } else { 0 },
            min_similarity: self.min_similarity,
            max_chars: self.max_context_chars,
        }
    }

    pub fn index_file(&self, storage: &Path) -> PathBuf {
        if self.index_path.as_os_str().is_empty() {
            storage.join("vectors.usearch")
        } else {
            self.index_path.clone()
        }
    }
}

/// Learning from feedback: rewards, and the LoRA adapter trained from them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// Train an adapter (feedback is journaled either way).
    pub enabled: bool,
    /// Saved adapters and their manifest.
    pub adapters_dir: PathBuf,
    pub rank: usize,
    pub alpha: f32,
    pub learning_rate: f64,
    /// Pulls the adapter back toward the base model every step (the guard against drift).
    pub weight_decay: f64,
    /// Prompt + reply tokens trained on; longer prompts lose their oldest tokens.
    pub max_train_tokens: usize,
    /// Save and serve the adapter every this many training steps (and at shutdown).
    pub save_every_steps: u64,
    pub keep_versions: usize,
    /// Journaled replies (whole prompts, for training) are kept this many days.
    pub keep_replies_days: u32,
    /// CPU threads for training (it runs only while the model is idle).
    pub threads: usize,
    /// `!feedback`: share of the reward from the rating vs the comment's tone.
    pub rating_weight: f32,
    pub sentiment_weight: f32,
    /// A reaction's table value is scaled by this.
    pub reaction_weight: f32,
    /// No user supplies more than the larger of this and 1/n of what is trained in any window
    /// of 100 samples (seed 003's cap for any one voice).
    pub max_user_share: f64,
    /// Emoji → reward in [-1, 1]; unlisted emoji are ignored.
    pub reactions: std::collections::BTreeMap<String, f32>,
}

impl Default for RlConfig {
    fn default() -> Self {
        let (rewards, rules) = (sidekick_actors::reward::RewardRules::default(), RlRules::default());
        Self {
            enabled: true,
            adapters_dir: "models/adapters".into(),
            rank: 8,
            alpha: 16.0,
            // One +1 step at 1e-3 moves a short reply by ~4 nats: too jumpy for one reaction.
            learning_rate: 5e-4,
            // Decoupled decay: with Adam moving a weight ~learning_rate a step, decay of
            // learning_rate × weight_decay × weight holds every adapter weight under about
            // 1 / weight_decay, and pulls it back when feedback stops.
            weight_decay: 1.0,
            max_train_tokens: 256,
            save_every_steps: rules.save_every,
            keep_versions: rules.keep_versions,
            keep_replies_days: (rules.keep_replies.as_secs() / 86_400) as u32,
            threads: 1,
            rating_weight: rewards.rating_weight,
            sentiment_weight: rewards.sentiment_weight,
            reaction_weight: rewards.reaction_weight,
            max_user_share: rules.max_user_share,
            reactions: rewards.reactions,
        }
    }
}

impl RlConfig {
    pub fn reward_rules(&self) -> sidekick_actors::reward::RewardRules {
        sidekick_actors::reward::RewardRules {
            rating_weight: self.rating_weight,
            sentiment_weight: self.sentiment_weight,
            reaction_weight: self.reaction_weight,
            reactions: self.reactions.clone(),
        }
    }

    /// How the feedback actor runs.
    pub fn rules(&self) -> RlRules {
        RlRules {
            rewards: self.reward_rules(),
            train: self.enabled,
            save_every: self.save_every_steps,
            keep_versions: self.keep_versions,
            keep_replies: std::time::Duration::from_secs(u64::from(self.keep_replies_days) * 86_400),
            max_user_share: self.max_user_share,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_seconds: f64,
}

/// Secrets from the environment or `.env`. Debug never shows the token.
#[derive(Clone, Default)]
pub struct Secrets {
    pub discord_token: Option<String>,
    pub owner_id: Option<u64>,
    pub admin_users: Vec<u64>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("discord_token", &self.discord_token.as_ref().map(|_| "<set>"))
            .field("owner_id", &self.owner_id)
            .field("admin_users", &self.admin_users)
            .finish()
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_MODEL.into(),
            context_tokens: 8192,
            parallel: 8,
            threads: ModelThreads::Auto,
            threads_batch: default_threads(),
            batch_tokens: 512,
            seed: None,
            stall_seconds: sidekick_actors::timeouts::REPLY_STALL.as_secs_f64(),
        }
    }
}

/// Prompt processing uses every core; generation uses one (see README, "Threads").
fn default_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { path: "data_storage".into(), keep_messages_days: None }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_seconds: 5.0 }
    }
}

/// A configuration that cannot be used. `Display` is the one line shown to the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn refuse(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The sections a `SIDEKICK_<SECTION>_<KEY>` variable can override.
const SECTIONS: &[&str] =
    &["model", "generation", "chat", "storage", "metrics", "discord", "shutdown", "retrieval", "rl", "dataset", "train", "console"];

impl Config {
    /// Reads `path` (a missing file is fine unless `required`), applies environment
    /// overrides, and validates.
    pub fn load(path: &Path, required: bool, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table = match std::fs::read_to_string(path) {
            Ok(text) => text.parse::<toml::Table>().map_err(|e| refuse(format!("{}: not valid TOML: {}", path.display(), e.message())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => toml::Table::new(),
            Err(e) => return Err(refuse(format!("cannot read config file {}: {e}", path.display()))),
        };
        apply_env(&mut table, env)?;
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| refuse(format!("{}: {}", path.display(), e.message().trim())))?;
        config.secrets = secrets(env)?;
        config.file = path.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.generation.validate().map_err(|e| refuse(format!("generation: {e} (edit [generation] in sidekick.toml)")))?;
        let m = &self.model;
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(refuse(format!("model.{key} must be between {lo} and {hi}, got {v}")))
            }
        };
        if let Some(days) = self.storage.keep_messages_days.filter(|d| !(1..=36_500).contains(d)) {
            return Err(refuse(format!(
                "storage.keep_messages_days must be between 1 and 36500, got {days} (leave it out to keep everything)"
            )));
        }
        range("context_tokens", m.context_tokens.into(), 512, 131_072)?;
        range("parallel", m.parallel.into(), 1, 64)?;
        if let ModelThreads::Fixed(n) = m.threads {
            range("threads", n.into(), 1, 256)?;
        }
        range("threads_batch", m.threads_batch.into(), 1, 256)?;
        range("batch_tokens", m.batch_tokens.into(), 32, 8192)?;
        if (m.context_tokens / m.parallel) < 256 {
            return Err(refuse(format!(
                "model.context_tokens ({}) leaves under 256 tokens for each of model.parallel ({}) replies; raise context_tokens or lower parallel",
                m.context_tokens, m.parallel
            )));
        }
        if !(1.0..=3600.0).contains(&m.stall_seconds) {
            return Err(refuse(format!("model.stall_seconds must be between 1 and 3600, got {}", m.stall_seconds)));
        }
        self.chat.validate().map_err(refuse)?;
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(refuse(format!(
                "metrics.listen must be host:port like 127.0.0.1:9464 (or empty to turn it off), got {:?}",
                self.metrics.listen
            )));
        }
        self.discord.validate().map_err(refuse)?;
        let r = &self.retrieval;
        if r.top_k > 20 {
            return Err(refuse(format!("retrieval.top_k must be between 0 and 20, got {}", r.top_k)));
        }
        if !(-1.0..=1.0).contains(&r.min_similarity) {
            return Err(refuse(format!("retrieval.min_similarity must be between -1 and 1, got {}", r.min_similarity)));
        }
        if r.max_context_chars > 8000 {
            return Err(refuse(format!("retrieval.max_context_chars must be at most 8000, got {}", r.max_context_chars)));
        }
        let rl = &self.rl;
        if !(1..=64).contains(&rl.rank) {
            return Err(refuse(format!("rl.rank must be between 1 and 64, got {}", rl.rank)));
        }
        if !(rl.learning_rate > 0.0 && rl.learning_rate <= 0.1) {
            return Err(refuse(format!("rl.learning_rate must be above 0 and at most 0.1, got {}", rl.learning_rate)));
        }
        if !(0.0..=10.0).contains(&rl.weight_decay) {
            return Err(refuse(format!("rl.weight_decay must be between 0 and 10, got {}", rl.weight_decay)));
        }
        if !(rl.alpha > 0.0 && rl.alpha <= 1024.0) {
            return Err(refuse(format!("rl.alpha must be above 0 and at most 1024, got {}", rl.alpha)));
        }
        let weight = |key: &str, w: f32| {
            if (0.0..=10.0).contains(&w) {
                Ok(())
            } else {
                Err(refuse(format!("rl.{key} must be between 0 and 10, got {w}")))
            }
        };
        weight("rating_weight", rl.rating_weight)?;
        weight("sentiment_weight", rl.sentiment_weight)?;
        weight("reaction_weight", rl.reaction_weight)?;
        if rl.rating_weight + rl.sentiment_weight <= 0.0 {
            return Err(refuse("rl.rating_weight and rl.sentiment_weight cannot both be 0"));
        }
        if !(32..=4096).contains(&rl.max_train_tokens) {
            return Err(refuse(format!("rl.max_train_tokens must be between 32 and 4096, got {}", rl.max_train_tokens)));
        }
        if rl.save_every_steps == 0 || !(2..=100).contains(&rl.keep_versions) || !(1..=64).contains(&rl.threads) {
            return Err(refuse("rl.save_every_steps must be at least 1, rl.keep_versions 2-100 and rl.threads 1-64"));
        }
        if !(0.01..=1.0).contains(&rl.max_user_share) {
            return Err(refuse(format!("rl.max_user_share must be between 0.01 and 1, got {}", rl.max_user_share)));
        }
        if !(1..=3650).contains(&rl.keep_replies_days) {
            return Err(refuse(format!("rl.keep_replies_days must be between 1 and 3650, got {}", rl.keep_replies_days)));
        }
        if let Some((emoji, r)) = rl.reactions.iter().find(|(_, r)| !(-1.0..=1.0).contains(*r)) {
            return Err(refuse(format!("rl.reactions: the reward of {emoji} must be between -1 and 1, got {r}")));
        }
        if !(0.0..=300.0).contains(&self.shutdown.grace_seconds) {
            return Err(refuse(format!("shutdown.grace_seconds must be between 0 and 300, got {}", self.shutdown.grace_seconds)));
        }
        self.dataset.validate()?;
        self.train.validate()
    }

    /// The model file must exist and be readable; checked before anything is started.
    pub fn check_model_file(&self) -> Result<(), ConfigError> {
        let path = &self.model.path;
        match std::fs::File::open(path) {
            Ok(_) if path.is_file() => Ok(()),
            Ok(_) => Err(refuse(format!("model.path {} is not a file; point it at a .gguf model", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(refuse(format!(
                "model file {} not found (model.path); run `./run.sh setup` to install the bundled model, or set model.path to a GGUF file",
                path.display()
            ))),
            Err(e) => Err(refuse(format!("cannot read model file {} (model.path): {e}", path.display()))),
        }
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.listen.parse().ok()
    }
}

/// `SIDEKICK_MODEL_THREADS=2` sets `[model] threads = 2`; `DISCORD_API_BASE` sets `discord.api_base`.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in env {
        let (section, key) = if name == "DISCORD_API_BASE" {
            ("discord", "api_base".to_string())
        } else if let Some(rest) = name.strip_prefix("SIDEKICK_") {
            let lower = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| lower.starts_with(&format!("{s}_"))) else { continue };
            (*section, lower[section.len() + 1..].to_string())
        } else {
            continue;
        };
        let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(refuse(format!("[{section}] in the config file must be a table")));
        };
        section_table.insert(key, env_value(value));
    }
    Ok(())
}

fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = raw.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_string())
    }
}

fn secrets(env: &[(String, String)]) -> Result<Secrets, ConfigError> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).filter(|v| !v.is_empty());
    let id = |k: &str, v: &str| v.parse::<u64>().map_err(|_| refuse(format!("{k} must be a Discord user id (a number), got {v:?}")));
    Ok(Secrets {
        discord_token: get("DISCORD_TOKEN"),
        owner_id: get("OWNER_ID").map(|v| id("OWNER_ID", &v)).transpose()?,
        admin_users: get("ADMIN_USERS")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| id("ADMIN_USERS", s)).collect())
            .transpose()?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidekick.toml");
        std::fs::write(&path, toml).unwrap();
        let env: Vec<_> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(&path, true, &env)
    }

    #[test]
    fn defaults_are_valid_and_env_overrides_the_file() {
        let c = load("[model]\nthreads = 2\n", &[("SIDEKICK_MODEL_THREADS", "3"), ("DISCORD_API_BASE", "http://127.0.0.1:1")]).unwrap();
        assert_eq!(c.model.threads, ModelThreads::Fixed(3));
        assert_eq!(c.discord.api_base, "http://127.0.0.1:1");
        assert_eq!(c.generation, GenerationParams::default());
    }

    #[test]
    fn each_bad_value_gets_its_own_message() {
        let cases = [
            ("[generation]\ntemperature = 5.0", "`temperature` must be between 0 and 2"),
            ("[generation]\ntop_p = 1.5", "`top_p` must be between 0 and 1"),
            ("[generation]\nmax_tokens = 0", "`max_tokens` must be between 1 and 4096"),
            ("[model]\nthreads = 0", "model.threads must be between 1 and 256"),
            ("[model]\nparallel = 64\ncontext_tokens = 1024", "leaves under 256 tokens"),
            ("[chat]\nprefix = \"\"", "chat.prefix must be 1-3 characters"),
            ("[metrics]\nlisten = \"nowhere\"", "metrics.listen must be host:port"),
            ("[discord]\napi_base = \"discord.com\"", "discord.api_base"),
            ("[model]\nthreads = \"two\"", "must be \"auto\" or a number"),
            ("[model]\nthread = 2", "unknown field `thread`"),
            ("[model\nthreads = 2", "not valid TOML"),
        ];
        for (toml, expected) in cases {
            let err = load(toml, &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?} gave {err:?}, expected {expected:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
        let err = load("", &[("OWNER_ID", "bob")]).unwrap_err().to_string();
        assert!(err.contains("OWNER_ID must be a Discord user id"), "{err}");
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let c = load("", &[("DISCORD_TOKEN", "very-secret-token"), ("ADMIN_USERS", "1, 2")]).unwrap();
        assert_eq!(c.secrets.admin_users, vec![1, 2]);
        assert!(!format!("{c:?}").contains("very-secret-token"));
    }

    #[test]
    fn a_missing_model_file_names_the_path_and_the_setup_command() {
        let c = load("[model]\npath = \"/nowhere/model.gguf\"", &[]).unwrap();
        let err = c.check_model_file().unwrap_err().to_string();
        assert!(err.contains("/nowhere/model.gguf") && err.contains("./run.sh setup"), "{err}");
    }
}

#[cfg(test)]
mod documented;
