//! Augmented views: `precompute --views N` stores every source row N times, view 0 as it is and the
//! others shifted by a few pixels (zero fill), each with the teacher's outputs for that view and its
//! shift recorded in the `view`, `shift_x` and `shift_y` columns, so any view can be rebuilt from the
//! source row (as FKD records crop coordinates). SCHEMA.md gives the exact rule.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, PrimitiveArray};
use arrow_schema::DataType;

pub use crate::data::images::{CropBox, CropViews};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::util::splitmix64;

/// How a dataset's views were made (recorded in the manifest as `views`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Views {
    /// Views per source row; view 0 is the row unshifted.
    pub count: u16,
    /// Largest shift, in pixels, along each axis.
    pub max_shift: u16,
    /// The input row's layout as an image: `[channels, height, width]`, row-major (CHW).
    pub image: [usize; 3],
    /// Seed of the shifts.
    pub seed: u64,
    /// FKD-style crop views of an image folder instead of shifts (schema 1.8): each view a random
    /// resized crop of the source image, and a horizontal flip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<CropViews>,
}

/// What the user asked for: [`Views`] before the image layout is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewOptions {
    /// Views per source row, view 0 included.
    pub count: u16,
    /// Largest shift in pixels.
    pub max_shift: u16,
    /// The image layout; `None`: from the teacher's input shape.
    pub image: Option<[usize; 3]>,
    /// Seed of the shifts.
    pub seed: u64,
    /// Crop views of an image folder instead of shifts.
    pub crop: Option<CropViews>,
}

impl ViewOptions {
    /// The views for inputs of `width` values fed to a teacher as `row_shape`.
    pub fn resolve(&self, width: usize, row_shape: &[usize]) -> Result<Views> {
        let image = match self.image.or_else(|| image_from_shape(row_shape)) {
            Some(i) => i,
            None => {
                return Err(Error::Config(format!(
                    "--views needs the image layout: the teacher takes flat rows of {width} values; pass --image HxW \
                     or CxHxW"
                )))
            }
        };
        let max_shift = if self.crop.is_some() { 0 } else { self.max_shift };
        let v = Views { count: self.count, max_shift, image, seed: self.seed, crop: self.crop };
        v.validate(width)?;
        Ok(v)
    }
}

/// The view columns of some rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewColumns {
    /// View number (0: the row as it is).
    pub view: Vec<u16>,
    /// Horizontal shift in pixels (positive: content moves right).
    pub shift_x: Vec<i16>,
    /// Vertical shift in pixels (positive: content moves down).
    pub shift_y: Vec<i16>,
    /// Crop views: each row's box in its source image (zero boxes for shift views and view 0).
    pub crop: Vec<CropBox>,
}

impl ViewColumns {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.view.is_empty()
    }

    /// Rows `start..start + len`.
    pub fn slice(&self, start: usize, len: usize) -> ViewColumns {
        let r = start..start + len;
        ViewColumns {
            view: self.view[r.clone()].to_vec(),
            shift_x: self.shift_x[r.clone()].to_vec(),
            shift_y: self.shift_y[r.clone()].to_vec(),
            crop: self.crop[r].to_vec(),
        }
    }
}

/// Parses an image layout: `HxW` (one channel) or `CxHxW`.
pub fn parse_image(text: &str) -> Result<[usize; 3]> {
    let bad = || Error::Config(format!("--image '{text}' is not HxW or CxHxW with sizes > 0 (e.g. 28x28)"));
    let dims: Vec<usize> = text.split('x').map(|d| d.trim().parse().map_err(|_| bad())).collect::<Result<_>>()?;
    match dims[..] {
        [h, w] if h > 0 && w > 0 => Ok([1, h, w]),
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(bad()),
    }
}

/// The image layout a teacher's per-row input shape implies: `[C, H, W]` or `[H, W]`; `None` for a flat
/// vector (pass `--image`).
pub fn image_from_shape(shape: &[usize]) -> Option<[usize; 3]> {
    match *shape {
        [c, h, w] => Some([c, h, w]),
        [h, w] => Some([1, h, w]),
        _ => None,
    }
}

