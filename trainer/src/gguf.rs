//! GGUF reading (config + dequantized tensors) and writing (the F32 copy).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};

/// The hyper-parameters of a llama-architecture model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture` (only "llama" is supported).
    pub architecture: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// Trained context length (informational).
    pub n_ctx_train: usize,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// An opened GGUF file: its parsed header plus a reader for tensor data.
pub(crate) struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| TrainError::NotGguf { path: path.to_owned(), reason: first_line(&e) })?;
        Ok(Self { path: path.to_owned(), content, reader })
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(TrainError::MissingMetadata(key.into())),
        }
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self.meta(key).ok_or_else(|| TrainError::MissingMetadata(key.into()))?;
        let n = match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        };
        n.map(|n| n as usize).ok_or_else(|| TrainError::MissingMetadata(key.into()))
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32> {
        match self.meta(key) {
            Some(Value::F32(x)) => Ok(*x),
            Some(Value::F64(x)) => Ok(*x as f32),
            _ => Err(TrainError::MissingMetadata(key.into())),
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Shape in candle (row-major) order, i.e. the reverse of ggml's `ne`.
    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims().to_vec())
    }

    pub fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(TrainError::MissingTensor(name.into()));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| TrainError::NotGguf { path: self.path.clone(), reason: format!("tensor {name}: {}", first_line(&e)) })
    }

    /// The tensor dequantized to f32, checked against `expected` (row-major) shape.
    pub fn tensor_f32(&mut self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let q = self.qtensor(name)?;
        if q.shape().dims() != expected {
            return Err(TrainError::ShapeMismatch { name: name.into(), expected: expected.to_vec(), got: q.shape().dims().to_vec() });
        }
        Ok(q.dequantize(&Device::Cpu)?)
    }

    pub fn model_config(&self) -> Result<ModelConfig> {
        let arch = self.meta_str("general.architecture")?.to_owned();
        if arch != "llama" {
            return Err(TrainError::UnsupportedArchitecture(arch));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_embd = self.meta_usize(&k("embedding_length"))?;
        let n_head = self.meta_usize(&k("attention.head_count"))?;
        let n_head_kv = match self.meta_usize(&k("attention.head_count_kv")) {
            Ok(n) => n,
            Err(_) => n_head,
        };
        // llama.cpp falls back to the tokenizer's list when vocab_size is absent; the
        // embedding matrix is the ground truth either way.
        let vocab = match self.tensor_shape("token_embd.weight") {
            Some(s) if s.len() == 2 => s[0],
            _ => return Err(TrainError::MissingTensor("token_embd.weight".into())),
        };
        let cfg = ModelConfig {
            n_layer: self.meta_usize(&k("block_count"))?,
            n_head,
            n_head_kv,
            n_embd,
            n_ff: self.meta_usize(&k("feed_forward_length"))?,
            vocab,
            rope_theta: self.meta_f32(&k("rope.freq_base")).unwrap_or(10_000.0),
            rms_eps: self.meta_f32(&k("attention.layer_norm_rms_epsilon"))?,
            n_ctx_train: self.meta_usize(&k("context_length")).unwrap_or(0),
            architecture: arch.clone(),
        };
        if cfg.n_head == 0 || cfg.n_head_kv == 0 || !cfg.n_embd.is_multiple_of(cfg.n_head) || !cfg.n_head.is_multiple_of(cfg.n_head_kv) {
            return Err(TrainError::MissingMetadata(format!(
                "{arch}.attention.head_count{{,_kv}} ({} / {}) do not divide embedding_length {}",
                cfg.n_head, cfg.n_head_kv, cfg.n_embd
            )));
        }
        if !cfg.head_dim().is_multiple_of(2) {
            return Err(TrainError::MissingMetadata(format!("{arch}: odd head dimension")));
        }
        if let Ok(n_rot) = self.meta_usize(&k("rope.dimension_count")) {
            if n_rot != cfg.head_dim() {
                return Err(TrainError::MissingMetadata(format!(
                    "{arch}.rope.dimension_count {n_rot} != head dim (partial rope unsupported)"
                )));
            }
        }
        if let Ok(s) = self.meta_str(&k("rope.scaling.type")) {
            if s != "none" {
                return Err(TrainError::MissingMetadata(format!("{arch}.rope.scaling.type {s:?} unsupported")));
            }
        }
        Ok(cfg)
    }
}

/// candle appends a backtrace to its messages when RUST_BACKTRACE is set; keep the message.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Writes `dst` atomically: into `dst.tmp-<pid>` first, then renamed over `dst`.
pub(crate) fn write_atomically(dst: &Path, metadata: &[(&str, &Value)], tensors: &[(&str, &QTensor)]) -> Result<()> {
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        gguf_file::write(&mut w, metadata, tensors)?;
        let file = w.into_inner().map_err(|e| TrainError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, dst).map_err(|e| TrainError::io(dst, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes an all-F32 copy of a GGUF model (every tensor dequantized, all metadata kept,
/// tokenizer included), so llama.cpp computes with exactly the weights the trainer uses.
pub fn write_f32_copy(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<()> {
    let mut f = GgufFile::open(src.as_ref())?;
    let mut names: Vec<String> = f.content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let q = f.qtensor(name)?;
        let t = if q.dtype() == GgmlDType::F32 { q } else { QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::F32)? };
        tensors.push(t);
    }
    // ALL_F32; informational for llama.cpp, but the old value would be a lie.
    let file_type = Value::U32(0);
    let mut keys: Vec<&String> = f.content.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &Value)> = keys
        .into_iter()
        .filter(|k| k.as_str() != "general.alignment")
        .map(|k| if k == "general.file_type" { (k.as_str(), &file_type) } else { (k.as_str(), &f.content.metadata[k]) })
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = names.iter().map(|n| n.as_str()).zip(tensors.iter()).collect();
    write_atomically(dst.as_ref(), &metadata, &tensor_refs)
}
