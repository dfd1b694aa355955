//! Page headers checked before a column chunk is decoded: the parquet crate reserves, for every page,
//! the uncompressed size its header declares (up to 2 GiB) and decompresses into it, so a part whose
//! footer is honest but whose page headers claim more than the rows can hold would be a decompression
//! bomb. [`check_chunk`] walks a chunk's page headers (a small read each, skipping the page bodies) and
//! refuses the part when the pages together claim more than the chunk may hold.
//!
//! A page header is a Thrift struct in the compact protocol; only fields 2 (`uncompressed_page_size`)
//! and 3 (`compressed_page_size`) are read, everything else is skipped with bounds and a depth limit.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The most bytes one page header is read from (headers with statistics are a few hundred bytes).
const MAX_HEADER_BYTES: usize = 64 << 10;
/// Nesting depth a header may have (the real ones have 3).
const MAX_DEPTH: u32 = 16;

/// A chunk's byte range and what its pages may declare in all.
pub(super) struct Chunk<'a> {
    pub column: &'a str,
    pub row_group: usize,
    pub start: u64,
    pub len: u64,
    pub max_uncompressed: i64,
}

/// Walks the pages of `chunk` in `file`, refusing a header that cannot be read and pages whose declared
/// uncompressed sizes add up to more than `chunk.max_uncompressed`.
pub(super) fn check_chunk(file: &crate::util::ParquetFile, path: &Path, chunk: &Chunk) -> Result<()> {
    walk(file, path, chunk, |_, _| {})
}

