//! Writing a soft-label dataset: parts under temporary names, renamed when closed; the manifest last.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int16Array, Int64Array, RecordBatch, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{Field, SchemaRef};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{columns, LabelForm, Manifest, PartInfo, MANIFEST, PROGRESS};
use crate::augment::ViewColumns;
use crate::error::{Error, Result};
use crate::soften::{logsumexp_t, sample_classes, softmax_t, top_k};
use crate::util::{hex, sha256_file, sync_dir, write_atomic};

/// Rows ready to be written: `input` holds `ids.len() * width` values of the manifest's input type,
/// `logits` `ids.len() * num_classes` raw logits, `source_rows` each row's position in the source
/// (increasing), `views` the view columns of a dataset with views.
#[derive(Debug, Clone)]
pub struct ScoredRows {
    /// Row ids.
    pub ids: Vec<u64>,
    /// Hard labels.
    pub labels: Vec<Option<i64>>,
    /// Input values, flat.
    pub input: ArrayRef,
    /// Raw logits, flat.
    pub logits: Vec<f32>,
    /// Each row's position in the source.
    pub source_rows: Vec<u64>,
    /// View columns.
    pub views: Option<ViewColumns>,
}

/// How parts are cut and compressed.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rows per part file.
    pub rows_per_part: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level (1..=22).
    pub zstd_level: i32,
    /// Replace the dataset files of an existing output folder.
    pub overwrite: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { rows_per_part: 500_000, row_group_rows: 65_536, zstd_level: 3, overwrite: false }
    }
}

/// Passes bytes on to a file and hashes them on the way, so a part's sha256 needs no second read.
struct HashingWriter {
    file: BufWriter<File>,
    hasher: sha2::Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

struct OpenPart {
    writer: ArrowWriter<HashingWriter>,
    tmp: PathBuf,
    name: String,
    rows: u64,
    min_id: u64,
    max_id: u64,
}

/// Rows reach the Parquet writer in blocks of this many rows, counted from the part's start, whatever
/// the batches the writer was given: a part's bytes then depend only on its rows, so a resumed run
/// writes byte-identical parts.
pub(crate) const WRITE_BLOCK: usize = 8192;

/// The journal of an unfinished run (`_progress.json`), rewritten atomically after each part closes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Progress {
    format: String,
    /// Source rows (in reading order) fully covered by the committed parts.
    source_rows_done: u64,
    /// Settings that shape the bytes: a resume must use the same.
    batch_size: usize,
    rows_per_part: usize,
    /// The manifest so far: committed parts only.
    manifest: Manifest,
}

/// Writes a soft-label dataset folder. Call [`SoftLabelWriter::finish`]: a dropped writer leaves no
/// manifest, so the folder never looks complete.
pub struct SoftLabelWriter {
    dir: PathBuf,
    manifest: Manifest,
    schema: SchemaRef,
    props: WriterProperties,
    options: WriterOptions,
    batch_size: usize,
    current: Option<OpenPart>,
    /// Rows given to the current part (written or pending).
    part_rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    last_source_row: Option<u64>,
    /// Source rows skipped (non-finite inputs) and not yet counted in a committed part.
    skipped: Vec<u64>,
}

/// What [`SoftLabelWriter::resume`] found.
pub enum Resumed {
    /// The dataset is already complete: its manifest.
    Complete(Box<Manifest>),
    /// A writer continuing after the committed parts.
    Continue {
        /// The writer.
        writer: Box<SoftLabelWriter>,
        /// Source rows already covered: reading restarts after them.
        source_rows_done: u64,
    },
}

fn is_dataset_file(name: &str) -> bool {
    [MANIFEST, PROGRESS].contains(&name)
        || [MANIFEST, PROGRESS].iter().any(|m| name == format!(".{m}.tmp"))
        || (name.starts_with("part-") && name.ends_with(".parquet"))
        || (name.starts_with(".part-") && name.ends_with(".parquet.tmp"))
}

