//! Wires the adapters into the actor tree, and takes it down cleanly.

use crate::config::Config;
use crate::learning::LocalLearning;
use crate::llama::{EngineConfig, LlamaLoader};
use crate::store::FjallStore;
use ractor::{Actor, ActorRef};
use sidekick_actors::clock::{Clock, SystemClock};
use sidekick_actors::liveness::{Exit, ExitRequest, GatewayHealth, Liveness, ServiceManager, EXIT_FAILED};
use sidekick_actors::prompt::{ChatTurn, Role};
use sidekick_actors::restart::RestartLimits;
use sidekick_actors::sync::LockExt;
use sidekick_actors::watchdog::Heartbeats;
use sidekick_actors::ChannelKey;
use sidekick_actors::{ChannelDefaults, RootMsg, RootSupervisor, TreeArgs};
use sidekick_actors::{Inbound, ReplyEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub struct Daemon {
    pub root: ActorRef<RootMsg>,
    pub store: Arc<FjallStore>,
    /// The Discord connection's state, reported by the gateway and watched by the watchdog.
    pub gateway_health: GatewayHealth,
    pub service: Arc<dyn ServiceManager>,
    /// Set when some part of the bot asks the process to end.
    exit: watch::Receiver<Option<ExitRequest>>,
    join: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
    /// Serves a personality trained while the daemon runs (`train::personality::watch`).
    personality_watch: tokio::task::JoinHandle<()>,
}

/// Everything the bot answered to one message, with its timing.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    /// The exact prompt given to the model, when the message was chat.
    pub prompt: Option<String>,
    pub text: String,
    pub tokens: usize,
    /// The answer to a command.
    pub notice: Option<String>,
    pub failed: Option<String>,
    pub first_token_after: Option<Duration>,
    pub total: Duration,
    /// The reply's id in the reply journal.
    pub reply_id: Option<u64>,
}

/// How often the daemon looks for a new personality in `personality.json`.
const PERSONALITY_CHECK: Duration = Duration::from_secs(5);

pub fn engine_config(config: &Config) -> EngineConfig {
    let m = &config.model;
    EngineConfig {
        model_path: m.path.clone(),
        context_tokens: m.context_tokens,
        parallel: m.parallel,
        threads: m.threads,
        threads_batch: m.threads_batch,
        batch_tokens: m.batch_tokens,
        shared_prefix: vec![ChatTurn::new(Role::System, config.chat.system_prompt.clone())],
        flash_attention: true,
        prefix_reuse: true,
        adapter: Default::default(),
        // Filled in at start from `personality.json` (`Daemon::start_with`).
        personality: Arc::default(),
    }
}

pub fn channel_defaults(config: &Config, gateway: &GatewayHealth) -> ChannelDefaults {
    ChannelDefaults {
        chat: config.chat.clone(),
        params: config.generation,
        seed: config.model.seed,
        clock: Arc::new(SystemClock),
        context: config.retrieval.context_rules(),
        rewards: config.rl.reward_rules(),
        stall: Duration::from_secs_f64(config.model.stall_seconds),
        history_jobs: crate::history::jobs::FetchJobs::for_this_binary(
            config.file.clone(),
            config.secrets.discord_token.is_some(),
            gateway.clone(),
        )
        .map(|j| Arc::new(j) as _),
    }
}

/// ractor wraps a child's startup failure once per level of the tree; the innermost reason is
/// the one a user can act on.
fn startup_reason(mut message: &str) -> &str {
    const WRAPPER: &str = "Actor panicked during startup '";
    while let Some(inner) = message.strip_prefix(WRAPPER) {
        message = inner.strip_suffix('\'').unwrap_or(inner);
    }
    message
}

impl Daemon {
    /// Opens the store, loads the model and starts the supervised tree.
    pub async fn start(config: &Config) -> anyhow::Result<Daemon> {
        Self::start_with(config, engine_config(config), Arc::new(SystemClock)).await
    }

