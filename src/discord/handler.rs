//! serenity events → messages for the actor tree, in the order Discord sent them.
//!
//! serenity runs every event-handler call in a task of its own, so two messages that arrive
//! together can reach the tree in either order: a flood's first message routed fifth is taken
//! for backlog, a reaction's removal can come before its addition. A collector callback runs in
//! the shard's own loop, in arrival order, before those tasks are spawned, so messages and
//! reactions go from it through one channel to one task that routes them in order. The handler
//! methods route only what no collector saw: the moments after a (re)connect before `ready`
//! has registered one with the new shard.

use super::deliver::deliver;
use crate::config::SlashRegistration;
use ractor::ActorRef;
use serenity::all::{
    ChannelId, ChannelType, Context, Event, EventHandler, Guild, GuildChannel, GuildId, Http, Interaction, Message, MessageId, MessageType,
    Reaction, ReactionType, Ready, UserId,
};
use serenity::async_trait;
use serenity::gateway::CollectorCallback;
use sidekick_actors::commands::Access;
use sidekick_actors::feedback::{self, FeedbackMsg};
use sidekick_actors::metric_names as m;
use sidekick_actors::sync::LockExt;
use sidekick_actors::{ChannelKey, Inbound, RootMsg};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How many recent message ids are remembered to drop duplicates.
const REMEMBERED: usize = 512;

/// Turns one event into messages for the tree.
pub struct Router {
    pub root: ActorRef<RootMsg>,
    pub bot_id: UserId,
    pub owner_id: Option<UserId>,
    pub admins: Vec<UserId>,
    /// Recently seen messages: a resumed gateway may deliver one again.
    pub seen: Mutex<VecDeque<MessageId>>,
    /// Which server channels are threads, and of which channel (`None`: not a thread).
    pub threads: Mutex<HashMap<ChannelId, Option<ChannelId>>>,
    /// Where the slash commands go.
    pub register: SlashRegistration,
    /// Replies are streamed (posted early and edited as they are written).
    pub stream: bool,
    /// Every channel's edit budget (streamed replies, rewrites, buttons taken off).
    pub edits: Arc<super::stream::Streaming>,
    /// The buttons under replies (`None`: `discord.buttons = false`).
    pub buttons: Option<Arc<super::buttons::Buttons>>,
    /// Where they were registered by this process (`None`: the global set), once each.
    pub registered: Mutex<HashSet<Option<GuildId>>>,
    /// Says whether the gateway runs without the Message Content intent.
    pub health: sidekick_actors::liveness::GatewayHealth,
    /// Server names from GUILD_CREATE, to name their channels.
    pub guild_names: std::sync::Mutex<std::collections::HashMap<GuildId, String>>,
}

/// Channels whose kind is remembered; beyond this the memory starts over (a lookup is cheap).
const REMEMBERED_CHANNELS: usize = 10_000;

/// An event the collector passed on.
enum Incoming {
    Message(Box<Message>),
    Reaction(Box<Reaction>, bool),
}

/// Events the collector passed on whose handler calls have not come yet, counted per event,
/// so a handler call knows whether its event is already on its way in order.
#[derive(Default)]
struct Taken(Mutex<HashMap<String, u32>>);

impl Taken {
    fn add(&self, key: String) {
        *self.0.lock_or_recover().entry(key).or_default() += 1;
    }

    /// True (once per passing) when the collector passed this event on.
    fn was_taken(&self, key: &str) -> bool {
        let mut taken = self.0.lock_or_recover();
        let Some(n) = taken.get_mut(key) else { return false };
        *n -= 1;
        if *n == 0 {
            taken.remove(key);
        }
        true
    }
}

fn message_key(id: MessageId) -> String {
    format!("message {id}")
}

fn reaction_key(reaction: &Reaction, added: bool) -> String {
    let user = reaction.user_id.map_or(0, |u| u.get());
    format!("reaction {} {user} {} {added}", reaction.message_id, reaction.emoji)
}

pub struct Handler {
    router: Arc<Router>,
    ordered: mpsc::UnboundedSender<(Incoming, Arc<Http>)>,
    taken: Arc<Taken>,
    /// Which registration is current: an older collector still on the same shard stands down.
    registration: Arc<AtomicU64>,
}

impl Handler {
    /// Keeps the names of the text channels for the console's allowlist (`#name (server)`).
    fn name_channel(&self, channel: &GuildChannel) {
        if !matches!(channel.kind, ChannelType::Text | ChannelType::News | ChannelType::Forum) {
            return;
        }
        let name = match self.router.guild_names.lock_or_recover().get(&channel.guild_id) {
            Some(server) => format!("#{} ({server})", channel.name),
            None => format!("#{}", channel.name),
        };
        self.router.health.name_channel(channel.id.get(), Some(name));
    }

