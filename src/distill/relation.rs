//! Relation-based distillation from stored teacher features: the student's embedding (the input of
//! its last linear layer) is made to relate the rows of a batch to each other as the teacher's stored
//! feature does, whatever the two widths.
//!
//! - **RKD** (Park, Kim, Lu, Cho 2019, "Relational Knowledge Distillation"): distance term, the
//!   pairwise Euclidean distances each divided by their mean over the pairs, compared by the Huber
//!   loss (smooth L1, beta 1) averaged over all n^2 pairs; angle term, the cosines of the angle at
//!   every row i between rows j and k, Huber averaged over all n^3 triplets. Default weights 25 and 50
//!   (the paper's, and RepDistiller's `RKDLoss`).
//! - **SP** (Tung, Mori 2019, "Similarity-Preserving Knowledge Distillation"): the batch Gram matrices
//!   `F F^T`, each row L2-normalised, squared Frobenius distance over n^2. Default weight 3000
//!   (RepDistiller's setting for `similarity`).
//!
//! The definitions follow RepDistiller's code (`distiller_zoo/RKD.py`, `SP.py`) to the clamps: squared
//! distances clamped at 1e-12 before the root, the diagonal set to 0 after it, the mean over positive
//! distances, and F.normalize's 1e-12 floor. Values and gradients are checked against PyTorch's
//! autograd and finite differences in the tests.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use super::{Loss, Objective};
use crate::error::{Error, Result};
use crate::store::{FeatureTable, TeacherOutputs};

/// A relation term and its weights.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Relation {
    /// RKD: distance and angle weights.
    Rkd {
        /// Weight of the distance term.
        distance: f32,
        /// Weight of the angle term.
        angle: f32,
    },
    /// Similarity-preserving KD.
    Sp {
        /// Weight.
        weight: f32,
    },
    /// FitNets hint (Romero et al. 2015): a learned linear regressor from the embedding to the
    /// feature's width, mean squared error.
    Hint {
        /// Weight.
        weight: f32,
    },
}

impl Relation {
    /// RKD with the paper's weights.
    pub const RKD: Relation = Relation::Rkd { distance: 25.0, angle: 50.0 };
    /// SP with RepDistiller's weight.
    pub const SP: Relation = Relation::Sp { weight: 3000.0 };
    /// FitNets with RepDistiller's weight.
    pub const HINT: Relation = Relation::Hint { weight: 100.0 };

    /// The term's value on student embeddings `s` (`[n, E]`) and teacher features `t` (`[n, D]`);
    /// with `grad`, adds d value / d s into it.
    pub fn eval(&self, s: ArrayView2<f32>, t: ArrayView2<f32>, grad: Option<ArrayViewMut2<f32>>) -> f64 {
        match *self {
            Relation::Rkd { distance, angle } => {
                let mut grad = grad;
                let mut v = 0.0;
                if distance != 0.0 {
                    v += f64::from(distance) * rkd_distance(s, t, distance, grad.as_mut().map(|g| g.view_mut()));
                }
                if angle != 0.0 {
                    v += f64::from(angle) * rkd_angle(s, t, angle, grad.as_mut().map(|g| g.view_mut()));
                }
                v
            }
            Relation::Sp { weight } => f64::from(weight) * sp(s, t, weight, grad),
            // Needs its regressor: see `hint`.
            Relation::Hint { .. } => 0.0,
        }
    }
}

/// The FitNets hint term (unweighted): `mean((s W + b - t)^2)` over all n x D values, for the
/// regressor `w` (`[E, D]`, as `Linear`) and `b` (`[D]`); adds `weight` x the gradients into `grad`
/// (d / d s), `gw` and `gb`.
pub fn hint(
    s: ArrayView2<f32>,
    t: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: ndarray::ArrayView1<f32>,
    weight: f32,
    grads: Option<(ArrayViewMut2<f32>, ArrayViewMut2<f32>, ndarray::ArrayViewMut1<f32>)>,
) -> f64 {
    let count = (t.nrows() * t.ncols()).max(1) as f32;
    let mut diff = s.dot(&w);
    diff += &b;
    diff -= &t;
    let loss = diff.iter().map(|&d| f64::from(d) * f64::from(d)).sum::<f64>() / f64::from(count);
    if let Some((mut gs, mut gw, mut gb)) = grads {
        let dr = diff * (2.0 * weight / count);
        ndarray::linalg::general_mat_mul(1.0, &dr, &w.t(), 1.0, &mut gs);
        ndarray::linalg::general_mat_mul(1.0, &s.t(), &dr, 1.0, &mut gw);
        gb += &dr.sum_axis(Axis(0));
    }
    loss
}

