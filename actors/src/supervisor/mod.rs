//! The root supervisor: starts the model, retrieval, feedback and watchdog actors, spawns a
//! conversation actor per channel on first use, and restarts any child that fails, within
//! limits and with backoff. Purges and `!forgetme` are in `privacy.rs`.

mod children;
pub mod idle;
mod privacy;
mod retention;
pub use retention::Pruned;

pub use children::Started;

use crate::channel_key::ChannelKey;
use crate::conversation::{ChannelDefaults, ChannelMsg, ConversationActor, ConversationArgs, Inbound, ReplyEvent, SharedGlobal};
use crate::feedback::{FeedbackMsg, RlRules};
use crate::handle::ActorHandle;
use crate::metric_names as m;
use crate::model::ModelMsg;
use crate::ports::{Learning, ModelLoader, RetrieverLoader, Store};
use crate::restart::{RestartDecision, RestartLimits, RestartTracker};
use crate::retrieval::RetrievalMsg;
use crate::sync::RwLockExt;
use crate::timeouts;
use crate::tree::{TreeRequest, TreeStatus};
use crate::watchdog::Heartbeats;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Everything the tree needs from the outside world.
pub struct TreeArgs {
    pub store: Arc<dyn Store>,
    pub loader: Arc<dyn ModelLoader>,
    pub retriever: Arc<dyn RetrieverLoader>,
    pub defaults: Arc<ChannelDefaults>,
    /// Adapter training; `None` journals feedback but never trains.
    pub learning: Option<Arc<dyn Learning>>,
    pub rl: RlRules,
    pub heartbeats: Heartbeats,
    pub limits: RestartLimits,
    pub watchdog_tick: Duration,
    pub liveness: crate::liveness::Liveness,
    /// `storage.keep_messages_days` (`None`: messages are kept until deleted by hand).
    pub keep_messages: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Child {
    Model,
    Retrieval,
    Feedback,
    Watchdog,
    /// The Discord connection (`gateway.rs`).
    Gateway,
    Channel(ChannelKey),
}

impl Child {
    fn label(&self) -> &'static str {
        match self {
            Child::Model => "model",
            Child::Retrieval => "retrieval",
            Child::Feedback => "feedback",
            Child::Watchdog => "watchdog",
            Child::Gateway => "gateway",
            Child::Channel(_) => "conversation",
        }
    }
}

pub enum RootMsg {
    /// Deliver a message to a channel's conversation actor, starting it if needed.
    Route {
        channel: ChannelKey,
        inbound: Inbound,
    },
    Restart(Child),
    /// What a conversation may ask (through its [`crate::tree::TreeHandle`]).
    Tree(TreeRequest),
    /// For the feedback/RL actor (reactions); dropped while it restarts.
    Feedback(FeedbackMsg),
    /// A reply was delivered as these (Discord) messages: linked at once, so reactions and a
    /// `!feedback` sent as a reply find it even while the feedback actor trains or restarts.
    Delivered {
        reply_id: u64,
        message_ids: Vec<String>,
    },
    /// Save the vector index and the adapter now (before a backup); the store is synced.
    Checkpoint(RpcReplyPort<()>),
    /// Stop taking messages and let in-flight replies finish for up to the grace period.
    Drain(Duration, RpcReplyPort<()>),
    /// A purge of this channel is done: it takes messages again.
    Purged(ChannelKey),
    /// Let go of conversations idle longer than `chat.idle_minutes` (every minute), or of all
    /// that are not busy.
    LetGoIdle(idle::LetGo),
    /// Drop what retention no longer keeps (every hour; `retention.rs`).
    Prune(Option<RpcReplyPort<retention::Pruned>>),
    /// The watchdog saw the model busy and silent for `model.stall_seconds`: load it again.
    ModelStalled,
    /// The process connected to Discord: the connection becomes the gateway child, and
    /// `connector` makes a fresh one at each restart.
    Connected {
        connector: Arc<dyn crate::ports::Connector>,
        first: Box<dyn crate::ports::Connection>,
    },
    /// A child restarted off the root's loop is up, or could not start (`children.rs`).
    Started(Child, Result<Started, String>),
    /// Fault injection for supervision tests: that child's handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic(Child),
}

