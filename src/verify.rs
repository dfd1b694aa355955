//! `verify`: a full check of a soft-label dataset, for datasets that travelled between teams.
//!
//! Beyond what every reader checks on open (manifest checksum and fields, schema version, each part's size,
//! sha256 and metadata), it reads every row: ids unique and within each part's recorded range, row
//! counts, no NaN, and `soft` equal to softmax(logits / T).

use std::collections::HashSet;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, UInt64Type};
use arrow_array::Array;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::soften::softmax_t;
use crate::store::{columns, SoftLabels};

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
    if !ds.manifest().form.is_dense() {
        // Reading every row checks the sparse columns' types, class ranges and values.
        ds.load()?;
    }
    let m = ds.manifest();
    let k = m.num_classes;
    let mut seen = HashSet::with_capacity(m.rows as usize);
    let mut max_err = 0f64;
    let mut total = 0u64;
    let mut p = vec![0f32; k];
    // float16 storage rounds soft (and the logits it is recomputed from) to 11 significant bits.
    let tolerance = if m.float16 { SOFT_TOLERANCE_F16 } else { SOFT_TOLERANCE };
    for part in &m.parts {
        let path = dir.join(&part.file);
        let reader = crate::data::open_parquet(&path)?
            .with_batch_size(8192)
            .build()
            .map_err(|error| Error::Parquet { path: path.clone(), error })?;
        let mut row = 0u64;
        for rb in reader {
            let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {row}: {e}")))?;
            let col = |name: &str| {
                rb.column_by_name(name).ok_or_else(|| Error::dataset(&path, format!("no column '{name}'")))
            };
            let ids = col(columns::ID)?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| Error::dataset(&path, "column 'id' is not uint64"))?
                .clone();
            // A row is keyed by (id, view); a dataset without views has view 0 throughout.
            let views: Vec<u16> = match &m.views {
                Some(v) => {
                    let (view, sx, sy) = crate::store::read_views(&path, &rb)?;
                    if let Some(i) = (0..rb.num_rows()).find(|&i| v.shift(ids.value(i), view[i]) != (sx[i], sy[i])) {
                        return Err(Error::dataset(
                            &path,
                            format!(
                                "columns 'shift_x', 'shift_y', row {}: ({}, {}) is not view {}'s shift",
                                row + i as u64,
                                sx[i],
                                sy[i],
                                view[i]
                            ),
                        ));
                    }
                    view.to_vec()
                }
                None => vec![0; rb.num_rows()],
            };
            if !m.form.is_dense() {
                // Sparse parts: ids as above; class indices and values were range-checked by the reader.
                for (i, &view) in views.iter().enumerate() {
                    let (r, id) = (row + i as u64, ids.value(i));
                    if !seen.insert((id, view)) {
                        return Err(Error::dataset(&path, format!("column 'id', row {r}: duplicate id {id}")));
                    }
                }
                row += rb.num_rows() as u64;
                continue;
            }
            let logits = col(columns::LOGITS)?.as_fixed_size_list().clone();
            let soft = col(columns::SOFT)?.as_fixed_size_list().clone();
            let lv = logits.values().slice(logits.value_offset_at(0), logits.len() * k);
            let sv = soft.values().slice(soft.value_offset_at(0), soft.len() * k);
            let floats = |a: &arrow_array::ArrayRef, name: &str| -> Result<Vec<f32>> {
                if let Some(v) = a.as_primitive_opt::<Float32Type>() {
                    Ok(v.values().to_vec())
                } else if let Some(v) = a.as_primitive_opt::<Float16Type>() {
                    Ok(v.values().iter().map(|h| h.to_f32()).collect())
                } else {
                    Err(Error::dataset(&path, format!("column '{name}' is not float32 or float16")))
                }
            };
            let (lv, sv) = (floats(&lv, columns::LOGITS)?, floats(&sv, columns::SOFT)?);
            for i in 0..rb.num_rows() {
                let r = row + i as u64;
                let id = ids.value(i);
                if !seen.insert((id, views[i])) {
                    let what = if m.views.is_some() { format!(" (view {})", views[i]) } else { String::new() };
                    return Err(Error::dataset(&path, format!("column 'id', row {r}: duplicate id {id}{what}")));
                }
                if id < part.min_id || id > part.max_id {
                    return Err(Error::dataset(
                        &path,
                        format!(
                            "column 'id', row {r}: id {id} outside the manifest's range {}..={}",
                            part.min_id, part.max_id
                        ),
                    ));
                }
                let z = &lv[i * k..(i + 1) * k];
                if let Some(j) = z.iter().position(|v| v.is_nan() || *v == f32::INFINITY) {
                    return Err(Error::dataset(&path, format!("column 'logits', row {r}: value {j} is {}", z[j])));
                }
                softmax_t(z, m.temperature, &mut p);
                for (j, (&a, &b)) in sv[i * k..(i + 1) * k].iter().zip(&p).enumerate() {
                    let err = (f64::from(a) - f64::from(b)).abs();
                    if err.is_nan() || err > tolerance {
                        return Err(Error::dataset(
                            &path,
                            format!(
                                "column 'soft', row {r}: value {j} is {a}, softmax(logits / {}) gives {b}",
                                m.temperature
                            ),
                        ));
                    }
                    max_err = max_err.max(err);
                }
            }
            row += rb.num_rows() as u64;
        }
        if row != part.rows {
            return Err(Error::dataset(&path, format!("part has {row} rows, the manifest says {}", part.rows)));
        }
        total += row;
    }
    Ok(Verified { rows: total, parts: m.parts.len(), max_soft_error: m.form.is_dense().then_some(max_err) })
}
