//! A real actor tree on in-memory ports: no model, no disk, time under the test's control.

#![allow(dead_code)] // each test binary uses part of it

use ractor::{Actor, ActorRef};
use sidekick_actors::clock::ManualClock;
use sidekick_actors::commands::Access;
use sidekick_actors::feedback::RlRules;
use sidekick_actors::liveness::{Exit, ExitRequest, Liveness};
use sidekick_actors::ports::{Learning, Store};
use sidekick_actors::restart::RestartLimits;
use sidekick_actors::testing::{FakeLearning, FakeRetrieverLoader, MemoryStore, ScriptedLoader};
use sidekick_actors::watchdog::Heartbeats;
use sidekick_actors::{ChannelDefaults, ChannelKey, Inbound, ReplyEvent, RootMsg, RootSupervisor, TreeArgs};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const GUILD: u64 = 7;

pub fn channel(id: u64) -> ChannelKey {
    ChannelKey::guild(GUILD, id)
}

/// What a test can change before the tree starts.
pub struct Setup {
    pub store: Arc<MemoryStore>,
    pub loader: Arc<ScriptedLoader>,
    pub retriever: Arc<FakeRetrieverLoader>,
    pub learning: Option<Arc<FakeLearning>>,
    pub defaults: ChannelDefaults,
    pub rl: RlRules,
    pub limits: RestartLimits,
    pub clock: ManualClock,
    /// The Discord connection the watchdog watches (none: the console).
    pub liveness_gateway: Option<sidekick_actors::liveness::GatewayHealth>,
    /// `storage.keep_messages_days`.
    pub keep_messages: Option<Duration>,
}

impl Default for Setup {
    fn default() -> Self {
        let clock = ManualClock::at(1_700_000_000_000);
        let defaults = ChannelDefaults { seed: Some(7), clock: Arc::new(clock.clone()), ..Default::default() };
        Self {
            store: Arc::default(),
            loader: Arc::default(),
            retriever: Arc::new(FakeRetrieverLoader { off: true, ..Default::default() }),
            learning: None,
            defaults,
            rl: RlRules { tick: Duration::from_millis(50), ..Default::default() },
            limits: RestartLimits::default(),
            clock,
            liveness_gateway: None,
            keep_messages: None,
        }
    }
}

pub struct Tree {
    pub root: ActorRef<RootMsg>,
    pub join: tokio::task::JoinHandle<()>,
    pub store: Arc<MemoryStore>,
    pub loader: Arc<ScriptedLoader>,
    pub retriever: Arc<FakeRetrieverLoader>,
    pub learning: Option<Arc<FakeLearning>>,
    pub clock: ManualClock,
    /// The components' heartbeats the watchdog reads.
    pub heartbeats: Heartbeats,
    /// What the tree asked of the process.
    pub exit: tokio::sync::watch::Receiver<Option<ExitRequest>>,
}

impl Setup {
    pub async fn start(self) -> Tree {
        let (exit, exit_rx) = Exit::new();
        let heartbeats = Heartbeats::default();
        let args = TreeArgs {
            store: self.store.clone() as Arc<dyn Store>,
            loader: self.loader.clone(),
            retriever: self.retriever.clone(),
            defaults: Arc::new(self.defaults),
            learning: self.learning.clone().map(|l| l as Arc<dyn Learning>),
            rl: self.rl,
            heartbeats: heartbeats.clone(),
            limits: self.limits,
            watchdog_tick: Duration::from_secs(5),
            keep_messages: self.keep_messages,
            liveness: Liveness { exit, gateway: self.liveness_gateway.unwrap_or_default(), ..Liveness::default() },
        };
        let (root, join) = Actor::spawn(None, RootSupervisor, args).await.expect("the tree starts");
        Tree {
            root,
            join,
            store: self.store,
            loader: self.loader,
            retriever: self.retriever,
            learning: self.learning,
            clock: self.clock,
            heartbeats,
            exit: exit_rx,
        }
    }
}