impl From<TreeRequest> for RootMsg {
    fn from(request: TreeRequest) -> Self {
        RootMsg::Tree(request)
    }
}

impl TryFrom<RootMsg> for TreeRequest {
    type Error = ();
    fn try_from(msg: RootMsg) -> Result<Self, ()> {
        match msg {
            RootMsg::Tree(request) => Ok(request),
            _ => Err(()),
        }
    }
}

pub struct RootSupervisor;

/// The root's notices (a channel resting, a conversation restarting) go out at most this often.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// A running conversation, with the count of messages routed to it and not yet handled.
type Conversation = (ActorRef<ChannelMsg>, Arc<AtomicUsize>);

pub struct RootState {
    args: TreeArgs,
    model: ActorHandle<ModelMsg>,
    retrieval: ActorHandle<RetrievalMsg>,
    feedback: ActorHandle<FeedbackMsg>,
    /// What the feedback actor last published (kept across its restarts).
    rl_summary: Arc<RwLock<crate::feedback::RlSummary>>,
    watchdog: Option<ActorRef<crate::watchdog::WatchdogMsg>>,
    gateway: Option<ActorRef<crate::gateway::GatewayMsg>>,
    connector: Option<Arc<dyn crate::ports::Connector>>,
    channels: HashMap<ChannelKey, Conversation>,
    /// When each open conversation last got a message.
    used: HashMap<ChannelKey, Instant>,
    global: SharedGlobal,
    children: HashMap<ActorId, Child>,
    trackers: HashMap<Child, RestartTracker>,
    disabled: HashMap<ChannelKey, Instant>,
    /// When each channel last got one of the root's own notices (at most one a minute).
    noticed: HashMap<ChannelKey, Instant>,
    /// Channels being purged: their messages wait for it to finish (they are turned away).
    purging: std::collections::HashSet<ChannelKey>,
    /// Children being started off the root's loop, and whether each start is a restart.
    starting: HashMap<Child, bool>,
    restarts: u64,
    started: Instant,
    draining: bool,
    /// A retention pass is running.
    pruning: Arc<std::sync::atomic::AtomicBool>,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = TreeArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: TreeArgs) -> Result<RootState, ActorProcessingErr> {
        let global = Arc::new(RwLock::new(args.store.global_settings()?));
        let mut state = RootState {
            global,
            args,
            model: ActorHandle::default(),
            retrieval: ActorHandle::default(),
            feedback: ActorHandle::default(),
            rl_summary: Arc::default(),
            watchdog: None,
            gateway: None,
            connector: None,
            channels: HashMap::new(),
            used: HashMap::new(),
            children: HashMap::new(),
            trackers: HashMap::new(),
            disabled: HashMap::new(),
            noticed: HashMap::new(),
            purging: Default::default(),
            starting: Default::default(),
            restarts: 0,
            started: Instant::now(),
            draining: false,
            pruning: Arc::default(),
        };
        // A model that cannot load at start is a configuration problem: fail loudly.
        state.start_model(&myself).await?;
        state.start_retrieval(&myself).await?;
        if let Err(e) = state.start_feedback(&myself).await {
            // Learning is an extra: without it the bot still answers (and journals feedback).
            tracing::error!(error = %e, "the feedback actor could not start; learning is off until the next start");
        }
        state.start_watchdog(&myself).await?;
        let every = state.args.defaults.chat.idle_after().min(Duration::from_secs(60));
        myself.send_interval(every, || RootMsg::LetGoIdle(idle::LetGo::Idle));
        let _ = myself.send_message(RootMsg::Prune(None));
        myself.send_interval(Duration::from_secs(3600), || RootMsg::Prune(None));
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        state.stop_gateway().await;
        for (channel, _) in state.channels.values() {
            channel.stop(None);
        }
        if let Some(model) = state.model.get() {
            let _ = model.stop_and_wait(None, Some(timeouts::CHILD_STOP)).await;
        }
        if let Some(retrieval) = state.retrieval.get() {
            let _ = retrieval.stop_and_wait(None, Some(timeouts::SAVING_CHILD_STOP)).await;
        }
        if let Some(feedback) = state.feedback.get() {
            let _ = feedback.stop_and_wait(None, Some(timeouts::SAVING_CHILD_STOP)).await;
        }
        if let Some(watchdog) = &state.watchdog {
            watchdog.stop(None);
        }
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<RootMsg>, msg: RootMsg, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Route { channel, inbound } => state.route(&myself, channel, inbound).await?,
            RootMsg::Restart(child) => state.restart(&myself, child).await?,
            RootMsg::Tree(TreeRequest::RestartTree) => state.restart_tree(&myself),
            RootMsg::Tree(TreeRequest::Purge { channel, requester, reply }) => state.purge(&myself, channel, requester, reply),
            RootMsg::Tree(TreeRequest::ForgetUser { user, requester, reply }) => state.forget_user(user, requester, reply),
            RootMsg::Purged(channel) => {
                state.purging.remove(&channel);
            }
            RootMsg::LetGoIdle(which) => state.let_go_of(which),
            RootMsg::Prune(reply) => state.prune(&myself, reply),
            RootMsg::Started(child, started) => state.adopt(&myself, child, started),
            RootMsg::Connected { connector, first } => state.start_gateway(&myself, connector, first).await,
            RootMsg::ModelStalled => state.reload_model(&myself, "the model stalled", true),
            RootMsg::Tree(TreeRequest::Status(reply)) => {
                let _ = reply.send(state.status().await);
            }
            RootMsg::Delivered { reply_id, message_ids } => {
                if let Err(e) = state.args.store.link_reply(reply_id, &message_ids) {
                    tracing::warn!(error = %e, "could not link a delivered reply");
                }
            }
            // A reaction while the feedback actor restarts is lost (it was never acknowledged).
            RootMsg::Feedback(msg) => {
                if let Some(feedback) = state.feedback.get() {
                    let _ = feedback.send_message(msg);
                }
            }
            RootMsg::Checkpoint(reply) => state.checkpoint(reply),
            #[cfg(feature = "fault-injection")]
            RootMsg::InjectPanic(child) => state.inject_panic(child),
            RootMsg::Drain(grace, reply) => {
                state.drain(grace).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else { return Ok(()) };
        state.forget(&child);
        let Some(failure) = failure else { return Ok(()) };
        tracing::error!(child = ?child, %failure, "actor failed");
        m::count_error("actor_failed");
        if !state.draining {
            state.on_failure(&myself, child);
        }
        Ok(())
    }
}

