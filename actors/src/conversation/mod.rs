//! The conversation actor: one per channel. It owns the channel's history, system prompt,
//! settings and engagement, answers commands (`commands.rs`), decides whether to answer chat
//! and turns chat into a job for the model actor (`chat.rs`).

mod chat;
mod commands;
mod privacy;
mod retry;
mod rules;

pub use rules::ChatRules;

use crate::channel_key::ChannelKey;
use crate::clock::{Clock, SystemClock};
use crate::commands::Access;
use crate::context::ContextRules;
use crate::feedback::{Dropped, FeedbackMsg};
use crate::handle::ActorHandle;
use crate::model::ModelMsg;
use crate::params::GenerationParams;
use crate::ports::{ChannelSettings, GlobalSettings, Store, StoredMessage};
use crate::prompt::{ChatTurn, Role};
use crate::retrieval::RetrievalMsg;
use crate::reward::RewardRules;
use crate::sync::RwLockExt;
use crate::tree::TreeHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Settings every channel starts from.
#[derive(Clone)]
pub struct ChannelDefaults {
    pub chat: ChatRules,
    pub params: GenerationParams,
    /// A fixed sampling seed makes replies reproducible; `None` draws one per reply. It also
    /// seeds the engagement dice.
    pub seed: Option<u32>,
    pub clock: Arc<dyn Clock>,
    pub context: ContextRules,
    /// How `!feedback` ratings and comments become rewards.
    pub rewards: RewardRules,
    /// A reply that gets no token for this long ends with "try again" and frees its sequence.
    pub stall: Duration,
    /// Starts `sidekick fetch` for `!fetch` (none on the console and in tests without one).
    pub history_jobs: Option<Arc<dyn crate::ports::HistoryJobs>>,
}

impl Default for ChannelDefaults {
    fn default() -> Self {
        Self {
            chat: ChatRules::default(),
            params: GenerationParams::default(),
            seed: None,
            clock: Arc::new(SystemClock),
            context: ContextRules::default(),
            rewards: RewardRules::default(),
            stall: crate::timeouts::REPLY_STALL,
            history_jobs: None,
        }
    }
}

/// Admin settings shared by every channel; changed by admin commands, kept in the store.
pub type SharedGlobal = Arc<RwLock<GlobalSettings>>;

/// What a conversation works with: its channel, the store, the actors it talks to.
pub struct ConversationArgs {
    pub channel: ChannelKey,
    pub store: Arc<dyn Store>,
    pub model: ActorHandle<ModelMsg>,
    pub retrieval: ActorHandle<RetrievalMsg>,
    pub feedback: ActorHandle<FeedbackMsg>,
    /// Where the time of the last reply is kept (for `sidekick status`).
    pub heartbeats: crate::watchdog::Heartbeats,
    pub defaults: Arc<ChannelDefaults>,
    pub global: SharedGlobal,
    /// The few things a channel may ask of the tree.
    pub tree: TreeHandle,
    /// Messages routed to this actor and not yet handled.
    pub pending: Arc<AtomicUsize>,
}

/// A message for the channel, with where its answer goes.
#[derive(Debug)]
pub struct Inbound {
    pub author: String,
    /// The author's Discord id (none on the console).
    pub user_id: Option<String>,
    pub text: String,
    pub message_id: Option<String>,
    /// Mentioned, replied to, in a DM, or on the console: always answered.
    pub addressed: bool,
    pub access: Access,
    /// The Discord server it was said in (none for DMs and the console).
    pub guild: Option<String>,
    /// The message this one replies to (feedback given as a reply is about it).
    pub reply_to: Option<String>,
    /// Messages already waiting in this channel when this one arrived (set by the router).
    pub queued_ahead: usize,
    /// A slash command arrives parsed from Discord's options; `!` commands are read from `text`.
    pub command: Option<crate::commands::Parsed>,
    pub reply: mpsc::UnboundedSender<ReplyEvent>,
}

