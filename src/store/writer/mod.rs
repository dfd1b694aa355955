//! Writing a soft-label dataset: parts under temporary names, renamed when closed; the manifest last.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{Manifest, PartInfo, MANIFEST, PROGRESS};
use crate::augment::ViewColumns;
use crate::data::SourceInfo;
use crate::error::{Error, Result};
use crate::util::{hex, sync_dir, write_atomic};
use encode::writer_properties;
pub(crate) use folder::{is_dataset_file, not_empty, prepare_dir};

mod encode;
mod folder;
mod journal;
mod pages;
mod part;

use journal::Progress;
use part::PartFile;

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
    pub logits: crate::teacher::Logits,
    /// Each row's position in the source.
    pub source_rows: Vec<u64>,
    /// View columns.
    pub views: Option<ViewColumns>,
    /// Each row's file relative to the data folder (the `path` column), or empty.
    pub paths: Vec<String>,
    /// The teacher's stored features, one `rows * width` vector per manifest feature.
    pub features: Vec<Vec<f32>>,
    /// Each row's position in its source row (sequence datasets), else empty.
    pub positions: Vec<u32>,
    /// Each row's row of `logits` when they are not in order one a row (a sequence teacher's logits
    /// for every position, padding included, read in place), else empty. Such rows are checked here:
    /// no NaN or +inf, not all -inf.
    pub logit_rows: Vec<u32>,
}

impl ScoredRows {
    /// About the bytes of memory these rows hold: the queue between inference and the writer is bounded
    /// by it.
    pub(crate) fn bytes(&self) -> usize {
        let views = self
            .views
            .as_ref()
            .map_or(0, |v| v.view.len() * (2 + 2 + 2 + std::mem::size_of::<crate::augment::CropBox>()));
        self.ids.len() * 8
            + self.labels.len() * std::mem::size_of::<Option<i64>>()
            + self.input.get_array_memory_size()
            + self.logits.len() * 4
            + self.source_rows.len() * 8
            + views
            + self.paths.iter().map(|p| p.len() + std::mem::size_of::<String>()).sum::<usize>()
            + self.features.iter().map(|f| f.len() * 4).sum::<usize>()
            + (self.positions.len() + self.logit_rows.len()) * 4
    }

    /// The teacher's logits of row `r` (`k` classes).
    pub(crate) fn logits_of(&self, r: usize, k: usize) -> &[f32] {
        let at = self.logit_rows.get(r).map_or(r, |&i| i as usize);
        &self.logits[at * k..(at + 1) * k]
    }
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
    /// Where committed parts, the journal and the manifest also go (a dataset on object storage).
    pub publish: Option<Arc<dyn Publish>>,
}

