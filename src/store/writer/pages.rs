//! The pages of two kinds of fixed-size list column, built here rather than by the Parquet crate's Arrow
//! column writers (a part's other columns go through those, [`super::part`]):
//!
//! - an 8-bit `input` (pixels, bytes): the generic dictionary encoder hashes each of a part's values
//!   (47M for MNIST's 60,000 rows) and computes the list's levels value by value, which made the input
//!   column the writer's largest cost (BENCHMARKS.md, "Where the time goes"). An 8-bit column has at most
//!   256 distinct values, so its dictionary is a table lookup and its levels a few runs a row. Its pages
//!   are a PLAIN dictionary page, then V1 data pages of RLE levels and RLE_DICTIONARY indices.
//! - float32 lists (logits, soft, top-k values, features, float inputs): the generic writer computes
//!   their levels value by value and splits the bytes into streams a byte at a time, 4 points of a
//!   2-thread precompute's CPU on a 1000-class teacher. Here the levels are two runs a row and the
//!   streams are split 16 values at a time: V1 data pages of RLE levels and BYTE_STREAM_SPLIT values.
//!
//! Both are what that writer produces in kind (zstd, an offset index, no statistics, no bloom filter),
//! so every reader reads them alike; [`super::part`] sends a column whose properties ask for anything
//! else (statistics, a dictionary for floats, another encoding) through the generic writer.

use arrow_array::{Array, FixedSizeListArray};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

pub(super) type ParquetResult<T> = std::result::Result<T, parquet::errors::ParquetError>;

pub(super) fn general(msg: &str) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::General(msg.into())
}

/// Bytes of values a data page holds at most, before compression (an 8-bit page's indices, a float
/// page's streams): the Parquet crate's default page size.
pub(super) const PAGE_BYTES: usize = 1 << 20;

/// A row group's column whose pages are built here, encoded a page of whole rows at a time as its rows
/// arrive; `E` turns a page's values into its body (and may keep a dictionary).
pub(super) struct PagedColumn<E: PageValues> {
    leaf: ColumnDescPtr,
    zstd_level: i32,
    width: usize,
    /// Values of the rows not yet in a page (fewer than a page's rows).
    pending: Vec<E::Value>,
    /// The data pages so far, each its own buffer (header included: no buffer grows and is copied as
    /// the row group fills), with its spec and rows.
    pages: Vec<DataPage>,
    /// Scratch: a page's uncompressed body.
    body: Vec<u8>,
    values: E,
}

/// How a [`PagedColumn`]'s values are encoded.
pub(super) trait PageValues: Default {
    type Value: Copy;
    /// The data pages' encoding.
    const ENCODING: Encoding;
    /// The list's values as this encoding's values.
    fn values_of<'a>(&mut self, values: &'a arrow_array::ArrayRef) -> ParquetResult<&'a [Self::Value]>;
    /// Appends a page's `values` to its `body` (after the levels).
    fn encode(&mut self, values: &[Self::Value], body: &mut Vec<u8>);
    /// The chunk's dictionary page, for a dictionary encoding.
    fn dictionary_page(&self, zstd_level: i32) -> ParquetResult<Option<Serialized>>;
}

impl<E: PageValues> PagedColumn<E> {
    pub(super) fn new(leaf: ColumnDescPtr, zstd_level: i32) -> Self {
        let (pending, pages, body) = (Vec::new(), Vec::new(), Vec::new());
        PagedColumn { leaf, zstd_level, width: 0, pending, pages, body, values: E::default() }
    }

    /// Rows a data page holds: about [`PAGE_BYTES`] of values, at least one row.
    fn page_rows(&self) -> usize {
        (PAGE_BYTES / std::mem::size_of::<E::Value>() / self.width).max(1)
    }

    /// The column's encoded bytes so far: compressed pages, and the pending values at their size.
    pub(super) fn estimated_bytes(&self) -> usize {
        self.pages.iter().map(|((bytes, _), _)| bytes.len()).sum::<usize>()
            + self.pending.len() * std::mem::size_of::<E::Value>()
    }

    /// Adds the rows of `array` (a required fixed-size list), writing each page as it fills.
    pub(super) fn push(&mut self, array: &dyn Array) -> ParquetResult<()> {
        let list = list_values(array, &mut self.width)?;
        let mut values = self.values.values_of(&list)?;
        let page = self.page_rows() * self.width;
        while !values.is_empty() {
            let take = (page - self.pending.len()).min(values.len());
            self.pending.extend_from_slice(&values[..take]);
            values = &values[take..];
            if self.pending.len() == page {
                self.write_page()?;
            }
        }
        Ok(())
    }