/// Everything one message got back, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Heard {
    pub events: Vec<ReplyEvent>,
}

impl Heard {
    /// The one answer: a notice, a finished reply's text, or a failure.
    pub fn answer(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            ReplyEvent::Notice(t) | ReplyEvent::Failed(t) => Some(t.as_str()),
            ReplyEvent::Done { text, .. } => Some(text.as_str()),
            _ => None,
        })
    }

    pub fn notices(&self) -> Vec<&str> {
        self.events.iter().filter_map(|e| if let ReplyEvent::Notice(t) = e { Some(t.as_str()) } else { None }).collect()
    }

    pub fn replied(&self) -> bool {
        self.events.iter().any(|e| matches!(e, ReplyEvent::Done { .. }))
    }
}

/// A message on its way, whose answer can be collected later.
pub struct Pending(mpsc::UnboundedReceiver<ReplyEvent>);

impl Pending {
    /// Everything it gets until the channel is done with it (or `wait` passes).
    pub async fn heard(mut self, wait: Duration) -> Heard {
        let mut heard = Heard::default();
        let _ = tokio::time::timeout(wait, async {
            while let Some(event) = self.0.recv().await {
                heard.events.push(event);
            }
        })
        .await;
        heard
    }
}

pub struct Message<'a> {
    pub author: &'a str,
    /// The author's Discord id.
    pub user_id: Option<&'a str>,
    pub text: &'a str,
    pub addressed: bool,
    pub access: Access,
    /// Its Discord message id.
    pub id: Option<&'a str>,
    /// The message it answers (or whose button was pressed).
    pub reply_to: Option<&'a str>,
}

impl<'a> Message<'a> {
    pub fn addressed(text: &'a str) -> Self {
        Message { author: "ann", user_id: Some("100"), text, addressed: true, access: Access::Everyone, id: None, reply_to: None }
    }
    /// The same message with a Discord message id.
    pub fn id(self, id: &'a str) -> Self {
        Message { id: Some(id), ..self }
    }
    pub fn chatter(text: &'a str) -> Self {
        Message { addressed: false, ..Message::addressed(text) }
    }
    pub fn from_admin(text: &'a str) -> Self {
        Message { access: Access::Admin, author: "boss", user_id: Some("999"), ..Message::addressed(text) }
    }
    /// The same message from someone else.
    pub fn by(self, author: &'a str, user_id: &'a str) -> Self {
        Message { author, user_id: Some(user_id), ..self }
    }
}

impl Tree {
    /// Routes `message` to `channel` as the gateway would.
    pub fn send(&self, channel: ChannelKey, message: Message<'_>) -> Pending {
        let (reply, events) = mpsc::unbounded_channel();
        let inbound = Inbound {
            author: message.author.into(),
            user_id: message.user_id.map(String::from),
            text: message.text.into(),
            message_id: message.id.map(String::from),
            addressed: message.addressed,
            access: message.access,
            guild: channel.guild_id().map(|g| g.to_string()),
            reply_to: message.reply_to.map(String::from),
            queued_ahead: 0,
            command: None,
            reply,
        };
        self.root.send_message(RootMsg::Route { channel, inbound }).expect("the tree is running");
        Pending(events)
    }

    /// Sends and waits for everything the message gets.
    pub async fn say(&self, channel: ChannelKey, message: Message<'_>) -> Heard {
        self.send(channel, message).heard(Duration::from_secs(600)).await
    }

    pub async fn status(&self) -> sidekick_actors::TreeStatus {
        sidekick_actors::tree::status(&self.root.get_derived(), Duration::from_secs(5)).await.expect("status")
    }

    /// Waits until the tree has counted `n` restarts (a restart counts once the child is up).
    pub async fn until_restarts(&self, n: u64) {
        for _ in 0..60_000 {
            if self.status().await.restarts >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("never counted {n} restarts");
    }

    /// Waits (in the test's time) until `done` holds, checking every millisecond.
    pub async fn until(&self, what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..600_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("never happened: {what}");
    }
}