impl Views {
    /// Checks the settings against the input width.
    pub fn validate(&self, width: usize) -> Result<()> {
        if self.count == 0 {
            return Err(Error::Config("--views must be >= 1".into()));
        }
        let [c, h, w] = self.image;
        // Checked: a manifest's `views.image` may be crafted so that the product wraps to the width.
        let values = c.checked_mul(h).and_then(|ch| ch.checked_mul(w));
        if values != Some(width) {
            return Err(Error::Config(format!(
                "--image {c}x{h}x{w} holds {} values, the input rows have {width}",
                values.map_or("more than 2^64".into(), |v| v.to_string())
            )));
        }
        if let Some(c) = &self.crop {
            let [lo, hi] = c.scale;
            if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi && hi <= 1.0) {
                return Err(Error::Config(format!("--crop-scale {lo},{hi} must satisfy 0 < min <= max <= 1")));
            }
            return Ok(());
        }
        if usize::from(self.max_shift) >= h.min(w) || self.max_shift > i16::MAX as u16 {
            return Err(Error::Config(format!(
                "--max-shift {} must be smaller than the image ({h}x{w})",
                self.max_shift
            )));
        }
        Ok(())
    }

    /// The shift of `view` of the row `id`: (0, 0) for view 0; otherwise, with
    /// h = splitmix64(splitmix64(id ^ seed) + view) and S = max_shift,
    /// shift_x = (h mod (2S + 1)) - S and shift_y = ((h >> 32) mod (2S + 1)) - S.
    pub fn shift(&self, id: u64, view: u16) -> (i16, i16) {
        if view == 0 {
            return (0, 0);
        }
        let h = splitmix64(splitmix64(id ^ self.seed).wrapping_add(u64::from(view)));
        let span = 2 * u64::from(self.max_shift) + 1;
        let s = self.max_shift as i16;
        ((h % span) as i16 - s, ((h >> 32) % span) as i16 - s)
    }

    /// The crop of `view` of the row `id` in a source image of `width` x `height` pixels
    /// ([`crate::data::images::crop_box`]); a zero box for shift views and view 0.
    pub fn crop_box(&self, id: u64, view: u16, width: u32, height: u32) -> CropBox {
        match &self.crop {
            Some(c) => crate::data::images::crop_box(c, self.seed, id, view, width, height),
            None => CropBox::default(),
        }
    }

    /// For each position of a shifted row, the position in the source row it comes from (`None`: zero
    /// fill): `out[c][y][x] = in[c][y - shift_y][x - shift_x]`.
    pub fn source_positions(&self, dx: i16, dy: i16) -> Vec<Option<usize>> {
        let [c, h, w] = self.image;
        let mut out = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let (sy, sx) = (y - i64::from(dy), x - i64::from(dx));
                    let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                    out.push(inside.then(|| ch * h * w + sy as usize * w + sx as usize));
                }
            }
        }
        out
    }

    /// Shifts one f32 row (for joining a label-only dataset's views to their source rows).
    pub fn shift_row(&self, row: &[f32], dx: i16, dy: i16, out: &mut [f32]) {
        for (o, p) in out.iter_mut().zip(self.source_positions(dx, dy)) {
            *o = p.map_or(0.0, |p| row[p]);
        }
    }

    /// Every crop view of every row of `batch`, in order (row 0's views, then row 1's, ...), rendered from
    /// the rows' originals by `render` in parallel, with the source position of each and its view columns.
    pub fn expand_crops(
        &self,
        batch: &Batch,
        source_rows: &[u64],
        render: &dyn crate::data::RenderViews,
    ) -> Result<(Batch, Vec<u64>, ViewColumns)> {
        use rayon::prelude::*;
        let crop = self.crop.as_ref().ok_or_else(|| Error::Internal("crop views without crops".into()))?;
        let (n, views) = (batch.len(), usize::from(self.count));
        let rendered: Vec<Result<(Vec<CropBox>, ArrayRef)>> = (0..n)
            .into_par_iter()
            .map(|i| render.render(source_rows[i], batch.ids[i], self.count, self.seed, crop))
            .collect();
        let mut cols = ViewColumns::default();
        let mut parts = Vec::with_capacity(n);
        for r in rendered {
            let (boxes, values) = r?;
            for (v, b) in boxes.into_iter().enumerate() {
                cols.view.push(v as u16);
                cols.shift_x.push(0);
                cols.shift_y.push(0);
                cols.crop.push(b);
            }
            parts.push(values);
        }
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let input = if refs.is_empty() {
            batch.input.slice(0, 0)
        } else {
            arrow_select::concat::concat(&refs).map_err(|e| Error::Internal(e.to_string()))?
        };
        if input.len() != n * views * batch.width {
            return Err(Error::Internal(format!("rendered {} values for {n} rows of {views} views", input.len())));
        }
        let (expanded, rows) = repeated(batch, source_rows, views, input);
        Ok((expanded, rows, cols))
    }

    /// Every view of every row of `batch`, in order (row 0's views, then row 1's, ...), with the source
    /// position of each and its view columns.
    pub fn expand(&self, batch: &Batch, source_rows: &[u64]) -> Result<(Batch, Vec<u64>, ViewColumns)> {
        let (n, w, views) = (batch.len(), batch.width, usize::from(self.count));
        let mut cols = ViewColumns::default();
        let mut index = Vec::with_capacity(n * views * w);
        let mut cache: std::collections::HashMap<(i16, i16), Vec<Option<usize>>> = Default::default();
        for (i, &id) in batch.ids.iter().enumerate() {
            for v in 0..self.count {
                let (dx, dy) = self.shift(id, v);
                let pos = cache.entry((dx, dy)).or_insert_with(|| self.source_positions(dx, dy));
                index.extend(pos.iter().map(|p| p.map_or(u32::MAX, |p| (i * w + p) as u32)));
                cols.view.push(v);
                cols.shift_x.push(dx);
                cols.shift_y.push(dy);
                cols.crop.push(CropBox::default());
            }
        }
        let (expanded, rows) = repeated(batch, source_rows, views, gather(batch.input.as_ref(), &index)?);
        Ok((expanded, rows, cols))
    }
}

