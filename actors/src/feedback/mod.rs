//! The feedback/RL actor: turns reactions into journaled feedback, keeps the reward figures,
//! and trains a LoRA adapter on rewarded replies on its own thread while the model is idle.
//! Every so many steps it saves the adapter and asks the model actor to serve it. What is
//! served and kept follows the pure rules of [`manifest`].

mod adapters;
mod crash;
pub mod fairness;
pub mod manifest;
pub mod pairs;
mod reactions;
mod training;

use crate::channel_key::ChannelKey;
use crate::clock::Clock;
use crate::commands::AdapterCommand;
use crate::handle::ActorHandle;
use crate::metric_names as m;
use crate::model::ModelMsg;
use crate::ports::{
    AdapterManifest, AdapterVersion, FeedbackEvent, FeedbackJournal, FeedbackSource, LearnError, Learning, ReplyJournal, TrainReport,
    TrainSample,
};
use crate::reward::{RewardLedger, RewardRules};
use crate::sync::RwLockExt;
use crate::watchdog::Heartbeats;
use fairness::{ShareCap, VoteKey, Votes};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use training::{spawn_trainer, TrainJob};

/// How learning runs.
#[derive(Debug, Clone)]
pub struct RlRules {
    pub rewards: RewardRules,
    /// Train at all (journaling and rewards happen either way).
    pub train: bool,
    /// Save (and serve) the adapter every this many training steps, and at shutdown.
    pub save_every: u64,
    /// Rewarded replies per training step.
    pub batch: usize,
    /// Saved adapters kept on disk (older ones are deleted).
    pub keep_versions: usize,
    /// How often the actor looks for work.
    pub tick: Duration,
    /// Journaled replies older than this are dropped (feedback on them is rare and they
    /// hold whole prompts).
    pub keep_replies: Duration,
    /// No user supplies more than the larger of this and 1/n of what is trained in any window
    /// of 100 (see `fairness.rs`).
    pub max_user_share: f64,
}

impl Default for RlRules {
    fn default() -> Self {
        Self {
            rewards: RewardRules::default(),
            train: true,
            save_every: 100,
            batch: 1,
            keep_versions: 5,
            tick: Duration::from_millis(500),
            keep_replies: Duration::from_secs(30 * 86_400),
            max_user_share: 0.12,
        }
    }
}

pub struct FeedbackArgs {
    /// Who opted out (their reactions are not kept).
    pub global: crate::conversation::SharedGlobal,
    pub journal: Arc<dyn FeedbackJournal>,
    pub replies: Arc<dyn ReplyJournal>,
    /// Reactions on people's messages are counted in the server's history.
    pub history: Arc<dyn crate::ports::HistoryLog>,
    pub learning: Option<Arc<dyn Learning>>,
    pub model: ActorHandle<ModelMsg>,
    pub heartbeats: Heartbeats,
    pub rules: RlRules,
    pub clock: Arc<dyn Clock>,
    /// The latest summary, for readers that must not wait behind a training step or a swap.
    pub published: Arc<std::sync::RwLock<RlSummary>>,
}

/// What `!rl_metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RlSummary {
    pub steps: u64,
    pub commands: u64,
    pub reactions: u64,
    pub reactions_removed: u64,
    pub mean_last_100: Option<f32>,
    pub mean_all: Option<f32>,
    pub last_loss: Option<f32>,
    pub last_save_ms: Option<u64>,
    pub active: Option<AdapterVersion>,
    pub queued: usize,
    /// Why training is not running, when it is not.
    pub idle_reason: Option<String>,
    /// Why the newest saved version is not served, when the gate refused it.
    pub refused: Option<String>,
    /// Replies not trained on because a step on them ended the process (`crash.rs`).
    pub skipped_after_crash: usize,
}

