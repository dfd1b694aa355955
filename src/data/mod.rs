//! Input datasets: a [`Source`] yields [`Batch`]es of ids, optional labels and a flat input tensor in the
//! source's element type. Parquet ([`parquet`]) is the first format; every reader follows the same
//! error standard (file, column and 0-based row within the file).
//!
//! Values keep their Arrow type until a consumer converts them ([`Batch::input_f32`], ...), so the
//! soft-label writer can store the input exactly as it came.

pub mod csv;
pub mod images;
pub mod npy;
pub mod numeric;
pub mod parquet;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::ArrayRef;
use arrow_schema::DataType;

use crate::error::{Error, Result};
pub use numeric::{numeric_to_f32, numeric_to_f64, numeric_to_i32, numeric_to_i64, numeric_to_u8};
pub use parquet::{open_parquet, parquet_files, ParquetSource};

/// A dataset of input rows, opened and checked (schema, column types) but not yet read.
pub trait Source: Send + Sync {
    /// The files, in reading order.
    fn files(&self) -> &[PathBuf];
    /// Total rows, as the files declare them.
    fn rows(&self) -> u64;
    /// The label column in use, if any.
    fn label_column(&self) -> Option<&str>;
    /// The id column in use, if any (else ids are row indices in the source).
    fn id_column(&self) -> Option<&str>;
    /// The input column name(s), as one display string.
    fn input_name(&self) -> String;
    /// Values per row when the format fixes it.
    fn width(&self) -> Option<usize>;
    /// The element type of [`Batch::input`].
    fn element_type(&self) -> ElementType;
    /// The source's identity (hashes every file once).
    fn source_info(&self) -> Result<SourceInfo> {
        self.source_info_until(&AtomicBool::new(false))
    }
    /// [`Source::source_info`], given up (with an error) soon after `stop` is set: precompute hashes the
    /// source on a thread of its own while rows are scored, and stops it when the run fails.
    fn source_info_until(&self, stop: &AtomicBool) -> Result<SourceInfo>;
    /// Reads the rows in batches of at most `batch_size` rows, starting at the batch that holds source
    /// row `skip` (the batches are the ones a full read yields from there on, so the caller drops the
    /// rows before `skip` from the first one).
    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
    /// The class names the data itself gives (an image folder's subfolders), in label order.
    fn class_names(&self) -> Option<Vec<String>> {
        None
    }
    /// Fits the rows to the model input shape `shape` (without the batch dimension) where the format
    /// decides its rows' shape (an image folder: channels, size, layout). Others keep their rows.
    fn conform(&mut self, _shape: &[i64]) -> Result<()> {
        Ok(())
    }
    /// How images become rows, for an image folder (recorded in the manifest).
    fn image_prep(&self) -> Option<images::ImagePrep> {
        None
    }
    /// Renders crop views of its rows, for a source that can (an image folder).
    fn view_renderer(&self) -> Option<std::sync::Arc<dyn RenderViews>> {
        None
    }
    /// Reads all rows in batches of at most `batch_size` rows.
    fn batches(&self, batch_size: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        self.batches_from(batch_size, 0)
    }
}

/// A source that renders crop views of its rows from their originals (an image folder's images).
pub trait RenderViews: Send + Sync {
    /// The `count` views of source row `row` (id `id`) that `crop` and `seed` draw: each one's crop box and,
    /// row after row, its values in the source's element type.
    fn render(
        &self,
        row: u64,
        id: u64,
        count: u16,
        seed: u64,
        crop: &images::CropViews,
    ) -> Result<(Vec<images::CropBox>, ArrayRef)>;
    /// Source row `row` cropped by each of `boxes` (as recorded), row after row.
    fn render_boxes(&self, row: u64, boxes: &[images::CropBox]) -> Result<ArrayRef>;
}

