//! One part file being written: the Parquet file and its open row group. Every column goes through the
//! Parquet crate's Arrow column writers except two kinds of fixed-size list, an 8-bit `input` and float32
//! lists, whose pages [`super::pages`] builds (why, and what they hold, is said there). A column whose
//! properties ask for anything those pages do not write (statistics, a dictionary for floats, another
//! encoding, a bloom filter) goes through the generic writer.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;

use super::pages::{general, ByteColumn, FloatColumn, ParquetResult};
use crate::store::columns;

/// A Parquet file written a record batch at a time, as `ArrowWriter` would (row groups cut at the
/// properties' row count, or when the caller flushes), with [`super::pages`]' pages for an 8-bit `input`
/// and float32 lists.
pub(super) struct PartFile<W: std::io::Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The columns whose pages are built here.
    own: Vec<Own>,
    group: Option<Group>,
    max_rows: usize,
}

/// The open row group: a writer per leaf column, in the schema's order.
struct Group {
    columns: Vec<Column>,
    rows: usize,
}

enum Column {
    Arrow(Box<ArrowColumnWriter>),
    Bytes(Box<ByteColumn>),
    Floats(Box<FloatColumn>),
}

/// A column whose pages are built here: its field, its leaf (index and descriptor), its zstd level and
/// its kind.
struct Own {
    field: usize,
    leaf: usize,
    descr: ColumnDescPtr,
    zstd_level: i32,
    kind: OwnKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OwnKind {
    /// The 8-bit `input`: dictionary pages.
    Bytes,
    /// A float32 list: BYTE_STREAM_SPLIT pages.
    Floats,
}

impl<W: std::io::Write + Send> PartFile<W> {
    /// Starts a file of `schema` rows with `props` (the Arrow schema is not embedded here: the caller
    /// appends it with the other footer metadata).
    pub(super) fn new(out: W, schema: SchemaRef, props: WriterProperties) -> ParquetResult<Self> {
        let descr = parquet::arrow::ArrowSchemaConverter::new().convert(&schema)?;
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let props = Arc::new(props);
        let own = (schema.fields().iter().enumerate())
            .filter_map(|(field, f)| {
                let DataType::FixedSizeList(item, width) = f.data_type() else { return None };
                let leaf = descr.columns().iter().position(|c| c.path().parts()[0] == *f.name())?;
                let descr = descr.column(leaf);
                let path = descr.path();
                let zstd_level = match props.compression(path) {
                    Compression::ZSTD(level) => level.compression_level(),
                    _ => return None,
                };
                // A required list of required values (one definition level, one repetition level), no
                // statistics and no bloom filter.
                if *width <= 0
                    || descr.max_def_level() != 1
                    || descr.max_rep_level() != 1
                    || props.statistics_enabled(path) != EnabledStatistics::None
                    || props.bloom_filter_properties(path).is_some()
                {
                    return None;
                }
                let kind = match item.data_type() {
                    DataType::UInt8 | DataType::Int8
                        if f.name() == columns::INPUT && props.dictionary_enabled(path) =>
                    {
                        OwnKind::Bytes
                    }
                    DataType::Float32
                        if !props.dictionary_enabled(path)
                            && props.encoding(path) == Some(Encoding::BYTE_STREAM_SPLIT) =>
                    {
                        OwnKind::Floats
                    }
                    _ => return None,
                };
                Some(Own { field, leaf, descr, zstd_level, kind })
            })
            .collect();
        let file = SerializedFileWriter::new(out, descr.root_schema_ptr(), props)?;
        let factory = ArrowRowGroupWriterFactory::new(&file, schema.clone());
        Ok(PartFile { file, factory, schema, own, group: None, max_rows })
    }

