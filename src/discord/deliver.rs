//! Sending a channel's answer back to Discord the way a user expects: typing while the
//! model works, split at 2,000 characters, as a reply to the message (or edited into a slash
//! command's deferred response), pinging nobody.

use super::buttons::Row;
use super::stream::Target;
use ractor::ActorRef;
use serenity::all::{
    ChannelId, CommandInteraction, CreateAllowedMentions, CreateInteractionResponseFollowup, CreateMessage, EditInteractionResponse, Http,
    MessageId, MessageReference, MessageReferenceKind,
};
use sidekick_actors::metric_names as m;
use sidekick_actors::split::{split_message, DISCORD_LIMIT};
use sidekick_actors::{ReplyEvent, RootMsg};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What an answer's event says in Discord; `None` for events that show nothing themselves.
pub(super) fn shown(event: ReplyEvent) -> Option<String> {
    match event {
        ReplyEvent::Started { .. } | ReplyEvent::Token(_) => None,
        ReplyEvent::Done { text, .. } if text.is_empty() => Some("…".to_string()),
        ReplyEvent::Done { text, .. } | ReplyEvent::Notice(text) => Some(text),
        ReplyEvent::Failed(why) => Some(format!("⚠️ {why}")),
    }
}

/// Edits the answer into a deferred slash command's response (Discord shows "thinking…"
/// until then); parts past 2,000 characters follow as follow-ups, as private as the first.
pub async fn answer_interaction(
    http: Arc<Http>,
    root: ActorRef<RootMsg>,
    interaction: CommandInteraction,
    ephemeral: bool,
    mut events: mpsc::UnboundedReceiver<ReplyEvent>,
) {
    let mut answered = false;
    while let Some(event) = events.recv().await {
        let reply_id = match &event {
            ReplyEvent::Done { reply_id, .. } => *reply_id,
            _ => None,
        };
        let Some(text) = shown(event) else { continue };
        for piece in split_message(&text, DISCORD_LIMIT) {
            let sent = if answered {
                let followup = CreateInteractionResponseFollowup::new().content(piece).ephemeral(ephemeral);
                interaction.create_followup(&http, followup.allowed_mentions(CreateAllowedMentions::new())).await
            } else {
                let edit = EditInteractionResponse::new().content(piece).allowed_mentions(CreateAllowedMentions::new());
                interaction.edit_response(&http, edit).await
            };
            match sent {
                Ok(message) => {
                    answered = true;
                    if let Some(reply_id) = reply_id {
                        let _ = root.send_message(RootMsg::Delivered { reply_id, message_ids: vec![message.id.to_string()] });
                    }
                }
                Err(e) => {
                    tracing::warn!(command = %interaction.data.name, error = %e, "could not answer a slash command");
                    m::count_error("discord_send");
                    break;
                }
            }
        }
    }
    if !answered {
        // The channel ended without a word (the tree stopped meanwhile): do not leave "thinking…".
        let edit = EditInteractionResponse::new().content("…").allowed_mentions(CreateAllowedMentions::new());
        let _ = interaction.edit_response(&http, edit).await;
    }
}

/// Sends the answer whole; a model reply's Discord message ids go to the supervisor, which
/// links them to the reply journal so reactions on them reach the reply they rate.
pub(super) async fn deliver(target: Target, mut events: mpsc::UnboundedReceiver<ReplyEvent>) {
    let Target { http, root, channel, to, streaming, buttons, .. } = target;
    let mut typing = None;
    while let Some(event) = events.recv().await {
        let (reply_id, done) = match &event {
            ReplyEvent::Done { reply_id, .. } => (*reply_id, true),
            _ => (None, false),
        };
        if matches!(event, ReplyEvent::Started { .. }) {
            // Stops when dropped, i.e. when the answer is sent.
            typing = Some(channel.start_typing(&http));
            continue;
        }
        let Some(text) = shown(event) else { continue };
        drop(typing.take());
        let row = if done && buttons.is_some() { Row::Finished } else { Row::None };
        let mut parts = Vec::new();
        send(&http, channel, to, &text, row, |sent| {
            parts.push(sent);
            // Linked part by part: a reaction on the first part counts while the rest is sent.
            if let Some(reply_id) = reply_id {
                let _ = root.send_message(RootMsg::Delivered { reply_id, message_ids: vec![sent.to_string()] });
            }
        })
        .await;
        if let (Some(buttons), true) = (&buttons, done) {
            buttons.shown(&http, &streaming, channel, parts);
        }
    }
}

/// Sends `text` in parts, the last with the buttons of `row`; `sent` is told each part's id as
/// soon as Discord has it.
pub(super) async fn send(http: &Http, channel: ChannelId, to: MessageId, text: &str, row: Row, mut sent: impl FnMut(MessageId)) {
    let pieces = split_message(text, DISCORD_LIMIT);
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.into_iter().enumerate() {
        // Only the first part is a reply (a long answer notifies once).
        match post(http, channel, to, &piece, i == 0, if i == last { row } else { Row::None }).await {
            Some(id) => sent(id),
            None => break,
        }
    }
}

/// Posts one message of at most 2,000 characters, as a reply to `to` if `as_reply`, with the
/// buttons of `row`; its id, or `None` when Discord refused it (logged and counted).
pub(super) async fn post(http: &Http, channel: ChannelId, to: MessageId, piece: &str, as_reply: bool, row: Row) -> Option<MessageId> {
    // An empty allowed-mentions list: a reply never pings @everyone, roles or users.
    let mut message = CreateMessage::new().content(piece).allowed_mentions(CreateAllowedMentions::new());
    if row != Row::None {
        message = message.components(row.buttons());
    }
    if as_reply {
        // If the message was deleted meanwhile, Discord sends it as a plain message instead
        // of refusing it.
        let reference = MessageReference::new(MessageReferenceKind::Default, channel).message_id(to).fail_if_not_exists(false);
        message = message.reference_message(reference);
    }
    match channel.send_message(http, message).await {
        Ok(message) => Some(message.id),
        Err(e) => {
            tracing::warn!(%channel, error = %e, "could not send a reply");
            m::count_error("discord_send");
            None
        }
    }
}
