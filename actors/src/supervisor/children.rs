//! Starting the tree's children. At start the root waits for each (a model that cannot load is
//! a configuration problem, reported at once); a later restart of the model or of retrieval
//! (seconds: a model load, a large index) runs in a task of its own, and the child is adopted
//! when it is up, so routing, `!status` and the other channels keep going meanwhile.

use super::{Child, RootMsg, RootState};
use crate::feedback::{FeedbackActor, FeedbackArgs};
use crate::gateway::{GatewayActor, GatewayArgs, GatewayMsg};
use crate::model::{ModelActor, ModelMsg};
use crate::ports::{Connection, Connector};
use crate::retrieval::{RetrievalActor, RetrievalMsg};
use crate::timeouts;
use crate::watchdog::{Watchdog, WatchdogArgs};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use std::sync::{Arc, Mutex};

/// A child started off the root's loop, handed back to the root to adopt.
pub enum Started {
    Model(ActorRef<ModelMsg>),
    Retrieval(ActorRef<RetrievalMsg>),
    Gateway(ActorRef<GatewayMsg>),
}

impl RootState {
    pub(super) async fn start_model(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(None, ModelActor, self.args.loader.clone(), myself.get_cell()).await?;
        self.adopt_model(actor);
        Ok(())
    }

    pub(super) async fn start_retrieval(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let args = (self.args.retriever.clone(), self.args.heartbeats.clone());
        let (actor, _) = Actor::spawn_linked(None, RetrievalActor, args, myself.get_cell()).await?;
        self.adopt_retrieval(actor);
        Ok(())
    }

    fn adopt_model(&mut self, actor: ActorRef<ModelMsg>) {
        self.children.insert(actor.get_id(), Child::Model);
        self.model.set(Some(actor));
    }

    fn adopt_retrieval(&mut self, actor: ActorRef<RetrievalMsg>) {
        self.children.insert(actor.get_id(), Child::Retrieval);
        self.retrieval.set(Some(actor));
    }

    /// The connection made at start becomes the gateway child; each restart makes its own.
    pub(super) async fn start_gateway(&mut self, myself: &ActorRef<RootMsg>, connector: Arc<dyn Connector>, first: Box<dyn Connection>) {
        self.connector = Some(connector);
        let Some(args) = self.gateway_args(myself, Some(first)) else { return };
        match Actor::spawn_linked(None, GatewayActor, args, myself.get_cell()).await {
            Ok((actor, _)) => self.adopt_gateway(actor),
            Err(e) => {
                tracing::error!(error = %e, "the gateway could not start");
                self.on_failure(myself, Child::Gateway);
            }
        }
    }

    fn gateway_args(&self, myself: &ActorRef<RootMsg>, first: Option<Box<dyn Connection>>) -> Option<GatewayArgs> {
        let connector = self.connector.clone()?;
        Some(GatewayArgs { connector, root: myself.clone(), first: Arc::new(Mutex::new(first)), exit: self.args.liveness.exit.clone() })
    }

    fn adopt_gateway(&mut self, actor: ActorRef<GatewayMsg>) {
        self.children.insert(actor.get_id(), Child::Gateway);
        self.gateway = Some(actor);
    }

