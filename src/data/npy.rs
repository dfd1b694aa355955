//! NumPy input: `--data x.npy` (rows on the first axis, any numeric dtype, C order) with optional
//! hard labels in `--labels-npy y.npy` (one integer per row), or the arrays of an `.npz` archive
//! (`--npz-key X`, `--npz-labels Y`; `np.savez` stores them, `np.savez_compressed` deflates them).
//! Streamed: each batch of a `.npy` file or a stored member is one positioned read of its rows, so a
//! file larger than memory works and a resumed run starts where it stopped; a deflated member is
//! decompressed as it is read, batch by batch (never more than the header declares: no zip bomb).
//!
//! The file is untrusted: the header is parsed with a bounded length and a strict grammar (the dict
//! `np.save` writes), the shape's product is overflow-checked, and the file's size must be exactly the
//! header plus the rows it declares (a truncated or padded file is refused, naming both sizes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, PrimitiveArray};

use super::{Batch, ElementType, Source, SourceInfo};
use crate::error::{Error, Result};
use crate::util::{clip, open_regular, Links};

/// Headers longer than this are refused (`np.load` refuses over 10,000 bytes by default).
const MAX_HEADER: usize = 65_536;
/// Dimensions a shape may have.
const MAX_DIMS: usize = 32;

/// How the values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dtype {
    /// The element type values are read as (bool as uint8, float16 as float32).
    element: ElementType,
    /// Bytes per stored value.
    size: usize,
    /// Stored big-endian.
    big: bool,
    /// float16 on disk.
    half: bool,
    /// bool on disk (bytes must be 0 or 1).
    boolean: bool,
}

/// Where an array's bytes are.
#[derive(Debug, Clone, PartialEq)]
enum Storage {
    /// A `.npy` file, or an uncompressed `.npz` member: the array's bytes start at this file offset.
    Plain(u64),
    /// A deflated `.npz` member: its compressed bytes start at `start` and span `size` bytes.
    Deflated { start: u64, size: u64 },
}

/// One array (a `.npy` file or an `.npz` member), its header checked.
#[derive(Debug, Clone)]
pub(crate) struct NpyArray {
    path: PathBuf,
    /// The `.npz` member, named in errors.
    member: Option<String>,
    storage: Storage,
    dtype: Dtype,
    descr: String,
    shape: Vec<usize>,
    /// Offset of the first value from the start of the array's bytes.
    data_offset: u64,
}

/// A reader of an array's bytes from the start: positioned reads or a decompressor.
enum Bytes {
    Plain(File, u64),
    Deflated(Box<flate2::read::DeflateDecoder<std::io::Take<File>>>, u64),
}

impl Bytes {
    fn open(path: &Path, storage: &Storage) -> Result<Self> {
        let (file, _) = open_regular(path, Links::Follow)?;
        Ok(match *storage {
            Storage::Plain(start) => Bytes::Plain(file, start),
            Storage::Deflated { start, size } => {
                use std::io::{Read, Seek};
                let mut file = file;
                file.seek(std::io::SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
                Bytes::Deflated(Box::new(flate2::read::DeflateDecoder::new(file.take(size))), 0)
            }
        })
    }

    /// Fills `buf` with the bytes at `offset` (for a deflated member, offsets only grow: the bytes in
    /// between are decompressed and dropped). Fewer bytes than asked: `UnexpectedEof`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::io::Read;
        match self {
            Bytes::Plain(f, start) => f.read_exact_at(buf, *start + offset),
            Bytes::Deflated(d, pos) => {
                if offset < *pos {
                    return Err(std::io::Error::other("a deflated member cannot be read backwards"));
                }
                std::io::copy(&mut d.by_ref().take(offset - *pos), &mut std::io::sink())?;
                d.read_exact(buf)?;
                *pos = offset + buf.len() as u64;
                Ok(())
            }
        }
    }
}