    /// Encodes `batch` into the open row group, closing it at the row limit (and opening the next).
    pub(super) fn write(&mut self, batch: &RecordBatch) -> ParquetResult<()> {
        let mut at = 0;
        while at < batch.num_rows() {
            if self.group.is_none() {
                self.group = Some(self.open_group()?);
            }
            let Some(group) = self.group.as_mut() else { return Err(general("no open row group")) };
            let rows = (self.max_rows - group.rows).min(batch.num_rows() - at);
            let part = batch.slice(at, rows);
            let mut columns = group.columns.iter_mut();
            for (i, (field, array)) in self.schema.fields().iter().zip(part.columns()).enumerate() {
                if self.own.iter().any(|o| o.field == i) {
                    match columns.next() {
                        Some(Column::Bytes(c)) => c.push(array.as_ref())?,
                        Some(Column::Floats(c)) => c.push(array.as_ref())?,
                        _ => return Err(general("a column writer is missing")),
                    }
                    continue;
                }
                for leaf in compute_leaves(field, array)? {
                    match columns.next() {
                        Some(Column::Arrow(w)) => w.write(&leaf)?,
                        _ => return Err(general("a column writer is missing")),
                    }
                }
            }
            group.rows += rows;
            at += rows;
            if group.rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn open_group(&self) -> ParquetResult<Group> {
        let arrow = self.factory.create_column_writers(self.file.flushed_row_groups().len())?;
        let columns = arrow
            .into_iter()
            .enumerate()
            .map(|(i, w)| match self.own.iter().find(|o| o.leaf == i) {
                Some(o) if o.kind == OwnKind::Bytes => {
                    Column::Bytes(Box::new(ByteColumn::new(o.descr.clone(), o.zstd_level)))
                }
                Some(o) => Column::Floats(Box::new(FloatColumn::new(o.descr.clone(), o.zstd_level))),
                None => Column::Arrow(Box::new(w)),
            })
            .collect();
        Ok(Group { columns, rows: 0 })
    }

    /// The open row group's encoded size so far (about: pages not yet compressed count whole).
    pub(super) fn in_progress_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.columns
                .iter()
                .map(|c| match c {
                    Column::Arrow(w) => w.get_estimated_total_bytes(),
                    Column::Bytes(b) => b.estimated_bytes(),
                    Column::Floats(f) => f.estimated_bytes(),
                })
                .sum()
        })
    }

    /// Writes the open row group to the file.
    pub(super) fn flush(&mut self) -> ParquetResult<()> {
        let Some(group) = self.group.take() else { return Ok(()) };
        let mut rg = self.file.next_row_group()?;
        for column in group.columns {
            match column {
                Column::Arrow(w) => w.close()?.append_to_row_group(&mut rg)?,
                Column::Bytes(b) => {
                    let (bytes, close) = b.finish(group.rows)?;
                    rg.append_column(&bytes, close)?;
                }
                Column::Floats(f) => {
                    let (bytes, close) = f.finish(group.rows)?;
                    rg.append_column(&bytes, close)?;
                }
            }
        }
        rg.close()?;
        Ok(())
    }

    /// Metadata for the footer.
    pub(super) fn append_key_value_metadata(&mut self, kv: parquet::file::metadata::KeyValue) {
        self.file.append_key_value_metadata(kv);
    }

    /// The file's sink (see `ArrowWriter::inner_mut`: writing to it directly would corrupt the file).
    pub(super) fn inner_mut(&mut self) -> &mut W {
        self.file.inner_mut()
    }

