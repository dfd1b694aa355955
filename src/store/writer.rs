//! Writing a soft-label dataset: parts under temporary names, renamed when closed; the manifest last.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{Field, SchemaRef};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{columns, Manifest, PartInfo, MANIFEST};
use crate::dataset::sha256_file;
use crate::error::{Error, Result};
use crate::soften::softmax_t;

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

struct OpenPart {
    writer: ArrowWriter<BufWriter<File>>,
    tmp: PathBuf,
    name: String,
    rows: u64,
    min_id: u64,
    max_id: u64,
}

/// Writes a soft-label dataset folder. Call [`SoftLabelWriter::finish`]: a dropped writer leaves no
/// manifest, so the folder never looks complete.
pub struct SoftLabelWriter {
    dir: PathBuf,
    manifest: Manifest,
    schema: SchemaRef,
    props: WriterProperties,
    options: WriterOptions,
    current: Option<OpenPart>,
}

fn is_dataset_file(name: &str) -> bool {
    name == MANIFEST
        || name == "._manifest.json.tmp"
        || (name.starts_with("part-") && name.ends_with(".parquet"))
        || (name.starts_with(".part-") && name.ends_with(".parquet.tmp"))
}

/// Makes `dir` ready for a new dataset: created if missing; if it holds files, refused unless
/// `overwrite`, and then only softlabel's own files are removed.
fn prepare_dir(dir: &Path, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut existing = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        existing.push(entry.file_name().to_string_lossy().into_owned());
    }
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::dataset(
            dir,
            format!(
                "output folder is not empty ({} entries); choose another --out or pass --overwrite",
                existing.len()
            ),
        ));
    }
    if let Some(other) = existing.iter().find(|n| !is_dataset_file(n)) {
        return Err(Error::dataset(
            dir,
            format!("--overwrite refused: the folder holds '{other}', which softlabel did not write"),
        ));
    }
    // The manifest goes first, so an interrupted overwrite never leaves a manifest naming missing parts.
    let mut ordered = existing;
    ordered.sort_by_key(|n| n != MANIFEST);
    for name in ordered {
        let p = dir.join(&name);
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

/// fsync a folder, so renames inside it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&tmp, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

impl SoftLabelWriter {
    /// Prepares `dir` and returns a writer for a dataset described by `manifest` (its `parts`, `rows` and
    /// `labeled_rows` are filled in as rows are written).
    pub fn create(dir: &Path, mut manifest: Manifest, options: WriterOptions) -> Result<Self> {
        if options.rows_per_part == 0 {
            return Err(Error::Config("rows per part must be > 0".into()));
        }
        prepare_dir(dir, options.overwrite)?;
        manifest.parts.clear();
        manifest.rows = 0;
        manifest.labeled_rows = 0;
        let schema: SchemaRef = Arc::new(manifest.arrow_schema());
        let props = writer_properties(&schema, &manifest, &options)?;
        Ok(SoftLabelWriter { dir: dir.to_path_buf(), manifest, schema, props, options, current: None })
    }

    /// The folder being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends rows: `input` holds `ids.len() * width` values of the manifest's input type, `logits`
    /// holds `ids.len() * num_classes` raw logits. `soft` is computed here.
    pub fn write(&mut self, ids: &[u64], labels: &[Option<i64>], input: &ArrayRef, logits: &[f32]) -> Result<()> {
        let k = self.manifest.num_classes;
        let w = self.manifest.input.width;
        let n = ids.len();
        if labels.len() != n || input.len() != n * w || logits.len() != n * k {
            return Err(Error::Internal(format!(
                "write: {n} ids, {} labels, {} input values (width {w}), {} logits (K {k})",
                labels.len(),
                input.len(),
                logits.len()
            )));
        }
        let mut start = 0;
        while start < n {
            if self.current.is_none() {
                self.open_part()?;
            }
            let room = self.options.rows_per_part - self.current.as_ref().map_or(0, |p| p.rows as usize);
            let take = room.min(n - start);
            let end = start + take;
            self.write_rows(
                &ids[start..end],
                &labels[start..end],
                &input.slice(start * w, take * w),
                &logits[start * k..end * k],
            )?;
            start = end;
            if self.current.as_ref().is_some_and(|p| p.rows as usize >= self.options.rows_per_part) {
                self.close_part()?;
            }
        }
        Ok(())
    }

    fn write_rows(&mut self, ids: &[u64], labels: &[Option<i64>], input: &ArrayRef, logits: &[f32]) -> Result<()> {
        let k = self.manifest.num_classes;
        let t = self.manifest.temperature;
        let mut soft = vec![0f32; logits.len()];
        for (z, p) in logits.chunks_exact(k).zip(soft.chunks_exact_mut(k)) {
            softmax_t(z, t, p);
        }
        let list = |values: ArrayRef, n: usize| -> Result<ArrayRef> {
            let item = Arc::new(Field::new("item", values.data_type().clone(), false));
            Ok(Arc::new(
                FixedSizeListArray::try_new(item, n as i32, values, None)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ))
        };
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(UInt64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(labels.to_vec())),
                list(input.clone(), self.manifest.input.width)?,
                list(Arc::new(Float32Array::from(logits.to_vec())), k)?,
                list(Arc::new(Float32Array::from(soft)), k)?,
            ],
        )
        .map_err(|e| Error::Internal(format!("record batch: {e}")))?;
        let part = self.current.as_mut().ok_or_else(|| Error::Internal("no open part".into()))?;
        part.writer.write(&batch).map_err(|e| Error::dataset(&part.tmp, format!("cannot write: {e}")))?;
        part.rows += ids.len() as u64;
        if let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) {
            part.min_id = part.min_id.min(*lo);
            part.max_id = part.max_id.max(*hi);
        }
        self.manifest.rows += ids.len() as u64;
        self.manifest.labeled_rows += labels.iter().filter(|l| l.is_some()).count() as u64;
        Ok(())
    }

    fn open_part(&mut self) -> Result<()> {
        let name = format!("part-{:05}.parquet", self.manifest.parts.len());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            self.schema.clone(),
            Some(self.props.clone()),
        )
        .map_err(|e| Error::dataset(&tmp, format!("cannot start Parquet writer: {e}")))?;
        self.current = Some(OpenPart { writer, tmp, name, rows: 0, min_id: u64::MAX, max_id: 0 });
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some(part) = self.current.take() else { return Ok(()) };
        let OpenPart { writer, tmp, name, rows, min_id, max_id } = part;
        // Only close() writes the footer; the file keeps its temporary name until it is complete and synced.
        writer.close().map_err(|e| Error::dataset(&tmp, format!("cannot finish Parquet file: {e}")))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
        let path = self.dir.join(&name);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        let sha256 = sha256_file(&path)?;
        self.manifest.parts.push(PartInfo { file: name, rows, bytes, sha256, min_id, max_id });
        Ok(())
    }

    /// Closes the last part and writes the manifest; returns it.
    pub fn finish(mut self) -> Result<Manifest> {
        self.close_part()?;
        let json = serde_json::to_vec_pretty(&self.manifest).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.dir.join(MANIFEST), &json)?;
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
