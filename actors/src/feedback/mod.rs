//! The feedback/RL actor: turns reactions into journaled feedback, keeps the reward figures,
//! and trains a LoRA adapter on rewarded replies on its own thread while the model is idle.
//! Every so many steps it saves the adapter and asks the model actor to serve it. What is
//! served and kept follows the pure rules of [`manifest`].

pub mod manifest;
mod training;

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
use manifest::Change;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use training::{spawn_trainer, swap, TrainJob};

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
        }
    }
}

pub struct FeedbackArgs {
    pub journal: Arc<dyn FeedbackJournal>,
    pub replies: Arc<dyn ReplyJournal>,
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
}

pub enum FeedbackMsg {
    /// A conversation journaled this event (`!feedback`): learn from it.
    Journaled {
        seq: u64,
        event: FeedbackEvent,
    },
    /// A reaction was added or removed on a message; journaled here if it is on our reply.
    Reaction(Reaction),
    Adapter(AdapterCommand, RpcReplyPort<String>),
    Summary(RpcReplyPort<RlSummary>),
    Tick,
    /// Drop journaled replies past `RlRules::keep_replies` (hourly).
    PruneReplies,
    Trained(Result<TrainReport, LearnError>, Option<u64>),
    SwapFailed(Option<u64>, String),
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

/// A reaction on a Discord message, as the gateway saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub channel: crate::channel_key::ChannelKey,
    pub message_id: String,
    pub emoji: String,
    pub user: String,
    pub added: bool,
}

pub struct FeedbackActor;

pub struct FeedbackState {
    args: FeedbackArgs,
    ledger: RewardLedger,
    manifest: AdapterManifest,
    /// Rewarded replies waiting to be trained on, with their journal sequence numbers.
    queue: VecDeque<(u64, TrainSample)>,
    trainer: Option<std::sync::mpsc::Sender<TrainJob>>,
    training: bool,
    /// The step on the training thread now: its last journal entry and sample count. A save
    /// queued behind it includes it.
    in_flight: (Option<u64>, u64),
    steps: u64,
    steps_at_save: u64,
    rewards_seen: u64,
    trained_through: Option<u64>,
    baseline: f32,
    last_loss: Option<f32>,
    broken: Option<String>,
}

/// The most rewarded replies kept waiting; older ones are dropped first.
const MAX_QUEUE: usize = 1000;

impl Actor for FeedbackActor {
    type Msg = FeedbackMsg;
    type State = FeedbackState;
    type Arguments = FeedbackArgs;