/// smooth_l1 (beta 1) and its derivative.
fn huber(x: f64) -> (f64, f64) {
    if x.abs() < 1.0 {
        (0.5 * x * x, x)
    } else {
        (x.abs() - 0.5, x.signum())
    }
}

/// Pairwise distances as RepDistiller's `pdist(e, squared=False)`: sqrt(max(|ei|^2 + |ej|^2 - 2 ei.ej,
/// 1e-12)), the diagonal 0; and whether each entry was clamped.
fn pdist(e: ArrayView2<f32>) -> (Array2<f64>, Array2<bool>) {
    let n = e.nrows();
    let e64 = e.mapv(f64::from);
    let prod = e64.dot(&e64.t());
    let sq: Vec<f64> = (0..n).map(|i| prod[[i, i]]).collect();
    let mut d = Array2::zeros((n, n));
    let mut clamped = Array2::from_elem((n, n), false);
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let v = sq[i] + sq[j] - 2.0 * prod[[i, j]];
            if v < 1e-12 {
                clamped[[i, j]] = true;
            }
            d[[i, j]] = v.max(1e-12).sqrt();
        }
    }
    (d, clamped)
}

/// Distances divided by their mean over the positive ones, and that mean and count.
fn normalised(d: &Array2<f64>) -> (Array2<f64>, f64, f64) {
    let (sum, count) = d.iter().filter(|&&x| x > 0.0).fold((0.0, 0.0), |(s, c), &x| (s + x, c + 1.0));
    let mean = if count > 0.0 { sum / count } else { 1.0 };
    (d / mean, mean, count)
}

/// The RKD distance term (unweighted); with `grad`, adds `weight` x its gradient.
pub fn rkd_distance(s: ArrayView2<f32>, t: ArrayView2<f32>, weight: f32, grad: Option<ArrayViewMut2<f32>>) -> f64 {
    let n = s.nrows();
    if n < 2 {
        return 0.0;
    }
    let (dt, _, _) = normalised(&pdist(t).0);
    let (draw, clamped) = pdist(s);
    let (ds, mean, count) = normalised(&draw);
    let nn = (n * n) as f64;
    let mut loss = 0.0;
    let mut q = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..n {
            let (v, dv) = huber(ds[[i, j]] - dt[[i, j]]);
            loss += v;
            if i != j {
                q[[i, j]] = dv / nn;
            }
        }
    }
    let Some(mut grad) = grad else { return loss / nn };
    // d/d raw[i,j] through d_s = raw / mean, mean = sum(raw > 0) / count.
    let qd: f64 = q.iter().zip(draw.iter()).map(|(a, b)| a * b).sum();
    let mut w = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..n {
            if i == j || draw[[i, j]] <= 0.0 {
                continue;
            }
            let p = q[[i, j]] / mean - qd / (mean * mean * count);
            if !clamped[[i, j]] {
                // d raw[i,j] / d s_i = (s_i - s_j) / raw[i,j]; the pair's term reaches both rows.
                w[[i, j]] += p / draw[[i, j]];
            }
        }
    }
    let w = &w + &w.t();
    let s64 = s.mapv(f64::from);
    let ws = w.dot(&s64);
    let rowsum = w.sum_axis(Axis(1));
    let wf = f64::from(weight);
    for i in 0..n {
        for c in 0..s.ncols() {
            // sum_j w_ij (s_i - s_j), w holding both directions of each pair.
            grad[[i, c]] += (wf * (rowsum[i] * s64[[i, c]] - ws[[i, c]])) as f32;
        }
    }
    loss / nn
}