pub enum FeedbackMsg {
    /// A conversation journaled this event (`!feedback`): learn from it.
    Journaled {
        seq: u64,
        event: FeedbackEvent,
    },
    /// A reaction was added or removed on a message; journaled here if it is on our reply.
    Reaction(Reaction),
    /// A 👍 or 👎 button under a reply (`reactions.rs`).
    Vote(Vote),
    Adapter(AdapterCommand, RpcReplyPort<String>),
    Summary(RpcReplyPort<RlSummary>),
    Tick,
    /// Drop journaled replies past `RlRules::keep_replies` (hourly).
    PruneReplies,
    /// A step's result, from the trainer of that generation (a rollback starts a new one).
    Trained(Result<TrainReport, LearnError>, u64),
    /// Training samples to forget: a purged channel's, or a forgotten user's.
    Drop(Dropped),
    SwapFailed(Option<u64>, String),
    /// The gate's verdict on a saved version: served if it passed.
    Gated(u64, Result<(), String>),
    /// A new personality adapter passed its gate (`sidekick train`): serve it, and start a
    /// fresh feedback adapter on top of it. Answered once the model serves it.
    NewPersonality(Option<crate::ports::Personality>, RpcReplyPort<Result<(), String>>),
    /// Save the adapter now if it learned anything since the last save: at shutdown (served
    /// from the next start) or for a backup (served now).
    Save {
        shutdown: bool,
        reply: RpcReplyPort<()>,
    },
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

/// What a purge or `!forgetme` takes out of learning.
#[derive(Debug, Clone, PartialEq)]
pub enum Dropped {
    Channel(ChannelKey),
    User { user: String, replies: Vec<u64> },
}

/// A vote waiting to be trained on: the change it still asks for, on the reply it is about.
struct Queued {
    seq: u64,
    key: VoteKey,
    channel: ChannelKey,
    sample: TrainSample,
}

/// A reaction on a Discord message, as the gateway saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub channel: crate::channel_key::ChannelKey,
    pub message_id: String,
    pub emoji: String,
    pub user: String,
    pub added: bool,
}

/// A click on 👍 (`up`) or 👎 under the reply sent as `message_id`.
#[derive(Debug, Clone)]
pub struct Vote {
    pub channel: crate::channel_key::ChannelKey,
    pub message_id: String,
    pub user: String,
    pub up: bool,
}

pub struct FeedbackActor;

pub struct FeedbackState {
    args: FeedbackArgs,
    ledger: RewardLedger,
    manifest: AdapterManifest,
    /// Every standing vote, and what training took of each.
    votes: Votes,
    cap: ShareCap,
    /// Votes waiting to be trained on, at most one per user per reply, oldest first.
    queue: VecDeque<Queued>,
    trainer: Option<std::sync::mpsc::Sender<TrainJob>>,
    training: bool,
    /// The step on the training thread now. A save queued behind it includes it.
    in_flight: Vec<Queued>,
    /// The newest journal entry trained on: a saved adapter records it, and the next start
    /// learns what came after (a vote the share cap still held back when the adapter was saved
    /// counts as done, so no vote is learned twice).
    trained_max: Option<u64>,
    /// Bumped when training restarts from another version; results of older trainers are
    /// ignored.
    generation: u64,
    steps: u64,
    steps_at_save: u64,
    rewards_seen: u64,
    baseline: f32,
    last_loss: Option<f32>,
    broken: Option<String>,
    /// Why the newest saved version is not served, when the gate refused it.
    refused: Option<String>,
    /// The last swap asked of the model: a new personality waits for it, so an adapter
    /// trained on the old voice cannot be served over the new one.
    swapping: Option<tokio::task::JoinHandle<()>>,
    /// Replies whose training step ended the process once (`crash.rs`).
    crashed: std::collections::HashSet<u64>,
}

/// The most votes kept waiting; then the loudest user's oldest goes first (`fairness.rs`).
const MAX_QUEUE: usize = 1000;

impl Actor for FeedbackActor {
    type Msg = FeedbackMsg;
    type State = FeedbackState;
    type Arguments = FeedbackArgs;

