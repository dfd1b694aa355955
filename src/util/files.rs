//! Opening files someone else may have written: regular files only, never blocking on a FIFO, never
//! following a link where the policy says not to, and reads bounded by what the file really holds.
//!
//! Every file softlabel reads goes through [`open_regular`]; soft-label dataset files (parts, the
//! manifest) are opened with [`Links::Refuse`], so a part that is a symbolic link to a file elsewhere is
//! refused instead of read (SCHEMA.md, "Trust").

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::remote::{RemoteFile, RemoteRead};
use crate::error::{Error, Result};

/// Whether the last component of a path may be a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (a path the user typed, e.g. `--data` or `--teacher`).
    Follow,
    /// Refuse it (a file a dataset names: its parts and its manifest must live inside its folder).
    Refuse,
}

/// What a path is, in words, for "is not a regular file" errors.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "folder"
    } else if t.is_fifo() {
        "named pipe (FIFO)"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Opens `path` for reading if it is a regular file, returning it with the size the file system reports.
///
/// The open never blocks (`O_NONBLOCK`: a FIFO would otherwise wait for a writer forever) and, with
/// [`Links::Refuse`], never follows a symbolic link (`O_NOFOLLOW`). The type is checked on the opened
/// descriptor, so a file swapped between a check and the open cannot slip through.
pub fn open_regular(path: &Path, links: Links) -> Result<(File, u64)> {
    if super::remote::is_url(path) {
        return Err(Error::Config(format!(
            "{}: object-storage URLs name datasets and Parquet data (--labels, --out, --data), not this file",
            path.display()
        )));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| {
        if links == Links::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
            Error::data(path, "is a symbolic link; dataset files must be regular files inside the dataset folder")
        } else {
            Error::io(path, e)
        }
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::data(path, format!("is a {}, not a regular file", kind(&meta))));
    }
    Ok((file, meta.len()))
}