/// Unit difference vectors from row i to every row j (F.normalize(e_j - e_i)): `[n, dim]`, and norms.
fn directions(e: &Array2<f64>, i: usize) -> (Array2<f64>, Vec<f64>) {
    let mut v = e.to_owned();
    let ei = e.row(i).to_owned();
    let mut norms = Vec::with_capacity(e.nrows());
    for mut row in v.outer_iter_mut() {
        row -= &ei;
        let r = row.dot(&row).sqrt();
        let r = r.max(1e-12);
        row /= r;
        norms.push(r);
    }
    (v, norms)
}

/// The RKD angle term (unweighted); with `grad`, adds `weight` x its gradient.
pub fn rkd_angle(s: ArrayView2<f32>, t: ArrayView2<f32>, weight: f32, grad: Option<ArrayViewMut2<f32>>) -> f64 {
    let n = s.nrows();
    if n < 3 {
        return 0.0;
    }
    let (s64, t64) = (s.mapv(f64::from), t.mapv(f64::from));
    let n3 = (n * n * n) as f64;
    let want = grad.is_some();
    // Per anchor i (in parallel): the loss, and d loss / d s as (anchor row, other rows) parts.
    let per: Vec<(f64, Option<Array2<f64>>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (es, ns) = directions(&s64, i);
            let (et, _) = directions(&t64, i);
            let (as_, at) = (es.dot(&es.t()), et.dot(&et.t()));
            let mut loss = 0.0;
            let mut r = Array2::<f64>::zeros((n, n));
            for j in 0..n {
                for k in 0..n {
                    let (v, dv) = huber(as_[[j, k]] - at[[j, k]]);
                    loss += v;
                    r[[j, k]] = dv / n3;
                }
            }
            if !want {
                return (loss, None);
            }
            // d/d e_ij = sum_k (R_jk + R_kj) e_ik.
            let de = (&r + &r.t()).dot(&es);
            // Through e = v / |v| (v = s_j - s_i): dv = (de - e (e.de)) / |v|; j = i contributes nothing
            // (v is identically 0, its two paths cancel).
            let mut g = Array2::<f64>::zeros((n, s.ncols()));
            for (j, &norm) in ns.iter().enumerate() {
                if j == i {
                    continue;
                }
                let (e, d) = (es.row(j), de.row(j));
                let dot = e.dot(&d);
                let dv = (&d - &(&e * dot)) / norm;
                let mut gj = g.row_mut(j);
                gj += &dv;
                let mut gi = g.row_mut(i);
                gi -= &dv;
            }
            (loss, Some(g))
        })
        .collect();
    let loss: f64 = per.iter().map(|(l, _)| l).sum();
    if let Some(mut grad) = grad {
        let wf = f64::from(weight);
        // Summed in anchor order: the same bits whatever the threads.
        for (_, g) in &per {
            if let Some(g) = g {
                grad.zip_mut_with(g, |a, &b| *a += (wf * b) as f32);
            }
        }
    }
    loss / n3
}

/// Rows of `g` divided by their L2 norms (floored at 1e-12), and the norms.
fn row_normalised(g: &Array2<f64>) -> (Array2<f64>, Vec<f64>) {
    let mut out = g.clone();
    let mut norms = Vec::with_capacity(g.nrows());
    for mut row in out.outer_iter_mut() {
        let r = row.dot(&row).sqrt().max(1e-12);
        row /= r;
        norms.push(r);
    }
    (out, norms)
}

