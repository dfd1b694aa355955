//! Optimizers and learning-rate schedules. Configs implement `Default`, so callers write
//! `Adam { lr: 1e-3, ..Default::default() }`.

use ndarray::{ArrayViewD, ArrayViewMutD, Zip};
use rayon::prelude::*;

/// SGD with (optionally Nesterov) momentum and L2 weight decay added to the gradient.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 }
    }
}

/// Adam with decoupled weight decay (AdamW; `weight_decay = 0` is plain Adam).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The optimizer in use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Adam / AdamW.
    Adam(Adam),
}

impl Optimizer {
    /// Its name and settings in words: "SGD (momentum 0.9, weight decay 0)", "Adam (weight decay 0)".
    pub fn describe(&self) -> String {
        match self {
            Optimizer::Sgd(s) => format!("SGD (momentum {}, weight decay {})", s.momentum, s.weight_decay),
            Optimizer::Adam(a) => format!("Adam (weight decay {})", a.weight_decay),
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) => a.lr,
        }
    }

    /// Updates one parameter tensor, in parallel. `m`, `v` are its state buffers (same shape, zero at
    /// start), `step` is 1-based, `lr` the scheduled learning rate.
    pub fn update(
        &self,
        p: ArrayViewMutD<f32>,
        g: ArrayViewD<f32>,
        m: ArrayViewMutD<f32>,
        v: ArrayViewMutD<f32>,
        step: u64,
        lr: f32,
    ) {
        self.update_sum(p, &[g], m, v, step, lr);
    }

    /// [`Optimizer::update`] with the gradient handed over as the workers' parts, summed value by value
    /// in their order (`(parts[0] + parts[1]) + ...`, as a separate sum into `parts[0]` would) inside the
    /// update: one pass over the parameter and its state instead of two. The parts are left as they
    /// were. Results are identical to summing first and then calling [`Optimizer::update_serial`].
    pub fn update_sum(
        &self,
        mut p: ArrayViewMutD<f32>,
        parts: &[ArrayViewD<f32>],
        mut m: ArrayViewMutD<f32>,
        mut v: ArrayViewMutD<f32>,
        step: u64,
        lr: f32,
    ) {
        let slices: Option<Vec<&[f32]>> = parts.iter().map(|g| g.as_slice()).collect();
        let (Some(ps), Some(ms), Some(vs), Some(gs)) = (p.as_slice_mut(), m.as_slice_mut(), v.as_slice_mut(), slices)
        else {
            // Not laid out in rows (never the trainer's own tensors): sum, then update value by value.
            let mut g = parts[0].to_owned();
            parts[1..].iter().for_each(|other| g += other);
            return self.update_serial(p, g.view(), m, v, step, lr);
        };
        /// Values a task sums and updates at once: its summed gradient lives on the stack.
        const CHUNK: usize = 4096;
        let corrections = match self {
            Optimizer::Adam(o) => o.corrections(step, lr),
            Optimizer::Sgd(_) => [lr; 3],
        };
        ps.par_chunks_mut(CHUNK).zip(ms.par_chunks_mut(CHUNK)).zip(vs.par_chunks_mut(CHUNK)).enumerate().for_each(
            |(i, ((p, m), v))| {
                let at = i * CHUNK..i * CHUNK + p.len();
                // One worker's gradient is read where it is: copying it to the stack first (and zeroing
                // the stack buffer) cost a training step at batch 512 on one thread 1% (passes over 5 MB).
                let mut sum: [f32; CHUNK];
                let g = match &gs[..] {
                    [only] => Gradient::Only(&only[at]),
                    [first, others @ ..] => {
                        sum = [0.0; CHUNK];
                        let sum = &mut sum[..p.len()];
                        sum.copy_from_slice(&first[at.clone()]);
                        Gradient::Sum { sum, others, at }
                    }
                    [] => return, // no gradient: nothing to update
                };
                let chunk = Chunk { g, p, m, v };
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    unsafe { sum_and_step_avx512(self, chunk, corrections) };
                    return;
                }
                sum_and_step(self, chunk, corrections);
            },
        );
    }

    /// [`Optimizer::update`] on this thread, value by value (for the few rows of a sparse gradient: the
    /// same arithmetic per value).
    pub fn update_serial(
        &self,
        p: ArrayViewMutD<f32>,
        g: ArrayViewD<f32>,
        m: ArrayViewMutD<f32>,
        v: ArrayViewMutD<f32>,
        step: u64,
        lr: f32,
    ) {
        match *self {
            Optimizer::Sgd(o) => Zip::from(p).and(g).and(m).for_each(|p, &g, buf| o.step(p, g, buf, lr)),
            Optimizer::Adam(o) => {
                let c = o.corrections(step, lr);
                Zip::from(p).and(g).and(m).and(v).for_each(|p, &g, m, v| o.step(p, g, m, v, c));
            }
        }
    }
}

