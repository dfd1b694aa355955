//! Reading a soft-label dataset back, checking it against its manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int64Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use ndarray::Array2;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use super::{columns, LabelForm, Manifest};
use crate::augment::ViewColumns;
use crate::data::{numeric_to_f32, Source};
use crate::error::{Error, Result};
use crate::util::sha256_file;

/// An opened, checked soft-label dataset.
#[derive(Debug, Clone)]
pub struct SoftLabels {
    dir: PathBuf,
    manifest: Manifest,
}

/// Everything a student learns from, in memory.
#[derive(Debug, Clone)]
pub struct TeacherOutputs {
    /// Row ids.
    pub ids: Vec<u64>,
    /// Hard labels (`None`: unlabeled).
    pub labels: Vec<Option<i64>>,
    /// Inputs as f32, `[rows, width]`.
    pub inputs: Array2<f32>,
    /// The teacher's outputs, in the form the dataset stores them.
    pub outputs: Outputs,
    /// The view columns of a dataset with augmented views.
    pub views: Option<ViewColumns>,
}

/// The teacher's outputs for each row, as the dataset stores them.
#[derive(Debug, Clone)]
pub enum Outputs {
    /// Raw logits, `[rows, classes]`.
    Dense {
        /// The logits.
        logits: Array2<f32>,
    },
    /// The k largest logits per row and the normaliser over all classes.
    TopK {
        /// Class indices, by descending logit, `[rows, k]`.
        index: Array2<u32>,
        /// Their logits, `[rows, k]`.
        logit: Array2<f32>,
        /// logsumexp(logits / T) over all classes, per row.
        logsumexp_t: Vec<f64>,
    },
    /// k classes drawn from softmax(logits / T), `[rows, k]`.
    Sampled {
        /// Class indices, ascending.
        index: Array2<u32>,
    },
}

impl TeacherOutputs {
    /// Fills `inputs` of a label-only dataset (made with `--no-inputs`) from its source, joined by id.
    /// The source must be the data the labels were made from (same fingerprint) unless
    /// `ignore_fingerprint`; every id must be found.
    pub fn join_inputs(
        &mut self,
        m: &Manifest,
        source: &dyn Source,
        source_path: &Path,
        ignore_fingerprint: bool,
    ) -> Result<()> {
        let fingerprint = source.source_info()?.fingerprint;
        if fingerprint != m.source.fingerprint && !ignore_fingerprint {
            return Err(Error::dataset(
                source_path,
                format!(
                    "fingerprint {fingerprint} differs from the data the labels were made from ({}): not the same \
                     files; pass --ignore-fingerprint to join by id anyway",
                    m.source.fingerprint
                ),
            ));
        }
        let w = m.input.width;
        // Every row of an id (one per view) takes that id's source row, shifted as its view says.
        let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(self.ids.len());
        for (r, &id) in self.ids.iter().enumerate() {
            index.entry(id).or_default().push(r);
        }
        let shifts = match (&m.views, &self.views) {
            (Some(v), Some(cols)) => Some((v, cols)),
            (None, None) => None,
            _ => return Err(Error::Internal("view columns do not match the manifest".into())),
        };
        let mut inputs = Array2::<f32>::zeros((self.ids.len(), w));
        let mut found = vec![false; self.ids.len()];
        for b in source.batches(8192) {
            let b = b?;
            if b.width != w {
                return Err(Error::data(
                    &b.file,
                    format!(
                        "column '{}' has {} values per row, the labels' inputs have {w}",
                        source.input_name(),
                        b.width
                    ),
                ));
            }
            let flat = b.input_f32();
            for (i, id) in b.ids.iter().enumerate() {
                let src = &flat[i * w..(i + 1) * w];
                for &r in index.get(id).map_or(&[][..], Vec::as_slice) {
                    let mut row = inputs.row_mut(r);
                    let out = row.as_slice_mut().ok_or_else(|| Error::Internal("input row not contiguous".into()))?;
                    match shifts {
                        Some((v, cols)) => v.shift_row(src, cols.shift_x[r], cols.shift_y[r], out),
                        None => out.copy_from_slice(src),
                    }
                    found[r] = true;
                }
            }
        }
        if let Some(r) = found.iter().position(|f| !f) {
            return Err(Error::dataset(source_path, format!("no row with id {} (which the labels have)", self.ids[r])));
        }
        self.inputs = inputs;
        Ok(())
    }

