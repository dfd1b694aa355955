//! Parquet input: a file or a folder of `*.parquet` files, the input as one list column (fixed-size
//! list, list or large list of any integer or float type) or several scalar numeric columns.

use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::{Batch, DataSpec, ElementType, Source, SourceInfo};
use crate::error::{Error, Result};
use crate::util::{guarded, Guarded, Links, ParquetFile};

mod decode;

/// How the input is laid out in the files (the same in every file).
#[derive(Debug, Clone, PartialEq, Eq)]
enum InputLayout {
    /// One list column; `width` known for fixed-size lists.
    List { column: String, width: Option<usize>, element: ElementType },
    /// Several scalar columns, read as f32.
    Scalars { columns: Vec<String> },
}

/// An opened input dataset: the files and how to read them.
#[derive(Debug, Clone)]
pub struct ParquetSource {
    files: Vec<PathBuf>,
    rows_per_file: Vec<u64>,
    layout: InputLayout,
    /// The further inputs' columns (each one list or scalar column), for teachers with several inputs.
    extra: Vec<InputLayout>,
    label_column: Option<String>,
    id_column: Option<String>,
    skip_nonfinite: bool,
}

/// Lists the Parquet files of `path`: the file itself, or a folder's `*.parquet` files sorted by name.
///
/// A URL names one `.parquet` object, or a prefix whose `*.parquet` objects (directly below it) are read.
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if crate::util::is_url(path) {
        if path.extension().is_some_and(|e| e == "parquet") {
            return Ok(vec![path.to_path_buf()]);
        }
        let listed = crate::util::remote::Object::at(path)?.list()?;
        let mut files: Vec<PathBuf> =
            listed.iter().filter(|(n, _)| n.ends_with(".parquet")).map(|(n, _)| path.join(n)).collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::data(path, "prefix holds no *.parquet objects"));
        }
        return Ok(files);
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let p = entry.map_err(|e| Error::io(path, e))?.path();
        if p.extension().is_some_and(|e| e == "parquet") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::data(path, "folder holds no *.parquet files"));
    }
    Ok(files)
}

/// Opens a Parquet file for reading, after checking its footer's column-chunk byte ranges: the parquet
/// crate panics on negative offsets or sizes (found by fuzzing), so a damaged footer must be refused
/// here, as an error naming the file. Every Parquet file softlabel reads is opened through this.
pub fn open_parquet(path: &Path, links: Links) -> Result<ParquetRecordBatchReaderBuilder<ParquetFile>> {
    let file = ParquetFile::open(path, links)?;
    let len = file.size();
    let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file))
        .map_err(|msg| Error::data(path, format!("not a readable Parquet file: the footer decoder failed: {msg}")))?
        .map_err(|error| Error::Parquet { path: path.to_path_buf(), error })?;
    for (g, rg) in builder.metadata().row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(Error::data(path, format!("corrupt footer: row group {g} has {} rows", rg.num_rows())));
        }
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let size = c.compressed_size();
            let end = start.checked_add(size);
            if start < 0 || size < 0 || end.is_none_or(|e| e as u64 > len) {
                return Err(Error::data(
                    path,
                    format!(
                        "corrupt footer: column '{}' in row group {g} claims bytes {start}..+{size} of a {len}-byte file",
                        c.column_path().string()
                    ),
                ));
            }
        }
    }
    Ok(builder)
}

fn open_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<ParquetFile>> {
    open_parquet(path, Links::Follow)
}

fn column_names(schema: &Schema) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// [`find_column`] for an input column: the error says which flag chooses it.
fn find_input_column<'a>(schema: &'a Schema, path: &Path, name: &str) -> Result<&'a arrow_schema::Field> {
    find_column(schema, path, name).map_err(|e| match e {
        Error::Data { path, message } => {
            Error::Data { path, message: format!("{message}; choose the input with --input-column NAME") }
        }
        e => e,
    })
}

fn find_column<'a>(schema: &'a Schema, path: &Path, name: &str) -> Result<&'a arrow_schema::Field> {
    schema
        .field_with_name(name)
        .map_err(|_| Error::data(path, format!("no column '{name}' (columns: {})", column_names(schema))))
}

fn check_integer(path: &Path, field: &arrow_schema::Field, what: &str) -> Result<()> {
    if field.data_type().is_integer() {
        Ok(())
    } else {
        Err(Error::data(
            path,
            format!("{what} column '{}' has type {}, expected an integer type", field.name(), field.data_type()),
        ))
    }
}

