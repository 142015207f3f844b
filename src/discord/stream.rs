//! Streamed replies: posted after the first words and edited as the model writes, the way
//! people expect a chat bot to answer. Edits are paced per channel (`edit_pacing`): at most
//! one per `discord.edit_interval_ms` for a reply, and at most 5 per 5 s for all the replies
//! in a channel together; the final edit carries the whole journaled text. Past 2,000
//! characters the reply continues in a new message, cut at a line or sentence.

use super::deliver::{post, send, shown};
use ractor::ActorRef;
use serenity::all::{ChannelId, CreateAllowedMentions, EditMessage, Http, MessageId};
use sidekick_actors::edit_pacing::ChannelEdits;
use sidekick_actors::metric_names as m;
use sidekick_actors::split::{split_message, DISCORD_LIMIT};
use sidekick_actors::sync::LockExt;
use sidekick_actors::{ReplyEvent, RootMsg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Channels with edits lately; beyond this many, idle ones are forgotten.
const REMEMBERED_CHANNELS: usize = 1_000;

/// What the streams of all channels share: the interval and each channel's edit budget.
pub struct Streaming {
    pub interval: Duration,
    budgets: Mutex<HashMap<ChannelId, ChannelEdits>>,
    started: Instant,
}

impl Streaming {
    pub fn new(interval: Duration) -> Self {
        Self { interval, budgets: Mutex::default(), started: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// An edit now, if `channel` has budget for it.
    fn try_edit(&self, channel: ChannelId) -> bool {
        let now = self.now_ms();
        let mut budgets = self.budgets.lock_or_recover();
        if budgets.len() > REMEMBERED_CHANNELS {
            budgets.retain(|_, b| !b.is_idle(now));
        }
        budgets.entry(channel).or_default().try_take(now)
    }

    /// Waits for `channel`'s next free edit slot (for a final edit, which must be made).
    async fn wait_edit(&self, channel: ChannelId) {
        let now = self.now_ms();
        let at = self.budgets.lock_or_recover().entry(channel).or_default().take_next(now);
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
    }
}

/// One reply's messages on Discord and what each shows.
struct Shown {
    parts: Vec<(MessageId, String)>,
}

impl Shown {
    /// Makes Discord show `text`: edits the parts that changed, posts the new ones. `paced`
    /// says whether an edit may be skipped when the channel has no budget (between tokens) or
    /// must wait for it (the final text). False when Discord refused.
    async fn show(&mut self, http: &Http, streaming: &Streaming, channel: ChannelId, to: MessageId, text: &str, final_text: bool) -> bool {
        let pieces = split_message(text, DISCORD_LIMIT);
        for (i, piece) in pieces.iter().enumerate() {
            match self.parts.get(i) {
                Some((_, was)) if was == piece => {}
                Some(&(id, _)) => {
                    if final_text {
                        streaming.wait_edit(channel).await;
                    } else if !streaming.try_edit(channel) {
                        return true; // the channel's budget is spent: the next token tries again
                    }
                    let edit = EditMessage::new().content(piece).allowed_mentions(CreateAllowedMentions::new());
                    if let Err(e) = channel.edit_message(http, id, edit).await {
                        tracing::warn!(%channel, error = %e, "could not edit a streamed reply");
                        m::count_error("discord_send");
                        return false;
                    }
                    self.parts[i].1 = piece.clone();
                }
                None => match post(http, channel, to, piece, i == 0).await {
                    Some(id) => self.parts.push((id, piece.clone())),
                    None => return false,
                },
            }
        }
        if final_text {
            // The whole text came out shorter than what was streamed: drop the parts left over.
            for (id, _) in self.parts.drain(pieces.len().max(1)..) {
                let _ = channel.delete_message(http, id).await;
            }
        }
        true
    }
}

/// Delivers a reply as it is written. Commands' answers and notices arrive whole and are
/// sent as they are.
pub async fn stream_reply(
    http: Arc<Http>,
    root: ActorRef<RootMsg>,
    channel: ChannelId,
    to: MessageId,
    streaming: Arc<Streaming>,
    mut events: mpsc::UnboundedReceiver<ReplyEvent>,
) {
    let mut typing = None;
    let mut text = String::new();
    let mut on_discord = Shown { parts: Vec::new() };
    let mut last_edit = Instant::now();
    let mut refused = false;
    while let Some(event) = events.recv().await {
        match event {
            ReplyEvent::Started { .. } => typing = Some(channel.start_typing(&http)),
            ReplyEvent::Token(piece) => {
                text.push_str(&piece);
                let first = on_discord.parts.is_empty();
                if refused || text.trim().is_empty() || (!first && last_edit.elapsed() < streaming.interval) {
                    continue;
                }
                refused = !on_discord.show(&http, &streaming, channel, to, &text, false).await;
                drop(typing.take()); // typing shows until the first post
                last_edit = Instant::now();
            }
            ReplyEvent::Done { text: whole, reply_id, .. } => {
                drop(typing.take());
                let whole = if whole.is_empty() { "…".to_string() } else { whole };
                on_discord.show(&http, &streaming, channel, to, &whole, true).await;
                if let Some(reply_id) = reply_id {
                    let message_ids = on_discord.parts.iter().map(|(id, _)| id.to_string()).collect();
                    let _ = root.send_message(RootMsg::Delivered { reply_id, message_ids });
                }
            }
            other => {
                drop(typing.take());
                if let Some(notice) = shown(other) {
                    send(&http, channel, to, &notice, |_| {}).await;
                }
            }
        }
    }
}
