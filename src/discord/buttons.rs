//! Buttons under a reply: 👍 and 👎 (a vote with the reactions' rewards, one standing per
//! person), 🔁 (write it again, in place) and, while it is being written, ⏹ (stop: what was
//! said stays). Only a channel's newest reply carries them, and only for
//! `discord.buttons_minutes`, so older messages are not cluttered.

use super::handler::Router;
use super::stream::{stream_reply, Shown, Streaming, Target};
use serenity::all::{
    ButtonStyle, ChannelId, ComponentInteraction, CreateActionRow, CreateAllowedMentions, CreateButton, CreateInteractionResponse,
    CreateInteractionResponseMessage, EditMessage, Http, MessageId, ReactionType,
};
use sidekick_actors::commands::{table, Command, Parsed};
use sidekick_actors::feedback::{FeedbackMsg, Vote};
use sidekick_actors::metric_names as m;
use sidekick_actors::ports::CancelFlag;
use sidekick_actors::sync::LockExt;
use sidekick_actors::{Inbound, RootMsg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The buttons' ids, as Discord sends them back on a click.
pub const UP: &str = "sidekick:up";
pub const DOWN: &str = "sidekick:down";
pub const AGAIN: &str = "sidekick:again";
pub const STOP: &str = "sidekick:stop";

/// Which buttons a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    None,
    /// ⏹, while the reply is being written.
    Writing,
    /// 👍 👎 🔁, once it is done.
    Finished,
}

impl Row {
    /// The message's components (none: an empty list, which takes buttons off).
    pub fn buttons(self) -> Vec<CreateActionRow> {
        let button = |id: &str, emoji: char| CreateButton::new(id).style(ButtonStyle::Secondary).emoji(ReactionType::Unicode(emoji.into()));
        match self {
            Row::None => Vec::new(),
            Row::Writing => vec![CreateActionRow::Buttons(vec![button(STOP, '⏹')])],
            Row::Finished => vec![CreateActionRow::Buttons(vec![button(UP, '👍'), button(DOWN, '👎'), button(AGAIN, '🔁')])],
        }
    }
}

/// The replies that carry buttons now.
pub struct Buttons {
    lifetime: Duration,
    /// Each channel's newest reply (its parts; the last carries the buttons).
    newest: Mutex<HashMap<ChannelId, Vec<MessageId>>>,
    /// Replies being written, by the message a fresh one answers or the first message of one
    /// written again: what ⏹ sets.
    writing: Mutex<HashMap<MessageId, CancelFlag>>,
}

impl Buttons {
    pub fn new(lifetime: Duration) -> Self {
        Self { lifetime, newest: Mutex::default(), writing: Mutex::default() }
    }

    pub(super) fn writing(&self, anchor: MessageId, stop: CancelFlag) {
        self.writing.lock_or_recover().insert(anchor, stop);
    }

    pub(super) fn written(&self, anchor: MessageId) {
        self.writing.lock_or_recover().remove(&anchor);
    }

    /// ⏹ on `message`: true when a reply was being written there (it ends at the next token).
    fn stop(&self, message: &serenity::all::Message) -> bool {
        let answered = message.message_reference.as_ref().and_then(|r| r.message_id);
        let writing = self.writing.lock_or_recover();
        let flag = writing.get(&message.id).or_else(|| answered.and_then(|a| writing.get(&a)));
        flag.map(CancelFlag::cancel).is_some()
    }

    /// The parts of the newest reply in `channel`, if `message` is one of them.
    fn parts_of(&self, channel: ChannelId, message: MessageId) -> Option<Vec<MessageId>> {
        self.newest.lock_or_recover().get(&channel).filter(|parts| parts.contains(&message)).cloned()
    }

