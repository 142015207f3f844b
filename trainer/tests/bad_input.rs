//! 4. Bad files and bad samples are errors, not panics.

use std::sync::Arc;

use sidekick_trainer::{BaseModel, LoraConfig, Sample, TrainError, Trainer};

#[path = "common/served.rs"]
mod served;
use served::served;

#[test]
fn missing_and_junk_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    assert!(matches!(BaseModel::load(&missing), Err(TrainError::Io { .. })));
    assert!(matches!(sidekick_trainer::write_f32_copy(&missing, dir.path().join("x.gguf")), Err(TrainError::Io { .. })));

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model, just some text that is long enough to read a header from").unwrap();
    let e = BaseModel::load(&junk).unwrap_err();
    println!("junk file: {e}");
    assert!(matches!(e, TrainError::NotGguf { .. }));

    // A GGUF header claiming more than the file holds.
    let mut truncated = std::fs::read(served()).unwrap();
    truncated.truncate(4096);
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &truncated).unwrap();
    let e = BaseModel::load(&cut).unwrap_err();
    println!("truncated file: {e}");
    assert!(matches!(e, TrainError::NotGguf { .. }));

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(BaseModel::load(&empty), Err(TrainError::NotGguf { .. })));
}

#[test]
fn bad_samples_and_adapters_are_errors() {
    let base = Arc::new(BaseModel::load(served()).unwrap());
    let cfg = base.config().clone();
    assert_eq!((cfg.architecture.as_str(), cfg.n_layer, cfg.n_head, cfg.n_head_kv, cfg.n_embd, cfg.vocab), ("llama", 30, 9, 3, 576, 49152));
    let mut trainer = Trainer::new(base.clone(), LoraConfig::default(), 1).unwrap();
    let sample = |prompt: Vec<u32>, reply: Vec<u32>, reward: f32| Sample { prompt, reply, reward };

    let e = trainer.step(&[sample(vec![1, 2, 3], vec![], 1.0)]).unwrap_err();
    println!("empty reply: {e}");
    assert!(matches!(e, TrainError::InvalidSample(_)));
    assert!(matches!(trainer.step(&[sample(vec![], vec![5], 1.0)]), Err(TrainError::InvalidSample(_))));
    assert!(matches!(trainer.step(&[]), Err(TrainError::InvalidSample(_))));
    assert!(matches!(trainer.step(&[sample(vec![1], vec![u32::MAX], 1.0)]), Err(TrainError::InvalidSample(_))));
    assert!(matches!(trainer.step(&[sample(vec![1], vec![2], f32::NAN)]), Err(TrainError::InvalidSample(_))));
    assert!(matches!(trainer.reply_logprob(&[1], &[]), Err(TrainError::InvalidSample(_))));
    assert!(matches!(trainer.next_token_logprobs(&[]), Err(TrainError::InvalidSample(_))));
    assert_eq!(trainer.state().step, 0, "rejected batches do not count as steps");

    assert!(matches!(Trainer::new(base.clone(), LoraConfig { rank: 0, ..LoraConfig::default() }, 1), Err(TrainError::InvalidConfig(_))));
    // The base model is not an adapter.
    assert!(matches!(Trainer::load_adapter(base.clone(), LoraConfig::default(), served()), Err(TrainError::BadAdapter(_))));
    assert!(matches!(Trainer::load_adapter(base, LoraConfig::default(), "/nonexistent/a.gguf"), Err(TrainError::Io { .. })));
}