/// Reads all of `path` (a regular file, see [`open_regular`]) if it holds at most `max` bytes; `what`
/// names the file in the refusal ("a manifest", "a pipeline file").
///
/// An object-storage URL ([`crate::util::remote::is_url`]) is fetched with the same bound.
pub fn read_bounded(path: &Path, links: Links, max: u64, what: &str) -> Result<Vec<u8>> {
    if super::remote::is_url(path) {
        return super::remote::Object::at(path)?.get_bounded(max, what);
    }
    let (file, len) = open_regular(path, links)?;
    if len > max {
        return Err(Error::data(path, format!("is {len} bytes; {what} is at most {max} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` bounds the read even if the file grows while it is read.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::data(path, format!("grew past {max} bytes while it was read; {what} is at most that")));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &Path, links: Links, max: u64, what: &str) -> Result<String> {
    String::from_utf8(read_bounded(path, links, max, what)?)
        .map_err(|e| Error::data(path, format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// A Parquet file opened through [`open_regular`], as the parquet crate's `ChunkReader`.
///
/// Its readers stop a known slow path of the parquet crate: a crafted page header that declares a huge
/// Thrift list makes the decoder "skip" each element with a read at the end of the file, billions of
/// times (tests/fuzz_regressions/README.md). A few reads past the end are normal; after
/// [`EOF_READS`] of them the read fails, so the file is refused in milliseconds.
#[derive(Debug)]
pub struct ParquetFile {
    backing: Backing,
    len: u64,
}

/// Where a [`ParquetFile`]'s bytes are.
#[derive(Debug)]
enum Backing {
    Local(File),
    /// An object-storage URL, read by range requests.
    Remote(Arc<RemoteFile>),
}

/// Reads returning end-of-file that one reader tolerates before failing (see [`ParquetFile`]).
pub const EOF_READS: u32 = 64;

impl ParquetFile {
    /// Opens `path` (see [`open_regular`]), or the object at an object-storage URL.
    pub fn open(path: &Path, links: Links) -> Result<Self> {
        if super::remote::is_url(path) {
            let remote = RemoteFile::open(path)?;
            let len = remote.len();
            return Ok(ParquetFile { backing: Backing::Remote(Arc::new(remote)), len });
        }
        let (file, len) = open_regular(path, links)?;
        Ok(ParquetFile { backing: Backing::Local(file), len })
    }

    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// A sequential reader from byte `start`.
    pub fn reader_at(&self, start: u64) -> std::io::Result<ChunkRead> {
        Ok(match &self.backing {
            Backing::Local(file) => {
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(start))?;
                ChunkRead::Local(BufReader::new(f))
            }
            Backing::Remote(r) => ChunkRead::Remote(RemoteRead::new(r.clone(), start)),
        })
    }

    /// The sha256 of the whole file, in hex (one streamed read); `path` is named in errors.
    pub fn sha256(&self, path: &Path) -> Result<String> {
        match &self.backing {
            Backing::Local(file) => {
                let mut f = file.try_clone().map_err(|e| Error::io(path, e))?;
                f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
                super::sha256_of(&f, path)
            }
            Backing::Remote(r) => {
                let (sha, n) = r.object().sha256()?;
                if n != self.len {
                    return Err(Error::data(path, format!("changed while it was read ({} bytes, then {n})", self.len)));
                }
                Ok(sha)
            }
        }
    }
}

/// A sequential reader of a [`ParquetFile`].
#[derive(Debug)]
pub enum ChunkRead {
    /// A local file from a position.
    Local(BufReader<File>),
    /// An object from a position.
    Remote(RemoteRead),
}

impl Read for ChunkRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ChunkRead::Local(r) => r.read(buf),
            ChunkRead::Remote(r) => r.read(buf),
        }
    }
}

impl parquet::file::reader::Length for ParquetFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for ParquetFile {
    type T = EofGuard<ChunkRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(EofGuard { inner: self.reader_at(start)?, eof_reads: 0 })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let end = start.checked_add(length as u64).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "bytes {start}..+{length} lie outside the {}-byte file",
                self.len
            )));
        }
        let buffer: bytes::Bytes = match &self.backing {
            Backing::Local(file) => {
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(start))?;
                let mut buffer = Vec::with_capacity(length);
                f.take(length as u64).read_to_end(&mut buffer)?;
                buffer.into()
            }
            Backing::Remote(r) => r.read_at(start, length)?,
        };
        if buffer.len() != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "expected {length} bytes at {start}, read {}",
                buffer.len()
            )));
        }
        Ok(buffer)
    }
}

/// A reader that fails after [`EOF_READS`] reads at the end of its file (see [`ParquetFile`]).
#[derive(Debug)]
pub struct EofGuard<R> {
    inner: R,
    eof_reads: u32,
}

impl<R: Read> Read for EofGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof_reads += 1;
            if self.eof_reads > EOF_READS {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the decoder keeps reading past the end of the file (a crafted page header)",
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_folders_and_refused_links_are_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo, Links::Follow).unwrap_err().to_string();
        assert!(err.contains("named pipe (FIFO), not a regular file"), "{err}");
        let err = open_regular(Path::new("/dev/zero"), Links::Follow).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        let err = open_regular(tmp.path(), Links::Follow).unwrap_err().to_string();
        assert!(err.contains("folder"), "{err}");
        let real = tmp.path().join("real");
        std::fs::write(&real, b"12345").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(open_regular(&link, Links::Follow).unwrap().1, 5);
        let err = open_regular(&link, Links::Refuse).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link") && !err.contains("bytes"), "{err}");
        // Bounded reads.
        assert_eq!(read_bounded(&real, Links::Refuse, 5, "x").unwrap(), b"12345");
        let err = read_bounded(&real, Links::Refuse, 4, "a test file").unwrap_err().to_string();
        assert!(err.contains("is 5 bytes; a test file is at most 4 bytes"), "{err}");
    }

    #[test]
    fn eof_guard_stops_endless_reads_at_the_end() {
        let mut g = EofGuard { inner: std::io::Cursor::new(vec![1u8; 3]), eof_reads: 0 };
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).unwrap(), 3);
        for _ in 0..EOF_READS {
            assert_eq!(g.read(&mut buf).unwrap(), 0);
        }
        assert!(g.read(&mut buf).is_err());
    }
}