/// The SP term (unweighted); with `grad`, adds `weight` x its gradient.
pub fn sp(s: ArrayView2<f32>, t: ArrayView2<f32>, weight: f32, grad: Option<ArrayViewMut2<f32>>) -> f64 {
    let n = s.nrows();
    if n == 0 {
        return 0.0;
    }
    let (s64, t64) = (s.mapv(f64::from), t.mapv(f64::from));
    let (gs, ns) = row_normalised(&s64.dot(&s64.t()));
    let (gt, _) = row_normalised(&t64.dot(&t64.t()));
    let nn = (n * n) as f64;
    let diff = &gs - &gt;
    let loss = diff.iter().map(|d| d * d).sum::<f64>() / nn;
    let Some(mut grad) = grad else { return loss };
    let a = diff * (2.0 / nn);
    // Through the row normalisation: dG_i = (A_i - y_i (y_i . A_i)) / |G_i|.
    let mut b = Array2::<f64>::zeros((n, n));
    for (i, &norm) in ns.iter().enumerate() {
        let (y, ai) = (gs.row(i), a.row(i));
        let dot = y.dot(&ai);
        b.row_mut(i).assign(&((&ai - &(&y * dot)) / norm));
    }
    // G = S S^T: dS = (B + B^T) S.
    let ds = (&b + &b.t()).dot(&s64);
    let wf = f64::from(weight);
    grad.zip_mut_with(&ds, |g, &d| *g += (wf * d) as f32);
    loss
}

/// An objective with relation terms added: the inner objective's loss on the logits, plus each term
/// on the student's embedding against its stored teacher feature.
pub struct WithRelations<'t> {
    /// The logit objective (KD, DKD, ...).
    pub inner: Box<dyn Objective + 't>,
    /// Each term with its teacher feature.
    pub terms: Vec<(Relation, &'t FeatureTable)>,
}

impl Objective for WithRelations<'_> {
    fn prepare<'a>(&self, rows: &'a TeacherOutputs) -> Result<Box<dyn Loss + 'a>> {
        let inner = self.inner.prepare(rows)?;
        let n = rows.len();
        let mut teachers = Vec::with_capacity(self.terms.len());
        for (relation, table) in &self.terms {
            let mut t = Array2::<f32>::zeros((n, table.width));
            for r in 0..n {
                let view = rows.views.as_ref().map_or(0, |v| v.view[r]);
                let Some(row) = table.row(rows.ids[r], view) else {
                    return Err(Error::Config(format!(
                        "row id {} (view {view}) has no stored feature '{}'",
                        rows.ids[r], table.name
                    )));
                };
                t.row_mut(r).assign(&table.values.row(row));
            }
            teachers.push((*relation, t));
        }
        Ok(Box::new(RelationLoss { inner, teachers }))
    }

    /// One regressor per hint term, `[E, D]` and `[D]`, initialised as PyTorch's `nn.Linear`.
    fn aux_params(&self, width: Option<usize>, seed: u64) -> Result<Vec<ndarray::ArrayD<f32>>> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6869_6e74); // "hint"
        let mut out = Vec::new();
        for (relation, table) in &self.terms {
            if let Relation::Hint { .. } = relation {
                let e = width.ok_or_else(|| Error::Config("--hint needs a student embedding".into()))?;
                let l = crate::student::layers::Linear::init(e, table.width, &mut rng);
                out.push(l.w.into_dyn());
                out.push(l.b.into_dyn());
            }
        }
        Ok(out)
    }
}

/// A prepared [`WithRelations`]: the teacher features of the window's rows.
struct RelationLoss<'a> {
    inner: Box<dyn Loss + 'a>,
    teachers: Vec<(Relation, Array2<f32>)>,
}