    /// `parts` (a reply just finished) is the newest in `channel`: the one before loses its
    /// buttons now, this one after `lifetime`.
    pub(super) fn shown(self: &Arc<Self>, http: &Arc<Http>, streaming: &Arc<Streaming>, channel: ChannelId, parts: Vec<MessageId>) {
        let Some(&last) = parts.last() else { return };
        let before = self.newest.lock_or_recover().insert(channel, parts);
        if let Some(&older) = before.as_ref().and_then(|b| b.last()).filter(|older| **older != last) {
            tokio::spawn(take_off(http.clone(), streaming.clone(), channel, older));
        }
        let (this, http, streaming) = (self.clone(), http.clone(), streaming.clone());
        tokio::spawn(async move {
            tokio::time::sleep(this.lifetime).await;
            let expired = {
                let mut newest = this.newest.lock_or_recover();
                let still = newest.get(&channel).and_then(|p| p.last()) == Some(&last);
                if still {
                    newest.remove(&channel);
                }
                still
            };
            if expired {
                take_off(http, streaming, channel, last).await;
            }
        });
    }
}

/// Takes the buttons off `message` (in the channel's edit budget).
async fn take_off(http: Arc<Http>, streaming: Arc<Streaming>, channel: ChannelId, message: MessageId) {
    streaming.wait_edit(channel).await;
    let edit = EditMessage::new().components(Vec::new()).allowed_mentions(CreateAllowedMentions::new());
    if let Err(e) = channel.edit_message(&http, message, edit).await {
        tracing::debug!(%channel, error = %e, "could not take the buttons off a reply");
    }
}

/// An answer only the one who clicked sees.
fn private(text: &str) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content(text).ephemeral(true))
}

impl Router {
    /// A click on one of the buttons.
    pub(super) async fn button(&self, http: &Arc<Http>, click: ComponentInteraction) {
        let Some(buttons) = self.buttons.clone() else { return };
        let (channel, message, user) = (click.channel_id, click.message.id, click.user.id);
        let answer = match click.data.custom_id.as_str() {
            id @ (UP | DOWN) => {
                let up = id == UP;
                let key = self.key(http, click.guild_id, channel, user).await;
                let vote = Vote { channel: key, message_id: message.to_string(), user: user.to_string(), up };
                let _ = self.root.send_message(RootMsg::Feedback(FeedbackMsg::Vote(vote)));
                private(if up { "Thanks! Your 👍 is counted." } else { "Thanks! Your 👎 is counted." })
            }
            STOP if buttons.stop(&click.message) => CreateInteractionResponse::Acknowledge,
            STOP => private("That reply is already finished."),
            AGAIN => CreateInteractionResponse::Acknowledge,
            _ => private("That button is no longer in use."),
        };
        if let Err(e) = click.create_response(http, answer).await {
            tracing::warn!(error = %e, "could not answer a button");
            m::count_error("discord_send");
            return;
        }
        if click.data.custom_id == AGAIN {
            self.write_again(http, click, &buttons).await;
        }
    }

    /// 🔁: the conversation writes its latest reply again, streamed into the same messages.
    async fn write_again(&self, http: &Arc<Http>, click: ComponentInteraction, buttons: &Arc<Buttons>) {
        let (channel, message, user) = (click.channel_id, click.message.id, click.user.clone());
        let Some(spec) = table::find("retry") else { return };
        let (reply, events) = mpsc::unbounded_channel();
        let inbound = Inbound {
            author: user.global_name.clone().unwrap_or_else(|| user.name.clone()),
            user_id: Some(user.id.to_string()),
            text: String::new(),
            message_id: None,
            addressed: true,
            access: self.access(user.id),
            guild: click.guild_id.map(|g| g.to_string()),
            reply_to: Some(message.to_string()),
            queued_ahead: 0,
            command: Some(Parsed { spec, command: Command::Retry }),
            reply,
        };
        let key = self.key(http, click.guild_id, channel, user.id).await;
        if self.root.send_message(RootMsg::Route { channel: key, inbound }).is_err() {
            return;
        }
        let parts = buttons.parts_of(channel, message).unwrap_or_else(|| vec![message]);
        let target = Target {
            http: http.clone(),
            root: self.root.clone(),
            channel,
            to: message,
            streaming: self.edits.clone(),
            buttons: Some(buttons.clone()),
            clicked: Some(click),
        };
        tokio::spawn(stream_reply(target, Shown::rewriting(&parts), events));
    }
}
