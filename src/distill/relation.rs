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
use crate::student::{Student, Tap};

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
    /// Attention transfer (Zagoruyko, Komodakis 2017): the spatial attention maps of a student
    /// convolution block and of a stored teacher map, compared after L2 normalisation.
    At {
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
    /// Attention transfer with the paper's (and RepDistiller's) weight, beta = 1000.
    pub const AT: Relation = Relation::At { weight: 1000.0 };

    /// The command-line flag that adds it.
    pub fn flag(&self) -> &'static str {
        match self {
            Relation::Rkd { .. } => "--rkd",
            Relation::Sp { .. } => "--sp",
            Relation::Hint { .. } => "--hint",
            Relation::At { .. } => "--at",
        }
    }

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
            // Need their regressor (see `hint`) or the map's channels (see `attention`).
            Relation::Hint { .. } | Relation::At { .. } => 0.0,
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
        crate::util::gemm(1.0, &dr, &w.t(), 1.0, &mut gs);
        crate::util::gemm(1.0, &s.t(), &dr, 1.0, &mut gw);
        gb += &dr.sum_axis(Axis(0));
    }
    loss
}

/// The attention map of rows of maps `[C, positions]` (CHW, flattened): per position the mean over
/// channels of the squares, `q`, then `q / max(|q|, 1e-12)` (F.normalize). Returns the maps and each
/// row's `|q|`.
fn attention_maps(x: ArrayView2<f32>, channels: usize) -> (Array2<f64>, Vec<f64>) {
    let positions = x.ncols() / channels.max(1);
    let mut q = Array2::<f64>::zeros((x.nrows(), positions));
    let mut norms = Vec::with_capacity(x.nrows());
    for (row, mut out) in x.rows().into_iter().zip(q.rows_mut()) {
        let row: std::borrow::Cow<[f32]> = row.as_slice().map_or_else(|| row.to_vec().into(), Into::into);
        out.assign(&ndarray::ArrayView1::from(&crate::soften::attention_map(&row, channels)));
        let norm = out.dot(&out).sqrt();
        out.mapv_inplace(|v| v / norm.max(1e-12));
        norms.push(norm);
    }
    (q, norms)
}

/// Attention transfer (unweighted), RepDistiller's `Attention` with p = 2: `mean((a(s) - t)^2)` over
/// the n x positions values, where `a(s)` is the normalised attention map of the student maps `s`
/// (`[n, channels x positions]`, CHW) and `t` the teacher's, already normalised (`[n, positions]`);
/// adds `weight` x d / d s into `grad`.
pub fn attention(
    s: ArrayView2<f32>,
    channels: usize,
    t: ArrayView2<f32>,
    weight: f32,
    grad: Option<ArrayViewMut2<f32>>,
) -> f64 {
    let (a, norms) = attention_maps(s, channels);
    let count = (t.nrows() * t.ncols()).max(1) as f64;
    let diff = &a - &t.mapv(f64::from);
    let loss = diff.iter().map(|d| d * d).sum::<f64>() / count;
    if let Some(mut grad) = grad {
        let positions = t.ncols();
        let scale = 2.0 * f64::from(weight) / count;
        for (r, mut g) in grad.rows_mut().into_iter().enumerate() {
            let (ar, dr) = (a.row(r), diff.row(r));
            // d / d q through the normalisation (the clamp makes it a plain scaling below 1e-12).
            let da = &dr * scale;
            let dq = if norms[r] > 1e-12 { (&da - &(&ar * ar.dot(&da))) / norms[r] } else { da / 1e-12 };
            let srow = s.row(r);
            for c in 0..channels {
                for p in 0..positions {
                    let i = c * positions + p;
                    g[i] += (dq[p] * 2.0 * f64::from(srow[i]) / channels as f64) as f32;
                }
            }
        }
    }
    loss
}

/// Resizes a map `[h, w]` to `[ho, wo]` as PyTorch's `F.interpolate(mode="bilinear",
/// align_corners=False)` does (no antialiasing).
pub fn bilinear(x: &[f64], (h, w): (usize, usize), (ho, wo): (usize, usize)) -> Vec<f64> {
    let axis = |i: usize, n: usize, no: usize| -> (usize, usize, f64) {
        let src = (((i as f64) + 0.5) * (n as f64 / no as f64) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n - 1);
        (i0, (i0 + 1).min(n - 1), src - i0 as f64)
    };
    let mut out = Vec::with_capacity(ho * wo);
    for y in 0..ho {
        let (y0, y1, ly) = axis(y, h, ho);
        for xo in 0..wo {
            let (x0, x1, lx) = axis(xo, w, wo);
            let top = (1.0 - lx) * x[y0 * w + x0] + lx * x[y0 * w + x1];
            let bottom = (1.0 - lx) * x[y1 * w + x0] + lx * x[y1 * w + x1];
            out.push((1.0 - ly) * top + ly * bottom);
        }
    }
    out
}