    /// Encodes the pending rows as one data page (V1: repetition and definition levels, then the
    /// values, all compressed).
    fn write_page(&mut self) -> ParquetResult<()> {
        let (width, n) = (self.width, self.pending.len());
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        list_levels(n / width, width, &mut body);
        self.values.encode(&self.pending, &mut body);
        let page = data_page(&body, n, E::ENCODING, self.zstd_level);
        self.body = body;
        self.pages.push((page?, n / width));
        self.pending.clear();
        Ok(())
    }

    /// The column chunk's bytes (the dictionary page if any, then the data pages) and its metadata.
    pub(super) fn finish(mut self, rows: usize) -> ParquetResult<(Pages, ColumnCloseResult)> {
        if !self.pending.is_empty() {
            self.write_page()?;
        }
        let dictionary = self.values.dictionary_page(self.zstd_level)?;
        close_chunk(self.leaf, self.zstd_level, dictionary, self.pages, rows, E::ENCODING)
    }
}

/// The 8-bit input column's pages: the dictionary holds the values in the order they first appear, so a
/// page's indices never change once written (each page states its own bit width), and the dictionary
/// page, written when the row group closes, goes first.
pub(super) type ByteColumn = PagedColumn<ByteDictionary>;

/// A float32 list column's pages: the values' bytes split into four streams.
pub(super) type FloatColumn = PagedColumn<ByteStreams>;

/// An 8-bit column's dictionary.
pub(super) struct ByteDictionary {
    signed: bool,
    /// The entry of byte b (`NONE` until b appears), and the entries' values.
    entry: [u16; 256],
    dictionary: Vec<i32>,
    /// Scratch: a page's indices.
    mapped: Vec<u8>,
}

const NONE: u16 = u16::MAX;

impl Default for ByteDictionary {
    fn default() -> Self {
        ByteDictionary { signed: false, entry: [NONE; 256], dictionary: Vec::new(), mapped: Vec::new() }
    }
}

impl PageValues for ByteDictionary {
    type Value = u8;
    const ENCODING: Encoding = Encoding::RLE_DICTIONARY;

    fn values_of<'a>(&mut self, values: &'a arrow_array::ArrayRef) -> ParquetResult<&'a [u8]> {
        if let Some(v) = values.as_any().downcast_ref::<arrow_array::UInt8Array>() {
            Ok(v.values())
        } else if let Some(v) = values.as_any().downcast_ref::<arrow_array::Int8Array>() {
            self.signed = true;
            let v: &[i8] = v.values();
            // SAFETY: i8 and u8 have the same size and alignment; every bit pattern is valid for both.
            Ok(unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) })
        } else {
            Err(general("the input column is not 8-bit"))
        }
    }

    /// The page's dictionary indices: their bit width, then RLE / bit-packed.
    fn encode(&mut self, values: &[u8], body: &mut Vec<u8>) {
        // Each value becomes its dictionary entry; values not seen before (an entry of NONE: any of its
        // high bits set) first join the dictionary in the order they appear, and the page is mapped again.
        let mut missing = 0u16;
        let entry = &self.entry;
        self.mapped.clear();
        self.mapped.extend(values.iter().map(|&b| {
            let e = entry[usize::from(b)];
            missing |= e;
            e as u8
        }));
        if missing > 0xff {
            for &b in values {
                if self.entry[usize::from(b)] == NONE {
                    self.entry[usize::from(b)] = self.dictionary.len() as u16;
                    self.dictionary.push(if self.signed { i32::from(b as i8) } else { i32::from(b) });
                }
            }
            let entry = &self.entry;
            self.mapped.clear();
            self.mapped.extend(values.iter().map(|&b| entry[usize::from(b)] as u8));
        }
        let top = self.mapped.iter().copied().max().unwrap_or(0);
        let bits = (u8::BITS - top.leading_zeros()).max(1);
        body.push(bits as u8);
        hybrid(&self.mapped, bits, body);
    }

    fn dictionary_page(&self, zstd_level: i32) -> ParquetResult<Option<Serialized>> {
        let plain: Vec<u8> = self.dictionary.iter().flat_map(|v| v.to_le_bytes()).collect();
        let page = Page::DictionaryPage {
            buf: compress(&plain, zstd_level)?,
            num_values: self.dictionary.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        serialized(CompressedPage::new(page, plain.len())).map(Some)
    }
}