impl Inbound {
    /// A message that is always answered, from someone with `access`.
    pub fn addressed(author: &str, text: &str, access: Access, reply: mpsc::UnboundedSender<ReplyEvent>) -> Self {
        Self {
            author: author.into(),
            user_id: None,
            text: text.into(),
            message_id: None,
            addressed: true,
            access,
            guild: None,
            reply_to: None,
            queued_ahead: 0,
            command: None,
            reply,
        }
    }
}

/// What the channel sends back to the gateway for one inbound message. When the channel
/// decides not to answer, the stream simply ends.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// A complete answer to a command (or a notice such as "busy").
    Notice(String),
    /// Generation started; `prompt` is the exact text given to the model. `stop` ends the
    /// reply early (the ⏹ button): what was written so far is kept and journaled.
    Started {
        prompt: String,
        stop: crate::ports::CancelFlag,
    },
    Token(String),
    /// The reply is complete and journaled as `reply_id` (see `ReplyRecord`).
    Done {
        text: String,
        tokens: usize,
        reply_id: Option<u64>,
    },
    Failed(String),
}

pub enum ChannelMsg {
    Inbound(Inbound),
    /// A purge or `!forgetme` elsewhere: the turns holding those words leave the history. In
    /// order with the messages, so a reply in flight finishes first; answered when done.
    Drop(Dropped, ractor::RpcReplyPort<()>),
    /// This channel is being purged: forget everything held in memory (before the store's
    /// copy goes, so nothing is written back); answered when done.
    Purged(ractor::RpcReplyPort<()>),
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

pub struct ConversationActor;

/// A turn of the conversation, with the people whose words it holds (for the reply journal,
/// so `!forgetme` finds every prompt that quoted someone).
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub chat: ChatTurn,
    pub speakers: Vec<String>,
    /// Other channels whose words it holds (a background turn), so a purge finds it.
    pub sources: Vec<ChannelKey>,
}

impl Turn {
    fn of(message: &StoredMessage, named: bool) -> Turn {
        Turn { chat: turn_of(message, named), speakers: message.user_id.iter().cloned().collect(), sources: Vec::new() }
    }

    /// Whether it holds words a purge or `!forgetme` takes away.
    pub(super) fn holds(&self, dropped: &Dropped) -> bool {
        match dropped {
            Dropped::Channel(channel) => self.sources.contains(channel),
            Dropped::User { user, .. } => self.speakers.contains(user),
        }
    }
}

/// What the channel holds in memory.
pub struct ConversationState {
    args: ConversationArgs,
    settings: ChannelSettings,
    history: VecDeque<Turn>,
    seeds: rand::rngs::SmallRng,
    busy_notified: bool,
}

impl Actor for ConversationActor {
    type Msg = ChannelMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(&self, _: ActorRef<ChannelMsg>, args: ConversationArgs) -> Result<ConversationState, ActorProcessingErr> {
        let settings = args.store.channel_settings(&args.channel)?;
        let history = load_history(&args)?;
        // Each channel rolls its own dice, reproducibly when a seed is configured.
        let seed = match args.defaults.seed {
            Some(s) => u64::from(s) ^ fnv1a(args.channel.to_string().as_bytes()),
            None => rand::random(),
        };
        let seeds = rand::SeedableRng::seed_from_u64(seed);
        Ok(ConversationState { args, settings, history, seeds, busy_notified: false })
    }

    async fn handle(&self, _: ActorRef<ChannelMsg>, msg: ChannelMsg, state: &mut ConversationState) -> Result<(), ActorProcessingErr> {
        match msg {
            ChannelMsg::Inbound(inbound) => {
                let result = state.on_inbound(inbound).await;
                state.args.pending.fetch_sub(1, Ordering::AcqRel);
                result?;
            }
            ChannelMsg::Drop(dropped, done) => {
                state.history.retain(|t| !t.holds(&dropped));
                let _ = done.send(());
            }
            ChannelMsg::Purged(done) => {
                state.settings = ChannelSettings::default();
                state.history.clear();
                state.busy_notified = false;
                let _ = done.send(());
            }
            #[cfg(feature = "fault-injection")]
            ChannelMsg::InjectPanic => panic!("injected panic in conversation {}", state.args.channel),
        }
        Ok(())
    }
}

