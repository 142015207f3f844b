//! LoRA adapters as GGUF files llama.cpp loads (`llama_adapter_lora_init`).
//!
//! Per adapted weight `blk.N.<target>.weight`: `<name>.lora_a` with ggml ne `[n_in, rank]`
//! and `<name>.lora_b` with ne `[rank, n_out]` (llama-adapter.cpp checks
//! `model.ne[0] == a.ne[0]`, `model.ne[1] == b.ne[1]`, `a.ne[1] == b.ne[0]`), i.e. candle
//! shapes A `(rank, n_in)` and B `(n_out, rank)`. llama.cpp scales by `alpha / rank`.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::gguf::{write_atomically, GgufFile};
use crate::lora::{LoraConfig, LoraWeights, Target};
use crate::model::BaseModel;
use crate::trainer::{Trainer, TrainerState};

const KEY_BASELINE: &str = "sidekick.reinforce.baseline";
const KEY_STEP: &str = "sidekick.reinforce.step";

impl Trainer {
    /// Writes the adapter (atomically: temp file + rename). The trainer state (baseline,
    /// step) rides along in `sidekick.reinforce.*` keys, which llama.cpp ignores.
    pub fn write_adapter(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors = Vec::with_capacity(self.lora.pairs.len() * 2);
        for (layer, target, a, b) in &self.lora.pairs {
            let name = format!("blk.{layer}.{}.weight", target.gguf_name());
            tensors.push((format!("{name}.lora_a"), QTensor::quantize(a.as_tensor(), GgmlDType::F32)?));
            tensors.push((format!("{name}.lora_b"), QTensor::quantize(b.as_tensor(), GgmlDType::F32)?));
        }
        let meta = [
            ("general.type", Value::String("adapter".into())),
            ("general.architecture", Value::String(self.base.config().architecture.clone())),
            ("general.name", Value::String("sidekick-lora".into())),
            ("adapter.type", Value::String("lora".into())),
            ("adapter.lora.alpha", Value::F32(self.cfg.alpha)),
            (KEY_BASELINE, Value::F32(self.state.baseline)),
            (KEY_STEP, Value::U64(self.state.step)),
        ];
        let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_atomically(path.as_ref(), &meta, &tensors)
    }

    /// Resumes from an adapter written by [`Trainer::write_adapter`] (or any llama.cpp LoRA
    /// for this base). Rank, alpha and targets come from the file and override `cfg`; the
    /// baseline and step come from the file when present (else 0; [`Trainer::set_state`]
    /// overrides them). Adam's moments restart from zero.
    pub fn load_adapter(base: Arc<BaseModel>, mut cfg: LoraConfig, path: impl AsRef<Path>) -> Result<Trainer> {
        let file = read_lora(&base, path.as_ref())?;
        cfg.rank = file.rank;
        cfg.alpha = file.alpha;
        let mut targets: Vec<Target> = file.pairs.iter().map(|p| p.1).collect();
        targets.sort();
        targets.dedup();
        cfg.targets = targets;
        cfg.validate()?;
        let pairs = file
            .pairs
            .into_iter()
            .map(|(l, t, a, b)| Ok((l, t, Var::from_tensor(&a)?, Var::from_tensor(&b)?)))
            .collect::<Result<Vec<_>>>()?;
        Trainer::with_weights(base, cfg, LoraWeights { pairs }, file.state)
    }
}

impl BaseModel {
    /// This model with the LoRA adapter at `path` folded into its frozen weights at `scale`,
    /// as llama.cpp applies it (`W + scale · alpha/rank · B·A`): the feedback adapter trains
    /// on top of the served personality this way, so it refines the voice.
    pub fn with_adapter(&self, path: impl AsRef<Path>, scale: f32) -> Result<BaseModel> {
        let file = read_lora(self, path.as_ref())?;
        let s = f64::from(scale) * f64::from(file.alpha) / file.rank as f64;
        let deltas = file.pairs.into_iter().map(|(l, t, a, b)| Ok((l, t, (b.matmul(&a)? * s)?))).collect::<Result<Vec<_>>>()?;
        self.with_deltas(deltas)
    }
}

/// An adapter file's contents, checked against the base model.
struct LoraFile {
    rank: usize,
    alpha: f32,
    state: TrainerState,
    /// `(layer, target, A (rank, n_in), B (n_out, rank))`, sorted.
    pairs: Vec<(usize, Target, Tensor, Tensor)>,
}