impl RootState {
    #[cfg(feature = "fault-injection")]
    fn inject_panic(&self, child: Child) {
        let _ = match child {
            Child::Model => self.model.get().map(|a| a.send_message(ModelMsg::InjectPanic).is_ok()),
            Child::Retrieval => self.retrieval.get().map(|a| a.send_message(RetrievalMsg::InjectPanic).is_ok()),
            Child::Feedback => self.feedback.get().map(|a| a.send_message(FeedbackMsg::InjectPanic).is_ok()),
            Child::Watchdog => self.watchdog.as_ref().map(|a| a.send_message(crate::watchdog::WatchdogMsg::InjectPanic).is_ok()),
            Child::Gateway => self.gateway.as_ref().map(|a| a.send_message(crate::gateway::GatewayMsg::InjectPanic).is_ok()),
            Child::Channel(key) => self.channels.get(&key).map(|(a, _)| a.send_message(ChannelMsg::InjectPanic).is_ok()),
        };
    }

    /// A child failed: restart it after a backoff, or give up on it as its kind allows.
    fn on_failure(&mut self, myself: &ActorRef<RootMsg>, child: Child) {
        let tracker = self.trackers.entry(child.clone()).or_default();
        match tracker.on_failure(&self.args.limits, Instant::now()) {
            RestartDecision::RestartAfter(backoff) => {
                tracing::warn!(child = ?child, ?backoff, "restarting");
                myself.send_after(backoff, move || RootMsg::Restart(child));
            }
            RestartDecision::GiveUp => match child {
                Child::Channel(id) => {
                    tracing::error!(channel = %id, "channel keeps failing; disabled for a while");
                    self.disabled.insert(id, Instant::now() + self.args.limits.window);
                }
                Child::Retrieval => {
                    tracing::error!("retrieval keeps failing; replies go on without it");
                    metrics::gauge!(m::RETRIEVAL_DEGRADED).set(1.0);
                }
                Child::Feedback => {
                    // Its journal is in the store; replies go on, learning waits for a restart.
                    tracing::error!("the feedback actor keeps failing; learning is paused until the next start");
                }
                other => {
                    // Without its model or watchdog the bot is useless: stop, and let the
                    // service manager start a fresh process.
                    let limits = &self.args.limits;
                    let why = format!(
                        "the {} actor failed {} times within {}; exiting so the service manager starts a fresh process",
                        other.label(),
                        limits.max_restarts + 1,
                        crate::human::duration(limits.window)
                    );
                    self.give_up(myself, why);
                }
            },
        }
    }