    async fn pre_start(&self, myself: ActorRef<FeedbackMsg>, args: FeedbackArgs) -> Result<FeedbackState, ActorProcessingErr> {
        let mut state = FeedbackState {
            ledger: RewardLedger::default(),
            manifest: AdapterManifest::default(),
            votes: Votes::default(),
            cap: ShareCap::new(args.rules.max_user_share),
            queue: VecDeque::new(),
            trainer: None,
            training: false,
            in_flight: Vec::new(),
            trained_max: None,
            generation: 0,
            steps: 0,
            steps_at_save: 0,
            rewards_seen: 0,
            baseline: 0.0,
            last_loss: None,
            broken: None,
            refused: None,
            swapping: None,
            crashed: Default::default(),
            args,
        };
        let mut trained_through = None;
        state.load_training_marks();
        if let Some(learning) = state.args.learning.clone() {
            let saved = learning.read_manifest().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "adapter manifest unreadable; starting from the base model");
                None
            });
            let (manifest, reset) = saved.unwrap_or_default().for_model(&learning.base_model_sha256().unwrap_or_default());
            if reset {
                // Adapters fit only the model they were trained on.
                tracing::warn!("the saved adapters were trained for another model file; learning starts afresh");
            }
            state.manifest = manifest;
            trained_through = state.restart_trainer_from(state.manifest.train_from);
        }
        // Feedback that arrived after the last saved adapter is learned again.
        state.replay(trained_through, true)?;
        state.publish();
        myself.send_interval(state.args.rules.tick, || FeedbackMsg::Tick);
        let _ = myself.send_message(FeedbackMsg::PruneReplies);
        myself.send_interval(Duration::from_secs(3600), || FeedbackMsg::PruneReplies);
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<FeedbackMsg>, state: &mut FeedbackState) -> Result<(), ActorProcessingErr> {
        state.save_if_changed().await;
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<FeedbackMsg>, msg: FeedbackMsg, state: &mut FeedbackState) -> Result<(), ActorProcessingErr> {
        match msg {
            FeedbackMsg::Journaled { seq, event } => state.learn_from(seq, &event),
            FeedbackMsg::Reaction(reaction) => state.reaction(reaction)?,
            FeedbackMsg::Vote(vote) => state.vote(vote)?,
            FeedbackMsg::Adapter(command, reply) => {
                let answer = state.adapter_command(command).await;
                let _ = reply.send(answer);
            }
            FeedbackMsg::Summary(reply) => {
                let _ = reply.send(state.summary());
            }
            FeedbackMsg::Tick => state.maybe_train(&myself),
            FeedbackMsg::PruneReplies => state.prune_replies(),
            FeedbackMsg::Trained(result, generation) => {
                state.training = false;
                state.unmark_step();
                if generation == state.generation {
                    state.on_trained(result, &myself).await;
                }
            }
            FeedbackMsg::Drop(dropped) => state.drop_samples(dropped)?,
            FeedbackMsg::Gated(version, verdict) => state.gated(version, verdict, &myself),
            FeedbackMsg::NewPersonality(personality, reply) => {
                let answer = state.new_personality(personality, &myself).await;
                let _ = reply.send(answer);
            }
            FeedbackMsg::SwapFailed(version, why) => {
                tracing::error!(?version, %why, "the model could not load the adapter; serving the previous one");
                m::count_error("adapter_swap");
                if state.manifest.swap_failed(version) {
                    state.write_manifest();
                }
                state.publish();
            }
            FeedbackMsg::Save { shutdown: true, reply } => {
                state.save_if_changed().await;
                let _ = reply.send(());
            }
            FeedbackMsg::Save { shutdown: false, reply } => {
                if state.steps > state.steps_at_save {
                    state.save_and_publish(&myself).await;
                }
                let _ = reply.send(());
            }
            #[cfg(feature = "fault-injection")]
            FeedbackMsg::InjectPanic => panic!("injected panic in the feedback actor"),
        }
        Ok(())
    }
}

impl FeedbackState {
    fn now_ms(&self) -> u64 {
        self.args.clock.now_ms()
    }

    /// A new journal entry: count it, and queue what it changed for training.
    fn learn_from(&mut self, seq: u64, event: &FeedbackEvent) {
        self.ledger.record(event);
        metrics::counter!(m::FEEDBACK_EVENTS, "source" => event.source.label()).increment(1);
        self.consider(seq, event);
        self.publish();
    }

    /// Applies an event to its voter's standing vote; what is left to train of the vote
    /// (replacing what was waiting for it) goes in the queue.
    fn consider(&mut self, seq: u64, event: &FeedbackEvent) {
        let Some((key, left)) = self.votes.record(event) else { return };
        self.queue.retain(|q| q.key != key);
        // A sample of this vote on the training thread now is already on its way.
        let left = left - self.in_flight.iter().filter(|q| q.key == key).map(|q| q.sample.reward).sum::<f32>();
        if left.abs() < 1e-6 || self.args.learning.is_none() || !self.args.rules.train {
            return;
        }
        if self.crashed_on(key.0) {
            return tracing::debug!(reply = key.0, "not trained on: a step on it ended the process");
        }
        let reply = match self.args.replies.reply(key.0) {
            Ok(Some(reply)) if !reply.reply_tokens.is_empty() => reply,
            Ok(_) => return tracing::debug!(reply = key.0, "feedback on a reply with nothing to train on"),
            Err(e) => return tracing::warn!(reply = key.0, error = %e, "reply journal unreadable"),
        };
        if self.queue.len() >= MAX_QUEUE {
            let voters: Vec<&str> = self.queue.iter().map(|q| q.key.1.as_str()).collect();
            let gone = self.cap.evict(&voters, &key.1);
            self.queue.remove(gone);
        }
        let sample = TrainSample { prompt: reply.prompt_tokens, reply: reply.reply_tokens, reward: left };
        self.queue.push_back(Queued { seq, key, channel: reply.channel, sample });
    }

