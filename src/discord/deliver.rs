//! Sending a channel's answer back to Discord the way a user expects: typing while the
//! model works, split at 2,000 characters, as a reply to the message, pinging nobody.

use ractor::ActorRef;
use serenity::all::{ChannelId, CreateAllowedMentions, CreateMessage, Http, MessageId, MessageReference, MessageReferenceKind};
use sidekick_actors::metric_names as m;
use sidekick_actors::split::{split_message, DISCORD_LIMIT};
use sidekick_actors::{ReplyEvent, RootMsg};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Sends the answer; a model reply's Discord message ids go to the supervisor, which links
/// them to the reply journal so reactions on them reach the reply they rate.
pub async fn deliver(
    http: Arc<Http>,
    root: ActorRef<RootMsg>,
    channel: ChannelId,
    to: MessageId,
    mut events: mpsc::UnboundedReceiver<ReplyEvent>,
) {
    let mut typing = None;
    while let Some(event) = events.recv().await {
        let reply_id = match &event {
            ReplyEvent::Done { reply_id, .. } => *reply_id,
            _ => None,
        };
        let text = match event {
            ReplyEvent::Started { .. } => {
                // Stops when dropped, i.e. when the answer is sent.
                typing = Some(channel.start_typing(&http));
                continue;
            }
            ReplyEvent::Token(_) => continue,
            ReplyEvent::Done { text, .. } if text.is_empty() => "…".to_string(),
            ReplyEvent::Done { text, .. } | ReplyEvent::Notice(text) => text,
            ReplyEvent::Failed(why) => format!("⚠️ {why}"),
        };
        drop(typing.take());
        send(&http, channel, to, &text, |sent| {
            // Linked part by part: a reaction on the first part counts while the rest is sent.
            if let Some(reply_id) = reply_id {
                let _ = root.send_message(RootMsg::Delivered { reply_id, message_ids: vec![sent.to_string()] });
            }
        })
        .await;
    }
}

/// Sends `text` in parts; `sent` is told each part's id as soon as Discord has it.
async fn send(http: &Http, channel: ChannelId, to: MessageId, text: &str, mut sent: impl FnMut(MessageId)) {
    for (i, piece) in split_message(text, DISCORD_LIMIT).into_iter().enumerate() {
        // An empty allowed-mentions list: a reply never pings @everyone, roles or users.
        let mut message = CreateMessage::new().content(piece).allowed_mentions(CreateAllowedMentions::new());
        if i == 0 {
            // Only the first part is a reply (a long answer notifies once). If the message was
            // deleted meanwhile, Discord sends it as a plain message instead of refusing it.
            let reference = MessageReference::new(MessageReferenceKind::Default, channel).message_id(to).fail_if_not_exists(false);
            message = message.reference_message(reference);
        }
        match channel.send_message(http, message).await {
            Ok(message) => sent(message.id),
            Err(e) => {
                tracing::warn!(%channel, error = %e, "could not send a reply");
                m::count_error("discord_send");
                break;
            }
        }
    }
}