    /// A map from id to row (with views: to the row of view 0, the unshifted one).
    pub fn id_index(&self) -> HashMap<u64, usize> {
        let first = |i: usize| self.views.as_ref().is_none_or(|v| v.view[i] == 0);
        self.ids.iter().enumerate().filter(|&(i, _)| first(i)).map(|(i, &id)| (id, i)).collect()
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The teacher's top class for `row`: the largest logit, or the first top-k index. `None` for sampled
    /// labels, whose draws do not identify it.
    pub fn teacher_top1(&self, row: usize) -> Option<usize> {
        match &self.outputs {
            Outputs::Dense { logits } => crate::soften::argmax(&logits.row(row).to_vec()),
            Outputs::TopK { index, .. } => Some(index[[row, 0]] as usize),
            Outputs::Sampled { .. } => None,
        }
    }

    /// The raw logits of a dense dataset (`None` for sparse forms, which do not hold them all).
    pub fn dense_logits(&self) -> Option<&Array2<f32>> {
        match &self.outputs {
            Outputs::Dense { logits } => Some(logits),
            _ => None,
        }
    }
}

impl SoftLabels {
    /// Opens `dir`: reads the manifest and checks that every part exists with the recorded size and
    /// sha256, so a missing, truncated or swapped part is caught before any work.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        for part in &manifest.parts {
            let path = dir.join(&part.file);
            let meta = std::fs::metadata(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::dataset(&path, "part listed in _manifest.json is missing")
                } else {
                    Error::io(&path, e)
                }
            })?;
            if meta.len() != part.bytes {
                return Err(Error::dataset(
                    &path,
                    format!(
                        "part was changed or replaced: it has {} bytes, _manifest.json says {}",
                        meta.len(),
                        part.bytes
                    ),
                ));
            }
            check_footer(&path, &manifest)?;
            let sha = sha256_file(&path)?;
            if sha != part.sha256 {
                return Err(Error::dataset(
                    &path,
                    format!("part was changed or replaced: sha256 {sha}, _manifest.json says {}", part.sha256),
                ));
            }
        }
        Ok(SoftLabels { dir: dir.to_path_buf(), manifest })
    }

    /// A dataset from a manifest already checked by the caller (e.g. a resuming writer's committed parts).
    pub fn from_parts(dir: &Path, manifest: Manifest) -> Self {
        SoftLabels { dir: dir.to_path_buf(), manifest }
    }

    /// Every row's id, reading only the `id` column.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::with_capacity(self.manifest.rows as usize);
        for part in &self.manifest.parts {
            let path = self.dir.join(&part.file);
            let builder = crate::data::open_parquet(&path)?;
            let idx = builder
                .schema()
                .index_of(columns::ID)
                .map_err(|_| Error::dataset(&path, format!("no column '{}'", columns::ID)))?;
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
            let reader =
                builder.with_projection(mask).build().map_err(|error| Error::Parquet { path: path.clone(), error })?;
            for rb in reader {
                let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode ids: {e}")))?;
                let col = rb
                    .column(0)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| Error::dataset(&path, "column 'id' is not uint64"))?;
                ids.extend_from_slice(col.values());
            }
        }
        Ok(ids)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// sha256 of _manifest.json's content (identifies exactly what a student learned from).
    pub fn manifest_sha256(&self) -> Result<String> {
        sha256_file(&self.dir.join(super::MANIFEST))
    }

    /// Reads every part into memory.
    pub fn load(&self) -> Result<TeacherOutputs> {
        self.load_excluding(&[])
    }

    /// Reads every part into memory except the rows whose hard label is in `exclude`, dropped as they
    /// are read.
    pub fn load_excluding(&self, exclude: &[i64]) -> Result<TeacherOutputs> {
        let m = &self.manifest;
        let mut acc = Columns::with_capacity(m, m.rows as usize);
        for part in &m.parts {
            let path = self.dir.join(&part.file);
            let builder = self.checked_builder(&path)?;
            let reader =
                builder.with_batch_size(8192).build().map_err(|error| Error::Parquet { path: path.clone(), error })?;
            let mut part_rows = 0u64;
            for rb in reader {
                let rb =
                    rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {part_rows}: {e}")))?;
                let start = acc.len();
                acc.read(&path, &rb, m, part_rows)?;
                acc.exclude_labels_from(start, exclude);
                part_rows += rb.num_rows() as u64;
            }
            if part_rows != part.rows {
                return Err(Error::dataset(
                    &path,
                    format!("part has {part_rows} rows, _manifest.json says {}", part.rows),
                ));
            }
        }
        acc.finish(m)
    }

    /// The dataset cut into blocks of at most `max_rows` rows, none crossing a row group, in file order.
    /// Reading a block decodes only the pages it touches, so blocks can be read in any order.
    pub fn blocks(&self, max_rows: usize) -> Result<Vec<Block>> {
        let max_rows = max_rows.max(1);
        let mut out = Vec::new();
        for (p, part) in self.manifest.parts.iter().enumerate() {
            let path = self.dir.join(&part.file);
            let builder = self.checked_builder(&path)?;
            let mut total = 0u64;
            for (g, rg) in builder.metadata().row_groups().iter().enumerate() {
                let rows = rg.num_rows() as usize;
                for offset in (0..rows).step_by(max_rows) {
                    let first_row = total + offset as u64;
                    out.push(Block { part: p, row_group: g, offset, rows: max_rows.min(rows - offset), first_row });
                }
                total += rows as u64;
            }
            if total != part.rows {
                return Err(Error::dataset(&path, format!("part has {total} rows, _manifest.json says {}", part.rows)));
            }
        }
        Ok(out)
    }

    /// Reads `blocks` (from [`SoftLabels::blocks`]) into memory, in the order given.
    pub fn load_blocks(&self, blocks: &[Block]) -> Result<TeacherOutputs> {
        let rows = blocks.iter().map(|b| b.rows).sum();
        let mut acc = Columns::with_capacity(&self.manifest, rows);
        self.read_blocks(blocks, &[], &mut acc, &mut Vec::new())?;
        acc.finish(&self.manifest)
    }

    /// Streams the dataset in windows of `window` rows (the last may be shorter): `blocks` in the order
    /// given, rows whose label is in `exclude` dropped as they are read. Each window is read into memory
    /// sized for it, and only the rows of its last block that overflow it are carried to the next.
    pub fn windows<'a>(&'a self, blocks: &'a [Block], window: usize, exclude: &'a [i64]) -> Windows<'a> {
        Windows { labels: self, blocks, next: 0, window: window.max(1), exclude, carry: None, metas: Vec::new() }
    }

    /// A part's footer with its offset index, which lets a block be read without decoding the pages
    /// before it; the part is checked once (byte ranges, column types).
    fn block_metadata(&self, path: &Path) -> Result<ArrowReaderMetadata> {
        self.checked_builder(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        ArrowReaderMetadata::load(&file, options).map_err(|error| Error::Parquet { path: path.to_path_buf(), error })
    }

    /// Reads `blocks` into `acc`; `metas` caches each part's footer.
    fn read_blocks(
        &self,
        blocks: &[Block],
        exclude: &[i64],
        acc: &mut Columns,
        metas: &mut Vec<Option<ArrowReaderMetadata>>,
    ) -> Result<()> {
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        let m = &self.manifest;
        metas.resize(m.parts.len(), None);
        for b in blocks {
            let part = m.parts.get(b.part).ok_or_else(|| Error::Internal("block of no part".into()))?;
            let path = self.dir.join(&part.file);
            let meta = match &metas[b.part] {
                Some(meta) => meta.clone(),
                None => {
                    let meta = self.block_metadata(&path)?;
                    metas[b.part] = Some(meta.clone());
                    meta
                }
            };
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let selection = RowSelection::from(vec![RowSelector::skip(b.offset), RowSelector::select(b.rows)]);
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
                .with_row_groups(vec![b.row_group])
                .with_row_selection(selection)
                .with_batch_size(8192)
                .build()
                .map_err(|error| Error::Parquet { path: path.clone(), error })?;
            let mut rows = 0usize;
            for rb in reader {
                let rb = rb.map_err(|e| {
                    Error::dataset(&path, format!("cannot decode row group {} rows {}..: {e}", b.row_group, b.offset))
                })?;
                let start = acc.len();
                acc.read(&path, &rb, m, b.first_row + rows as u64)?;
                acc.exclude_labels_from(start, exclude);
                rows += rb.num_rows();
            }
            if rows != b.rows {
                return Err(Error::dataset(
                    &path,
                    format!("row group {} has fewer rows than its metadata says", b.row_group),
                ));
            }
        }
        Ok(())
    }

    /// Opens a part, checking its columns have the types the manifest implies.
    fn checked_builder(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
        let m = &self.manifest;
        let expected = super::part_schema(
            m.input.dtype,
            m.input.stored.then_some(m.input.width),
            m.num_classes,
            m.form,
            m.float16,
            m.views.is_some(),
        );
        let builder = crate::data::open_parquet(path)?;
        for field in expected.fields() {
            match builder.schema().field_with_name(field.name()) {
                Ok(f) if f.data_type() == field.data_type() => {}
                Ok(f) => {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "column '{}' has type {}, manifest implies {}",
                            f.name(),
                            f.data_type(),
                            field.data_type()
                        ),
                    ))
                }
                Err(_) => return Err(Error::dataset(path, format!("no column '{}'", field.name()))),
            }
        }
        Ok(builder)
    }
}