    /// Rebuilds the figures, the votes and (with `queue`) the training queue from the journal:
    /// entries up to `trained_through` count as trained, later ones wait to be.
    fn replay(&mut self, trained_through: Option<u64>, queue: bool) -> Result<(), ActorProcessingErr> {
        self.ledger = RewardLedger::default();
        self.votes = Votes::default();
        if queue {
            self.queue.clear();
        }
        for (seq, event) in self.args.journal.feedback_since(0)? {
            self.ledger.record(&event);
            if Some(seq) <= trained_through {
                if let Some((key, left)) = self.votes.record(&event) {
                    self.votes.trained(&key, left);
                }
            } else if queue {
                self.consider(seq, &event);
            } else {
                self.votes.record(&event);
            }
        }
        Ok(())
    }

    /// The newest journal entry trained on, counting the step on the training thread now (a
    /// save runs after it): what a saved adapter records.
    fn watermark(&self) -> Option<u64> {
        self.trained_max.max(self.in_flight.iter().map(|q| q.seq).max())
    }

    /// A purge or `!forgetme`: their samples leave the queue, and the figures are rebuilt
    /// from what is left of the journal.
    fn drop_samples(&mut self, dropped: Dropped) -> Result<(), ActorProcessingErr> {
        let through = self.trained_max;
        match &dropped {
            Dropped::Channel(channel) => self.queue.retain(|q| q.channel != *channel),
            Dropped::User { user, replies } => self.queue.retain(|q| q.key.1 != *user && !replies.contains(&q.key.0)),
        }
        self.replay(through, false)?;
        self.publish();
        Ok(())
    }