/// Opens `path` as an input dataset (a Parquet file or a folder of Parquet files) with the columns of
/// `spec`.
pub fn open(path: &Path, spec: &DataSpec) -> Result<Box<dyn Source>> {
    let format = Format::detect(path)?;
    if spec.labels_npy.is_some() && !matches!(format, Format::Npy | Format::Npz) {
        return Err(Error::Config(format!(
            "--labels-npy goes with .npy or .npz data; {} is {}",
            path.display(),
            format.describe()
        )));
    }
    if (spec.npz_key.is_some() || spec.npz_labels.is_some()) && format != Format::Npz {
        return Err(Error::Config(format!(
            "--npz-key and --npz-labels go with .npz data; {} is {}",
            path.display(),
            format.describe()
        )));
    }
    if spec.labels_npy.is_some() && spec.npz_labels.is_some() {
        return Err(Error::Config("give the labels once: --labels-npy FILE or --npz-labels NAME".into()));
    }
    if format != Format::Parquet {
        spec.refuse_extra_inputs(path, format.describe())?;
    }
    Ok(match format {
        Format::Npy => Box::new(npy::NpySource::open(path, spec.labels_npy.as_deref(), spec.skip_nonfinite)?),
        Format::Npz => {
            let labels = match (&spec.labels_npy, &spec.npz_labels) {
                (Some(f), _) => npy::NpyLabels::File(f),
                (None, Some(k)) => npy::NpyLabels::Key(k),
                (None, None) => npy::NpyLabels::None,
            };
            Box::new(npy::NpySource::open_npz(path, spec.npz_key.as_deref(), labels, spec.skip_nonfinite)?)
        }
        Format::Csv => Box::new(csv::CsvSource::open(path, spec)?),
        Format::ImageFolder | Format::ImageList => Box::new(images::ImageFolder::open(path, spec)?),
        Format::Parquet => Box::new(ParquetSource::open(path, spec)?),
    })
}

/// The file formats `--data` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Parquet file or a folder of them (or a soft-label dataset).
    Parquet,
    /// A NumPy `.npy` file.
    Npy,
    /// A NumPy `.npz` archive.
    Npz,
    /// CSV text with a header row.
    Csv,
    /// A folder of class subfolders of PNG or JPEG images (torchvision's ImageFolder layout).
    ImageFolder,
    /// A CSV listing images (a `path` column, relative to the CSV's folder, and a `label` column).
    ImageList,
}

impl Format {
    /// The format of `path`, by its first bytes (magic numbers), else by its extension, else text is
    /// CSV; a folder is Parquet. Anything else is refused, naming what the file starts with.
    pub fn detect(path: &Path) -> Result<Format> {
        if crate::util::is_url(path) {
            // Object storage holds Parquet data (a `.parquet` object or a prefix of them).
            return match path.extension().and_then(|e| e.to_str()) {
                None | Some("parquet") => Ok(Format::Parquet),
                Some(_) => Err(Error::data(
                    path,
                    "only Parquet data (a .parquet object or a prefix of them) is read from object storage; \
                     copy other formats to a local path",
                )),
            };
        }
        if path.is_dir() {
            return Ok(if images::looks_like_image_folder(path) { Format::ImageFolder } else { Format::Parquet });
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let mut head = Vec::new();
        // A file that cannot be opened gets its reader's error (which names the file).
        if let Ok((f, _)) = crate::util::open_regular(path, crate::util::Links::Follow) {
            use std::io::Read;
            let _ = f.take(4096).read_to_end(&mut head);
        }
        if head.starts_with(b"PAR1") {
            return Ok(Format::Parquet);
        }
        if head.starts_with(b"\x93NUMPY") {
            return Ok(Format::Npy);
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            return Ok(Format::Npz);
        }
        // UTF-8 without NUL bytes (a character cut at the 4096th byte is still text).
        let utf8 = match std::str::from_utf8(&head) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
        let text = utf8 && !head.contains(&0);
        // A CSV whose header has a `path` column naming an image first lists images.
        if text && ext.as_deref().is_none_or(|e| e == "csv") && images::lists_images(&head) {
            return Ok(Format::ImageList);
        }
        match ext.as_deref() {
            Some("parquet") => return Ok(Format::Parquet),
            Some("npy") => return Ok(Format::Npy),
            Some("npz") => return Ok(Format::Npz),
            Some("csv") => return Ok(Format::Csv),
            _ => {}
        }
        if head.is_empty() {
            return Ok(Format::Parquet); // missing or empty: the Parquet reader's error names it
        }
        // Text is CSV when its name does not say otherwise (no extension, .txt, .tsv, .dat).
        let plain_name = ext.as_deref().is_none_or(|e| ["txt", "tsv", "dat"].contains(&e));
        if text && plain_name {
            return Ok(Format::Csv);
        }
        if text {
            return Err(Error::data(
                path,
                format!(
                    "a .{} text file is not a format softlabel reads as data (Parquet, .npy, .npz, or CSV with a \
                     header row; name a CSV file .csv)",
                    ext.unwrap_or_default()
                ),
            ));
        }
        let start: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(Error::data(
            path,
            format!(
                "not a format softlabel reads (Parquet, .npy, .npz, or CSV with a header row): it starts with bytes {}",
                start.join(" ")
            ),
        ))
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Parquet => "Parquet",
            Format::Npy => "a .npy file",
            Format::Npz => "a .npz archive",
            Format::Csv => "CSV",
            Format::ImageFolder => "an image folder",
            Format::ImageList => "a CSV list of images",
        }
    }
}