/// Attention transfer's target from a stored teacher row: the attention map of a map `[C, h, w]`
/// (or the stored attention map `[h, w]`), resized bilinearly to the student's `[hs, ws]` when the
/// sizes differ, then L2-normalised (F.normalize).
pub fn attention_target(
    values: ndarray::ArrayView1<f32>,
    (h, w): (usize, usize),
    is_attention: bool,
    (hs, ws): (usize, usize),
) -> Vec<f64> {
    let q: Vec<f64> = if is_attention {
        values.iter().map(|&v| f64::from(v)).collect()
    } else {
        let row: std::borrow::Cow<[f32]> = values.as_slice().map_or_else(|| values.to_vec().into(), Into::into);
        crate::soften::attention_map(&row, row.len() / (h * w).max(1))
    };
    let q = if (hs, ws) == (h, w) { q } else { bilinear(&q, (h, w), (hs, ws)) };
    let norm = q.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    q.into_iter().map(|v| v / norm).collect()
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

/// An objective with feature- and relation-based terms added: the inner objective's loss on the
/// logits, plus each term on a student layer against its stored teacher feature.
pub struct WithRelations<'t> {
    /// The logit objective (KD, DKD, ...).
    pub inner: Box<dyn Objective + 't>,
    terms: Vec<Term<'t>>,
    taps: Vec<Tap>,
}

/// A term, the student layer it reads and that layer's shape, and the stored teacher feature.
struct Term<'t> {
    relation: Relation,
    tap: Tap,
    shape: Vec<usize>,
    feature: &'t FeatureTable,
    /// Attention transfer: the teacher map's `[H, W]` and whether the stored rows are attention maps.
    teacher_map: Option<((usize, usize), bool)>,
}

