//! Encoding rows as the dataset stores them: the record batch of a part (soft labels, top-k or draws
//! computed here), float16 values, and the Parquet writer properties (encodings, metadata).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int16Array, Int64Array, RecordBatch, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{Field, SchemaRef};
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{SoftLabelWriter, WriterOptions};
use crate::error::{Error, Result};
use crate::soften::{logsumexp_t, sample_classes, softmax_t, top_k};
use crate::store::{columns, LabelForm, Manifest};

/// The Parquet writer properties of every part.
pub(super) fn writer_properties(
    schema: &SchemaRef,
    manifest: &Manifest,
    options: &WriterOptions,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(options.zstd_level)
        .map_err(|e| Error::Config(format!("zstd level {}: {e}", options.zstd_level)))?;
    // The bulky columns (float values, integer inputs) at zstd level 1: see below.
    let fast = Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| Error::Internal(format!("zstd level 1: {e}")))?);
    let descr =
        ArrowSchemaConverter::new().convert(schema).map_err(|e| Error::Internal(format!("schema conversion: {e}")))?;
    let kv = manifest.key_values().into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(manifest.created_by.clone())
        .set_key_value_metadata(Some(kv));
    for col in descr.columns() {
        let path = col.path().clone();
        let top = path.parts()[0].as_str();
        if matches!(col.physical_type(), PhysicalType::FLOAT | PhysicalType::DOUBLE) {
            // No reader filters rows by a logit's, probability's or normaliser's range, so their min/max
            // statistics (computed over every value of every page) are not written; ids and labels keep
            // theirs.
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
        if col.physical_type() == PhysicalType::FLOAT {
            // Floats compress far better with their bytes split into streams; dictionaries never pay.
            // Only the exponent stream compresses much, and zstd level 1 does it as well as level 3: on
            // the wide teacher's 20,000 dense rows of 1000 classes the parts took 139.1 MB at level 1,
            // 140.6 at 3 and 163.8 uncompressed, and the run 0.15-0.3 s less CPU at level 1 than at 3.
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_compression(path.clone(), fast)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        } else if top == columns::ID {
            // Ids are unique: a dictionary would only grow the file.
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        } else if top == columns::INPUT {
            // Integer inputs (pixels, token ids, bytes) take few distinct values: a dictionary per row
            // group stores a pixel in about one byte before zstd, where plain INT32 takes four (measured
            // on MNIST in SCHEMA.md); the writer falls back to plain when the dictionary grows too large.
            // zstd level 1 on the dictionary indices: on MNIST's 60,000 rows the column grows 2.6% (10.59
            // MB, the source's 11.39) and the light teacher's run takes 0.82 s instead of 0.91 s
            // (BENCHMARKS.md). Splitting the bytes into streams was faster still (0.67 s, 9.85 MB), but
            // DuckDB 1.1 to 1.3 (tested) cannot read integer columns split so. No reader filters on
            // input values: no statistics.
            b = b
                .set_column_dictionary_enabled(path.clone(), true)
                .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
                .set_column_compression(path, fast);
        }
    }
    Ok(b.build())
}