/// Which columns hold what. `None` for label or id means "the default name if the file has it".
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// The input: one list column or several scalar columns, in order.
    pub input: Vec<String>,
    /// Label column; `None`: use `label` when present, else rows are unlabeled.
    pub label_column: Option<String>,
    /// Id column; `None`: use `id` when present, else the row's index in the source.
    pub id_column: Option<String>,
    /// Mark rows with NaN or infinite inputs in [`Batch::nonfinite`] instead of failing on them.
    pub skip_nonfinite: bool,
    /// Hard labels of a `.npy` or `.npz` input: a `.npy` file of one integer per row.
    pub labels_npy: Option<PathBuf>,
    /// The input array of an `.npz` archive (default: its only array).
    pub npz_key: Option<String>,
    /// The labels array of an `.npz` archive.
    pub npz_labels: Option<String>,
    /// How to prepare images (an image folder's `--resize`, `--scale`, `--mean`, `--std`,
    /// `--skip-bad-images`).
    pub images: images::ImageOptions,
    /// How images were prepared by the run that made a dataset: an image folder read again (to train,
    /// evaluate, report) makes the same rows.
    pub image_prep: Option<images::ImagePrep>,
    /// Further input columns, for teachers with several inputs (`--input NAME=COLUMN` after the first):
    /// each read like the input and carried in [`Batch::extra`] in this order. Parquet only.
    pub extra_inputs: Vec<String>,
}

impl DataSpec {
    /// A spec with one input column and default label and id columns.
    pub fn new(input_column: impl Into<String>) -> Self {
        DataSpec {
            input: vec![input_column.into()],
            label_column: None,
            id_column: None,
            skip_nonfinite: false,
            labels_npy: None,
            npz_key: None,
            npz_labels: None,
            images: Default::default(),
            image_prep: None,
            extra_inputs: Vec::new(),
        }
    }

    /// Validates the names given (non-empty, no duplicates).
    pub fn validate(&self) -> Result<()> {
        if self.input.is_empty() || self.input.iter().any(|c| c.is_empty()) {
            return Err(Error::Config("--input-column needs at least one non-empty column name".into()));
        }
        for (i, c) in self.input.iter().enumerate() {
            if self.input[..i].contains(c) {
                return Err(Error::Config(format!("input column '{c}' is named twice")));
            }
        }
        if self.extra_inputs.iter().any(String::is_empty) {
            return Err(Error::Config("--input NAME=COLUMN needs a non-empty column".into()));
        }
        Ok(())
    }

    /// Refuses further input columns for a format that holds one input (every format but Parquet).
    pub(crate) fn refuse_extra_inputs(&self, path: &Path, format: &str) -> Result<()> {
        if self.extra_inputs.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{}: {format} holds one input; a teacher fed several inputs (--input NAME=COLUMN, here also {}) \
             reads them from the columns of Parquet data",
            path.display(),
            self.extra_inputs.join(", ")
        )))
    }
}