/// A second home for a dataset being written (object storage, `store::remote`): told of each part once
/// it is committed in the local folder, of the journal after it, and of the manifest last, so the
/// second home commits in the same order as the folder.
pub trait Publish: Send + Sync + std::fmt::Debug {
    /// `part` was committed at `local` (closed, synced, renamed): copy it.
    fn part(&self, local: &Path, part: &PartInfo) -> Result<()>;
    /// The journal listing the parts copied so far.
    fn journal(&self, json: &[u8]) -> Result<()>;
    /// The manifest: the dataset is complete.
    fn manifest(&self, json: &[u8]) -> Result<()>;
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { rows_per_part: 500_000, row_group_rows: 65_536, zstd_level: 3, overwrite: false, publish: None }
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

impl HashingWriter {
    /// Asks the kernel to start writing what the file holds so far to disk, without waiting, so the
    /// part's closing fsync finds little left to write (a 425 MB part waited 0.18 s on it).
    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        if self.file.flush().is_ok() {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is this open file's; the call only starts writeback of its pages.
            unsafe { libc::sync_file_range(self.file.get_ref().as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }
}

struct OpenPart {
    writer: PartFile<HashingWriter>,
    tmp: PathBuf,
    name: String,
    rows: u64,
    min_id: u64,
    max_id: u64,
}

/// Rows reach the Parquet writer in blocks of this many rows, counted from the part's start, whatever
/// the batches the writer was given: a part's bytes then depend only on its rows, so a resumed run
/// writes byte-identical parts.
pub(crate) const WRITE_BLOCK: usize = 1024;

/// A row group closes once its encoded pages reach this many bytes, or at `row_group_rows` rows.
const ROW_GROUP_BYTES: usize = 32 << 20;

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
    /// The source's identity, still being computed (see [`SoftLabelWriter::source_later`]).
    source_pending: Option<std::sync::mpsc::Receiver<Result<SourceInfo>>>,
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
        // Columns only: the schema's metadata is embedded when a part closes (see close_part).
        let schema: SchemaRef = Arc::new(manifest.part_schema());
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
            source_pending: None,
        })
    }

    /// The manifest's `source` arrives on `rx` (hashed while rows are scored, so a large source is not
    /// read whole before the first batch). It is awaited before the first part is committed: every
    /// committed part, journal and manifest carries it.
    pub fn source_later(&mut self, rx: std::sync::mpsc::Receiver<Result<SourceInfo>>) {
        self.source_pending = Some(rx);
    }

    fn resolve_source(&mut self) -> Result<()> {
        if let Some(rx) = self.source_pending.take() {
            self.manifest.source =
                rx.recv().map_err(|_| Error::Internal("the source's hashing thread stopped".into()))??;
        }
        Ok(())
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
        let ScoredRows { ids, labels, input, logits, source_rows, views, paths, features, logit_rows, .. } = rows;
        let views = views.as_ref();
        let k = self.manifest.num_classes;
        let w = self.manifest.input.width;
        let n = ids.len();
        if self.manifest.views.is_some() != views.is_some() || views.is_some_and(|v| v.len() != n) {
            return Err(Error::Internal("write: view columns do not match the manifest or the rows".into()));
        }
        let logit_rows_ok = if logit_rows.is_empty() {
            logits.len() == n * k
        } else {
            logit_rows.len() == n
                && logits.len() % k.max(1) == 0
                && logit_rows.iter().all(|&r| (r as usize) < logits.len() / k)
        };
        if labels.len() != n || input.len() != n * w || !logit_rows_ok || source_rows.len() != n {
            return Err(Error::Internal(format!(
                "write: {n} ids, {} labels, {} input values (width {w}), {} logits (K {k}), {} source rows",
                labels.len(),
                input.len(),
                logits.len(),
                source_rows.len()
            )));
        }
        let widths: Vec<usize> = self.manifest.features.iter().map(|f| f.width).collect();
        if features.len() != widths.len() || features.iter().zip(&widths).any(|(f, &w)| f.len() != n * w) {
            return Err(Error::Internal(format!("write: features of {n} rows do not match the manifest's {widths:?}")));
        }
        if self.manifest.has_paths() && paths.len() != n {
            return Err(Error::Internal(format!("write: {n} rows, {} paths", paths.len())));
        }
        if n == 0 {
            return Ok(());
        }
        if !logit_rows.is_empty() {
            self.check_logits(rows)?;
        }
        let batch = self.record_batch(rows)?;
        let limit = self.part_limit();
        let mut start = 0;
        while start < n {
            if self.current.is_none() {
                self.open_part()?;
            }
            let mut take = limit.saturating_sub(self.part_rows).max(1).min(n - start);
            // A sequence's positions (rows of one source row) stay in one part, so a resume that restarts
            // at a source row finds none of its positions committed.
            while self.manifest.sequence.is_some()
                && start + take < n
                && source_rows[start + take] == source_rows[start + take - 1]
            {
                take += 1;
            }
            self.push(batch.slice(start, take), &ids[start..start + take], &labels[start..start + take])?;
            start += take;
            self.last_source_row =
                Some(self.last_source_row.map_or(source_rows[start - 1], |r| r.max(source_rows[start - 1])));
            if self.part_rows >= limit {
                self.close_part(source_rows[start - 1] + 1)?;
            }
        }
        Ok(())
    }

    /// The scorer's logit check ([`crate::soften::invalid_logit`]) for rows read in place
    /// ([`ScoredRows::logit_rows`]).
    fn check_logits(&self, rows: &ScoredRows) -> Result<()> {
        let k = self.manifest.num_classes;
        for r in 0..rows.ids.len() {
            if let Some(v) = crate::soften::invalid_logit(rows.logits_of(r, k)) {
                return Err(Error::model(
                    std::path::Path::new(&self.manifest.teacher.file),
                    format!(
                        "teacher produced a non-finite logit ({v}) for id {}, position {}",
                        rows.ids[r],
                        rows.positions.get(r).copied().unwrap_or(0)
                    ),
                ));
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
        // The Parquet writer holds a row group in memory until it closes: wide rows (1000 classes, 8 KB)
        // close theirs by size, so memory stays bounded and the bytes reach the file while inference runs
        // instead of all at the end. Checked at block boundaries, so the cut depends only on the rows.
        if part.writer.in_progress_size() >= ROW_GROUP_BYTES {
            part.writer.flush().map_err(|e| Error::dataset(&part.tmp, format!("cannot write: {e}")))?;
            part.writer.inner_mut().start_writeback();
        }
        self.pending = if rows < all.num_rows() { vec![all.slice(rows, all.num_rows() - rows)] } else { Vec::new() };
        self.pending_rows = all.num_rows() - rows;
        Ok(())
    }

    fn open_part(&mut self) -> Result<()> {
        let name = format!("part-{:05}.parquet", self.manifest.parts.len());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = PartFile::new(
            HashingWriter { file: BufWriter::with_capacity(1 << 20, file), hasher: Default::default() },
            self.schema.clone(),
            self.props.clone(),
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
        self.resolve_source()?;
        let Some(part) = self.current.take() else { return Ok(()) };
        let OpenPart { mut writer, tmp, name, rows, min_id, max_id } = part;
        // The source's identity and the Arrow schema (whose metadata carries it) go last into the footer:
        // the source may have been hashed after the part opened.
        let (key, value) = self.manifest.source_key_value();
        writer.append_key_value_metadata(KeyValue::new(key, value));
        let embedded = parquet::arrow::encode_arrow_schema(&self.manifest.arrow_schema());
        writer.append_key_value_metadata(KeyValue::new(parquet::arrow::ARROW_SCHEMA_META_KEY.into(), embedded));
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
        write_atomic(&self.dir.join(PROGRESS), &json)?;
        if let Some(publish) = &self.options.publish {
            let part = self.manifest.parts.last().ok_or_else(|| Error::Internal("no committed part".into()))?;
            publish.part(&path, part)?;
            publish.journal(&json)?;
        }
        Ok(())
    }

    /// Closes the last part and writes the manifest; returns it. The journal is removed last.
    pub fn finish(mut self) -> Result<Manifest> {
        let done = self.last_source_row.map_or(0, |r| r + 1);
        self.close_part(done)?;
        self.resolve_source()?;
        self.manifest.skipped_nonfinite_rows += self.skipped.len() as u64;
        self.skipped.clear();
        self.manifest.seal();
        let json = self.manifest.to_json()?;
        write_atomic(&self.dir.join(MANIFEST), &json)?;
        if let Some(publish) = &self.options.publish {
            publish.manifest(&json)?;
        }
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