impl NpyArray {
    /// Opens `path` (a `.npy` file) and checks its header against its size.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let (_, len) = open_regular(path, Links::Follow)?;
        Self::open_in(path, None, Storage::Plain(0), len)
    }

    /// The array whose bytes are at `storage` in `path` (`len` bytes of them, as the file or the
    /// archive's directory says).
    fn open_in(path: &Path, member: Option<&str>, storage: Storage, len: u64) -> Result<Self> {
        let bad = |what: String| match member {
            Some(m) => Error::data(path, format!("member '{m}' is not a readable .npy array: {what}")),
            None => Error::data(path, format!("not a readable .npy file: {what}")),
        };
        let mut bytes = Bytes::open(path, &storage)?;
        let mut head = [0u8; 12];
        let got = len.min(10) as usize;
        bytes.read_at(&mut head[..got], 0).map_err(|e| bad(format!("cannot read its start ({e})")))?;
        let got = if got == 10 && matches!(head[6], 2 | 3) && len >= 12 {
            bytes.read_at(&mut head[10..12], 10).map_err(|e| bad(format!("cannot read its start ({e})")))?;
            12
        } else {
            got
        };
        if got < 10 || &head[..6] != b"\x93NUMPY" {
            return Err(bad("it does not start with the NumPy magic bytes".into()));
        }
        let (major, minor) = (head[6], head[7]);
        let (header_len, start) = match major {
            1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10usize),
            2 | 3 if got >= 12 => (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize, 12),
            _ => return Err(bad(format!("format version {major}.{minor} is not 1.0, 2.0 or 3.0"))),
        };
        if header_len > MAX_HEADER {
            return Err(bad(format!("its header claims {header_len} bytes (at most {MAX_HEADER} are read)")));
        }
        if (start + header_len) as u64 > len {
            return Err(bad(format!("its header claims {header_len} bytes of a {len}-byte file")));
        }
        let mut header = vec![0u8; header_len];
        bytes.read_at(&mut header, start as u64).map_err(|e| bad(format!("cannot read its header ({e})")))?;
        let header = std::str::from_utf8(&header).map_err(|_| bad("its header is not text".into()))?;
        let h = parse_header(header).map_err(|e| bad(format!("header {:?}: {e}", clip(header, 120))))?;
        let err = |what: String| match member {
            Some(m) => Error::data(path, format!("member '{m}': {what}")),
            None => Error::data(path, what),
        };
        if h.fortran_order {
            return Err(err(
                "the array is in Fortran (column-major) order; save it with np.save(path, np.ascontiguousarray(x))"
                    .into(),
            ));
        }
        let dtype = parse_dtype(&h.descr)
            .ok_or_else(|| err(format!("dtype '{}' is not numeric (expected bool, int, uint or float)", h.descr)))?;
        if h.shape.is_empty() {
            return Err(err("the array is a scalar (shape ()); rows are on the first axis".into()));
        }
        let row: Option<usize> = h.shape[1..].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if row.is_none_or(|r| r > crate::store::MAX_INPUT_VALUES) {
            return Err(err(format!(
                "shape {:?} has more than {} values per row",
                h.shape,
                crate::store::MAX_INPUT_VALUES
            )));
        }
        let data_offset = (start + header_len) as u64;
        let values = h.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let bytes = values.and_then(|v| v.checked_mul(dtype.size as u64));
        let want = bytes.and_then(|b| b.checked_add(data_offset));
        match want {
            Some(w) if w == len => {}
            Some(w) => {
                let held = len - data_offset;
                return Err(err(format!(
                    "shape {:?} of {} needs {} bytes of values, the file holds {held}{}",
                    h.shape,
                    h.descr,
                    w - data_offset,
                    if held < w - data_offset { " (truncated)" } else { " (trailing bytes)" }
                )));
            }
            None => return Err(err(format!("shape {:?} holds more values than a file can", h.shape))),
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            member: member.map(str::to_string),
            storage,
            dtype,
            descr: h.descr,
            shape: h.shape,
            data_offset,
        })
    }

    fn rows(&self) -> u64 {
        self.shape[0] as u64
    }

    fn width(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Rows `first .. first + n` as stored bytes.
    fn read_rows(&self, bytes: &mut Bytes, first: u64, n: usize) -> Result<Vec<u8>> {
        let row = self.width() * self.dtype.size;
        let mut buf = vec![0u8; n * row];
        bytes.read_at(&mut buf, self.data_offset + first * row as u64).map_err(|e| {
            let what = format!("cannot read rows {first}..{} ({e}; truncated or corrupt)", first + n as u64);
            self.error(what)
        })?;
        Ok(buf)
    }

    /// An error about this array: the file, and the member of an archive.
    fn error(&self, what: String) -> Error {
        match &self.member {
            Some(m) => Error::data(&self.path, format!("member '{m}': {what}")),
            None => Error::data(&self.path, what),
        }
    }

    /// Stored bytes as an Arrow array of [`Dtype::element`], checking bools.
    fn decode(&self, bytes: &[u8], first_row: u64) -> Result<ArrayRef> {
        let d = self.dtype;
        macro_rules! ints {
            ($arrow:ty, $rust:ty) => {{
                let v: Vec<$rust> = bytes
                    .chunks_exact(d.size)
                    .map(|c| {
                        let a: [u8; std::mem::size_of::<$rust>()] = c.try_into().unwrap_or_default();
                        if d.big {
                            <$rust>::from_be_bytes(a)
                        } else {
                            <$rust>::from_le_bytes(a)
                        }
                    })
                    .collect();
                Arc::new(PrimitiveArray::<$arrow>::from(v)) as ArrayRef
            }};
        }
        use arrow_array::types::*;
        Ok(match d.element {
            ElementType::U8 if d.boolean => {
                if let Some(p) = bytes.iter().position(|&b| b > 1) {
                    let w = self.width().max(1);
                    return Err(Error::data(
                        &self.path,
                        format!(
                            "row {}: value {} of the row is byte {} in a bool array",
                            first_row + (p / w) as u64,
                            p % w,
                            bytes[p]
                        ),
                    ));
                }
                Arc::new(PrimitiveArray::<UInt8Type>::from(bytes.to_vec()))
            }
            ElementType::U8 => Arc::new(PrimitiveArray::<UInt8Type>::from(bytes.to_vec())),
            ElementType::I8 => {
                Arc::new(PrimitiveArray::<Int8Type>::from(bytes.iter().map(|&b| b as i8).collect::<Vec<_>>()))
            }
            ElementType::U16 => ints!(UInt16Type, u16),
            ElementType::I16 => ints!(Int16Type, i16),
            ElementType::U32 => ints!(UInt32Type, u32),
            ElementType::I32 => ints!(Int32Type, i32),
            ElementType::U64 => ints!(UInt64Type, u64),
            ElementType::I64 => ints!(Int64Type, i64),
            ElementType::F32 if d.half => {
                let v: Vec<f32> = bytes
                    .chunks_exact(2)
                    .map(|c| {
                        let bits =
                            if d.big { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) };
                        half::f16::from_bits(bits).to_f32()
                    })
                    .collect();
                Arc::new(PrimitiveArray::<Float32Type>::from(v))
            }
            ElementType::F32 => ints!(Float32Type, f32),
            ElementType::F64 => ints!(Float64Type, f64),
        })
    }
}