/// Float32 values as BYTE_STREAM_SPLIT.
#[derive(Default)]
pub(super) struct ByteStreams;

impl PageValues for ByteStreams {
    type Value = f32;
    const ENCODING: Encoding = Encoding::BYTE_STREAM_SPLIT;

    fn values_of<'a>(&mut self, values: &'a arrow_array::ArrayRef) -> ParquetResult<&'a [f32]> {
        let values = values.as_any().downcast_ref::<arrow_array::Float32Array>();
        Ok(values.ok_or_else(|| general("a float column is not float32"))?.values())
    }

    fn encode(&mut self, values: &[f32], body: &mut Vec<u8>) {
        split_streams(values, body);
    }

    fn dictionary_page(&self, _zstd_level: i32) -> ParquetResult<Option<Serialized>> {
        Ok(None)
    }
}

/// A page's bytes (header included) and its spec.
type Serialized = (Bytes, parquet::column::page::PageWriteSpec);

/// A data page and its rows.
type DataPage = (Serialized, usize);

/// The values of a required fixed-size list `array` of `width` values a row (set by the first call,
/// the same after), checked: no null list, no null value.
fn list_values(array: &dyn Array, width: &mut usize) -> ParquetResult<arrow_array::ArrayRef> {
    let list = array
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| general("a list column is not a fixed-size list"))?;
    let w = usize::try_from(list.value_length()).map_err(|_| general("negative list width"))?;
    if list.null_count() > 0 || (*width != 0 && *width != w) || w == 0 {
        return Err(general("a list column holds nulls or changed width"));
    }
    *width = w;
    // A sliced fixed-size list slices its values too.
    let values = list.values();
    if values.len() != list.len() * w || values.null_count() > 0 {
        return Err(general("a list column holds null values"));
    }
    Ok(values.clone())
}

/// A V1 data page of `n` values: `body` (levels, then values in `encoding`), compressed.
fn data_page(body: &[u8], n: usize, encoding: Encoding, zstd_level: i32) -> ParquetResult<Serialized> {
    let page = Page::DataPage {
        buf: compress(body, zstd_level)?,
        num_values: n as u32,
        encoding,
        def_level_encoding: Encoding::RLE,
        rep_level_encoding: Encoding::RLE,
        statistics: None,
    };
    serialized(CompressedPage::new(page, body.len()))
}

/// A column chunk of `pages` (after the `dictionary` page, if any), `data_encoding` values and RLE
/// levels: its bytes and its metadata, with an offset index and no statistics.
fn close_chunk(
    leaf: ColumnDescPtr,
    zstd_level: i32,
    dictionary: Option<Serialized>,
    pages: Vec<DataPage>,
    rows: usize,
    data_encoding: Encoding,
) -> ParquetResult<(Pages, ColumnCloseResult)> {
    if pages.iter().map(|&(_, r)| r).sum::<usize>() != rows {
        return Err(general("a column's rows differ from the row group's"));
    }
    let shift = dictionary.as_ref().map_or(0, |(bytes, _)| bytes.len() as u64);
    let mut offsets = OffsetIndexBuilder::new();
    let (mut compressed, mut uncompressed) =
        dictionary.as_ref().map_or((0, 0), |(_, spec)| (spec.compressed_size as u64, spec.uncompressed_size as u64));
    let (mut values, mut at) = (0u64, shift);
    for ((bytes, spec), page_rows) in &pages {
        offsets.append_offset_and_size(at as i64, spec.compressed_size as i32);
        offsets.append_row_count(*page_rows as i64);
        compressed += spec.compressed_size as u64;
        uncompressed += spec.uncompressed_size as u64;
        values += u64::from(spec.num_values);
        at += bytes.len() as u64;
    }
    let stats = |page_type, encoding, count| PageEncodingStats { page_type, encoding, count };
    let level = parquet::basic::ZstdLevel::try_new(zstd_level).map_err(|e| general(&e.to_string()))?;
    let mut encodings = vec![Encoding::RLE, data_encoding];
    let mut page_stats = vec![stats(PageType::DATA_PAGE, data_encoding, pages.len() as i32)];
    if dictionary.is_some() {
        encodings.insert(0, Encoding::PLAIN);
        page_stats.insert(0, stats(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1));
    }
    let metadata = ColumnChunkMetaData::builder(leaf)
        .set_compression(Compression::ZSTD(level))
        .set_encodings_mask(parquet::basic::EncodingMask::new_from_encodings(encodings.iter()))
        .set_page_encoding_stats(page_stats)
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(values as i64)
        .set_data_page_offset(shift as i64)
        .set_dictionary_page_offset(dictionary.is_some().then_some(0))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: at,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(offsets.build()),
    };
    let chunk = dictionary.into_iter().chain(pages.into_iter().map(|(page, _)| page)).map(|(bytes, _)| bytes).collect();
    Ok((Pages(chunk), close))
}