    fn prune_replies(&self) {
        let before = self.now_ms().saturating_sub(self.args.rules.keep_replies.as_millis() as u64);
        match self.args.replies.prune_replies(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(replies = n, "dropped old journaled replies"),
            Err(e) => tracing::warn!(error = %e, "could not prune the reply journal"),
        }
        // Feedback on a dropped reply can never be trained on: it goes too, so a start reads
        // the journal of `rl.keep_replies_days`, not of every day the bot ran.
        match self.args.journal.prune_feedback(before) {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(m::PRUNED, "what" => "feedback").increment(n as u64);
                tracing::info!(feedback = n, "dropped feedback on dropped replies");
            }
            Err(e) => tracing::warn!(error = %e, "could not prune the feedback journal"),
        }
    }

    /// Starts a step on the training thread when there is work the share cap allows and the
    /// model is idle.
    fn maybe_train(&mut self, myself: &ActorRef<FeedbackMsg>) {
        if self.training || self.queue.is_empty() || self.broken.is_some() || self.args.heartbeats.is_busy("model") {
            return;
        }
        let Some(learning) = self.args.learning.clone() else { return };
        let mut cap = self.cap.clone();
        let mut batch = Vec::new();
        while batch.len() < self.args.rules.batch.max(1) {
            let Some(next) = cap.next(self.queue.iter().map(|q| q.key.1.as_str())) else { break };
            let queued = self.queue.remove(next).expect("an index of the queue");
            cap.record(&queued.key.1);
            batch.push(queued);
        }
        if batch.is_empty() {
            return; // what waits is over its voters' share until others give feedback
        }
        if self.trainer.is_none() {
            self.trainer = Some(spawn_trainer(learning, self.manifest.resume_point().cloned(), myself.clone(), self.generation));
        }
        if let Err(e) = self.mark_step(&batch) {
            tracing::warn!(error = %e, "could not mark the training step; it waits");
            for queued in batch.into_iter().rev() {
                self.queue.push_front(queued);
            }
            return;
        }
        let samples: Vec<TrainSample> = batch.iter().map(|q| q.sample.clone()).collect();
        self.training = self.trainer.as_ref().is_some_and(|t| t.send(TrainJob::Step(samples)).is_ok());
        if !self.training {
            // The thread is gone: keep the work and say why learning stopped.
            for queued in batch.into_iter().rev() {
                self.queue.push_front(queued);
            }
            self.trainer = None;
            self.broken = Some("the training thread stopped (see the log)".into());
            m::count_error("training");
            return;
        }
        self.in_flight = batch;
    }

    async fn on_trained(&mut self, result: Result<TrainReport, LearnError>, myself: &ActorRef<FeedbackMsg>) {
        let batch = std::mem::take(&mut self.in_flight);
        let report = match result {
            Ok(report) => report,
            Err(LearnError::Load(why)) => {
                // A trainer that cannot start will not start on the next tick either.
                tracing::error!(%why, "training is off");
                m::count_error("training");
                self.broken = Some(why);
                self.trainer = None;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a training step failed; its feedback is skipped");
                m::count_error("training");
                // A vote that changed during the step was queued for the rest only.
                for queued in batch {
                    self.requeue_changed(queued);
                }
                return;
            }
        };
        for queued in &batch {
            self.votes.trained(&queued.key, queued.sample.reward);
            self.cap.record(&queued.key.1);
            self.trained_max = self.trained_max.max(Some(queued.seq));
        }
        self.steps += 1;
        self.rewards_seen += report.samples as u64;
        metrics::counter!(m::TRAINING_STEPS).increment(1);
        self.baseline = report.baseline;
        self.last_loss = Some(report.loss);
        metrics::histogram!(m::TRAIN_STEP_SECONDS).record(report.seconds);
        tracing::debug!(step = self.steps, loss = report.loss, seconds = report.seconds, "trained");
        if self.steps.saturating_sub(self.steps_at_save) >= self.args.rules.save_every.max(1) {
            self.save_and_publish(myself).await;
        }
        self.publish();
    }

    /// A failed step's vote that changed meanwhile: its queued sample asked only for the change
    /// beyond what the failed step would have trained; it now asks for all that is left.
    fn requeue_changed(&mut self, failed: Queued) {
        let Some(at) = self.queue.iter().position(|q| q.key == failed.key) else { return };
        let left = self.votes.left(&failed.key);
        match left.abs() < 1e-6 {
            true => drop(self.queue.remove(at)),
            false => self.queue[at].sample.reward = left,
        }
    }

    /// Training continues from `version` (`None`: a fresh adapter) with its figures; returns
    /// the last journal entry that version learned from.
    fn restart_trainer_from(&mut self, version: Option<u64>) -> Option<u64> {
        self.trainer = None; // the thread ends after its current job, whose result is ignored
        self.generation += 1;
        self.in_flight.clear();
        self.broken = None;
        let point = version.and_then(|v| self.manifest.version(v)).cloned();
        let trained_through;
        (self.steps, self.rewards_seen, trained_through, self.baseline) = match &point {
            Some(v) => (v.step, v.rewards_seen, v.trained_through, v.baseline),
            None => (0, 0, None, 0.0),
        };
        self.steps_at_save = self.steps;
        self.trained_max = trained_through;
        trained_through
    }

    fn summary(&self) -> RlSummary {
        RlSummary {
            steps: self.steps,
            commands: self.ledger.count(FeedbackSource::Command),
            reactions: self.ledger.count(FeedbackSource::Reaction),
            reactions_removed: self.ledger.count(FeedbackSource::ReactionRemoved),
            mean_last_100: self.ledger.mean(Some(100)),
            mean_all: self.ledger.mean(None),
            last_loss: self.last_loss,
            last_save_ms: self.manifest.latest().map(|v| v.saved_at_ms),
            active: self.manifest.served().cloned(),
            queued: self.queue.len(),
            refused: self.refused.clone(),
            skipped_after_crash: self.crashed.len(),
            idle_reason: match (&self.args.learning, &self.broken) {
                (None, _) => Some("learning is off (rl.enabled = false)".into()),
                (_, Some(why)) => Some(why.clone()),
                _ if !self.args.rules.train => Some("training is off".into()),
                _ => None,
            },
        }
    }

    fn publish(&self) {
        let s = self.summary();
        *self.args.published.write_or_recover() = s.clone();
        metrics::gauge!(m::REWARD_MEAN, "window" => "last_100").set(s.mean_last_100.unwrap_or(0.0) as f64);
        metrics::gauge!(m::REWARD_MEAN, "window" => "all").set(s.mean_all.unwrap_or(0.0) as f64);
        metrics::gauge!(m::LAST_LOSS).set(s.last_loss.unwrap_or(0.0) as f64);
        metrics::gauge!(m::ADAPTER_VERSION).set(s.active.map_or(0.0, |v| v.version as f64));
    }
}