    /// Starts the task that routes the collector's events in order.
    pub fn new(router: Router) -> Self {
        let router = Arc::new(router);
        let (ordered, mut events) = mpsc::unbounded_channel::<(Incoming, Arc<Http>)>();
        let in_order = router.clone();
        tokio::spawn(async move {
            while let Some((event, http)) = events.recv().await {
                match event {
                    Incoming::Message(msg) => in_order.message(&http, *msg).await,
                    Incoming::Reaction(reaction, added) => in_order.reaction(&http, *reaction, added).await,
                }
            }
        });
        Self { router, ordered, taken: Arc::default(), registration: Arc::default() }
    }

    /// Registers the collector with the shard that just became ready (a new shard after a
    /// reconnect starts without one).
    fn collect_in_order(&self, ctx: &Context) {
        let (ordered, taken, http) = (self.ordered.clone(), self.taken.clone(), ctx.http.clone());
        let registration = self.registration.clone();
        let this = registration.fetch_add(1, Ordering::AcqRel) + 1;
        ctx.shard.add_collector(CollectorCallback(Box::new(move |event| {
            if registration.load(Ordering::Acquire) != this {
                return false; // a newer `ready` registered another: one copy of each event
            }
            let (key, incoming) = match event {
                Event::MessageCreate(e) => (message_key(e.message.id), Incoming::Message(Box::new(e.message.clone()))),
                Event::ReactionAdd(e) => (reaction_key(&e.reaction, true), Incoming::Reaction(Box::new(e.reaction.clone()), true)),
                Event::ReactionRemove(e) => (reaction_key(&e.reaction, false), Incoming::Reaction(Box::new(e.reaction.clone()), false)),
                _ => return !ordered.is_closed(),
            };
            let sent = ordered.send((incoming, http.clone())).is_ok();
            if sent {
                taken.add(key);
            }
            sent
        })));
    }
}

impl Router {
    pub(super) fn access(&self, user: UserId) -> Access {
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
        let mut seen = self.seen.lock_or_recover();
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

    /// The conversation a Discord channel is: a thread knows its parent (asked of Discord
    /// once, or told by THREAD_CREATE), so it follows the parent's allowlist and purge.
    pub(super) async fn key(&self, http: &Http, guild: Option<GuildId>, channel: ChannelId, user: UserId) -> ChannelKey {
        let Some(guild) = guild else { return ChannelKey::Dm { user: Some(user.get()), channel: channel.get() } };
        let known = self.threads.lock_or_recover().get(&channel).copied();
        let parent = match known {
            Some(parent) => parent,
            None => {
                let parent = match http.get_channel(channel).await {
                    Ok(serenity::all::Channel::Guild(c)) if c.thread_metadata.is_some() => c.parent_id,
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!(%channel, error = %e, "could not tell whether a channel is a thread");
                        return ChannelKey::guild(guild.get(), channel.get());
                    }
                };
                self.remember_channel(channel, parent);
                parent
            }
        };
        match parent {
            Some(parent) => ChannelKey::Thread { guild: Some(guild.get()), parent: Some(parent.get()), thread: channel.get() },
            None => ChannelKey::guild(guild.get(), channel.get()),
        }
    }

    /// Registers the slash commands in `scope` (`None`: the application's global set) the
    /// first time this process sees it; a reconnect's new session does not repeat it.
    async fn register(&self, http: &Http, scope: Option<GuildId>) {
        if !self.registered.lock_or_recover().insert(scope) {
            return;
        }
        match super::slash::register(http, self.register, scope).await {
            Ok(()) => tracing::debug!(?scope, mode = ?self.register, "slash commands registered"),
            Err(e) => {
                // Slash commands are a convenience; `!` commands work without them.
                tracing::warn!(?scope, error = %e, "could not register the slash commands");
                m::count_error("discord_send");
                self.registered.lock_or_recover().remove(&scope);
            }
        }
    }

    pub fn remember_channel(&self, channel: ChannelId, parent: Option<ChannelId>) {
        let mut threads = self.threads.lock_or_recover();
        if threads.len() >= REMEMBERED_CHANNELS {
            threads.clear();
        }
        threads.insert(channel, parent);
    }