    /// The tree cannot go on: ask the process to end, and stop.
    fn give_up(&self, myself: &ActorRef<RootMsg>, why: String) {
        self.args.liveness.exit.request(crate::liveness::EXIT_FAILED, why.clone());
        myself.stop(Some(why));
    }

    fn forget(&mut self, child: &Child) {
        match child {
            Child::Model => self.model.set(None),
            Child::Retrieval => self.retrieval.set(None),
            Child::Feedback => self.feedback.set(None),
            Child::Watchdog => self.watchdog = None,
            Child::Gateway => self.gateway = None,
            Child::Channel(id) => {
                self.channels.remove(id);
                self.used.remove(id);
                self.publish_open();
            }
        }
    }

    fn count_restart(&mut self, child: &Child) {
        self.restarts += 1;
        metrics::counter!(m::ACTOR_RESTARTS, "actor" => child.label()).increment(1);
    }

    async fn status(&self) -> TreeStatus {
        let wait = timeouts::CHILD_STATUS.as_millis() as u64;
        let (model, engine) = match self.model.get() {
            Some(model) => (ractor::call_t!(model, ModelMsg::Info, wait).ok(), ractor::call_t!(model, ModelMsg::Stats, wait).ok()),
            None => (None, None),
        };
        let retrieval = match self.retrieval.get() {
            Some(r) => ractor::call_t!(r, RetrievalMsg::Stats, wait).ok(),
            None => None,
        };
        TreeStatus {
            model,
            engine,
            retrieval,
            channels: self.channels.len(),
            open: self.open_by_use(),
            uptime: self.started.elapsed(),
            restarts: self.restarts,
            adapter: self.rl_summary.read_or_recover().active.clone(),
            last_reply: self.args.heartbeats.last("reply").map(|t| t.elapsed()),
            without_message_content: self.args.liveness.gateway.without_message_content(),
        }
    }