/// Lists a folder's entry names.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Makes `dir` ready for a new dataset: created if missing; if it holds files, refused unless
/// `overwrite`, and then only softlabel's own files are removed.
pub(crate) fn prepare_dir(dir: &Path, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let existing = entries(dir)?;
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::dataset(
            dir,
            format!(
                "output folder is not empty ({} entries); choose another --out, pass --resume to continue an \
                 interrupted run, or --overwrite to replace it",
                existing.len()
            ),
        ));
    }
    remove_dataset_files(dir, &existing, |_| true)
}

/// Removes softlabel's files among `names` for which `keep` is false; refuses if a foreign file is there.
fn remove_dataset_files(dir: &Path, names: &[String], remove: impl Fn(&str) -> bool) -> Result<()> {
    if let Some(other) = names.iter().find(|n| !is_dataset_file(n)) {
        return Err(Error::dataset(dir, format!("refused: the folder holds '{other}', which softlabel did not write")));
    }
    // The manifest and journal go first, so an interrupted clean-up never leaves them naming missing parts.
    let mut ordered: Vec<&String> = names.iter().filter(|n| remove(n)).collect();
    ordered.sort_by_key(|n| !(n.as_str() == MANIFEST || n.as_str() == PROGRESS));
    for name in ordered {
        let p = dir.join(name);
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

fn writer_properties(schema: &SchemaRef, manifest: &Manifest, options: &WriterOptions) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(options.zstd_level)
        .map_err(|e| Error::Config(format!("zstd level {}: {e}", options.zstd_level)))?;
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
        if col.physical_type() == PhysicalType::FLOAT {
            // Floats compress far better with their bytes split into streams; dictionaries never pay.
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        } else if top == columns::ID {
            // Ids are unique: a dictionary would only grow the file.
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        } else if top == columns::INPUT {
            b = b.set_column_dictionary_enabled(path, false);
        }
    }
    Ok(b.build())
}

/// The manifest fields that must agree for a resume to continue an earlier run.
fn same_run(a: &Manifest, b: &Manifest) -> std::result::Result<(), String> {
    let checks: [(&str, bool); 12] = [
        ("teacher (sha256)", a.teacher == b.teacher),
        ("temperature", a.temperature == b.temperature),
        ("number of classes", a.num_classes == b.num_classes),
        ("class names", a.class_names == b.class_names),
        ("input column/shape", a.input == b.input),
        ("label column", a.label_column == b.label_column),
        ("id column", a.id_column == b.id_column),
        ("source data (fingerprint)", a.source.fingerprint == b.source.fingerprint),
        ("shard", a.shard == b.shard),
        ("storage form", a.form == b.form),
        ("float16 setting", a.float16 == b.float16),
        ("views setting", a.views == b.views),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(format!("the {what} differs from the interrupted run's")),
        None => Ok(()),
    }
}

impl SoftLabelWriter {
    /// Prepares `dir` and returns a writer for a dataset described by `manifest` (its `parts`, `rows` and
    /// `labeled_rows` are filled in as rows are written). `batch_size` is recorded in the journal.
    pub fn create(dir: &Path, mut manifest: Manifest, options: WriterOptions, batch_size: usize) -> Result<Self> {
        if options.rows_per_part == 0 {
            return Err(Error::Config("rows per part must be > 0".into()));
        }
        prepare_dir(dir, options.overwrite)?;
        manifest.parts.clear();
        manifest.rows = 0;
        manifest.labeled_rows = 0;
        Self::with_manifest(dir, manifest, options, batch_size)
    }

    fn with_manifest(dir: &Path, manifest: Manifest, options: WriterOptions, batch_size: usize) -> Result<Self> {
        let schema: SchemaRef = Arc::new(manifest.arrow_schema());
        let props = writer_properties(&schema, &manifest, &options)?;
        Ok(SoftLabelWriter {
            dir: dir.to_path_buf(),
            manifest,
            schema,
            props,
            options,
            batch_size,
            current: None,
            part_rows: 0,
            pending: Vec::new(),
            pending_rows: 0,
            last_source_row: None,
            skipped: Vec::new(),
        })
    }