#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict `np.save` writes: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`
/// (keys in any order, each once, nothing else; padding spaces and a newline after it).
fn parse_header(s: &str) -> std::result::Result<Header, String> {
    let s = s.trim_end_matches(['\n', ' ', '\0']).trim();
    let body = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).ok_or("it is not a {...} dict")?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or("a key is not a quoted string")?;
        let after = after.trim_start().strip_prefix(':').ok_or("a key is not followed by ':'")?.trim_start();
        let after = match key {
            "descr" if descr.is_none() => {
                let (v, after) =
                    quoted(after).ok_or("'descr' is not a quoted string (structured dtypes are not read)")?;
                descr = Some(v.to_string());
                after
            }
            "fortran_order" if fortran.is_none() => {
                let (v, after) = if let Some(a) = after.strip_prefix("True") {
                    (true, a)
                } else if let Some(a) = after.strip_prefix("False") {
                    (false, a)
                } else {
                    return Err("'fortran_order' is not True or False".into());
                };
                fortran = Some(v);
                after
            }
            "shape" if shape.is_none() => {
                let inner = after.strip_prefix('(').ok_or("'shape' is not a tuple")?;
                let close = inner.find(')').ok_or("'shape' is not closed")?;
                let mut dims = Vec::new();
                for part in inner[..close].split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let d: usize =
                        part.parse().map_err(|_| format!("shape entry '{}' is not a size", clip(part, 120)))?;
                    dims.push(d);
                    if dims.len() > MAX_DIMS {
                        return Err(format!("shape has more than {MAX_DIMS} dimensions"));
                    }
                }
                shape = Some(dims);
                &inner[close + 1..]
            }
            k => return Err(format!("unexpected or repeated key '{}'", clip(k, 120))),
        };
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(a) => a.trim_start(),
            None if after.is_empty() => after,
            None => return Err("entries are not separated by ','".into()),
        };
    }
    Ok(Header {
        descr: descr.ok_or("no 'descr'")?,
        fortran_order: fortran.ok_or("no 'fortran_order'")?,
        shape: shape.ok_or("no 'shape'")?,
    })
}