/// The conversation as the store holds it.
fn load_history(args: &ConversationArgs) -> Result<VecDeque<Turn>, ActorProcessingErr> {
    let named = args.channel.names_speakers();
    Ok(args.store.recent_history(&args.channel, args.defaults.chat.history_turns)?.iter().map(|m| Turn::of(m, named)).collect())
}

/// A stored message as the model reads it: with its author's name where several people talk.
fn turn_of(message: &StoredMessage, named: bool) -> ChatTurn {
    match message.role {
        Role::User if named => crate::prompt::spoken(&message.author, &message.content),
        _ => message.turn(),
    }
}

/// Who may run `command` now that admins may have locked it.
fn locked_to(global: &GlobalSettings, command: &str) -> Access {
    if global.locked.contains(command) {
        Access::Admin
    } else {
        Access::Everyone
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// Channel overrides over admin defaults over the configuration.
fn effective_params(defaults: &ChannelDefaults, global: &GlobalSettings, settings: &ChannelSettings) -> GenerationParams {
    settings.params.apply(&global.params.apply(&defaults.params))
}

impl ConversationState {
    fn now_ms(&self) -> u64 {
        self.args.defaults.clock.now_ms()
    }

    fn global(&self) -> GlobalSettings {
        self.args.global.read_or_recover().clone()
    }

    fn params(&self) -> GenerationParams {
        effective_params(&self.args.defaults, &self.global(), &self.settings)
    }

    fn system_prompt(&self) -> &str {
        self.settings.system_prompt.as_deref().unwrap_or(&self.args.defaults.chat.system_prompt)
    }

    fn save_settings(&mut self, next: ChannelSettings) -> Result<(), ActorProcessingErr> {
        self.args.store.save_channel_settings(&self.args.channel, &next)?;
        self.settings = next;
        Ok(())
    }

    async fn on_inbound(&mut self, mut inbound: Inbound) -> Result<(), ActorProcessingErr> {
        let reply = inbound.reply.clone();
        let prefix = self.args.defaults.chat.prefix.clone();
        let parsed = match inbound.command.take() {
            Some(slash) => Ok(Some(slash)),
            None => crate::commands::parse(&prefix, &inbound.text),
        };
        // The prefix is shared with other bots: commands are answered only where the bot may
        // talk, and a command it does not know only when it was addressed.
        let global = self.global();
        let may_talk = inbound.addressed || global.allows(&self.args.channel);
        let silent = match &parsed {
            Ok(None) => false,
            Err(crate::commands::CommandError::Unknown { .. }) => !inbound.addressed,
            _ => !may_talk,
        };
        if silent {
            return Ok(());
        }
        match parsed {
            Ok(None) => self.chat(inbound).await?,
            Ok(Some(parsed)) => match parsed.command {
                crate::commands::Command::Chat(text) => self.chat(Inbound { text, addressed: true, ..inbound }).await?,
                crate::commands::Command::Retry => self.retry(inbound).await?,
                _ if parsed.spec.access.max(locked_to(&global, parsed.spec.name)) > inbound.access => {
                    let needed = parsed.spec.access.max(locked_to(&global, parsed.spec.name));
                    let _ = reply.send(ReplyEvent::Notice(crate::commands::refusal(needed).into()));
                }
                command => {
                    let answer = self.run_command(command, &inbound).await?;
                    let _ = reply.send(ReplyEvent::Notice(answer));
                }
            },
            Err(mistake) => {
                let _ = reply.send(ReplyEvent::Notice(mistake.to_string()));
            }
        }
        Ok(())
    }

    fn push_history(&mut self, turn: Turn) {
        self.history.push_back(turn);
        while self.history.len() > self.args.defaults.chat.history_turns {
            self.history.pop_front();
        }
    }
}