/// One task's share of [`Optimizer::update_sum`]: a parameter's values, their state and its gradient.
struct Chunk<'a> {
    g: Gradient<'a>,
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

/// A chunk's gradient: one worker's values, or the first worker's copied into `sum` with the other
/// parts (at `at`) still to add.
enum Gradient<'a> {
    Only(&'a [f32]),
    Sum { sum: &'a mut [f32], others: &'a [&'a [f32]], at: std::ops::Range<usize> },
}

/// Adds the other parts into the sum (if any), then updates `p`, `m`, `v`. `corrections` is Adam's (or
/// the learning rate, for SGD).
#[inline(always)]
fn sum_and_step(opt: &Optimizer, c: Chunk, corrections: [f32; 3]) {
    let Chunk { g, p, m, v } = c;
    let g: &[f32] = match g {
        Gradient::Only(g) => g,
        Gradient::Sum { sum, others, at } => {
            for other in others {
                sum.iter_mut().zip(&other[at.clone()]).for_each(|(g, &o)| *g += o);
            }
            sum
        }
    };
    match *opt {
        Optimizer::Sgd(o) => p.iter_mut().zip(g).zip(m).for_each(|((p, &g), buf)| o.step(p, g, buf, corrections[0])),
        Optimizer::Adam(o) => {
            p.iter_mut().zip(g).zip(m).zip(v).for_each(|(((p, &g), m), v)| o.step(p, g, m, v, corrections))
        }
    }
}

/// [`sum_and_step`] compiled for AVX-512: 16 values an instruction where the baseline build has 4. Each
/// value's arithmetic is the same (no operation is fused or reordered), so the results are identical.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_and_step_avx512(opt: &Optimizer, c: Chunk, corrections: [f32; 3]) {
    sum_and_step(opt, c, corrections)
}

impl Sgd {
    /// One value's update.
    #[inline(always)]
    fn step(&self, p: &mut f32, g: f32, buf: &mut f32, lr: f32) {
        let g = g + self.weight_decay * *p;
        if self.momentum > 0.0 {
            *buf = self.momentum * *buf + g;
            let d = if self.nesterov { g + self.momentum * *buf } else { *buf };
            *p -= lr * d;
        } else {
            *p -= lr * g;
        }
    }
}

impl Adam {
    /// `(lr, lr / bias correction 1, sqrt(bias correction 2))` at a 1-based step.
    fn corrections(&self, step: u64, lr: f32) -> [f32; 3] {
        let bc1 = 1.0 - self.beta1.powi(step.min(i32::MAX as u64) as i32);
        let bc2 = 1.0 - self.beta2.powi(step.min(i32::MAX as u64) as i32);
        [lr, lr / bc1, bc2.sqrt()]
    }

    /// One value's update.
    #[inline(always)]
    fn step(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32, [lr, step_size, bc2_sqrt]: [f32; 3]) {
        *p -= lr * self.weight_decay * *p;
        *m = self.beta1 * *m + (1.0 - self.beta1) * g;
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        *p -= step_size * *m / (v.sqrt() / bc2_sqrt + self.eps);
    }
}

/// How the learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to 0 over all steps (after warm-up).
    #[default]
    Cosine,
}

