//! The output folder: what counts as softlabel's own files, and making a folder ready for a new dataset.

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::{MANIFEST, PROGRESS};

pub(crate) fn is_dataset_file(name: &str) -> bool {
    [MANIFEST, PROGRESS].contains(&name)
        || [MANIFEST, PROGRESS].iter().any(|m| name == format!(".{m}.tmp"))
        || (name.starts_with("part-") && name.ends_with(".parquet"))
        || (name.starts_with(".part-") && name.ends_with(".parquet.tmp"))
}

/// Lists a folder's entry names.
pub(super) fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// The refusal of an output (`what`: folder or prefix) that already holds something (`held`).
pub(crate) fn not_empty(out: &Path, what: &str, held: &str) -> Error {
    Error::dataset(
        out,
        format!(
            "output {what} is not empty ({held}); choose another --out, pass --resume to continue an interrupted \
             run, or --overwrite to replace it"
        ),
    )
}

/// Makes `dir` ready for a new dataset: created if missing; if it holds files, refused unless
/// `overwrite`, and then only softlabel's own files are removed.
pub(crate) fn prepare_dir(dir: &Path, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let existing = entries(dir)?;
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(not_empty(dir, "folder", &format!("{} entries", existing.len())));
    }
    remove_dataset_files(dir, &existing, |_| true)
}

/// Removes softlabel's files among `names` for which `keep` is false; refuses if a foreign file is there.
pub(super) fn remove_dataset_files(dir: &Path, names: &[String], remove: impl Fn(&str) -> bool) -> Result<()> {
    if let Some(other) = names.iter().find(|n| !is_dataset_file(n)) {
        return Err(Error::dataset(dir, format!("refused: the folder holds '{other}', which softlabel did not write")));
    }
    // The manifest and journal go first, so an interrupted clean-up never leaves them naming missing parts.
    let mut ordered: Vec<&String> = names.iter().filter(|n| remove(n)).collect();
    ordered.sort_by_key(|n| !(n.as_str() == MANIFEST || n.as_str() == PROGRESS));
    for name in ordered {
        let p = dir.join(name);
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
