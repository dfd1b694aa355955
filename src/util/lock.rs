//! Exclusive writers: one process at a time writes a given output (dataset folder, student folder).
//!
//! The lock is `flock(2)` on a hidden file next to the output (`.NAME.lock` in its parent folder, so
//! replacing the output never removes the lock with it). The kernel releases an flock when its holder
//! dies, however it dies, so a lock left by a killed process is simply free: there is no stale state to
//! detect. The file holds the holder's pid and host, named to a second writer. Works on local file
//! systems; on network file systems flock may be local to each client (README, "Trust").

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An exclusive lock on an output path, held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

/// The lock file guarding `output`.
pub fn lock_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    output.parent().unwrap_or(Path::new(".")).join(format!(".{name}.lock"))
}

pub(crate) fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl OutputLock {
    /// Takes the lock on `output` (creating its parent folder), or refuses naming the holder.
    pub fn acquire(output: &Path) -> Result<Self> {
        let path = lock_path(output);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                // "File exists" here means a file stands where a folder of the path should be.
                let e = match e.kind() {
                    std::io::ErrorKind::AlreadyExists => std::io::Error::from_raw_os_error(libc::ENOTDIR),
                    _ => e,
                };
                Error::io(output, e)
            })?;
        }
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(Error::io(&path, err));
                }
                let mut holder = String::new();
                let _ = (&file).take(256).read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process" } else { holder };
                return Err(Error::Config(format!(
                    "{} is being written by {holder}; wait for it to finish or stop it (lock {})",
                    output.display(),
                    path.display()
                )));
            }
            // A holder that was releasing may have removed the file after we opened it: then our lock
            // is on a file nobody else will see, so start again on the current one.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => {
                    use std::os::unix::fs::MetadataExt;
                    a.ino() == b.ino() && a.dev() == b.dev()
                }
                _ => false,
            };
            if !same {
                continue;
            }
            let me = format!("pid {} on {}", std::process::id(), host());
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(me.as_bytes()))
                .map_err(|e| Error::io(&path, e))?;
            return Ok(OutputLock { file, path });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held, so a waiting writer re-checks the inode (see `acquire`).
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unlocking our own descriptor (closing it would release the lock too).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named_and_a_released_lock_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("labels");
        let first = OutputLock::acquire(&out).unwrap();
        let err = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("labels"), "{err}");
        drop(first);
        assert!(!lock_path(&out).exists());
        let again = OutputLock::acquire(&out).unwrap();
        drop(again);
    }
}