impl Loss for RelationLoss<'_> {
    fn row_wise(&self) -> bool {
        false
    }

    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64 {
        self.inner.eval(logits, rows, scale, grad)
    }

    fn uses_embedding(&self) -> bool {
        true
    }

    fn eval_embedding(
        &self,
        embedding: ArrayView2<f32>,
        rows: &[usize],
        mut grad: ArrayViewMut2<f32>,
        aux: &[ndarray::ArrayD<f32>],
        aux_grad: &mut [ndarray::ArrayD<f32>],
    ) -> f64 {
        let mut total = 0.0;
        let mut next = 0;
        for (relation, teacher) in &self.teachers {
            let t = teacher.select(Axis(0), rows);
            if let Relation::Hint { weight } = *relation {
                let (Some(w), Some(b)) = (aux.get(next), aux.get(next + 1)) else { continue };
                let (gw_gb, _) = aux_grad[next..].split_at_mut(2);
                let (gw, gb) = gw_gb.split_at_mut(1);
                let views = (
                    w.view().into_dimensionality::<ndarray::Ix2>(),
                    b.view().into_dimensionality::<ndarray::Ix1>(),
                    gw[0].view_mut().into_dimensionality::<ndarray::Ix2>(),
                    gb[0].view_mut().into_dimensionality::<ndarray::Ix1>(),
                );
                if let (Ok(w), Ok(b), Ok(gw), Ok(gb)) = views {
                    total +=
                        f64::from(weight) * hint(embedding, t.view(), w, b, weight, Some((grad.view_mut(), gw, gb)));
                }
                next += 2;
            } else {
                total += relation.eval(embedding, t.view(), Some(grad.view_mut()));
            }
        }
        total * rows.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The test batch: 5 rows, student width 3, teacher width 4 (values from sin/cos, pasted into the
    /// PyTorch code below as the same formulas).
    fn batch() -> (Array2<f32>, Array2<f32>) {
        let s = Array2::from_shape_fn((5, 3), |(i, j)| ((i * 3 + j) as f32 * 0.7).sin() + 0.1 * j as f32);
        let t = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f32 * 0.3).cos() * (1.0 + i as f32 * 0.2));
        (s, t)
    }

    /// Finite differences of `f` against its analytic gradient, at every entry of `s`.
    fn check_gradient(f: impl Fn(ArrayView2<f32>, Option<ArrayViewMut2<f32>>) -> f64, s: &Array2<f32>) {
        let mut g = Array2::<f32>::zeros(s.raw_dim());
        f(s.view(), Some(g.view_mut()));
        for idx in ndarray::indices(s.raw_dim()) {
            // A step relative to the value: f32 spacing stays far below it, the truncation error small.
            let h = 1e-4f32 * s[idx].abs().max(1.0);
            let (mut a, mut b) = (s.clone(), s.clone());
            a[idx] += h;
            b[idx] -= h;
            let fd = (f(a.view(), None) - f(b.view(), None)) / (2.0 * f64::from(h));
            let err = (fd - f64::from(g[idx])).abs();
            assert!(err < 1e-3 * (1.0 + fd.abs()), "at {idx:?}: analytic {} vs finite differences {fd}", g[idx]);
        }
    }

    #[test]
    fn gradients_equal_finite_differences() {
        let (s, t) = batch();
        let w = Array2::from_shape_fn((3, 4), |(i, j)| ((i * 4 + j) as f32 * 0.37).sin() * 0.5);
        let b = ndarray::Array1::from_shape_fn(4, |j| 0.1 * j as f32 - 0.15);
        let hint_s = |s: ArrayView2<f32>, g: Option<ArrayViewMut2<f32>>| {
            let (mut gw, mut gb) = (Array2::zeros((3, 4)), ndarray::Array1::zeros(4));
            match g {
                Some(g) => hint(s, t.view(), w.view(), b.view(), 1.0, Some((g, gw.view_mut(), gb.view_mut()))),
                None => hint(s, t.view(), w.view(), b.view(), 1.0, None),
            }
        };
        check_gradient(hint_s, &s);
        // The regressor's own gradient.
        check_gradient(
            |w, g| match g {
                Some(g) => {
                    let (mut a, mut c) = (Array2::zeros(s.raw_dim()), ndarray::Array1::zeros(4));
                    hint(s.view(), t.view(), w, b.view(), 1.0, Some((a.view_mut(), g, c.view_mut())))
                }
                None => hint(s.view(), t.view(), w, b.view(), 1.0, None),
            },
            &w,
        );
        check_gradient(|s, g| rkd_distance(s, t.view(), 1.0, g), &s);
        check_gradient(|s, g| rkd_angle(s, t.view(), 1.0, g), &s);
        check_gradient(|s, g| sp(s, t.view(), 1.0, g), &s);
        check_gradient(|s, g| Relation::RKD.eval(s, t.view(), g), &s);
        // Large differences (the Huber loss's linear part) too.
        let far = &s * 40.0;
        check_gradient(|s, g| rkd_distance(s, t.view(), 1.0, g), &far);
    }

    /// Reference values from PyTorch 2.15 (CPU, float64 on the float32 inputs the Rust test builds:
    /// the angle term's gradient moves by 1e-5 relative if the inputs are rounded otherwise), with
    /// RepDistiller's RKD and SP code:
    /// ```python
    /// import torch, torch.nn.functional as F, numpy as np
    /// f = np.float32
    /// s = torch.tensor(np.array([[f(np.sin(f(i*3+j)*f(0.7))) + f(0.1)*f(j) for j in range(3)]
    ///                            for i in range(5)], dtype=f).astype(float), requires_grad=True)
    /// t = torch.tensor(np.array([[f(np.cos(f(i*4+j)*f(0.3)))*(f(1)+f(i)*f(0.2)) for j in range(4)]
    ///                            for i in range(5)], dtype=f).astype(float))
    /// def pdist(e, eps=1e-12):
    ///     sq = e.pow(2).sum(1); prod = e @ e.t()
    ///     res = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt().clone()
    ///     res[range(len(e)), range(len(e))] = 0
    ///     return res
    /// def rkd_d(s, t):
    ///     td = pdist(t); td = td / td[td > 0].mean()
    ///     d = pdist(s); d = d / d[d > 0].mean()
    ///     return F.smooth_l1_loss(d, td)
    /// def rkd_a(s, t):
    ///     td = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
    ///     ta = torch.bmm(td, td.transpose(1, 2)).view(-1)
    ///     sd = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
    ///     sa = torch.bmm(sd, sd.transpose(1, 2)).view(-1)
    ///     return F.smooth_l1_loss(sa, ta)
    /// def sp(s, t):
    ///     gs = F.normalize(s @ s.t()); gt = F.normalize(t @ t.t())
    ///     return ((gt - gs) ** 2).sum() / (len(s) ** 2)
    /// for f in (rkd_d, rkd_a, sp):
    ///     v = f(s, t); g, = torch.autograd.grad(v, s)
    ///     print(f.__name__, v.item(), g[0].tolist(), g[4].tolist())
    /// ```
    #[test]
    fn values_and_gradients_equal_pytorch() {
        let (s, t) = batch();
        type Term = fn(ArrayView2<f32>, ArrayView2<f32>, f32, Option<ArrayViewMut2<f32>>) -> f64;
        type Case = (&'static str, Term, f64, [f64; 3], [f64; 3]);
        let cases: [Case; 3] = [
            ("rkd_d", rkd_distance, RKD_D.0, RKD_D.1, RKD_D.2),
            ("rkd_a", rkd_angle, RKD_A.0, RKD_A.1, RKD_A.2),
            ("sp", sp, SP.0, SP.1, SP.2),
        ];
        for (name, f, value, g0, g4) in cases {
            let mut g = Array2::<f32>::zeros(s.raw_dim());
            let v = f(s.view(), t.view(), 1.0, Some(g.view_mut()));
            assert!((v - value).abs() < 1e-5 * value.abs(), "{name}: {v} vs PyTorch {value}");
            for (row, want) in [(0, g0), (4, g4)] {
                for c in 0..3 {
                    let got = f64::from(g[[row, c]]);
                    assert!(
                        (got - want[c]).abs() < 1e-5 * (1.0 + want[c].abs()),
                        "{name} grad[{row},{c}]: {got} vs {}",
                        want[c]
                    );
                }
            }
        }
    }

    // Printed by the code above: value, gradient of row 0, gradient of row 4.
    const RKD_D: (f64, [f64; 3], [f64; 3]) = (
        0.1826032173374002,
        [0.0379708572345487, 0.033671507566621184, 0.013534832742244873],
        [-0.0050823979506700034, 0.028062531264387403, 0.04801127887356721],
    );
    const RKD_A: (f64, [f64; 3], [f64; 3]) = (
        0.1709431572933616,
        [0.015600268341710799, -0.003969478295164253, -0.021694413681361935],
        [-0.25711051424390896, -0.046049566938360695, 0.18671428096416118],
    );
    const SP: (f64, [f64; 3], [f64; 3]) = (
        0.34434834630750655,
        [-0.0378866455708225, -0.020250997141189955, 0.0071822710392309514],
        [0.005023205450709105, -0.005620583272401728, -0.011448341904103501],
    );
}
