//! The frozen base model (f32, GGUF layout) and its differentiable forward pass.
//!
//! Everything is built from basic candle ops: the fused ones (rms_norm, rope, softmax)
//! silently drop gradients. Q/K stay in the GGUF (llama.cpp) row order, so the rope is the
//! interleaved "NORM" variant that llama.cpp applies to these weights.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, TrainError};
use crate::gguf::{GgufFile, ModelConfig};
use crate::lora::{LoraTensors, Target};
use crate::ops::frozen_linear;

pub(crate) struct Layer {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// Indexed by `Target as usize`; row-major `(n_out, n_in)`.
    proj: [Tensor; 7],
}

/// The base model, every tensor dequantized to f32 and frozen. Share it with `Arc`.
pub struct BaseModel {
    cfg: ModelConfig,
    path: PathBuf,
    embd: Tensor,
    output_norm: Tensor,
    /// `output.weight`, or `token_embd.weight` when the output is tied (SmolLM2).
    output: Tensor,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseModel").field("path", &self.path).field("config", &self.cfg).finish_non_exhaustive()
    }
}

impl BaseModel {
    /// Reads a llama-architecture GGUF (any quantization candle can dequantize).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut f = GgufFile::open(path)?;
        let cfg = f.model_config()?;
        let (e, hd) = (cfg.n_embd, cfg.head_dim());
        let embd = f.tensor_f32("token_embd.weight", &[cfg.vocab, e])?;
        let output_norm = f.tensor_f32("output_norm.weight", &[e])?;
        let output = if f.has_tensor("output.weight") { f.tensor_f32("output.weight", &[cfg.vocab, e])? } else { embd.clone() };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            for bias in ["attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.bias", "ffn_up.bias"] {
                if f.has_tensor(&format!("blk.{i}.{bias}")) {
                    return Err(TrainError::UnsupportedArchitecture(format!("llama with biases (blk.{i}.{bias})")));
                }
            }
            let mut get = |name: &str, shape: &[usize]| f.tensor_f32(&format!("blk.{i}.{name}.weight"), shape);
            let attn_norm = get("attn_norm", &[e])?;
            let ffn_norm = get("ffn_norm", &[e])?;
            let proj = [
                get("attn_q", &[cfg.n_head * hd, e])?,
                get("attn_k", &[cfg.n_head_kv * hd, e])?,
                get("attn_v", &[cfg.n_head_kv * hd, e])?,
                get("attn_output", &[e, cfg.n_head * hd])?,
                get("ffn_gate", &[cfg.n_ff, e])?,
                get("ffn_up", &[cfg.n_ff, e])?,
                get("ffn_down", &[e, cfg.n_ff])?,
            ];
            layers.push(Layer { attn_norm, ffn_norm, proj });
        }
        Ok(Self { cfg, path: path.to_owned(), embd, output_norm, output, layers })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This model with `deltas` added to projections; the rest is shared, not copied.
    pub(crate) fn with_deltas(&self, deltas: Vec<(usize, Target, Tensor)>) -> Result<BaseModel> {
        let mut layers: Vec<Layer> = self
            .layers
            .iter()
            .map(|l| Layer { attn_norm: l.attn_norm.clone(), ffn_norm: l.ffn_norm.clone(), proj: l.proj.clone() })
            .collect();
        for (layer, target, delta) in deltas {
            let proj = &mut layers[layer].proj[target as usize];
            *proj = (&*proj + delta)?;
        }
        Ok(BaseModel {
            cfg: self.cfg.clone(),
            path: self.path.clone(),
            embd: self.embd.clone(),
            output_norm: self.output_norm.clone(),
            output: self.output.clone(),
            layers,
        })
    }

    /// `(n_out, n_in)` of a projection (the same in every layer).
    pub(crate) fn proj_shape(&self, target: Target) -> (usize, usize) {
        let d = self.layers[0].proj[target as usize].dims();
        (d[0], d[1])
    }

    pub(crate) fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(TrainError::InvalidSample(format!("token id {t} is outside the vocabulary ({})", self.cfg.vocab)));
        }
        Ok(())
    }

    /// Logits `(tokens.len() - from, vocab)` for positions `from..`, with an optional LoRA.
    pub(crate) fn forward(&self, tokens: &[u32], lora: Option<&LoraTensors>, from: usize) -> Result<Tensor> {
        let cfg = &self.cfg;
        let t = tokens.len();
        if t == 0 || from >= t {
            return Err(TrainError::InvalidSample("nothing to evaluate".into()));
        }
        self.check_tokens(tokens)?;
        let (nh, nkv, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim());
        let rep = nh / nkv;
        let dev = Device::Cpu;
        let (cos, sin) = rope_tables(t, hd, cfg.rope_theta)?;
        let mask = causal_mask(t, rep)?;
        let kq_scale = 1.0 / (hd as f64).sqrt();

        let mut x = self.embd.index_select(&Tensor::new(tokens, &dev)?, 0)?;
        for (i, l) in self.layers.iter().enumerate() {
            let proj = |x: &Tensor, target: Target| -> Result<Tensor> {
                let y = frozen_linear(x, &l.proj[target as usize])?;
                match lora.and_then(|lt| lt.get(i, target).map(|ab| (lt.scale, ab))) {
                    // y + s · (x Aᵀ) Bᵀ, the order llama.cpp uses.
                    Some((s, (a, b))) => Ok((y + (x.matmul(&a.t()?)?.matmul(&b.t()?)? * s)?)?),
                    None => Ok(y),
                }
            };
            let h = rms_norm(&x, &l.attn_norm, cfg.rms_eps)?;
            let q = rope(&proj(&h, Target::AttnQ)?.reshape((t, nh, hd))?, &cos, &sin)?;
            let k = rope(&proj(&h, Target::AttnK)?.reshape((t, nkv, hd))?, &cos, &sin)?;
            let v = proj(&h, Target::AttnV)?.reshape((t, nkv, hd))?;
            // Query heads sharing a KV head are adjacent: fold them into the row axis
            // (nkv, rep·t, hd) instead of repeating K and V.
            let q = q.transpose(0, 1)?.contiguous()?.reshape((nkv, rep * t, hd))?;
            let k = k.transpose(0, 1)?.contiguous()?;
            let v = v.transpose(0, 1)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? * kq_scale)?.broadcast_add(&mask)?;
            let att = softmax_last(&att)?;
            let o = att.matmul(&v)?.reshape((nh, t, hd))?.transpose(0, 1)?.contiguous()?.reshape((t, nh * hd))?;
            x = (x + proj(&o, Target::AttnOutput)?)?;
            let h = rms_norm(&x, &l.ffn_norm, cfg.rms_eps)?;
            let g = proj(&h, Target::FfnGate)?;
            let u = proj(&h, Target::FfnUp)?;
            x = (x + proj(&(g.silu()? * u)?, Target::FfnDown)?)?;
        }
        let x = x.narrow(0, from, t - from)?;
        let x = rms_norm(&x, &self.output_norm, cfg.rms_eps)?;
        Ok(frozen_linear(&x, &self.output)?)
    }
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps as f64)?.sqrt()?.recip()?;
    x.broadcast_mul(&r)?.broadcast_mul(w)
}