fn read_lora(base: &BaseModel, path: &Path) -> Result<LoraFile> {
    let mut f = GgufFile::open(path)?;
    let bad = |m: String| TrainError::BadAdapter(format!("{}: {m}", path.display()));
    if f.meta_str("general.type").ok() != Some("adapter") || f.meta_str("adapter.type").ok() != Some("lora") {
        return Err(bad("not a LoRA adapter (general.type / adapter.type)".into()));
    }
    let arch = f.meta_str("general.architecture").unwrap_or("");
    if arch != base.config().architecture {
        return Err(bad(format!("architecture {arch:?}, base is {:?}", base.config().architecture)));
    }
    let alpha = f.meta_f32("adapter.lora.alpha").map_err(|_| bad("no adapter.lora.alpha".into()))?;
    let state = TrainerState { baseline: f.meta_f32(KEY_BASELINE).unwrap_or(0.0), step: f.meta_usize(KEY_STEP).unwrap_or(0) as u64 };
    let mut names: Vec<(usize, Target)> = Vec::new();
    for name in f.content.tensor_infos.keys() {
        let parsed = name
            .strip_suffix(".weight.lora_a")
            .and_then(|s| s.strip_prefix("blk."))
            .and_then(|s| s.split_once('.'))
            .and_then(|(l, t)| Some((l.parse::<usize>().ok()?, Target::from_gguf_name(t)?)));
        match parsed {
            Some((l, t)) if l < base.config().n_layer => names.push((l, t)),
            _ if name.ends_with(".lora_b") => {}
            _ => return Err(bad(format!("unexpected tensor {name}"))),
        }
    }
    if names.is_empty() {
        return Err(bad("no LoRA tensors".into()));
    }
    names.sort();
    let mut rank = None;
    let mut pairs = Vec::with_capacity(names.len());
    for (l, t) in names {
        let stem = format!("blk.{l}.{}.weight", t.gguf_name());
        let (n_out, n_in) = base.proj_shape(t);
        let a_shape = f.tensor_shape(&format!("{stem}.lora_a")).unwrap_or_default();
        let r = *rank.get_or_insert(a_shape.first().copied().unwrap_or(0));
        let a = f.tensor_f32(&format!("{stem}.lora_a"), &[r, n_in])?.to_device(&Device::Cpu)?;
        let b = f.tensor_f32(&format!("{stem}.lora_b"), &[n_out, r])?;
        pairs.push((l, t, a, b));
    }
    let rank = rank.unwrap_or(0);
    if rank == 0 {
        return Err(bad("rank 0".into()));
    }
    Ok(LoraFile { rank, alpha: if alpha > 0.0 { alpha } else { rank as f32 }, state, pairs })
}

/// Writes one adapter that applies all of `parts` (file, scale) at once: per weight, their
/// ranks concatenated, each B multiplied by its scale · alpha / rank, and alpha 0 (llama.cpp
/// then scales by 1). The sum of the deltas is exact. llama-cpp-2 sets one adapter per
/// context (its `lora_adapter_set` replaces the list), so the daemon serves the personality
/// and the feedback adapter through such a file.
pub fn combine_adapters(parts: &[(&Path, f32)], dst: &Path) -> Result<()> {
    let mut architecture: Option<String> = None;
    let mut weights: std::collections::BTreeMap<String, (Vec<Tensor>, Vec<Tensor>)> = Default::default();
    for &(path, scale) in parts {
        let mut f = GgufFile::open(path)?;
        let bad = |m: &str| TrainError::BadAdapter(format!("{}: {m}", path.display()));
        if f.meta_str("general.type").ok() != Some("adapter") || f.meta_str("adapter.type").ok() != Some("lora") {
            return Err(bad("not a LoRA adapter (general.type / adapter.type)"));
        }
        let arch = f.meta_str("general.architecture").unwrap_or("").to_owned();
        if *architecture.get_or_insert_with(|| arch.clone()) != arch {
            return Err(bad("made for another architecture than the other adapters"));
        }
        let alpha = f.meta_f32("adapter.lora.alpha").unwrap_or(0.0);
        let mut stems: Vec<String> = f.content.tensor_infos.keys().filter_map(|n| n.strip_suffix(".lora_a").map(String::from)).collect();
        stems.sort();
        for stem in stems {
            let a = f.qtensor(&format!("{stem}.lora_a"))?.dequantize(&Device::Cpu)?;
            let b = f.qtensor(&format!("{stem}.lora_b"))?.dequantize(&Device::Cpu)?;
            let rank = a.dims().first().copied().unwrap_or(0);
            if rank == 0 || b.dims().last() != Some(&rank) {
                return Err(bad(&format!("{stem}: A and B do not share a rank")));
            }
            let s = f64::from(scale) * if alpha > 0.0 { f64::from(alpha) / rank as f64 } else { 1.0 };
            let entry = weights.entry(stem).or_default();
            entry.0.push(a);
            entry.1.push((b * s)?);
        }
    }
    let mut tensors = Vec::with_capacity(weights.len() * 2);
    for (stem, (a, b)) in &weights {
        tensors.push((format!("{stem}.lora_a"), QTensor::quantize(&Tensor::cat(a, 0)?, GgmlDType::F32)?));
        tensors.push((format!("{stem}.lora_b"), QTensor::quantize(&Tensor::cat(b, 1)?.contiguous()?, GgmlDType::F32)?));
    }
    let meta = [
        ("general.type", Value::String("adapter".into())),
        ("general.architecture", Value::String(architecture.unwrap_or_default())),
        ("general.name", Value::String("sidekick-combined-lora".into())),
        ("adapter.type", Value::String("lora".into())),
        ("adapter.lora.alpha", Value::F32(0.0)),
    ];
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_atomically(dst, &meta, &tensors)
}
