//! The conversation actor: one per channel. It owns the channel's history, system prompt,
//! settings and engagement, answers commands (see `channel_commands.rs`), decides whether to
//! answer chat, and turns chat into a job for the model actor.

use crate::commands::{self, Access};
use crate::context::{self, ContextRules};
use crate::engagement::{Clock, EngagementRules, SystemClock};
use crate::feedback::FeedbackMsg;
use crate::metric_names as m;
use crate::model::{ActorHandle, ModelHandle, ModelMsg};
use crate::params::GenerationParams;
use crate::ports::{
    CancelFlag, ChannelId, ChannelSettings, GenEvent, GenerationJob, GlobalSettings, IndexItem, ReplyRecord, Store, StoredMessage,
};
use crate::prompt::{build_turns, ChatTurn, Role, DEFAULT_SYSTEM_PROMPT};
use crate::retrieval::RetrievalMsg;
use crate::reward::RewardRules;
use crate::stream_text::TrimmedStream;
use crate::supervisor::RootMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// Settings every channel starts from.
#[derive(Clone)]
pub struct ChannelDefaults {
    pub prefix: String,
    pub params: GenerationParams,
    pub system_prompt: String,
    /// How many turns of history go into a prompt.
    pub history_turns: usize,
    /// A fixed sampling seed makes replies reproducible; `None` draws one per reply. It also
    /// seeds the engagement dice.
    pub seed: Option<u32>,
    /// Longer messages are cut to this many characters before they reach the model.
    pub max_message_chars: usize,
    /// Messages waiting in one channel beyond this get one "busy" notice instead of replies.
    pub queue_limit: usize,
    pub engagement: EngagementRules,
    pub clock: Arc<dyn Clock>,
    pub context: ContextRules,
    /// How `!feedback` ratings and comments become rewards.
    pub rewards: RewardRules,
}

