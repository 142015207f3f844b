//! Chat: keep the message (if the rules allow), decide whether to answer, ask the model,
//! stream the reply back, and store and journal it.

use super::commands::{self, CommandContext};
use super::{ConversationState, Inbound, ReplyEvent, Turn};
use crate::channel_key::ChannelKey;
use crate::commands::Command;
use crate::context;
use crate::engagement::Why;
use crate::governance;
use crate::history::{self, HistoryMessage};
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

/// The message being answered, and whether it may be kept.
struct Asked<'a> {
    turn: Turn,
    text: &'a str,
    /// False for someone who asked to be forgotten: answered, but neither the message nor the
    /// reply is stored, journaled or kept in the conversation.
    keep: bool,
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
        let global = self.global();
        if !global.allows(&self.args.channel) {
            // Off the allowlist: not answered, and nothing is kept, embedded or learned from.
            return Ok(());
        }
        metrics::counter!(m::MESSAGES_SEEN).increment(1);
        let received = Instant::now();
        let now = self.now_ms();
        count_hourly(self.args.store.as_ref(), "messages", now);
        let keep = !global.opted_out(inbound.user_id.as_deref());
        let message = StoredMessage {
            role: Role::User,
            author: inbound.author,
            content: text.to_string(),
            at_ms: now,
            message_id: inbound.message_id,
            guild: inbound.guild.clone(),
            user_id: inbound.user_id.clone(),
        };
        if keep {
            self.keep_message(&message)?;
        }
        let limit = self.args.defaults.chat.max_message_chars;
        let cut = text.char_indices().nth(limit).map_or(text.len(), |(i, _)| i);
        let shown = StoredMessage { content: text[..cut].to_string(), ..message };
        let asked = Asked { turn: Turn::of(&shown, self.args.channel.names_speakers()), text: &shown.content, keep };
        if keep {
            self.push_history(asked.turn.clone());
        }
        if inbound.queued_ahead >= self.args.defaults.chat.queue_limit {
            // Chatter is stored silently; the notice is for someone who asked the bot.
            if inbound.addressed && !self.busy_notified {
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
        // Only answering someone raises engagement: the bot's own unasked replies do not feed
        // more of them.
        let answered_someone = decision == Some(Why::Addressed);
        match self.generate(&reply, received, asked).await? {
            Some(stored) => {
                if answered_someone {
                    settings.engagement.bump(rules.on_reply, self.now_ms(), &rules);
                }
                if let Some(stored) = stored {
                    settings.last_reply_seq = Some(stored.seq);
                    settings.last_reply_id = stored.reply_id;
                }
            }
            None => count_hourly(self.args.store.as_ref(), "errors", now),
        }
        self.save_settings(settings)
    }

    /// Stores a message (synced) and queues it for embedding.
    fn keep_message(&self, message: &StoredMessage) -> Result<(), ActorProcessingErr> {
        self.keep_in_history(message)?;
        let seq = self.args.store.append_message(&self.args.channel, message)?;
        if let Some(retrieval) = self.args.retrieval.get() {
            let item = IndexItem {
                channel: self.args.channel,
                guild: message.guild.clone(),
                author: message.author.clone(),
                user_id: message.user_id.clone(),
                text: message.content.clone(),
                at_ms: message.at_ms,
                seq: Some(seq),
            };
            let _ = retrieval.send_message(RetrievalMsg::Index(item));
        }
        Ok(())
    }

    /// A server channel's message joins the server's history (what its voice is learned
    /// from), through the same gate as fetched and imported ones. Written before the message
    /// log's synced append, which makes it durable too.
    fn keep_in_history(&self, message: &StoredMessage) -> Result<(), ActorProcessingErr> {
        let (Some(id), Some(author_id)) =
            (message.message_id.as_deref().and_then(|id| id.parse().ok()), message.user_id.as_deref().and_then(|id| id.parse().ok()))
        else {
            return Ok(()); // the console
        };
        let channel = self.args.channel;
        // The gateway passes on neither bots' nor Discord's own messages.
        let verdict = history::admit(&self.global(), &channel, author_id, history::filters::Kind::Chat, false, &message.content);
        if verdict != history::Verdict::Keep {
            return Ok(());
        }
        let kept = HistoryMessage {
            id,
            channel,
            guild: channel.guild_id(),
            author_id,
            author: message.author.clone(),
            content: message.content.clone(),
            at_ms: message.at_ms,
            reply_to: None,
            reactions: Default::default(),
        };
        Ok(self.args.store.keep_history(&[kept], None)?)
    }

    /// The model, waiting up to `timeouts::MODEL_RETURN` while it loads again (off the root's
    /// loop): a message that arrives meanwhile is answered once it is back, not refused.
    async fn model_back(&self) -> Option<ractor::ActorRef<ModelMsg>> {
        let deadline = tokio::time::Instant::now() + timeouts::MODEL_RETURN;
        loop {
            if let Some(model) = self.args.model.get() {
                return Some(model);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Asks the model for a reply to the history and streams it to `reply`. `None` when
    /// generation failed (already reported to the asker); `Some(None)` for a reply that was
    /// not kept.
    async fn generate(
        &mut self,
        reply: &mpsc::UnboundedSender<ReplyEvent>,
        received: Instant,
        asked: Asked<'_>,
    ) -> Result<Option<Option<Stored>>, ActorProcessingErr> {
        let window: Vec<ChatTurn> = self.history.iter().map(|t| t.chat.clone()).collect();
        let hits = self.background_for(asked.text, &window).await;
        let mut history: Vec<Turn> = self.history.iter().cloned().collect();
        if !asked.keep {
            history.push(asked.turn.clone());
        }
        if let Some(background) = context::background_turn(&hits) {
            let speakers = hits.iter().filter_map(|h| h.user_id.clone()).collect();
            let mut sources: Vec<_> = hits.iter().map(|h| h.place.channel).collect();
            sources.dedup();
            let background = Turn { chat: background, speakers, sources };
            // It stays in the history where it was shown, so the next turn's prompt starts
            // with this one's and the decoded prefix is reused.
            let at = history.len().saturating_sub(1);
            history.insert(at, background.clone());
            if asked.keep {
                let at = self.history.len().saturating_sub(1);
                self.history.insert(at, background);
            }
        }
        let chat: Vec<ChatTurn> = history.iter().map(|t| t.chat.clone()).collect();
        let mut speakers: Vec<String> = history.iter().flat_map(|t| t.speakers.iter().cloned()).collect();
        speakers.sort_unstable();
        speakers.dedup();
        let mut sources: Vec<_> = history.iter().flat_map(|t| t.sources.iter().copied()).collect();
        sources.sort_by_key(|c| c.to_string());
        sources.dedup();
        let turns = build_turns(self.system_prompt(), &chat);
        let Some(streamed) = self.ask(turns, None, reply, received).await else { return Ok(None) };
        let tokens = streamed.tokens;
        let text = streamed.text.trim().to_string();
        let stored = match asked.keep {
            true => Some(self.keep_reply(streamed, speakers, sources)?),
            false => None,
        };
        self.count_reply(received);
        let _ = reply.send(ReplyEvent::Done { text, tokens, reply_id: stored.as_ref().and_then(|s| s.reply_id) });
        Ok(Some(stored))
    }

    /// A reply was delivered (a new one or one written again): the metrics, the hourly stats
    /// `!stats` reads, and the watchdog's reply heartbeat.
    pub(super) fn count_reply(&self, received: Instant) {
        metrics::histogram!(m::REPLY_LATENCY).record(received.elapsed().as_secs_f64());
        metrics::counter!(m::REPLIES_SENT).increment(1);
        crate::stats::count_reply_time(self.args.store.as_ref(), received.elapsed().as_millis() as u64, self.now_ms());
        self.args.heartbeats.beat("reply", false);
    }

    /// Has the model write a reply to `turns`, streamed to `reply`; `None` when it could not
    /// (the asker has been told why). `seed` overrides the configured one (a retry must not
    /// write the same words again).
    pub(super) async fn ask(
        &mut self,
        turns: Vec<ChatTurn>,
        seed: Option<u32>,
        reply: &mpsc::UnboundedSender<ReplyEvent>,
        received: Instant,
    ) -> Option<Streamed> {
        let Some(model) = self.model_back().await else {
            m::count_error("model_unavailable");
            let _ = reply.send(ReplyEvent::Failed(MODEL_RESTARTING.into()));
            return None;
        };
        let seed = seed.or(self.args.defaults.seed).unwrap_or_else(|| rand::Rng::random(&mut self.seeds));
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
            return None;
        }
        match self.stream(events, &cancel, reply, received).await {
            Ok(streamed) => Some(streamed),
            Err(why) => {
                m::count_error("generation");
                let _ = reply.send(ReplyEvent::Failed(why));
                None
            }
        }
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
                    let _ = reply.send(ReplyEvent::Started { prompt: prompt.clone(), stop: cancel.clone() });
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

    /// Stores the finished reply and journals it with the people its prompt quoted: synced
    /// before anyone sees it, so feedback on it always finds what to learn from.
    fn keep_reply(&mut self, streamed: Streamed, speakers: Vec<String>, sources: Vec<ChannelKey>) -> Result<Stored, ActorProcessingErr> {
        let answer = streamed.text.trim().to_string();
        let now = self.now_ms();
        let stored = StoredMessage {
            role: Role::Assistant,
            author: "sidekick".into(),
            content: answer.clone(),
            at_ms: now,
            message_id: None,
            guild: None,
            user_id: None,
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
            speakers,
            sources,
            replaces: None,
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
        self.push_history(Turn { chat: ChatTurn::new(Role::Assistant, answer), speakers: Vec::new(), sources: Vec::new() });
        Ok(Stored { seq, reply_id })
    }

    /// Earlier messages like `text` that this channel may be shown (`governance.rs`): nothing
    /// when retrieval is off or slow, so a reply never waits long for it.
    async fn background_for(&self, text: &str, window: &[ChatTurn]) -> Vec<context::Hit> {
        let rules = self.args.defaults.context;
        let Some(retrieval) = self.args.retrieval.get().filter(|_| rules.top_k > 0) else { return Vec::new() };
        let global = self.global();
        let scope = global.scope(&self.args.channel);
        // Ask for extra: some hits are the conversation itself or too weak.
        let k = rules.top_k * 3 + window.len();
        let asked = retrieval
            .call(|reply| RetrievalMsg::Query { text: text.to_string(), scope: scope.clone(), k, reply }, Some(timeouts::RETRIEVAL_QUERY))
            .await;
        match asked {
            Ok(ractor::rpc::CallResult::Success(hits)) => context::select(governance::shown(hits, &scope, &global), window, &rules),
            _ => Vec::new(),
        }
    }
}

/// What the model produced for one reply.
#[derive(Default)]
pub(super) struct Streamed {
    pub(super) prompt: String,
    pub(super) prompt_ids: Vec<u32>,
    pub(super) adapter: Option<String>,
    pub(super) text: String,
    pub(super) tokens: usize,
    pub(super) reply_ids: Vec<u32>,
}
