//! The model actor: the one owner of the language model. It loads the model once (again
//! only after a restart) and hands jobs to the model's own decoding thread, so decoding never
//! runs on the async runtime.

use crate::metric_names as m;
use crate::ports::{EngineStats, GenEvent, GenerationJob, LanguageModel, ModelError, ModelInfo, ModelLoader};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum ModelMsg {
    Generate(GenerationJob),
    Info(RpcReplyPort<ModelInfo>),
    Stats(RpcReplyPort<EngineStats>),
    /// Tokens these turns take with the chat template.
    Measure(Vec<crate::prompt::ChatTurn>, RpcReplyPort<Result<usize, ModelError>>),
    /// Serve this LoRA adapter (`None`: the base model); answered once the swap is done.
    SetAdapter(Option<std::path::PathBuf>, RpcReplyPort<Result<(), ModelError>>),
    /// Serve this personality adapter with no feedback adapter over it; answered once done.
    SetPersonality(Option<std::path::PathBuf>, RpcReplyPort<Result<(), ModelError>>),
    /// Stop taking jobs, let running ones finish within the grace period, then cancel them.
    Drain(Duration, RpcReplyPort<()>),
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

pub type ModelHandle = crate::handle::ActorHandle<ModelMsg>;

pub struct ModelActor;

pub struct ModelState {
    engine: Arc<dyn LanguageModel>,
}

impl Actor for ModelActor {
    type Msg = ModelMsg;
    type State = ModelState;
    type Arguments = Arc<dyn ModelLoader>;

    async fn pre_start(&self, _: ActorRef<ModelMsg>, loader: Self::Arguments) -> Result<ModelState, ActorProcessingErr> {
        let started = Instant::now();
        // Loading reads ~100 MB and builds the context: keep it off the async workers.
        let engine = tokio::task::spawn_blocking(move || loader.load()).await??;
        let seconds = started.elapsed().as_secs_f64();
        metrics::gauge!(m::MODEL_LOAD_SECONDS).set(seconds);
        let info = engine.info();
        tracing::info!(model = %info.name, seconds = format!("{seconds:.2}"), threads = info.threads, "model loaded");
        Ok(ModelState { engine })
    }

    async fn post_stop(&self, _: ActorRef<ModelMsg>, state: &mut ModelState) -> Result<(), ActorProcessingErr> {
        // Release the decoding thread (and its memory) before a replacement loads.
        let engine = state.engine.clone();
        tokio::task::spawn_blocking(move || engine.shutdown(Duration::ZERO)).await?;
        Ok(())
    }

    async fn handle(&self, _: ActorRef<ModelMsg>, msg: ModelMsg, state: &mut ModelState) -> Result<(), ActorProcessingErr> {
        match msg {
            ModelMsg::Generate(job) => {
                let events = job.events.clone();
                if let Err(error) = state.engine.submit(job) {
                    m::count_error("model_submit");
                    let _ = events.send(GenEvent::Failed(error.clone()));
                    if error == ModelError::Unavailable {
                        // The decoding thread is gone: fail so the supervisor reloads us.
                        return Err(Box::new(error));
                    }
                }
            }
            ModelMsg::Info(reply) => {
                let _ = reply.send(state.engine.info());
            }
            ModelMsg::Stats(reply) => {
                let _ = reply.send(state.engine.stats());
            }
            ModelMsg::Measure(turns, reply) => {
                let (done, measured) = tokio::sync::oneshot::channel();
                state.engine.measure(turns, done);
                tokio::spawn(async move {
                    let _ = reply.send(measured.await.unwrap_or(Err(ModelError::Unavailable)));
                });
            }
            ModelMsg::SetAdapter(path, reply) => {
                let (done, swapped) = tokio::sync::oneshot::channel();
                state.engine.set_adapter(path, done);
                answer_when_swapped(swapped, reply);
            }
            ModelMsg::SetPersonality(path, reply) => {
                let (done, swapped) = tokio::sync::oneshot::channel();
                state.engine.set_personality(path, done);
                answer_when_swapped(swapped, reply);
            }
            ModelMsg::Drain(grace, reply) => {
                let engine = state.engine.clone();
                tokio::task::spawn_blocking(move || engine.shutdown(grace)).await?;
                let _ = reply.send(());
            }
            #[cfg(feature = "fault-injection")]
            ModelMsg::InjectPanic => panic!("injected panic in the model actor"),
        }
        Ok(())
    }
}

/// A swap waits for the replies in flight; the actor goes on meanwhile.
fn answer_when_swapped(swapped: tokio::sync::oneshot::Receiver<Result<(), ModelError>>, reply: RpcReplyPort<Result<(), ModelError>>) {
    tokio::spawn(async move {
        let result = swapped.await.unwrap_or(Err(ModelError::Unavailable));
        let _ = reply.send(result);
    });
}