impl Default for ChannelDefaults {
    fn default() -> Self {
        Self {
            prefix: "!".into(),
            params: GenerationParams::default(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            history_turns: 20,
            seed: None,
            max_message_chars: 4000,
            queue_limit: 4,
            engagement: EngagementRules::default(),
            clock: Arc::new(SystemClock),
            context: ContextRules::default(),
            rewards: RewardRules::default(),
        }
    }
}

/// Admin settings shared by every channel; changed by admin commands, kept in the store.
pub type SharedGlobal = Arc<RwLock<GlobalSettings>>;

pub struct ConversationArgs {
    pub channel: ChannelId,
    pub store: Arc<dyn Store>,
    pub model: ModelHandle,
    pub retrieval: ActorHandle<RetrievalMsg>,
    pub feedback: ActorHandle<FeedbackMsg>,
    /// Where the time of the last reply is kept (for `sidekick status`).
    pub heartbeats: crate::watchdog::Heartbeats,
    pub defaults: Arc<ChannelDefaults>,
    pub global: SharedGlobal,
    pub root: ActorRef<RootMsg>,
    /// Messages routed to this actor and not yet handled.
    pub pending: Arc<AtomicUsize>,
}

/// A message for the channel, with where its answer goes.
#[derive(Debug)]
pub struct Inbound {
    pub author: String,
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
    pub reply: mpsc::UnboundedSender<ReplyEvent>,
}

impl Inbound {
    /// A message that is always answered, from someone with `access`.
    pub fn addressed(author: &str, text: &str, access: Access, reply: mpsc::UnboundedSender<ReplyEvent>) -> Self {
        Self {
            author: author.into(),
            text: text.into(),
            message_id: None,
            addressed: true,
            access,
            guild: None,
            reply_to: None,
            queued_ahead: 0,
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
    /// Generation started; `prompt` is the exact text given to the model.
    Started {
        prompt: String,
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
    /// Fault injection for supervision tests: the handler panics.
    InjectPanic,
}

pub struct ConversationActor;

pub struct ConversationState {
    pub(crate) args: ConversationArgs,
    pub(crate) settings: ChannelSettings,
    pub(crate) history: VecDeque<ChatTurn>,
    seeds: rand::rngs::SmallRng,
    busy_notified: bool,
}

impl Actor for ConversationActor {
    type Msg = ChannelMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(&self, _: ActorRef<ChannelMsg>, args: ConversationArgs) -> Result<ConversationState, ActorProcessingErr> {
        let settings = args.store.channel_settings(&args.channel)?;
        let named = speakers_named(&args.channel);
        let history = args.store.recent_history(&args.channel, args.defaults.history_turns)?.iter().map(|m| turn_of(m, named)).collect();
        // Each channel rolls its own dice, reproducibly when a seed is configured.
        let seed = match args.defaults.seed {
            Some(s) => u64::from(s) ^ fnv1a(args.channel.as_bytes()),
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
            ChannelMsg::InjectPanic => panic!("injected panic in conversation {}", state.args.channel),
        }
        Ok(())
    }
}

/// Discord channels have many speakers, so their names go into the prompt.
fn speakers_named(channel: &str) -> bool {
    channel.starts_with("discord")
}

/// The Discord channel id of `discord:<id>` (DMs and the console have none).
pub fn discord_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("discord:")
}

fn turn_of(message: &StoredMessage, named: bool) -> ChatTurn {
    match message.role {
        Role::User if named => ChatTurn::new(Role::User, format!("{}: {}", message.author, message.content)),
        _ => message.turn(),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

impl ConversationState {
    pub(crate) fn now_ms(&self) -> u64 {
        self.args.defaults.clock.now_ms()
    }

    pub(crate) fn global(&self) -> GlobalSettings {
        self.args.global.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Channel overrides over admin defaults over the configuration.
    pub(crate) fn params(&self) -> GenerationParams {
        let global = self.global().params.apply(&self.args.defaults.params);
        self.settings.params.apply(&global)
    }

    pub(crate) fn system_prompt(&self) -> &str {
        self.settings.system_prompt.as_deref().unwrap_or(&self.args.defaults.system_prompt)
    }

    pub(crate) fn save_settings(&mut self, next: ChannelSettings) -> Result<(), ActorProcessingErr> {
        self.args.store.save_channel_settings(&self.args.channel, &next)?;
        self.settings = next;
        Ok(())
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        let reply = inbound.reply.clone();
        let prefix = self.args.defaults.prefix.clone();
        match commands::parse(&prefix, &inbound.text) {
            Ok(None) => self.chat(inbound).await?,
            Ok(Some(commands::Command::Chat(text))) => self.chat(Inbound { text, addressed: true, ..inbound }).await?,
            Ok(Some(command)) if command.access() > inbound.access => {
                let _ = reply.send(ReplyEvent::Notice(commands::refusal(command.access()).into()));
            }
            Ok(Some(command)) => {
                let answer = self.run_command(command, &inbound).await?;
                let _ = reply.send(ReplyEvent::Notice(answer));
            }
            Err(mistake) => {
                let _ = reply.send(ReplyEvent::Notice(mistake.to_string()));
            }
        }
        Ok(())
    }

    async fn chat(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        let reply = inbound.reply;
        let text = inbound.text.trim();
        if text.is_empty() {
            if inbound.addressed {
                let _ = reply.send(ReplyEvent::Notice("Say something and I'll answer.".into()));
            }
            return Ok(());
        }
        metrics::counter!(m::MESSAGES_SEEN).increment(1);
        let received = Instant::now();
        let now = self.now_ms();
        // Every message is kept, answered or not.
        let message = StoredMessage {
            role: Role::User,
            author: inbound.author,
            content: text.to_string(),
            at_ms: now,
            message_id: inbound.message_id,
            guild: inbound.guild.clone(),
        };
        self.args.store.append_message(&self.args.channel, &message)?;
        if let Some(retrieval) = self.args.retrieval.get() {
            let item = IndexItem {
                channel: self.args.channel.clone(),
                guild: message.guild.clone(),
                author: message.author.clone(),
                text: message.content.clone(),
                at_ms: now,
            };
            let _ = retrieval.send_message(RetrievalMsg::Index(item));
        }
        let limit = self.args.defaults.max_message_chars;
        let cut = text.char_indices().nth(limit).map_or(text.len(), |(i, _)| i);
        let shown = StoredMessage { content: text[..cut].to_string(), ..message };
        let shown_text = shown.content.clone();
        self.push_history(turn_of(&shown, speakers_named(&self.args.channel)));

        let global = self.global();
        if !global.allows(discord_channel(&self.args.channel)) {
            return Ok(());
        }
        if inbound.queued_ahead >= self.args.defaults.queue_limit {
            if !self.busy_notified {
                self.busy_notified = true;
                let _ = reply.send(ReplyEvent::Notice(
                    "I'm getting a lot of messages at once here; I'll answer the first few and catch up after.".into(),
                ));
            }
            return Ok(());
        }
        if inbound.queued_ahead == 0 {
            self.busy_notified = false;
        }
        let mut settings = self.settings.clone();
        let rules = self.args.defaults.engagement;
        let decision = settings.engagement.decide(inbound.addressed, global.reply_rate, global.mentions_only, now, &rules, &mut self.seeds);
        if decision.is_none() {
            return self.save_settings(settings);
        }
        match self.generate(&reply, received, &shown_text, inbound.guild).await? {
            Some((reply_seq, reply_id)) => {
                settings.engagement.bump(rules.on_reply, self.now_ms(), &rules);
                settings.last_reply_seq = Some(reply_seq);
                settings.last_reply_id = reply_id;
            }
            None => count_hourly(self.args.store.as_ref(), "errors", now),
        }
        self.save_settings(settings)
    }

    /// Asks the model for a reply to the history and streams it to `reply`. Returns the
    /// stored reply's sequence number and journal id, or `None` when generation failed
    /// (already reported).
    async fn generate(
        &mut self,
        reply: &mpsc::UnboundedSender<ReplyEvent>,
        received: Instant,
        text: &str,
        guild: Option<String>,
    ) -> Result<Option<(u64, Option<u64>)>, ActorProcessingErr> {
        let unavailable = "My model is restarting; try again in a moment.";
        let Some(model) = self.args.model.get() else {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed(unavailable.into()));
            return Ok(None);
        };
        let window: Vec<ChatTurn> = self.history.iter().cloned().collect();
        let hits = self.background_for(text, guild, &window).await;
        if let Some(background) = context::background_turn(&hits) {
            // It stays in the history where it was shown, so the next turn's prompt starts
            // with this one's and the decoded prefix is reused.
            let at = self.history.len().saturating_sub(1);
            self.history.insert(at, background);
        }
        let history: Vec<ChatTurn> = self.history.iter().cloned().collect();
        let turns = build_turns(self.system_prompt(), &history);
        let seed = self.args.defaults.seed.unwrap_or_else(|| rand::Rng::random(&mut self.seeds));
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let cancel = CancelFlag::default();
        let job = GenerationJob {
            slot: self.args.channel.clone(),
            turns,
            params: self.params(),
            seed,
            events: events_tx,
            cancel: cancel.clone(),
        };
        if model.send_message(ModelMsg::Generate(job)).is_err() {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed(unavailable.into()));
            return Ok(None);
        }

        let mut text = String::new();
        let mut trimmed = TrimmedStream::default();
        let mut first_token = true;
        let mut given = (String::new(), Vec::new(), None);
        let outcome = loop {
            let Some(event) = events.recv().await else {
                break Err("I lost my train of thought (the model restarted). Try again.".to_string());
            };
            match event {
                GenEvent::Started { prompt, prompt_ids, adapter, .. } => {
                    let _ = reply.send(ReplyEvent::Started { prompt: prompt.clone() });
                    given = (prompt, prompt_ids, adapter);
                }
                GenEvent::Token(piece) => {
                    text.push_str(&piece);
                    let piece = trimmed.push(&piece);
                    if piece.is_empty() {
                        continue;
                    }
                    if first_token {
                        metrics::histogram!(m::TIME_TO_FIRST_TOKEN).record(received.elapsed().as_secs_f64());
                        first_token = false;
                    }
                    if reply.send(ReplyEvent::Token(piece)).is_err() {
                        cancel.cancel(); // nobody is listening any more
                    }
                }
                GenEvent::Finished { tokens, reply_ids, .. } => break Ok((tokens, reply_ids)),
                GenEvent::Failed(error) => break Err(format!("Sorry, {error}.")),
            }
        };
        let (tokens, reply_ids) = match outcome {
            Ok(done) => done,
            Err(why) => {
                m::count_error("generation");
                let _ = reply.send(ReplyEvent::Failed(why));
                return Ok(None);
            }
        };
        let answer = text.trim().to_string();
        let now = self.now_ms();
        let stored = StoredMessage {
            role: Role::Assistant,
            author: "sidekick".into(),
            content: answer.clone(),
            at_ms: now,
            message_id: None,
            guild: None,
        };
        let seq = self.args.store.append_message(&self.args.channel, &stored)?;
        // Journaled before anyone sees it, so feedback on it always finds what to learn from.
        let (prompt, prompt_tokens, adapter) = given;
        let record = ReplyRecord {
            channel: self.args.channel.clone(),
            reply_seq: seq,
            prompt,
            prompt_tokens,
            reply_tokens: reply_ids,
            text: answer.clone(),
            adapter,
            at_ms: now,
        };
        let reply_id = match self.args.store.append_reply(&record) {
            Ok(id) => {
                metrics::counter!(m::REPLIES_JOURNALED).increment(1);
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not journal a reply; it cannot be learned from");
                None
            }
        };
        self.push_history(ChatTurn::new(Role::Assistant, answer.clone()));
        metrics::histogram!(m::REPLY_LATENCY).record(received.elapsed().as_secs_f64());
        metrics::counter!(m::REPLIES_SENT).increment(1);
        self.args.heartbeats.beat("reply", false);
        count_hourly(self.args.store.as_ref(), "replies", now);
        let _ = reply.send(ReplyEvent::Done { text: answer, tokens, reply_id });
        Ok(Some((seq, reply_id)))
    }

    /// Earlier messages of this server like `text`, for the prompt; nothing when retrieval is
    /// off or slow, so a reply never waits long for it.
    async fn background_for(&self, text: &str, guild: Option<String>, window: &[ChatTurn]) -> Vec<context::Hit> {
        let rules = self.args.defaults.context;
        let Some(retrieval) = self.args.retrieval.get().filter(|_| rules.top_k > 0) else { return Vec::new() };
        // Ask for extra: some hits are the conversation itself or too weak.
        let k = rules.top_k * 3 + window.len();
        let asked = retrieval
            .call(|reply| RetrievalMsg::Query { text: text.to_string(), guild, k, reply }, Some(std::time::Duration::from_secs(2)))
            .await;
        match asked {
            Ok(ractor::rpc::CallResult::Success(hits)) => context::select(hits, window, &rules),
            _ => Vec::new(),
        }
    }

    fn push_history(&mut self, turn: ChatTurn) {
        self.history.push_back(turn);
        while self.history.len() > self.args.defaults.history_turns {
            self.history.pop_front();
        }
    }
}

/// Hourly counters behind "replies/errors in 24 h".
pub(crate) fn hour_key(what: &str, now_ms: u64) -> String {
    format!("{what}@{}", now_ms / 3_600_000)
}

fn count_hourly(store: &dyn Store, what: &str, now_ms: u64) {
    if let Err(e) = store.add_stat(&hour_key(what, now_ms), 1) {
        tracing::warn!(error = %e, "could not count {what}");
    }
}

/// Sum of the hourly counters of `what` over the last 24 hours.
pub(crate) fn last_24h(store: &dyn Store, what: &str, now_ms: u64) -> u64 {
    (0..24u64).map(|h| store.stat(&hour_key(what, now_ms.saturating_sub(h * 3_600_000))).unwrap_or(0)).sum()
}
