//! Streamed replies: posted after the first words and edited as the model writes, the way
//! people expect a chat bot to answer. Edits are paced per channel (`edit_pacing`): at most
//! one per `discord.edit_interval_ms` for a reply, and at most 5 per 5 s for all the replies
//! in a channel together; the final edit carries the whole journaled text. Past 2,000
//! characters the reply continues in a new message, cut at a line or sentence. The same code
//! writes a reply again into its messages (🔁), and puts the buttons on (`buttons.rs`).

use super::buttons::{Buttons, Row};
use super::deliver::{post, send, shown};
use ractor::ActorRef;
use serenity::all::{
    ChannelId, ComponentInteraction, CreateAllowedMentions, CreateInteractionResponseFollowup, EditMessage, Http, MessageId,
};
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
    pub(super) async fn wait_edit(&self, channel: ChannelId) {
        let now = self.now_ms();
        let at = self.budgets.lock_or_recover().entry(channel).or_default().take_next(now);
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
    }
}

/// One reply's messages on Discord: what each shows, and its buttons.
pub(super) struct Shown {
    parts: Vec<(MessageId, String, Row)>,
    /// Whether replies carry buttons.
    buttons: bool,
}

impl Shown {
    pub(super) fn new(buttons: bool) -> Self {
        Self { parts: Vec::new(), buttons }
    }

    /// A reply already on Discord as `parts`, about to be written again (the last part carries
    /// the buttons).
    pub(super) fn rewriting(parts: &[MessageId]) -> Self {
        let last = parts.len().saturating_sub(1);
        let parts =
            parts.iter().enumerate().map(|(i, id)| (*id, String::new(), if i == last { Row::Finished } else { Row::None })).collect();
        Self { parts, buttons: true }
    }

    pub(super) fn ids(&self) -> Vec<MessageId> {
        self.parts.iter().map(|(id, ..)| *id).collect()
    }

    /// The buttons part `i` of `n` carries: ⏹ on the first while writing, 👍 👎 🔁 on the
    /// last when done.
    fn row(&self, i: usize, n: usize, final_text: bool) -> Row {
        match (self.buttons, final_text) {
            (false, _) => Row::None,
            (true, false) if i == 0 => Row::Writing,
            (true, true) if i + 1 == n => Row::Finished,
            _ => Row::None,
        }
    }

    /// Makes Discord show `text`: edits the parts that changed, posts the new ones. `paced`
    /// says whether an edit may be skipped when the channel has no budget (between tokens) or
    /// must wait for it (the final text). False when Discord refused.
    async fn show(&mut self, http: &Http, streaming: &Streaming, channel: ChannelId, to: MessageId, text: &str, final_text: bool) -> bool {
        let pieces = split_message(text, DISCORD_LIMIT);
        for (i, piece) in pieces.iter().enumerate() {
            let row = self.row(i, pieces.len(), final_text);
            match self.parts.get(i) {
                Some((_, was, had)) if was == piece && *had == row => {}
                Some(&(id, ..)) => {
                    if final_text {
                        streaming.wait_edit(channel).await;
                    } else if !streaming.try_edit(channel) {
                        return true; // the channel's budget is spent: the next token tries again
                    }
                    let mut edit = EditMessage::new().content(piece).allowed_mentions(CreateAllowedMentions::new());
                    if self.buttons {
                        edit = edit.components(row.buttons());
                    }
                    if let Err(e) = channel.edit_message(http, id, edit).await {
                        tracing::warn!(%channel, error = %e, "could not edit a streamed reply");
                        m::count_error("discord_send");
                        return false;
                    }
                    self.parts[i] = (id, piece.clone(), row);
                }
                None => match post(http, channel, to, piece, i == 0, row).await {
                    Some(id) => self.parts.push((id, piece.clone(), row)),
                    None => return false,
                },
            }
        }
        if final_text {
            // The whole text came out shorter than what was streamed: drop the parts left over.
            for (id, ..) in self.parts.drain(pieces.len().max(1)..) {
                let _ = channel.delete_message(http, id).await;
            }
        }
        true
    }
}

/// Where a reply goes, and what delivering it uses.
pub(super) struct Target {
    pub http: Arc<Http>,
    pub root: ActorRef<RootMsg>,
    pub channel: ChannelId,
    /// The message it answers.
    pub to: MessageId,
    pub streaming: Arc<Streaming>,
    pub buttons: Option<Arc<Buttons>>,
    /// A click of 🔁: notices (such as "only the latest") go privately to the one who clicked.
    pub clicked: Option<ComponentInteraction>,
}

/// Delivers a reply as it is written. Commands' answers and notices arrive whole and are
/// sent as they are.
pub(super) async fn stream_reply(target: Target, mut on_discord: Shown, mut events: mpsc::UnboundedReceiver<ReplyEvent>) {
    let Target { http, root, channel, to, streaming, buttons, clicked } = target;
    let mut typing = None;
    let mut text = String::new();
    let mut last_edit = Instant::now();
    let mut refused = false;
    // What a ⏹ click names this reply by: the message a fresh reply answers (the click's
    // message refers to it), or the first message of a reply written again. Registered
    // before the first post, so a click on the first words always finds it.
    let anchor = on_discord.ids().first().copied().unwrap_or(to);
    let mut writing = None;
    let mut showing = false;
    while let Some(event) = events.recv().await {
        match event {
            ReplyEvent::Started { stop: flag, .. } => {
                if let Some(buttons) = &buttons {
                    buttons.writing(anchor, flag);
                    writing = Some(anchor);
                }
                if on_discord.parts.is_empty() {
                    typing = Some(channel.start_typing(&http));
                }
            }
            ReplyEvent::Token(piece) => {
                text.push_str(&piece);
                if refused || text.trim().is_empty() || (showing && last_edit.elapsed() < streaming.interval) {
                    continue;
                }
                refused = !on_discord.show(&http, &streaming, channel, to, &text, false).await;
                drop(typing.take()); // typing shows until the first post
                last_edit = Instant::now();
                showing = true;
            }
            ReplyEvent::Done { text: whole, reply_id, .. } => {
                drop(typing.take());
                let whole = if whole.is_empty() { "…".to_string() } else { whole };
                on_discord.show(&http, &streaming, channel, to, &whole, true).await;
                if let Some(reply_id) = reply_id {
                    let message_ids = on_discord.ids().iter().map(|id| id.to_string()).collect();
                    let _ = root.send_message(RootMsg::Delivered { reply_id, message_ids });
                }
                if let Some(buttons) = &buttons {
                    if let Some(first) = writing.take() {
                        buttons.written(first);
                    }
                    buttons.shown(&http, &streaming, channel, on_discord.ids());
                }
            }
            other => {
                drop(typing.take());
                let Some(notice) = shown(other) else { continue };
                match &clicked {
                    Some(click) => {
                        let private = CreateInteractionResponseFollowup::new().content(notice).ephemeral(true);
                        let _ = click.create_followup(&http, private.allowed_mentions(CreateAllowedMentions::new())).await;
                    }
                    None => send(&http, channel, to, &notice, Row::None, |_| {}).await,
                }
            }
        }
    }
    if let (Some(buttons), Some(first)) = (&buttons, writing) {
        buttons.written(first); // the reply ended without a word more (the tree stopped)
    }
}
