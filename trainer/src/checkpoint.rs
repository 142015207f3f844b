//! A training run's whole state (the adapter, Adam's moments and step count, the trainer's
//! state) in one safetensors file, so a run killed at any moment resumes exactly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};
use crate::lora::LoraConfig;
use crate::model::BaseModel;
use crate::trainer::{Trainer, TrainerState};

impl Trainer {
    /// Writes the checkpoint atomically (temp file, sync, rename).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (_, _, a, b)) in self.lora.pairs.iter().enumerate() {
            tensors.insert(format!("a.{i}"), a.as_tensor().clone());
            tensors.insert(format!("b.{i}"), b.as_tensor().clone());
        }
        for (i, (m, v)) in self.adam.iter().enumerate() {
            tensors.insert(format!("m.{i}"), m.clone());
            tensors.insert(format!("v.{i}"), v.clone());
        }
        let counters = [self.adam_t as f64, self.state.step as f64, self.state.baseline as f64];
        tensors.insert("counters".into(), Tensor::new(&counters[..], &Device::Cpu)?);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
    }

    /// A trainer as [`Trainer::save_checkpoint`] left it, for `cfg` (rank and targets must be
    /// the checkpoint's).
    pub fn load_checkpoint(base: Arc<BaseModel>, cfg: LoraConfig, path: impl AsRef<Path>) -> Result<Trainer> {
        let path = path.as_ref();
        let bad = |m: String| TrainError::BadAdapter(format!("{}: {m}", path.display()));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        let mut trainer = Trainer::new(base, cfg, 0)?;
        let get = |name: &str, like: &Tensor| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| bad(format!("no tensor {name}")))?;
            if t.dims() != like.dims() {
                return Err(bad(format!("{name} has shape {:?}, this run's is {:?} (other rank or targets?)", t.dims(), like.dims())));
            }
            Ok(t.clone())
        };
        for (i, (_, _, a, b)) in trainer.lora.pairs.iter().enumerate() {
            a.set(&get(&format!("a.{i}"), a.as_tensor())?)?;
            b.set(&get(&format!("b.{i}"), b.as_tensor())?)?;
        }
        if tensors.contains_key(&format!("a.{}", trainer.lora.pairs.len())) {
            return Err(bad("it adapts more projections than this run".into()));
        }
        let mut adam = Vec::with_capacity(trainer.adam.len());
        for (i, (m, v)) in trainer.adam.iter().enumerate() {
            adam.push((get(&format!("m.{i}"), m)?, get(&format!("v.{i}"), v)?));
        }
        trainer.adam = adam;
        let counters = tensors.get("counters").ok_or_else(|| bad("no counters".into()))?.to_vec1::<f64>()?;
        let [adam_t, step, baseline] = counters[..] else { return Err(bad("counters: 3 values expected".into())) };
        trainer.adam_t = adam_t as i32;
        trainer.state = TrainerState { step: step as u64, baseline: baseline as f32 };
        Ok(trainer)
    }
}