impl SoftLabelWriter {
    pub(super) fn record_batch(&self, rows: &super::ScoredRows) -> Result<RecordBatch> {
        let super::ScoredRows { ids, labels, input, views, paths, features, positions, .. } = rows;
        let n = ids.len();
        let row = |r: usize| rows.logits_of(r, self.manifest.num_classes);
        let views = views.as_ref();
        let k = self.manifest.num_classes;
        let t = self.manifest.temperature;
        let list = |values: ArrayRef, n: usize| -> Result<ArrayRef> {
            let item = Arc::new(Field::new("item", values.data_type().clone(), false));
            Ok(Arc::new(
                FixedSizeListArray::try_new(item, n as i32, values, None)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ))
        };
        let mut cols: Vec<ArrayRef> = vec![self.id_array(ids)?, Arc::new(Int64Array::from(labels.to_vec()))];
        if self.manifest.has_paths() {
            cols.push(Arc::new(arrow_array::StringArray::from_iter_values(paths)));
        }
        if self.manifest.sequence.is_some() {
            if positions.len() != ids.len() {
                return Err(Error::Internal(format!("{} positions for {} rows", positions.len(), ids.len())));
            }
            cols.push(Arc::new(UInt32Array::from(positions.clone())));
        }
        let narrow = self.manifest.index_type() == arrow_schema::DataType::UInt16;
        let index_array = |index: Vec<u32>| -> ArrayRef {
            if narrow {
                // index_type() is uint16 only when every class fits.
                Arc::new(UInt16Array::from_iter_values(index.into_iter().map(|c| c as u16)))
            } else {
                Arc::new(UInt32Array::from(index))
            }
        };
        if let Some(v) = views {
            cols.push(Arc::new(UInt16Array::from(v.view.clone())));
            if self.manifest.views.as_ref().is_some_and(|m| m.crop.is_some()) {
                let crop = |f: fn(&crate::augment::CropBox) -> u32| -> ArrayRef {
                    Arc::new(arrow_array::UInt32Array::from_iter_values(v.crop.iter().map(f)))
                };
                cols.extend([crop(|b| b.x), crop(|b| b.y), crop(|b| b.w), crop(|b| b.h)]);
                cols.push(Arc::new(arrow_array::BooleanArray::from(v.crop.iter().map(|b| b.flip).collect::<Vec<_>>())));
            } else {
                cols.push(Arc::new(Int16Array::from(v.shift_x.clone())));
                cols.push(Arc::new(Int16Array::from(v.shift_y.clone())));
            }
        }
        if self.manifest.input.stored {
            cols.push(list(input.clone(), self.manifest.input.width)?);
        }
        let mut label_logit = None;
        match self.manifest.form {
            LabelForm::Dense => {
                let selected: Vec<f32>;
                let logits = if rows.logit_rows.is_empty() {
                    &rows.logits[..]
                } else {
                    selected = (0..n).flat_map(|r| row(r).iter().copied()).collect();
                    &selected[..]
                };
                let mut soft = vec![0f32; logits.len()];
                for (z, p) in logits.chunks_exact(k).zip(soft.chunks_exact_mut(k)) {
                    softmax_t(z, t, p);
                }
                cols.push(list(self.floats(logits)?, k)?);
                cols.push(list(self.floats(&soft)?, k)?);
            }
            LabelForm::TopK { k: top } => {
                let (mut index, mut value, mut lse) = (Vec::new(), Vec::new(), Vec::new());
                for z in (0..n).map(row) {
                    let idx = top_k(z, top);
                    value.extend(idx.iter().map(|&i| z[i as usize]));
                    index.extend(idx);
                    lse.push(logsumexp_t(z, t));
                }
                cols.push(list(index_array(index), top)?);
                cols.push(list(self.floats(&value)?, top)?);
                cols.push(Arc::new(Float64Array::from(lse)));
                if self.manifest.label_logit {
                    let of_label = (0..n)
                        .map(row)
                        .zip(labels)
                        .map(|(z, l)| l.and_then(|l| usize::try_from(l).ok()).and_then(|l| z.get(l).copied()));
                    label_logit = Some(self.nullable_floats(of_label.collect())?);
                }
            }
            LabelForm::Sampled { k: draws, seed } => {
                let mut index = Vec::with_capacity(ids.len() * draws);
                for (r, (z, &id)) in (0..n).map(row).zip(ids).enumerate() {
                    // A view's draws are keyed by id ^ (view << 48), so view 0's equal the unaugmented row's;
                    // a sequence position's the same way (positions are below 2^16).
                    let view =
                        views.map_or(0, |v| u64::from(v.view[r])) | positions.get(r).map_or(0, |&p| u64::from(p));
                    index.extend(sample_classes(z, t, draws, seed, id ^ (view << 48)));
                }
                cols.push(list(index_array(index), draws)?);
            }
        }
        cols.extend(label_logit);
        for (f, values) in self.manifest.features.iter().zip(features) {
            cols.push(list(self.floats(values)?, f.width)?);
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::Internal(format!("record batch: {e}")))
    }

    /// Ids as the manifest's schema stores them: int64 (schema 2; an id above 2^63 - 1 is refused) or
    /// uint64 (1.x, when a resumed or merged 1.x dataset is continued).
    fn id_array(&self, ids: &[u64]) -> Result<ArrayRef> {
        if self.manifest.id_type() == arrow_schema::DataType::UInt64 {
            return Ok(Arc::new(UInt64Array::from(ids.to_vec())));
        }
        let ids: Vec<i64> = ids
            .iter()
            .map(|&id| {
                i64::try_from(id).map_err(|_| {
                    Error::Config(format!("id {id} is above 2^63 - 1: soft-label datasets store ids as int64"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Arc::new(Int64Array::from(ids)))
    }

    /// Nullable float values as the manifest stores them (see [`Self::floats`]).
    fn nullable_floats(&self, v: Vec<Option<f32>>) -> Result<ArrayRef> {
        let dense: Vec<f32> = v.iter().map(|x| x.unwrap_or(0.0)).collect();
        let nulls = arrow_buffer::NullBuffer::from(v.iter().map(Option::is_some).collect::<Vec<bool>>());
        let data = self.floats(&dense)?.to_data().into_builder().nulls(Some(nulls));
        Ok(arrow_array::make_array(data.build().map_err(|e| Error::Internal(e.to_string()))?))
    }

    /// Float values as the manifest stores them: float32, or float16 (refusing values out of its range).
    fn floats(&self, v: &[f32]) -> Result<ArrayRef> {
        if !self.manifest.float16 {
            return Ok(Arc::new(Float32Array::from(v.to_vec())));
        }
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        if let Some(i) = (0..v.len()).find(|&i| v[i].is_finite() && !h[i].is_finite()) {
            return Err(Error::Config(format!("value {} does not fit float16 (max 65504): drop --float16", v[i])));
        }
        Ok(Arc::new(arrow_array::Float16Array::from(h)))
    }
}