/// Appends a V1 data page's levels for `rows` rows of a required list of `width` required values:
/// repetition levels 0 where a row starts and 1 for its other values, definition levels all 1; each
/// RLE-encoded after its length.
fn list_levels(rows: usize, width: usize, body: &mut Vec<u8>) {
    let mut rep = Vec::new();
    if width == 1 {
        rle_run(&mut rep, rows, 0);
    } else {
        for _ in 0..rows {
            rle_run(&mut rep, 1, 0);
            rle_run(&mut rep, width - 1, 1);
        }
    }
    let mut def = Vec::new();
    rle_run(&mut def, rows * width, 1);
    for levels in [&rep, &def] {
        body.extend_from_slice(&(levels.len() as u32).to_le_bytes());
        body.extend_from_slice(levels);
    }
}

/// Appends `values` in BYTE_STREAM_SPLIT form: the first byte (little-endian) of every value, then the
/// second bytes, the third and the fourth.
fn split_streams(values: &[f32], body: &mut Vec<u8>) {
    let n = values.len();
    let start = body.len();
    body.resize(start + 4 * n, 0);
    let (s0, rest) = body[start..].split_at_mut(n);
    let (s1, rest) = rest.split_at_mut(n);
    let (s2, s3) = rest.split_at_mut(n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected.
        done = unsafe { split_streams_avx512(values, [&mut *s0, &mut *s1, &mut *s2, &mut *s3]) };
    }
    for (i, v) in values.iter().enumerate().skip(done) {
        let b = v.to_bits().to_le_bytes();
        (s0[i], s1[i], s2[i], s3[i]) = (b[0], b[1], b[2], b[3]);
    }
}

/// [`split_streams`] 16 values at a time (each stream takes 16 bytes, truncated from the values shifted
/// by 0, 8, 16, 24 bits); returns the values done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_streams_avx512(values: &[f32], streams: [&mut [u8]; 4]) -> usize {
    use std::arch::x86_64::*;
    let [s0, s1, s2, s3] = streams;
    let blocks = values.len() / 16;
    for b in 0..blocks {
        let at = 16 * b;
        // SAFETY: values holds 16 values at `at`, each stream 16 bytes (every stream holds values.len()).
        unsafe {
            let v = _mm512_loadu_si512(values.as_ptr().add(at).cast());
            _mm_storeu_si128(s0.as_mut_ptr().add(at).cast(), _mm512_cvtepi32_epi8(v));
            _mm_storeu_si128(s1.as_mut_ptr().add(at).cast(), _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(v)));
            _mm_storeu_si128(s2.as_mut_ptr().add(at).cast(), _mm512_cvtepi32_epi8(_mm512_srli_epi32::<16>(v)));
            _mm_storeu_si128(s3.as_mut_ptr().add(at).cast(), _mm512_cvtepi32_epi8(_mm512_srli_epi32::<24>(v)));
        }
    }
    16 * blocks
}

fn compress(body: &[u8], zstd_level: i32) -> ParquetResult<Bytes> {
    zstd::bulk::compress(body, zstd_level).map(Bytes::from).map_err(|e| general(&format!("zstd: {e}")))
}

/// A page with its header, serialized into a buffer of its own size; and its spec.
fn serialized(page: CompressedPage) -> ParquetResult<(Bytes, parquet::column::page::PageWriteSpec)> {
    // Room for the page and its header (a page header takes a few dozen bytes).
    let mut sink = TrackedWrite::new(Vec::with_capacity(page.data().len() + 256));
    let spec = SerializedPageWriter::new(&mut sink).write_page(page)?;
    Ok((Bytes::from(sink.into_inner()?), spec))
}