impl LrSchedule {
    /// The rate at 0-based `step` of `total` steps, with linear warm-up over `warmup` steps.
    pub fn rate(&self, base: f32, step: u64, total: u64, warmup: u64) -> f32 {
        if step < warmup {
            return base * (step + 1) as f32 / warmup as f32;
        }
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = (step - warmup) as f64 / span;
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // Adam's first step is lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|), up to eps.
        let opt = Optimizer::Adam(Adam { lr: 0.01, ..Default::default() });
        let mut p = ArrayD::from_elem(vec![3], 1.0f32);
        let g = ArrayD::from_shape_vec(vec![3], vec![0.5f32, -2.0, 1e-3]).unwrap();
        let mut m = ArrayD::zeros(vec![3]);
        let mut v = ArrayD::zeros(vec![3]);
        opt.update(p.view_mut(), g.view(), m.view_mut(), v.view_mut(), 1, 0.01);
        for (x, e) in p.iter().zip([0.99f32, 1.01, 0.99]) {
            assert!((x - e).abs() < 1e-5, "{x} vs {e}");
        }
    }

    #[test]
    fn sgd_momentum_matches_pytorch_recurrence() {
        // torch.optim.SGD(momentum=0.9): buf = g (step 1), buf = 0.9 buf + g; p -= lr * buf.
        let opt = Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 });
        let mut p = ArrayD::from_elem(vec![1], 0.0f32);
        let g = ArrayD::from_elem(vec![1], 1.0f32);
        let mut m = ArrayD::zeros(vec![1]);
        let mut v = ArrayD::zeros(vec![1]);
        opt.update(p.view_mut(), g.view(), m.view_mut(), v.view_mut(), 1, 0.1);
        opt.update(p.view_mut(), g.view(), m.view_mut(), v.view_mut(), 2, 0.1);
        // step 1: -0.1; step 2: buf = 1.9 -> -0.1 - 0.19 = -0.29
        assert!((p[[0]] + 0.29).abs() < 1e-6, "{}", p[[0]]);
    }

    /// The fused sum-and-update gives exactly (bit for bit) what summing the parts first and then
    /// updating value by value gives, for both optimizers, over several chunks and a partial one, and for
    /// a part laid out in columns (the fallback path).
    #[test]
    fn update_sum_is_sum_then_update() {
        let n = 3 * 4096 + 77;
        let wave = |seed: f32| ArrayD::from_shape_fn(vec![n / 7, 7], |ix| ((ix[0] * 7 + ix[1]) as f32 * seed).sin());
        let parts = [wave(0.37), wave(1.91), wave(-0.53)];
        let sgd = Optimizer::Sgd(Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 });
        let adam = Optimizer::Adam(Adam { lr: 1e-3, weight_decay: 1e-2, ..Default::default() });
        // One worker's gradient (read in place), two and three (summed in a buffer first).
        for (opt, workers) in [sgd, adam].into_iter().flat_map(|o| (1..=3).map(move |w| (o, w))) {
            for column_major in [false, true] {
                let (mut p1, mut m1, mut v1) = (wave(0.11), wave(0.23) * 0.1, wave(0.29).mapv(|x| x * x));
                let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
                let mut first = parts[0].clone();
                if column_major {
                    first = first.t().as_standard_layout().t().to_owned();
                }
                for step in 1..4 {
                    let summed = parts[1..workers].iter().fold(parts[0].clone(), |acc, p| &acc + p);
                    opt.update_serial(p1.view_mut(), summed.view(), m1.view_mut(), v1.view_mut(), step, 0.01);
                    let refs: Vec<_> =
                        std::iter::once(first.view()).chain(parts[1..workers].iter().map(|p| p.view())).collect();
                    opt.update_sum(p2.view_mut(), &refs, m2.view_mut(), v2.view_mut(), step, 0.01);
                }
                let bits = |a: &ArrayD<f32>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p1), bits(&p2), "{opt:?} {workers} workers, column-major {column_major}");
                assert_eq!(bits(&m1), bits(&m2), "{opt:?} {workers} workers");
                assert_eq!(bits(&v1), bits(&v2), "{opt:?} {workers} workers");
                assert_ne!(bits(&p1), bits(&wave(0.11)), "the parameters moved");
            }
        }
    }

    #[test]
    fn cosine_schedule_endpoints() {
        let s = LrSchedule::Cosine;
        assert!((s.rate(1.0, 0, 100, 0) - 1.0).abs() < 1e-6);
        assert!((s.rate(1.0, 50, 100, 0) - 0.5).abs() < 1e-6);
        assert!(s.rate(1.0, 99, 100, 0) < 1e-3);
        assert!((s.rate(1.0, 4, 100, 10) - 0.5).abs() < 1e-6);
    }
}
