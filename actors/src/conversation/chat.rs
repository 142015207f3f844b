//! Chat: store the message, decide whether to answer, ask the model, stream the reply back,
//! and store and journal it.

use super::commands::{self, CommandContext};
use super::{turn_of, ConversationState, Inbound, ReplyEvent};
use crate::commands::Command;
use crate::context;
use crate::metric_names as m;
use crate::model::ModelMsg;
use crate::ports::{CancelFlag, GenEvent, GenerationJob, IndexItem, ReplyRecord, StoredMessage};
use crate::prompt::{build_turns, ChatTurn, Role};
use crate::retrieval::RetrievalMsg;
use crate::stats::count_hourly;
use crate::stream_text::TrimmedStream;
use crate::timeouts;
use ractor::ActorProcessingErr;
use std::time::Instant;
use tokio::sync::mpsc;

const MODEL_RESTARTING: &str = "My model is restarting; try again in a moment.";
const LOST_THE_MODEL: &str = "I lost my train of thought (the model restarted). Try again.";
const STALLED: &str = "I got stuck writing that reply; please try again.";
const BUSY: &str = "I'm getting a lot of messages at once here; I'll answer the first few and catch up after.";

/// A reply that reached the store: its place in the log and its journal entry.
struct Stored {
    seq: u64,
    reply_id: Option<u64>,
}

impl ConversationState {
    pub(super) async fn run_command(&mut self, command: Command, inbound: &Inbound) -> Result<String, ActorProcessingErr> {
        let mut ctx = CommandContext { args: &self.args, settings: &mut self.settings, history: &mut self.history, inbound };
        commands::run(&mut ctx, command).await
    }

