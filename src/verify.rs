//! `verify`: a full check of a soft-label dataset, for datasets that travelled between teams.
//!
//! Opening a dataset already checks the manifest, every part's file, size, sha256, footer, column types
//! and byte sizes, and the ids (unique, in range) and label count ([`SoftLabels::open`]); decoding checks
//! every value as every reader does (finite logits, class indices in range, top-k rows distinct,
//! descending and below their normaliser, sampled rows ascending, views' shifts). `verify` reads every
//! row that way and, for dense datasets, also checks `soft` equal to softmax(logits / T).

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::soften::softmax_t;
use crate::store::{columns, Outputs, SoftLabels};

/// Largest |soft - softmax(logits / T)| accepted (soft is the f32 rounding of an f64 computation).
pub const SOFT_TOLERANCE: f64 = 1e-6;
/// The same for float16 datasets.
pub const SOFT_TOLERANCE_F16: f64 = 2e-3;

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Rows read.
    pub rows: u64,
    /// Parts read.
    pub parts: usize,
    /// Largest |soft - softmax(logits / T)| seen (dense datasets).
    pub max_soft_error: Option<f64>,
}

/// Verifies `dir`; the first problem is returned as an error naming the file, column and row.
pub fn verify(dir: &Path) -> Result<Verified> {
    let ds = SoftLabels::open(dir)?;
    let m = ds.manifest();
    let (k, t) = (m.num_classes, m.temperature);
    // float16 storage rounds soft (and the logits it is recomputed from) to 11 significant bits.
    let tolerance = if m.float16 { SOFT_TOLERANCE_F16 } else { SOFT_TOLERANCE };
    let mut max_err = 0f64;
    let mut p = Vec::new();
    let rows = ds.scan(true, |path, rb, first_row, rows| {
        // Stored features: the manifest's width (checked with the column types) and finite values.
        for f in &m.features {
            let v = crate::store::float_list(path, rb, &f.column, f.width)?;
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{}', row {}: value {} is {}",
                        f.column,
                        first_row + (i / f.width.max(1)) as u64,
                        i % f.width.max(1),
                        v[i]
                    ),
                ));
            }
        }
        let Outputs::Dense { logits } = &rows.outputs else { return Ok(()) };
        // The column's type and width K were checked against the manifest when the part was opened.
        let sv = crate::store::float_list(path, rb, columns::SOFT, k)?;
        p.resize(k, 0f32);
        for (i, z) in logits.outer_iter().enumerate() {
            softmax_t(z.as_slice().unwrap_or(&z.to_vec()), t, &mut p);
            for (j, (&a, &b)) in sv[i * k..(i + 1) * k].iter().zip(&p).enumerate() {
                let err = (f64::from(a) - f64::from(b)).abs();
                if err.is_nan() || err > tolerance {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "column 'soft', row {}: value {j} is {a}, softmax(logits / {t}) gives {b}",
                            first_row + i as u64
                        ),
                    ));
                }
                max_err = max_err.max(err);
            }
        }
        Ok(())
    })?;
    Ok(Verified { rows, parts: m.parts.len(), max_soft_error: m.form.is_dense().then_some(max_err) })
}