    /// Closes the Discord connection (and waits for it): no more messages come in.
    pub(super) async fn stop_gateway(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            self.children.remove(&gateway.get_id());
            let _ = gateway.stop_and_wait(None, Some(timeouts::SAVING_CHILD_STOP)).await;
        }
    }

    pub(super) async fn start_feedback(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let args = FeedbackArgs {
            global: self.global.clone(),
            journal: self.args.store.clone(),
            replies: self.args.store.clone(),
            history: self.args.store.clone(),
            learning: self.args.learning.clone(),
            model: self.model.clone(),
            heartbeats: self.args.heartbeats.clone(),
            rules: self.args.rl.clone(),
            clock: self.args.defaults.clock.clone(),
            published: self.rl_summary.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, FeedbackActor, args, myself.get_cell()).await?;
        self.children.insert(actor.get_id(), Child::Feedback);
        self.feedback.set(Some(actor));
        Ok(())
    }

    pub(super) async fn start_watchdog(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let args = WatchdogArgs {
            heartbeats: self.args.heartbeats.clone(),
            started: self.started.into_std(),
            tick: self.args.watchdog_tick,
            store: Some(self.args.store.clone()),
            stall_after: self.args.defaults.stall,
            liveness: self.args.liveness.clone(),
            root: Some(myself.clone()),
        };
        let (actor, _) = Actor::spawn_linked(None, Watchdog, args, myself.get_cell()).await?;
        self.children.insert(actor.get_id(), Child::Watchdog);
        self.watchdog = Some(actor);
        Ok(())
    }

    /// Starts the model or retrieval in a task of its own; [`RootMsg::Started`] brings it back.
    /// One start at a time per child. `replacing`, a model let go, is stopped first (in the
    /// same task: a stuck one may take its time). A `restart` is counted once the child is up,
    /// as `!status` and the metric have always meant it.
    fn start_off_loop(&mut self, myself: &ActorRef<RootMsg>, child: Child, replacing: Option<ActorRef<ModelMsg>>, restart: bool) {
        if self.starting.insert(child.clone(), restart).is_some() {
            return;
        }
        let (root, supervisor) = (myself.clone(), myself.get_cell());
        let loader = self.args.loader.clone();
        let retriever = (self.args.retriever.clone(), self.args.heartbeats.clone());
        let gateway = self.gateway_args(myself, None);
        tokio::spawn(async move {
            if let Some(old) = replacing {
                let _ = old.stop_and_wait(Some("reload".into()), Some(timeouts::CHILD_STOP)).await;
            }
            let started = match (&child, gateway) {
                (Child::Model, _) => Actor::spawn_linked(None, ModelActor, loader, supervisor).await.map(|(a, _)| Started::Model(a)),
                (Child::Retrieval, _) => {
                    Actor::spawn_linked(None, RetrievalActor, retriever, supervisor).await.map(|(a, _)| Started::Retrieval(a))
                }
                // Connecting takes a few requests to Discord: off the root's loop too.
                (Child::Gateway, Some(args)) => {
                    Actor::spawn_linked(None, GatewayActor, args, supervisor).await.map(|(a, _)| Started::Gateway(a))
                }
                (other, _) => {
                    let why = format!("{} is not started off the root's loop", other.label());
                    let _ = root.send_message(RootMsg::Started(child, Err(why)));
                    return;
                }
            };
            let _ = root.send_message(RootMsg::Started(child, started.map_err(|e| e.to_string())));
        });
    }

    /// Stops the model and loads it again, off the root's loop; meanwhile replies wait for it.
    /// A stall counts as a restart (a failure); `!restart` does not.
    pub(super) fn reload_model(&mut self, myself: &ActorRef<RootMsg>, why: &str, failure: bool) {
        if self.draining || self.starting.contains_key(&Child::Model) {
            return;
        }
        tracing::warn!("{why}; loading the model again");
        let old = self.model.get();
        if let Some(old) = &old {
            // Forgotten first, so its end is not taken for a failure to restart.
            self.children.remove(&old.get_id());
            self.model.set(None);
        }
        self.start_off_loop(myself, Child::Model, old, failure);
    }

    /// A child started off the loop is up (or could not start).
    pub(super) fn adopt(&mut self, myself: &ActorRef<RootMsg>, child: Child, started: Result<Started, String>) {
        let restart = self.starting.remove(&child).unwrap_or(false);
        let actor = match started {
            Ok(started) if self.draining => {
                match started {
                    Started::Model(actor) => actor.stop(None),
                    Started::Retrieval(actor) => actor.stop(None),
                    Started::Gateway(actor) => actor.stop(None),
                }
                return;
            }
            Ok(actor) => actor,
            Err(error) => return self.not_started(myself, child, error),
        };
        // A child that failed before it was adopted was not known to the root when its
        // supervision event came: count the failure now, and never adopt it.
        let gone = |status: ActorStatus| matches!(status, ActorStatus::Stopping | ActorStatus::Stopped);
        match actor {
            Started::Model(actor) if !gone(actor.get_status()) => self.adopt_model(actor),
            Started::Retrieval(actor) if !gone(actor.get_status()) => self.adopt_retrieval(actor),
            Started::Gateway(actor) if !gone(actor.get_status()) => self.adopt_gateway(actor),
            _ => return self.on_failure(myself, child),
        }
        if restart {
            self.count_restart(&child);
        }
    }

    fn not_started(&mut self, myself: &ActorRef<RootMsg>, child: Child, error: String) {
        match child {
            // Without a model the bot is useless: the service manager starts a fresh process.
            Child::Model => self.give_up(myself, format!("the model could not be loaded again ({error}); exiting")),
            // Without retrieval replies go on: try again within the restart limits.
            other => {
                tracing::error!(child = ?other, %error, "could not start");
                self.on_failure(myself, other);
            }
        }
    }

    /// `!restart`: stops every conversation (each starts again from the store at its next
    /// message) and reloads the model.
    pub(super) fn restart_tree(&mut self, myself: &ActorRef<RootMsg>) {
        tracing::info!("restarting the conversations and reloading the model");
        for (id, (actor, _)) in self.channels.drain() {
            self.children.remove(&actor.get_id());
            tracing::debug!(channel = %id, "stopping");
            actor.stop(Some("restart".into()));
        }
        self.used.clear();
        self.publish_open();
        self.reload_model(myself, "!restart", false);
    }

    pub(super) async fn restart(&mut self, myself: &ActorRef<RootMsg>, child: Child) -> Result<(), ActorProcessingErr> {
        if self.draining || self.starting.contains_key(&child) {
            return Ok(());
        }
        match &child {
            Child::Model if self.model.get().is_none() => self.start_off_loop(myself, child, None, true),
            Child::Retrieval if self.retrieval.get().is_none() => self.start_off_loop(myself, child, None, true),
            Child::Feedback if self.feedback.get().is_none() => {
                self.count_restart(&child);
                if let Err(e) = self.start_feedback(myself).await {
                    tracing::error!(error = %e, "the feedback actor could not restart; learning is off until the next start");
                }
            }
            Child::Gateway if self.gateway.is_none() && self.connector.is_some() => self.start_off_loop(myself, child, None, true),
            Child::Watchdog if self.watchdog.is_none() => {
                self.count_restart(&child);
                self.start_watchdog(myself).await?;
            }
            Child::Channel(key) if !self.channels.contains_key(key) => {
                let key = *key;
                self.count_restart(&child);
                if let Err(error) = self.channel(myself, key).await {
                    tracing::error!(channel = %key, %error, "conversation restart failed");
                }
            }
            _ => {}
        }
        Ok(())
    }
}
