//! A language model that streams scripted tokens, holds a reply until released, or never
//! answers; it records every prompt and adapter it is given.

use crate::ports::{EngineStats, FinishReason, GenEvent, GenerationJob, LanguageModel, ModelError, ModelInfo, ModelLoader};
use crate::prompt::ChatTurn;
use crate::sync::LockExt;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the model does with the next job.
#[derive(Debug, Clone)]
pub enum Script {
    /// Streams these pieces at once, then finishes.
    Reply(Vec<String>),
    /// Streams these pieces when the test calls [`ScriptedModel::release`].
    Hold(Vec<String>),
    /// Never sends anything (the job stays open until it is cancelled or the model stops).
    Silent,
    Fail(ModelError),
}

impl Script {
    pub fn reply(pieces: &[&str]) -> Script {
        Script::Reply(pieces.iter().map(|p| p.to_string()).collect())
    }
    pub fn hold(pieces: &[&str]) -> Script {
        Script::Hold(pieces.iter().map(|p| p.to_string()).collect())
    }
}

#[derive(Default)]
pub struct ScriptedModel {
    scripts: Mutex<VecDeque<Script>>,
    prompts: Mutex<Vec<Vec<ChatTurn>>>,
    held: Mutex<Vec<(GenerationJob, Option<Vec<String>>)>>,
    adapters: Mutex<Vec<Option<PathBuf>>>,
    refused_adapters: Mutex<HashSet<PathBuf>>,
    personalities: Mutex<Vec<Option<PathBuf>>>,
}

impl ScriptedModel {
    /// Queues what the next jobs get; a job with nothing queued is answered "ok".
    pub fn script(&self, script: Script) {
        self.scripts.lock_or_recover().push_back(script);
    }

    /// The turns of every job, in the order they came.
    pub fn prompts(&self) -> Vec<Vec<ChatTurn>> {
        self.prompts.lock_or_recover().clone()
    }

    /// Answers every held reply.
    pub fn release(&self) {
        let held: Vec<_> = self.held.lock_or_recover().drain(..).collect();
        for (job, pieces) in held {
            match pieces {
                Some(pieces) => answer(&job, &pieces),
                None => self.held.lock_or_recover().push((job, None)),
            }
        }
    }

    /// Jobs that were given up on (cancelled) while the model held them.
    pub fn cancelled(&self) -> usize {
        self.held.lock_or_recover().iter().filter(|(job, _)| job.cancel.is_cancelled()).count()
    }

    /// Replies the model is holding now.
    pub fn held(&self) -> usize {
        self.held.lock_or_recover().len()
    }

    /// The adapters asked for, in order (`None`: the base model).
    pub fn adapters(&self) -> Vec<Option<PathBuf>> {
        self.adapters.lock_or_recover().clone()
    }

    /// The personalities asked for, in order (each swap also drops the feedback adapter).
    pub fn personalities(&self) -> Vec<Option<PathBuf>> {
        self.personalities.lock_or_recover().clone()
    }

    /// Makes swaps to `path` fail as a file llama.cpp cannot load would.
    pub fn refuse_adapter(&self, path: PathBuf) {
        self.refused_adapters.lock_or_recover().insert(path);
    }
}

fn answer(job: &GenerationJob, pieces: &[String]) {
    for piece in pieces {
        let _ = job.events.send(GenEvent::Token(piece.clone()));
    }
    let _ = job.events.send(GenEvent::Finished { tokens: pieces.len(), reason: FinishReason::EndOfTurn, reply_ids: vec![1; pieces.len()] });
}