/// Windows of a streamed dataset (see [`SoftLabels::windows`]).
pub struct Windows<'a> {
    labels: &'a SoftLabels,
    blocks: &'a [Block],
    next: usize,
    window: usize,
    exclude: &'a [i64],
    carry: Option<Columns>,
    metas: Vec<Option<ArrowReaderMetadata>>,
}

impl Iterator for Windows<'_> {
    type Item = Result<TeacherOutputs>;

    fn next(&mut self) -> Option<Self::Item> {
        let m = &self.labels.manifest;
        let carried = self.carry.as_ref().map_or(0, Columns::len);
        if carried == 0 && self.next >= self.blocks.len() {
            return None;
        }
        let mut acc = Columns::with_capacity(m, self.window);
        if let Some(c) = self.carry.take() {
            acc.extend(c);
        }
        while acc.len() < self.window && self.next < self.blocks.len() {
            let block = &self.blocks[self.next..self.next + 1];
            if let Err(e) = self.labels.read_blocks(block, self.exclude, &mut acc, &mut self.metas) {
                self.next = self.blocks.len();
                return Some(Err(e));
            }
            self.next += 1;
        }
        if acc.len() > self.window {
            self.carry = Some(acc.split_off(self.window, m));
        }
        if acc.len() == 0 {
            return None;
        }
        Some(acc.finish(m))
    }
}

