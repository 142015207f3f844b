//! The conversation actor: one per channel. It owns the channel's history, system prompt and
//! settings, answers commands, and turns chat into a job for the model actor.

use crate::commands::{self, Access, Command, SystemArg};
use crate::metric_names as m;
use crate::model::{ModelHandle, ModelMsg};
use crate::params::{GenerationParams, ParamKey};
use crate::ports::{CancelFlag, ChannelId, ChannelSettings, GenEvent, GenerationJob, Store, StoredMessage};
use crate::prompt::{build_turns, ChatTurn, Role, DEFAULT_SYSTEM_PROMPT};
use crate::stream_text::TrimmedStream;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Settings every channel starts from.
#[derive(Debug, Clone)]
pub struct ChannelDefaults {
    pub prefix: String,
    pub params: GenerationParams,
    pub system_prompt: String,
    /// How many turns of history go into a prompt.
    pub history_turns: usize,
    /// A fixed sampling seed makes replies reproducible; `None` draws one per reply.
    pub seed: Option<u32>,
    /// Longer messages are cut to this many characters before they reach the model.
    pub max_message_chars: usize,
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
        }
    }
}

pub struct ConversationArgs {
    pub channel: ChannelId,
    pub store: Arc<dyn Store>,
    pub model: ModelHandle,
    pub defaults: Arc<ChannelDefaults>,
}

/// A message for the channel, with where its answer goes.
#[derive(Debug)]
pub struct Inbound {
    pub author: String,
    pub text: String,
    pub message_id: Option<String>,
    pub reply: mpsc::UnboundedSender<ReplyEvent>,
}

/// What the channel sends back to the gateway for one inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// A complete answer to a command.
    Notice(String),
    /// Generation started; `prompt` is the exact text given to the model.
    Started { prompt: String },
    Token(String),
    Done { text: String, tokens: usize },
    Failed(String),
}

pub enum ChannelMsg {
    Inbound(Inbound),
    /// Fault injection for supervision tests: the handler panics.
    InjectPanic,
}

pub struct ConversationActor;

pub struct ConversationState {
    args: ConversationArgs,
    settings: ChannelSettings,
    history: VecDeque<ChatTurn>,
    seeds: rand::rngs::SmallRng,
}

impl Actor for ConversationActor {
    type Msg = ChannelMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(&self, _: ActorRef<ChannelMsg>, args: ConversationArgs) -> Result<ConversationState, ActorProcessingErr> {
        let settings = args.store.channel_settings(&args.channel)?;
        let history = args
            .store
            .recent_history(&args.channel, args.defaults.history_turns)?
            .iter()
            .map(StoredMessage::turn)
            .collect();
        let seeds = rand::SeedableRng::seed_from_u64(args.defaults.seed.map_or_else(rand::random, u64::from));
        Ok(ConversationState { args, settings, history, seeds })
    }

