//! serenity events → messages for the actor tree.

use super::deliver::deliver;
use ractor::ActorRef;
use serenity::all::{ChannelId, Context, EventHandler, GuildId, Message, MessageId, Reaction, ReactionType, Ready, UserId};
use serenity::async_trait;
use sidekick_actors::commands::Access;
use sidekick_actors::feedback::FeedbackMsg;
use sidekick_actors::{ChannelMsg, Inbound, RootMsg};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// How many recent message ids are remembered to drop duplicates.
const REMEMBERED: usize = 512;

pub struct Handler {
    pub root: ActorRef<RootMsg>,
    pub bot_id: UserId,
    pub owner_id: Option<UserId>,
    pub admins: Vec<UserId>,
    /// Recently seen messages: a resumed gateway may deliver one again.
    pub seen: Mutex<VecDeque<MessageId>>,
}

impl Handler {
    fn access(&self, user: UserId) -> Access {
        if Some(user) == self.owner_id {
            Access::Owner
        } else if self.admins.contains(&user) {
            Access::Admin
        } else {
            Access::Everyone
        }
    }

    /// True the first time a message id is seen.
    fn first_sighting(&self, id: MessageId) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&id) {
            return false;
        }
        if seen.len() == REMEMBERED {
            seen.pop_front();
        }
        seen.push_back(id);
        true
    }

    /// The message without the bot's own mention, which is how people address it.
    fn text_of(&self, msg: &Message) -> String {
        let id = self.bot_id.get();
        msg.content.replace(&format!("<@{id}>"), "").replace(&format!("<@!{id}>"), "").trim().to_string()
    }
}

/// Which conversation a Discord channel belongs to (a server channel or a DM).
pub fn channel_key(guild: Option<GuildId>, channel: ChannelId) -> String {
    match guild {
        Some(_) => format!("discord:{channel}"),
        None => format!("discord-dm:{channel}"),
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "Discord gateway ready");
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if msg.author.id == self.bot_id || msg.author.bot {
            return; // our own messages and other bots' are not conversation
        }
        if !self.first_sighting(msg.id) {
            tracing::debug!(id = %msg.id, "duplicate message dropped");
            return;
        }
        let replied_to_bot = msg.referenced_message.as_ref().is_some_and(|m| m.author.id == self.bot_id);
        let addressed = msg.guild_id.is_none() || msg.mentions_user_id(self.bot_id) || replied_to_bot;
        let (reply, events) = mpsc::unbounded_channel();
        let inbound = Inbound {
            author: msg.author.global_name.clone().unwrap_or_else(|| msg.author.name.clone()),
            text: self.text_of(&msg),
            message_id: Some(msg.id.to_string()),
            addressed,
            access: self.access(msg.author.id),
            guild: msg.guild_id.map(|g| g.to_string()),
            reply_to: msg.referenced_message.as_ref().map(|m| m.id.to_string()),
            queued_ahead: 0,
            reply,
        };
        let route = RootMsg::Route { channel: channel_key(msg.guild_id, msg.channel_id), msg: ChannelMsg::Inbound(inbound) };
        if self.root.send_message(route).is_err() {
            tracing::warn!("the actor tree is gone; dropping a message");
            return;
        }
        tokio::spawn(deliver(ctx.http.clone(), self.root.clone(), msg.channel_id, msg.id, events));
    }

    async fn reaction_add(&self, _: Context, reaction: Reaction) {
        self.reaction(reaction, true);
    }

    async fn reaction_remove(&self, _: Context, reaction: Reaction) {
        self.reaction(reaction, false);
    }
}

impl Handler {
    /// A reaction on any message goes to the feedback actor, which knows which are replies.
    fn reaction(&self, reaction: Reaction, added: bool) {
        let Some(user) = reaction.user_id.filter(|u| *u != self.bot_id) else { return };
        let emoji = match &reaction.emoji {
            ReactionType::Unicode(e) => e.clone(),
            ReactionType::Custom { name, id, .. } => name.clone().unwrap_or_else(|| id.to_string()),
            _ => return,
        };
        let channel = channel_key(reaction.guild_id, reaction.channel_id);
        let msg = FeedbackMsg::Reaction { channel, message_id: reaction.message_id.to_string(), emoji, user: user.to_string(), added };
        let _ = self.root.send_message(RootMsg::Feedback(msg));
    }
}