/// A run of rows inside one row group of one part (see [`SoftLabels::blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Index of the part in the manifest.
    pub part: usize,
    /// Row group in that part.
    pub row_group: usize,
    /// First row inside the row group.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Its first row's position in the part (named in errors).
    pub first_row: u64,
}

impl Columns {
    /// The rows read so far as [`TeacherOutputs`].
    fn finish(self, m: &Manifest) -> Result<TeacherOutputs> {
        let acc = self;
        let w = m.input.width;
        let n = acc.ids.len();
        let shape = |cols: usize, what: &str, len: usize| {
            if len == n * cols {
                Ok((n, cols))
            } else {
                Err(Error::Internal(format!("{what}: {len} values for {n} rows of {cols}")))
            }
        };
        let w = if m.input.stored { w } else { 0 };
        let inputs = Array2::from_shape_vec(shape(w, "input", acc.inputs.len())?, acc.inputs)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let outputs = match m.form {
            LabelForm::Dense => Outputs::Dense {
                logits: Array2::from_shape_vec(shape(m.num_classes, "logits", acc.logits.len())?, acc.logits)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            },
            LabelForm::TopK { k } => Outputs::TopK {
                index: Array2::from_shape_vec(shape(k, "topk_index", acc.index.len())?, acc.index)
                    .map_err(|e| Error::Internal(e.to_string()))?,
                logit: Array2::from_shape_vec(shape(k, "topk_logit", acc.logits.len())?, acc.logits)
                    .map_err(|e| Error::Internal(e.to_string()))?,
                logsumexp_t: acc.lse,
            },
            LabelForm::Sampled { k, .. } => Outputs::Sampled {
                index: Array2::from_shape_vec(shape(k, "sample_index", acc.index.len())?, acc.index)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            },
        };
        let views = m.views.is_some().then_some(acc.views);
        Ok(TeacherOutputs { ids: acc.ids, labels: acc.labels, inputs, outputs, views })
    }
}