    /// Continues an interrupted run in `dir`: committed parts (listed in `_progress.json`) are verified
    /// (size and sha256) and kept; everything else softlabel wrote is removed. A folder with no journal
    /// starts afresh; a complete dataset is returned as is.
    pub fn resume(dir: &Path, template: Manifest, options: WriterOptions, batch_size: usize) -> Result<Resumed> {
        if !dir.join(PROGRESS).exists() {
            if dir.join(MANIFEST).exists() {
                let m = Manifest::read(dir)?;
                same_run(&m, &template).map_err(|e| Error::dataset(dir, format!("cannot resume: {e}")))?;
                crate::store::SoftLabels::open(dir)?;
                return Ok(Resumed::Complete(Box::new(m)));
            }
            // Interrupted before the first part was committed (or never started): start afresh.
            if dir.exists() {
                let names = entries(dir)?;
                remove_dataset_files(dir, &names, |_| true)?;
            }
            let writer = Self::create(dir, template, WriterOptions { overwrite: false, ..options }, batch_size)?;
            return Ok(Resumed::Continue { writer: Box::new(writer), source_rows_done: 0 });
        }
        let path = dir.join(PROGRESS);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let progress: Progress =
            serde_json::from_str(&text).map_err(|e| Error::dataset(&path, format!("invalid progress journal: {e}")))?;
        let cannot =
            |msg: String| Error::dataset(dir, format!("cannot resume: {msg}; rerun with --overwrite to start again"));
        same_run(&progress.manifest, &template).map_err(cannot)?;
        if progress.batch_size != batch_size {
            return Err(cannot(format!(
                "--batch-size {batch_size} differs from the interrupted run's {}",
                progress.batch_size
            )));
        }
        if progress.rows_per_part != options.rows_per_part {
            return Err(cannot(format!(
                "--rows-per-part {} differs from the interrupted run's {}",
                options.rows_per_part, progress.rows_per_part
            )));
        }
        let committed: Vec<String> = progress.manifest.parts.iter().map(|p| p.file.clone()).collect();
        for part in &progress.manifest.parts {
            let p = dir.join(&part.file);
            let bytes = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            if bytes != part.bytes || sha256_file(&p)? != part.sha256 {
                return Err(cannot(format!("committed part {} was changed since it was written", part.file)));
            }
        }
        let names = entries(dir)?;
        remove_dataset_files(dir, &names, |n| n != PROGRESS && !committed.iter().any(|c| c == n))?;
        let mut manifest = progress.manifest;
        manifest.created_by = template.created_by;
        let writer = Self::with_manifest(dir, manifest, options, batch_size)?;
        Ok(Resumed::Continue { writer: Box::new(writer), source_rows_done: progress.source_rows_done })
    }

    /// The folder being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records source rows that were skipped for non-finite inputs. They are counted in the manifest
    /// with the part that covers them, so a resumed run counts each exactly once.
    pub fn skipped(&mut self, source_rows: &[u64]) {
        self.skipped.extend_from_slice(source_rows);
        if let Some(&last) = source_rows.last() {
            self.last_source_row = Some(self.last_source_row.map_or(last, |r| r.max(last)));
        }
    }