/// Walks the page headers of `chunk`, handing each page's declared (uncompressed, compressed) sizes to
/// `page`; the checks of [`check_chunk`].
fn walk(file: &crate::util::ParquetFile, path: &Path, chunk: &Chunk, mut page: impl FnMut(i32, i32)) -> Result<()> {
    let bad = |what: String| {
        Error::dataset(path, format!("column '{}' in row group {}: {what}", chunk.column, chunk.row_group))
    };
    let end = chunk.start.checked_add(chunk.len).ok_or_else(|| bad("chunk range overflows".into()))?;
    let mut at = chunk.start;
    let mut declared = 0i64;
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    while at < end {
        let want = (end - at).min(MAX_HEADER_BYTES as u64) as usize;
        let mut reader = file.reader_at(at).map_err(|e| Error::io(path, e))?;
        let got = read_up_to(&mut reader, &mut buf[..want]).map_err(|e| Error::io(path, e))?;
        let mut r = Reader { buf: &buf[..got], pos: 0 };
        let (uncompressed, compressed) =
            r.page_header().ok_or_else(|| bad(format!("unreadable page header at byte {at}")))?;
        if uncompressed < 0 || compressed < 0 {
            return Err(bad(format!("page at byte {at} declares a negative size")));
        }
        page(uncompressed, compressed);
        declared = declared.saturating_add(i64::from(uncompressed));
        if declared > chunk.max_uncompressed {
            return Err(bad(format!(
                "pages declare more than {} bytes uncompressed, more than its rows can hold (a crafted part)",
                chunk.max_uncompressed
            )));
        }
        at = at.saturating_add(r.pos as u64).saturating_add(compressed as u64);
    }
    Ok(())
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A bounded reader of the Thrift compact protocol.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        (end <= self.buf.len()).then(|| self.pos = end)
    }

    /// Skips one value of compact type `ty`.
    fn skip_value(&mut self, ty: u8, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match ty {
            1 | 2 => Some(()),
            3 => self.byte().map(|_| ()),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let elem = h & 0x0f;
                // Every element takes at least one byte (booleans in a list are a byte each).
                if n > (self.buf.len() - self.pos) as u64 {
                    return None;
                }
                for _ in 0..n {
                    match elem {
                        1 | 2 => self.byte().map(|_| ())?,
                        _ => self.skip_value(elem, depth + 1)?,
                    }
                }
                Some(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Some(());
                }
                let kv = self.byte()?;
                if n > (self.buf.len() - self.pos) as u64 {
                    return None;
                }
                for _ in 0..n {
                    self.skip_value(kv >> 4, depth + 1)?;
                    self.skip_value(kv & 0x0f, depth + 1)?;
                }
                Some(())
            }
            12 => self.skip_struct(depth + 1),
            _ => None,
        }
    }

    fn skip_struct(&mut self, depth: u32) -> Option<()> {
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Some(());
            }
            if h >> 4 == 0 {
                self.zigzag()?;
            }
            self.skip_value(h & 0x0f, depth)?;
        }
    }

    /// A PageHeader's (uncompressed_page_size, compressed_page_size); the reader ends after it.
    fn page_header(&mut self) -> Option<(i32, i32)> {
        let (mut uncompressed, mut compressed) = (None, None);
        let mut field = 0i64;
        loop {
            let h = self.byte()?;
            if h == 0 {
                break;
            }
            field = match h >> 4 {
                0 => self.zigzag()?,
                delta => field + i64::from(delta),
            };
            let ty = h & 0x0f;
            match (field, ty) {
                (2, 5) => uncompressed = Some(i32::try_from(self.zigzag()?).ok()?),
                (3, 5) => compressed = Some(i32::try_from(self.zigzag()?).ok()?),
                _ => self.skip_value(ty, 1)?,
            }
        }
        Some((uncompressed?, compressed?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact-protocol PageHeader: type, sizes, then a nested struct with a list and a binary.
    fn header(uncompressed: i32, compressed: i32) -> Vec<u8> {
        let zz = |v: i64| -> Vec<u8> {
            let mut u = ((v << 1) ^ (v >> 63)) as u64;
            let mut out = Vec::new();
            loop {
                let b = (u & 0x7f) as u8;
                u >>= 7;
                if u == 0 {
                    out.push(b);
                    return out;
                }
                out.push(b | 0x80);
            }
        };
        let mut h = vec![0x15];
        h.extend(zz(0));
        h.push(0x15);
        h.extend(zz(i64::from(uncompressed)));
        h.push(0x15);
        h.extend(zz(i64::from(compressed)));
        // field 5 (delta 2): a struct holding a list<i32> of 3 and a binary of 2 bytes, then stop.
        h.extend([0x2c, 0x19, 0x35, 2, 4, 6, 0x18, 2, b'a', b'b', 0]);
        h.push(0);
        h
    }

    #[test]
    fn page_headers_are_read_and_bounded() {
        let h = header(1000, 40);
        let mut r = Reader { buf: &h, pos: 0 };
        assert_eq!(r.page_header(), Some((1000, 40)));
        assert_eq!(r.pos, h.len());
        // Truncated anywhere: refused, never read past the buffer.
        for cut in 0..h.len() {
            let mut r = Reader { buf: &h[..cut], pos: 0 };
            assert_eq!(r.page_header(), None, "cut at {cut}");
        }
        // A list declaring more elements than bytes left: refused at once.
        let huge = [0x19, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        assert_eq!(Reader { buf: &huge, pos: 0 }.page_header(), None);
    }

    /// The walk sees the pages the parquet crate itself reads, on a real file of several pages.
    #[test]
    fn the_walk_agrees_with_the_parquet_crate_on_a_real_file() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.parquet");
        let values: Vec<f32> = (0..50_000).map(|i| (i as f32).sin()).collect();
        let col = std::sync::Arc::new(arrow_array::Float32Array::from(values)) as arrow_array::ArrayRef;
        let batch = arrow_array::RecordBatch::try_from_iter([("x", col)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_data_page_size_limit(16 << 10)
            .set_write_batch_size(1024)
            .build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props))
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let c = reader.metadata().row_group(0).column(0).clone();
        let mut theirs = Vec::new();
        let mut pages = reader.get_row_group(0).unwrap().get_column_page_reader(0).unwrap();
        while let Some(p) = pages.get_next_page().unwrap() {
            theirs.push(p.buffer().len() as i32);
        }
        assert!(theirs.len() > 5, "{} pages", theirs.len());
        let file = crate::util::ParquetFile::open(&path, crate::util::Links::Refuse).unwrap();
        let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()) as u64;
        let chunk =
            Chunk { column: "x", row_group: 0, start, len: c.compressed_size() as u64, max_uncompressed: i64::MAX };
        let mut ours = Vec::new();
        walk(&file, &path, &chunk, |u, _| ours.push(u)).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_chunk_whose_pages_claim_too_much_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("chunk");
        let mut bytes = Vec::new();
        for _ in 0..3 {
            bytes.extend(header(600, 10));
            bytes.extend([0u8; 10]);
        }
        std::fs::write(&path, &bytes).unwrap();
        let file = crate::util::ParquetFile::open(&path, crate::util::Links::Refuse).unwrap();
        let chunk =
            |max| Chunk { column: "logits", row_group: 0, start: 0, len: bytes.len() as u64, max_uncompressed: max };
        assert!(check_chunk(&file, &path, &chunk(1800)).is_ok());
        let err = check_chunk(&file, &path, &chunk(1799)).unwrap_err().to_string();
        assert!(err.contains("column 'logits' in row group 0: pages declare more than 1799 bytes"), "{err}");
    }
}