/// Values read so far.
#[derive(Default)]
struct Columns {
    ids: Vec<u64>,
    labels: Vec<Option<i64>>,
    inputs: Vec<f32>,
    /// Dense logits, or top-k logits.
    logits: Vec<f32>,
    /// Top-k or sampled indices.
    index: Vec<u32>,
    lse: Vec<f64>,
    views: ViewColumns,
}

/// The flat values of a non-null fixed-size list column.
fn list_values(path: &Path, rb: &RecordBatch, name: &str, first_row: u64) -> Result<arrow_array::ArrayRef> {
    let col = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
    let list = col
        .as_fixed_size_list_opt()
        .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not a fixed-size list")))?;
    if list.null_count() > 0 {
        let row = (0..list.len()).find(|&i| list.is_null(i)).unwrap_or(0) as u64 + first_row;
        return Err(Error::dataset(path, format!("column '{name}', row {row}: value is null")));
    }
    let width = list.value_length() as usize;
    Ok(list.values().slice(list.value_offset_at(0), list.len() * width))
}

impl Columns {
    /// Empty, with room for `rows` rows of `m`.
    fn with_capacity(m: &Manifest, rows: usize) -> Self {
        let (per_logits, per_index) = match m.form {
            LabelForm::Dense => (m.num_classes, 0),
            LabelForm::TopK { k } => (k, k),
            LabelForm::Sampled { k, .. } => (0, k),
        };
        let views = if m.views.is_some() { rows } else { 0 };
        Columns {
            ids: Vec::with_capacity(rows),
            labels: Vec::with_capacity(rows),
            inputs: Vec::with_capacity(if m.input.stored { rows * m.input.width } else { 0 }),
            logits: Vec::with_capacity(rows * per_logits),
            index: Vec::with_capacity(rows * per_index),
            lse: Vec::with_capacity(if matches!(m.form, LabelForm::TopK { .. }) { rows } else { 0 }),
            views: ViewColumns {
                view: Vec::with_capacity(views),
                shift_x: Vec::with_capacity(views),
                shift_y: Vec::with_capacity(views),
            },
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Appends `other`'s rows.
    fn extend(&mut self, other: Columns) {
        self.ids.extend(other.ids);
        self.labels.extend(other.labels);
        self.inputs.extend(other.inputs);
        self.logits.extend(other.logits);
        self.index.extend(other.index);
        self.lse.extend(other.lse);
        self.views.view.extend(other.views.view);
        self.views.shift_x.extend(other.views.shift_x);
        self.views.shift_y.extend(other.views.shift_y);
    }

    /// Values per row of each per-row vector: (inputs, logits, index, lse, views).
    fn widths(&self) -> [usize; 5] {
        let n = self.len().max(1);
        [
            self.inputs.len() / n,
            self.logits.len() / n,
            self.index.len() / n,
            self.lse.len() / n,
            self.views.view.len() / n,
        ]
    }

    /// Moves the rows from `at` on into a new `Columns` (the rows before stay, without reallocating).
    fn split_off(&mut self, at: usize, m: &Manifest) -> Columns {
        let [wi, wl, wx, ws, wv] = self.widths();
        let mut tail = Columns::with_capacity(m, 0);
        tail.ids = self.ids.split_off(at);
        tail.labels = self.labels.split_off(at);
        tail.inputs = self.inputs.split_off(at * wi);
        tail.logits = self.logits.split_off(at * wl);
        tail.index = self.index.split_off(at * wx);
        tail.lse = self.lse.split_off(at * ws);
        tail.views.view = self.views.view.split_off(at * wv);
        tail.views.shift_x = self.views.shift_x.split_off(at * wv);
        tail.views.shift_y = self.views.shift_y.split_off(at * wv);
        tail
    }

    /// Drops, among the rows from `start` on, those whose hard label is in `exclude` (compacting in place).
    fn exclude_labels_from(&mut self, start: usize, exclude: &[i64]) {
        let keep = |y: Option<i64>| y.is_none_or(|y| !exclude.contains(&y));
        let n = self.len();
        if (start..n).all(|r| keep(self.labels[r])) {
            return;
        }
        let [wi, wl, wx, ws, wv] = self.widths();
        fn compact<T: Copy>(v: &mut Vec<T>, width: usize, rows: &[usize], start: usize) {
            if width == 0 {
                return;
            }
            for (dst, &src) in (start..).zip(rows) {
                v.copy_within(src * width..(src + 1) * width, dst * width);
            }
            v.truncate((start + rows.len()) * width);
        }
        let rows: Vec<usize> = (start..n).filter(|&r| keep(self.labels[r])).collect();
        compact(&mut self.ids, 1, &rows, start);
        compact(&mut self.labels, 1, &rows, start);
        compact(&mut self.inputs, wi, &rows, start);
        compact(&mut self.logits, wl, &rows, start);
        compact(&mut self.index, wx, &rows, start);
        compact(&mut self.lse, ws, &rows, start);
        compact(&mut self.views.view, wv, &rows, start);
        compact(&mut self.views.shift_x, wv, &rows, start);
        compact(&mut self.views.shift_y, wv, &rows, start);
    }

    fn read(&mut self, path: &Path, rb: &RecordBatch, m: &Manifest, first_row: u64) -> Result<()> {
        let col =
            |name: &str| rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")));
        let id = col(columns::ID)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| Error::dataset(path, "column 'id' is not uint64"))?;
        if id.null_count() > 0 {
            let row = (0..id.len()).find(|&i| id.is_null(i)).unwrap_or(0) as u64 + first_row;
            return Err(Error::dataset(path, format!("column 'id', row {row}: id is null")));
        }
        self.ids.extend_from_slice(id.values());
        let label = col(columns::LABEL)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::dataset(path, "column 'label' is not int64"))?;
        self.labels.extend((0..label.len()).map(|i| (!label.is_null(i)).then(|| label.value(i))));
        if let Some(v) = &m.views {
            let (view, sx, sy) = read_views(path, rb)?;
            for (i, ((&view, &dx), &dy)) in view.iter().zip(sx).zip(sy).enumerate() {
                if view >= v.count || v.shift(id.value(i), view) != (dx, dy) {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "columns 'view', 'shift_x', 'shift_y', row {}: view {view} shift ({dx}, {dy}) is not \
                             the one the manifest's views rule gives",
                            first_row + i as u64
                        ),
                    ));
                }
            }
            self.views.view.extend_from_slice(view);
            self.views.shift_x.extend_from_slice(sx);
            self.views.shift_y.extend_from_slice(sy);
        }
        if m.input.stored {
            let input = list_values(path, rb, columns::INPUT, first_row)?;
            self.inputs.extend(
                numeric_to_f32(input.as_ref()).ok_or_else(|| Error::dataset(path, "column 'input' is not numeric"))?,
            );
        }
        let floats = |name: &str, width: usize| -> Result<Vec<f32>> {
            let v = list_values(path, rb, name, first_row)?;
            let v: Vec<f32> = if m.float16 {
                v.as_primitive_opt::<Float16Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float16")))?
                    .values()
                    .iter()
                    .map(|h| h.to_f32())
                    .collect()
            } else {
                v.as_primitive_opt::<Float32Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float32")))?
                    .values()
                    .to_vec()
            };
            if let Some(pos) = v.iter().position(|x| x.is_nan() || *x == f32::INFINITY) {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{name}', row {}: value {} is {}",
                        first_row + (pos / width.max(1)) as u64,
                        pos % width.max(1),
                        v[pos]
                    ),
                ));
            }
            Ok(v)
        };
        let indices = |name: &str, width: usize| -> Result<Vec<u32>> {
            let v = list_values(path, rb, name, first_row)?;
            let v = v
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not uint32")))?
                .values()
                .to_vec();
            if let Some(pos) = v.iter().position(|&c| c as usize >= m.num_classes) {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{name}', row {}: class {} is outside [0, {})",
                        first_row + (pos / width.max(1)) as u64,
                        v[pos],
                        m.num_classes
                    ),
                ));
            }
            Ok(v)
        };
        match m.form {
            LabelForm::Dense => self.logits.extend(floats(columns::LOGITS, m.num_classes)?),
            LabelForm::TopK { k } => {
                self.index.extend(indices(columns::TOPK_INDEX, k)?);
                self.logits.extend(floats(columns::TOPK_LOGIT, k)?);
                let lse = col(columns::LOGSUMEXP_T)?
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| Error::dataset(path, "column 'logsumexp_t' is not float64"))?;
                if let Some(i) = lse.values().iter().position(|v| !v.is_finite()) {
                    return Err(Error::dataset(
                        path,
                        format!("column 'logsumexp_t', row {}: {}", first_row + i as u64, lse.value(i)),
                    ));
                }
                self.lse.extend_from_slice(lse.values());
            }
            LabelForm::Sampled { k, .. } => self.index.extend(indices(columns::SAMPLE_INDEX, k)?),
        }
        Ok(())
    }
}

