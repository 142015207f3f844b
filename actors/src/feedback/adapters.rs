//! Saving and serving adapter versions, and `!adapter`: the feedback actor applies what the
//! pure rules of [`super::manifest`] decide.

use super::manifest::Change;
use super::training::{swap, swap_personality, TrainJob};
use super::{FeedbackMsg, FeedbackState};
use crate::commands::AdapterCommand;
use crate::metric_names as m;
use crate::ports::{AdapterVersion, Personality};
use ractor::ActorRef;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

impl FeedbackState {
    /// Saves a new version and serves it once it passes the gate, unless an admin turned
    /// serving off.
    pub(super) async fn save_and_publish(&mut self, myself: &ActorRef<FeedbackMsg>) {
        if let Some(version) = self.save().await {
            if self.manifest.follows_training() {
                self.gate(version, myself);
            }
        }
    }

    /// Scores `version` against what is served, off the actor (minutes through llama.cpp);
    /// the verdict comes back as [`FeedbackMsg::Gated`].
    fn gate(&self, version: u64, myself: &ActorRef<FeedbackMsg>) {
        let (Some(learning), Some(candidate)) = (self.args.learning.clone(), self.path_of(Some(version))) else { return };
        let served = self.path_of(self.manifest.active);
        let myself = myself.clone();
        tokio::spawn(async move {
            let verdict = tokio::task::spawn_blocking(move || learning.gate(&candidate, served.as_deref()))
                .await
                .unwrap_or_else(|e| Err(format!("the gate failed: {e}")));
            let _ = myself.send_message(FeedbackMsg::Gated(version, verdict));
        });
    }

    /// Serves `version` if it passed the gate and nothing newer or an admin's choice came since.
    pub(super) fn gated(&mut self, version: u64, verdict: Result<(), String>, myself: &ActorRef<FeedbackMsg>) {
        let newest = self.manifest.latest().map(|v| v.version) == Some(version);
        match verdict {
            Ok(()) if newest && self.manifest.follows_training() => {
                self.refused = None;
                self.activate(Some(version), myself);
            }
            Ok(()) => {}
            Err(why) => {
                tracing::warn!(version, %why, "the gate refused the new adapter; the served one stays");
                m::count_error("adapter_gate");
                self.refused = Some(format!("adapter v{version} was kept, not served: {why}"));
                self.publish();
            }
        }
    }

    /// At shutdown: what was learned since the last save is saved, and served at the next
    /// start when serving follows training.
    pub(super) async fn save_if_changed(&mut self) {
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
        let (step, rewards_seen) = match self.training {
            true => (self.steps + 1, self.rewards_seen + self.in_flight.len() as u64),
            false => (self.steps, self.rewards_seen),
        };
        let trained_through = self.watermark();
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

    pub(super) fn write_manifest(&self) {
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
        self.swapping = Some(tokio::spawn(async move {
            if let Err(why) = swap(model, path).await {
                let _ = myself.send_message(FeedbackMsg::SwapFailed(version, why));
            }
        }));
        self.publish();
    }

    /// A new personality: the model serves it with no feedback adapter over it, and learning
    /// starts a fresh adapter on top of it from the journal's feedback. The adapters trained
    /// on the old voice stay on disk, set aside (their manifest is replaced by a fresh one).
    pub(super) async fn new_personality(&mut self, personality: Option<Personality>, myself: &ActorRef<FeedbackMsg>) -> Result<(), String> {
        if let Some(earlier) = self.swapping.take() {
            let _ = earlier.await;
        }
        let Some(model) = self.args.model.get() else { return Err("the model is restarting".into()) };
        swap_personality(model, personality.as_ref().map(|p| p.path.clone())).await?;
        tracing::info!(personality = ?personality.as_ref().map(|p| &p.path), "serving a new personality");
        let Some(learning) = self.args.learning.clone() else { return Ok(()) };
        learning.set_personality(personality);
        let sha256 = learning.base_model_sha256().unwrap_or_default();
        let (manifest, reset) = std::mem::take(&mut self.manifest).for_model(&sha256);
        self.manifest = manifest;
        if reset {
            self.refused = None;
            self.restart_trainer_from(None);
            // What people said of the old voice's replies still says what they like.
            if let Err(e) = self.replay(None, true) {
                tracing::warn!(error = %e, "feedback journal unreadable; nothing to learn again");
            }
            self.write_manifest();
        } else {
            // The same voice after all: serve its feedback adapter again.
            self.activate(self.manifest.active, myself);
        }
        self.publish();
        Ok(())
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

    pub(super) async fn adapter_command(&mut self, command: AdapterCommand) -> String {
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
            // The votes learned since then are learned again.
            let through = self.restart_trainer_from(self.manifest.train_from);
            if let Err(e) = self.replay(through, true) {
                tracing::warn!(error = %e, "could not read the feedback journal again");
            }
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
        let feedback = self.show_feedback_adapter();
        match self.args.learning.as_ref().and_then(|l| l.personality()) {
            Some(personality) => format!("{feedback}\nUnder it, the server's voice: {personality}."),
            None => feedback,
        }
    }

    fn show_feedback_adapter(&self) -> String {
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
}
