//! `x · Wᵀ` for a frozen `W` whose backward returns only the input gradient.
//!
//! candle's own matmul backward also computes `xᵀ · grad` for the weight even when the
//! weight is not a variable; for the 49152×576 output matrix that alone is most of a step.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

pub(crate) struct FrozenLinear {
    /// Row-major `(n_out, n_in)` f32, contiguous.
    pub w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = x_l.shape().dims2()?;
        let (n, k2) = self.w.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen-linear: x has {k} columns, W has {k2}");
        }
        let wt = self.w.t()?;
        let (w_storage, _) = wt.storage_and_layout();
        let Storage::Cpu(w_cpu) = &*w_storage else {
            candle_core::bail!("frozen-linear: CPU only");
        };
        let out = x.matmul(w_cpu, (1, m, n, k), x_l, wt.layout())?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // d(x·Wᵀ)/dx = grad · W; no gradient for W.
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x · Wᵀ` (x: `(m, n_in)`, W: `(n_out, n_in)`), differentiable in `x` only.
pub(crate) fn frozen_linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let x = x.contiguous()?;
    if x.track_op() {
        x.apply_op1(FrozenLinear { w: w.clone() })
    } else {
        x.matmul(&w.t()?)
    }
}
