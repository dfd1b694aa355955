//! A direct interpreter of a student's [`Op`] sequence, independent of the students' own buffered
//! passes: it gives the activation ranges int8 export calibrates on, and tests check it against each
//! student's forward pass (so the graph an exporter translates is the network that was trained).

use ndarray::{Array2, ArrayD, ArrayView2, Axis, IxDyn};

use crate::error::{Error, Result};
use crate::student::graph::EmbedOutput;
use crate::student::Op;

/// Runs `ops` over raw input rows `x`, calling `visit(i, output)` after op `i`; returns the logits.
pub fn run_ops(ops: &[Op], x: ArrayView2<f32>, mut visit: impl FnMut(usize, &ArrayD<f32>)) -> Result<Array2<f32>> {
    let mut a: ArrayD<f32> = x.to_owned().into_dyn();
    for (i, op) in ops.iter().enumerate() {
        a = apply(op, a)?;
        visit(i, &a);
    }
    a.into_dimensionality().map_err(|e| Error::Internal(format!("student graph does not end in [rows, classes]: {e}")))
}

fn apply(op: &Op, a: ArrayD<f32>) -> Result<ArrayD<f32>> {
    let n = a.shape()[0];
    let shape = a.shape().to_vec();
    let bad = |what: &str| Error::Internal(format!("student graph: {what} on a tensor of shape {shape:?}"));
    Ok(match op {
        Op::Scale { shift, scale } => {
            let mut a = a;
            for mut row in a.axis_iter_mut(Axis(0)) {
                for ((v, s), k) in row.iter_mut().zip(shift).zip(scale) {
                    *v = (*v - s) * k;
                }
            }
            a
        }
        Op::Linear { w, b } => {
            let a2 = a.view().into_dimensionality::<ndarray::Ix2>().map_err(|_| bad("Linear"))?;
            (a2.dot(w) + b).into_dyn()
        }
        Op::Relu => a.mapv(|v| v.max(0.0)),
        Op::Image { channels, height, width } => {
            a.into_shape_with_order(IxDyn(&[n, *channels, *height, *width])).map_err(|_| bad("Image"))?
        }
        Op::Conv { w, b } => conv(&a, w, b).ok_or_else(|| bad("Conv"))?,
        Op::MaxPool { dims } => maxpool(&a, *dims).ok_or_else(|| bad("MaxPool"))?,
        Op::Flatten => {
            let rest = a.len() / n.max(1);
            a.into_shape_with_order(IxDyn(&[n, rest])).map_err(|_| bad("Flatten"))?
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            if a.ndim() < 3 {
                return Err(bad("a global pool"));
            }
            let c = a.shape()[1];
            let positions = a.len() / (n * c).max(1);
            let flat =
                a.into_shape_with_order(IxDyn(&[n, c, positions])).map_err(|_| Error::Internal("pool".into()))?;
            let mean = matches!(op, Op::GlobalAveragePool);
            ArrayD::from_shape_fn(IxDyn(&[n, c]), |i| {
                let v = flat.slice(ndarray::s![i[0], i[1], ..]);
                if mean {
                    v.sum() / positions as f32
                } else {
                    v.fold(f32::NEG_INFINITY, |m, &x| m.max(x))
                }
            })
        }
        Op::Embed { table, pad_id, output } => {
            let a2 = a.view().into_dimensionality::<ndarray::Ix2>().map_err(|_| bad("Embed"))?;
            let (len, dim) = (a2.ncols(), table.ncols());
            let row_of = |v: f32| {
                let id = v as i64;
                (id >= 0 && id < table.nrows() as i64 && pad_id.is_none_or(|p| i64::from(p) != id))
                    .then_some(id as usize)
            };
            match output {
                EmbedOutput::Sequence => ArrayD::from_shape_fn(IxDyn(&[n, dim, len]), |i| {
                    row_of(a2[[i[0], i[2]]]).map_or(0.0, |r| table[[r, i[1]]])
                }),
                EmbedOutput::Concat => ArrayD::from_shape_fn(IxDyn(&[n, len * dim]), |i| {
                    row_of(a2[[i[0], i[1] / dim]]).map_or(0.0, |r| table[[r, i[1] % dim]])
                }),
                EmbedOutput::Mean | EmbedOutput::Max => {
                    let mut out = ArrayD::zeros(IxDyn(&[n, dim]));
                    for (r, row) in a2.rows().into_iter().enumerate() {
                        let ids: Vec<usize> = row.iter().filter_map(|&v| row_of(v)).collect();
                        for d in 0..dim {
                            let col = ids.iter().map(|&t| table[[t, d]]);
                            out[[r, d]] = match (output, ids.is_empty()) {
                                (_, true) => 0.0,
                                (EmbedOutput::Mean, false) => col.sum::<f32>() / ids.len() as f32,
                                _ => col.fold(f32::NEG_INFINITY, f32::max),
                            };
                        }
                    }
                    out
                }
            }
        }
    })
}

