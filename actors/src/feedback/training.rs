//! The training thread, and asking the model to serve an adapter.

use super::FeedbackMsg;
use crate::metric_names as m;
use crate::model::ModelMsg;
use crate::ports::{AdapterVersion, LearnError, Learning, ModelError, PolicyTrainer, TrainSample};
use crate::timeouts;
use ractor::ActorRef;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

pub(super) enum TrainJob {
    Step(Vec<TrainSample>),
    Save(PathBuf, oneshot::Sender<Result<(), LearnError>>),
}

/// The training thread: opens the trainer on first use and runs jobs one at a time, so a
/// step of seconds never holds up the actor (or anything on the async runtime).
pub(super) fn spawn_trainer(
    learning: Arc<dyn Learning>,
    resume: Option<AdapterVersion>,
    actor: ActorRef<FeedbackMsg>,
    generation: u64,
) -> std::sync::mpsc::Sender<TrainJob> {
    let (jobs, inbox) = std::sync::mpsc::channel::<TrainJob>();
    let spawned = std::thread::Builder::new().name("sidekick-train".into()).spawn(move || {
        let mut trainer: Option<Box<dyn PolicyTrainer>> = None;
        for job in inbox {
            let opened = match trainer.as_mut() {
                Some(t) => Ok(t),
                None => guarded(|| learning.open_trainer(resume.as_ref()), LearnError::Load).map(|t| trainer.insert(t)),
            };
            match job {
                TrainJob::Step(batch) => {
                    let result = opened.and_then(|t| guarded(|| t.step(&batch), LearnError::Train));
                    if actor.send_message(FeedbackMsg::Trained(result, generation)).is_err() {
                        return;
                    }
                }
                TrainJob::Save(path, done) => {
                    let _ = done.send(opened.and_then(|t| t.save(&path)));
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the training thread");
    }
    jobs
}

/// Runs `f`, turning a panic into an error the actor hears: a thread that died silently
/// would leave it waiting for the step forever.
fn guarded<T>(f: impl FnOnce() -> Result<T, LearnError>, error: fn(String) -> LearnError) -> Result<T, LearnError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(error(why.map_or("the trainer panicked".into(), |why| format!("the trainer panicked: {why}"))))
    })
}

/// Asks the model actor to serve `path` (`None`: the base model) and waits for the swap.
pub(super) async fn swap(model: ActorRef<ModelMsg>, path: Option<PathBuf>) -> Result<(), String> {
    swapped(model.call(|reply| ModelMsg::SetAdapter(path, reply), Some(timeouts::ADAPTER_SWAP)).await)
}

/// Asks the model actor to serve the personality `path` with no feedback adapter over it.
pub(super) async fn swap_personality(model: ActorRef<ModelMsg>, path: Option<PathBuf>) -> Result<(), String> {
    swapped(model.call(|reply| ModelMsg::SetPersonality(path, reply), Some(timeouts::ADAPTER_SWAP)).await)
}

fn swapped(answer: Result<ractor::rpc::CallResult<Result<(), ModelError>>, ractor::MessagingErr<ModelMsg>>) -> Result<(), String> {
    match answer {
        Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
            metrics::counter!(m::ADAPTER_SWAPS).increment(1);
            Ok(())
        }
        Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(e.to_string()),
        Ok(_) => Err("the model did not answer in time".into()),
        Err(e) => Err(e.to_string()),
    }
}