    /// Saves the index and the adapter in a task of its own: messages keep flowing meanwhile.
    fn checkpoint(&self, reply: RpcReplyPort<()>) {
        let (retrieval, feedback, store) = (self.retrieval.get(), self.feedback.get(), self.args.store.clone());
        tokio::spawn(async move {
            if let Some(retrieval) = retrieval {
                let _ = retrieval.call(|port| RetrievalMsg::Save(Some(port)), Some(timeouts::CHECKPOINT)).await;
            }
            if let Some(feedback) = feedback {
                let _ = feedback.call(|reply| FeedbackMsg::Save { shutdown: false, reply }, Some(timeouts::CHECKPOINT)).await;
            }
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "could not sync the store");
            }
            let _ = reply.send(());
        });
    }

    /// Stops taking messages, saves what learning and retrieval hold, and lets the replies in
    /// flight finish within `grace`.
    async fn drain(&mut self, grace: Duration) {
        self.draining = true;
        // Intake stops first; the replies already in the tree then finish.
        self.stop_gateway().await;
        if let Some(feedback) = self.feedback.get() {
            let _ = feedback.call(|reply| FeedbackMsg::Save { shutdown: true, reply }, Some(timeouts::SHUTDOWN_SAVE)).await;
        }
        if let Some(retrieval) = self.retrieval.get() {
            let _ = retrieval.call(|port| RetrievalMsg::Save(Some(port)), Some(timeouts::SHUTDOWN_SAVE)).await;
        }
        if let Some(model) = self.model.get() {
            let wait = grace + Duration::from_secs(5);
            let _ = model.call(|port| ModelMsg::Drain(grace, port), Some(wait)).await;
        }
    }

    async fn channel(&mut self, myself: &ActorRef<RootMsg>, key: ChannelKey) -> Result<Conversation, ActorProcessingErr> {
        if let Some(entry) = self.channels.get(&key) {
            return Ok(entry.clone());
        }
        self.make_room();
        let pending = Arc::new(AtomicUsize::new(0));
        let args = ConversationArgs {
            channel: key,
            store: self.args.store.clone(),
            model: self.model.clone(),
            retrieval: self.retrieval.clone(),
            feedback: self.feedback.clone(),
            heartbeats: self.args.heartbeats.clone(),
            defaults: self.args.defaults.clone(),
            global: self.global.clone(),
            tree: myself.get_derived(),
            pending: pending.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, ConversationActor, args, myself.get_cell()).await?;
        self.children.insert(actor.get_id(), Child::Channel(key));
        self.channels.insert(key, (actor.clone(), pending.clone()));
        self.publish_open();
        Ok((actor, pending))
    }

    /// The root's own answer to a message it cannot deliver: only to someone who addressed the
    /// bot, and at most once a minute per channel; anyone else hears nothing.
    fn refuse(&mut self, key: ChannelKey, inbound: Inbound, why: &str) {
        let now = Instant::now();
        let recently = self.noticed.get(&key).is_some_and(|at| now.duration_since(*at) < NOTICE_EVERY);
        if inbound.addressed && !recently {
            self.noticed.insert(key, now);
            let _ = inbound.reply.send(ReplyEvent::Failed(why.to_string()));
        }
    }

    async fn route(&mut self, myself: &ActorRef<RootMsg>, key: ChannelKey, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        if self.draining {
            self.refuse(key, inbound, "I'm shutting down; back soon.");
            return Ok(());
        }
        if self.purging.contains(&key) {
            self.refuse(key, inbound, "I'm deleting what I kept from this channel; say it again in a moment.");
            return Ok(());
        }
        if let Some(until) = self.disabled.get(&key) {
            if Instant::now() < *until {
                self.refuse(key, inbound, "This channel hit repeated errors; I'm giving it a short rest.");
                return Ok(());
            }
            self.disabled.remove(&key);
        }
        self.touch(key);
        match self.channel(myself, key).await {
            Ok((actor, pending)) => {
                let mut inbound = inbound;
                inbound.queued_ahead = pending.fetch_add(1, Ordering::AcqRel);
                if let Err(ractor::MessagingErr::SendErr(ChannelMsg::Inbound(inbound))) = actor.send_message(ChannelMsg::Inbound(inbound)) {
                    pending.fetch_sub(1, Ordering::AcqRel);
                    self.refuse(key, inbound, "That conversation just restarted; please say it again.");
                }
            }
            Err(error) => {
                tracing::error!(channel = %key, %error, "could not start the conversation");
                m::count_error("channel_start");
                self.refuse(key, inbound, "I couldn't open this conversation (storage problem); check the logs.");
            }
        }
        Ok(())
    }
}