    async fn handle(&self, _: ActorRef<ChannelMsg>, msg: ChannelMsg, state: &mut ConversationState) -> Result<(), ActorProcessingErr> {
        match msg {
            ChannelMsg::Inbound(inbound) => state.on_inbound(inbound).await?,
            ChannelMsg::InjectPanic => panic!("injected panic in conversation {}", state.args.channel),
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ConversationState {
    fn params(&self) -> GenerationParams {
        self.settings.params.apply(&self.args.defaults.params)
    }

    fn system_prompt(&self) -> &str {
        self.settings.system_prompt.as_deref().unwrap_or(&self.args.defaults.system_prompt)
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        let reply = inbound.reply.clone();
        let prefix = self.args.defaults.prefix.clone();
        match commands::parse(&prefix, &inbound.text) {
            Ok(None) => self.chat(inbound).await?,
            Ok(Some(Command::Chat(text))) => self.chat(Inbound { text, ..inbound }).await?,
            Ok(Some(command)) => {
                let answer = self.run_command(command)?;
                let _ = reply.send(ReplyEvent::Notice(answer));
            }
            Err(mistake) => {
                let _ = reply.send(ReplyEvent::Notice(mistake.to_string()));
            }
        }
        Ok(())
    }

    fn run_command(&mut self, command: Command) -> Result<String, ActorProcessingErr> {
        let store = self.args.store.clone();
        let channel = self.args.channel.clone();
        Ok(match command {
            Command::Ping => "Pong!".into(),
            Command::Help => commands::help_text(&self.args.defaults.prefix, Access::Everyone),
            Command::Chat(_) => unreachable!("chat is handled by the caller"),
            Command::Clear => {
                store.clear_history(&channel)?;
                self.history.clear();
                "Conversation cleared: I've forgotten what we talked about here.".into()
            }
            Command::System(SystemArg::Show) => {
                let which = if self.settings.system_prompt.is_some() { "custom" } else { "default" };
                format!("System prompt ({which}):\n{}", self.system_prompt())
            }
            Command::System(SystemArg::Reset) => {
                let mut next = self.settings.clone();
                next.system_prompt = None;
                store.save_channel_settings(&channel, &next)?;
                self.settings = next;
                "System prompt reset to the default.".into()
            }
            Command::System(SystemArg::Set(prompt)) => {
                const MAX: usize = 2000;
                if prompt.chars().count() > MAX {
                    return Ok(format!("That system prompt is too long (max {MAX} characters)."));
                }
                let mut next = self.settings.clone();
                next.system_prompt = Some(prompt);
                store.save_channel_settings(&channel, &next)?;
                self.settings = next;
                "System prompt set for this channel.".into()
            }
            Command::ConfigShow => {
                let params = self.params();
                let mut out = String::from("Generation settings for this channel:\n");
                for key in ParamKey::ALL {
                    let (min, max) = key.range();
                    out.push_str(&format!("{} = {} ({min}–{max})\n", key.name(), params.show(key)));
                }
                out.push_str(&format!("Change one with `{}config <key> <value>`.", self.args.defaults.prefix));
                out
            }
            Command::ConfigSet { key, value } => match self.params().with(&key, &value) {
                Ok(next) => {
                    let key = ParamKey::parse(&key).expect("validated by with()");
                    let mut settings = self.settings.clone();
                    settings.params.set_from(key, &next);
                    store.save_channel_settings(&channel, &settings)?;
                    self.settings = settings;
                    format!("{} set to {}.", key.name(), next.show(key))
                }
                Err(refusal) => refusal.to_string(),
            },
        })
    }

    async fn chat(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        let reply = inbound.reply;
        let text = inbound.text.trim();
        if text.is_empty() {
            let _ = reply.send(ReplyEvent::Notice("Say something and I'll answer.".into()));
            return Ok(());
        }
        metrics::counter!(m::MESSAGES_SEEN).increment(1);
        let received = Instant::now();
        tracing::trace!(channel = %self.args.channel, "chat message");
        let message = StoredMessage {
            role: Role::User,
            author: inbound.author,
            content: text.to_string(),
            at_ms: now_ms(),
            message_id: inbound.message_id,
        };
        self.args.store.append_message(&self.args.channel, &message)?;
        let limit = self.args.defaults.max_message_chars;
        let content = match text.char_indices().nth(limit) {
            Some((cut, _)) => text[..cut].to_string(),
            None => text.to_string(),
        };
        self.push_history(ChatTurn::new(Role::User, content));

        let Some(model) = self.args.model.get() else {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed("My model is restarting; try again in a moment.".into()));
            return Ok(());
        };
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
            let _ = reply.send(ReplyEvent::Failed("My model is restarting; try again in a moment.".into()));
            return Ok(());
        }

        let mut text = String::new();
        let mut trimmed = TrimmedStream::default();
        let mut first_token = true;
        let outcome = loop {
            let Some(event) = events.recv().await else {
                break Err("I lost my train of thought (the model restarted). Try again.".to_string());
            };
            match event {
                GenEvent::Started { prompt, .. } => {
                    let _ = reply.send(ReplyEvent::Started { prompt });
                }
                GenEvent::Token(piece) => {
                    text.push_str(&piece);
                    let piece = trimmed.push(&piece);
                    if piece.is_empty() {
                        continue;
                    }
                    if first_token {
                        tracing::trace!(channel = %self.args.channel, "first token");
                        metrics::histogram!(m::TIME_TO_FIRST_TOKEN).record(received.elapsed().as_secs_f64());
                        first_token = false;
                    }
                    if reply.send(ReplyEvent::Token(piece)).is_err() {
                        cancel.cancel(); // nobody is listening any more
                    }
                }
                GenEvent::Finished { tokens, .. } => break Ok(tokens),
                GenEvent::Failed(error) => break Err(format!("Sorry, {error}.")),
            }
        };
        match outcome {
            Ok(tokens) => {
                let answer = text.trim().to_string();
                let stored = StoredMessage {
                    role: Role::Assistant,
                    author: "sidekick".into(),
                    content: answer.clone(),
                    at_ms: now_ms(),
                    message_id: None,
                };
                self.args.store.append_message(&self.args.channel, &stored)?;
                self.push_history(ChatTurn::new(Role::Assistant, answer.clone()));
                metrics::histogram!(m::REPLY_LATENCY).record(received.elapsed().as_secs_f64());
                metrics::counter!(m::REPLIES_SENT).increment(1);
                let _ = reply.send(ReplyEvent::Done { text: answer, tokens });
            }
            Err(why) => {
                m::count_error("generation");
                let _ = reply.send(ReplyEvent::Failed(why));
            }
        }
        Ok(())
    }

    fn push_history(&mut self, turn: ChatTurn) {
        self.history.push_back(turn);
        while self.history.len() > self.args.defaults.history_turns {
            self.history.pop_front();
        }
    }
}