impl LanguageModel for ScriptedModel {
    fn submit(&self, job: GenerationJob) -> Result<(), ModelError> {
        self.prompts.lock_or_recover().push(job.turns.clone());
        let prompt: String = job.turns.iter().map(|t| format!("{}: {}\n", t.role.as_str(), t.content)).collect();
        let started =
            GenEvent::Started { prompt, prompt_tokens: 1, reused_tokens: 0, dropped_turns: 0, prompt_ids: vec![1], adapter: None };
        let script = self.scripts.lock_or_recover().pop_front().unwrap_or_else(|| Script::reply(&["ok"]));
        match script {
            Script::Reply(pieces) => {
                let _ = job.events.send(started);
                answer(&job, &pieces);
            }
            Script::Hold(pieces) => {
                let _ = job.events.send(started);
                self.held.lock_or_recover().push((job, Some(pieces)));
            }
            Script::Silent => self.held.lock_or_recover().push((job, None)),
            Script::Fail(error) => {
                let _ = job.events.send(GenEvent::Failed(error));
            }
        }
        Ok(())
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "scripted".into(),
            path: String::new(),
            context_tokens: 2048,
            parallel_sequences: 4,
            threads: 1,
            threads_auto: false,
            load_seconds: 0.0,
            chat_template: "none".into(),
        }
    }

    fn stats(&self) -> EngineStats {
        EngineStats { in_flight: self.held(), sequence_tokens: 512, ..Default::default() }
    }

    /// A word a token, and two for each turn's markup.
    fn measure(&self, turns: Vec<ChatTurn>, done: tokio::sync::oneshot::Sender<Result<usize, ModelError>>) {
        let _ = done.send(Ok(turns.iter().map(|t| t.content.split_whitespace().count() + 2).sum()));
    }

    fn set_adapter(&self, adapter: Option<PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>) {
        let refused = adapter.as_ref().is_some_and(|p| self.refused_adapters.lock_or_recover().contains(p));
        self.adapters.lock_or_recover().push(adapter);
        let _ = done.send(if refused { Err(ModelError::Adapter("refused by the test".into())) } else { Ok(()) });
    }

    fn set_personality(&self, personality: Option<PathBuf>, done: tokio::sync::oneshot::Sender<Result<(), ModelError>>) {
        let refused = personality.as_ref().is_some_and(|p| self.refused_adapters.lock_or_recover().contains(p));
        if !refused {
            self.personalities.lock_or_recover().push(personality);
            self.adapters.lock_or_recover().push(None);
        }
        let _ = done.send(if refused { Err(ModelError::Adapter("refused by the test".into())) } else { Ok(()) });
    }

    fn shutdown(&self, grace: Duration) {
        // Replies in flight get the grace period (the test may release them meanwhile); then
        // the decoding thread ends, and every open reply's stream with it.
        let deadline = std::time::Instant::now() + grace;
        while self.held() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.held.lock_or_recover().clear();
    }
}

/// Hands out one shared [`ScriptedModel`]; can be told to fail the next loads.
#[derive(Default)]
pub struct ScriptedLoader {
    pub model: Arc<ScriptedModel>,
    loads: AtomicUsize,
    fail_next: AtomicUsize,
    /// While set, loads wait (a slow model load), counted in `waiting`.
    held: Mutex<bool>,
    release: std::sync::Condvar,
    waiting: AtomicUsize,
}

impl ScriptedLoader {
    /// How many times the model was loaded (start and restarts).
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn fail_next_loads(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }
    /// From now on a load waits until [`ScriptedLoader::release_loads`].
    pub fn hold_loads(&self) {
        *self.held.lock_or_recover() = true;
    }
    pub fn release_loads(&self) {
        *self.held.lock_or_recover() = false;
        self.release.notify_all();
    }
    /// Loads waiting for [`ScriptedLoader::release_loads`] now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl ModelLoader for ScriptedLoader {
    fn load(&self) -> Result<Arc<dyn LanguageModel>, ModelError> {
        let mut held = self.held.lock_or_recover();
        if *held {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while *held {
                held = self.release.wait(held).unwrap_or_else(|e| e.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        drop(held);
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(ModelError::Load("the test made this load fail".into()));
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.model.clone())
    }
}