/// The layers `student` offers to terms, as the command line names them.
fn layers_of(student: &dyn Student) -> String {
    let mut out = vec![];
    for tap in (0..).map(Tap::Block).take_while(|&t| student.tap_shape(t).is_some()) {
        out.push(format!("@{tap} {:?}", student.tap_shape(tap).unwrap_or_default()));
    }
    for tap in (0..).map(Tap::Hidden).take_while(|&t| student.tap_shape(t).is_some()) {
        out.push(format!("@{tap} {:?}", student.tap_shape(tap).unwrap_or_default()));
    }
    if let Some(shape) = student.tap_shape(Tap::Embedding) {
        out.push(format!("@embedding {shape:?}"));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// The teacher map `[H, W]` of a stored feature attention transfer can use, and whether its rows are
/// attention maps already (else whole maps `[C, H, W]`).
fn teacher_map(feature: &FeatureTable) -> Result<((usize, usize), bool)> {
    use crate::teacher::FeaturePool;
    let whole = matches!(feature.pool, FeaturePool::None | FeaturePool::Attention);
    match feature.shape[..] {
        [c, h, w] if whole && !feature.projected && h * w > 0 => {
            let attention = feature.pool == FeaturePool::Attention;
            let expected = if attention { h * w } else { c * h * w };
            if feature.width != expected {
                return Err(Error::Config(format!(
                    "--at {}: the manifest's width {} does not fit its shape {:?} pooled as {:?}",
                    feature.name, feature.width, feature.shape, feature.pool
                )));
            }
            Ok(((h, w), attention))
        }
        _ => Err(Error::Config(format!(
            "--at {}: needs a stored conv map [C, H, W] (precompute --features {} --feature-pool attention, or \
             none, and no --feature-dim); it is stored with shape {:?}, pooled as {:?}{}",
            feature.name,
            feature.name,
            feature.shape,
            feature.pool,
            if feature.projected { ", projected" } else { "" }
        ))),
    }
}

impl<'t> WithRelations<'t> {
    /// `inner` plus each of `terms` (its relation, the student layer, or the default, and the teacher
    /// feature) for `student`: refused when the student lacks the layer, or, for attention transfer,
    /// when the layer or the feature is not a map. Attention transfer's default layer is the
    /// convolution block whose map size is nearest the teacher's.
    pub fn new(
        inner: Box<dyn Objective + 't>,
        terms: Vec<(Relation, Option<Tap>, &'t FeatureTable)>,
        student: &dyn Student,
    ) -> Result<Self> {
        let mut out = Vec::with_capacity(terms.len());
        for (relation, tap, feature) in terms {
            let flag = relation.flag();
            let teacher = match relation {
                Relation::At { .. } => Some(teacher_map(feature)?),
                _ => None,
            };
            let tap = match (tap, teacher) {
                (Some(t), _) => t,
                (None, Some(((h, w), _))) => {
                    let blocks = (0..).map(Tap::Block).take_while(|&t| student.tap_shape(t).is_some());
                    let distance = |t: &Tap| -> u64 {
                        let shape = student.tap_shape(*t).unwrap_or_default();
                        let area = shape.get(1).copied().unwrap_or(0) * shape.get(2).copied().unwrap_or(0);
                        (((area as f64).ln() - ((h * w) as f64).ln()).abs() * 1e6) as u64
                    };
                    blocks.min_by_key(distance).ok_or_else(|| {
                        Error::Config(format!(
                            "{flag} {}: attention transfer needs a convolution block of a cnn student; it has {}",
                            feature.name,
                            layers_of(student)
                        ))
                    })?
                }
                (None, None) => Tap::Embedding,
            };
            let Some(shape) = student.tap_shape(tap) else {
                return Err(Error::Config(format!(
                    "{flag} {}@{tap}: the student has no such layer; it has {}",
                    feature.name,
                    layers_of(student)
                )));
            };
            if teacher.is_some() && shape.len() != 3 {
                return Err(Error::Config(format!(
                    "{flag} {}@{tap}: attention transfer needs a convolution block of a cnn student; it has {}",
                    feature.name,
                    layers_of(student)
                )));
            }
            let same = |t: &Term| t.relation.flag() == flag && t.feature.name == feature.name && t.tap == tap;
            if out.iter().any(same) {
                return Err(Error::Config(format!("{flag} {}@{tap} is given twice", feature.name)));
            }
            out.push(Term { relation, tap, shape, feature, teacher_map: teacher });
        }
        let mut taps: Vec<Tap> = Vec::new();
        for t in &out {
            if !taps.contains(&t.tap) {
                taps.push(t.tap);
            }
        }
        Ok(WithRelations { inner, terms: out, taps })
    }

    /// Each term's relation, layer and feature, as resolved (for the log).
    pub fn describe(&self) -> Vec<String> {
        self.terms.iter().map(|t| format!("{} {}@{} {:?}", t.relation.flag(), t.feature.name, t.tap, t.shape)).collect()
    }

    /// Each term's name in the training log: its flag without dashes, the feature and the layer
    /// (`at /Relu_3_output_0@block2`).
    pub fn term_names(&self) -> Vec<String> {
        self.terms.iter().map(|t| format!("{} {}@{}", &t.relation.flag()[2..], t.feature.name, t.tap)).collect()
    }
}

impl Term<'_> {
    /// The teacher's target for row `r` of `table`: its stored values, or for attention transfer its
    /// attention map resized to the student's map and normalised.
    fn target(&self, values: ndarray::ArrayView1<f32>, mut out: ndarray::ArrayViewMut1<f32>) {
        match self.teacher_map {
            Some((map, is_attention)) => {
                let t = attention_target(values, map, is_attention, (self.shape[1], self.shape[2]));
                out.iter_mut().zip(&t).for_each(|(o, v)| *o = *v as f32);
            }
            None => out.assign(&values),
        }
    }

    /// The target's width.
    fn target_width(&self) -> usize {
        match self.teacher_map {
            Some(_) => self.shape[1] * self.shape[2],
            None => self.feature.width,
        }
    }
}

impl Objective for WithRelations<'_> {
    fn prepare<'a>(&self, rows: &'a TeacherOutputs) -> Result<Box<dyn Loss + 'a>> {
        let inner = self.inner.prepare(rows)?;
        let n = rows.len();
        let mut prepared = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            let table = term.feature;
            let mut t = Array2::<f32>::zeros((n, term.target_width()));
            for r in 0..n {
                let view = rows.views.as_ref().map_or(0, |v| v.view[r]);
                let Some(row) = table.row(rows.ids[r], view) else {
                    return Err(Error::Config(format!(
                        "row id {} (view {view}) has no stored feature '{}'",
                        rows.ids[r], table.name
                    )));
                };
                term.target(table.values.row(row), t.row_mut(r));
            }
            let tap = self.taps.iter().position(|&x| x == term.tap).unwrap_or(0);
            prepared.push(Prepared { relation: term.relation, tap, channels: term.shape[0], teacher: t });
        }
        Ok(Box::new(RelationLoss { inner, terms: prepared, taps: self.taps.clone() }))
    }

    /// One regressor per hint term, `[E, D]` and `[D]` (E the width of its layer), initialised as
    /// PyTorch's `nn.Linear`.
    fn aux_params(&self, seed: u64) -> Vec<ndarray::ArrayD<f32>> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6869_6e74); // "hint"
        let mut out = Vec::new();
        for term in self.terms.iter().filter(|t| matches!(t.relation, Relation::Hint { .. })) {
            let e = term.shape.iter().product();
            let l = crate::student::layers::Linear::init(e, term.feature.width, &mut rng);
            out.push(l.w.into_dyn());
            out.push(l.b.into_dyn());
        }
        out
    }
}