/// A Python string literal in single or double quotes at the start of `s` (no escapes): its content
/// and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let end = s[1..].find(q)? + 1;
    Some((&s[1..end], &s[end + 1..]))
}

fn parse_dtype(descr: &str) -> Option<Dtype> {
    let (order, code) = match descr.as_bytes().first()? {
        b'<' | b'=' | b'|' => (false, &descr[1..]),
        b'>' => (true, &descr[1..]),
        _ => (false, descr),
    };
    let d = |element, size| Dtype { element, size, big: order, half: false, boolean: false };
    Some(match code {
        "b1" => Dtype { boolean: true, ..d(ElementType::U8, 1) },
        "u1" => d(ElementType::U8, 1),
        "i1" => d(ElementType::I8, 1),
        "u2" => d(ElementType::U16, 2),
        "i2" => d(ElementType::I16, 2),
        "u4" => d(ElementType::U32, 4),
        "i4" => d(ElementType::I32, 4),
        "u8" => d(ElementType::U64, 8),
        "i8" => d(ElementType::I64, 8),
        "f2" => Dtype { half: true, ..d(ElementType::F32, 2) },
        "f4" => d(ElementType::F32, 4),
        "f8" => d(ElementType::F64, 8),
        _ => return None,
    })
}

/// A `.npy` input (or `.npz` arrays) with optional labels.
#[derive(Debug, Clone)]
pub struct NpySource {
    x: NpyArray,
    labels: Option<NpyArray>,
    label_name: Option<String>,
    files: Vec<PathBuf>,
    skip_nonfinite: bool,
}