    /// Writes the last row group and the footer; returns the sink.
    pub(super) fn into_inner(mut self) -> ParquetResult<W> {
        self.flush()?;
        self.file.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pages::PAGE_BYTES;
    use super::*;
    use arrow_array::{Array, ArrayRef, FixedSizeListArray, Int64Array, Int8Array, UInt8Array};
    use arrow_schema::{Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::{KeyValue, PageIndexPolicy};

    fn batch(schema: &SchemaRef, input: ArrayRef, width: i32) -> RecordBatch {
        let n = input.len() / width as usize;
        let item = Arc::new(Field::new("item", input.data_type().clone(), false));
        let list = FixedSizeListArray::try_new(item, width, input, None).unwrap();
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..n as i64)), Arc::new(list)])
            .unwrap()
    }

    fn schema(item: DataType, width: i32) -> SchemaRef {
        let list = DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), width);
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new(columns::INPUT, list, false)]))
    }

    fn props(rows: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(rows))
            .build()
    }

    /// As the dataset writer sets float columns: byte streams, no dictionary, no statistics.
    fn float_props(rows: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_statistics_enabled(EnabledStatistics::None)
            .set_dictionary_enabled(false)
            .set_encoding(Encoding::BYTE_STREAM_SPLIT)
            .set_max_row_group_row_count(Some(rows))
            .build()
    }

    /// The file's bytes, with the Arrow schema embedded as the dataset writer does.
    fn finish(mut part: PartFile<Vec<u8>>, schema: &SchemaRef) -> Bytes {
        let embedded = parquet::arrow::encode_arrow_schema(schema);
        part.append_key_value_metadata(KeyValue::new(parquet::arrow::ARROW_SCHEMA_META_KEY.into(), embedded));
        Bytes::from(part.into_inner().unwrap())
    }

    /// Writes `batches` in pieces through `PartFile`, reads the file back with the Parquet crate's Arrow
    /// reader, and checks the rows and that the input took the byte path.
    fn round_trip(schema: SchemaRef, input: ArrayRef, width: i32, group_rows: usize, pieces: usize) {
        let whole = batch(&schema, input, width);
        let mut part = PartFile::new(Vec::new(), schema.clone(), props(group_rows)).unwrap();
        assert_eq!(
            part.own.iter().map(|o| o.kind).collect::<Vec<_>>(),
            [OwnKind::Bytes],
            "8-bit input takes the byte path"
        );
        let n = whole.num_rows();
        let step = n.div_ceil(pieces).max(1);
        for at in (0..n).step_by(step) {
            part.write(&whole.slice(at, step.min(n - at))).unwrap();
        }
        let file = finish(part, &schema);
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
        let meta = reader.metadata().clone();
        assert_eq!(meta.num_row_groups(), n.div_ceil(group_rows));
        let back: Vec<RecordBatch> = reader.build().unwrap().collect::<std::result::Result<_, _>>().unwrap();
        let back = arrow_select::concat::concat_batches(&schema, &back).unwrap();
        assert_eq!(back, whole);
        for rg in meta.row_groups() {
            let c = rg.column(1);
            assert!(c.dictionary_page_offset().is_some());
            assert!(c.statistics().is_none());
        }
        // The offset index reads back, and a selection that skips pages by it reads the right rows.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
        let (skip, take) = (n / 3, n / 2);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        let page_rows = (PAGE_BYTES / width as usize).max(1);
        for (i, rg) in reader.metadata().row_groups().iter().enumerate() {
            let pages = reader.metadata().page_index_for_row_group(i).page_locations(1).expect("page locations").len();
            assert_eq!(pages, (rg.num_rows() as usize).div_ceil(page_rows), "row group {i}");
        }
        let selected = reader
            .with_row_selection(RowSelection::from(vec![RowSelector::skip(skip), RowSelector::select(take)]))
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        let selected = arrow_select::concat::concat_batches(&schema, &selected).unwrap();
        assert_eq!(selected, whole.slice(skip, take));
    }

    #[test]
    fn eight_bit_inputs_read_back_exactly() {
        // MNIST-like: runs of zeros and every byte value, rows not a multiple of 8, several row groups.
        let width: usize = 784;
        let n = 1003;
        let values: Vec<u8> =
            (0..n * width).map(|i| if (i % width) < 200 { 0 } else { (i * 7919 % 251) as u8 }).collect();
        round_trip(schema(DataType::UInt8, width as i32), Arc::new(UInt8Array::from(values)), width as i32, 400, 7);
        // Several pages a row group, written in pieces that cross the pages' boundaries; values that first
        // appear in later pages (the dictionary grows as pages are written).
        let (width, n): (usize, usize) = (100, 25_000);
        let values: Vec<u8> = (0..n * width).map(|i| ((i / 7) % (1 + i / 10_000).min(256)) as u8).collect();
        round_trip(schema(DataType::UInt8, width as i32), Arc::new(UInt8Array::from(values)), width as i32, 20_000, 9);
    }

    #[test]
    fn few_values_signed_values_and_width_one() {
        // One distinct value (bit width 1), two values, signed bytes, width 1 and 3.
        let one: Vec<u8> = vec![9; 50 * 3];
        round_trip(schema(DataType::UInt8, 3), Arc::new(UInt8Array::from(one)), 3, 64, 3);
        let two: Vec<u8> = (0..77).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
        round_trip(schema(DataType::UInt8, 1), Arc::new(UInt8Array::from(two)), 1, 1000, 2);
        let signed: Vec<i8> = (0..600).map(|i| (i % 256) as i8).collect();
        round_trip(schema(DataType::Int8, 5), Arc::new(Int8Array::from(signed)), 5, 50, 4);
    }

    #[test]
    fn pages_split_on_rows() {
        // Rows wider than a page's values: a page a row; and enough rows for several pages per group.
        let width = PAGE_BYTES + 3;
        let values: Vec<u8> = (0..3 * width).map(|i| (i % 13) as u8).collect();
        round_trip(schema(DataType::UInt8, width as i32), Arc::new(UInt8Array::from(values)), width as i32, 10, 1);
    }

    #[test]
    fn reads_back_as_the_arrow_writers_file_does() {
        // The same rows written by the Parquet crate's ArrowWriter read back the same.
        let width = 16;
        let values: Vec<u8> = (0..40 * width).map(|i| [0u8, 0, 0, 1, 2, 3, 200, 0][i % 8] ^ ((i / 97) as u8)).collect();
        let s = schema(DataType::UInt8, width as i32);
        let whole = batch(&s, Arc::new(UInt8Array::from(values)), width as i32);
        let mut reference = parquet::arrow::ArrowWriter::try_new(Vec::new(), s.clone(), Some(props(1000))).unwrap();
        reference.write(&whole).unwrap();
        let reference = Bytes::from(reference.into_inner().unwrap());
        let mut part = PartFile::new(Vec::new(), s.clone(), props(1000)).unwrap();
        part.write(&whole).unwrap();
        let ours = finish(part, &s);
        let read = |b: Bytes| -> RecordBatch {
            let r = ParquetRecordBatchReaderBuilder::try_new(b).unwrap().build().unwrap();
            r.collect::<std::result::Result<Vec<_>, _>>().unwrap().remove(0)
        };
        assert_eq!(read(ours), read(reference));
    }

    /// Float lists through `PartFile` in pieces: read back bit for bit (NaN payloads, -0.0 and
    /// infinities included) by the Parquet crate's reader, with byte-stream pages, no statistics, the
    /// offset index's pages and a selection by it; and the same as ArrowWriter's file reads.
    fn float_round_trip(width: usize, n: usize, group_rows: usize, pieces: usize) {
        let special = [0.0f32, -0.0, 1.0, -1.5e-39, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x7fc0_1234)];
        let values: Vec<f32> = (0..n * width)
            .map(|i| if i % 97 == 5 { special[i % special.len()] } else { ((i as f32) * 0.618).sin() * 3.0e3 })
            .collect();
        let s = schema(DataType::Float32, width as i32);
        let whole = batch(&s, Arc::new(arrow_array::Float32Array::from(values)), width as i32);
        let mut part = PartFile::new(Vec::new(), s.clone(), float_props(group_rows)).unwrap();
        assert_eq!(part.own.iter().map(|o| o.kind).collect::<Vec<_>>(), [OwnKind::Floats]);
        let step = n.div_ceil(pieces).max(1);
        for at in (0..n).step_by(step) {
            part.write(&whole.slice(at, step.min(n - at))).unwrap();
        }
        let file = finish(part, &s);
        let bits = |b: &RecordBatch| -> Vec<u32> {
            let list = b.column(1).as_any().downcast_ref::<FixedSizeListArray>().unwrap();
            let v = list.values().as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
            v.values().iter().map(|x| x.to_bits()).collect()
        };
        let read = |file: Bytes, selection: Option<RowSelection>| -> RecordBatch {
            let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
            let mut r = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
            if let Some(sel) = selection {
                r = r.with_row_selection(sel);
            }
            let back = r.build().unwrap().collect::<std::result::Result<Vec<_>, _>>().unwrap();
            arrow_select::concat::concat_batches(&s, &back).unwrap()
        };
        let back = read(file.clone(), None);
        assert_eq!(back.num_rows(), n);
        assert_eq!(bits(&back), bits(&whole));
        let meta = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file.clone(),
            ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required),
        )
        .unwrap()
        .metadata()
        .clone();
        assert_eq!(meta.num_row_groups(), n.div_ceil(group_rows));
        let page_rows = (PAGE_BYTES / 4 / width).max(1);
        for (i, rg) in meta.row_groups().iter().enumerate() {
            let c = rg.column(1);
            assert!(c.dictionary_page_offset().is_none() && c.statistics().is_none());
            assert_eq!(c.encodings().collect::<Vec<_>>(), [Encoding::RLE, Encoding::BYTE_STREAM_SPLIT]);
            let pages = meta.page_index_for_row_group(i).page_locations(1).expect("page locations").len();
            assert_eq!(pages, (rg.num_rows() as usize).div_ceil(page_rows), "row group {i}");
        }
        let (skip, take) = (n / 3, n / 2);
        let selected = read(file, Some(RowSelection::from(vec![RowSelector::skip(skip), RowSelector::select(take)])));
        assert_eq!(bits(&selected), bits(&whole.slice(skip, take)));
        let mut reference =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), s.clone(), Some(float_props(group_rows))).unwrap();
        reference.write(&whole).unwrap();
        let reference = Bytes::from(reference.into_inner().unwrap());
        assert_eq!(bits(&read(reference, None)), bits(&whole));
    }

    #[test]
    fn float_lists_read_back_bit_for_bit() {
        // A 1000-class row (262 rows a page), several row groups, pieces across pages; widths 1 and 17
        // (values not a multiple of 16); a row wider than a page.
        float_round_trip(1000, 1203, 500, 7);
        float_round_trip(1, 3001, 1000, 3);
        float_round_trip(17, 333, 100, 5);
        float_round_trip(PAGE_BYTES / 4 + 5, 3, 2, 2);
    }

    #[test]
    fn columns_asking_for_more_take_the_generic_writer() {
        // Statistics or a dictionary on the float column, or another encoding: the Parquet crate writes it.
        let s = schema(DataType::Float32, 4);
        for props in [
            WriterProperties::builder().set_encoding(Encoding::BYTE_STREAM_SPLIT).set_dictionary_enabled(false).build(),
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
                .set_statistics_enabled(EnabledStatistics::None)
                .set_dictionary_enabled(false)
                .build(),
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
                .set_encoding(Encoding::BYTE_STREAM_SPLIT)
                .set_dictionary_enabled(false)
                .build(),
        ] {
            assert!(PartFile::new(Vec::new(), s.clone(), props).unwrap().own.is_empty());
        }
        assert_eq!(PartFile::new(Vec::new(), s, float_props(10)).unwrap().own.len(), 1);
    }
}
