//! CSV input: a header row naming the columns, numeric feature columns as the input (`--input-column
//! a,b,c`, or every numeric column but the label and id), optional integer `label` and `id` columns.
//!
//! arrow-csv splits the records (quoting, escapes); every field is then read as text and parsed here,
//! so an error names the file, the column and the line (header = line 1, one record per line). The
//! file is untrusted: a line longer than [`MAX_LINE`] bytes is refused before it is buffered, ragged
//! records are refused, and the row count comes from reading the file (never from a claim in it).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{Batch, DataSpec, ElementType, Source, SourceInfo};
use crate::error::{Error, Result};
use crate::util::{clip, open_regular, Links};

/// The longest line read (bytes).
pub const MAX_LINE: usize = 16 << 20;
/// Records read to find which columns are numeric when the input columns are not named.
const SNIFF_RECORDS: usize = 1000;
/// The most columns a CSV file may have (checked on the header line before anything is built from it).
pub const MAX_COLUMNS: usize = 1 << 16;

/// A reader that fails on a line longer than [`MAX_LINE`], so one endless line cannot fill memory.
struct LineBound<R> {
    inner: R,
    since_newline: usize,
}

impl<R: Read> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.since_newline = 0;
            } else {
                self.since_newline += 1;
                if self.since_newline > MAX_LINE {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a line is longer than {} MiB", MAX_LINE >> 20),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A CSV file as input.
#[derive(Debug, Clone)]
pub struct CsvSource {
    path: PathBuf,
    files: Vec<PathBuf>,
    /// Every column, all read as text.
    schema: SchemaRef,
    input: Vec<usize>,
    label: Option<usize>,
    id: Option<usize>,
    rows: u64,
    skip_nonfinite: bool,
}

fn open_text(path: &Path) -> Result<LineBound<std::io::BufReader<File>>> {
    let (f, _) = open_regular(path, Links::Follow)?;
    Ok(LineBound { inner: std::io::BufReader::new(f), since_newline: 0 })
}

impl CsvSource {
    /// Opens `path`: reads the header, finds the columns of `spec`, and counts the records (one pass).
    pub fn open(path: &Path, spec: &DataSpec) -> Result<Self> {
        spec.validate()?;
        // Count the header's fields (an upper bound: quoted commas count too) before a schema is made.
        let mut first = Vec::new();
        std::io::BufRead::read_until(&mut std::io::BufReader::new(open_text(path)?), b'\n', &mut first)
            .map_err(|e| Error::data(path, format!("not a readable CSV file: {e}")))?;
        let fields = first.iter().filter(|&&b| b == b',').count() + 1;
        if fields > MAX_COLUMNS {
            return Err(Error::data(path, format!("the header has {fields} fields; at most {MAX_COLUMNS} are read")));
        }
        let format = arrow_csv::reader::Format::default().with_header(true);
        let (sniffed, _) = format
            .infer_schema(open_text(path)?, Some(SNIFF_RECORDS))
            .map_err(|e| Error::data(path, format!("not a readable CSV file: {}", clip(&e.to_string(), 300))))?;
        let names: Vec<String> = sniffed.fields().iter().map(|f| f.name().clone()).collect();
        if names.is_empty() || names.iter().all(|n| n.is_empty()) {
            return Err(Error::data(path, "the file has no header row naming its columns"));
        }
        if let Some(n) = names.iter().find(|n| n.trim().parse::<f64>().is_ok()) {
            return Err(Error::data(
                path,
                format!("line 1 looks like data ('{}' is a number), not a header: CSV input needs a header row naming the columns", clip(n, 60)),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(Error::data(path, format!("column '{}' is named twice in the header", clip(n, 60))));
            }
        }
        let list = || names.iter().map(|n| clip(n, 60)).collect::<Vec<_>>().join(", ");
        let find = |name: &str, flag: &str| -> Result<usize> {
            names.iter().position(|n| n == name).ok_or_else(|| {
                Error::data(
                    path,
                    format!("no column '{}' (columns: {}); choose it with {flag}", clip(name, 60), list()),
                )
            })
        };
        let label = match &spec.label_column {
            Some(c) => Some(find(c, "--label-column NAME")?),
            None => names.iter().position(|n| n == "label"),
        };
        let id = match &spec.id_column {
            Some(c) => Some(find(c, "--id-column NAME")?),
            None => names.iter().position(|n| n == "id"),
        };
        // One name holding commas (a student's recorded input columns) is the list it names.
        let wanted: Vec<String> = match spec.input.as_slice() {
            [one] if one.contains(',') => one.split(',').map(str::to_string).collect(),
            other => other.to_vec(),
        };
        let input = if wanted == ["input"] && !names.iter().any(|n| n == "input") {
            let numeric: Vec<usize> = (0..names.len())
                .filter(|&i| Some(i) != label && Some(i) != id)
                .filter(|&i| matches!(sniffed.field(i).data_type(), DataType::Int64 | DataType::Float64))
                .collect();
            if numeric.is_empty() {
                return Err(Error::data(
                    path,
                    format!(
                        "no numeric column to use as the input (columns: {}); choose with --input-column a,b,c",
                        list()
                    ),
                ));
            }
            let chosen: Vec<&str> = numeric.iter().map(|&i| names[i].as_str()).collect();
            tracing::info!(file = %path.display(), columns = %chosen.join(","),
                "no --input-column: the numeric columns of the first {SNIFF_RECORDS} records but label and id are the input");
            numeric
        } else {
            wanted.iter().map(|c| find(c, "--input-column a,b,c")).collect::<Result<_>>()?
        };
        let schema: SchemaRef =
            Arc::new(Schema::new(names.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
        let mut src = CsvSource {
            path: path.to_path_buf(),
            files: vec![path.to_path_buf()],
            schema,
            input,
            label,
            id,
            rows: 0,
            skip_nonfinite: spec.skip_nonfinite,
        };
        let mut rows = 0u64;
        let mut reader = src.reader(8192, vec![0])?;
        for b in &mut reader {
            rows += b.map_err(|e| src.read_error(rows, &e))?.num_rows() as u64;
        }
        src.rows = rows;
        Ok(src)
    }

    fn reader(
        &self,
        batch: usize,
        projection: Vec<usize>,
    ) -> Result<arrow_csv::Reader<LineBound<std::io::BufReader<File>>>> {
        arrow_csv::ReaderBuilder::new(self.schema.clone())
            .with_header(true)
            .with_batch_size(batch)
            .with_projection(projection)
            .build(open_text(&self.path)?)
            .map_err(|e| Error::data(&self.path, format!("not a readable CSV file: {}", clip(&e.to_string(), 300))))
    }

    fn read_error(&self, after: u64, e: &arrow_schema::ArrowError) -> Error {
        Error::data(
            &self.path,
            format!("cannot read the records after line {}: {}", after + 1, clip(&e.to_string(), 300)),
        )
    }

    fn projection(&self) -> Vec<usize> {
        let mut p = self.input.clone();
        p.extend(self.label);
        p.extend(self.id);
        p
    }

    fn name(&self, col: usize) -> String {
        clip(self.schema.field(col).name(), 60)
    }

    /// Converts projected text columns (inputs, then label, then id) of rows `first..`.
    fn convert(&self, rb: &RecordBatch, first: u64) -> Result<Batch> {
        let n = rb.num_rows();
        let err = |col: usize, i: usize, what: String| {
            Error::data(&self.path, format!("line {}, column '{}': {what}", first + i as u64 + 2, self.name(col)))
        };
        let text = |k: usize| rb.column(k).as_string::<i32>();
        let width = self.input.len();
        let mut flat = vec![0f32; n * width];
        let mut nonfinite = Vec::new();
        for (j, &col) in self.input.iter().enumerate() {
            let a = text(j);
            for i in 0..n {
                let s = if a.is_null(i) { "" } else { a.value(i).trim() };
                let v: f32 = s.parse().map_err(|_| {
                    err(
                        col,
                        i,
                        if s.is_empty() {
                            "the value is empty".into()
                        } else {
                            format!("'{}' is not a number", clip(s, 60))
                        },
                    )
                })?;
                if !v.is_finite() {
                    if !self.skip_nonfinite {
                        return Err(err(col, i, format!("the value is {v} (--skip-nonfinite skips such rows)")));
                    }
                    nonfinite.push(i);
                }
                flat[i * width + j] = v;
            }
        }
        nonfinite.sort_unstable();
        nonfinite.dedup();
        let mut k = width;
        let labels = match self.label {
            Some(col) => {
                let a = text(k);
                k += 1;
                (0..n)
                    .map(|i| {
                        let s = if a.is_null(i) { "" } else { a.value(i).trim() };
                        if s.is_empty() {
                            return Ok(None);
                        }
                        s.parse::<i64>()
                            .map(Some)
                            .map_err(|_| err(col, i, format!("label '{}' is not an integer", clip(s, 60))))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => vec![None; n],
        };
        let ids = match self.id {
            Some(col) => {
                let a = text(k);
                (0..n)
                    .map(|i| {
                        let s = if a.is_null(i) { "" } else { a.value(i).trim() };
                        s.parse::<u64>()
                            .map_err(|_| err(col, i, format!("id '{}' is not an integer >= 0", clip(s, 60))))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => (first..first + n as u64).collect(),
        };
        Ok(Batch {
            file: self.path.clone(),
            first_row: first,
            first_source_row: first,
            ids,
            labels,
            input: Arc::new(Float32Array::from(flat)) as ArrayRef,
            width,
            nonfinite,
            extra: Vec::new(),
            paths: Vec::new(),
            token_labels: Vec::new(),
        })
    }
}

impl Source for CsvSource {
    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    fn label_column(&self) -> Option<&str> {
        self.label.map(|c| self.schema.field(c).name().as_str())
    }

    fn id_column(&self) -> Option<&str> {
        self.id.map(|c| self.schema.field(c).name().as_str())
    }

    fn input_name(&self) -> String {
        self.input.iter().map(|&c| self.schema.field(c).name().as_str()).collect::<Vec<_>>().join(",")
    }

    fn width(&self) -> Option<usize> {
        Some(self.input.len())
    }

    fn element_type(&self) -> ElementType {
        ElementType::F32
    }

    fn source_info_until(&self, stop: &std::sync::atomic::AtomicBool) -> Result<SourceInfo> {
        super::files_identity(&[(self.path.as_path(), self.rows)], stop)
    }

    /// Reads from the start (text cannot be seeked by row) and drops the batches before `skip`.
    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let batch_size = batch_size.max(1);
        let start = skip - skip % batch_size as u64;
        let mut reader = match self.reader(batch_size, self.projection()) {
            Ok(r) => r,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut row = 0u64;
        let mut failed = false;
        Box::new(std::iter::from_fn(move || loop {
            if failed {
                return None;
            }
            let rb = match reader.next()? {
                Ok(rb) => rb,
                Err(e) => {
                    failed = true;
                    return Some(Err(self.read_error(row, &e)));
                }
            };
            let first = row;
            row += rb.num_rows() as u64;
            if first < start {
                continue;
            }
            let out = self.convert(&rb, first);
            failed = out.is_err();
            return Some(out);
        }))
    }
}