/// Where the labels of a NumPy input are.
#[derive(Debug, Clone, Copy)]
pub enum NpyLabels<'a> {
    /// None.
    None,
    /// A `.npy` file.
    File(&'a Path),
    /// An array of the same `.npz` archive.
    Key(&'a str),
}

/// Archive members read at most.
const MAX_MEMBERS: usize = 4096;

/// The arrays of an `.npz` archive: name (without `.npy`) -> (storage, uncompressed size).
fn npz_members(path: &Path) -> Result<Vec<(String, Storage, u64)>> {
    let (file, _) = open_regular(path, Links::Follow)?;
    let listed = crate::util::guarded(|| -> std::result::Result<_, String> {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
        if zip.len() > MAX_MEMBERS {
            return Err(format!("it lists {} members (at most {MAX_MEMBERS} are read)", zip.len()));
        }
        let mut out = Vec::new();
        for i in 0..zip.len() {
            let m = zip.by_index_raw(i).map_err(|e| e.to_string())?;
            let name = m.name().to_string();
            let storage = match m.compression() {
                zip::CompressionMethod::Stored => Storage::Plain(m.data_start()),
                zip::CompressionMethod::DEFLATE => {
                    // Deflate expands at most 1032:1: a larger claim is not what the file holds.
                    if m.size() / 1032 > m.compressed_size() + 1 {
                        return Err(format!(
                            "member '{name}' claims {} bytes from {} compressed ones (deflate gives at most 1032:1)",
                            m.size(),
                            m.compressed_size()
                        ));
                    }
                    Storage::Deflated { start: m.data_start(), size: m.compressed_size() }
                }
                c => {
                    return Err(format!(
                        "member '{name}' is compressed with {c:?} (np.savez writes Stored or Deflated)"
                    ))
                }
            };
            if m.encrypted() {
                return Err(format!("member '{name}' is encrypted"));
            }
            out.push((name.strip_suffix(".npy").unwrap_or(&name).to_string(), storage, m.size()));
        }
        Ok(out)
    });
    match listed {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(Error::data(path, format!("not a readable .npz archive: {e}"))),
        Err(panic) => Err(Error::data(path, format!("not a readable .npz archive: the zip reader failed: {panic}"))),
    }
}

impl NpySource {
    /// Opens `path` and `labels` (one integer per row of `path`) and checks them against each other.
    pub fn open(path: &Path, labels: Option<&Path>, skip_nonfinite: bool) -> Result<Self> {
        let x = NpyArray::open(path)?;
        let labels = labels.map(NpyArray::open).transpose()?;
        Self::new(x, labels, skip_nonfinite)
    }

    /// Opens the array `key` of the `.npz` archive `path` (default: its only array) and its labels.
    pub fn open_npz(path: &Path, key: Option<&str>, labels: NpyLabels, skip_nonfinite: bool) -> Result<Self> {
        let members = npz_members(path)?;
        let names = || members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(", ");
        let find = |k: &str, flag: &str| -> Result<NpyArray> {
            let (name, storage, size) = members.iter().find(|m| m.0 == k).ok_or_else(|| {
                Error::data(path, format!("no array '{k}' in the archive (arrays: {}); choose with {flag}", names()))
            })?;
            NpyArray::open_in(path, Some(name), storage.clone(), *size)
        };
        let x = match key {
            Some(k) => find(k, "--npz-key NAME")?,
            None => match members.as_slice() {
                [one] => find(&one.0, "--npz-key NAME")?,
                _ => {
                    return Err(Error::data(
                        path,
                        format!("the archive holds arrays {}; name the input with --npz-key NAME", names()),
                    ))
                }
            },
        };
        let labels = match labels {
            NpyLabels::None => None,
            NpyLabels::File(f) => Some(NpyArray::open(f)?),
            NpyLabels::Key(k) => Some(find(k, "--npz-labels NAME")?),
        };
        Self::new(x, labels, skip_nonfinite)
    }

    fn new(x: NpyArray, labels: Option<NpyArray>, skip_nonfinite: bool) -> Result<Self> {
        if let Some(y) = &labels {
            let e = y.dtype.element;
            if y.dtype.boolean || e.is_float() {
                return Err(y.error(format!("labels have dtype '{}', expected an integer type", y.descr)));
            }
            if y.width() != 1 {
                return Err(y.error(format!("labels have shape {:?}, expected one per row ({})", y.shape, x.shape[0])));
            }
            if y.rows() != x.rows() {
                return Err(y.error(format!("{} labels for the {} rows of {}", y.rows(), x.rows(), x.path.display())));
            }
        }
        // The fingerprint is the input's (the array file): `train --inputs x.npy` on label-only data and
        // `eval` find the same data without the labels file; where the labels came from is the label
        // column's name (the labels file, or the archive member).
        let files = vec![x.path.clone()];
        let label_name = labels.as_ref().map(|l| match &l.member {
            Some(m) => m.clone(),
            None => l.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        });
        Ok(NpySource { x, labels, label_name, files, skip_nonfinite })
    }

    fn batch(&self, bytes: &mut (Bytes, Option<Bytes>), first: u64, n: usize) -> Result<Batch> {
        let raw = self.x.read_rows(&mut bytes.0, first, n)?;
        let input = self.x.decode(&raw, first)?;
        let width = self.x.width();
        let mut nonfinite = Vec::new();
        if self.x.dtype.element.is_float() {
            let flat = super::numeric_to_f32(input.as_ref()).unwrap_or_default();
            nonfinite = super::nonfinite_rows(&flat, width, self.skip_nonfinite).map_err(|(i, j, v)| {
                self.x.error(format!(
                    "row {}: input value {j} of the row is {v} (--skip-nonfinite skips such rows)",
                    first + i as u64
                ))
            })?;
        }
        let labels = match (&self.labels, &mut bytes.1) {
            (Some(y), Some(b)) => {
                let a = y.decode(&y.read_rows(b, first, n)?, first)?;
                let v = super::numeric::integers_to_i128(&a).unwrap_or_default();
                v.into_iter()
                    .enumerate()
                    .map(|(i, l)| match l {
                        Some(l) if l >= i64::MIN as i128 && l <= i64::MAX as i128 => Ok(Some(l as i64)),
                        l => Err(y.error(format!("row {}: label {l:?} does not fit in int64", first + i as u64))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            _ => vec![None; n],
        };
        Ok(Batch {
            file: self.x.path.clone(),
            first_row: first,
            first_source_row: first,
            ids: (first..first + n as u64).collect(),
            labels,
            input,
            width,
            nonfinite,
            extra: Vec::new(),
            paths: Vec::new(),
            token_labels: Vec::new(),
        })
    }
}

impl Source for NpySource {
    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn rows(&self) -> u64 {
        self.x.rows()
    }

    fn label_column(&self) -> Option<&str> {
        self.label_name.as_deref()
    }

    fn id_column(&self) -> Option<&str> {
        None
    }

    fn input_name(&self) -> String {
        match &self.x.member {
            Some(m) => m.clone(),
            None => self.x.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        }
    }

    fn width(&self) -> Option<usize> {
        Some(self.x.width())
    }

    fn element_type(&self) -> ElementType {
        self.x.dtype.element
    }

    /// sha256 over the input file's name, size and sha256, as for Parquet (the labels file is not in it).
    fn source_info_until(&self, stop: &std::sync::atomic::AtomicBool) -> Result<SourceInfo> {
        super::files_identity(&[(self.x.path.as_path(), self.x.rows())], stop)
    }

    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let batch_size = batch_size.max(1) as u64;
        let open = || -> Result<(Bytes, Option<Bytes>)> {
            let x = Bytes::open(&self.x.path, &self.x.storage)?;
            let y = self.labels.as_ref().map(|l| Bytes::open(&l.path, &l.storage)).transpose()?;
            Ok((x, y))
        };
        let mut bytes = match open() {
            Ok(f) => f,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let rows = self.x.rows();
        let mut next = skip - skip % batch_size;
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed || next >= rows {
                return None;
            }
            let n = batch_size.min(rows - next) as usize;
            let out = self.batch(&mut bytes, next, n);
            failed = out.is_err();
            next += n as u64;
            Some(out)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_np_save_writes_parse_and_others_are_refused() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n").unwrap();
        assert_eq!(h, Header { descr: "<f4".into(), fortran_order: false, shape: vec![3, 4] });
        assert_eq!(parse_header("{'shape': (5,), 'descr': '|u1', 'fortran_order': True}").unwrap().shape, vec![5]);
        assert_eq!(parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': ()}").unwrap().shape, vec![0; 0]);
        for (bad, why) in [
            ("[1, 2]", "dict"),
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "repeated"),
            ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "structured"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "not a size"),
            ("{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,)}", "True or False"),
            ("{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", "separated"),
        ] {
            let e = parse_header(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(parse_dtype("<f2").map(|d| (d.element, d.half)), Some((ElementType::F32, true)));
        assert_eq!(parse_dtype(">i4").map(|d| (d.element, d.big)), Some((ElementType::I32, true)));
        for bad in ["|O", "<U4", "|S3", "<c8", "<m8[s]", ""] {
            assert!(parse_dtype(bad).is_none(), "{bad}");
        }
    }
}