    /// Like [`Daemon::start`] with engine settings the config file does not expose and the
    /// clock engagement runs on (tests move a manual one).
    pub async fn start_with(config: &Config, engine: EngineConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Daemon> {
        let store = Arc::new(FjallStore::open(&config.storage.path)?);
        let heartbeats = Heartbeats::default();
        let (exit, exit_rx) = Exit::new();
        let service: Arc<dyn ServiceManager> = Arc::new(crate::service::Systemd);
        let liveness = Liveness {
            exit,
            gateway: GatewayHealth::default(),
            max_disconnected: Duration::from_secs_f64(config.discord.max_disconnected_seconds),
            service: service.clone(),
        };
        let personality = crate::train::personality::served_personality(config);
        let served = personality.as_ref().map(|p| p.path.clone());
        *engine.personality.lock_or_recover() = served.clone();
        let learning = config
            .rl
            .enabled
            .then(|| Arc::new(LocalLearning::new(&config.model.path, &config.rl, personality, crate::learning::GateRules::new(config))));
        if config.rl.enabled {
            crate::learning::check_training_memory(&config.model.path, &config.rl);
        }
        if let Some(served) = learning.as_ref().and_then(|l| l.served_adapter()) {
            engine.adapter.lock_or_recover().get_or_insert(served);
        }
        let args = TreeArgs {
            store: store.clone(),
            loader: Arc::new(LlamaLoader { config: engine, heartbeats: heartbeats.clone() }),
            learning: learning.map(|l| l as Arc<dyn sidekick_actors::ports::Learning>),
            rl: config.rl.rules(),
            retriever: Arc::new(crate::retrieval::Loader::new(config, store.clone())),
            defaults: Arc::new(ChannelDefaults { clock, ..channel_defaults(config, &liveness.gateway) }),
            heartbeats,
            limits: RestartLimits::default(),
            watchdog_tick: Duration::from_secs(5),
            keep_messages: config.storage.keep_messages(),
            liveness: liveness.clone(),
        };
        let (root, join) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|e| anyhow::anyhow!("could not start: {}", startup_reason(&e.to_string())))?;
        let watch = crate::train::personality::watch(config.clone(), root.clone(), served, PERSONALITY_CHECK);
        Ok(Daemon {
            personality_watch: tokio::spawn(watch),
            root,
            store,
            gateway_health: liveness.gateway,
            service,
            exit: exit_rx,
            join: Some(join),
            grace: Duration::from_secs_f64(config.shutdown.grace_seconds),
        })
    }

    /// Says `text` in `channel` as `author` (with the owner's rights, as on the console) and
    /// waits for the whole answer.
    pub async fn ask(&self, channel: ChannelKey, author: &str, text: &str) -> anyhow::Result<Answer> {
        self.ask_as(channel, author, None, text).await
    }

    /// [`Daemon::ask`] as the Discord user `user_id`.
    pub async fn ask_as(&self, channel: ChannelKey, author: &str, user_id: Option<&str>, text: &str) -> anyhow::Result<Answer> {
        let (reply, mut events) = mpsc::unbounded_channel();
        let inbound = Inbound {
            guild: channel.guild_id().map(|g| g.to_string()),
            user_id: user_id.map(String::from),
            ..Inbound::addressed(author, text, sidekick_actors::commands::Access::Owner, reply)
        };
        let started = Instant::now();
        self.root.send_message(RootMsg::Route { channel, inbound })?;
        let mut answer = Answer::default();
        while let Some(event) = events.recv().await {
            match event {
                ReplyEvent::Notice(text) => {
                    answer.notice = Some(text);
                    break;
                }
                ReplyEvent::Started { prompt, .. } => answer.prompt = Some(prompt),
                ReplyEvent::Token(_) => {
                    answer.first_token_after.get_or_insert(started.elapsed());
                }
                ReplyEvent::Done { text, tokens, reply_id } => {
                    (answer.text, answer.tokens, answer.reply_id) = (text, tokens, reply_id);
                    break;
                }
                ReplyEvent::Failed(why) => {
                    answer.failed = Some(why);
                    break;
                }
            }
        }
        answer.total = started.elapsed();
        Ok(answer)
    }

    /// What some part of the bot asked of the process so far, if anything.
    pub fn exit_requested(&self) -> Option<ExitRequest> {
        self.exit.borrow().clone()
    }

    /// Resolves when some part of the bot asks the process to end, or the tree stops on its
    /// own; says why and with which exit code.
    pub async fn ended(&mut self) -> ExitRequest {
        let stopped = async {
            match self.join.as_mut() {
                Some(join) => {
                    let _ = join.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Ok(_) = self.exit.wait_for(Option::is_some) => {}
            _ = stopped => self.join = None,
        }
        self.exit.borrow().clone().unwrap_or_else(|| ExitRequest { code: EXIT_FAILED, why: "the actor tree stopped; exiting".into() })
    }

    /// Stops intake, lets in-flight replies finish within the grace period, stops the tree
    /// and flushes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let grace = self.grace;
        self.personality_watch.abort();
        self.service.stopping();
        let _ = self.root.call(|port| RootMsg::Drain(grace, port), Some(grace + Duration::from_secs(10))).await;
        self.root.stop(None);
        if let Some(join) = self.join {
            let _ = tokio::time::timeout(Duration::from_secs(30), join).await;
        }
        sidekick_actors::ports::StatsStore::flush(self.store.as_ref())?;
        Ok(())
    }
}