    async fn message(&self, http: &Arc<Http>, msg: Message) {
        if msg.author.id == self.bot_id || msg.author.bot {
            return; // our own messages and other bots' are not conversation
        }
        if !matches!(msg.kind, MessageType::Regular | MessageType::InlineReply) {
            return; // nor are Discord's own (joins, pins, boosts), told by their type
        }
        if !self.first_sighting(msg.id) {
            tracing::debug!(id = %msg.id, "duplicate message dropped");
            return;
        }
        let replied_to_bot = msg.referenced_message.as_ref().is_some_and(|m| m.author.id == self.bot_id);
        let addressed = msg.guild_id.is_none() || msg.mentions_user_id(self.bot_id) || replied_to_bot;
        if !addressed && self.health.without_message_content() {
            return; // Discord sent it without its text: nothing to store, learn from or answer
        }
        let (reply, events) = mpsc::unbounded_channel();
        let inbound = Inbound {
            author: msg.author.global_name.clone().unwrap_or_else(|| msg.author.name.clone()),
            user_id: Some(msg.author.id.to_string()),
            text: self.text_of(&msg),
            message_id: Some(msg.id.to_string()),
            addressed,
            access: self.access(msg.author.id),
            guild: msg.guild_id.map(|g| g.to_string()),
            reply_to: msg.referenced_message.as_ref().map(|m| m.id.to_string()),
            queued_ahead: 0,
            command: None,
            reply,
        };
        let route = RootMsg::Route { channel: self.key(http, msg.guild_id, msg.channel_id, msg.author.id).await, inbound };
        if self.root.send_message(route).is_err() {
            tracing::warn!("the actor tree is gone; dropping a message");
            return;
        }
        let target = super::stream::Target {
            http: http.clone(),
            root: self.root.clone(),
            channel: msg.channel_id,
            to: msg.id,
            streaming: self.edits.clone(),
            buttons: self.buttons.clone(),
            clicked: None,
        };
        match self.stream {
            true => tokio::spawn(super::stream::stream_reply(target, super::stream::Shown::new(self.buttons.is_some()), events)),
            false => tokio::spawn(deliver(target, events)),
        };
    }

    /// A reaction on any message goes to the feedback actor, which knows which are replies.
    async fn reaction(&self, http: &Http, reaction: Reaction, added: bool) {
        let Some(user) = reaction.user_id.filter(|u| *u != self.bot_id) else { return };
        let emoji = match &reaction.emoji {
            ReactionType::Unicode(e) => e.clone(),
            ReactionType::Custom { name, id, .. } => name.clone().unwrap_or_else(|| id.to_string()),
            _ => return,
        };
        let channel = self.key(http, reaction.guild_id, reaction.channel_id, user).await;
        let reaction = feedback::Reaction { channel, message_id: reaction.message_id.to_string(), emoji, user: user.to_string(), added };
        let _ = self.root.send_message(RootMsg::Feedback(FeedbackMsg::Reaction(reaction)));
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        self.collect_in_order(&ctx);
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "Discord gateway ready");
        self.router.register(&ctx.http, None).await;
    }

    async fn guild_create(&self, ctx: Context, guild: Guild, _: Option<bool>) {
        self.router.guild_names.lock_or_recover().insert(guild.id, guild.name.clone());
        for channel in guild.channels.values() {
            self.name_channel(channel);
        }
        self.router.register(&ctx.http, Some(guild.id)).await;
    }

    async fn channel_create(&self, _: Context, channel: GuildChannel) {
        self.name_channel(&channel);
    }

    async fn channel_update(&self, _: Context, _: Option<GuildChannel>, channel: GuildChannel) {
        self.name_channel(&channel);
    }

    async fn channel_delete(&self, _: Context, channel: GuildChannel, _: Option<Vec<Message>>) {
        self.router.health.name_channel(channel.id.get(), None);
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(command) => self.router.slash(&ctx.http, command).await,
            Interaction::Component(click) => self.router.button(&ctx.http, click).await,
            _ => {}
        }
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if !self.taken.was_taken(&message_key(msg.id)) {
            self.router.message(&ctx.http, msg).await;
        }
    }

    async fn reaction_add(&self, ctx: Context, reaction: Reaction) {
        if !self.taken.was_taken(&reaction_key(&reaction, true)) {
            self.router.reaction(&ctx.http, reaction, true).await;
        }
    }

    async fn reaction_remove(&self, ctx: Context, reaction: Reaction) {
        if !self.taken.was_taken(&reaction_key(&reaction, false)) {
            self.router.reaction(&ctx.http, reaction, false).await;
        }
    }

    async fn thread_create(&self, _: Context, thread: serenity::all::GuildChannel) {
        self.router.remember_channel(thread.id, thread.parent_id);
    }
}

#[cfg(test)]
mod tests {
    use super::Taken;

    #[test]
    fn each_passing_of_an_event_excuses_one_handler_call() {
        let taken = Taken::default();
        assert!(!taken.was_taken("message 1"), "nothing collected: the handler routes it");
        taken.add("message 1".into());
        taken.add("message 1".into());
        assert!(taken.was_taken("message 1"));
        assert!(taken.was_taken("message 1"));
        assert!(!taken.was_taken("message 1"), "passed twice, excused twice");
        assert!(taken.0.lock().unwrap().is_empty(), "nothing is kept once matched");
    }
}