/// A term of a prepared [`WithRelations`]: the teacher's targets of the window's rows.
struct Prepared {
    relation: Relation,
    /// Its index in [`Loss::taps`].
    tap: usize,
    /// Channels of the student's map (attention transfer).
    channels: usize,
    teacher: Array2<f32>,
}

/// A prepared [`WithRelations`].
struct RelationLoss<'a> {
    inner: Box<dyn Loss + 'a>,
    terms: Vec<Prepared>,
    taps: Vec<Tap>,
}

impl Loss for RelationLoss<'_> {
    fn row_wise(&self) -> bool {
        false
    }

    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64 {
        self.inner.eval(logits, rows, scale, grad)
    }

    fn taps(&self) -> Vec<Tap> {
        self.taps.clone()
    }

    fn eval_taps(
        &self,
        values: &[ArrayView2<f32>],
        rows: &[usize],
        grads: &mut [ArrayViewMut2<f32>],
        aux: &[ndarray::ArrayD<f32>],
        aux_grad: &mut [ndarray::ArrayD<f32>],
    ) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.terms.len());
        let mut next = 0;
        for term in &self.terms {
            let mut total = 0.0;
            let (Some(s), Some(grad)) = (values.get(term.tap), grads.get_mut(term.tap)) else {
                out.push(0.0);
                continue;
            };
            let t = term.teacher.select(Axis(0), rows);
            match term.relation {
                Relation::Hint { weight } => {
                    let (Some(w), Some(b)) = (aux.get(next), aux.get(next + 1)) else {
                        out.push(0.0);
                        continue;
                    };
                    let (gw_gb, _) = aux_grad[next..].split_at_mut(2);
                    let (gw, gb) = gw_gb.split_at_mut(1);
                    let views = (
                        w.view().into_dimensionality::<ndarray::Ix2>(),
                        b.view().into_dimensionality::<ndarray::Ix1>(),
                        gw[0].view_mut().into_dimensionality::<ndarray::Ix2>(),
                        gb[0].view_mut().into_dimensionality::<ndarray::Ix1>(),
                    );
                    if let (Ok(w), Ok(b), Ok(gw), Ok(gb)) = views {
                        total += f64::from(weight) * hint(*s, t.view(), w, b, weight, Some((grad.view_mut(), gw, gb)));
                    }
                    next += 2;
                }
                Relation::At { weight } => {
                    total += f64::from(weight) * attention(*s, term.channels, t.view(), weight, Some(grad.view_mut()));
                }
                relation => total += relation.eval(*s, t.view(), Some(grad.view_mut())),
            }
            out.push(total * rows.len() as f64);
        }
        out
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

    /// Attention transfer against PyTorch 2.15 (float64 on the float32 inputs below), RepDistiller's
    /// `Attention` (p = 2) with the teacher's map resized by `F.interpolate`:
    /// ```python
    /// import torch, torch.nn.functional as F, numpy as np
    /// f = np.float32
    /// s = torch.tensor(np.array([[f(np.sin(f(i*36+j)*f(0.37))) for j in range(36)] for i in range(2)],
    ///                           dtype=f).astype(float), requires_grad=True)
    /// tm = torch.tensor(np.array([[f(np.cos(f(i*30+j)*f(1.3)))*(f(1)+f((i*30+j)%7)*f(0.3))
    ///                              for j in range(30)] for i in range(2)], dtype=f).astype(float))
    /// q = tm.view(2, 5, 2, 3).pow(2).mean(1, keepdim=True)                      # teacher [5, 2, 3]
    /// q = F.interpolate(q, size=(3, 4), mode="bilinear", align_corners=False)   # to the student's 3 x 4
    /// t = F.normalize(q.view(2, -1))
    /// a = F.normalize(s.view(2, 3, 3, 4).pow(2).mean(1).view(2, -1))
    /// v = (a - t).pow(2).mean()
    /// g, = torch.autograd.grad(v, s)
    /// print(t[0].tolist(), t[1].tolist(), v.item(), g[0, :6].tolist(), g[1, 30:].tolist())
    /// ```
    #[test]
    fn attention_transfer_equals_pytorch_and_finite_differences() {
        use crate::student::Tap;
        let s = Array2::from_shape_fn((2, 36), |(i, j)| ((i * 36 + j) as f32 * 0.37).sin());
        let tm = Array2::from_shape_fn((2, 30), |(i, j)| {
            let k = i * 30 + j;
            (k as f32 * 1.3).cos() * (1.0 + (k % 7) as f32 * 0.3)
        });
        let mut t = Array2::<f32>::zeros((2, 12));
        for r in 0..2 {
            let target = attention_target(tm.row(r), (2, 3), false, (3, 4));
            for (j, (&got, &want)) in target.iter().zip(&AT_TARGET[r]).enumerate() {
                assert!((got - want).abs() < 1e-6, "target[{r},{j}]: {got} vs PyTorch {want}");
                t[[r, j]] = got as f32;
            }
        }
        // The stored attention map (`--feature-pool attention`) gives the same target.
        let stored = Array2::from_shape_fn((2, 6), |(r, p)| {
            (0..5).map(|c| f64::from(tm[[r, c * 6 + p]]).powi(2)).sum::<f64>() as f32 / 5.0
        });
        let again = attention_target(stored.row(1), (2, 3), true, (3, 4));
        assert!(again.iter().zip(&AT_TARGET[1]).all(|(a, b)| (a - b).abs() < 1e-6));
        let mut g = Array2::<f32>::zeros(s.raw_dim());
        let v = attention(s.view(), 3, t.view(), 1.0, Some(g.view_mut()));
        assert!((v - AT_VALUE).abs() < 1e-5 * AT_VALUE, "{v} vs PyTorch {AT_VALUE}");
        for (j, want) in AT_G0.iter().enumerate() {
            assert!((f64::from(g[[0, j]]) - want).abs() < 1e-6, "grad[0,{j}]: {} vs {want}", g[[0, j]]);
        }
        for (j, want) in AT_G1.iter().enumerate() {
            assert!(
                (f64::from(g[[1, 30 + j]]) - want).abs() < 1e-6,
                "grad[1,{}]: {} vs {want}",
                30 + j,
                g[[1, 30 + j]]
            );
        }
        check_gradient(|s, g| attention(s, 3, t.view(), 1.0, g), &s);
        assert_eq!(Tap::parse("block2"), Some(Tap::Block(1)));
        assert_eq!(Tap::parse("1"), Some(Tap::Hidden(0)));
        assert_eq!((Tap::parse("0"), Tap::parse("block"), Tap::parse("x")), (None, None, None));
        assert_eq!(Tap::Block(1).to_string(), "block2");
    }

    const AT_TARGET: [[f64; 12]; 2] = [
        [
            0.32734198770862577,
            0.28043061494074895,
            0.2673873327700172,
            0.2925599019200079,
            0.31734149893036223,
            0.25459767319979887,
            0.2551467969205537,
            0.3188058288523753,
            0.30734101015209864,
            0.2287647314588488,
            0.2429062610710903,
            0.34505175578474256,
        ],
        [
            0.2672712606658666,
            0.25736992668499575,
            0.22920454541357502,
            0.1921635772754113,
            0.24804914352092136,
            0.30114288615072554,
            0.3104561914749849,
            0.2728846243856128,
            0.2288270263759761,
            0.34491584561645544,
            0.39170783753639477,
            0.35360567149581434,
        ],
    ];
    const AT_VALUE: f64 = 0.004388285637469166;
    const AT_G0: [f64; 6] = [
        -0.0,
        -0.0006682635522851924,
        -0.0003519279566646928,
        0.00022384286789659596,
        0.0009053513163553111,
        0.0034369055127324863,
    ];
    const AT_G1: [f64; 6] = [
        0.0016282905114928573,
        0.0006814027325551403,
        -8.871221448900389e-06,
        -0.0010632361099116579,
        -0.0019236654259485611,
        -0.0005982087232759735,
    ];

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