impl ParquetSource {
    /// Opens `path` (a Parquet file or a folder of them) and checks that every file has the columns of
    /// `spec` with usable types. Reads only footers.
    pub fn open(path: &Path, spec: &DataSpec) -> Result<Self> {
        spec.validate()?;
        let files = parquet_files(path)?;
        let mut layout: Option<InputLayout> = None;
        let mut extra: Vec<InputLayout> = Vec::new();
        let mut label_column = spec.label_column.clone();
        let mut id_column = spec.id_column.clone();
        let mut rows_per_file = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let builder = open_builder(file)?;
            let schema = builder.schema().clone();
            rows_per_file.push(builder.metadata().file_metadata().num_rows().max(0) as u64);
            let this = Self::layout_of(file, &schema, &spec.input)?;
            let these = spec
                .extra_inputs
                .iter()
                .map(|c| {
                    Self::layout_of(file, &schema, std::slice::from_ref(c)).map_err(|e| match e {
                        Error::Data { path, message } => Error::Data {
                            path,
                            message: message.replace(
                                "choose the input with --input-column NAME",
                                "map each teacher input to a column with --input NAME=COLUMN",
                            ),
                        },
                        e => e,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if i == 0 {
                extra = these;
            } else if extra != these {
                return Err(Error::data(
                    file,
                    format!("input columns {these:?} differ from {}'s {extra:?}", files[0].display()),
                ));
            }
            if i == 0 {
                // Default label/id columns are resolved on the first file and required in the rest.
                if label_column.is_none() && schema.field_with_name("label").is_ok() {
                    label_column = Some("label".into());
                }
                if id_column.is_none() && schema.field_with_name("id").is_ok() {
                    id_column = Some("id".into());
                }
            }
            if let Some(l) = &label_column {
                // A list of integers a row is a tagger's labels, one per position.
                let f = find_column(&schema, file, l)?;
                match f.data_type() {
                    DataType::FixedSizeList(item, _) | DataType::List(item) | DataType::LargeList(item) => {
                        check_integer(file, item, "label").map_err(|_| {
                            Error::data(
                                file,
                                format!("label column '{l}' is a list of {}, expected integers", item.data_type()),
                            )
                        })?
                    }
                    _ => check_integer(file, f, "label")?,
                }
            }
            if let Some(c) = &id_column {
                check_integer(file, find_column(&schema, file, c)?, "id")?;
            }
            match &layout {
                None => layout = Some(this),
                Some(first) if *first != this => {
                    return Err(Error::data(
                        file,
                        format!("input layout {this:?} differs from {}'s {first:?}", files[0].display()),
                    ))
                }
                Some(_) => {}
            }
        }
        let layout = layout.ok_or_else(|| Error::data(path, "no files"))?;
        for c in &spec.extra_inputs {
            if spec.input.contains(c) {
                return Err(Error::Config(format!("column '{c}' is mapped to two teacher inputs")));
            }
        }
        Ok(ParquetSource {
            files,
            rows_per_file,
            layout,
            extra,
            label_column,
            id_column,
            skip_nonfinite: spec.skip_nonfinite,
        })
    }

    fn layout_of(path: &Path, schema: &Schema, input: &[String]) -> Result<InputLayout> {
        let find_column = find_input_column;
        if input.len() > 1 {
            for name in input {
                let f = find_column(schema, path, name)?;
                if ElementType::from_arrow(f.data_type()).is_none() {
                    return Err(Error::data(
                        path,
                        format!("input column '{name}' has type {}, expected a numeric scalar", f.data_type()),
                    ));
                }
            }
            return Ok(InputLayout::Scalars { columns: input.to_vec() });
        }
        let name = &input[0];
        let f = find_column(schema, path, name)?;
        let (width, item) = match f.data_type() {
            DataType::FixedSizeList(item, n) => (Some(*n as usize), item),
            DataType::List(item) | DataType::LargeList(item) => (None, item),
            dt if ElementType::from_arrow(dt).is_some() => {
                return Ok(InputLayout::Scalars { columns: input.to_vec() });
            }
            dt => {
                return Err(Error::data(
                    path,
                    format!("input column '{name}' has type {dt}, expected a list of numbers or a numeric column"),
                ))
            }
        };
        let element = ElementType::from_arrow(item.data_type()).ok_or_else(|| {
            Error::data(
                path,
                format!("input column '{name}' holds {} values, expected an integer or float type", item.data_type()),
            )
        })?;
        Ok(InputLayout::List { column: name.clone(), width, element })
    }

    fn open_reader(&self, file: &Path, batch_size: usize, offset: u64) -> Result<Guarded<ParquetRecordBatchReader>> {
        let builder = open_builder(file)?;
        let schema = builder.schema().clone();
        let mut wanted: Vec<&str> = Vec::new();
        for layout in std::iter::once(&self.layout).chain(&self.extra) {
            match layout {
                InputLayout::List { column, .. } => wanted.push(column.as_str()),
                InputLayout::Scalars { columns } => wanted.extend(columns.iter().map(String::as_str)),
            }
        }
        wanted.extend(self.label_column.as_deref());
        wanted.extend(self.id_column.as_deref());
        let mut indices = Vec::new();
        for name in wanted {
            indices.push(
                schema.index_of(name).map_err(|_| {
                    Error::data(file, format!("no column '{name}' (columns: {})", column_names(&schema)))
                })?,
            );
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let mut builder = builder.with_projection(mask).with_batch_size(batch_size);
        if offset > 0 {
            builder = builder.with_offset(offset as usize);
        }
        builder.build().map(Guarded::new).map_err(|error| Error::Parquet { path: file.to_path_buf(), error })
    }
}

impl Source for ParquetSource {
    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn rows(&self) -> u64 {
        self.rows_per_file.iter().sum()
    }

    fn label_column(&self) -> Option<&str> {
        self.label_column.as_deref()
    }

    fn id_column(&self) -> Option<&str> {
        self.id_column.as_deref()
    }

    fn input_name(&self) -> String {
        match &self.layout {
            InputLayout::List { column, .. } => column.clone(),
            InputLayout::Scalars { columns } => columns.join(","),
        }
    }

    /// Fixed-size lists and scalar columns fix the width; lists leave it to the first batch.
    fn width(&self) -> Option<usize> {
        match &self.layout {
            InputLayout::List { width, .. } => *width,
            InputLayout::Scalars { columns } => Some(columns.len()),
        }
    }

    fn element_type(&self) -> ElementType {
        match &self.layout {
            InputLayout::List { element, .. } => *element,
            InputLayout::Scalars { .. } => ElementType::F32,
        }
    }

    /// sha256 over every file's name, size and sha256 (reads the files whole, once).
    fn source_info_until(&self, stop: &std::sync::atomic::AtomicBool) -> Result<SourceInfo> {
        let files: Vec<(&Path, u64)> =
            self.files.iter().map(PathBuf::as_path).zip(self.rows_per_file.iter().copied()).collect();
        super::files_identity(&files, stop)
    }

    /// A batch never spans two files; within a file, batches start at multiples of `batch_size`. Files
    /// before `skip` are not opened.
    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let batch_size = batch_size.max(1);
        let mut file = 0;
        let mut file_start = 0u64;
        while file < self.files.len() && file_start + self.rows_per_file[file] <= skip {
            file_start += self.rows_per_file[file];
            file += 1;
        }
        let local = skip.saturating_sub(file_start);
        let offset = local - local % batch_size as u64;
        Box::new(BatchIter {
            source: self,
            batch_size,
            file,
            reader: None,
            row_in_file: offset,
            row_in_source: file_start + offset,
        })
    }
}

/// Iterator over a source's batches.
struct BatchIter<'a> {
    source: &'a ParquetSource,
    batch_size: usize,
    file: usize,
    reader: Option<Guarded<ParquetRecordBatchReader>>,
    row_in_file: u64,
    row_in_source: u64,
}

impl Iterator for BatchIter<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let path = self.source.files.get(self.file)?.clone();
            if self.reader.is_none() {
                match self.source.open_reader(&path, self.batch_size, self.row_in_file) {
                    Ok(r) => self.reader = Some(r),
                    Err(e) => {
                        self.file = self.source.files.len();
                        return Some(Err(e));
                    }
                }
            }
            let reader = self.reader.as_mut()?;
            match reader.next() {
                Some(Ok(rb)) => {
                    let out = self.source.convert(&path, &rb, self.row_in_file, self.row_in_source);
                    self.row_in_file += rb.num_rows() as u64;
                    self.row_in_source += rb.num_rows() as u64;
                    if out.is_err() {
                        self.file = self.source.files.len();
                    }
                    return Some(out);
                }
                Some(Err(e)) => {
                    self.file = self.source.files.len();
                    return Some(Err(Error::data(
                        &path,
                        format!("cannot decode rows after row {}: {e}", self.row_in_file),
                    )));
                }
                None => {
                    self.reader = None;
                    self.file += 1;
                    self.row_in_file = 0;
                }
            }
        }
    }
}