    pub(super) async fn chat(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
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
                channel: self.args.channel,
                guild: message.guild.clone(),
                author: message.author.clone(),
                text: message.content.clone(),
                at_ms: now,
            };
            let _ = retrieval.send_message(RetrievalMsg::Index(item));
        }
        let limit = self.args.defaults.chat.max_message_chars;
        let cut = text.char_indices().nth(limit).map_or(text.len(), |(i, _)| i);
        let shown = StoredMessage { content: text[..cut].to_string(), ..message };
        let shown_text = shown.content.clone();
        self.push_history(turn_of(&shown, self.args.channel.names_speakers()));

        let global = self.global();
        if !global.allows(&self.args.channel) {
            return Ok(());
        }
        if inbound.queued_ahead >= self.args.defaults.chat.queue_limit {
            if !self.busy_notified {
                self.busy_notified = true;
                let _ = reply.send(ReplyEvent::Notice(BUSY.into()));
            }
            return Ok(());
        }
        if inbound.queued_ahead == 0 {
            self.busy_notified = false;
        }
        let mut settings = self.settings.clone();
        let rules = self.args.defaults.chat.engagement();
        let decision = settings.engagement.decide(inbound.addressed, global.reply_rate, global.mentions_only, now, &rules, &mut self.seeds);
        if decision.is_none() {
            return self.save_settings(settings);
        }
        match self.generate(&reply, received, &shown_text, inbound.guild).await? {
            Some(stored) => {
                settings.engagement.bump(rules.on_reply, self.now_ms(), &rules);
                settings.last_reply_seq = Some(stored.seq);
                settings.last_reply_id = stored.reply_id;
            }
            None => count_hourly(self.args.store.as_ref(), "errors", now),
        }
        self.save_settings(settings)
    }

    /// Asks the model for a reply to the history and streams it to `reply`. `None` when
    /// generation failed (already reported to the asker).
    async fn generate(
        &mut self,
        reply: &mpsc::UnboundedSender<ReplyEvent>,
        received: Instant,
        text: &str,
        guild: Option<String>,
    ) -> Result<Option<Stored>, ActorProcessingErr> {
        let Some(model) = self.args.model.get() else {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed(MODEL_RESTARTING.into()));
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
        let (events_tx, events) = mpsc::unbounded_channel();
        let cancel = CancelFlag::default();
        let job = GenerationJob {
            slot: self.args.channel.to_string(),
            turns,
            params: self.params(),
            seed,
            events: events_tx,
            cancel: cancel.clone(),
        };
        if model.send_message(ModelMsg::Generate(job)).is_err() {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed(MODEL_RESTARTING.into()));
            return Ok(None);
        }
        let streamed = match self.stream(events, &cancel, reply, received).await {
            Ok(streamed) => streamed,
            Err(why) => {
                m::count_error("generation");
                let _ = reply.send(ReplyEvent::Failed(why));
                return Ok(None);
            }
        };
        let tokens = streamed.tokens;
        let (stored, text) = self.keep_reply(streamed)?;
        metrics::histogram!(m::REPLY_LATENCY).record(received.elapsed().as_secs_f64());
        metrics::counter!(m::REPLIES_SENT).increment(1);
        self.args.heartbeats.beat("reply", false);
        let _ = reply.send(ReplyEvent::Done { text, tokens, reply_id: stored.reply_id });
        Ok(Some(stored))
    }

    /// Passes the model's tokens on as they come. A model that sends nothing for
    /// `ChannelDefaults::stall` is given up on: the job is cancelled, which frees its sequence.
    async fn stream(
        &self,
        mut events: mpsc::UnboundedReceiver<GenEvent>,
        cancel: &CancelFlag,
        reply: &mpsc::UnboundedSender<ReplyEvent>,
        received: Instant,
    ) -> Result<Streamed, String> {
        let mut streamed = Streamed::default();
        let mut trimmed = TrimmedStream::default();
        let mut first_token = true;
        loop {
            let event = match tokio::time::timeout(self.args.defaults.stall, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(LOST_THE_MODEL.into()),
                Err(_) => {
                    cancel.cancel();
                    m::count_error("stall");
                    tracing::warn!(channel = %self.args.channel, "the model sent nothing for {:?}; the reply was given up", self.args.defaults.stall);
                    return Err(STALLED.into());
                }
            };
            match event {
                GenEvent::Started { prompt, prompt_ids, adapter, .. } => {
                    let _ = reply.send(ReplyEvent::Started { prompt: prompt.clone() });
                    (streamed.prompt, streamed.prompt_ids, streamed.adapter) = (prompt, prompt_ids, adapter);
                }
                GenEvent::Token(piece) => {
                    streamed.text.push_str(&piece);
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
                GenEvent::Finished { tokens, reply_ids, .. } => {
                    (streamed.tokens, streamed.reply_ids) = (tokens, reply_ids);
                    return Ok(streamed);
                }
                GenEvent::Failed(error) => return Err(format!("Sorry, {error}.")),
            }
        }
    }

    /// Stores the finished reply and journals it: synced before anyone sees it, so feedback
    /// on it always finds what to learn from. Returns it with the text as stored.
    fn keep_reply(&mut self, streamed: Streamed) -> Result<(Stored, String), ActorProcessingErr> {
        let answer = streamed.text.trim().to_string();
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
        let record = ReplyRecord {
            channel: self.args.channel,
            reply_seq: seq,
            prompt: streamed.prompt,
            prompt_tokens: streamed.prompt_ids,
            reply_tokens: streamed.reply_ids,
            text: answer.clone(),
            adapter: streamed.adapter,
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
        count_hourly(self.args.store.as_ref(), "replies", now);
        Ok((Stored { seq, reply_id }, answer))
    }

    /// Earlier messages of this server like `text`, for the prompt; nothing when retrieval is
    /// off or slow, so a reply never waits long for it.
    async fn background_for(&self, text: &str, guild: Option<String>, window: &[ChatTurn]) -> Vec<context::Hit> {
        let rules = self.args.defaults.context;
        let Some(retrieval) = self.args.retrieval.get().filter(|_| rules.top_k > 0) else { return Vec::new() };
        // Ask for extra: some hits are the conversation itself or too weak.
        let k = rules.top_k * 3 + window.len();
        let asked =
            retrieval.call(|reply| RetrievalMsg::Query { text: text.to_string(), guild, k, reply }, Some(timeouts::RETRIEVAL_QUERY)).await;
        match asked {
            Ok(ractor::rpc::CallResult::Success(hits)) => context::select(hits, window, &rules),
            _ => Vec::new(),
        }
    }
}

/// What the model produced for one reply.
#[derive(Default)]
struct Streamed {
    prompt: String,
    prompt_ids: Vec<u32>,
    adapter: Option<String>,
    text: String,
    tokens: usize,
    reply_ids: Vec<u32>,
}