    /// The manifest so far (committed parts only).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Appends rows (see [`ScoredRows`]); `soft` is computed here. A dataset with views takes each source
    /// row's views together, in order.
    pub fn write(&mut self, rows: &ScoredRows) -> Result<()> {
        let ScoredRows { ids, labels, input, logits, source_rows, views } = rows;
        let views = views.as_ref();
        let k = self.manifest.num_classes;
        let w = self.manifest.input.width;
        let n = ids.len();
        if self.manifest.views.is_some() != views.is_some() || views.is_some_and(|v| v.len() != n) {
            return Err(Error::Internal("write: view columns do not match the manifest or the rows".into()));
        }
        if labels.len() != n || input.len() != n * w || logits.len() != n * k || source_rows.len() != n {
            return Err(Error::Internal(format!(
                "write: {n} ids, {} labels, {} input values (width {w}), {} logits (K {k}), {} source rows",
                labels.len(),
                input.len(),
                logits.len(),
                source_rows.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let batch = self.record_batch(ids, labels, input, logits, views)?;
        let limit = self.part_limit();
        let mut start = 0;
        while start < n {
            if self.current.is_none() {
                self.open_part()?;
            }
            let take = (limit - self.part_rows).min(n - start);
            self.push(batch.slice(start, take), &ids[start..start + take], &labels[start..start + take])?;
            start += take;
            self.last_source_row =
                Some(self.last_source_row.map_or(source_rows[start - 1], |r| r.max(source_rows[start - 1])));
            if self.part_rows == limit {
                self.close_part(source_rows[start - 1] + 1)?;
            }
        }
        Ok(())
    }

    /// Rows per part: `rows_per_part`, rounded up to whole groups of views, so a part never splits a
    /// source row's views (a resume restarts at a source row).
    fn part_limit(&self) -> usize {
        let views = self.manifest.views.map_or(1, |v| usize::from(v.count.max(1)));
        self.options.rows_per_part.div_ceil(views) * views
    }

    fn record_batch(
        &self,
        ids: &[u64],
        labels: &[Option<i64>],
        input: &ArrayRef,
        logits: &[f32],
        views: Option<&ViewColumns>,
    ) -> Result<RecordBatch> {
        let k = self.manifest.num_classes;
        let t = self.manifest.temperature;
        let list = |values: ArrayRef, n: usize| -> Result<ArrayRef> {
            let item = Arc::new(Field::new("item", values.data_type().clone(), false));
            Ok(Arc::new(
                FixedSizeListArray::try_new(item, n as i32, values, None)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ))
        };
        let mut cols: Vec<ArrayRef> =
            vec![Arc::new(UInt64Array::from(ids.to_vec())), Arc::new(Int64Array::from(labels.to_vec()))];
        if let Some(v) = views {
            cols.push(Arc::new(UInt16Array::from(v.view.clone())));
            cols.push(Arc::new(Int16Array::from(v.shift_x.clone())));
            cols.push(Arc::new(Int16Array::from(v.shift_y.clone())));
        }
        if self.manifest.input.stored {
            cols.push(list(input.clone(), self.manifest.input.width)?);
        }
        match self.manifest.form {
            LabelForm::Dense => {
                let mut soft = vec![0f32; logits.len()];
                for (z, p) in logits.chunks_exact(k).zip(soft.chunks_exact_mut(k)) {
                    softmax_t(z, t, p);
                }
                cols.push(list(self.floats(logits)?, k)?);
                cols.push(list(self.floats(&soft)?, k)?);
            }
            LabelForm::TopK { k: top } => {
                let (mut index, mut value, mut lse) = (Vec::new(), Vec::new(), Vec::new());
                for z in logits.chunks_exact(k) {
                    let idx = top_k(z, top);
                    value.extend(idx.iter().map(|&i| z[i as usize]));
                    index.extend(idx);
                    lse.push(logsumexp_t(z, t));
                }
                cols.push(list(Arc::new(UInt32Array::from(index)), top)?);
                cols.push(list(self.floats(&value)?, top)?);
                cols.push(Arc::new(Float64Array::from(lse)));
            }
            LabelForm::Sampled { k: draws, seed } => {
                let mut index = Vec::with_capacity(ids.len() * draws);
                for (r, (z, &id)) in logits.chunks_exact(k).zip(ids).enumerate() {
                    // A view's draws are keyed by id ^ (view << 48), so view 0's equal the unaugmented row's.
                    let view = views.map_or(0, |v| u64::from(v.view[r]));
                    index.extend(sample_classes(z, t, draws, seed, id ^ (view << 48)));
                }
                cols.push(list(Arc::new(UInt32Array::from(index)), draws)?);
            }
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::Internal(format!("record batch: {e}")))
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

    /// Queues rows for the current part and writes every complete block.
    fn push(&mut self, batch: RecordBatch, ids: &[u64], labels: &[Option<i64>]) -> Result<()> {
        let part = self.current.as_mut().ok_or_else(|| Error::Internal("no open part".into()))?;
        part.rows += ids.len() as u64;
        if let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) {
            part.min_id = part.min_id.min(*lo);
            part.max_id = part.max_id.max(*hi);
        }
        self.part_rows += ids.len();
        self.manifest.rows += ids.len() as u64;
        self.manifest.labeled_rows += labels.iter().filter(|l| l.is_some()).count() as u64;
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        while self.pending_rows >= WRITE_BLOCK {
            self.flush(WRITE_BLOCK)?;
        }
        Ok(())
    }

    /// Writes the first `rows` pending rows as one batch.
    fn flush(&mut self, rows: usize) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let all = arrow_select::concat::concat_batches(&self.schema, &self.pending)
            .map_err(|e| Error::Internal(format!("concat: {e}")))?;
        let part = self.current.as_mut().ok_or_else(|| Error::Internal("no open part".into()))?;
        part.writer.write(&all.slice(0, rows)).map_err(|e| Error::dataset(&part.tmp, format!("cannot write: {e}")))?;
        self.pending = if rows < all.num_rows() { vec![all.slice(rows, all.num_rows() - rows)] } else { Vec::new() };
        self.pending_rows = all.num_rows() - rows;
        Ok(())
    }

    fn open_part(&mut self) -> Result<()> {
        let name = format!("part-{:05}.parquet", self.manifest.parts.len());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = ArrowWriter::try_new(
            HashingWriter { file: BufWriter::with_capacity(1 << 20, file), hasher: Default::default() },
            self.schema.clone(),
            Some(self.props.clone()),
        )
        .map_err(|e| Error::dataset(&tmp, format!("cannot start Parquet writer: {e}")))?;
        self.current = Some(OpenPart { writer, tmp, name, rows: 0, min_id: u64::MAX, max_id: 0 });
        self.part_rows = 0;
        Ok(())
    }

    /// Closes the current part, renames it into place and commits it to the journal.
    fn close_part(&mut self, source_rows_done: u64) -> Result<()> {
        if self.current.is_none() {
            return Ok(());
        }
        self.flush(self.pending_rows)?;
        let Some(part) = self.current.take() else { return Ok(()) };
        let OpenPart { writer, tmp, name, rows, min_id, max_id } = part;
        // Only close() writes the footer; the file keeps its temporary name until it is complete and synced.
        // If that fails (disk full), the unfinished file is removed: it is not data.
        let finished = writer
            .into_inner()
            .map_err(|e| Error::dataset(&tmp, format!("cannot finish Parquet file: {e}")))
            .and_then(|out| {
                let HashingWriter { file, hasher } = out;
                let file = file.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
                file.sync_all().map_err(|e| Error::io(&tmp, e))?;
                Ok(hex(&sha2::Digest::finalize(hasher)))
            });
        let sha256 = match finished {
            Ok(sha) => sha,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let path = self.dir.join(&name);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        self.manifest.parts.push(PartInfo { file: name, rows, bytes, sha256, min_id, max_id });
        self.part_rows = 0;
        let counted = self.skipped.iter().filter(|&&r| r < source_rows_done).count();
        self.manifest.skipped_nonfinite_rows += counted as u64;
        self.skipped.retain(|&r| r >= source_rows_done);
        let progress = Progress {
            format: "softlabel-progress".into(),
            source_rows_done,
            batch_size: self.batch_size,
            rows_per_part: self.options.rows_per_part,
            manifest: self.manifest.clone(),
        };
        let json = serde_json::to_vec_pretty(&progress).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.dir.join(PROGRESS), &json)
    }

    /// Closes the last part and writes the manifest; returns it. The journal is removed last.
    pub fn finish(mut self) -> Result<Manifest> {
        let done = self.last_source_row.map_or(0, |r| r + 1);
        self.close_part(done)?;
        self.manifest.skipped_nonfinite_rows += self.skipped.len() as u64;
        self.skipped.clear();
        self.manifest.seal();
        write_atomic(&self.dir.join(MANIFEST), &self.manifest.to_json()?)?;
        let progress = self.dir.join(PROGRESS);
        if progress.exists() {
            std::fs::remove_file(&progress).map_err(|e| Error::io(&progress, e))?;
            sync_dir(&self.dir)?;
        }
        Ok(self.manifest.clone())
    }
}

impl Drop for SoftLabelWriter {
    fn drop(&mut self) {
        // An unfinished part is not data: remove its temporary file.
        if let Some(part) = self.current.take() {
            let tmp = part.tmp.clone();
            drop(part);
            let _ = std::fs::remove_file(tmp);
        }
    }
}
