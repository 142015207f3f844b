//! LoRA configuration and weights: `W' = W + (alpha/rank) · B·A`, A `(rank, n_in)`, B `(n_out, rank)`.

use candle_core::{Device, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::model::BaseModel;

/// A projection LoRA can adapt; the name is the GGUF tensor name inside `blk.N.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    AttnQ = 0,
    AttnK = 1,
    AttnV = 2,
    AttnOutput = 3,
    FfnGate = 4,
    FfnUp = 5,
    FfnDown = 6,
}

impl Target {
    pub const ALL: [Target; 7] =
        [Target::AttnQ, Target::AttnK, Target::AttnV, Target::AttnOutput, Target::FfnGate, Target::FfnUp, Target::FfnDown];

    pub fn gguf_name(self) -> &'static str {
        match self {
            Target::AttnQ => "attn_q",
            Target::AttnK => "attn_k",
            Target::AttnV => "attn_v",
            Target::AttnOutput => "attn_output",
            Target::FfnGate => "ffn_gate",
            Target::FfnUp => "ffn_up",
            Target::FfnDown => "ffn_down",
        }
    }

    pub fn from_gguf_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.gguf_name() == s)
    }
}

/// Hyper-parameters of the adapter and of its training.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    /// llama.cpp scales the update by `alpha / rank`.
    pub alpha: f32,
    pub targets: Vec<Target>,
    /// Adam step size.
    pub learning_rate: f32,
    /// Decoupled (AdamW-style) decay of B toward zero each step: the guard that pulls the
    /// adapter back to the base model when feedback stops pushing it.
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 disables).
    pub max_grad_norm: f32,
    /// EMA momentum of the reward baseline: `b ← m·b + (1−m)·r`.
    pub baseline_momentum: f32,
    /// Longest prompt+reply trained on; the prompt is cut from the left to fit.
    pub max_tokens: usize,
    /// CPU threads the trainer's own pool uses (see [`crate::threads`]).
    pub threads: usize,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec![Target::AttnQ, Target::AttnV],
            learning_rate: 1e-3,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            baseline_momentum: 0.9,
            max_tokens: 256,
            threads: 1,
        }
    }
}

impl LoraConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::InvalidConfig(m.into()));
        if self.rank == 0 {
            return bad("rank must be > 0");
        }
        if self.targets.is_empty() {
            return bad("no LoRA targets");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha must be > 0");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate must be > 0");
        }
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        if !non_negative(self.weight_decay) || !non_negative(self.max_grad_norm) {
            return bad("weight_decay and max_grad_norm must be >= 0");
        }
        if !(0.0..1.0).contains(&self.baseline_momentum) {
            return bad("baseline_momentum must be in [0, 1)");
        }
        if self.max_tokens < 2 {
            return bad("max_tokens must be >= 2");
        }
        if self.threads == 0 {
            return bad("threads must be >= 1");
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        self.alpha as f64 / self.rank as f64
    }
}

/// The trainable A/B pairs, per layer and target.
pub(crate) struct LoraWeights {
    /// `(layer, target, A, B)`, in a fixed order (also the GGUF tensor order).
    pub pairs: Vec<(usize, Target, Var, Var)>,
}

impl LoraWeights {
    /// A ~ U(−1/√n_in, 1/√n_in) from `seed` (as PEFT's kaiming init), B = 0.
    pub fn new(base: &BaseModel, cfg: &LoraConfig, seed: u64) -> Result<Self> {
        let mut rng = SplitMix64(seed);
        let mut targets = cfg.targets.clone();
        targets.sort();
        targets.dedup();
        let mut pairs = Vec::new();
        for layer in 0..base.config().n_layer {
            for &t in &targets {
                let (n_out, n_in) = base.proj_shape(t);
                let bound = 1.0 / (n_in as f32).sqrt();
                let a: Vec<f32> = (0..cfg.rank * n_in).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, n_in), &Device::Cpu)?)?;
                let b = Var::zeros((n_out, cfg.rank), candle_core::DType::F32, &Device::Cpu)?;
                pairs.push((layer, t, a, b));
            }
        }
        Ok(Self { pairs })
    }

    /// Views for the forward pass; `track` keeps them in the autograd graph.
    pub fn tensors(&self, n_layer: usize, scale: f64, track: bool) -> LoraTensors {
        let mut layers = vec![[const { None }; 7]; n_layer];
        for (l, t, a, b) in &self.pairs {
            let (a, b) =
                if track { (a.as_tensor().clone(), b.as_tensor().clone()) } else { (a.as_tensor().detach(), b.as_tensor().detach()) };
            layers[*l][*t as usize] = Some((a, b));
        }
        LoraTensors { scale, layers }
    }
}

pub(crate) struct LoraTensors {
    pub scale: f64,
    pub layers: Vec<[Option<(Tensor, Tensor)>; 7]>,
}

impl LoraTensors {
    pub fn get(&self, layer: usize, t: Target) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer)?[t as usize].as_ref()
    }
}

/// Tiny seeded PRNG: reproducible adapters without another dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}
