//! A Parquet file writer that encodes and compresses each column on its own rayon task. It makes the
//! same calls as parquet's `ArrowWriter` (same leaves, same slices, same row-group cuts), so the bytes
//! are identical; only the columns of one block are encoded concurrently. For a light teacher the
//! writer, not inference, bounds precompute, and most of its time is zstd on the `input`, `logits` and
//! `soft` columns.

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriter};
use parquet::errors::Result;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

pub(crate) struct ParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The open row group's column writers.
    columns: Option<Vec<ArrowColumnWriter>>,
    rows_in_group: usize,
    max_group_rows: usize,
    groups: usize,
}

impl<W: Write + Send> ParallelWriter<W> {
    pub(crate) fn try_new(file: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let max_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // ArrowWriter sets up the file (schema, the embedded Arrow schema in the metadata); its
        // low-level halves then take the rows.
        let (file, factory) = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))?.into_serialized_writer()?;
        Ok(ParallelWriter { file, factory, schema, columns: None, rows_in_group: 0, max_group_rows, groups: 0 })
    }

    /// Encodes `batch`, cutting row groups at the configured row count.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.columns.is_none() {
                self.columns = Some(self.factory.create_column_writers(self.groups)?);
            }
            let take = (self.max_group_rows - self.rows_in_group).min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            let mut leaves = Vec::new();
            for (field, column) in self.schema.fields().iter().zip(slice.columns()) {
                leaves.extend(compute_leaves(field, column)?);
            }
            let columns =
                self.columns.as_mut().ok_or_else(|| parquet::errors::ParquetError::General("no row group".into()))?;
            columns.par_iter_mut().zip(leaves.par_iter()).try_for_each(|(w, leaf)| w.write(leaf))?;
            self.rows_in_group += take;
            offset += take;
            if self.rows_in_group == self.max_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the open row group: its columns are finished in parallel and appended in order.
    fn flush(&mut self) -> Result<()> {
        let Some(columns) = self.columns.take() else { return Ok(()) };
        let chunks = columns.into_par_iter().map(ArrowColumnWriter::close).collect::<Result<Vec<_>>>()?;
        let mut group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.groups += 1;
        self.rows_in_group = 0;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the destination, flushed.
    pub(crate) fn close(mut self) -> Result<W> {
        self.flush()?;
        let mut out = self.file.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::basic::{Compression, Encoding, ZstdLevel};

    #[test]
    fn bytes_equal_arrow_writers_across_row_groups_and_blocks() {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("label", DataType::Int64, true),
            Field::new("soft", DataType::FixedSizeList(item.clone(), 3), false),
        ]));
        let batch = |from: u64, n: usize| {
            let values = Float32Array::from_iter_values((0..n * 3).map(|i| ((i as u64 * 7 + from) % 13) as f32 / 13.0));
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from_iter_values(from..from + n as u64)),
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as i64 % 3)))),
                Arc::new(FixedSizeListArray::try_new(item.clone(), 3, Arc::new(values), None).unwrap()),
            ];
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        };
        let props = || {
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
                .set_max_row_group_row_count(Some(700))
                .set_column_encoding("soft.list.item".into(), Encoding::BYTE_STREAM_SPLIT)
                .set_column_dictionary_enabled("soft.list.item".into(), false)
                .build()
        };
        let batches = [batch(0, 500), batch(500, 1000), batch(1500, 37)];
        let mut a = Vec::new();
        let mut w = ArrowWriter::try_new(&mut a, schema.clone(), Some(props())).unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.close().unwrap();
        let mut p = ParallelWriter::try_new(Vec::new(), schema.clone(), props()).unwrap();
        batches.iter().for_each(|x| p.write(x).unwrap());
        let b = p.close().unwrap();
        assert!(a.len() > 1000);
        assert_eq!(a, b, "the parallel writer writes ArrowWriter's bytes");
    }
}