/// The `view`, `shift_x` and `shift_y` columns of a record batch.
pub(crate) fn read_views<'a>(path: &Path, rb: &'a RecordBatch) -> Result<(&'a [u16], &'a [i16], &'a [i16])> {
    let col = |name: &str| rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")));
    let view = col(columns::VIEW)?
        .as_primitive_opt::<UInt16Type>()
        .ok_or_else(|| Error::dataset(path, "column 'view' is not uint16"))?;
    let shift = |name: &str| -> Result<&'a [i16]> {
        let c = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
        Ok(c.as_primitive_opt::<Int16Type>()
            .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not int16")))?
            .values()
            .as_ref())
    };
    Ok((view.values().as_ref(), shift(columns::SHIFT_X)?, shift(columns::SHIFT_Y)?))
}

fn check_footer(path: &Path, m: &Manifest) -> Result<()> {
    let builder = crate::data::open_parquet(path)?;
    let kv: HashMap<&str, &str> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().filter_map(|e| e.value.as_deref().map(|v| (e.key.as_str(), v))).collect())
        .unwrap_or_default();
    let get = |key: &str| {
        kv.get(key).copied().ok_or_else(|| Error::dataset(path, format!("part lacks metadata key '{key}'")))
    };
    let sha = get("softlabel.teacher_sha256")?;
    if sha != m.teacher.sha256 {
        return Err(Error::dataset(
            path,
            format!("part was made by teacher sha256 {sha}, {} says {}", super::MANIFEST, m.teacher.sha256),
        ));
    }
    let t: f32 = get("softlabel.temperature")?
        .parse()
        .map_err(|_| Error::dataset(path, "softlabel.temperature is not a number"))?;
    if t != m.temperature {
        return Err(Error::dataset(
            path,
            format!("part was made at temperature {t}, {} says {}", super::MANIFEST, m.temperature),
        ));
    }
    let k: usize = get("softlabel.num_classes")?
        .parse()
        .map_err(|_| Error::dataset(path, "softlabel.num_classes is not a number"))?;
    if k != m.num_classes {
        return Err(Error::dataset(path, format!("part has {k} classes, {} says {}", super::MANIFEST, m.num_classes)));
    }
    Ok(())
}
