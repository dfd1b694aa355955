//! Files that are either complete or absent (atomic writes, folder syncs) and where paths really lead
//! (resolving links, refusing outputs that overlap inputs).

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// fsync a folder, so renames inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A bare file name has the empty path as its parent: that is the current folder.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&tmp, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

/// `path` made absolute with every link in its existing part resolved (the part that does not exist
/// yet is appended as written, `..` and `.` removed), so two spellings of one place compare equal.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if super::remote::is_url(path) {
        return Ok(path.to_path_buf());
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io(".", e))?.join(path)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) => {
                let mut out = base;
                for c in rest.iter().rev() {
                    match c {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::CurDir => {}
                        c => out.push(c),
                    }
                }
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return Ok(abs),
            },
        }
    }
}

/// Refuses when writing `out` (named by `flag`) could touch one of `inputs`: the same place, or one
/// inside the other. Checked before anything is created or removed, so an output that is also an input
/// (`merge --overwrite --out A A B`) is refused with A untouched.
pub fn refuse_overlap(out: &Path, flag: &str, inputs: &[&Path]) -> Result<()> {
    let o = resolve(out)?;
    for input in inputs {
        let i = resolve(input)?;
        if o == i || o.starts_with(&i) || i.starts_with(&o) {
            let how = if o == i {
                "is"
            } else if o.starts_with(&i) {
                "lies inside"
            } else {
                "contains"
            };
            return Err(Error::Config(format!(
                "{flag} {} {how} the input {}: writing it could destroy that input; choose another {flag}",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}