    async fn pre_start(&self, myself: ActorRef<FeedbackMsg>, args: FeedbackArgs) -> Result<FeedbackState, ActorProcessingErr> {
        let mut state = FeedbackState {
            ledger: RewardLedger::default(),
            manifest: AdapterManifest::default(),
            queue: VecDeque::new(),
            trainer: None,
            training: false,
            in_flight: (None, 0),
            steps: 0,
            steps_at_save: 0,
            rewards_seen: 0,
            trained_through: None,
            baseline: 0.0,
            last_loss: None,
            broken: None,
            args,
        };
        let events = state.args.journal.feedback_since(0)?;
        for (_, event) in &events {
            state.ledger.record(event);
        }
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
            state.restart_trainer_from(state.manifest.train_from);
            // Feedback that arrived after the last saved adapter is learned again.
            let from = state.trained_through.map_or(0, |s| s + 1);
            for (seq, event) in events.into_iter().filter(|(seq, _)| *seq >= from) {
                state.enqueue(seq, &event);
            }
        }
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
            FeedbackMsg::Adapter(command, reply) => {
                let answer = state.adapter_command(command).await;
                let _ = reply.send(answer);
            }
            FeedbackMsg::Summary(reply) => {
                let _ = reply.send(state.summary());
            }
            FeedbackMsg::Tick => state.maybe_train(&myself),
            FeedbackMsg::PruneReplies => state.prune_replies(),
            FeedbackMsg::Trained(result, through) => {
                state.training = false;
                state.on_trained(result, through, &myself).await;
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

    /// A new journal entry: count it, and queue its reply for training.
    fn learn_from(&mut self, seq: u64, event: &FeedbackEvent) {
        self.ledger.record(event);
        metrics::counter!(m::FEEDBACK_EVENTS, "source" => event.source.label()).increment(1);
        self.enqueue(seq, event);
        self.publish();
    }

    fn enqueue(&mut self, seq: u64, event: &FeedbackEvent) {
        if self.args.learning.is_none() || !self.args.rules.train || event.reward == 0.0 {
            return;
        }
        let Some(id) = event.reply_id else { return };
        match self.args.replies.reply(id) {
            Ok(Some(reply)) if !reply.reply_tokens.is_empty() => {
                if self.queue.len() == MAX_QUEUE {
                    self.queue.pop_front();
                }
                self.queue.push_back((seq, TrainSample { prompt: reply.prompt_tokens, reply: reply.reply_tokens, reward: event.reward }));
            }
            Ok(_) => tracing::debug!(reply = id, "feedback on a reply with nothing to train on"),
            Err(e) => tracing::warn!(reply = id, error = %e, "reply journal unreadable"),
        }
    }

    /// Journals a reaction on one of our replies (others, and emoji that carry nothing, are
    /// ignored).
    fn reaction(&mut self, r: Reaction) -> Result<(), ActorProcessingErr> {
        let Some(reply_id) = self.args.replies.reply_for_message(&r.message_id)? else { return Ok(()) };
        let reward = if r.added {
            match self.args.rules.rewards.reaction(&r.emoji) {
                Some(reward) => reward,
                None => return Ok(()),
            }
        } else {
            // Undo exactly what the reaction gave; a reaction we never saw undoes nothing.
            match self.ledger.live_reaction(&r.message_id, &r.user, &r.emoji) {
                Some(reward) => -reward,
                None => return Ok(()),
            }
        };
        let event = FeedbackEvent {
            channel: r.channel,
            reply_seq: None,
            reply_id: Some(reply_id),
            reply_message_id: Some(r.message_id),
            source: if r.added { FeedbackSource::Reaction } else { FeedbackSource::ReactionRemoved },
            rating: None,
            emoji: Some(r.emoji),
            comment: String::new(),
            user: r.user,
            at_ms: self.now_ms(),
            reward,
        };
        let seq = self.args.journal.append_feedback(&event)?;
        self.learn_from(seq, &event);
        Ok(())
    }

    fn prune_replies(&self) {
        let before = self.now_ms().saturating_sub(self.args.rules.keep_replies.as_millis() as u64);
        match self.args.replies.prune_replies(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(replies = n, "dropped old journaled replies"),
            Err(e) => tracing::warn!(error = %e, "could not prune the reply journal"),
        }
    }

    /// Starts a step on the training thread when there is work and the model is idle.
    fn maybe_train(&mut self, myself: &ActorRef<FeedbackMsg>) {
        if self.training || self.queue.is_empty() || self.broken.is_some() || self.args.heartbeats.is_busy("model") {
            return;
        }
        let Some(learning) = self.args.learning.clone() else { return };
        if self.trainer.is_none() {
            self.trainer = Some(spawn_trainer(learning, self.manifest.resume_point().cloned(), myself.clone()));
        }
        let take = self.args.rules.batch.max(1).min(self.queue.len());
        let (seqs, batch): (Vec<u64>, Vec<TrainSample>) = self.queue.drain(..take).unzip();
        let through = seqs.into_iter().max();
        if let Some(trainer) = &self.trainer {
            self.training = trainer.send(TrainJob::Step(batch.clone(), through)).is_ok();
            self.in_flight = (through, batch.len() as u64);
        }
        if !self.training {
            // The thread is gone: keep the work and say why learning stopped.
            for sample in batch.into_iter().rev() {
                self.queue.push_front((through.unwrap_or(0), sample));
            }
            self.trainer = None;
            self.broken = Some("the training thread stopped (see the log)".into());
            m::count_error("training");
        }
    }

    async fn on_trained(&mut self, result: Result<TrainReport, LearnError>, through: Option<u64>, myself: &ActorRef<FeedbackMsg>) {
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
                return;
            }
        };
        self.steps += 1;
        self.rewards_seen += report.samples as u64;
        metrics::counter!(m::TRAINING_STEPS).increment(1);
        self.trained_through = through.max(self.trained_through);
        self.baseline = report.baseline;
        self.last_loss = Some(report.loss);
        metrics::histogram!(m::TRAIN_STEP_SECONDS).record(report.seconds);
        tracing::debug!(step = self.steps, loss = report.loss, seconds = report.seconds, "trained");
        if self.steps.saturating_sub(self.steps_at_save) >= self.args.rules.save_every.max(1) {
            self.save_and_publish(myself).await;
        }
        self.publish();
    }

    /// Saves a new version and serves it at once, unless an admin turned serving off.
    async fn save_and_publish(&mut self, myself: &ActorRef<FeedbackMsg>) {
        if let Some(version) = self.save().await {
            if self.manifest.follows_training() {
                self.activate(Some(version), myself);
            }
        }
    }

    /// At shutdown: what was learned since the last save is saved, and served at the next
    /// start when serving follows training.
    async fn save_if_changed(&mut self) {
        if self.steps > self.steps_at_save {
            if let Some(version) = self.save().await {
                if self.manifest.follows_training() {
                    self.manifest.serve(Some(version));
                    self.write_manifest();
                }
            }
        }
    }

    /// Saves the adapter as a new version; returns its number.
    async fn save(&mut self) -> Option<u64> {
        let learning = self.args.learning.clone()?;
        let trainer = self.trainer.as_ref()?;
        let version = self.manifest.next_number();
        let file = format!("adapter-v{version}.gguf");
        let (done, saved) = oneshot::channel();
        trainer.send(TrainJob::Save(learning.adapters_dir().join(&file), done)).ok()?;
        match saved.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not save the adapter");
                m::count_error("adapter_save");
                return None;
            }
            Err(_) => return None,
        }
        let now = self.now_ms();
        // The save ran after any step already on the training thread, so the file holds it.
        let (step, rewards_seen, trained_through) = match self.training {
            true => (self.steps + 1, self.rewards_seen + self.in_flight.1, self.in_flight.0.max(self.trained_through)),
            false => (self.steps, self.rewards_seen, self.trained_through),
        };
        let saved = AdapterVersion { version, file, step, rewards_seen, trained_through, baseline: self.baseline, saved_at_ms: now };
        for old in self.manifest.record_save(saved, self.args.rules.keep_versions) {
            if let Err(e) = learning.remove_adapter(&old) {
                tracing::warn!(file = %old, error = %e, "could not delete an old adapter");
            }
        }
        self.write_manifest();
        self.steps_at_save = step;
        metrics::gauge!(m::LAST_ADAPTER_SAVE).set(now as f64 / 1000.0);
        tracing::info!(version, step = self.steps, "adapter saved");
        Some(version)
    }

    fn write_manifest(&self) {
        if let Some(learning) = &self.args.learning {
            if let Err(e) = learning.write_manifest(&self.manifest) {
                tracing::error!(error = %e, "could not write the adapter manifest");
                m::count_error("adapter_save");
            }
        }
    }

    fn path_of(&self, version: Option<u64>) -> Option<PathBuf> {
        let dir = self.args.learning.as_ref()?.adapters_dir();
        Some(dir.join(&self.manifest.version(version?)?.file))
    }

    /// Serves `version` (`None`: the base model) from now on, without waiting for the swap.
    fn activate(&mut self, version: Option<u64>, myself: &ActorRef<FeedbackMsg>) {
        self.manifest.serve(version);
        self.write_manifest();
        let myself = myself.clone();
        let Some(model) = self.args.model.get() else {
            let _ = myself.send_message(FeedbackMsg::SwapFailed(version, "the model is restarting".into()));
            return;
        };
        let path = self.path_of(version);
        tokio::spawn(async move {
            if let Err(why) = swap(model, path).await {
                let _ = myself.send_message(FeedbackMsg::SwapFailed(version, why));
            }
        });
        self.publish();
    }

    /// Makes an admin's change: the model serves it first, then the manifest records it.
    async fn apply(&mut self, change: Change) -> Result<(), String> {
        let Some(model) = self.args.model.get() else { return Err("the model is restarting".into()) };
        let path = change.serve.and_then(|v| Some(self.args.learning.as_ref()?.adapters_dir().join(&change.next.version(v)?.file)));
        swap(model, path).await?;
        self.manifest = change.next;
        self.write_manifest();
        self.publish();
        Ok(())
    }

    async fn adapter_command(&mut self, command: AdapterCommand) -> String {
        if self.args.learning.is_none() {
            return "Learning is off in this bot's configuration (rl.enabled = false).".into();
        }
        let was = self.manifest.active;
        let change = match command {
            AdapterCommand::Show => return self.show_adapter(),
            AdapterCommand::Rollback => self.manifest.rollback(),
            AdapterCommand::Off => self.manifest.off(),
            AdapterCommand::On => {
                self.broken = None; // an admin asking is a good moment to try the trainer again
                self.manifest.on()
            }
        };
        let change = match change {
            Ok(change) => change,
            Err(refusal) => return refusal.to_string(),
        };
        let target = change.serve;
        if let Err(why) = self.apply(change).await {
            return match command {
                AdapterCommand::Rollback => format!("Could not roll back: {why}."),
                AdapterCommand::Off => format!("Could not turn the adapter off: {why}."),
                _ => format!("Could not load adapter v{}: {why}.", target.unwrap_or_default()),
            };
        }
        if command == AdapterCommand::Rollback {
            // Training goes on from what is served now, not from what was rolled back.
            self.restart_trainer_from(self.manifest.train_from);
        }
        let was = was.unwrap_or_default();
        match (command, target) {
            (AdapterCommand::Rollback, Some(v)) => format!("Rolled back from adapter v{was} to v{v}."),
            (AdapterCommand::Rollback, None) => format!("Rolled back from adapter v{was} to the base model."),
            (AdapterCommand::Off, _) => {
                format!("Adapter v{was} off: serving the base model. Training goes on; `!adapter on` serves the newest again.")
            }
            (_, target) => format!("Serving adapter v{}.", target.unwrap_or_default()),
        }
    }

    fn show_adapter(&self) -> String {
        match self.manifest.served() {
            Some(v) => {
                let ago = crate::human::duration(Duration::from_millis(self.now_ms().saturating_sub(v.saved_at_ms)));
                format!(
                    "Serving adapter v{} ({}): {} training steps, {} rewards, saved {ago} ago. {} saved version(s).",
                    v.version,
                    v.file,
                    v.step,
                    v.rewards_seen,
                    self.manifest.versions.len()
                )
            }
            None if self.manifest.versions.is_empty() => "Serving the base model: no adapter has been trained yet.".into(),
            None => format!(
                "Serving the base model (adapter off). {} saved version(s); `!adapter on` serves the newest.",
                self.manifest.versions.len()
            ),
        }
    }

    /// Training continues from `version` (`None`: a fresh adapter) with its figures.
    fn restart_trainer_from(&mut self, version: Option<u64>) {
        self.trainer = None; // the thread ends after its current job
        self.broken = None;
        let point = version.and_then(|v| self.manifest.version(v)).cloned();
        (self.steps, self.rewards_seen, self.trained_through, self.baseline) = match &point {
            Some(v) => (v.step, v.rewards_seen, v.trained_through, v.baseline),
            None => (0, 0, None, 0.0),
        };
        self.steps_at_save = self.steps;
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
