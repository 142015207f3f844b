//! Data-parallel gradient accumulation. A step's examples are independent until their
//! gradients are added, so each worker thread runs whole examples (forward and backward) on a
//! core of its own, and the gradients are added in example order afterwards: a step's result
//! does not depend on how many threads ran it.
//!
//! Why whole examples rather than one example over every core: candle's element-wise and
//! reduction kernels are mostly single-threaded, or serialised behind its one process-wide
//! pool, so one 256-token sequence split over two cores ran only 1.23x as fast as on one.

use candle_core::Tensor;

use crate::error::{Result, TrainError};

/// One example's contribution to a step.
pub(crate) struct Item {
    /// The example's share of the step's loss (already weighted).
    pub loss: Tensor,
    /// Tokens run through the model for it.
    pub tokens: usize,
    /// False when it cannot move the weights (a zero advantage): no backward pass is run.
    pub learn: bool,
}

/// The step's gradients (`None` where a parameter got none), loss and tokens, summed.
pub(crate) struct Summed {
    pub grads: Vec<Option<Tensor>>,
    pub loss: f32,
    pub tokens: usize,
}

/// One example's loss value, tokens and gradients (`None` where a parameter got none).
type Done = (f32, usize, Vec<Option<Tensor>>);

/// One single-thread rayon pool per worker: candle's matmuls run on the current rayon pool,
/// so a worker inside its own pool never spreads onto another worker's core.
pub(crate) struct Workers {
    pools: Vec<rayon::ThreadPool>,
}

impl Workers {
    /// `threads` workers; none for one thread (the trainer's own pool runs everything).
    pub fn new(threads: usize) -> Result<Self> {
        let pools = if threads < 2 { Vec::new() } else { (0..threads).map(|_| crate::threads::build_pool(1)).collect::<Result<_>>()? };
        Ok(Self { pools })
    }

    /// Runs `item(i)` for every i in `0..n` with its backward pass, spread over the workers
    /// (worker w takes i = w, w + W, …), or one after another on `shared` when there is one
    /// worker or one item. The first error in item order wins.
    pub fn gradients<F>(&self, shared: &rayon::ThreadPool, n: usize, params: &[Tensor], item: F) -> Result<Summed>
    where
        F: Fn(usize) -> Result<Item> + Sync,
    {
        let one = |i: usize| -> Result<Done> {
            let it = item(i)?;
            let value = it.loss.to_scalar::<f32>()?;
            let grads = if it.learn {
                let store = it.loss.backward()?;
                params.iter().map(|p| store.get(p).cloned()).collect()
            } else {
                vec![None; params.len()]
            };
            Ok((value, it.tokens, grads))
        };
        let results: Vec<Result<Done>> = if self.pools.len() < 2 || n < 2 {
            shared.install(|| (0..n).map(one).collect())
        } else {
            let workers = self.pools.len().min(n);
            let mut slots: Vec<Option<Result<_>>> = (0..n).map(|_| None).collect();
            std::thread::scope(|s| {
                let handles: Vec<_> = self.pools[..workers]
                    .iter()
                    .enumerate()
                    .map(|(w, pool)| {
                        let one = &one;
                        s.spawn(move || pool.install(|| (w..n).step_by(workers).map(|i| (i, one(i))).collect::<Vec<_>>()))
                    })
                    .collect();
                for handle in handles {
                    let done = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    for (i, result) in done {
                        slots[i] = Some(result);
                    }
                }
            });
            slots.into_iter().map(|s| s.unwrap_or_else(|| Err(TrainError::ThreadPool("a worker skipped an example".into())))).collect()
        };
        let mut summed = Summed { grads: vec![None; params.len()], loss: 0.0, tokens: 0 };
        for result in results {
            let (value, tokens, grads) = result?;
            summed.loss += value;
            summed.tokens += tokens;
            for (acc, g) in summed.grads.iter_mut().zip(grads) {
                if let Some(g) = g {
                    *acc = Some(match acc.take() {
                        Some(sum) => (sum + g)?,
                        None => g,
                    });
                }
            }
        }
        Ok(summed)
    }
}