/// `batch`'s rows, each `views` times in a row, with `input` (the views' values) and the source position
/// of each.
fn repeated(batch: &Batch, source_rows: &[u64], views: usize, input: ArrayRef) -> (Batch, Vec<u64>) {
    let n = batch.len();
    let each = || (0..n).flat_map(|i| std::iter::repeat_n(i, views));
    let expanded = Batch {
        file: batch.file.clone(),
        first_row: batch.first_row,
        first_source_row: batch.first_source_row,
        ids: each().map(|i| batch.ids[i]).collect(),
        labels: each().map(|i| batch.labels[i]).collect(),
        input,
        width: batch.width,
        nonfinite: Vec::new(),
        extra: Vec::new(),
        paths: if batch.paths.is_empty() { Vec::new() } else { each().map(|i| batch.paths[i].clone()).collect() },
        token_labels: Vec::new(),
    };
    (expanded, each().map(|i| source_rows[i]).collect())
}

/// `out[j] = a[index[j]]`, or zero where `index[j]` is `u32::MAX`.
fn gather(a: &dyn Array, index: &[u32]) -> Result<ArrayRef> {
    if a.len() > u32::MAX as usize {
        return Err(Error::Internal("batch too large to shift".into()));
    }
    macro_rules! go {
        ($t:ty) => {{
            let v = a.as_primitive::<$t>().values();
            Arc::new(PrimitiveArray::<$t>::from_iter_values(index.iter().map(|&i| {
                if i == u32::MAX {
                    Default::default()
                } else {
                    v[i as usize]
                }
            }))) as ArrayRef
        }};
    }
    Ok(match a.data_type() {
        DataType::UInt8 => go!(UInt8Type),
        DataType::Int8 => go!(Int8Type),
        DataType::UInt16 => go!(UInt16Type),
        DataType::Int16 => go!(Int16Type),
        DataType::UInt32 => go!(UInt32Type),
        DataType::Int32 => go!(Int32Type),
        DataType::UInt64 => go!(UInt64Type),
        DataType::Int64 => go!(Int64Type),
        DataType::Float32 => go!(Float32Type),
        DataType::Float64 => go!(Float64Type),
        other => return Err(Error::Internal(format!("cannot shift {other} inputs"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_move_content_and_fill_zero() {
        let v = Views { count: 3, max_shift: 1, image: [1, 2, 3], seed: 0, crop: None };
        // 1 2 3 / 4 5 6 shifted right by 1 and down by 1: 0 0 0 / 0 1 2.
        let row = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [9.0; 6];
        v.shift_row(&row, 1, 1, &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        v.shift_row(&row, -1, 0, &mut out);
        assert_eq!(out, [2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        v.shift_row(&row, 0, 0, &mut out);
        assert_eq!(out, row);
    }

    #[test]
    fn shifts_stay_in_range_and_cover_it() {
        let v = Views { count: 8, max_shift: 2, image: [1, 28, 28], seed: 7, crop: None };
        let mut seen = std::collections::HashSet::new();
        for id in 0..2000u64 {
            assert_eq!(v.shift(id, 0), (0, 0));
            for view in 1..8 {
                let (dx, dy) = v.shift(id, view);
                assert!((-2..=2).contains(&dx) && (-2..=2).contains(&dy));
                seen.insert((dx, dy));
            }
        }
        assert_eq!(seen.len(), 25, "every one of the 5x5 shifts occurs");
        let other = Views { seed: 8, ..v };
        assert!((0..100).any(|id| v.shift(id, 1) != other.shift(id, 1)), "the seed changes the shifts");
    }

    #[test]
    fn image_layouts_parse() {
        assert_eq!(parse_image("28x28").unwrap(), [1, 28, 28]);
        assert_eq!(parse_image("3x32x32").unwrap(), [3, 32, 32]);
        assert!(parse_image("28").is_err() && parse_image("0x28").is_err() && parse_image("axb").is_err());
    }

    /// Crop views follow RandomResizedCrop's ranges (area within the scale, aspect within 3/4-4/3 up to
    /// rounding, inside the image), view 0 is the prepared image, and the same id, view and seed always
    /// give the same box.
    #[test]
    fn crop_boxes_stay_in_range_and_are_reproducible() {
        let crop = CropViews { scale: [0.35, 1.0], flip: true };
        let v = Views { count: 4, max_shift: 0, image: [3, 8, 8], seed: 11, crop: Some(crop) };
        let (w, h) = (640u32, 427u32);
        let mut flips = 0;
        for id in 0..500u64 {
            assert_eq!(v.crop_box(id, 0, w, h), CropBox::default());
            for view in 1..4 {
                let b = v.crop_box(id, view, w, h);
                assert_eq!(b, v.crop_box(id, view, w, h));
                assert!(b.x + b.w <= w && b.y + b.h <= h && b.w > 0 && b.h > 0, "{b:?}");
                let area = f64::from(b.w * b.h) / f64::from(w * h);
                let aspect = f64::from(b.w) / f64::from(b.h);
                assert!((0.34..=1.0).contains(&area), "{b:?} area {area}");
                assert!((0.74..=1.34).contains(&aspect), "{b:?} aspect {aspect}");
                flips += usize::from(b.flip);
            }
        }
        // About half the 1500 views are flipped (binomial: 750 +- 4 sigma = 78).
        assert!((672..=828).contains(&flips), "{flips}");
        let other = Views { seed: 12, ..v };
        assert_ne!(v.crop_box(1, 1, w, h), other.crop_box(1, 1, w, h));
    }
}