/// A column chunk as its pages' buffers, in file order: read as one stream, never joined in memory.
pub(super) struct Pages(Vec<Bytes>);

impl parquet::file::reader::Length for Pages {
    fn len(&self) -> u64 {
        self.0.iter().map(|b| b.len() as u64).sum()
    }
}

impl parquet::file::reader::ChunkReader for Pages {
    type T = PagesRead;

    fn get_read(&self, start: u64) -> ParquetResult<PagesRead> {
        let mut rest: std::collections::VecDeque<Bytes> = self.0.iter().cloned().collect();
        let mut skip = start;
        while let Some(front) = rest.front_mut() {
            if skip < front.len() as u64 {
                bytes::Buf::advance(front, skip as usize);
                skip = 0;
                break;
            }
            skip -= front.len() as u64;
            rest.pop_front();
        }
        if skip > 0 {
            return Err(general("read past the end of a column chunk"));
        }
        Ok(PagesRead(rest))
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        let mut out = vec![0; length];
        std::io::Read::read_exact(&mut self.get_read(start)?, &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// [`Pages`] from an offset on.
pub(super) struct PagesRead(std::collections::VecDeque<Bytes>);

impl std::io::Read for PagesRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(front) = self.0.front_mut() {
            if front.is_empty() {
                self.0.pop_front();
                continue;
            }
            let n = buf.len().min(front.len());
            buf[..n].copy_from_slice(&front[..n]);
            bytes::Buf::advance(front, n);
            return Ok(n);
        }
        Ok(0)
    }
}

/// Appends an RLE run of `count` copies of `value` (bit width at most 8) in Parquet's hybrid encoding.
fn rle_run(out: &mut Vec<u8>, count: usize, value: u8) {
    if count > 0 {
        varint(out, (count as u64) << 1);
        out.push(value);
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `values` (each below 2^bits, bits 1..=8) in Parquet's RLE / bit-packed hybrid encoding: runs
/// of 8 or more equal values as RLE runs, the rest bit-packed in groups of 8 (the last padded with 0).
fn hybrid(values: &[u8], bits: u32, out: &mut Vec<u8>) {
    let n = values.len();
    // Eight values at i, as one little-endian word (the caller checks i + 8 <= n).
    let word = |i: usize| u64::from_le_bytes(values[i..i + 8].try_into().unwrap_or([0; 8]));
    let run_at = |i: usize| i + 8 <= n && word(i) == u64::from(values[i]) * 0x0101_0101_0101_0101;
    let mut i = 0;
    while i < n {
        if run_at(i) {
            let v = values[i];
            let same = u64::from(v) * 0x0101_0101_0101_0101;
            let mut end = i + 8;
            while end + 8 <= n && word(end) == same {
                end += 8;
            }
            end = values[end..].iter().position(|&x| x != v).map_or(n, |p| end + p);
            rle_run(out, end - i, v);
            i = end;
            continue;
        }
        // Bit-packed groups until a run starts (at most 63 groups a run: a one-byte header).
        let header = out.len();
        out.push(0);
        let mut groups = 0u8;
        while i < n && groups < 63 && (groups == 0 || !run_at(i)) {
            if bits == 8 && i + 8 <= n {
                // Eight 8-bit values pack to themselves.
                out.extend_from_slice(&values[i..i + 8]);
            } else {
                let mut acc = 0u64;
                for (j, &v) in values[i..n.min(i + 8)].iter().enumerate() {
                    acc |= u64::from(v) << (j as u32 * bits);
                }
                out.extend_from_slice(&acc.to_le_bytes()[..bits as usize]);
            }
            groups += 1;
            i += 8;
        }
        out[header] = (groups << 1) | 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_as_one_stream_from_any_offset() {
        use parquet::file::reader::{ChunkReader, Length};
        use std::io::Read;
        let pages = Pages(vec![Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"defg")]);
        assert_eq!(pages.len(), 7);
        for start in 0..=7u64 {
            let mut s = String::new();
            pages.get_read(start).unwrap().read_to_string(&mut s).unwrap();
            assert_eq!(s, &"abcdefg"[start as usize..]);
        }
        assert_eq!(&pages.get_bytes(2, 3).unwrap()[..], b"cde");
        assert!(pages.get_read(8).is_err());
        assert!(pages.get_bytes(5, 3).is_err());
    }
}