/// Softmax over the last axis; the max is detached (softmax is shift-invariant).
fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Log-softmax over the last axis.
pub(crate) fn log_softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    z.broadcast_sub(&z.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// cos/sin of shape `(t, 1, hd/2, 1)`, computed like ggml's rope cache (f32, θ *= scale).
fn rope_tables(t: usize, hd: usize, base: f32) -> candle_core::Result<(Tensor, Tensor)> {
    let half = hd / 2;
    let theta_scale = base.powf(-2.0 / hd as f32);
    let (mut cos, mut sin) = (Vec::with_capacity(t * half), Vec::with_capacity(t * half));
    for p in 0..t {
        let mut theta = p as f32;
        for _ in 0..half {
            cos.push(theta.cos());
            sin.push(theta.sin());
            theta *= theta_scale;
        }
    }
    let dev = Device::Cpu;
    Ok((Tensor::from_vec(cos, (t, 1, half, 1), &dev)?, Tensor::from_vec(sin, (t, 1, half, 1), &dev)?))
}

/// Interleaved rope on `(t, heads, hd)`: pairs `(2i, 2i+1)` rotate by `θ_i`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (t, h, hd) = x.dims3()?;
    let x = x.reshape((t, h, hd / 2, 2))?;
    let a = x.narrow(3, 0, 1)?;
    let b = x.narrow(3, 1, 1)?;
    let ra = (a.broadcast_mul(cos)? - b.broadcast_mul(sin)?)?;
    let rb = (a.broadcast_mul(sin)? + b.broadcast_mul(cos)?)?;
    Tensor::cat(&[ra, rb], 3)?.reshape((t, h, hd))
}

/// Additive causal mask `(rep·t, t)`: row r is query position `r % t`.
fn causal_mask(t: usize, rep: usize) -> candle_core::Result<Tensor> {
    let mut m = Vec::with_capacity(rep * t * t);
    for _ in 0..rep {
        for i in 0..t {
            m.extend((0..t).map(|j| if j <= i { 0f32 } else { f32::NEG_INFINITY }));
        }
    }
    Tensor::from_vec(m, (rep * t, t), &Device::Cpu)?.to_dtype(DType::F32)
}