/// A convolution with stride 1 and padding `k / 2`, on `[n, cin, l]` or `[n, cin, h, w]` (direct loops).
fn conv(a: &ArrayD<f32>, w: &ArrayD<f32>, b: &ndarray::Array1<f32>) -> Option<ArrayD<f32>> {
    let (n, cin) = (a.shape()[0], a.shape()[1]);
    let (cout, kernel) = (w.shape()[0], &w.shape()[2..]);
    if w.shape()[1] != cin || kernel.len() + 2 != a.ndim() {
        return None;
    }
    // As [n, cin, h, w] with h = 1 for sequences.
    let (h, wd, kh, kw) = match (a.ndim(), kernel) {
        (3, &[k]) => (1, a.shape()[2], 1, k),
        (4, &[kh, kw]) => (a.shape()[2], a.shape()[3], kh, kw),
        _ => return None,
    };
    let a4 = a.view().into_shape_with_order(IxDyn(&[n, cin, h, wd])).ok()?;
    let w4 = w.view().into_shape_with_order(IxDyn(&[cout, cin, kh, kw])).ok()?;
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[n, cout, h, wd]));
    for s in 0..n {
        for o in 0..cout {
            for y in 0..h {
                for x in 0..wd {
                    let mut acc = b[o];
                    for c in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (sy, sx) =
                                    (y as i64 + ky as i64 - (kh / 2) as i64, x as i64 + kx as i64 - (kw / 2) as i64);
                                if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < wd {
                                    acc += w4[[o, c, ky, kx]] * a4[[s, c, sy as usize, sx as usize]];
                                }
                            }
                        }
                    }
                    out[[s, o, y, x]] = acc;
                }
            }
        }
    }
    let mut shape = a.shape().to_vec();
    shape[1] = cout;
    out.into_shape_with_order(IxDyn(&shape)).ok()
}

/// Max-pooling over windows of 2 in the last `dims` dimensions, stride 2 (floor mode).
fn maxpool(a: &ArrayD<f32>, dims: usize) -> Option<ArrayD<f32>> {
    let (n, c) = (a.shape()[0], a.shape()[1]);
    let (h, w) = match (a.ndim(), dims) {
        (3, 1) => (1, a.shape()[2]),
        (4, 2) => (a.shape()[2], a.shape()[3]),
        _ => return None,
    };
    let (h2, w2, py) = if dims == 2 { (h / 2, w / 2, 2) } else { (1, w / 2, 1) };
    let a4 = a.view().into_shape_with_order(IxDyn(&[n, c, h, w])).ok()?;
    let out = ArrayD::from_shape_fn(IxDyn(&[n, c, h2, w2]), |i| {
        let mut m = f32::NEG_INFINITY;
        for dy in 0..py {
            for dx in 0..2 {
                m = m.max(a4[[i[0], i[1], i[2] * py + dy, i[3] * 2 + dx]]);
            }
        }
        m
    });
    let shape = if dims == 2 { vec![n, c, h2, w2] } else { vec![n, c, w2] };
    out.into_shape_with_order(IxDyn(&shape)).ok()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::student::{Arch, Bag, EmbedSpec, StudentKind};

    /// Every kind of student: the interpreter of its graph equals its own forward pass.
    #[test]
    fn the_graph_of_every_student_computes_its_forward_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let embed = |channels: Vec<usize>, bag| Arch {
            kind: StudentKind::Embed,
            dims: vec![12, 5, 3],
            channels,
            image: vec![],
            embed: Some(EmbedSpec { vocab: 9, dim: 4, pad_id: Some(0), bag }),
            batch_norm: false,
        };
        let archs = [
            Arch { kind: StudentKind::Mlp, dims: vec![32, 7, 3], ..Default::default() },
            Arch {
                kind: StudentKind::Cnn,
                dims: vec![32, 6, 3],
                channels: vec![3, 4],
                image: vec![2, 4, 4],
                ..Arch::default()
            },
            Arch {
                kind: StudentKind::Cnn,
                dims: vec![32, 3],
                channels: vec![3],
                image: vec![2, 4, 4],
                ..Arch::default()
            },
            Arch {
                kind: StudentKind::Cnn,
                dims: vec![32, 3],
                channels: vec![3, 2],
                image: vec![2, 4, 4],
                batch_norm: true,
                ..Arch::default()
            },
            embed(vec![], Bag::Mean),
            embed(vec![], Bag::Max),
            embed(vec![], Bag::Concat),
            embed(vec![4, 3], Bag::Mean),
        ];
        for arch in archs {
            let student = arch.init(&mut rng).unwrap();
            let x = Array2::from_shape_simple_fn((6, student.input_width()), || rng.random_range(0..11) as f32);
            let want = student.forward(x.view());
            let got = run_ops(&student.graph(), x.view(), |_, _| {}).unwrap();
            for (g, w) in got.iter().zip(want.iter()) {
                assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{}: {g} vs {w}", arch.describe());
            }
        }
    }
}