/// The rows (positions) of `flat` (`width` values a row) that hold NaN or infinity. With `skip`, all of
/// them; without, the first one as `(row, value in the row, value)`, which the reader turns into its error.
pub(crate) fn nonfinite_rows(
    flat: &[f32],
    width: usize,
    skip: bool,
) -> std::result::Result<Vec<usize>, (usize, usize, f32)> {
    let mut rows = Vec::new();
    if width == 0 {
        return Ok(rows);
    }
    for (i, row) in flat.chunks_exact(width).enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            if !skip {
                return Err((i, j, row[j]));
            }
            rows.push(i);
        }
    }
    Ok(rows)
}

/// The element type of the input values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ElementType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl ElementType {
    pub(crate) fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::UInt8 => ElementType::U8,
            DataType::Int8 => ElementType::I8,
            DataType::UInt16 => ElementType::U16,
            DataType::Int16 => ElementType::I16,
            DataType::UInt32 => ElementType::U32,
            DataType::Int32 => ElementType::I32,
            DataType::UInt64 => ElementType::U64,
            DataType::Int64 => ElementType::I64,
            DataType::Float32 => ElementType::F32,
            DataType::Float64 => ElementType::F64,
            _ => return None,
        })
    }

    /// The Arrow type.
    pub fn to_arrow(self) -> DataType {
        match self {
            ElementType::U8 => DataType::UInt8,
            ElementType::I8 => DataType::Int8,
            ElementType::U16 => DataType::UInt16,
            ElementType::I16 => DataType::Int16,
            ElementType::U32 => DataType::UInt32,
            ElementType::I32 => DataType::Int32,
            ElementType::U64 => DataType::UInt64,
            ElementType::I64 => DataType::Int64,
            ElementType::F32 => DataType::Float32,
            ElementType::F64 => DataType::Float64,
        }
    }

    /// Whether values of this type can be NaN or infinite.
    pub fn is_float(self) -> bool {
        matches!(self, ElementType::F32 | ElementType::F64)
    }
}

/// One batch of rows from one file.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The file the rows came from.
    pub file: PathBuf,
    /// The position in that file of the batch's first row.
    pub first_row: u64,
    /// The position in the whole source (files in reading order) of the batch's first row.
    pub first_source_row: u64,
    /// One id per row.
    pub ids: Vec<u64>,
    /// One label per row (`None`: unlabeled).
    pub labels: Vec<Option<i64>>,
    /// The input values, `rows * width`, row-major, no nulls, in the source's element type.
    pub input: ArrayRef,
    /// Values per row.
    pub width: usize,
    /// Rows (positions in the batch) whose input has a NaN or infinite value; only filled with
    /// [`DataSpec::skip_nonfinite`], else such a row is an error.
    pub nonfinite: Vec<usize>,
    /// The further inputs of a teacher with several ([`DataSpec::extra_inputs`], in that order).
    pub extra: Vec<ExtraInput>,
    /// Each row's file, relative to the data folder, for sources of one file a row (an image folder);
    /// empty for others.
    pub paths: Vec<String>,
    /// Per-position labels (`rows * width`, row-major) when the label column holds a list a row (a
    /// tagger's tags: negative values are no label, as PyTorch's ignore index); empty otherwise.
    pub token_labels: Vec<Option<i64>>,
}

/// One further input column of a batch, for a teacher with several inputs.
#[derive(Debug, Clone)]
pub struct ExtraInput {
    /// The column it came from.
    pub column: String,
    /// The values, `rows * width`, row-major, no nulls, in the column's element type.
    pub values: ArrayRef,
    /// Values per row.
    pub width: usize,
}

/// The rows `rows` of `values` (`width` values a row), in that order.
fn take_rows(values: &dyn arrow_array::Array, width: usize, rows: &[usize]) -> Result<ArrayRef> {
    let mut idx = Vec::with_capacity(rows.len() * width);
    for &i in rows {
        idx.extend((i * width) as u64..((i + 1) * width) as u64);
    }
    let idx = arrow_array::UInt64Array::from(idx);
    arrow_select::take::take(values, &idx, None).map_err(|e| Error::Internal(e.to_string()))
}

impl Batch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks the rows have the `width` values per row of the soft labels they are matched with.
    pub fn check_labels_width(&self, width: usize, column: &str) -> Result<()> {
        if self.width == width {
            return Ok(());
        }
        Err(Error::data(
            &self.file,
            format!("column '{column}' has {} values per row, the labels' inputs have {width}", self.width),
        ))
    }

    /// The input as f32, `rows * width` row-major.
    pub fn input_f32(&self) -> Vec<f32> {
        numeric_to_f32(self.input.as_ref()).unwrap_or_default()
    }

    /// Keeps only the rows where `keep` is true; returns them with each kept row's source position.
    pub fn retain(&self, keep: &[bool]) -> Result<(Batch, Vec<u64>)> {
        let rows: Vec<usize> = (0..self.len()).filter(|&i| keep[i]).collect();
        let source_rows = rows.iter().map(|&i| self.first_source_row + i as u64).collect();
        let input = take_rows(self.input.as_ref(), self.width, &rows)?;
        let extra = self
            .extra
            .iter()
            .map(|e| {
                Ok(ExtraInput {
                    column: e.column.clone(),
                    values: take_rows(e.values.as_ref(), e.width, &rows)?,
                    width: e.width,
                })
            })
            .collect::<Result<_>>()?;
        let batch = Batch {
            file: self.file.clone(),
            first_row: self.first_row,
            first_source_row: self.first_source_row,
            ids: rows.iter().map(|&i| self.ids[i]).collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            input,
            width: self.width,
            nonfinite: Vec::new(),
            extra,
            paths: if self.paths.is_empty() {
                Vec::new()
            } else {
                rows.iter().map(|&i| self.paths[i].clone()).collect()
            },
            token_labels: if self.token_labels.is_empty() {
                Vec::new()
            } else {
                rows.iter()
                    .flat_map(|&i| self.token_labels[i * self.width..(i + 1) * self.width].iter().copied())
                    .collect()
            },
        };
        Ok((batch, source_rows))
    }
}

/// The input data's identity: recorded in a soft-label dataset so its consumers can check what it was
/// made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    /// One entry per file, in reading order.
    pub files: Vec<SourceFile>,
    /// sha256 over every file's name, size and sha256.
    pub fingerprint: String,
}

/// The identity of `files` (each with its row count), read whole once: every file's name, size and
/// sha256, and the fingerprint, sha256 over `name\0size\0sha256\n` of each in order. Only the file's
/// name is recorded: a dataset shared with others does not say where the producer kept its data.
pub(crate) fn files_identity(files: &[(&Path, u64)], stop: &AtomicBool) -> Result<SourceInfo> {
    use sha2::{Digest, Sha256};
    let mut outer = Sha256::new();
    let mut out = Vec::with_capacity(files.len());
    for &(path, rows) in files {
        let (sha, bytes) = if crate::util::is_url(path) {
            crate::util::remote::Object::at(path)?.sha256()?
        } else {
            let (mut f, _) = crate::util::open_regular(path, crate::util::Links::Follow)?;
            let mut h = Sha256::new();
            let bytes = hash_until(&mut f, &mut h, stop).map_err(|e| Error::io(path, e))?;
            (crate::util::hex(&h.finalize()), bytes)
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        outer.update(format!("{name}\0{bytes}\0{sha}\n").as_bytes());
        out.push(SourceFile { path: name, bytes, sha256: sha, rows });
    }
    Ok(SourceInfo { files: out, fingerprint: crate::util::hex(&outer.finalize()) })
}

/// Feeds `f` to `h` in 64 KiB reads until its end (returning the bytes read) or until `stop` is set
/// (an `Interrupted` error). The buffer is per call: an image folder hashes thousands of small files.
pub(crate) fn hash_until(f: &mut impl std::io::Read, h: &mut sha2::Sha256, stop: &AtomicBool) -> std::io::Result<u64> {
    use sha2::Digest;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "hashing stopped: the run failed"));
        }
        match f.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One input file's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The file's name (inside the `--data` folder, or the `--data` file itself): never the folder it
    /// was in on the producing machine.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the content.
    pub sha256: String,
    /// Rows in the file.
    pub rows: u64,
}
